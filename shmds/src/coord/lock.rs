//! [`Lock`]: a robust mutual-exclusion lock, and the lock algorithm that
//! [`Condition`](super::Condition) and the writers of
//! [`RwLock`](super::RwLock) share (functions over a [`LockState`]).
//!
//! *Taking.* `word` is 0 when free and the holder's pid when held. A taker
//! compare-and-swaps 0 to its pid (Acquire), then writes `holder_stamp`
//! and `holder_tid`. When that fails it spins briefly ([`Spin`]), then
//! sleeps on `word` ([`sleep`], counted in `sleepers`), each sleep at most
//! [`LIVENESS_EVERY`](super::LIVENESS_EVERY) long.
//!
//! *Giving back.* The holder clears `holder_tid` and `holder_stamp`, swaps
//! `word` to 0 (SeqCst; the Release half publishes what the lock guarded)
//! and wakes one sleeper if `sleepers` is not 0 (all, for an rwlock's
//! writers' lock, whose sleepers include readers).
//!
//! *A holder that died.* A taker that has watched the same holder for
//! `LIVENESS_EVERY` asks whether it runs ([`Watch`]); if it does not, it
//! compare-and-swaps the dead pid to its own (one taker wins), counts the
//! death in `owner_deaths` and `last_dead_pid`, and gets the lock *with the
//! news*: [`LockError::OwnerDied`], which holds the guard. What the lock
//! guarded may be half-updated; the new holder decides what to do. A pid in
//! `word` that is not a live process (a garbage value written by a hostile
//! peer included) is taken over the same way.
//!
//! *Not held by us.* [`Lock::unlock`] (the guard-less release of the C and
//! Python bindings) checks that `word` holds our pid: releasing a lock
//! another process holds fails with [`Error::NotOwner`].

use super::{holder_summary, sleep, waiter, waiting_summary, Primitive, Spin, Status, Stop, Watch};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, LockHeader, LockState, LOCK_HEADER_SIZE};
use crate::process::current_pid;
use crate::sync::Ordering;
use std::time::Duration;

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// From a holder that let go.
    Clean,
    /// From process `pid`, which died holding it.
    FromDead(u32),
}

/// Try once to take a free lock.
#[inline]
pub(crate) fn try_take(state: &LockState) -> bool {
    let me = current_pid();
    if state
        .word
        .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        crate::fault::pause_point("coord.lock.taken");
        mark(state);
        true
    } else {
        false
    }
}

/// Record who holds the lock we just took.
#[inline(always)]
fn mark(state: &LockState) {
    state
        .holder_stamp
        .store(super::my_stamp(), Ordering::Relaxed);
    state
        .holder_tid
        .store(super::current_tid(), Ordering::Relaxed);
}

/// Take the lock, waiting as `wait` allows. A wait whose deadline has
/// already passed (a `try_`) does not spin or sleep, and asks at once
/// whether the holder runs.
pub(crate) fn take(
    state: &LockState,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<Taken, Stop> {
    if try_take(state) {
        return Ok(Taken::Clean);
    }
    let me = current_pid();
    let once = wait.deadline.expired();
    let mut spin = Spin::lock();
    let mut watch = Watch::new(once);
    loop {
        let holder = state.word.load(Ordering::Relaxed);
        if holder == 0 {
            if try_take(state) {
                return Ok(Taken::Clean);
            }
            continue;
        }
        if !once && spin.snooze() {
            continue;
        }
        if watch.dead(holder, &state.holder_stamp) {
            if state
                .word
                .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                mark(state);
                state.last_dead_pid.store(holder, Ordering::Relaxed);
                state.owner_deaths.fetch_add(1, Ordering::Relaxed);
                return Ok(Taken::FromDead(holder));
            }
            continue;
        }
        if once {
            return Err(Stop::TimedOut);
        }
        sleep(&state.word, holder, &state.sleepers, wait)?;
    }
}

/// Wait until the lock is free, without taking it (an rwlock's readers
/// wait so for its writer). A dead holder's claim is cleared (to 0) by
/// one waiter, which is told: `Some(pid)`.
pub(crate) fn wait_free(
    state: &LockState,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<Option<u32>, Stop> {
    let once = wait.deadline.expired();
    let mut spin = Spin::lock();
    let mut watch = Watch::new(once);
    loop {
        let holder = state.word.load(Ordering::Acquire);
        if holder == 0 {
            return Ok(None);
        }
        if !once && spin.snooze() {
            continue;
        }
        if watch.dead(holder, &state.holder_stamp) {
            if state
                .word
                .compare_exchange(holder, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                state.holder_stamp.store(0, Ordering::Relaxed);
                state.holder_tid.store(0, Ordering::Relaxed);
                state.last_dead_pid.store(holder, Ordering::Relaxed);
                state.owner_deaths.fetch_add(1, Ordering::Relaxed);
                super::wake(&state.word, &state.sleepers, true);
                return Ok(Some(holder));
            }
            continue;
        }
        if once {
            return Err(Stop::TimedOut);
        }
        sleep(&state.word, holder, &state.sleepers, wait)?;
    }
}

/// Wait until the lock is free or its holder is dead, taking nothing (the
/// waits of the bindings' `await` forms: a `try_` call may then succeed,
/// with the news of a death). Our own process holding it is waited for.
pub(crate) fn wait_unheld(
    state: &LockState,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<(), Stop> {
    let once = wait.deadline.expired();
    let mut watch = Watch::new(once);
    loop {
        let holder = state.word.load(Ordering::Acquire);
        if holder == 0 || watch.dead(holder, &state.holder_stamp) {
            return Ok(());
        }
        if once {
            return Err(Stop::TimedOut);
        }
        sleep(&state.word, holder, &state.sleepers, wait)?;
    }
}

/// Wake every sleeper of a lock state (they look at their interrupt
/// checks; the others sleep again).
pub(crate) fn wake_all(state: &LockState) {
    crate::wait::futex_wake(&state.word, i32::MAX as u32);
}

/// Give the lock back (we hold it); wake one sleeper, or all.
#[inline]
pub(crate) fn give(state: &LockState, wake_all: bool) {
    // A loom model process that "died" unwinds through the guards; a killed
    // process never lets go. Its stores are all visible once a survivor can
    // tell it is dead (the exit orders them); the death is modelled as a
    // release of the unchanged word, which the taker's CAS acquires.
    #[cfg(loom)]
    if crate::fault::crash::is_dying(current_pid()) {
        state.word.fetch_add(0, Ordering::Release);
        return;
    }
    state.holder_tid.store(0, Ordering::Relaxed);
    state.holder_stamp.store(0, Ordering::Relaxed);
    state.word.swap(0, Ordering::SeqCst);
    super::wake(&state.word, &state.sleepers, wake_all);
}

/// Give the lock back if this process holds it, else [`Error::NotOwner`].
pub(crate) fn give_checked(state: &LockState, handle: &Handle, wake_all: bool) -> Result<()> {
    let holder = state.word.load(Ordering::Relaxed);
    if holder != current_pid() {
        return Err(Error::NotOwner {
            name: handle.name().to_owned(),
            holder,
        });
    }
    give(state, wake_all);
    Ok(())
}

/// The [`Status`] fields of a lock state.
pub(crate) fn status(state: &LockState, kind_name: &'static str) -> Status {
    let pid = state.word.load(Ordering::Acquire);
    let stamp = state.holder_stamp.load(Ordering::Acquire);
    let tid = state.holder_tid.load(Ordering::Relaxed);
    let waiters = state.sleepers.load(Ordering::Relaxed);
    let deaths = state.owner_deaths.load(Ordering::Relaxed);
    let (holder_pid, holder_alive, summary) = if pid == 0 {
        (None, None, "free".to_owned())
    } else if pid == super::GHOST_PID {
        (None, None, super::REVOKED.to_owned())
    } else {
        let alive = super::ask_alive(pid, stamp);
        (Some(pid), Some(alive), holder_summary(pid, tid, alive))
    };
    let deaths_text = if deaths == 0 {
        String::new()
    } else {
        format!(
            ", taken over {deaths} time{} from a dead holder (last pid {})",
            if deaths == 1 { "" } else { "s" },
            state.last_dead_pid.load(Ordering::Relaxed)
        )
    };
    Status {
        kind: kind_name,
        holder_pid,
        holder_tid: (pid != 0 && tid != 0).then_some(tid),
        holder_alive,
        waiters,
        value: Some(u64::from(pid != 0)),
        owner_deaths: deaths,
        summary: format!("{summary}{}{deaths_text}", waiting_summary(waiters)),
    }
}

/// The taking and releasing methods of a kind that is a lock (a `Lock`,
/// a `Condition`), over its `state()` and `guard()`.
macro_rules! lock_methods {
    () => {
        /// Take the lock, waiting as long as it takes.
        #[inline]
        pub fn lock(&self) -> $crate::coord::LockResult<$crate::coord::LockGuard<'_>> {
            // The uncontended path: one compare-and-swap, nothing else to set up.
            if self.handle.check().is_ok() && $crate::coord::lock::try_take(self.state()) {
                return Ok(self.guard());
            }
            $crate::coord::lock::blocking(&self.handle, self.lock_interruptible(None, None))
        }

        /// Take the lock if it is free now (or held by a dead process);
        /// `Ok(None)` if it is not.
        pub fn try_lock(&self) -> $crate::coord::TryLockResult<$crate::coord::LockGuard<'_>> {
            self.lock_interruptible(Some(std::time::Duration::ZERO), None)
        }

        /// Take the lock, waiting at most `timeout`; `Ok(None)` if it stayed
        /// held that long.
        pub fn lock_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> $crate::coord::TryLockResult<$crate::coord::LockGuard<'_>> {
            self.lock_interruptible(Some(timeout), None)
        }

        /// Take the lock, waiting at most `timeout` (`None`: no limit) while
        /// `interrupt` (run between sleeps) returns `false`; fails with
        /// [`Error::Interrupted`](crate::Error::Interrupted) once it
        /// returns `true`.
        pub fn lock_interruptible(
            &self,
            timeout: Option<std::time::Duration>,
            interrupt: Option<&mut dyn FnMut() -> bool>,
        ) -> $crate::coord::TryLockResult<$crate::coord::LockGuard<'_>> {
            self.handle.check()?;
            let mut wait = $crate::coord::waiter(timeout, interrupt);
            let taken = $crate::coord::lock::take(self.state(), &mut wait);
            $crate::coord::lock::outcome(&self.handle, taken, || self.guard())
        }

        /// Release the lock this process holds without a guard (after
        /// [`LockGuard::leak`](crate::LockGuard::leak); the C and Python
        /// bindings work so). Fails with
        /// [`Error::NotOwner`](crate::Error::NotOwner) if this process does
        /// not hold it.
        pub fn unlock(&self) -> $crate::Result<()> {
            self.handle.check()?;
            $crate::coord::lock::give_checked(self.state(), &self.handle, false)
        }

        /// Whether this process holds the lock.
        pub fn is_held_by_me(&self) -> bool {
            self.state().word.load($crate::sync::Ordering::Relaxed)
                == $crate::process::current_pid()
        }
    };
}
pub(crate) use lock_methods;

/// The result of taking a robust lock: the guard, or [`LockError`].
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// The result of a `try_` or timed lock call: `Ok(None)` when the lock
/// was not free (in time).
pub type TryLockResult<G> = std::result::Result<Option<G>, LockError<G>>;

/// Why taking a lock did not simply succeed.
///
/// `?` turns it into an [`Error`] ([`Error::OwnerDied`] for the first
/// variant, dropping the guard and so releasing the lock); to go on with
/// the lock after a holder's death, use [`LockError::recover`]:
///
/// ```
/// # use shmds::{Segment, LockError};
/// # let name = format!("doc-lockerror-{}", std::process::id());
/// # let seg = Segment::create(&name, 1 << 20)?;
/// let lock = seg.create_lock("books")?;
/// let guard = lock.lock().or_else(LockError::recover)?;
/// # drop(guard);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
pub enum LockError<G> {
    /// The lock was taken, but its previous holder died holding it: what
    /// it guarded may be half-updated. The guard is inside.
    OwnerDied(OwnerDied<G>),
    /// The lock was not taken.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, if the lock was taken (from a dead holder); the error
    /// otherwise.
    pub fn recover(self) -> Result<G> {
        match self {
            LockError::OwnerDied(died) => Ok(died.into_guard()),
            LockError::Failed(e) => Err(e),
        }
    }

    /// Map the guard (used to wrap guards in other guards).
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(d) => LockError::OwnerDied(OwnerDied {
                guard: f(d.guard),
                pid: d.pid,
                name: d.name,
            }),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied(d) => Error::OwnerDied {
                name: d.name,
                pid: d.pid,
            },
            LockError::Failed(e) => e,
        }
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(d) => d.fmt(f),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(d) => d.fmt(f),
            LockError::Failed(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// A lock taken from a process that died holding it; holds the guard.
pub struct OwnerDied<G> {
    pub(crate) guard: G,
    pub(crate) pid: u32,
    pub(crate) name: String,
}

impl<G> OwnerDied<G> {
    /// The guard: the lock is held.
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// The guard, borrowed.
    pub fn guard(&self) -> &G {
        &self.guard
    }

    /// The pid of the process that died holding the lock.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl<G> std::fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerDied")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl<G> std::fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(
            &Error::OwnerDied {
                name: self.name.clone(),
                pid: self.pid,
            },
            f,
        )
    }
}

/// The outcome of a wait for a lock, as the public types say it.
pub(crate) fn outcome<G>(
    handle: &Handle,
    taken: std::result::Result<Taken, Stop>,
    guard: impl FnOnce() -> G,
) -> TryLockResult<G> {
    match taken {
        Ok(Taken::Clean) => Ok(Some(guard())),
        Ok(Taken::FromDead(pid)) => Err(died(handle, pid, guard())),
        Err(Stop::TimedOut) => Ok(None),
        Err(stop) => Err(LockError::Failed(stop.error(handle))),
    }
}

/// A blocking call's result from the timed form's (never `Ok(None)`
/// without a deadline).
pub(crate) fn blocking<G>(handle: &Handle, r: TryLockResult<G>) -> LockResult<G> {
    match r {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(LockError::Failed(handle.timeout())),
        Err(e) => Err(e),
    }
}

/// A news-carrying guard for a lock that was taken from a dead holder
/// (also used by the rwlock's readers, which take nothing).
pub(crate) fn died<G>(handle: &Handle, pid: u32, guard: G) -> LockError<G> {
    LockError::OwnerDied(OwnerDied {
        guard,
        pid,
        name: handle.name().to_owned(),
    })
}

/// A robust lock shared by processes: the holder is recorded (pid and
/// thread), an uncontended lock and unlock make no system call, waits sleep
/// on a futex, and a holder that dies does not block the others: the next
/// taker gets the lock with [`LockError::OwnerDied`], which holds the guard.
///
/// ```
/// use shmds::{LockError, Segment};
/// # let name = format!("doc-lock-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let lock = seg.create_lock("ledger")?;
/// {
///     let _guard = lock.lock()?;
///     assert!(lock.is_locked());
///     assert!(lock.try_lock()?.is_none() || true); // same process: not reentrant
/// }
/// // A holder that died is reported, and the lock is still taken:
/// match lock.lock() {
///     Ok(_guard) => {}
///     Err(LockError::OwnerDied(died)) => {
///         eprintln!("process {} died holding the lock", died.pid());
///         let _guard = died.into_guard();
///     }
///     Err(LockError::Failed(e)) => return Err(e),
/// }
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// The lock is not reentrant: a thread that takes it twice waits for
/// itself. Ownership is per process (any thread of the holding process may
/// [`unlock`](Lock::unlock) it, as with Python's `threading.Lock`). See
/// FORMAT.md ("Coordination primitives") for the bytes and what a crash
/// leaves.
#[derive(Clone)]
pub struct Lock {
    handle: Handle,
    header: *const LockHeader,
}

super::primitive_common!(Lock);

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name())
            .field("state", &self.status().summary)
            .finish()
    }
}

/// Holds a [`Lock`] (or a [`Condition`](super::Condition)'s lock) until
/// dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    pub(crate) state: &'a LockState,
    pub(crate) handle: &'a Handle,
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // An entry erased meanwhile: its block may hold another structure
        // now, so it is not written.
        if self.handle.check().is_ok() {
            give(self.state, false);
        }
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.handle.name())
            .finish()
    }
}

impl LockGuard<'_> {
    /// Keep the lock held after the guard is gone (release it with
    /// [`Lock::unlock`]).
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl Primitive for Lock {
    const KIND: u32 = kind::LOCK;
    const SHAPE: &'static str = "capacity";

    fn block_size(_capacity: u64) -> Result<u64> {
        Ok(LOCK_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, _capacity: u64, _flags: u32) {
        // SAFETY: the caller gives a fresh block of LOCK_HEADER_SIZE bytes;
        // every other field starts zero (a free lock).
        unsafe { block.cast::<u32>().write(kind::LOCK) };
    }

    fn from_handle(handle: Handle) -> Result<Lock> {
        let header: *const LockHeader =
            handle.fresh(super::header(&handle, kind::LOCK, LOCK_HEADER_SIZE))?;
        Ok(Lock { handle, header })
    }

    fn status(&self) -> Status {
        status(self.state(), "lock")
    }
}

impl Lock {
    fn state(&self) -> &LockState {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &(*self.header).lock }
    }

    fn guard(&self) -> LockGuard<'_> {
        LockGuard {
            state: self.state(),
            handle: &self.handle,
        }
    }

    lock_methods!();

    /// Wait at most `timeout` (`None`: no limit), while `interrupt` returns
    /// `false`, until the lock is free or its holder is dead, taking
    /// nothing: `Ok(true)` then (a [`try_lock`](Lock::try_lock) may
    /// succeed; another process may be first), `Ok(false)` on a timeout.
    /// For `await` forms that must not take the lock in a worker thread.
    pub fn wait_unlocked(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        match wait_unheld(self.state(), &mut waiter(timeout, interrupt)) {
            Ok(()) => Ok(true),
            Err(Stop::TimedOut) => Ok(false),
            Err(stop) => Err(stop.error(&self.handle)),
        }
    }

    /// Wake every waiter of this lock (in every process), so that each
    /// looks at its interrupt check; the others wait on.
    pub fn wake_waiters(&self) {
        wake_all(self.state());
    }

    /// Whether some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.state().word.load(Ordering::Relaxed) != 0
    }

    /// The holder now: pid and (if recorded) thread id.
    pub fn holder(&self) -> Option<(u32, Option<u32>)> {
        let s = self.status();
        s.holder_pid.map(|p| (p, s.holder_tid))
    }

    /// How often the lock was taken over from a holder that died.
    pub fn owner_deaths(&self) -> u64 {
        self.state().owner_deaths.load(Ordering::Relaxed)
    }
}
