//! [`Condition`]: a condition variable with its own robust lock, in the
//! shape of Python's `threading.Condition` (and Rust's `Condvar`).
//!
//! *Waiting.* A waiter holds the lock. It reads `seq`, counts itself in
//! `waiters` (the sleepers' count, SeqCst) and in the low half of
//! `signals` (*unpicked*: waits no notify has picked yet), gives the lock
//! back, and sleeps on `seq`. Once `seq` differs from the value it read
//! first (a notify came since it started waiting), it may take a *pick*
//! (the high half of `signals`, one down by compare-and-swap): then it was
//! notified. Then it takes the lock again (blocking, like
//! `threading.Condition.wait`), which may report that a holder died
//! ([`LockError::OwnerDied`]).
//!
//! *Notifying.* `notify(n)` moves `k = min(n, unpicked)` from unpicked to
//! picks in one compare-and-swap of `signals`, then bumps `seq` (SeqCst)
//! and wakes that many sleepers if `waiters` is not 0. So at most `n`
//! waits end per notify (as `threading.Condition.notify(n)` promises), and
//! only waits that started before it: a waiter counted by a notify read
//! `seq` before the notify bumped it. A waiter woken while the picks are
//! gone sleeps again.
//!
//! *Leaving without a pick.* A wait that times out or is interrupted
//! takes its count back (after it took the lock again): one unpicked if
//! there is one, else one pick (all waits left were picked, one pick too
//! many). A timed-out wait that may take a pick takes it instead, and
//! reports a notify, so that no notify is lost to a timeout.
//!
//! A waiter that dies leaves its count in `signals` and `waiters`: a
//! notify may then pick it, and a later wait end at once (a spurious
//! wake-up, which a wait in a loop that checks the condition, or
//! [`Condition::wait_while`], absorbs).

use super::lock::{self, died, give, take, LockError, LockGuard, LockResult, Taken};
use super::{nap, waiter, waiting_summary, Primitive, Status, Stop};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, ConditionHeader, LockState, CONDITION_HEADER_SIZE};
use crate::sync::{AtomicU64, Ordering};
use std::time::Duration;

/// One pick in the high half of a `signals` word.
const PICK: u64 = 1 << 32;

/// Pick up to `n` unpicked waits (a notify); the picks outstanding after.
fn pick(signals: &AtomicU64, n: u32) -> u32 {
    let mut s = signals.load(Ordering::SeqCst);
    loop {
        let unpicked = s as u32;
        let k = unpicked.min(n) as u64;
        let next = s - k + k * PICK;
        match signals.compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return (next >> 32) as u32,
            Err(now) => s = now,
        }
    }
}

/// Take one pick, if there is one (a notified waiter).
fn take_pick(signals: &AtomicU64) -> bool {
    let mut s = signals.load(Ordering::SeqCst);
    while s >= PICK {
        match signals.compare_exchange_weak(s, s - PICK, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(now) => s = now,
        }
    }
    false
}

/// A wait that ends without a pick takes its count back: one unpicked,
/// else (every wait left was picked) one pick. Whether picks are left
/// for other waiters.
fn leave(signals: &AtomicU64) -> bool {
    let mut s = signals.load(Ordering::SeqCst);
    loop {
        let next = if s as u32 != 0 {
            s - 1
        } else if s >= PICK {
            s - PICK
        } else {
            return false; // not a state a live waiter sees (a peer wrote it)
        };
        match signals.compare_exchange_weak(s, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next >= PICK,
            Err(now) => s = now,
        }
    }
}

/// The wait of a process holding `h`'s lock (see the module notes): whether
/// a notify ended it (`Err` on an interrupt), and the pid of a dead holder
/// the lock was taken back from. The lock is held again on return.
pub(crate) fn wait_core(
    h: &ConditionHeader,
    wait: &mut crate::wait::Wait<'_>,
) -> (std::result::Result<bool, Stop>, Option<u32>) {
    let entered = h.seq.load(Ordering::SeqCst);
    h.waiters.fetch_add(1, Ordering::SeqCst);
    h.signals.fetch_add(1, Ordering::SeqCst);
    give(&h.lock, false);
    let mut stopped = None;
    loop {
        let seen = h.seq.load(Ordering::SeqCst);
        if seen != entered && take_pick(&h.signals) {
            break;
        }
        // The sleepers count of `seq` is `waiters` itself (counted once
        // for the whole wait, above).
        if let Err(stop) = nap(&h.seq, seen, wait) {
            stopped = Some(stop);
            break;
        }
    }
    h.waiters.fetch_sub(1, Ordering::SeqCst);
    // Take the lock back whatever happened (a blocking take, as
    // threading.Condition.wait does).
    let taken = match take(&h.lock, &mut waiter(None, None)) {
        Ok(Taken::FromDead(pid)) => Some(pid),
        _ => None,
    };
    match stopped {
        Some(Stop::TimedOut)
            if h.seq.load(Ordering::SeqCst) != entered && take_pick(&h.signals) =>
        {
            (Ok(true), taken)
        }
        Some(stop) => {
            if leave(&h.signals) && h.waiters.load(Ordering::SeqCst) != 0 {
                // A pick meant for us, perhaps: another waiter takes it.
                crate::wait::futex_wake(&h.seq, 1);
            }
            match stop {
                // The caller holds the lock again and sees the interrupt.
                Stop::Interrupted => (Err(stop), taken),
                Stop::TimedOut => (Ok(false), taken),
            }
        }
        None => (Ok(true), taken),
    }
}

/// Notify up to `n` of the waits in progress on `h`.
pub(crate) fn notify_core(h: &ConditionHeader, n: u32) {
    let picks = pick(&h.signals, n);
    h.seq.fetch_add(1, Ordering::SeqCst);
    if picks != 0 && h.waiters.load(Ordering::SeqCst) != 0 {
        crate::wait::futex_wake(&h.seq, picks.min(i32::MAX as u32));
    }
}

/// Whether a timed wait ended by timing out (as `std::sync::WaitTimeoutResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// `true` if the wait ended because the time ran out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable shared by processes, with its own robust lock.
///
/// ```
/// use shmds::Segment;
/// use std::time::Duration;
/// # let name = format!("doc-condition-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let ready = seg.create_condition("ready")?;
/// let flag = seg.create_array::<u64>("flag", 1)?;
///
/// // Waiter: wait (at most a second here) until the flag is set.
/// let guard = ready.lock()?;
/// let (guard, timeout) = ready.wait_timeout_while(guard, Duration::from_millis(10), || {
///     flag.get(0).map_or(false, |v| v == 0)
/// })?;
/// assert!(timeout.timed_out());
/// drop(guard);
///
/// // Notifier: change the state under the lock, then notify.
/// let guard = ready.lock()?;
/// flag.set(0, 1)?;
/// ready.notify_all();
/// drop(guard);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    handle: Handle,
    header: *const ConditionHeader,
}

super::primitive_common!(Condition);

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("name", &self.name())
            .field("state", &self.status().summary)
            .finish()
    }
}

impl Primitive for Condition {
    const KIND: u32 = kind::CONDITION;
    const SHAPE: &'static str = "capacity";

    fn block_size(_capacity: u64) -> Result<u64> {
        Ok(CONDITION_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, _capacity: u64, _flags: u32) {
        // SAFETY: a fresh block of CONDITION_HEADER_SIZE bytes; the rest
        // starts zero (lock free, nobody waiting).
        unsafe { block.cast::<u32>().write(kind::CONDITION) };
    }

    fn from_handle(handle: Handle) -> Result<Condition> {
        let header: *const ConditionHeader = handle.fresh(super::header(
            &handle,
            kind::CONDITION,
            CONDITION_HEADER_SIZE,
        ))?;
        Ok(Condition { handle, header })
    }

    fn status(&self) -> Status {
        let mut s = lock::status(self.state(), "condition");
        let waiters = self.header().waiters.load(Ordering::Relaxed);
        s.waiters = waiters;
        s.summary = format!(
            "lock {}{}",
            s.summary,
            if waiters == 0 {
                String::new()
            } else {
                format!("; {}", waiting_summary(waiters).trim_start_matches(", "))
            }
        );
        s
    }
}

impl Condition {
    fn header(&self) -> &ConditionHeader {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &*self.header }
    }

    fn state(&self) -> &LockState {
        &self.header().lock
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            state: self.state(),
            handle: &self.handle,
        }
    }

    super::lock::lock_methods!();

    fn check_guard(&self, guard: &LockGuard<'_>) -> Result<()> {
        if std::ptr::eq(guard.state, self.state()) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "the guard passed to {:?}'s wait holds another lock ({:?})",
                self.name(),
                guard.handle.name()
            )))
        }
    }

    /// Release the lock, wait for a notify, take the lock again.
    pub fn wait<'a>(&'a self, guard: LockGuard<'a>) -> LockResult<LockGuard<'a>> {
        self.wait_timeout(guard, None)
            .map(|(g, _)| g)
            .map_err(|e| e.map(|(g, _)| g))
    }

    /// [`wait`](Condition::wait) for at most `timeout` (`None`: no limit).
    pub fn wait_timeout<'a>(
        &'a self,
        guard: LockGuard<'a>,
        timeout: Option<Duration>,
    ) -> LockResult<(LockGuard<'a>, WaitTimeoutResult)> {
        self.check_guard(&guard)?;
        std::mem::forget(guard);
        let (notified, taken) = self.wait_held(timeout, None)?;
        let result = (self.guard(), WaitTimeoutResult(!notified));
        match taken {
            None => Ok(result),
            Some(pid) => Err(died(&self.handle, pid, result)),
        }
    }

    /// Wait while `condition` returns `true` (checked with the lock held,
    /// before each wait): the lock is held and the condition false when
    /// this returns.
    pub fn wait_while<'a>(
        &'a self,
        guard: LockGuard<'a>,
        mut condition: impl FnMut() -> bool,
    ) -> LockResult<LockGuard<'a>> {
        let mut guard = guard;
        let mut died_pid = None;
        while condition() {
            guard = match self.wait(guard) {
                Ok(g) => g,
                Err(LockError::OwnerDied(d)) => {
                    died_pid = Some(d.pid());
                    d.into_guard()
                }
                Err(e) => return Err(e),
            };
        }
        match died_pid {
            None => Ok(guard),
            Some(pid) => Err(died(&self.handle, pid, guard)),
        }
    }

    /// [`wait_while`](Condition::wait_while) for at most `timeout`: the
    /// result says whether the time ran out (the condition may then still
    /// be true).
    pub fn wait_timeout_while<'a>(
        &'a self,
        guard: LockGuard<'a>,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> LockResult<(LockGuard<'a>, WaitTimeoutResult)> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut guard = guard;
        let mut died_pid = None;
        let mut timed_out = false;
        while condition() {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                timed_out = true;
                break;
            }
            guard = match self.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(LockError::OwnerDied(d)) => {
                    died_pid = Some(d.pid());
                    d.into_guard().0
                }
                Err(LockError::Failed(e)) => return Err(LockError::Failed(e)),
            };
        }
        let result = (guard, WaitTimeoutResult(timed_out));
        match died_pid {
            None => Ok(result),
            Some(pid) => Err(died(&self.handle, pid, result)),
        }
    }

    /// The guard-less wait of the bindings: this process must hold the lock
    /// (else [`Error::NotOwner`]). Releases it, waits at most `timeout`
    /// for a notify while `interrupt` says go on, and takes the lock again
    /// (also after a timeout or an interrupt). Returns whether a notify
    /// ended the wait and, if the lock was taken back from a process that
    /// died holding it, that process's pid.
    pub fn wait_held(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<(bool, Option<u32>)> {
        self.handle.check()?;
        let h = self.header();
        let holder = h.lock.word.load(Ordering::Relaxed);
        if holder != crate::process::current_pid() {
            return Err(Error::NotOwner {
                name: self.name().to_owned(),
                holder,
            });
        }
        let mut wait = waiter(timeout, interrupt);
        match wait_core(h, &mut wait) {
            (Ok(notified), taken) => Ok((notified, taken)),
            (Err(stop), _) => Err(stop.error(&self.handle)),
        }
    }

    /// Wake one waiter (of those waiting now).
    pub fn notify_one(&self) {
        self.notify(1)
    }

    /// Wake up to `n` of the waiters waiting now (see the module notes).
    pub fn notify(&self, n: u32) {
        if n == 0 || self.handle.check().is_err() {
            return;
        }
        notify_core(self.header(), n);
    }

    /// Wake every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX)
    }

    /// Wake every waiter (in every process: those waiting for a notify and
    /// those waiting for the lock), so that each looks at its interrupt
    /// check; the others wait on (a notify is not made).
    pub fn wake_waiters(&self) {
        let h = self.header();
        lock::wake_all(&h.lock);
        crate::wait::futex_wake(&h.seq, i32::MAX as u32);
    }

    /// Waits in progress now (approximate; a waiter that died counts on).
    pub fn waiters(&self) -> u32 {
        self.header().waiters.load(Ordering::Relaxed)
    }
}
