//! `Queue` (FIFO) and `Stack` (LIFO) handles: one native class with the
//! `queue.Queue` method shapes; the Python package names the two kinds.
//!
//! Non-blocking attempts run holding the GIL (they take nanoseconds);
//! blocking waits release it and check for signals between sleeps, so
//! Ctrl-C interrupts a `get()` that waits forever (see `wait.rs`, which
//! also explains `close()` waking waiters and the asyncio waits).
//!
//! Every get from a queue (not a stack) counts as an unfinished task, for
//! `task_done()` and `join()`, as `queue.Queue` counts every put.

use crate::codec::{Codec, Scratch};
use crate::wait::{closed_while_waiting, wait_cancellable, CancelToken, Closing, Fail};
use crate::{closed, to_py, Segment};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

/// The interrupt callback of a `shmds` blocking call.
type Interrupt<'a> = Option<&'a mut dyn FnMut() -> bool>;

/// A timeout in the `queue.Queue` sense: `None` waits forever; negative
/// is an error.
pub(crate) fn wait_time(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
        Some(t) => Ok(Some(
            Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
        )),
    }
}

/// What a blocking call watches besides its own condition.
struct Watch<'a> {
    /// The handle's closed flag.
    closing: &'a Closing,
    /// The cancellation token of an asyncio wait, if any.
    cancel: Option<&'a CancelToken>,
    /// The structure's name, for messages.
    name: &'a str,
}

/// Run a blocking call of the crate (which applies its own timeout)
/// through [`wait_cancellable`]: its outcome, or the Python exception of a
/// closed handle (`ValueError`), a cancellation (`WaitCancelled`) or a
/// signal handler (Ctrl-C).
fn blocking<T: Send>(
    py: Python<'_>,
    watch: Watch<'_>,
    call: impl FnOnce(Interrupt<'_>) -> shmds::Result<T> + Send,
) -> PyResult<shmds::Result<T>> {
    let outcome = wait_cancellable(py, watch.closing, watch.cancel, None, |w| {
        call(Some(w.check())).map_err(Fail::from)
    })?;
    match outcome {
        Ok(v) => Ok(Ok(v)),
        Err(Fail::Shmds(e)) => Ok(Err(e)),
        Err(Fail::TimedOut) => Ok(Err(shmds::Error::Timeout {
            name: watch.name.to_owned(),
        })),
        Err(Fail::Closed) => Err(closed_while_waiting(watch.name)),
        // Not made by queue or stack calls: stopped without a reason left.
        Err(other) => Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(format!(
            "waiting on {:?} was interrupted ({other:?})",
            watch.name
        ))),
    }
}

/// A queue or a stack: the operations both have.
#[derive(Clone)]
enum Ring {
    Fifo(Arc<shmds::RawQueue>),
    Lifo(Arc<shmds::RawStack>),
}

macro_rules! each {
    ($ring:expr, $r:ident => $body:expr) => {
        match $ring {
            Ring::Fifo($r) => $body,
            Ring::Lifo($r) => $body,
        }
    };
}

impl Ring {
    fn try_push_slice(&self, elems: &[u8]) -> shmds::Result<usize> {
        each!(self, r => r.try_push_slice(elems))
    }
    /// A queue's pops count tasks (see the module documentation).
    fn try_pop_into(&self, out: &mut [u8]) -> shmds::Result<usize> {
        match self {
            Ring::Fifo(q) => q.try_pop_tasks_into(out),
            Ring::Lifo(s) => s.try_pop_into(out),
        }
    }
    fn push_slice(
        &self,
        elems: &[u8],
        t: Option<Duration>,
        i: Interrupt<'_>,
    ) -> shmds::Result<usize> {
        each!(self, r => r.push_slice(elems, t, i))
    }
    fn pop_into(
        &self,
        out: &mut [u8],
        t: Option<Duration>,
        i: Interrupt<'_>,
    ) -> shmds::Result<usize> {
        match self {
            Ring::Fifo(q) => q.pop_tasks_into(out, t, i),
            Ring::Lifo(s) => s.pop_into(out, t, i),
        }
    }
    fn wait_ready(&self, put: bool, t: Option<Duration>, i: Interrupt<'_>) -> shmds::Result<bool> {
        if put {
            each!(self, r => r.wait_not_full(t, i))
        } else {
            each!(self, r => r.wait_not_empty(t, i))
        }
    }
    fn wake_waiters(&self) {
        each!(self, r => r.wake_waiters())
    }
    fn shutdown(&self, immediate: bool) -> shmds::Result<usize> {
        each!(self, r => r.shutdown(immediate))
    }
    fn is_shutdown(&self) -> shmds::Result<bool> {
        each!(self, r => r.check().map(|()| r.is_shutdown()))
    }
    /// The queue, for the task methods a stack has not.
    fn fifo(&self, what: &str) -> PyResult<&Arc<shmds::RawQueue>> {
        match self {
            Ring::Fifo(q) => Ok(q),
            Ring::Lifo(_) => Err(PyTypeError::new_err(format!(
                "{what} is for queues: a stack does not count tasks"
            ))),
        }
    }
    /// The length, after checking the structure was not erased.
    fn len(&self) -> shmds::Result<usize> {
        each!(self, r => r.check().map(|()| r.len()))
    }
    fn is_full(&self) -> shmds::Result<bool> {
        each!(self, r => r.check().map(|()| r.is_full()))
    }
    fn capacity(&self) -> usize {
        each!(self, r => r.capacity())
    }
    fn elem_size(&self) -> usize {
        each!(self, r => r.elem_size())
    }
    fn name(&self) -> &str {
        each!(self, r => r.name())
    }
    fn type_descriptor(&self) -> &str {
        each!(self, r => r.type_descriptor())
    }
    fn segment_name(&self) -> &str {
        each!(self, r => r.segment_name())
    }
}

/// A byte buffer from the buffer protocol, to use without the GIL.
struct Bytes {
    ptr: *mut u8,
    len: usize,
    _buf: PyBuffer<u8>,
}

// SAFETY: the pointer is into the exporter's memory, which `_buf` keeps
// alive (a buffer export pins it) for as long as this value lives.
unsafe impl Send for Bytes {}
// SAFETY: as above; shared access only reads through `slice`.
unsafe impl Sync for Bytes {}

impl Bytes {
    fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Bytes> {
        let buf = PyBuffer::<u8>::get(obj)?;
        if !buf.is_c_contiguous() {
            return Err(PyBufferError::new_err("the buffer must be C-contiguous"));
        }
        if writable && buf.readonly() {
            return Err(PyBufferError::new_err("the buffer is read-only"));
        }
        Ok(Bytes {
            ptr: buf.buf_ptr().cast(),
            len: buf.len_bytes(),
            _buf: buf,
        })
    }
    fn slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe the exported, contiguous buffer, alive
        // while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `slice`; `get` checked the export is writable.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A bounded queue (`kind="queue"`, FIFO) or stack (`kind="stack"`, LIFO)
/// of fixed-size elements in a segment.
#[pyclass(module = "shmds._shmds", name = "Queue", subclass)]
pub(crate) struct Queue {
    ring: Option<Ring>,
    codec: Codec,
    /// Set by close(); calls blocked on this handle watch it.
    closing: Arc<Closing>,
}

impl Queue {
    fn ring(&self) -> PyResult<&Ring> {
        self.ring.as_ref().ok_or_else(closed)
    }

    /// The ring and what a blocking call on it watches, holding no borrow
    /// of the object (so another thread may close() it meanwhile).
    fn waitable(slf: &Bound<'_, Self>) -> PyResult<(Ring, Arc<Closing>)> {
        let this = slf.borrow();
        Ok((this.ring()?.clone(), this.closing.clone()))
    }

    // The blocking paths below hold no borrow of the object while they
    // wait (they wait on their own reference to the queue), so another
    // thread may close() the handle meanwhile; close() wakes them.

    fn put_impl(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (ring, closing, mut elem) = {
            let this = slf.borrow();
            let ring = this.ring()?;
            let mut elem = Scratch::new(ring.elem_size());
            this.codec.encode(item, elem.bytes())?;
            if ring.try_push_slice(elem.bytes()).map_err(to_py)? == 1 {
                return Ok(());
            }
            if !block {
                return Err(Full::new_err(format!("{} is full", ring.name())));
            }
            (ring.clone(), this.closing.clone(), elem)
        };
        let timeout = wait_time(timeout)?;
        let bytes = elem.bytes();
        let watch = Watch {
            closing: &closing,
            cancel: None,
            name: ring.name(),
        };
        match blocking(slf.py(), watch, |interrupt| {
            ring.push_slice(bytes, timeout, interrupt)
        })? {
            Ok(1) => Ok(()),
            Ok(_) | Err(shmds::Error::Timeout { .. }) => {
                Err(Full::new_err(format!("{} stayed full", ring.name())))
            }
            Err(e) => Err(to_py(e)),
        }
    }

    fn get_impl<'py>(
        slf: &Bound<'py, Self>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (ring, closing, mut elem) = {
            let this = slf.borrow();
            let ring = this.ring()?;
            let mut elem = Scratch::new(ring.elem_size());
            if ring.try_pop_into(elem.bytes()).map_err(to_py)? == 1 {
                return this.codec.decode(py, elem.bytes());
            }
            if !block {
                return Err(Empty::new_err(format!("{} is empty", ring.name())));
            }
            (ring.clone(), this.closing.clone(), elem)
        };
        let timeout = wait_time(timeout)?;
        let bytes = elem.bytes();
        let watch = Watch {
            closing: &closing,
            cancel: None,
            name: ring.name(),
        };
        match blocking(py, watch, |interrupt| {
            ring.pop_into(bytes, timeout, interrupt)
        })? {
            // The codec outlives close(), which only drops the queue handle.
            Ok(_) => slf.borrow().codec.decode(py, elem.bytes()),
            Err(shmds::Error::Timeout { .. }) => {
                Err(Empty::new_err(format!("{} stayed empty", ring.name())))
            }
            Err(e) => Err(to_py(e)),
        }
    }
}

#[pymethods]
impl Queue {
    /// Open the queue or stack `name` of `segment`. With a `descriptor` and
    /// `capacity`, create it first if it does not exist; without, open it
    /// whatever its type. `encode`/`decode` convert elements that are not
    /// numbers or strings.
    #[new]
    #[pyo3(signature = (segment, name, kind, descriptor=None, capacity=None, encode=None, decode=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        kind: &str,
        descriptor: Option<&str>,
        capacity: Option<usize>,
        encode: Option<Py<PyAny>>,
        decode: Option<Py<PyAny>>,
    ) -> PyResult<Queue> {
        let seg = segment.get()?;
        let ring = match (kind, descriptor, capacity) {
            ("queue", None, _) => seg.open_queue_raw(name).map(|r| Ring::Fifo(Arc::new(r))),
            ("queue", Some(d), Some(n)) => seg
                .open_or_create_queue_raw(name, d, n)
                .map(|r| Ring::Fifo(Arc::new(r))),
            ("stack", None, _) => seg.open_stack_raw(name).map(|r| Ring::Lifo(Arc::new(r))),
            ("stack", Some(d), Some(n)) => seg
                .open_or_create_stack_raw(name, d, n)
                .map(|r| Ring::Lifo(Arc::new(r))),
            ("queue" | "stack", Some(_), None) => {
                return Err(PyValueError::new_err(format!(
                    "creating a {kind} needs its capacity"
                )))
            }
            _ => {
                return Err(PyValueError::new_err(format!(
                    "kind must be 'queue' or 'stack', not {kind:?}"
                )))
            }
        }
        .map_err(to_py)?;
        let codec = Codec::new(ring.type_descriptor(), ring.elem_size(), encode, decode)?;
        Ok(Queue {
            ring: Some(ring),
            codec,
            closing: Arc::default(),
        })
    }

    /// Put `item`; if full, wait for room (forever when `timeout` is None)
    /// unless `block` is false. Raises `queue.Full` when there is no room.
    #[pyo3(signature = (item, block=true, timeout=None))]
    fn put(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        Queue::put_impl(slf, item, block, timeout)
    }

    /// `put(item, block=False)`.
    fn put_nowait(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        Queue::put_impl(slf, item, false, None)
    }

    /// Take an element (the oldest for a queue, the newest for a stack); if
    /// there is none, wait (forever when `timeout` is None) unless `block`
    /// is false. Raises `queue.Empty` when there is none.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        slf: &Bound<'py, Self>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Queue::get_impl(slf, block, timeout)
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Queue::get_impl(slf, false, None)
    }

    /// Push the packed elements in `data` (a C-contiguous buffer whose
    /// length is a multiple of the element size); returns how many were
    /// pushed. Blocking, waits for room for all (until `timeout`).
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn _put_bytes(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let py = slf.py();
        let (ring, closing) = Queue::waitable(slf)?;
        let bytes = Bytes::get(data, false)?;
        if !block {
            return ring.try_push_slice(bytes.slice()).map_err(to_py);
        }
        let timeout = wait_time(timeout)?;
        let watch = Watch {
            closing: &closing,
            cancel: None,
            name: ring.name(),
        };
        blocking(py, watch, |interrupt| {
            ring.push_slice(bytes.slice(), timeout, interrupt)
        })?
        .map_err(to_py)
    }

    /// Pop up to `len(out) // itemsize` elements into the writable buffer
    /// `out`; returns how many (0 when none came). Blocking, waits for the
    /// first (until `timeout`).
    #[pyo3(signature = (out, block=true, timeout=None))]
    fn _get_into(
        slf: &Bound<'_, Self>,
        out: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let py = slf.py();
        let (ring, closing) = Queue::waitable(slf)?;
        let mut bytes = Bytes::get(out, true)?;
        let got = ring.try_pop_into(bytes.slice_mut()).map_err(to_py)?;
        if got > 0 || !block || bytes.len == 0 {
            return Ok(got);
        }
        let timeout = wait_time(timeout)?;
        let watch = Watch {
            closing: &closing,
            cancel: None,
            name: ring.name(),
        };
        match blocking(py, watch, |interrupt| {
            ring.pop_into(bytes.slice_mut(), timeout, interrupt)
        })? {
            Ok(n) => Ok(n),
            Err(shmds::Error::Timeout { .. }) => Ok(0),
            Err(e) => Err(to_py(e)),
        }
    }

    /// Number of elements (approximate while others put and get).
    /// StaleError once the structure was erased.
    fn qsize(&self) -> PyResult<usize> {
        self.ring()?.len().map_err(to_py)
    }

    /// Whether there are no elements (approximate).
    fn empty(&self) -> PyResult<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether there is no room (approximate).
    fn full(&self) -> PyResult<bool> {
        self.ring()?.is_full().map_err(to_py)
    }

    /// The capacity.
    #[getter]
    fn maxsize(&self) -> PyResult<usize> {
        Ok(self.ring()?.capacity())
    }

    /// "queue" or "stack".
    #[getter]
    fn kind(&self) -> PyResult<&'static str> {
        Ok(match self.ring()? {
            Ring::Fifo(_) => "queue",
            Ring::Lifo(_) => "stack",
        })
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.ring()?.name().to_owned())
    }

    /// The name of the segment holding it.
    #[getter]
    fn segment_name(&self) -> PyResult<String> {
        Ok(self.ring()?.segment_name().to_owned())
    }

    /// The element type descriptor (PEP 3118 format).
    #[getter]
    fn descriptor(&self) -> PyResult<String> {
        Ok(self.ring()?.type_descriptor().to_owned())
    }

    /// Size of one element in bytes.
    #[getter]
    fn itemsize(&self) -> PyResult<usize> {
        Ok(self.ring()?.elem_size())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.ring.is_none()
    }

    /// Drop this handle (idempotent). Calls blocked on it in other threads
    /// of this process wake up and raise ValueError (other handles, and
    /// other processes, are not affected).
    fn close(&mut self) {
        if let Some(ring) = self.ring.take() {
            // Woken only if calls of this handle wait (the flag is stored
            // before the count is read, and they count themselves before
            // they first look at it).
            if self.closing.close() {
                ring.wake_waiters();
            }
        }
    }

    /// Shut the queue or stack down for every process: from now on `put`
    /// raises `shmds.ShutDown`, and `get` takes what is left, then raises
    /// it instead of waiting; every blocked call wakes up. With `immediate`
    /// what is left is discarded too. As `queue.Queue.shutdown` (3.13).
    #[pyo3(signature = (immediate=false))]
    fn shutdown(slf: &Bound<'_, Self>, immediate: bool) -> PyResult<()> {
        let (ring, _) = Queue::waitable(slf)?;
        // Immediate: the discarding pops may wait on pushes under way.
        slf.py()
            .detach(|| ring.shutdown(immediate))
            .map(|_| ())
            .map_err(to_py)
    }

    /// Whether it was shut down (by any process).
    #[getter]
    fn is_shutdown(&self) -> PyResult<bool> {
        self.ring()?.is_shutdown().map_err(to_py)
    }

    /// Mark a task taken by a get as done (queues only), from any process;
    /// ValueError when called more times than elements were taken.
    fn task_done(&self) -> PyResult<()> {
        self.ring()?.fifo("task_done()")?.task_done().map_err(to_py)
    }

    /// Tasks taken by gets and not yet marked done (queues only).
    #[getter]
    fn unfinished_tasks(&self) -> PyResult<u64> {
        let q = self.ring()?.fifo("unfinished_tasks")?;
        q.check().map_err(to_py)?;
        Ok(q.unfinished_tasks())
    }

    /// Wait (without the GIL; Ctrl-C interrupts it) until the queue is
    /// empty and every task taken by a get was marked done; returns False
    /// if `timeout` (seconds; None: no limit) passed first.
    #[pyo3(signature = (timeout=None))]
    fn join(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        Queue::join_impl(slf, timeout, None)
    }

    /// `join` for the asyncio helper: stops when `cancel` is cancelled.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _join(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        Queue::join_impl(slf, timeout, cancel.as_deref())
    }

    /// Wait until a get (`_wait_get`) or a put (`_wait_put`) may succeed,
    /// or the structure was shut down, taking nothing: True, or False once
    /// `timeout` passed. Stops (raising) when the handle is closed or
    /// `cancel` is cancelled and `_wake()` called. For `shmds._aio`.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_get(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        Queue::wait_ready(slf, false, timeout, cancel.as_deref())
    }

    /// See `_wait_get`.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_put(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        Queue::wait_ready(slf, true, timeout, cancel.as_deref())
    }

    /// Wake every waiter on the structure (in every process), so that
    /// each looks at its cancellation token and the shutdown flag again;
    /// the others go back to sleep. Nothing to do on a closed handle
    /// (close() woke them).
    fn _wake(&self) {
        if let Some(ring) = &self.ring {
            ring.wake_waiters();
        }
    }
}

impl Queue {
    fn join_impl(
        slf: &Bound<'_, Self>,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<bool> {
        let (ring, closing) = Queue::waitable(slf)?;
        let q = ring.fifo("join()")?;
        let timeout = wait_time(timeout)?;
        let watch = Watch {
            closing: &closing,
            cancel,
            name: q.name(),
        };
        blocking(slf.py(), watch, |interrupt| q.join(timeout, interrupt))?.map_err(to_py)
    }

    fn wait_ready(
        slf: &Bound<'_, Self>,
        put: bool,
        timeout: Option<f64>,
        cancel: Option<&CancelToken>,
    ) -> PyResult<bool> {
        let (ring, closing) = Queue::waitable(slf)?;
        let timeout = wait_time(timeout)?;
        let watch = Watch {
            closing: &closing,
            cancel,
            name: ring.name(),
        };
        blocking(slf.py(), watch, |interrupt| {
            ring.wait_ready(put, timeout, interrupt)
        })?
        .map_err(to_py)
    }
}
