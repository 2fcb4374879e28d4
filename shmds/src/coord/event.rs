//! [`Event`] (a flag waiters wait for, Python's `threading.Event`) and
//! [`Latch`] (a count that opens a gate at zero, C++'s `std::latch`).
//!
//! *Event.* `flag` is 1 when set. `set` swaps it to 1 (SeqCst) and wakes
//! every sleeper if `waiters` is not 0; `clear` stores 0; `wait` spins
//! briefly, then sleeps on `flag` while it is 0.
//!
//! *Latch.* `count` starts at the count given and only goes down:
//! `count_down(n)` compare-and-swaps it `n` lower (SeqCst; more than is
//! left fails) and, on reaching 0, wakes every sleeper; `wait` sleeps on
//! `count` until it reads 0.
//!
//! Neither holds anything a dying process could keep: a waiter that dies
//! leaves `waiters` one too high (a wake-up call for nobody); a process
//! that dies before it sets the event or counts down never does (wait
//! with a timeout where that matters).

use super::{sleep, waiter, waiting_summary, Primitive, Spin, Status, Stop};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, EventHeader, LatchHeader, EVENT_HEADER_SIZE, LATCH_HEADER_SIZE};
use crate::sync::{AtomicU32, Ordering};
use std::time::Duration;

/// Wait until `ready(word value)`, sleeping on `word` otherwise.
fn wait_until(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    ready: impl Fn(u32) -> bool,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<(), Stop> {
    let mut spin = Spin::default();
    loop {
        let v = word.load(Ordering::Acquire);
        if ready(v) {
            return Ok(());
        }
        if wait.deadline.expired() {
            return Err(Stop::TimedOut);
        }
        if spin.snooze() {
            continue;
        }
        sleep(word, v, sleepers, wait)?;
    }
}

/// The public shape of a wait's outcome: `Ok(true)` once ready,
/// `Ok(false)` on a timeout.
fn waited(handle: &Handle, r: std::result::Result<(), Stop>) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(Stop::TimedOut) => Ok(false),
        Err(stop) => Err(stop.error(handle)),
    }
}

pub(crate) fn set(h: &EventHeader) {
    h.flag.swap(1, Ordering::SeqCst);
    super::wake(&h.flag, &h.waiters, true);
}

pub(crate) fn wait_set(
    h: &EventHeader,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<(), Stop> {
    wait_until(&h.flag, &h.waiters, |v| v != 0, wait)
}

/// An event flag shared by processes: waiters wait until it is set.
///
/// ```
/// use shmds::Segment;
/// use std::time::Duration;
/// # let name = format!("doc-event-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let ready = seg.create_event("data-ready")?;
/// assert!(!ready.wait_timeout(Duration::from_millis(1))?);
/// ready.set();
/// assert!(ready.is_set());
/// ready.wait()?;
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    handle: Handle,
    header: *const EventHeader,
}

super::primitive_common!(Event);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("set", &self.is_set())
            .finish()
    }
}

impl Primitive for Event {
    const KIND: u32 = kind::EVENT;
    const SHAPE: &'static str = "capacity";

    fn block_size(_capacity: u64) -> Result<u64> {
        Ok(EVENT_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, _capacity: u64, _flags: u32) {
        // SAFETY: a fresh block of EVENT_HEADER_SIZE bytes; the rest starts
        // zero (clear, nobody waiting).
        unsafe { block.cast::<u32>().write(kind::EVENT) };
    }

    fn from_handle(handle: Handle) -> Result<Event> {
        let header: *const EventHeader =
            handle.fresh(super::header(&handle, kind::EVENT, EVENT_HEADER_SIZE))?;
        Ok(Event { handle, header })
    }

    fn status(&self) -> Status {
        let set = self.is_set();
        let waiters = self.header().waiters.load(Ordering::Relaxed);
        Status {
            kind: "event",
            waiters,
            value: Some(u64::from(set)),
            summary: format!(
                "{}{}",
                if set { "set" } else { "clear" },
                waiting_summary(waiters)
            ),
            ..Status::default()
        }
    }
}

impl Event {
    fn header(&self) -> &EventHeader {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &*self.header }
    }

    /// Set the flag, waking every waiter.
    pub fn set(&self) {
        if self.handle.check().is_ok() {
            set(self.header());
        }
    }

    /// Clear the flag.
    pub fn clear(&self) {
        if self.handle.check().is_ok() {
            self.header().flag.store(0, Ordering::SeqCst);
        }
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.header().flag.load(Ordering::Acquire) != 0
    }

    /// Wait until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.wait_interruptible(None, None).map(|_| ())
    }

    /// Wait at most `timeout`; whether the flag was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_interruptible(Some(timeout), None)
    }

    /// Wait at most `timeout` (`None`: no limit) while `interrupt` returns
    /// `false`; whether the flag was set.
    pub fn wait_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        waited(&self.handle, wait_set(self.header(), &mut wait))
    }

    /// Wake every waiter without setting the flag (they look at their
    /// interrupt checks; the bindings' cancellation uses it).
    pub fn wake_waiters(&self) {
        crate::wait::futex_wake(&self.header().flag, i32::MAX as u32);
    }
}

pub(crate) fn count_down(h: &LatchHeader, n: u32) -> std::result::Result<u32, u32> {
    let mut c = h.count.load(Ordering::Relaxed);
    loop {
        if n > c {
            return Err(c);
        }
        match h
            .count
            .compare_exchange_weak(c, c - n, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => c = now,
        }
    }
    if c == n && n != 0 {
        super::wake(&h.count, &h.waiters, true);
    }
    Ok(c - n)
}

pub(crate) fn wait_zero(
    h: &LatchHeader,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<(), Stop> {
    wait_until(&h.count, &h.waiters, |v| v == 0, wait)
}

/// A count-down latch shared by processes: waiters wait until `count`
/// count-downs happened; then it stays open for good.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-latch-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let started = seg.create_latch("workers-started", 2)?;
/// started.count_down(1)?;
/// assert_eq!(started.count(), 1);
/// started.count_down(1)?;
/// started.wait()?; // open
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Latch {
    handle: Handle,
    header: *const LatchHeader,
    initial: u32,
}

super::primitive_common!(Latch);

impl std::fmt::Debug for Latch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latch")
            .field("name", &self.name())
            .field("count", &self.count())
            .finish()
    }
}

impl Primitive for Latch {
    const KIND: u32 = kind::LATCH;
    const SHAPE: &'static str = "count";

    fn block_size(capacity: u64) -> Result<u64> {
        if capacity > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "a latch counts down from at most {}, not {capacity}",
                u32::MAX
            )));
        }
        Ok(LATCH_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, capacity: u64, _flags: u32) {
        let h = block.cast::<LatchHeader>();
        // SAFETY: a fresh block of LATCH_HEADER_SIZE bytes, unpublished.
        unsafe {
            std::ptr::addr_of_mut!((*h).kind).write(kind::LATCH);
            std::ptr::addr_of_mut!((*h).initial).write(capacity);
            std::ptr::addr_of_mut!((*h).count)
                .cast::<u32>()
                .write(capacity as u32);
        }
    }

    fn from_handle(handle: Handle) -> Result<Latch> {
        let validated = (|| {
            let header: &LatchHeader = super::header(&handle, kind::LATCH, LATCH_HEADER_SIZE)?;
            let initial = handle
                .first_line()
                .u64_at(std::mem::offset_of!(LatchHeader, initial));
            if initial != handle.info.capacity || initial > u32::MAX as u64 {
                return Err(handle.corrupt("latch header disagrees with its table entry"));
            }
            Ok((header as *const LatchHeader, initial as u32))
        })();
        let (header, initial) = handle.fresh(validated)?;
        Ok(Latch {
            handle,
            header,
            initial,
        })
    }

    fn status(&self) -> Status {
        let c = self.count();
        let waiters = self.header().waiters.load(Ordering::Relaxed);
        Status {
            kind: "latch",
            waiters,
            value: Some(c as u64),
            summary: if c == 0 {
                format!("open (counted down from {})", self.initial)
            } else {
                format!("{c} of {} to go{}", self.initial, waiting_summary(waiters))
            },
            ..Status::default()
        }
    }
}

impl Latch {
    fn header(&self) -> &LatchHeader {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &*self.header }
    }

    /// Count down by `n`, opening the latch (waking every waiter) when the
    /// count reaches 0; returns the count left. Counting down by more than
    /// is left fails with [`Error::InvalidArgument`] and changes nothing.
    pub fn count_down(&self, n: u32) -> Result<u32> {
        self.handle.check()?;
        count_down(self.header(), n).map_err(|left| {
            Error::InvalidArgument(format!(
                "latch {:?} has {left} count-downs left, fewer than the {n} asked for",
                self.name()
            ))
        })
    }

    /// Count-downs still awaited.
    pub fn count(&self) -> u32 {
        self.header().count.load(Ordering::Acquire)
    }

    /// The count it started from.
    pub fn initial_count(&self) -> u32 {
        self.initial
    }

    /// Whether the latch is open (count 0).
    pub fn try_wait(&self) -> bool {
        self.count() == 0
    }

    /// Wait until the latch is open.
    pub fn wait(&self) -> Result<()> {
        self.wait_interruptible(None, None).map(|_| ())
    }

    /// Wait at most `timeout`; whether the latch opened.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.wait_interruptible(Some(timeout), None)
    }

    /// Wait at most `timeout` (`None`: no limit) while `interrupt` returns
    /// `false`; whether the latch opened.
    pub fn wait_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        waited(&self.handle, wait_zero(self.header(), &mut wait))
    }

    /// Count down by one and wait for the latch to open.
    pub fn arrive_and_wait(&self) -> Result<()> {
        self.count_down(1)?;
        self.wait()
    }

    /// Wake every waiter (they look at their interrupt checks).
    pub fn wake_waiters(&self) {
        crate::wait::futex_wake(&self.header().count, i32::MAX as u32);
    }
}
