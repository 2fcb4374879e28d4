//! [`Semaphore`]: a counting semaphore, optionally bounded (Python's
//! `threading.Semaphore` and `BoundedSemaphore`).
//!
//! `value` is the number of permits. Acquiring compare-and-swaps it one
//! down (Acquire) when it is above 0, else spins briefly and sleeps on it
//! while it is 0. Releasing `n` compare-and-swaps it `n` up (SeqCst; a
//! bounded semaphore refuses to pass its initial value, an unbounded one
//! [`MAX_SEMAPHORE_VALUE`]) and wakes `n` sleepers if `waiters` is not 0.
//!
//! Permits have no owner (as in Python, any process may release): a
//! process that dies holding permits does not give them back. Where a
//! holder must be recovered, use a [`Lock`](super::Lock).

use super::{sleep, waiter, waiting_summary, Primitive, Spin, Status, Stop};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, SemaphoreHeader, SEMAPHORE_BOUNDED, SEMAPHORE_HEADER_SIZE};
use crate::sync::Ordering;
use std::time::Duration;

/// The most permits a semaphore holds.
pub const MAX_SEMAPHORE_VALUE: u32 = u32::MAX;

/// Take a permit if one is free now.
pub(crate) fn try_acquire(h: &SemaphoreHeader) -> bool {
    let mut v = h.value.load(Ordering::Relaxed);
    while v > 0 {
        match h
            .value
            .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return true,
            Err(now) => v = now,
        }
    }
    false
}

/// Take a permit, waiting as `wait` allows.
pub(crate) fn acquire(
    h: &SemaphoreHeader,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<(), Stop> {
    let mut spin = Spin::default();
    loop {
        if try_acquire(h) {
            return Ok(());
        }
        if wait.deadline.expired() {
            return Err(Stop::TimedOut);
        }
        if spin.snooze() {
            continue;
        }
        sleep(&h.value, 0, &h.waiters, wait)?;
    }
}

/// Add `n` permits, up to `bound`; `Err(value)` (nothing added) if that
/// would pass it.
pub(crate) fn release(h: &SemaphoreHeader, n: u32, bound: u32) -> std::result::Result<(), u32> {
    let mut v = h.value.load(Ordering::Relaxed);
    loop {
        let Some(next) = v.checked_add(n).filter(|&next| next <= bound) else {
            return Err(v);
        };
        match h
            .value
            .compare_exchange_weak(v, next, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(now) => v = now,
        }
    }
    if h.waiters.load(Ordering::SeqCst) != 0 {
        crate::wait::futex_wake(&h.value, n.min(i32::MAX as u32));
    }
    Ok(())
}

/// A counting semaphore shared by processes.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-semaphore-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let slots = seg.create_semaphore("gpu-slots", 2)?;
/// let a = slots.acquire()?;
/// let _b = slots.acquire()?;
/// assert!(slots.try_acquire()?.is_none());
/// drop(a); // gives the permit back
/// assert!(slots.try_acquire()?.is_some());
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// Permits have no owner: a process that dies holding some does not give
/// them back (see the module notes).
#[derive(Clone)]
pub struct Semaphore {
    handle: Handle,
    header: *const SemaphoreHeader,
    /// The most `value` may reach (the initial value if bounded).
    bound: u32,
    bounded: bool,
    initial: u32,
}

super::primitive_common!(Semaphore);

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("name", &self.name())
            .field("value", &self.value())
            .field("bounded", &self.bounded)
            .finish()
    }
}

/// A permit of a [`Semaphore`], given back when dropped.
#[must_use = "the permit is given back when it is dropped"]
pub struct Permit<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = self.semaphore.release(1);
    }
}

impl std::fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("semaphore", &self.semaphore.name())
            .finish()
    }
}

impl Permit<'_> {
    /// Keep the permit taken (give it back with [`Semaphore::release`]).
    pub fn forget(self) {
        std::mem::forget(self)
    }
}

impl Primitive for Semaphore {
    const KIND: u32 = kind::SEMAPHORE;
    const SHAPE: &'static str = "initial value";

    fn block_size(capacity: u64) -> Result<u64> {
        if capacity > MAX_SEMAPHORE_VALUE as u64 {
            return Err(Error::InvalidArgument(format!(
                "a semaphore holds at most {MAX_SEMAPHORE_VALUE} permits, not {capacity}"
            )));
        }
        Ok(SEMAPHORE_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, capacity: u64, flags: u32) {
        let h = block.cast::<SemaphoreHeader>();
        // SAFETY: a fresh block of SEMAPHORE_HEADER_SIZE bytes, unpublished:
        // plain writes of the fixed fields and of the initial value.
        unsafe {
            std::ptr::addr_of_mut!((*h).kind).write(kind::SEMAPHORE);
            std::ptr::addr_of_mut!((*h).flags).write(flags & SEMAPHORE_BOUNDED);
            std::ptr::addr_of_mut!((*h).initial).write(capacity);
            std::ptr::addr_of_mut!((*h).value)
                .cast::<u32>()
                .write(capacity as u32);
        }
    }

    fn from_handle(handle: Handle) -> Result<Semaphore> {
        let validated = (|| {
            let header: &SemaphoreHeader =
                super::header(&handle, kind::SEMAPHORE, SEMAPHORE_HEADER_SIZE)?;
            let line = handle.first_line();
            let flags = line.u32_at(std::mem::offset_of!(SemaphoreHeader, flags));
            let initial = line.u64_at(std::mem::offset_of!(SemaphoreHeader, initial));
            if initial != handle.info.capacity
                || initial > MAX_SEMAPHORE_VALUE as u64
                || flags & !SEMAPHORE_BOUNDED != 0
            {
                return Err(handle.corrupt("semaphore header disagrees with its table entry"));
            }
            Ok((header as *const SemaphoreHeader, flags, initial as u32))
        })();
        let (header, flags, initial) = handle.fresh(validated)?;
        let bounded = flags & SEMAPHORE_BOUNDED != 0;
        Ok(Semaphore {
            handle,
            header,
            bound: if bounded {
                initial
            } else {
                MAX_SEMAPHORE_VALUE
            },
            bounded,
            initial,
        })
    }

    fn status(&self) -> Status {
        let v = self.value();
        let waiters = self.header().waiters.load(Ordering::Relaxed);
        Status {
            kind: "semaphore",
            waiters,
            value: Some(v as u64),
            summary: format!(
                "{v} of {} permit{} free{}{}",
                self.initial,
                if self.initial == 1 { "" } else { "s" },
                if self.bounded { " (bounded)" } else { "" },
                waiting_summary(waiters)
            ),
            ..Status::default()
        }
    }

    fn flags(&self) -> u32 {
        if self.bounded {
            SEMAPHORE_BOUNDED
        } else {
            0
        }
    }
}

impl Semaphore {
    fn header(&self) -> &SemaphoreHeader {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &*self.header }
    }

    /// Take a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<Permit<'_>> {
        self.acquire_interruptible(None, None)?
            .ok_or_else(|| self.handle.timeout())
    }

    /// Take a permit if one is free now.
    pub fn try_acquire(&self) -> Result<Option<Permit<'_>>> {
        self.handle.check()?;
        Ok(try_acquire(self.header()).then(|| Permit { semaphore: self }))
    }

    /// Take a permit, waiting at most `timeout`; `Ok(None)` if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Permit<'_>>> {
        self.acquire_interruptible(Some(timeout), None)
    }

    /// Take a permit, waiting at most `timeout` (`None`: no limit) while
    /// `interrupt` returns `false` ([`Error::Interrupted`] once it says stop).
    pub fn acquire_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Option<Permit<'_>>> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        match acquire(self.header(), &mut wait) {
            Ok(()) => Ok(Some(Permit { semaphore: self })),
            Err(Stop::TimedOut) => Ok(None),
            Err(stop) => Err(stop.error(&self.handle)),
        }
    }

    /// Add `n` permits (waking as many waiters). A bounded semaphore fails
    /// with [`Error::TooManyReleases`] (adding none) if that would pass its
    /// initial value.
    pub fn release(&self, n: u32) -> Result<()> {
        self.handle.check()?;
        release(self.header(), n, self.bound).map_err(|value| Error::TooManyReleases {
            name: self.name().to_owned(),
            value,
            max: self.bound,
        })
    }

    /// Wait at most `timeout` (`None`: no limit), while `interrupt` returns
    /// `false`, until a permit is free, taking none: `Ok(true)` then (a
    /// [`try_acquire`](Semaphore::try_acquire) may succeed; another may be
    /// first), `Ok(false)` on a timeout. For `await` forms.
    pub fn wait_available(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let h = self.header();
        let mut wait = waiter(timeout, interrupt);
        loop {
            if h.value.load(Ordering::Acquire) > 0 {
                return Ok(true);
            }
            match sleep(&h.value, 0, &h.waiters, &mut wait) {
                Ok(()) => {}
                Err(Stop::TimedOut) => return Ok(false),
                Err(stop) => return Err(stop.error(&self.handle)),
            }
        }
    }

    /// Wake every waiter of this semaphore (in every process), so that
    /// each looks at its interrupt check; the others wait on.
    pub fn wake_waiters(&self) {
        crate::wait::futex_wake(&self.header().value, i32::MAX as u32);
    }

    /// Permits free now.
    pub fn value(&self) -> u32 {
        self.header().value.load(Ordering::Relaxed)
    }

    /// The value it was created with.
    pub fn initial_value(&self) -> u32 {
        self.initial
    }

    /// Whether releases beyond the initial value fail.
    pub fn is_bounded(&self) -> bool {
        self.bounded
    }
}
