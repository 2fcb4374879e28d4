//! [`RwLock`]: many readers or one writer, writer-preferring, robust for
//! both.
//!
//! *Readers* are counted per process, in [`ReaderSlot`]s (one cache line
//! each, claimed by a process on its first read lock and kept while it
//! runs): a read lock is one SeqCst increment of the process's own slot and
//! one SeqCst load of the writers' lock word, no shared counter that all
//! readers bounce. If the word is not 0 (a writer holds the lock, or waits
//! for readers to leave) the reader takes its increment back and waits
//! until the word is 0 ([`lock::wait_free`]): a waiting writer keeps new
//! readers out, so writers are not starved.
//!
//! *A writer* takes the writers' lock (the [`Lock`](super::Lock)
//! algorithm, so a dead writer is taken over and the next writer told),
//! then *drains*: it waits until every slot's count is 0. It raises
//! `drain_waiting` (SeqCst) before it reads the slots and sleeps on
//! `drain`; a reader that brings its slot to 0 then reads `drain_waiting`
//! (SeqCst) and, if set, bumps `drain` and wakes it. The increments and
//! loads are all SeqCst: a reader and a writer that start together cannot
//! both miss the other (the reader sees the word, or the writer its count):
//! each puts a SeqCst fence between its write and its read of the other's
//! word, which is what the memory model (and loom) needs for that.
//!
//! *A reader that died* leaves its slot's count up. A draining writer that
//! waited [`LIVENESS_EVERY`](super::LIVENESS_EVERY) asks whether each
//! counted slot's process runs; a dead one's slot is marked *reclaiming*
//! (stamp compare-and-swapped to the reclaimer's mark, so that a process
//! claiming the slot at the same moment cannot have its count wiped), its
//! count cleared into `reader_deaths`, and freed. A reader that waited for
//! a dead writer clears the word (compare-and-swap from the dead pid) and
//! is told, with its read guard ([`LockError::OwnerDied`]).

use super::lock::{self, died, give, outcome, take, LockError, LockResult, Taken, TryLockResult};
use super::{
    ask_alive, my_stamp, stamp_alive, stamp_pid, waiter, waiting_summary, Primitive, Status, Stop,
};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{
    kind, LockState, ReaderSlot, RwLockHeader, READER_SLOT_SIZE, RWLOCK_HEADER_SIZE,
};
use crate::process::current_pid;
use crate::sync::{fence, Ordering};
use std::time::Duration;

/// Reader slots of an rwlock made with no other number in mind.
pub const DEFAULT_READER_SLOTS: u32 = 64;
/// The most reader slots an rwlock has.
pub const MAX_READER_SLOTS: u32 = 1 << 16;

/// The stamp's start-time field all ones: the slot is being reclaimed by
/// the process whose pid is in the low bits.
const RECLAIMING: u64 = !((1 << 24) - 1);

/// The algorithm, over the header and its slots (loom builds these on the
/// heap; a segment, in its mapping).
pub(crate) struct RwCore<'a> {
    pub(crate) header: &'a RwLockHeader,
    pub(crate) slots: &'a [ReaderSlot],
}

impl RwCore<'_> {
    fn writer(&self) -> &LockState {
        &self.header.writer
    }

    /// The slot this process counts its read locks in: the one with its
    /// stamp, else a free one, else one of a dead process.
    pub(crate) fn claim(&self) -> Option<usize> {
        let me = my_stamp();
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.stamp.load(Ordering::Acquire) == me)
        {
            return Some(i);
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let stamp = slot.stamp.load(Ordering::Acquire);
            let free = stamp == 0;
            if !free && !self.reclaimable(stamp) {
                continue;
            }
            if slot
                .stamp
                .compare_exchange(stamp, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if !free {
                    // A dead process's slot, taken before a writer reclaimed it.
                    let left = slot.count.swap(0, Ordering::SeqCst);
                    self.header
                        .reader_deaths
                        .fetch_add(left as u64, Ordering::Relaxed);
                }
                return Some(i);
            }
        }
        None
    }

    /// Whether a slot with `stamp` belongs to a dead process (or to a
    /// reclaimer that died reclaiming it).
    fn reclaimable(&self, stamp: u64) -> bool {
        if stamp & RECLAIMING == RECLAIMING {
            return !crate::process::is_alive(stamp_pid(stamp));
        }
        stamp_pid(stamp) != current_pid() && !stamp_alive(stamp)
    }

    /// Take a read lock counted in slot `i`. `Ok(Some(pid))` when a writer
    /// that died holding the lock had to be cleared first.
    pub(crate) fn read(
        &self,
        i: usize,
        wait: &mut crate::wait::Wait<'_>,
    ) -> std::result::Result<Option<u32>, Stop> {
        let slot = &self.slots[i];
        let mut died = None;
        loop {
            slot.count.fetch_add(1, Ordering::SeqCst);
            crate::fault::pause_point("coord.rwlock.counted");
            // Pairs with the writer's fence between taking the word and
            // reading the counts: one of us sees the other.
            fence(Ordering::SeqCst);
            if self.writer().word.load(Ordering::SeqCst) == 0 {
                return Ok(died);
            }
            self.leave(slot);
            if let Some(pid) = lock::wait_free(self.writer(), wait)? {
                died = Some(pid);
            }
        }
    }

    /// Let go of a read lock counted in slot `i`.
    pub(crate) fn read_unlock(&self, i: usize) {
        #[cfg(loom)]
        if crate::fault::crash::is_dying(current_pid()) {
            self.slots[i].count.fetch_add(0, Ordering::Release);
            return;
        }
        self.leave(&self.slots[i]);
    }

    fn leave(&self, slot: &ReaderSlot) {
        let before = slot.count.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.header.drain_waiting.load(Ordering::SeqCst) != 0 {
            self.header.drain.fetch_add(1, Ordering::SeqCst);
            crate::wait::futex_wake(&self.header.drain, 1);
        }
    }

    /// Take the write lock: the writers' lock, then wait for the readers
    /// to leave. On a timeout or interrupt while draining, the writers'
    /// lock is given back.
    pub(crate) fn write(
        &self,
        wait: &mut crate::wait::Wait<'_>,
    ) -> std::result::Result<Taken, Stop> {
        let taken = take(self.writer(), wait)?;
        // Pairs with the reader's fence between counting itself and reading
        // the word (a Dekker handshake; SeqCst fences, not SeqCst accesses,
        // are what orders a store before a later load of another word).
        fence(Ordering::SeqCst);
        match self.drain(wait) {
            Ok(()) => Ok(taken),
            Err(stop) => {
                give(self.writer(), true);
                Err(stop)
            }
        }
    }

    /// Wait until no slot counts a reader (we hold the writers' lock).
    fn drain(&self, wait: &mut crate::wait::Wait<'_>) -> std::result::Result<(), Stop> {
        let h = self.header;
        let once = wait.deadline.expired();
        let mut spin = super::Spin::lock();
        let since = std::time::Instant::now();
        let result = loop {
            let seen = h.drain.load(Ordering::SeqCst);
            h.drain_waiting.store(1, Ordering::SeqCst);
            if self
                .slots
                .iter()
                .all(|s| s.count.load(Ordering::SeqCst) == 0)
            {
                break Ok(());
            }
            if !once && spin.snooze() {
                continue;
            }
            if once || cfg!(loom) || since.elapsed() >= super::LIVENESS_EVERY {
                if self.reclaim_dead() {
                    continue;
                }
                if once {
                    break Err(Stop::TimedOut);
                }
            }
            if let Err(stop) = super::nap(&h.drain, seen, wait) {
                break Err(stop);
            }
        };
        h.drain_waiting.store(0, Ordering::SeqCst);
        result
    }

    /// Free the counted slots of dead processes; whether any was freed.
    fn reclaim_dead(&self) -> bool {
        let mark = RECLAIMING | current_pid() as u64;
        let mut freed = false;
        for slot in self.slots {
            if slot.count.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == 0 || !self.reclaimable(stamp) {
                continue;
            }
            if slot
                .stamp
                .compare_exchange(stamp, mark, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let left = slot.count.swap(0, Ordering::SeqCst);
                self.header
                    .reader_deaths
                    .fetch_add(left as u64, Ordering::Relaxed);
                slot.stamp.store(0, Ordering::Release);
                freed = true;
            }
        }
        freed
    }

    /// Give the write lock back (every waiting reader and writer wakes).
    pub(crate) fn write_unlock(&self) {
        give(self.writer(), true);
    }

    /// Wait until a write lock may be had: the writers' lock free (or its
    /// holder dead) and no read lock counted, taking nothing. Readers that
    /// let go wake only a draining writer, so this looks at the slots
    /// every millisecond; after [`LIVENESS_EVERY`](super::LIVENESS_EVERY)
    /// of read locks it returns anyway (a `try_write` then takes back the
    /// read locks of dead readers).
    pub(crate) fn wait_writable(
        &self,
        wait: &mut crate::wait::Wait<'_>,
    ) -> std::result::Result<(), Stop> {
        let since = std::time::Instant::now();
        loop {
            lock::wait_unheld(self.writer(), wait)?;
            if self.readers() == 0 || since.elapsed() >= super::LIVENESS_EVERY {
                return Ok(());
            }
            if wait.interrupted() {
                return Err(Stop::Interrupted);
            }
            let Some(nap) = wait.deadline.next_sleep() else {
                return Err(Stop::TimedOut);
            };
            let seen = self.header.drain.load(Ordering::SeqCst);
            crate::wait::futex_wait(
                &self.header.drain,
                seen,
                Some(nap.min(Duration::from_millis(1))),
            );
        }
    }

    /// Read locks held now, over all slots.
    pub(crate) fn readers(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.count.load(Ordering::Relaxed) as u64)
            .sum()
    }
}

/// A readers-writer lock shared by processes: many readers or one writer,
/// writer-preferring (a waiting writer keeps new readers out), robust for
/// both (a dead writer is taken over and the next taker told with
/// [`LockError::OwnerDied`]; a dead reader's read locks are taken back).
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rwlock-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let config = seg.create_rwlock("config", shmds::DEFAULT_READER_SLOTS)?;
/// {
///     let _r1 = config.read()?;
///     let _r2 = config.read()?; // readers share
///     assert!(config.try_write()?.is_none());
/// }
/// let _w = config.write()?;
/// assert!(config.try_read()?.is_none());
/// # drop(_w);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// Up to `reader_slots` processes hold read locks at once (each process's
/// threads share one slot); a process beyond that gets
/// [`Error::ReaderSlotsFull`].
pub struct RwLock {
    handle: Handle,
    header: *const RwLockHeader,
    slots: *const ReaderSlot,
    nslots: usize,
    /// `pid << 32 | slot + 1` of the slot this process claimed (0: none yet).
    mine: std::sync::atomic::AtomicU64,
}

super::primitive_common!(RwLock);

/// Another handle to the same lock (a reference count); it shares this
/// process's reader slot.
impl Clone for RwLock {
    fn clone(&self) -> RwLock {
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        RwLock {
            handle: self.handle.clone(),
            header: self.header,
            slots: self.slots,
            nslots: self.nslots,
            mine: AtomicU64::new(self.mine.load(Relaxed)),
        }
    }
}

impl std::fmt::Debug for RwLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock")
            .field("name", &self.name())
            .field("state", &self.status().summary)
            .finish()
    }
}

/// Holds a read lock on an [`RwLock`] until dropped.
#[must_use = "the read lock is released when the guard is dropped"]
pub struct ReadGuard<'a> {
    lock: &'a RwLock,
    slot: usize,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if self.lock.handle.check().is_ok() {
            self.lock.core().read_unlock(self.slot);
        }
    }
}

impl std::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("lock", &self.lock.name())
            .finish()
    }
}

impl ReadGuard<'_> {
    /// Keep the read lock after the guard is gone (release it with
    /// [`RwLock::read_unlock`]).
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

/// Holds the write lock on an [`RwLock`] until dropped.
#[must_use = "the write lock is released when the guard is dropped"]
pub struct WriteGuard<'a> {
    lock: &'a RwLock,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.lock.handle.check().is_ok() {
            self.lock.core().write_unlock();
        }
    }
}

impl std::fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard")
            .field("lock", &self.lock.name())
            .finish()
    }
}

impl WriteGuard<'_> {
    /// Keep the write lock after the guard is gone (release it with
    /// [`RwLock::write_unlock`]).
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl Primitive for RwLock {
    const KIND: u32 = kind::RWLOCK;
    const SHAPE: &'static str = "reader slots";

    fn block_size(capacity: u64) -> Result<u64> {
        if capacity == 0 || capacity > MAX_READER_SLOTS as u64 {
            return Err(Error::InvalidArgument(format!(
                "an rwlock has 1..={MAX_READER_SLOTS} reader slots, not {capacity}"
            )));
        }
        Ok(RWLOCK_HEADER_SIZE + capacity * READER_SLOT_SIZE)
    }

    unsafe fn init(block: *mut u8, capacity: u64, _flags: u32) {
        let h = block.cast::<RwLockHeader>();
        // SAFETY: a fresh block of block_size(capacity) bytes; the atomics
        // and slots start zero (free, no readers). The fixed fields are
        // plain integers written before the entry is published.
        unsafe {
            std::ptr::addr_of_mut!((*h).kind).write(kind::RWLOCK);
            std::ptr::addr_of_mut!((*h).reader_slots).write(capacity as u32);
            std::ptr::addr_of_mut!((*h).slots_offset).write(RWLOCK_HEADER_SIZE);
        }
    }

    fn from_handle(handle: Handle) -> Result<RwLock> {
        let validated = (|| {
            let header: &RwLockHeader = super::header(&handle, kind::RWLOCK, RWLOCK_HEADER_SIZE)?;
            let line = handle.first_line();
            let nslots = handle.info.capacity;
            let fits = Self::block_size(nslots).is_ok_and(|n| n <= handle.info.size);
            if line.u32_at(std::mem::offset_of!(RwLockHeader, reader_slots)) as u64 != nslots
                || line.u64_at(std::mem::offset_of!(RwLockHeader, slots_offset))
                    != RWLOCK_HEADER_SIZE
                || !fits
            {
                return Err(handle.corrupt(
                    "rwlock header disagrees with its table entry or overruns its block",
                ));
            }
            Ok((header as *const RwLockHeader, nslots as usize))
        })();
        let (header, nslots) = handle.fresh(validated)?;
        // SAFETY: the slots lie inside the block (block_size checked above).
        let slots = unsafe {
            handle
                .block
                .add(RWLOCK_HEADER_SIZE as usize)
                .cast::<ReaderSlot>()
        };
        Ok(RwLock {
            handle,
            header,
            slots,
            nslots,
            mine: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn status(&self) -> Status {
        let core = self.core();
        let mut s = lock::status(core.writer(), "rwlock");
        let readers = core.readers();
        s.value = Some(readers);
        let writer = match s.holder_pid {
            None => "no writer".to_owned(),
            Some(_) => format!("writer {}", s.summary),
        };
        let reader_text = match readers {
            0 => String::new(),
            1 => ", 1 read lock".to_owned(),
            n => format!(", {n} read locks"),
        };
        let dead = core.header.reader_deaths.load(Ordering::Relaxed);
        let dead_text = if dead == 0 {
            String::new()
        } else {
            format!(", {dead} read locks of dead readers taken back")
        };
        s.summary = format!("{writer}{reader_text}{dead_text}{}", waiting_summary(0));
        s
    }
}

impl RwLock {
    fn core(&self) -> RwCore<'_> {
        // SAFETY: validated at open: the header and `nslots` slots lie in
        // the block, which the mapping keeps alive as long as `handle`.
        unsafe {
            RwCore {
                header: &*self.header,
                slots: std::slice::from_raw_parts(self.slots, self.nslots),
            }
        }
    }

    /// This process's reader slot, claimed on first use (again after a fork).
    fn slot(&self) -> Result<usize> {
        let pid = current_pid();
        let mine = self.mine.load(std::sync::atomic::Ordering::Relaxed);
        if mine >> 32 == pid as u64 && mine & 0xffff_ffff != 0 {
            return Ok((mine & 0xffff_ffff) as usize - 1);
        }
        let i = self.core().claim().ok_or_else(|| Error::ReaderSlotsFull {
            name: self.name().to_owned(),
            slots: self.nslots as u32,
        })?;
        self.mine.store(
            (pid as u64) << 32 | (i as u64 + 1),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(i)
    }

    /// Take a read lock, waiting while a writer holds or waits for the lock.
    pub fn read(&self) -> LockResult<ReadGuard<'_>> {
        lock::blocking(&self.handle, self.read_interruptible(None, None))
    }

    /// Take a read lock if no writer holds or waits for the lock now.
    pub fn try_read(&self) -> TryLockResult<ReadGuard<'_>> {
        self.read_interruptible(Some(Duration::ZERO), None)
    }

    /// Take a read lock, waiting at most `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> TryLockResult<ReadGuard<'_>> {
        self.read_interruptible(Some(timeout), None)
    }

    /// Take a read lock, waiting at most `timeout` (`None`: no limit) while
    /// `interrupt` returns `false`.
    pub fn read_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> TryLockResult<ReadGuard<'_>> {
        self.handle.check()?;
        let slot = self.slot()?;
        let mut wait = waiter(timeout, interrupt);
        let guard = || ReadGuard { lock: self, slot };
        match self.core().read(slot, &mut wait) {
            Ok(None) => Ok(Some(guard())),
            Ok(Some(pid)) => Err(died(&self.handle, pid, guard())),
            Err(Stop::TimedOut) => Ok(None),
            Err(stop) => Err(LockError::Failed(stop.error(&self.handle))),
        }
    }

    /// Take the write lock, waiting for the writer before and the readers.
    pub fn write(&self) -> LockResult<WriteGuard<'_>> {
        lock::blocking(&self.handle, self.write_interruptible(None, None))
    }

    /// Take the write lock if nobody holds the lock now.
    pub fn try_write(&self) -> TryLockResult<WriteGuard<'_>> {
        self.write_interruptible(Some(Duration::ZERO), None)
    }

    /// Take the write lock, waiting at most `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> TryLockResult<WriteGuard<'_>> {
        self.write_interruptible(Some(timeout), None)
    }

    /// Take the write lock, waiting at most `timeout` (`None`: no limit)
    /// while `interrupt` returns `false`.
    pub fn write_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> TryLockResult<WriteGuard<'_>> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        let taken = self.core().write(&mut wait);
        outcome(&self.handle, taken, || WriteGuard { lock: self })
    }

    /// Release a read lock this process holds, without a guard; fails with
    /// [`Error::NotOwner`] if it holds none.
    pub fn read_unlock(&self) -> Result<()> {
        self.handle.check()?;
        let slot = self.slot()?;
        let core = self.core();
        // Only this process changes its slot's count upwards, so a count
        // above 0 stays so until we take it down.
        if core.slots[slot].count.load(Ordering::SeqCst) == 0 {
            return Err(Error::NotOwner {
                name: self.name().to_owned(),
                holder: 0,
            });
        }
        core.read_unlock(slot);
        Ok(())
    }

    /// Release the write lock this process holds, without a guard; fails
    /// with [`Error::NotOwner`] if it does not hold it.
    pub fn write_unlock(&self) -> Result<()> {
        self.handle.check()?;
        lock::give_checked(self.core().writer(), &self.handle, true)
    }

    /// Wait at most `timeout` (`None`: no limit), while `interrupt` returns
    /// `false`, until a read lock may be had (no writer, or a dead one),
    /// taking nothing: `Ok(false)` on a timeout. For `await` forms.
    pub fn wait_readable(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let r = lock::wait_unheld(self.core().writer(), &mut waiter(timeout, interrupt));
        self.waited(r)
    }

    /// As [`wait_readable`](RwLock::wait_readable), until the write lock
    /// may be had (no writer and no reader; see the module notes: this
    /// may return while read locks are held, and a stream of readers
    /// that overlap keeps such a waiter out, unlike a blocking `write`).
    pub fn wait_writable(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let r = self.core().wait_writable(&mut waiter(timeout, interrupt));
        self.waited(r)
    }

    fn waited(&self, r: std::result::Result<(), Stop>) -> Result<bool> {
        match r {
            Ok(()) => Ok(true),
            Err(Stop::TimedOut) => Ok(false),
            Err(stop) => Err(stop.error(&self.handle)),
        }
    }

    /// Wake every waiter of this rwlock (in every process), so that each
    /// looks at its interrupt check; the others wait on.
    pub fn wake_waiters(&self) {
        let core = self.core();
        lock::wake_all(core.writer());
        crate::wait::futex_wake(&core.header.drain, i32::MAX as u32);
    }

    /// Read locks held now (all processes).
    pub fn readers(&self) -> u64 {
        self.core().readers()
    }

    /// The writer holding (or waiting to drain for) the lock: its pid.
    pub fn writer(&self) -> Option<u32> {
        match self.core().writer().word.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether the writer recorded now is alive (`None` without one).
    pub fn writer_alive(&self) -> Option<bool> {
        let core = self.core();
        let stamp = core.writer().holder_stamp.load(Ordering::Acquire);
        self.writer().map(|pid| ask_alive(pid, stamp))
    }

    /// Number of reader slots.
    pub fn reader_slots(&self) -> u32 {
        self.nslots as u32
    }
}
