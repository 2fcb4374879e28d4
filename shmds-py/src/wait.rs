//! How blocking calls wait: [`wait`] (and [`wait_cancellable`]) is the one
//! path of every blocking call of `Queue`, `Stack`, `Channel`, `Topic` and
//! `Subscriber`. A call runs without the GIL and is handed a [`Waiting`]
//! (its deadline and an interrupt check, which the crate's blocking calls
//! run before each sleep). The check says stop
//!
//! - once the handle is closed ([`Closing`]): `close()` sets the flag and,
//!   if calls of the handle wait, wakes the structure's waiters, so they
//!   return at once ([`Fail::Closed`]);
//! - once the call's [`CancelToken`] is cancelled (asyncio waits, see
//!   `python/shmds/_aio.py`): the canceller then wakes the structure's
//!   waiters (`_wake()`), and the call returns at once, raising
//!   [`WaitCancelled`];
//! - when a signal handler raises (Ctrl-C). Handlers run in Python's main
//!   thread only, so only a call of the main thread re-takes the GIL for
//!   them (at most every [`SIGNALS_EVERY`]); other threads, the asyncio
//!   workers among them, wait without the GIL.
//!
//! A kind supports `await` by exposing, per blocking operation, a
//! non-blocking attempt, a native `_wait_*(timeout, cancel)` that returns
//! whether the attempt may now succeed (taking nothing, so a cancelled
//! wait loses nothing) through [`wait_cancellable`], and `_wake()`;
//! `Queue` (queue.rs) is the example.

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
    wait_cancellable(py, closing, None, timeout, call)
}

/// [`wait`] that also stops once `cancel` is cancelled; that outcome is the
/// `Err` [`WaitCancelled`].
pub(crate) fn wait_cancellable<T: Send>(
    py: Python<'_>,
    closing: &Closing,
    cancel: Option<&CancelToken>,
    timeout: Option<Duration>,
    call: impl FnOnce(&mut Waiting<'_>) -> Result<T, Fail> + Send,
) -> PyResult<Result<T, Fail>> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let cancelled = || cancel.is_some_and(|c| c.0.load(Ordering::SeqCst));
    let signals = on_main_thread(py);
    let mut raised: Option<PyErr> = None;
    closing.waiting.fetch_add(1, Ordering::SeqCst);
    let result = py.detach(|| {
        let mut last: Option<Instant> = None;
        let mut check = || {
            if closing.is_closed() || cancelled() {
                return true;
            }
            if !signals {
                return false;
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
        (Err(Fail::Interrupted), None) if cancelled() => Err(WaitCancelled::new_err(
            "the wait was cancelled (its CancelToken)",
        )),
        (result, _) => Ok(result),
    }
}

/// Whether this is Python's main thread, where signal handlers run (when
/// that cannot be told, say yes: checking for signals is always safe).
fn on_main_thread(py: Python<'_>) -> bool {
    let check = || -> PyResult<bool> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?.getattr("ident")?;
        main.eq(threading.call_method0("get_ident")?)
    };
    check().unwrap_or(true)
}

pyo3::create_exception!(
    _shmds,
    WaitCancelled,
    pyo3::exceptions::PyException,
    "A wait ended because its CancelToken was cancelled (internal to shmds._aio)."
);

/// Cancels one wait running in a worker thread: `cancel()`, then wake the
/// structure's waiters (its `_wake()`), and the wait returns at once.
#[pyclass(module = "shmds._shmds", name = "CancelToken", frozen)]
pub(crate) struct CancelToken(AtomicBool);

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> CancelToken {
        CancelToken(AtomicBool::new(false))
    }

    /// Ask the wait that holds this token to stop (at its next check; wake
    /// the structure's waiters to make that now). Stored before the wake,
    /// so a waiter either sees it or is woken (see
    /// `shmds::RawQueue::wake_waiters`).
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The error of a call woken because its handle was closed.
pub(crate) fn closed_while_waiting(name: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!(
        "the handle of {name:?} was closed while this call was waiting on it"
    ))
}
