//! Blocking calls from Python, for every kind that has them (Queue and
//! Stack today; a Channel reuses the same pieces).
//!
//! A blocking call releases the GIL and runs a `shmds` call whose
//! interrupt callback (run before each sleep, see `shmds::RawQueue::push_slice`)
//! checks three things:
//!
//! - the handle's [`Closing`] flag: `close()` sets it, then wakes the
//!   structure's waiters, so a call blocked on a closed handle returns at
//!   once with a `ValueError`;
//! - an optional [`CancelToken`]: the asyncio helper (`shmds._aio`) runs a
//!   wait in a worker thread with a token; cancelling the awaiting task
//!   cancels the token and wakes the waiters, and the worker returns at once
//!   (raising `WaitCancelled`, which the helper discards);
//! - signals, with the GIL, so Ctrl-C interrupts a wait of the main thread
//!   (only there: Python runs signal handlers in the main thread alone, so
//!   other threads, the asyncio workers among them, wait without the GIL).
//!
//! A kind supports `await` by exposing, per blocking operation, a
//! non-blocking attempt, a native `_wait_*(timeout, cancel)` that returns
//! whether the attempt may now succeed (taking nothing, so a cancelled wait
//! loses nothing), and `_wake()`; see `python/shmds/_aio.py`.

use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The interrupt callback of a `shmds` blocking call.
pub(crate) type Interrupt<'a> = Option<&'a mut dyn FnMut() -> bool>;

pyo3::create_exception!(
    _shmds,
    WaitCancelled,
    pyo3::exceptions::PyException,
    "A wait ended because its CancelToken was cancelled (internal to shmds._aio)."
);

/// A handle's "closed" flag, shared with the calls blocked on it.
#[derive(Clone, Default)]
pub(crate) struct Closing(Arc<AtomicBool>);

impl Closing {
    /// Mark the handle closed. The caller then wakes the structure's
    /// waiters (the flag is stored first: see `shmds::RawQueue::wake_waiters`).
    pub(crate) fn close(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Cancels one wait running in a worker thread: `cancel()`, then wake the
/// structure's waiters (its `_wake()`), and the wait returns.
#[pyclass(module = "shmds._shmds", name = "CancelToken", frozen)]
pub(crate) struct CancelToken(Arc<AtomicBool>);

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> CancelToken {
        CancelToken(Arc::new(AtomicBool::new(false)))
    }

    /// Ask the wait that holds this token to stop (at its next check;
    /// wake the structure's waiters to make that now).
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a blocking call watches besides its own condition.
pub(crate) struct Watch<'a> {
    /// The handle's closed flag.
    pub(crate) closing: &'a Closing,
    /// The cancellation token of an asyncio wait, if any.
    pub(crate) cancel: Option<&'a CancelToken>,
    /// The structure's name, for messages.
    pub(crate) name: &'a str,
}

/// Run a blocking call without the GIL. Its interrupt callback stops it
/// when the handle is closed, the token cancelled or a signal handler
/// raises (Ctrl-C); those come back as their Python exceptions (a
/// `ValueError`, `WaitCancelled`, the handler's exception). Any other
/// outcome comes back as it is, for the caller to map.
pub(crate) fn blocking<T: Send>(
    py: Python<'_>,
    watch: Watch<'_>,
    call: impl FnOnce(Interrupt<'_>) -> shmds::Result<T> + Send,
) -> PyResult<shmds::Result<T>> {
    let closed = &*watch.closing.0;
    let cancelled = watch.cancel.map(|c| &*c.0);
    let stopped =
        || closed.load(Ordering::SeqCst) || cancelled.is_some_and(|c| c.load(Ordering::SeqCst));
    let signals = on_main_thread(py);
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut check = || {
            if stopped() {
                return true;
            }
            if !signals {
                return false;
            }
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    raised = Some(e);
                    true
                }
            })
        };
        call(Some(&mut check))
    });
    match result {
        Err(shmds::Error::Interrupted { .. }) => Err(match raised {
            Some(e) => e,
            None if closed.load(Ordering::SeqCst) => closed_while_waiting(watch.name),
            None => WaitCancelled::new_err(format!("the wait on {:?} was cancelled", watch.name)),
        }),
        other => Ok(other),
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

/// The error of a call woken because its handle was closed.
pub(crate) fn closed_while_waiting(name: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!(
        "the handle of {name:?} was closed while this call was waiting on it"
    ))
}

/// A timeout in the `queue.Queue` sense: `None` waits forever; negative
/// is an error.
pub(crate) fn wait_time(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(pyo3::exceptions::PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
        Some(t) => Ok(Some(
            Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
        )),
    }
}
