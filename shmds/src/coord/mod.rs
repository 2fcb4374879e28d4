//! Coordination primitives: [`Lock`], [`RwLock`], [`Condition`],
//! [`Semaphore`], [`Barrier`], [`Event`], [`Latch`] and [`Once`], named
//! entries of a segment like the data structures.
//!
//! Every blocking call waits the same way ([`sleep`]): a short spin, then
//! sleeps on a futex word in the structure (shared futexes, so a process
//! wakes another), each sleep at most [`LIVENESS_EVERY`] long, so that a
//! waiter notices a timeout, an interrupt and a dead peer in time. Nothing
//! here makes a system call when it need not: an uncontended lock is one
//! compare-and-swap to take and one swap to give back.
//!
//! *Who holds what.* Whatever a process holds is recorded with its pid in
//! the word that grants it (a lock's `word`, a reader slot, a once's
//! `state`), so no crash can leave a claim without a name; beside it a
//! *stamp* (`pid | start_time << 24`) tells a reused pid apart. A waiter
//! that has waited [`LIVENESS_EVERY`] for the same holder asks whether it
//! still runs (`kill(pid, 0)` and `/proc`) and, if not, takes the claim
//! over. A process is alive while any of its threads is: claims belong to
//! processes, not threads (the holding thread is recorded for display).
//!
//! The algorithms are written over the layout structs' atomics (the
//! [`sync`](crate::sync) shim), so the loom models in `loom_tests.rs` check
//! the code that runs in shared memory, deaths included (`fault::crash`).

/// What every primitive has besides its algorithm: `Send` and `Sync`, its
/// state for display, and its entry's and segment's names.
macro_rules! primitive_common {
    ($ty:ident) => {
        // SAFETY: the primitive's pointers lead into the mapping its
        // `handle` keeps alive, and the shared words they reach are only
        // used through atomics (a peer may change them at any time; every
        // value read is validated where it is used).
        unsafe impl Send for $ty {}
        // SAFETY: as above.
        unsafe impl Sync for $ty {}

        impl $ty {
            /// The state (holder, waiters, count), for display.
            pub fn status(&self) -> $crate::coord::Status {
                $crate::coord::Primitive::status(self)
            }

            /// The entry's name.
            pub fn name(&self) -> &str {
                self.handle.name()
            }

            /// The segment's name.
            pub fn segment_name(&self) -> &str {
                self.handle.seg.name()
            }
        }
    };
}
pub(crate) use primitive_common;

mod barrier;
mod condition;
mod event;
mod lock;
mod once;
mod rwlock;
mod semaphore;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub use barrier::{Barrier, BarrierWaitResult, MAX_BARRIER_PARTIES};
pub use condition::{Condition, WaitTimeoutResult};
pub use event::{Event, Latch};
pub use lock::{Lock, LockError, LockGuard, LockResult, OwnerDied, TryLockResult};
pub use once::{Once, OnceRun};
pub use rwlock::{ReadGuard, RwLock, WriteGuard, DEFAULT_READER_SLOTS, MAX_READER_SLOTS};
pub use semaphore::{Permit, Semaphore, MAX_SEMAPHORE_VALUE};

use crate::error::{Error, Result};
use crate::handle::{Handle, Typed};
use crate::layout::kind;
use crate::process::current_pid;
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::table::EntryInfo;
use crate::wait::{futex_wait, Wait};
use std::time::Duration;

/// The longest a waiter sleeps before it looks again at its deadline, its
/// interrupt check and whether the process it waits for still runs: a
/// claim of a process that died is taken over this long after the death
/// (plus the time to read `/proc`).
pub(crate) const LIVENESS_EVERY: Duration = Duration::from_millis(20);

/// Why a wait ended without what it waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The deadline passed.
    TimedOut,
    /// The interrupt check said stop.
    Interrupted,
}

impl Stop {
    /// The crate error for this outcome on `handle`'s entry.
    pub(crate) fn error(self, handle: &Handle) -> Error {
        match self {
            Stop::TimedOut => handle.timeout(),
            Stop::Interrupted => Error::Interrupted {
                name: handle.name().to_owned(),
            },
        }
    }
}

/// Sleep on `word` while it holds `seen`, counted in `sleepers` (a waker
/// makes the wake-up system call only when that count is not 0), for at
/// most the time left and [`LIVENESS_EVERY`]. `Err` when the wait is over.
///
/// The count is raised with a SeqCst increment before the futex call reads
/// `word`; wakers change `word` with a SeqCst write and then read the count
/// (SeqCst): either the waker sees the sleeper and wakes it, or the
/// sleeper's futex call sees the new value and does not sleep.
pub(crate) fn sleep(
    word: &AtomicU32,
    seen: u32,
    sleepers: &AtomicU32,
    wait: &mut Wait<'_>,
) -> std::result::Result<(), Stop> {
    sleepers.fetch_add(1, Ordering::SeqCst);
    let slept = nap(word, seen, wait);
    sleepers.fetch_sub(1, Ordering::SeqCst);
    slept
}

/// [`sleep`] for a caller that counts itself as a sleeper on its own.
pub(crate) fn nap(
    word: &AtomicU32,
    seen: u32,
    wait: &mut Wait<'_>,
) -> std::result::Result<(), Stop> {
    if wait.interrupted() {
        return Err(Stop::Interrupted);
    }
    let Some(nap) = wait.deadline.next_sleep() else {
        return Err(Stop::TimedOut);
    };
    futex_wait(word, seen, Some(nap.min(LIVENESS_EVERY)));
    Ok(())
}

/// Wake the sleepers of `word` if `sleepers` says there are any: one, or
/// all of them.
#[inline]
pub(crate) fn wake(word: &AtomicU32, sleepers: &AtomicU32, all: bool) {
    if sleepers.load(Ordering::SeqCst) != 0 {
        crate::wait::futex_wake(word, if all { i32::MAX as u32 } else { 1 });
    }
}

/// A brief wait before sleeping. [`Spin::default`] is the crate's
/// [`Backoff`](crate::wait::Backoff) (short spins, then yields: a waiter for
/// an event or a permit notices it within a few hundred nanoseconds and
/// soon gives the CPU away). [`Spin::lock`] is for a lock's takers, whose
/// holder is about to let go: spins of growing length (1, 2, 4 ... 64
/// pause instructions, reading the lock word between them, so the holder
/// keeps its cache line), then yields. Either way a lock or a signal handed
/// over between two running processes costs no system call. Under loom,
/// one yield.
pub(crate) struct Spin {
    #[cfg(not(loom))]
    backoff: Option<crate::wait::Backoff>,
    step: u32,
}

impl Default for Spin {
    fn default() -> Spin {
        Spin {
            #[cfg(not(loom))]
            backoff: Some(crate::wait::Backoff::default()),
            step: 0,
        }
    }
}

impl Spin {
    #[cfg(not(loom))]
    const SPIN_STEPS: u32 = 16;
    #[cfg(not(loom))]
    const YIELD_STEPS: u32 = Self::SPIN_STEPS + 8;

    /// The spin of a lock's takers.
    pub(crate) fn lock() -> Spin {
        Spin {
            #[cfg(not(loom))]
            backoff: None,
            step: 0,
        }
    }

    /// Spin a little; `false` once it is time to sleep.
    #[inline]
    pub(crate) fn snooze(&mut self) -> bool {
        #[cfg(not(loom))]
        {
            if let Some(backoff) = &mut self.backoff {
                return backoff.snooze();
            }
            if self.step < Self::SPIN_STEPS {
                for _ in 0..1u32 << self.step.min(6) {
                    core::hint::spin_loop();
                }
            } else if self.step < Self::YIELD_STEPS {
                std::thread::yield_now();
            } else {
                return false;
            }
            self.step += 1;
            true
        }
        #[cfg(loom)]
        {
            if self.step > 0 {
                return false;
            }
            self.step = 1;
            loom::thread::yield_now();
            true
        }
    }
}

/// Bits of a stamp that hold the pid.
const STAMP_PID_BITS: u32 = 24;
const STAMP_PID_MASK: u64 = (1 << STAMP_PID_BITS) - 1;
/// The start time bits of a stamp (40 bits of clock ticks after boot).
const STAMP_START_MASK: u64 = (1 << (64 - STAMP_PID_BITS)) - 1;

/// This process's stamp: `pid | start_time << 24` (start time truncated to
/// 40 bits; 0 there if it cannot be read).
#[inline]
pub(crate) fn my_stamp() -> u64 {
    let start = crate::process::current_start_time() & STAMP_START_MASK;
    (current_pid() as u64 & STAMP_PID_MASK) | start << STAMP_PID_BITS
}

/// The pid a stamp names.
pub(crate) fn stamp_pid(stamp: u64) -> u32 {
    (stamp & STAMP_PID_MASK) as u32
}

/// Whether the process `stamp` names still runs (a reused pid with
/// another start time does not count). Errs to "alive" as
/// [`is_alive`](crate::process::is_alive) does.
pub(crate) fn stamp_alive(stamp: u64) -> bool {
    let pid = stamp_pid(stamp);
    if pid == 0 {
        return false;
    }
    let start = stamp >> STAMP_PID_BITS;
    #[cfg(not(loom))]
    if start != 0 {
        if let Some(now) = crate::process::start_time(pid) {
            if now & STAMP_START_MASK != start {
                return false;
            }
        }
    }
    #[cfg(loom)]
    let _ = start;
    crate::process::is_alive(pid)
}

/// Whether `pid`, found in a claim word, still runs; `stamp` (read after
/// the word) is used when it names the same pid.
///
/// Asking costs system calls and `/proc` reads (about 9 µs), so a thread
/// remembers its last "alive" answer for [`LIVENESS_EVERY`]: a `try_` call
/// repeated on a lock a live process holds asks once per interval, not
/// every time (a holder that dies meanwhile is taken over that much
/// later, as a blocking waiter would). A "dead" answer is never cached;
/// displays and `check` use [`ask_alive`].
pub(crate) fn holder_alive(pid: u32, stamp: u64) -> bool {
    #[cfg(not(loom))]
    {
        use std::cell::Cell;
        std::thread_local! {
            static LAST_ALIVE: Cell<Option<(u32, u64, std::time::Instant)>> =
                const { Cell::new(None) };
        }
        if let Some((p, s, at)) = LAST_ALIVE.with(Cell::get) {
            if p == pid && s == stamp && at.elapsed() < LIVENESS_EVERY {
                return true;
            }
        }
        let alive = ask_alive(pid, stamp);
        LAST_ALIVE.with(|c| c.set(alive.then(|| (pid, stamp, std::time::Instant::now()))));
        alive
    }
    #[cfg(loom)]
    ask_alive(pid, stamp)
}

/// [`holder_alive`] without the cache: what status and `check` report.
pub(crate) fn ask_alive(pid: u32, stamp: u64) -> bool {
    if pid as u64 & STAMP_PID_MASK == pid as u64 && stamp_pid(stamp) == pid {
        stamp_alive(stamp)
    } else {
        crate::process::is_alive(pid)
    }
}

/// The calling thread's id (cached per thread; re-read after a fork).
#[inline]
pub(crate) fn current_tid() -> u32 {
    #[cfg(not(loom))]
    {
        use std::cell::Cell;
        std::thread_local! {
            static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
        }
        let pid = current_pid();
        TID.with(|t| {
            let (cached_pid, tid) = t.get();
            if cached_pid == pid && tid != 0 {
                return tid;
            }
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            t.set((pid, tid));
            tid
        })
    }
    #[cfg(loom)]
    {
        current_pid()
    }
}

/// Watches the holder of a claim word for [`LIVENESS_EVERY`] before asking
/// whether it still runs (under loom, and for a `try_` call: asks at once).
pub(crate) struct Watch {
    holder: u32,
    since: std::time::Instant,
    eager: bool,
}

impl Watch {
    /// A watch; `eager` asks about every holder at first sight.
    pub(crate) fn new(eager: bool) -> Watch {
        Watch {
            holder: 0,
            since: std::time::Instant::now(),
            eager: eager || cfg!(loom),
        }
    }

    /// Whether `holder` (read from a claim word; `stamp` read after it) is
    /// dead and its claim may be taken over. Never for our own process.
    pub(crate) fn dead(&mut self, holder: u32, stamp: &AtomicU64) -> bool {
        if holder == current_pid() {
            return false;
        }
        if holder != self.holder {
            self.holder = holder;
            self.since = std::time::Instant::now();
            if !self.eager {
                return false;
            }
        }
        if !self.eager && self.since.elapsed() < LIVENESS_EVERY {
            return false;
        }
        !holder_alive(holder, stamp.load(Ordering::Acquire))
    }
}

/// How a blocking call was asked to wait: `None` blocks, `Some(ZERO)`
/// tries once.
pub(crate) fn waiter<'w>(
    timeout: Option<Duration>,
    interrupt: Option<&'w mut dyn FnMut() -> bool>,
) -> Wait<'w> {
    Wait::new(timeout, interrupt)
}

/// What every primitive needs to be created and opened by name.
pub(crate) trait Primitive: Sized {
    /// Its `Entry::kind`.
    const KIND: u32;
    /// What `Entry::capacity` means for it, in errors ("parties", ...).
    const SHAPE: &'static str;
    /// Bytes of its block for `capacity`.
    fn block_size(capacity: u64) -> Result<u64>;
    /// Initialise a fresh, zeroed block of `block_size(capacity)` bytes.
    ///
    /// # Safety
    /// `block` points to that many writable, 64-aligned, unpublished bytes.
    unsafe fn init(block: *mut u8, capacity: u64, flags: u32);
    /// Validate the block of an open entry and wrap it.
    fn from_handle(handle: Handle) -> Result<Self>;
    /// Its state, for `shmds info` and `check`.
    fn status(&self) -> Status;
    /// The creation flags it has (checked when an existing one is opened
    /// with flags).
    fn flags(&self) -> u32 {
        0
    }
}

fn typed(kind: u32) -> Typed {
    Typed::of::<u32>(kind)
}

/// Create (or with `existing_ok` open) the primitive `name`.
pub(crate) fn create<P: Primitive>(
    seg: &Segment,
    name: &str,
    capacity: u64,
    flags: u32,
    existing_ok: bool,
) -> Result<P> {
    let size = P::block_size(capacity)?;
    let handle = typed(P::KIND).create_shaped(
        seg,
        name,
        capacity,
        size,
        existing_ok,
        P::SHAPE,
        |block| {
            // SAFETY: `create` hands us a fresh, zeroed, 64-aligned block
            // of `size` bytes that no other entry uses and nobody sees yet.
            unsafe { P::init(block, capacity, flags) };
            Ok(())
        },
    )?;
    let p = P::from_handle(handle)?;
    if p.flags() != flags {
        return Err(Error::KindMismatch {
            name: name.to_owned(),
            expected: if flags != 0 {
                "bounded semaphore"
            } else {
                "semaphore"
            },
            found: if p.flags() != 0 {
                "bounded semaphore"
            } else {
                "semaphore"
            },
        });
    }
    Ok(p)
}

/// Open the primitive `name`.
pub(crate) fn open<P: Primitive>(seg: &Segment, name: &str) -> Result<P> {
    P::from_handle(typed(P::KIND).open(seg, name)?)
}

/// A reference to the header of a validated block, the common first check
/// of every primitive's `from_handle`: the block holds `size` bytes and
/// its `kind` field (the first 4 bytes) is `kind`.
pub(crate) fn header<H>(handle: &Handle, kind: u32, size: u64) -> Result<&H> {
    if handle.info.size < size || handle.first_line().u32_at(0) != kind {
        return Err(handle.corrupt(format!(
            "{} header disagrees with its table entry or overruns its block",
            crate::layout::kind::name(kind)
        )));
    }
    debug_assert!(std::mem::size_of::<H>() as u64 <= size);
    // SAFETY: the block lies in the mapping (check_block at open), is
    // 64-aligned and holds at least `size` >= size_of::<H>() bytes (just
    // checked). H is a layout struct of atomics and integers, valid for
    // every bit pattern; its plain fields are read only through the copy
    // `first_line` made, its atomics only atomically.
    Ok(unsafe { &*handle.block.cast::<H>() })
}

/// A primitive's state at one moment, for display (`shmds info`) and for
/// [`Segment::check`] (a lock held by a dead process is reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The kind's name ("lock", ...).
    pub kind: &'static str,
    /// The process holding it (a lock's or a writer's holder, the process
    /// running a once's initialiser), if any.
    pub holder_pid: Option<u32>,
    /// The holder's thread, when recorded.
    pub holder_tid: Option<u32>,
    /// Whether the holder still runs.
    pub holder_alive: Option<bool>,
    /// Waits sleeping on it, or about to.
    pub waiters: u32,
    /// The kind's count: permits, parties arrived, count left, readers,
    /// 1/0 for a set/clear event or a done/pending once.
    pub value: Option<u64>,
    /// Times it was taken over from a process that died holding it.
    pub owner_deaths: u64,
    /// One line for people: "held by pid 12 (thread 13), 2 waiting".
    pub summary: String,
}

/// The state of the primitive `info` names (any kind of this module).
pub(crate) fn status_of(seg: &Segment, info: &EntryInfo) -> Result<Option<Status>> {
    let handle = || Handle::at(seg, info.clone());
    let status = match info.kind {
        kind::LOCK => Lock::from_handle(handle()?)?.status(),
        kind::RWLOCK => RwLock::from_handle(handle()?)?.status(),
        kind::CONDITION => Condition::from_handle(handle()?)?.status(),
        kind::SEMAPHORE => Semaphore::from_handle(handle()?)?.status(),
        kind::BARRIER => Barrier::from_handle(handle()?)?.status(),
        kind::EVENT => Event::from_handle(handle()?)?.status(),
        kind::LATCH => Latch::from_handle(handle()?)?.status(),
        kind::ONCE => Once::from_handle(handle()?)?.status(),
        _ => return Ok(None),
    };
    Ok(Some(status))
}

/// Per-kind validation for `Segment::check`: the header; a claim held by a
/// dead process is a problem (it is taken over by the next waiter, but
/// what it guarded may be half-updated).
pub(crate) fn check(handle: &Handle) -> Result<Option<u64>> {
    let seg = handle.seg.clone();
    let status = status_of(&seg, &handle.info)?.unwrap_or_default();
    if status.holder_alive == Some(false) {
        return Err(handle.corrupt(format!(
            "{} is held by process {}, which died holding it (the next to take it is told; \
             check what it guarded)",
            status.kind,
            status.holder_pid.unwrap_or(0)
        )));
    }
    Ok(status.value)
}

/// The one-line summary of a holder word.
pub(crate) fn holder_summary(pid: u32, tid: u32, alive: bool) -> String {
    let thread = if tid != 0 {
        format!(" (thread {tid})")
    } else {
        String::new()
    };
    let dead = if alive { "" } else { ", which is dead" };
    format!("held by pid {pid}{thread}{dead}")
}

/// "", or ", N waiting".
pub(crate) fn waiting_summary(waiters: u32) -> String {
    if waiters == 0 {
        String::new()
    } else {
        format!(", {waiters} waiting")
    }
}

macro_rules! segment_methods {
    ($(
        $(#[$doc:meta])* $ty:ident: $create:ident, $open:ident, $open_or_create:ident
        ($($arg:ident: $argty:ty),*) => ($capacity:expr, $flags:expr);
    )*) => {
        impl Segment {$(
            $(#[$doc])*
            #[doc = concat!("\n\nCreate it; fails with [`Error::EntryExists`] if `name` exists.")]
            pub fn $create(&self, name: &str $(, $arg: $argty)*) -> Result<$ty> {
                create::<$ty>(self, name, $capacity, $flags, false)
            }

            #[doc = concat!("Open the ", stringify!($ty), " `name`.")]
            pub fn $open(&self, name: &str) -> Result<$ty> {
                open::<$ty>(self, name)
            }

            #[doc = concat!("Open the ", stringify!($ty), " `name`, creating it if it does not exist.")]
            pub fn $open_or_create(&self, name: &str $(, $arg: $argty)*) -> Result<$ty> {
                create::<$ty>(self, name, $capacity, $flags, true)
            }
        )*}
    };
}

segment_methods! {
    /// A robust lock (see [`Lock`]).
    Lock: create_lock, open_lock, open_or_create_lock () => (0, 0);
    /// A readers-writer lock with room for `reader_slots` reader processes
    /// at once ([`DEFAULT_READER_SLOTS`] is a good start; see [`RwLock`]).
    RwLock: create_rwlock, open_rwlock, open_or_create_rwlock (reader_slots: u32)
        => (reader_slots as u64, 0);
    /// A condition variable with its own lock (see [`Condition`]).
    Condition: create_condition, open_condition, open_or_create_condition () => (0, 0);
    /// A counting semaphore starting at `value` permits (see [`Semaphore`]).
    Semaphore: create_semaphore, open_semaphore, open_or_create_semaphore (value: u32)
        => (value as u64, 0);
    /// A barrier for `parties` parties (see [`Barrier`]).
    Barrier: create_barrier, open_barrier, open_or_create_barrier (parties: u32)
        => (parties as u64, 0);
    /// An event, initially clear (see [`Event`]).
    Event: create_event, open_event, open_or_create_event () => (0, 0);
    /// A latch that opens after `count` count-downs (see [`Latch`]).
    Latch: create_latch, open_latch, open_or_create_latch (count: u32) => (count as u64, 0);
    /// A run-once cell (see [`Once`]).
    Once: create_once, open_once, open_or_create_once () => (0, 0);
}

impl Segment {
    /// Create a bounded semaphore: like
    /// [`create_semaphore`](Segment::create_semaphore), but releasing more
    /// permits than `value` fails ([`Error::TooManyReleases`]), as Python's
    /// `threading.BoundedSemaphore`.
    pub fn create_bounded_semaphore(&self, name: &str, value: u32) -> Result<Semaphore> {
        create::<Semaphore>(
            self,
            name,
            value as u64,
            crate::layout::SEMAPHORE_BOUNDED,
            false,
        )
    }

    /// Open the bounded semaphore `name`, creating it with `value` permits
    /// if it does not exist.
    pub fn open_or_create_bounded_semaphore(&self, name: &str, value: u32) -> Result<Semaphore> {
        create::<Semaphore>(
            self,
            name,
            value as u64,
            crate::layout::SEMAPHORE_BOUNDED,
            true,
        )
    }

    /// The state of the coordination primitive `info` names (lock holder,
    /// waiters, count), or `None` for other kinds.
    pub fn primitive_status(&self, info: &EntryInfo) -> Result<Option<Status>> {
        status_of(self, info)
    }
}

/// A pid no process can have (Linux pids are below 2^22; stamps keep 24
/// bits): what a claim is restamped with when its holder is known dead but
/// the next taker must still be told (`OwnerDied`), see [`revoke`].
pub(crate) const GHOST_PID: u32 = 0x00ff_ffff;

/// The status text of a claim restamped with [`GHOST_PID`].
pub(crate) const REVOKED: &str = "held when the segment was restored or reopened in a new boot \
     (no process holds it: the next taker takes it over and is told the owner died)";

/// Restamp every claim of the primitive `handle` names with [`GHOST_PID`],
/// and forget its sleepers: what its holders' deaths would leave, with no
/// pid a live process could have. For a segment nobody else uses (a
/// durable segment opened in a new boot, a restored snapshot), where the
/// stamps name processes of another boot or of the snapshot's source.
/// Returns the claims restamped.
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    use crate::layout::{
        BarrierHeader, BarrierSlot, ConditionHeader, EventHeader, LatchHeader, LockHeader,
        LockState, OnceHeader, ReaderSlot, RwLockHeader, SemaphoreHeader, BARRIER_HEADER_SIZE,
        ONCE_DONE, RWLOCK_HEADER_SIZE,
    };
    let ghost_stamp = u64::from(GHOST_PID);
    let lock_state = |s: &LockState| -> u64 {
        s.sleepers.store(0, Ordering::Relaxed);
        if s.word.load(Ordering::Acquire) == 0 {
            return 0;
        }
        s.holder_tid.store(0, Ordering::Relaxed);
        s.holder_stamp.store(ghost_stamp, Ordering::Relaxed);
        s.word.store(GHOST_PID, Ordering::Release);
        1
    };
    let restamp = |stamp: &AtomicU64| -> u64 {
        if stamp.load(Ordering::Acquire) == 0 {
            return 0;
        }
        stamp.store(ghost_stamp, Ordering::Release);
        1
    };
    let size = |n: usize| n as u64;
    let again = || Handle::at(&handle.seg, handle.info.clone());
    Ok(match handle.info.kind {
        kind::LOCK => {
            let h: &LockHeader =
                header(handle, kind::LOCK, size(std::mem::size_of::<LockHeader>()))?;
            lock_state(&h.lock)
        }
        kind::CONDITION => {
            let h: &ConditionHeader = header(
                handle,
                kind::CONDITION,
                size(std::mem::size_of::<ConditionHeader>()),
            )?;
            h.waiters.store(0, Ordering::Relaxed);
            lock_state(&h.lock)
        }
        kind::RWLOCK => {
            // Validates the slots against the block.
            let _valid = RwLock::from_handle(again()?)?;
            let h: &RwLockHeader = header(handle, kind::RWLOCK, RWLOCK_HEADER_SIZE)?;
            h.drain_waiting.store(0, Ordering::Relaxed);
            let mut n = lock_state(&h.writer);
            for i in 0..handle.info.capacity as usize {
                // SAFETY: from_handle checked that `capacity` slots fit in
                // the block after the header.
                let slot = unsafe {
                    &*handle
                        .block
                        .add(RWLOCK_HEADER_SIZE as usize)
                        .cast::<ReaderSlot>()
                        .add(i)
                };
                if slot.count.load(Ordering::Acquire) != 0 {
                    n += restamp(&slot.stamp);
                }
            }
            n
        }
        kind::SEMAPHORE => {
            let h: &SemaphoreHeader = header(
                handle,
                kind::SEMAPHORE,
                size(std::mem::size_of::<SemaphoreHeader>()),
            )?;
            h.waiters.store(0, Ordering::Relaxed);
            0
        }
        kind::BARRIER => {
            let _valid = Barrier::from_handle(again()?)?;
            let h: &BarrierHeader = header(handle, kind::BARRIER, BARRIER_HEADER_SIZE)?;
            h.waiters.store(0, Ordering::Relaxed);
            let mut n = 0;
            for i in 0..handle.info.capacity as usize {
                // SAFETY: as for the rwlock's slots (Barrier::from_handle).
                let slot = unsafe {
                    &*handle
                        .block
                        .add(BARRIER_HEADER_SIZE as usize)
                        .cast::<BarrierSlot>()
                        .add(i)
                };
                n += restamp(&slot.stamp);
            }
            n
        }
        kind::EVENT => {
            let h: &EventHeader = header(
                handle,
                kind::EVENT,
                size(std::mem::size_of::<EventHeader>()),
            )?;
            h.waiters.store(0, Ordering::Relaxed);
            0
        }
        kind::LATCH => {
            let h: &LatchHeader = header(
                handle,
                kind::LATCH,
                size(std::mem::size_of::<LatchHeader>()),
            )?;
            h.waiters.store(0, Ordering::Relaxed);
            0
        }
        kind::ONCE => {
            let h: &OnceHeader =
                header(handle, kind::ONCE, size(std::mem::size_of::<OnceHeader>()))?;
            h.waiters.store(0, Ordering::Relaxed);
            let state = h.state.load(Ordering::Acquire);
            if state == 0 || state == ONCE_DONE {
                0
            } else {
                h.runner_stamp.store(ghost_stamp, Ordering::Relaxed);
                h.state.store(GHOST_PID, Ordering::Release);
                1
            }
        }
        _ => 0,
    })
}
