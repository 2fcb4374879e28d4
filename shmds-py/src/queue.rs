//! `Queue` (FIFO) and `Stack` (LIFO) handles: one native class with the
//! `queue.Queue` method shapes; the Python package names the two kinds.
//!
//! Non-blocking attempts run holding the GIL (they take nanoseconds);
//! blocking waits release it and check for signals between sleeps, so
//! Ctrl-C interrupts a `get()` that waits forever.

use crate::codec::{Codec, Scratch};
use crate::{closed, to_py, Segment};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

/// A queue or a stack: the operations both have.
#[derive(Clone)]
enum Ring {
    Fifo(Arc<shmds::RawQueue>),
    Lifo(Arc<shmds::RawStack>),
}

type Interrupt<'a> = Option<&'a mut dyn FnMut() -> bool>;

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
    fn try_pop_into(&self, out: &mut [u8]) -> shmds::Result<usize> {
        each!(self, r => r.try_pop_into(out))
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
        each!(self, r => r.pop_into(out, t, i))
    }
    /// The length, after checking the structure was not erased.
    fn len(&self) -> shmds::Result<usize> {
        each!(self, r => r.check().map(|()| r.len()))
    }
    fn is_full(&self) -> shmds::Result<bool> {
        each!(self, r => r.check().map(|()| r.is_full()))
    }
    fn capacity(&self) -> u64 {
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

/// Run a blocking call without the GIL. Between sleeps it re-takes the GIL
/// to run signal handlers; if one raises (Ctrl-C), the call stops and
/// that exception is returned.
pub(crate) fn blocking<T: Send>(
    py: Python<'_>,
    call: impl FnOnce(Interrupt<'_>) -> shmds::Result<T> + Send,
) -> PyResult<shmds::Result<T>> {
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut check = || {
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
    match (result, raised) {
        (Err(shmds::Error::Interrupted { .. }), Some(e)) => Err(e),
        (result, _) => Ok(result),
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
}

impl Queue {
    fn ring(&self) -> PyResult<&Ring> {
        self.ring.as_ref().ok_or_else(closed)
    }

    // The blocking paths below hold no borrow of the object while they
    // wait (they wait on their own reference to the queue), so another
    // thread may close() the handle meanwhile.

    fn put_impl(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let (ring, mut elem) = {
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
            (ring.clone(), elem)
        };
        let timeout = wait_time(timeout)?;
        let bytes = elem.bytes();
        match blocking(slf.py(), |interrupt| {
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
        let (ring, mut elem) = {
            let this = slf.borrow();
            let ring = this.ring()?;
            let mut elem = Scratch::new(ring.elem_size());
            if ring.try_pop_into(elem.bytes()).map_err(to_py)? == 1 {
                return this.codec.decode(py, elem.bytes());
            }
            if !block {
                return Err(Empty::new_err(format!("{} is empty", ring.name())));
            }
            (ring.clone(), elem)
        };
        let timeout = wait_time(timeout)?;
        let bytes = elem.bytes();
        match blocking(py, |interrupt| ring.pop_into(bytes, timeout, interrupt))? {
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
        capacity: Option<u64>,
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
        let ring = slf.borrow().ring()?.clone();
        let bytes = Bytes::get(data, false)?;
        if !block {
            return ring.try_push_slice(bytes.slice()).map_err(to_py);
        }
        let timeout = wait_time(timeout)?;
        blocking(py, |interrupt| {
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
        let ring = slf.borrow().ring()?.clone();
        let mut bytes = Bytes::get(out, true)?;
        let got = ring.try_pop_into(bytes.slice_mut()).map_err(to_py)?;
        if got > 0 || !block || bytes.len == 0 {
            return Ok(got);
        }
        let timeout = wait_time(timeout)?;
        match blocking(py, |interrupt| {
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

    fn __len__(&self) -> PyResult<usize> {
        self.qsize()
    }

    /// The capacity.
    #[getter]
    fn maxsize(&self) -> PyResult<u64> {
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

    /// Drop this handle (idempotent). A call blocked in another thread
    /// finishes first: it holds its own reference.
    fn close(&mut self) {
        self.ring = None;
    }
}
