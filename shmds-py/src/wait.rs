//! How channel and topic calls wait: [`wait`] is the one path of every
//! blocking call of `Channel`, `Topic` and `Subscriber`. A call runs
//! without the GIL and is handed a [`Waiting`] (its deadline and an
//! interrupt check); the check re-takes the GIL between sleeps to run
//! signal handlers (Ctrl-C) and says stop once the handle is closed.
//!
//! This is also the hook for awaitable forms: an asyncio wrapper can run
//! the same calls with an interrupt check of its own (cancellation) and a
//! wake through [`Closing`]-style flags, without touching the operations.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why a channel or topic call stopped without its result.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The crate's error (never `Interrupted` or `Timeout`: those are the
    /// variants below).
    Shmds(shmds::Error),
    /// The handle was closed, before or during the call.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The interrupt check said stop (a signal handler raised, or the
    /// handle was closed).
    Interrupted,
    /// An SPSC channel's one end of this side is in use by a call of
    /// another thread (a non-blocking call reports it as Full / Empty).
    Busy,
    /// An SPSC channel's one receiver is held by an open `MessageView`.
    ViewOpen,
    /// A call on an SPSC channel's end from inside a call on it, in the
    /// same thread (an unpickler calling back into the channel).
    Reentrant,
}

impl From<shmds::Error> for Fail {
    fn from(e: shmds::Error) -> Fail {
        match e {
            shmds::Error::Interrupted { .. } => Fail::Interrupted,
            shmds::Error::Timeout { .. } => Fail::TimedOut,
            e => Fail::Shmds(e),
        }
    }
}

/// Bumped in the child after every `os.fork()` (a handler registered at
/// import): state made before a fork belongs to the parent. The crate's
/// ends record the parent's pid, and a message a Python object holds is
/// the parent's to release, so a child must attach ends of its own and
/// never release what it inherited.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation (see [`FORK_GENERATION`]).
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// `os.register_at_fork(after_in_child=...)` target.
#[pyfunction]
pub(crate) fn _after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Signal handlers run at most this often during one wait (each run takes
/// the GIL); a wait that sleeps longer runs them after every sleep.
const SIGNALS_EVERY: Duration = Duration::from_millis(2);

/// How long the in-process waits (for an SPSC end another thread is
/// using) sleep before they look at the interrupt check again.
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// A handle's closed flag and the number of its calls waiting, so that
/// `close()` can stop them at once.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    waiting: AtomicUsize,
}

impl Closing {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Set the flag; returns whether calls of this handle are waiting
    /// (the caller then wakes them).
    pub(crate) fn close(&self) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        self.waiting.load(Ordering::SeqCst) != 0
    }
}

/// A blocking call's deadline and interrupt check.
pub(crate) struct Waiting<'a> {
    deadline: Option<Instant>,
    interrupt: &'a mut dyn FnMut() -> bool,
}

impl Waiting<'_> {
    /// Time left (`None`: no limit; zero once the deadline passed).
    pub(crate) fn left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The interrupt check, to hand to the crate's `*_interruptible` calls.
    pub(crate) fn check(&mut self) -> &mut dyn FnMut() -> bool {
        &mut *self.interrupt
    }

    /// Sleep on `condvar` (releasing `guard`) for at most [`RECHECK`] or
    /// the time left, run `woke` on the state (the lock held again), then
    /// the interrupt check (without the lock).
    pub(crate) fn nap<T>(
        &mut self,
        condvar: &std::sync::Condvar,
        guard: std::sync::MutexGuard<'_, T>,
        woke: impl FnOnce(&mut T),
    ) -> Result<(), Fail> {
        let nap = match self.left() {
            None => RECHECK,
            Some(left) if left.is_zero() => {
                let mut guard = guard;
                woke(&mut guard);
                return Err(Fail::TimedOut);
            }
            Some(left) => left.min(RECHECK),
        };
        let mut guard = match condvar.wait_timeout(guard, nap) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
        woke(&mut guard);
        drop(guard);
        if (self.interrupt)() {
            return Err(Fail::Interrupted);
        }
        Ok(())
    }
}

/// Run `call` without the GIL, waiting at most `timeout` (`None`: no
/// limit). Its interrupt check runs signal handlers; if one raises
/// (KeyboardInterrupt), that exception is returned as the `Err`. A call
/// stopped by `closing` reports [`Fail::Closed`].
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    closing: &Closing,
    timeout: Option<Duration>,
    call: impl FnOnce(&mut Waiting<'_>) -> Result<T, Fail> + Send,
) -> PyResult<Result<T, Fail>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut raised: Option<PyErr> = None;
    closing.waiting.fetch_add(1, Ordering::SeqCst);
    let result = py.detach(|| {
        let mut last: Option<Instant> = None;
        let mut check = || {
            if closing.is_closed() {
                return true;
            }
            let now = Instant::now();
            if last.is_some_and(|t| now.duration_since(t) < SIGNALS_EVERY) {
                return false;
            }
            last = Some(now);
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    raised = Some(e);
                    true
                }
            })
        };
        call(&mut Waiting {
            deadline,
            interrupt: &mut check,
        })
    });
    closing.waiting.fetch_sub(1, Ordering::SeqCst);
    match (result, raised) {
        // Every call returns at once when its check says stop, before it
        // has taken anything, so nothing is lost by raising instead.
        (Err(Fail::Interrupted), Some(e)) => Err(e),
        (Err(Fail::Interrupted), None) if closing.is_closed() => Ok(Err(Fail::Closed)),
        (result, _) => Ok(result),
    }
}
