//! The coordination primitives from Python: `Lock`, `RwLock`, `Condition`,
//! `Semaphore` (bounded too), `Barrier`, `Event`, `Latch` and `Once`, named
//! entries of a segment in the shapes of `threading`'s classes (the Python
//! package adds `__repr__`, pickling, `wait_for` and the `await` forms).
//!
//! *Ownership is per process*, as the crate records it: a lock taken by one
//! thread may be released by another thread of the same process (as
//! `threading.Lock` allows), and a second acquire from the same process
//! waits for the first to be released (the locks are not reentrant).
//!
//! An uncontended acquire is one compare-and-swap under the GIL; a wait
//! goes through [`wait`](crate::wait) (no GIL, Ctrl-C and `close()` stop
//! it). A lock taken over from a process that died holding it is
//! reported twice: the handle's `owner_died` (that pid) and an
//! `OwnerDiedWarning`; the lock is held either way (also when a warnings
//! filter turns the warning into an exception).
//!
//! `_wait_*(timeout, cancel)` and `_wake()` are for `shmds._aio`: they wait
//! until an attempt may succeed, taking nothing.

use crate::queue::wait_time;
use crate::wait::{closed_while_waiting, wait_cancellable, CancelToken, Closing, Fail};
use crate::{closed, to_py, DynException, Segment};
use pyo3::exceptions::{PyKeyboardInterrupt, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The interrupt callback of a `shmds` blocking call.
type Interrupt<'a> = Option<&'a mut dyn FnMut() -> bool>;

pyo3::create_exception!(
    _shmds,
    OwnerDiedWarning,
    pyo3::exceptions::PyRuntimeWarning,
    "A lock (or rwlock, or condition) was taken over from a process that \
     died holding it (`pid`): the acquire succeeded, but what the lock \
     guarded may be half-updated. `warnings.simplefilter(\"error\", \
     OwnerDiedWarning)` makes it an exception (the lock is then held)."
);

pyo3::import_exception!(threading, BrokenBarrierError);

/// `shmds.OwnerDiedError`: the error form of a dead holder's lock (`.pid`).
pub(crate) static OWNER_DIED: DynException = DynException::new(
    c"shmds._shmds.OwnerDiedError",
    c"A process died holding a lock (`pid`): what it guarded may be \
      half-updated. The Python locks report this with OwnerDiedWarning and \
      `owner_died` instead, holding the lock.",
    |py| Ok(vec![crate::shmds_error_base(py)]),
);

/// `shmds.NotOwnerError`: a release of what this process does not hold.
pub(crate) static NOT_OWNER: DynException = DynException::new(
    c"shmds._shmds.NotOwnerError",
    c"A release (or a condition's wait or notify) of a lock this process \
      does not hold: a RuntimeError, as threading raises. `holder` is the \
      pid that holds it (0: nobody).",
    |py| {
        Ok(vec![
            crate::shmds_error_base(py),
            py.get_type::<pyo3::exceptions::PyRuntimeError>().into_any(),
        ])
    },
);

/// `shmds.TooManyReleasesError`: a bounded semaphore released past its
/// initial value.
pub(crate) static TOO_MANY_RELEASES: DynException = DynException::new(
    c"shmds._shmds.TooManyReleasesError",
    c"A BoundedSemaphore released past its initial value (`value` permits \
      held, `max` the most): a ValueError, as threading raises.",
    |py| {
        Ok(vec![
            crate::shmds_error_base(py),
            py.get_type::<PyValueError>().into_any(),
        ])
    },
);

/// `shmds.ReaderSlotsFullError`: every reader slot of an rwlock is taken.
pub(crate) static READER_SLOTS_FULL: DynException = DynException::new(
    c"shmds._shmds.ReaderSlotsFullError",
    c"Every reader slot of an rwlock (`slots`) is taken by a live process \
      holding read locks: create it with more reader_slots.",
    |py| Ok(vec![crate::shmds_error_base(py)]),
);

// ------------------------------------------------------------------ waits

/// `threading.Lock.acquire(blocking, timeout)` as a wait: `Some(ZERO)`
/// tries once, `None` waits forever.
pub(crate) fn lock_wait(blocking: bool, timeout: f64) -> PyResult<Option<Duration>> {
    if !blocking {
        if timeout != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        return Ok(Some(Duration::ZERO));
    }
    if timeout == -1.0 {
        return Ok(None);
    }
    if timeout.is_nan() || timeout < 0.0 {
        return Err(PyValueError::new_err(
            "timeout value must be a non-negative number",
        ));
    }
    Ok(Some(secs(timeout)))
}

/// A `timeout=None` argument as `threading` reads it (`Condition.wait`,
/// `Event.wait`, `Semaphore.acquire`, `Barrier.wait`): None waits forever,
/// 0 or less tries once.
fn opt_wait(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must be a number, not NaN")),
        Some(t) if t <= 0.0 => Ok(Some(Duration::ZERO)),
        Some(t) => Ok(Some(secs(t))),
    }
}

fn secs(t: f64) -> Duration {
    Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX)
}

/// The Python exception of a blocking call that stopped without its result.
fn fail_to_py(name: &str, fail: Fail) -> PyErr {
    match fail {
        Fail::Shmds(e) => to_py(e),
        Fail::Closed => closed_while_waiting(name),
        Fail::TimedOut => PyTimeoutError::new_err(format!("waiting on {name:?} timed out")),
        other => {
            PyKeyboardInterrupt::new_err(format!("waiting on {name:?} was interrupted ({other:?})"))
        }
    }
}

/// Run a blocking call of the crate (which applies its own timeout)
/// without the GIL, stopped by `closing`, `cancel` and Ctrl-C.
fn run<T: Send>(
    py: Python<'_>,
    closing: &Closing,
    cancel: Option<&CancelToken>,
    name: &str,
    call: impl FnOnce(Interrupt<'_>) -> Result<T, Fail> + Send,
) -> PyResult<T> {
    wait_cancellable(py, closing, cancel, None, |w| call(Some(w.check())))?
        .map_err(|f| fail_to_py(name, f))
}

/// What an attempt to take a lock got.
#[derive(Clone, Copy, Debug)]
enum Got {
    Yes,
    /// Taken over from this pid, which died holding it.
    FromDead(u32),
    No,
}

/// A lock call's outcome, its guard leaked (released by the `release`
/// methods).
fn got<G>(r: shmds::TryLockResult<G>, leak: impl FnOnce(G)) -> Result<Got, Fail> {
    match r {
        Ok(Some(g)) => {
            leak(g);
            Ok(Got::Yes)
        }
        Ok(None) => Ok(Got::No),
        Err(shmds::LockError::OwnerDied(died)) => {
            let pid = died.pid();
            leak(died.into_guard());
            Ok(Got::FromDead(pid))
        }
        Err(shmds::LockError::Failed(e)) => Err(Fail::from(e)),
    }
}

/// A handle's news of the last take-over (`owner_died`).
#[derive(Debug, Default)]
struct Died(AtomicU32);

impl Died {
    fn get(&self) -> Option<u32> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Record an acquire's outcome; warn of a take-over. Whether it got
    /// the lock.
    fn record(&self, py: Python<'_>, got: Got, kind: &str, name: &str) -> PyResult<bool> {
        match got {
            Got::Yes => {
                if self.0.load(Ordering::Relaxed) != 0 {
                    self.0.store(0, Ordering::Relaxed);
                }
                Ok(true)
            }
            Got::No => Ok(false),
            Got::FromDead(pid) => {
                self.0.store(pid, Ordering::Relaxed);
                warn_died(py, kind, name, pid)?;
                Ok(true)
            }
        }
    }
}

/// Issue an `OwnerDiedWarning` (with `.pid`) at the caller's line.
pub(crate) fn warn_died(py: Python<'_>, kind: &str, name: &str, pid: u32) -> PyResult<()> {
    let msg = format!(
        "process {pid} died holding the {kind} {name:?}; this process took it over, and \
         what it guarded may be half-updated"
    );
    let warning = py.get_type::<OwnerDiedWarning>().call1((msg,))?;
    warning.setattr("pid", pid)?;
    py.import("warnings")?.call_method1("warn", (warning,))?;
    Ok(())
}

/// Open or create a primitive: `create` picks the crate call.
fn opened<T>(r: shmds::Result<T>) -> PyResult<Option<Arc<T>>> {
    r.map(|p| Some(Arc::new(p))).map_err(to_py)
}

/// The handle's primitive and what its blocking calls watch, holding no
/// borrow of the object while they wait (another thread may close it).
macro_rules! waitable {
    ($slf:expr) => {{
        let this = $slf.borrow();
        (this.get()?.clone(), this.closing.clone())
    }};
}

/// A handle's `#[pymethods]` block: the methods given, and those every
/// primitive handle has: `name`, `segment_name`, `closed`, `close()`
/// (which wakes this handle's waiting calls). Also `get()`, the primitive
/// or the error of a closed handle.
///
/// With `locking` (Lock, Condition): also `threading.Lock`'s `acquire`,
/// `release` and the context manager, and `owner_died`, over the type's
/// `acquire_impl` and the primitive's `unlock`.
macro_rules! methods {
    ($ty:ident, $field:ident, $inner:ty, locking; $($body:tt)*) => {
        methods! { $ty, $field, $inner;
            /// Take the lock, as `threading.Lock.acquire`: waiting (without
            /// the GIL; Ctrl-C interrupts) at most `timeout` seconds (-1: no
            /// limit), or not at all with `blocking=False`. Returns whether
            /// it was taken.
            #[pyo3(signature = (blocking=true, timeout=-1.0))]
            fn acquire(slf: &Bound<'_, Self>, blocking: bool, timeout: f64) -> PyResult<bool> {
                $ty::acquire_impl(slf, lock_wait(blocking, timeout)?)
            }

            fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
                $ty::acquire_impl(slf, None)
            }

            /// Release the lock this process holds (any of its threads may);
            /// RuntimeError (NotOwnerError) if it does not hold it.
            fn release(&self) -> PyResult<()> {
                self.get()?.unlock().map_err(to_py)
            }

            fn __exit__(
                &self,
                _type: &Bound<'_, PyAny>,
                _value: &Bound<'_, PyAny>,
                _tb: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.release()
            }

            /// The pid of the dead holder that the last successful acquire
            /// (or condition wait) through this handle took the lock over
            /// from; None if it was taken cleanly.
            #[getter]
            fn owner_died(&self) -> Option<u32> {
                self.died.get()
            }

            $($body)*
        }
    };
    ($ty:ident, $field:ident, $inner:ty; $($body:tt)*) => {
        impl $ty {
            fn get(&self) -> PyResult<&Arc<$inner>> {
                self.$field.as_ref().ok_or_else(closed)
            }
        }

        #[pymethods]
        impl $ty {
            $($body)*

            /// The entry name.
            #[getter]
            fn name(&self) -> PyResult<String> {
                Ok(self.get()?.name().to_owned())
            }

            /// The name of the segment holding it.
            #[getter]
            fn segment_name(&self) -> PyResult<String> {
                Ok(self.get()?.segment_name().to_owned())
            }

            /// Whether `close()` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.$field.is_none()
            }

            /// Drop this handle (idempotent). Calls of it waiting in other
            /// threads wake up and raise ValueError; what this process
            /// holds stays held.
            fn close(&mut self) {
                if let Some(p) = self.$field.take() {
                    if self.closing.close() {
                        p.wake_all();
                    }
                }
            }
        }
    };
}

/// Wake a primitive's waiters (for `close()` and `_wake()`).
trait Wakeable {
    fn wake_all(&self);
}

macro_rules! wakeable {
    ($($ty:ty),*) => {$(
        impl Wakeable for $ty {
            fn wake_all(&self) {
                self.wake_waiters()
            }
        }
    )*};
}

wakeable!(
    shmds::Lock,
    shmds::RwLock,
    shmds::Condition,
    shmds::Semaphore,
    shmds::Barrier,
    shmds::Event,
    shmds::Latch
);

impl Wakeable for shmds::Once {
    fn wake_all(&self) {
        // Its waits look at their interrupt check at least every 20 ms.
    }
}

// ------------------------------------------------------------------- Lock

/// A robust lock shared by processes, with `threading.Lock`'s methods.
#[pyclass(module = "shmds._shmds", name = "Lock", subclass)]
pub(crate) struct Lock {
    lock: Option<Arc<shmds::Lock>>,
    closing: Arc<Closing>,
    died: Died,
}

impl Lock {
    fn acquire_impl(slf: &Bound<'_, Self>, wait: Option<Duration>) -> PyResult<bool> {
        let py = slf.py();
        let once = wait == Some(Duration::ZERO);
        {
            let this = slf.borrow();
            let lock = this.get()?;
            // A free lock is taken here, holding the GIL (one CAS); a try
            // (once) also asks whether a holder died.
            if once || !lock.is_locked() {
                let g = got(
                    lock.lock_interruptible(Some(Duration::ZERO), None),
                    shmds::LockGuard::leak,
                )
                .map_err(|f| fail_to_py(lock.name(), f))?;
                if once || !matches!(g, Got::No) {
                    return this.died.record(py, g, "lock", lock.name());
                }
            }
        }
        let (lock, closing) = waitable!(slf);
        let g = run(py, &closing, None, lock.name(), |i| {
            got(lock.lock_interruptible(wait, i), shmds::LockGuard::leak)
        })?;
        slf.borrow().died.record(py, g, "lock", lock.name())
    }
}

methods! { Lock, lock, shmds::Lock, locking;
    /// Open the lock `name` of `segment`, creating it if it does not exist
    /// (with `create=False`, only open it).
    #[new]
    #[pyo3(signature = (segment, name, create=true))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, create: bool) -> PyResult<Lock> {
        let seg = segment.get()?;
        Ok(Lock {
            lock: opened(if create {
                seg.open_or_create_lock(name)
            } else {
                seg.open_lock(name)
            })?,
            closing: Arc::default(),
            died: Died::default(),
        })
    }


    /// Whether some process holds the lock now.
    fn locked(&self) -> PyResult<bool> {
        Ok(self.get()?.is_locked())
    }

    /// The holder now: `(pid, thread id or None)`, or None when free.
    #[getter]
    fn holder(&self) -> PyResult<Option<(u32, Option<u32>)>> {
        Ok(self.get()?.holder())
    }

    /// How often the lock was taken over from a holder that died (by any
    /// process).
    #[getter]
    fn owner_deaths(&self) -> PyResult<u64> {
        Ok(self.get()?.owner_deaths())
    }

    /// Wait until the lock is free or its holder dead, taking nothing
    /// (for `shmds._aio`): False once `timeout` passed.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_acquire(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        let (lock, closing) = waitable!(slf);
        let t = wait_time(timeout)?;
        run(slf.py(), &closing, cancel.as_deref(), lock.name(), |i| {
            lock.wait_unlocked(t, i).map_err(Fail::from)
        })
    }

    /// Wake every waiter of the lock (in every process) to look at its
    /// cancellation token.
    fn _wake(&self) {
        if let Some(lock) = &self.lock {
            lock.wake_waiters();
        }
    }
}

// ----------------------------------------------------------------- RwLock

/// A readers-writer lock shared by processes.
#[pyclass(module = "shmds._shmds", name = "RwLock", subclass)]
pub(crate) struct RwLock {
    rw: Option<Arc<shmds::RwLock>>,
    closing: Arc<Closing>,
    died: Died,
}

impl RwLock {
    fn acquire_impl(slf: &Bound<'_, Self>, write: bool, wait: Option<Duration>) -> PyResult<bool> {
        let py = slf.py();
        let once = wait == Some(Duration::ZERO);
        let attempt = |rw: &shmds::RwLock, t: Option<Duration>, i: Interrupt<'_>| {
            if write {
                got(rw.write_interruptible(t, i), shmds::WriteGuard::leak)
            } else {
                got(rw.read_interruptible(t, i), shmds::ReadGuard::leak)
            }
        };
        {
            let this = slf.borrow();
            let rw = this.get()?;
            if once || rw.writer().is_none() {
                let g = attempt(rw, Some(Duration::ZERO), None)
                    .map_err(|f| fail_to_py(rw.name(), f))?;
                if once || !matches!(g, Got::No) {
                    return this.died.record(py, g, "rwlock", rw.name());
                }
            }
        }
        let (rw, closing) = waitable!(slf);
        let g = run(py, &closing, None, rw.name(), |i| attempt(&rw, wait, i))?;
        slf.borrow().died.record(py, g, "rwlock", rw.name())
    }

    fn wait_impl(
        slf: &Bound<'_, Self>,
        write: bool,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<bool> {
        let (rw, closing) = waitable!(slf);
        let t = wait_time(timeout)?;
        run(slf.py(), &closing, cancel, rw.name(), |i| {
            if write {
                rw.wait_writable(t, i)
            } else {
                rw.wait_readable(t, i)
            }
            .map_err(Fail::from)
        })
    }
}

methods! { RwLock, rw, shmds::RwLock;
    /// Open the rwlock `name` of `segment`; with `reader_slots` (the most
    /// processes holding read locks at once), create it if it does not
    /// exist.
    #[new]
    #[pyo3(signature = (segment, name, reader_slots=None))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, reader_slots: Option<u32>) -> PyResult<Self> {
        let seg = segment.get()?;
        Ok(RwLock {
            rw: opened(match reader_slots {
                Some(n) => seg.open_or_create_rwlock(name, n),
                None => seg.open_rwlock(name),
            })?,
            closing: Arc::default(),
            died: Died::default(),
        })
    }

    /// Take a read lock (shared with other readers), arguments as
    /// `threading.Lock.acquire`; returns whether it was taken. A waiting
    /// writer keeps new readers out.
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire_read(slf: &Bound<'_, Self>, blocking: bool, timeout: f64) -> PyResult<bool> {
        RwLock::acquire_impl(slf, false, lock_wait(blocking, timeout)?)
    }

    /// Release a read lock this process holds (RuntimeError if none).
    fn release_read(&self) -> PyResult<()> {
        self.get()?.read_unlock().map_err(to_py)
    }

    /// Take the write lock (no reader, no other writer).
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire_write(slf: &Bound<'_, Self>, blocking: bool, timeout: f64) -> PyResult<bool> {
        RwLock::acquire_impl(slf, true, lock_wait(blocking, timeout)?)
    }

    /// Release the write lock this process holds (RuntimeError if not).
    fn release_write(&self) -> PyResult<()> {
        self.get()?.write_unlock().map_err(to_py)
    }

    /// Read locks held now, by all processes.
    #[getter]
    fn readers(&self) -> PyResult<u64> {
        Ok(self.get()?.readers())
    }

    /// The pid of the writer holding (or draining for) the lock, or None.
    #[getter]
    fn writer(&self) -> PyResult<Option<u32>> {
        Ok(self.get()?.writer())
    }

    /// The number of reader slots.
    #[getter]
    fn reader_slots(&self) -> PyResult<u32> {
        Ok(self.get()?.reader_slots())
    }

    /// How often a writer that died holding it was taken over.
    #[getter]
    fn owner_deaths(&self) -> PyResult<u64> {
        Ok(self.get()?.status().owner_deaths)
    }

    /// The pid of the dead writer that the last successful acquire (read or
    /// write) through this handle took over from, else None.
    #[getter]
    fn owner_died(&self) -> Option<u32> {
        self.died.get()
    }

    /// Wait until a read lock may be had, taking nothing (`shmds._aio`).
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_read(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        RwLock::wait_impl(slf, false, timeout, cancel.as_deref())
    }

    /// Wait until the write lock may be had, taking nothing (`shmds._aio`).
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_write(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        RwLock::wait_impl(slf, true, timeout, cancel.as_deref())
    }

    /// Wake every waiter (in every process) to look at its token.
    fn _wake(&self) {
        if let Some(rw) = &self.rw {
            rw.wake_waiters();
        }
    }
}

// -------------------------------------------------------------- Condition

/// A condition variable with its own robust lock, `threading.Condition`'s
/// methods.
#[pyclass(module = "shmds._shmds", name = "Condition", subclass)]
pub(crate) struct Condition {
    cond: Option<Arc<shmds::Condition>>,
    closing: Arc<Closing>,
    died: Died,
}

impl Condition {
    fn acquire_impl(slf: &Bound<'_, Self>, wait: Option<Duration>) -> PyResult<bool> {
        let py = slf.py();
        let once = wait == Some(Duration::ZERO);
        {
            let this = slf.borrow();
            let cond = this.get()?;
            let g = got(
                cond.lock_interruptible(Some(Duration::ZERO), None),
                shmds::LockGuard::leak,
            )
            .map_err(|f| fail_to_py(cond.name(), f))?;
            if once || !matches!(g, Got::No) {
                return this.died.record(py, g, "condition", cond.name());
            }
        }
        let (cond, closing) = waitable!(slf);
        let g = run(py, &closing, None, cond.name(), |i| {
            got(cond.lock_interruptible(wait, i), shmds::LockGuard::leak)
        })?;
        slf.borrow().died.record(py, g, "condition", cond.name())
    }

    fn owned(&self, what: &str) -> PyResult<&Arc<shmds::Condition>> {
        let cond = self.get()?;
        if !cond.is_held_by_me() {
            return Err(NOT_OWNER.err(format!("cannot {what} on un-acquired lock"), &[]));
        }
        Ok(cond)
    }
}

methods! { Condition, cond, shmds::Condition, locking;
    /// Open the condition `name` of `segment`, creating it if it does not
    /// exist (with `create=False`, only open it).
    #[new]
    #[pyo3(signature = (segment, name, create=true))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, create: bool) -> PyResult<Condition> {
        let seg = segment.get()?;
        Ok(Condition {
            cond: opened(if create {
                seg.open_or_create_condition(name)
            } else {
                seg.open_condition(name)
            })?,
            closing: Arc::default(),
            died: Died::default(),
        })
    }


    /// Release the lock, wait for a notify (at most `timeout` seconds; None:
    /// no limit), take the lock again; returns False if the time ran out.
    /// RuntimeError if this process does not hold the lock. Ctrl-C ends
    /// the wait with the lock taken again.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        let py = slf.py();
        let t = opt_wait(timeout)?;
        let (cond, closing) = {
            let this = slf.borrow();
            (this.owned("wait")?.clone(), this.closing.clone())
        };
        let (notified, died) = run(py, &closing, None, cond.name(), |i| {
            cond.wait_held(t, i).map_err(Fail::from)
        })?;
        if let Some(pid) = died {
            slf.borrow()
                .died
                .record(py, Got::FromDead(pid), "condition", cond.name())?;
        }
        Ok(notified)
    }

    /// Wake up to `n` of the waits in progress (in any process).
    /// RuntimeError if this process does not hold the lock.
    #[pyo3(signature = (n=1))]
    fn notify(&self, n: i64) -> PyResult<()> {
        if n < 0 {
            return Err(PyValueError::new_err("n must be a non-negative integer"));
        }
        self.owned("notify")?
            .notify(n.min(u32::MAX as i64) as u32);
        Ok(())
    }

    /// Wake every wait in progress. RuntimeError if this process does not
    /// hold the lock.
    fn notify_all(&self) -> PyResult<()> {
        self.owned("notify")?.notify_all();
        Ok(())
    }

    /// Waits in progress now, in all processes (approximate: a waiter that
    /// died counts on).
    #[getter]
    fn waiters(&self) -> PyResult<u32> {
        Ok(self.get()?.waiters())
    }

    /// Whether this process holds the lock.
    fn _is_owned(&self) -> PyResult<bool> {
        Ok(self.get()?.is_held_by_me())
    }
}

// -------------------------------------------------------------- Semaphore

/// A counting semaphore shared by processes (bounded or not).
#[pyclass(module = "shmds._shmds", name = "Semaphore", subclass)]
pub(crate) struct Semaphore {
    sem: Option<Arc<shmds::Semaphore>>,
    closing: Arc<Closing>,
}

impl Semaphore {
    fn acquire_impl(slf: &Bound<'_, Self>, wait: Option<Duration>) -> PyResult<bool> {
        {
            let this = slf.borrow();
            let sem = this.get()?;
            if let Some(permit) = sem.try_acquire().map_err(to_py)? {
                permit.forget();
                return Ok(true);
            }
            if wait == Some(Duration::ZERO) {
                return Ok(false);
            }
        }
        let (sem, closing) = waitable!(slf);
        run(slf.py(), &closing, None, sem.name(), |i| {
            match sem.acquire_interruptible(wait, i) {
                Ok(Some(permit)) => {
                    permit.forget();
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(Fail::from(e)),
            }
        })
    }
}

methods! { Semaphore, sem, shmds::Semaphore;
    /// Open the semaphore `name` of `segment`; with `value`, create it
    /// with that many permits if it does not exist (`bounded`: releases
    /// past `value` fail, as `threading.BoundedSemaphore`'s). An existing
    /// one must have the same value and boundedness.
    #[new]
    #[pyo3(signature = (segment, name, value=None, bounded=false))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        value: Option<i64>,
        bounded: bool,
    ) -> PyResult<Semaphore> {
        let seg = segment.get()?;
        let sem = match value {
            None => seg.open_semaphore(name),
            Some(v) => {
                let v = u32::try_from(v).map_err(|_| {
                    PyValueError::new_err(format!(
                        "semaphore initial value must be >= 0 and at most {}, not {v}",
                        u32::MAX
                    ))
                })?;
                if bounded {
                    seg.open_or_create_bounded_semaphore(name, v)
                } else {
                    seg.open_or_create_semaphore(name, v)
                }
            }
        };
        Ok(Semaphore {
            sem: opened(sem)?,
            closing: Arc::default(),
        })
    }

    /// Take a permit, as `threading.Semaphore.acquire`: waiting (without
    /// the GIL; Ctrl-C interrupts) at most `timeout` seconds (None: no
    /// limit), or not at all with `blocking=False`. Whether one was taken.
    #[pyo3(signature = (blocking=true, timeout=None))]
    fn acquire(slf: &Bound<'_, Self>, blocking: bool, timeout: Option<f64>) -> PyResult<bool> {
        if !blocking && timeout.is_some() {
            return Err(PyValueError::new_err(
                "can't specify timeout for non-blocking acquire",
            ));
        }
        let wait = if blocking {
            opt_wait(timeout)?
        } else {
            Some(Duration::ZERO)
        };
        Semaphore::acquire_impl(slf, wait)
    }

    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Semaphore::acquire_impl(slf, None)
    }

    /// Give `n` permits back (any process may), waking as many waiters. A
    /// bounded semaphore raises ValueError (TooManyReleasesError), adding
    /// none, if that would pass its initial value.
    #[pyo3(signature = (n=1))]
    fn release(&self, n: i64) -> PyResult<()> {
        if n < 1 {
            return Err(PyValueError::new_err("n must be one or more"));
        }
        let n = u32::try_from(n)
            .map_err(|_| PyValueError::new_err(format!("cannot release {n} permits at once")))?;
        self.get()?.release(n).map_err(to_py)
    }

    fn __exit__(
        &self,
        _type: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.release(1)
    }

    /// Permits free now.
    #[getter]
    fn value(&self) -> PyResult<u32> {
        Ok(self.get()?.value())
    }

    /// The value it was created with (the bound of a bounded one).
    #[getter]
    fn initial_value(&self) -> PyResult<u32> {
        Ok(self.get()?.initial_value())
    }

    /// Whether releases past the initial value fail.
    #[getter]
    fn bounded(&self) -> PyResult<bool> {
        Ok(self.get()?.is_bounded())
    }

    /// Wait until a permit is free, taking none (`shmds._aio`).
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_acquire(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        let (sem, closing) = waitable!(slf);
        let t = wait_time(timeout)?;
        run(slf.py(), &closing, cancel.as_deref(), sem.name(), |i| {
            sem.wait_available(t, i).map_err(Fail::from)
        })
    }

    /// Wake every waiter (in every process) to look at its token.
    fn _wake(&self) {
        if let Some(sem) = &self.sem {
            sem.wake_waiters();
        }
    }
}

// ---------------------------------------------------------------- Barrier

/// A barrier for a fixed number of parties, `threading.Barrier`'s methods.
#[pyclass(module = "shmds._shmds", name = "Barrier", subclass)]
pub(crate) struct Barrier {
    barrier: Option<Arc<shmds::Barrier>>,
    closing: Arc<Closing>,
}

methods! { Barrier, barrier, shmds::Barrier;
    /// Open the barrier `name` of `segment`; with `parties`, create it if
    /// it does not exist.
    #[new]
    #[pyo3(signature = (segment, name, parties=None))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, parties: Option<u32>) -> PyResult<Barrier> {
        let seg = segment.get()?;
        Ok(Barrier {
            barrier: opened(match parties {
                Some(n) => seg.open_or_create_barrier(name, n),
                None => seg.open_barrier(name),
            })?,
            closing: Arc::default(),
        })
    }

    /// Wait (without the GIL) until `parties` callers, in any processes,
    /// wait; returns this caller's arrival index (0 to parties - 1). Raises
    /// `threading.BrokenBarrierError` if the barrier is or becomes broken,
    /// also when `timeout` (seconds; None: no limit) passes first, which
    /// breaks it for every waiter, as Ctrl-C does.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<u32> {
        let t = opt_wait(timeout)?;
        let (barrier, closing) = waitable!(slf);
        let index = run(slf.py(), &closing, None, barrier.name(), |i| {
            match barrier.wait_interruptible(t, i) {
                Ok(w) => Ok(Some(w.index())),
                Err(shmds::Error::Timeout { .. }) => Ok(None),
                Err(e) => Err(Fail::from(e)),
            }
        })?;
        index.ok_or_else(|| {
            BrokenBarrierError::new_err(format!(
                "barrier {:?}: the wait timed out, which broke the barrier",
                barrier.name()
            ))
        })
    }

    /// Make the barrier new (not broken, nobody waiting): its waiters raise
    /// BrokenBarrierError.
    fn reset(&self) -> PyResult<()> {
        self.get()?.reset();
        Ok(())
    }

    /// Break the barrier: every waiter, and every wait until `reset()`,
    /// raises BrokenBarrierError.
    fn abort(&self) -> PyResult<()> {
        self.get()?.abort();
        Ok(())
    }

    /// Parties needed to trip it.
    #[getter]
    fn parties(&self) -> PyResult<u32> {
        Ok(self.get()?.parties())
    }

    /// Parties waiting now.
    #[getter]
    fn n_waiting(&self) -> PyResult<u32> {
        Ok(self.get()?.n_waiting())
    }

    /// Whether it is broken.
    #[getter]
    fn broken(&self) -> PyResult<bool> {
        Ok(self.get()?.is_broken())
    }
}

// ------------------------------------------------------------------ Event

/// An event flag shared by processes, `threading.Event`'s methods.
#[pyclass(module = "shmds._shmds", name = "Event", subclass)]
pub(crate) struct Event {
    event: Option<Arc<shmds::Event>>,
    closing: Arc<Closing>,
}

impl Event {
    fn wait_impl(
        slf: &Bound<'_, Self>,
        t: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<bool> {
        {
            let this = slf.borrow();
            let event = this.get()?;
            if event.is_set() {
                return Ok(true);
            }
            if t == Some(Duration::ZERO) {
                return Ok(false);
            }
        }
        let (event, closing) = waitable!(slf);
        run(slf.py(), &closing, cancel, event.name(), |i| {
            event.wait_interruptible(t, i).map_err(Fail::from)
        })
    }
}

methods! { Event, event, shmds::Event;
    /// Open the event `name` of `segment`, creating it (clear) if it does
    /// not exist (with `create=False`, only open it).
    #[new]
    #[pyo3(signature = (segment, name, create=true))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, create: bool) -> PyResult<Event> {
        let seg = segment.get()?;
        Ok(Event {
            event: opened(if create {
                seg.open_or_create_event(name)
            } else {
                seg.open_event(name)
            })?,
            closing: Arc::default(),
        })
    }

    /// Whether the flag is set.
    fn is_set(&self) -> PyResult<bool> {
        Ok(self.get()?.is_set())
    }

    /// Set the flag, waking every waiter (in every process).
    fn set(&self) -> PyResult<()> {
        self.get()?.set();
        Ok(())
    }

    /// Clear the flag.
    fn clear(&self) -> PyResult<()> {
        self.get()?.clear();
        Ok(())
    }

    /// Wait (without the GIL; Ctrl-C interrupts) until the flag is set, at
    /// most `timeout` seconds (None: no limit); returns the flag.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        Event::wait_impl(slf, opt_wait(timeout)?, None)
    }

    /// `wait` for `shmds._aio` (stops when `cancel` is cancelled).
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        Event::wait_impl(slf, wait_time(timeout)?, cancel.as_deref())
    }

    /// Wake every waiter (in every process) to look at its token.
    fn _wake(&self) {
        if let Some(event) = &self.event {
            event.wake_waiters();
        }
    }
}

// ------------------------------------------------------------------ Latch

/// A count-down latch shared by processes.
#[pyclass(module = "shmds._shmds", name = "Latch", subclass)]
pub(crate) struct Latch {
    latch: Option<Arc<shmds::Latch>>,
    closing: Arc<Closing>,
}

impl Latch {
    fn wait_impl(
        slf: &Bound<'_, Self>,
        t: Option<Duration>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<bool> {
        {
            let this = slf.borrow();
            let latch = this.get()?;
            if latch.count() == 0 {
                return Ok(true);
            }
            if t == Some(Duration::ZERO) {
                return Ok(false);
            }
        }
        let (latch, closing) = waitable!(slf);
        run(slf.py(), &closing, cancel, latch.name(), |i| {
            latch.wait_interruptible(t, i).map_err(Fail::from)
        })
    }
}

methods! { Latch, latch, shmds::Latch;
    /// Open the latch `name` of `segment`; with `count`, create it (open
    /// after `count` count-downs) if it does not exist.
    #[new]
    #[pyo3(signature = (segment, name, count=None))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, count: Option<u32>) -> PyResult<Latch> {
        let seg = segment.get()?;
        Ok(Latch {
            latch: opened(match count {
                Some(n) => seg.open_or_create_latch(name, n),
                None => seg.open_latch(name),
            })?,
            closing: Arc::default(),
        })
    }

    /// Count down by `n` (any process may); at 0 every waiter wakes.
    /// Returns the count left. ValueError if `n` is more than is left.
    #[pyo3(signature = (n=1))]
    fn count_down(&self, n: u32) -> PyResult<u32> {
        self.get()?.count_down(n).map_err(to_py)
    }

    /// Count-downs still awaited.
    #[getter]
    fn count(&self) -> PyResult<u32> {
        Ok(self.get()?.count())
    }

    /// The count it was created with.
    #[getter]
    fn initial_count(&self) -> PyResult<u32> {
        Ok(self.get()?.initial_count())
    }

    /// Wait (without the GIL; Ctrl-C interrupts) until the count is 0, at
    /// most `timeout` seconds (None: no limit); returns whether it is.
    #[pyo3(signature = (timeout=None))]
    fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        Latch::wait_impl(slf, opt_wait(timeout)?, None)
    }

    /// `wait` for `shmds._aio` (stops when `cancel` is cancelled).
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        Latch::wait_impl(slf, wait_time(timeout)?, cancel.as_deref())
    }

    /// Wake every waiter (in every process) to look at its token.
    fn _wake(&self) {
        if let Some(latch) = &self.latch {
            latch.wake_waiters();
        }
    }
}

// ------------------------------------------------------------------- Once

/// A run-once cell shared by processes.
#[pyclass(module = "shmds._shmds", name = "Once", subclass)]
pub(crate) struct Once {
    once: Option<Arc<shmds::Once>>,
    closing: Arc<Closing>,
    died: Died,
}

methods! { Once, once, shmds::Once;
    /// Open the once `name` of `segment`, creating it if it does not exist
    /// (with `create=False`, only open it).
    #[new]
    #[pyo3(signature = (segment, name, create=true))]
    fn py_new(segment: PyRef<'_, Segment>, name: &str, create: bool) -> PyResult<Once> {
        let seg = segment.get()?;
        Ok(Once {
            once: opened(if create {
                seg.open_or_create_once(name)
            } else {
                seg.open_once(name)
            })?,
            closing: Arc::default(),
            died: Died::default(),
        })
    }

    /// Call `fn()` unless it has run to completion (here or in any other
    /// process); returns whether this call ran it. While another caller
    /// runs it, waits (without the GIL; Ctrl-C interrupts). If `fn` raises,
    /// the once stays not done (the next caller runs it) and the exception
    /// propagates; if the process running it dies, the next caller runs it
    /// (`owner_died` then names the dead runner).
    fn call(slf: &Bound<'_, Self>, r#fn: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        let (once, closing) = {
            let this = slf.borrow();
            let once = this.get()?;
            if once.is_done() {
                return Ok(false);
            }
            (once.clone(), this.closing.clone())
        };
        let began = run(py, &closing, None, once.name(), |i| {
            match once.begin(None, i) {
                Ok(Some(run)) => {
                    let after = run.after_death();
                    run.leak();
                    Ok(Some(after))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(Fail::from(e)),
            }
        })?;
        let Some(after_death) = began else {
            return Ok(false);
        };
        slf.borrow()
            .died
            .0
            .store(after_death.unwrap_or(0), Ordering::Relaxed);
        match r#fn.call0() {
            Ok(_) => {
                once.finish(true).map_err(to_py)?;
                Ok(true)
            }
            Err(e) => {
                let _ = once.finish(false);
                Err(e)
            }
        }
    }

    /// Whether the function has run to completion.
    #[getter]
    fn done(&self) -> PyResult<bool> {
        Ok(self.get()?.is_done())
    }

    /// Runs started so far, in all processes (more than 1 after failures
    /// or deaths).
    #[getter]
    fn attempts(&self) -> PyResult<u64> {
        Ok(self.get()?.attempts())
    }

    /// The pid of the runner that died before the last run this handle
    /// began, else None.
    #[getter]
    fn owner_died(&self) -> Option<u32> {
        self.died.get()
    }
}

/// Add the classes and exceptions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Lock>()?;
    m.add_class::<RwLock>()?;
    m.add_class::<Condition>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<Barrier>()?;
    m.add_class::<Event>()?;
    m.add_class::<Latch>()?;
    m.add_class::<Once>()?;
    m.add("OwnerDiedWarning", py.get_type::<OwnerDiedWarning>())?;
    m.add("OwnerDiedError", OWNER_DIED.get(py)?)?;
    m.add("NotOwnerError", NOT_OWNER.get(py)?)?;
    m.add("TooManyReleasesError", TOO_MANY_RELEASES.get(py)?)?;
    m.add("ReaderSlotsFullError", READER_SLOTS_FULL.get(py)?)?;
    Ok(())
}
