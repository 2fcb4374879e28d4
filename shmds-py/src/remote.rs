//! Remote segments (`shmds.connect`): the Rust `shmds::remote` types with
//! the Python shapes of their local twins. Element conversion is the local
//! structures' [`Codec`], so a value crosses languages with the same bytes
//! whichever backend holds it. Every call that talks to the server releases
//! the GIL; blocking calls wait in slices, checking for Ctrl-C between them.

use crate::codec::Codec;
use crate::{closed, to_py};
use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmds::remote;
use std::time::{Duration, Instant};

pyo3::import_exception!(queue, Full);
pyo3::import_exception!(queue, Empty);

/// `(name, kind, type, key type, capacity)`.
type EntryRow = (String, &'static str, String, String, u64);

/// The longest a blocking call waits without checking for signals.
const SLICE: Duration = Duration::from_millis(250);

/// Run a blocking remote call in slices of at most [`SLICE`] without the
/// GIL, until it gives something other than `Timeout` or `timeout` passed
/// (then `Ok(None)`); signal handlers (Ctrl-C) run between slices.
fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    call: impl Fn(Duration) -> shmds::Result<T> + Sync,
) -> PyResult<Option<T>> {
    let start = Instant::now();
    loop {
        let left = match timeout {
            None => SLICE,
            Some(t) => t.saturating_sub(start.elapsed()).min(SLICE),
        };
        match py.detach(|| call(left)) {
            Ok(v) => return Ok(Some(v)),
            Err(shmds::Error::Timeout { .. }) => {}
            Err(e) => return Err(to_py(e)),
        }
        py.check_signals()?;
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            return Ok(None);
        }
    }
}

fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be a positive number of seconds"
        ))
    })
}

/// `shmds.RemoteSegment(url, name, timeout=2.0, connect_timeout=2.0,
/// lease=30.0)`: the segment `name` on the Redis server at `url`.
#[pyclass(module = "shmds._shmds", name = "RemoteSegment", subclass, frozen)]
pub(crate) struct RemoteSegment {
    pub(crate) seg: remote::Segment,
}

#[pymethods]
impl RemoteSegment {
    #[new]
    #[pyo3(signature = (url, name, timeout=2.0, connect_timeout=2.0, lease=30.0, cache=None))]
    fn py_new(
        py: Python<'_>,
        url: &str,
        name: &str,
        timeout: f64,
        connect_timeout: f64,
        lease: f64,
        cache: Option<f64>,
    ) -> PyResult<Self> {
        let options = remote::Options {
            timeout: seconds(timeout, "timeout")?,
            connect_timeout: seconds(connect_timeout, "connect_timeout")?,
            lease: seconds(lease, "lease")?,
            cache: cache.map(|c| seconds(c, "cache")).transpose()?,
        };
        let seg = py
            .detach(|| remote::Segment::connect_with(url, name, options))
            .map_err(to_py)?;
        Ok(RemoteSegment { seg })
    }

    /// The segment name.
    #[getter]
    fn name(&self) -> &str {
        self.seg.name()
    }

    /// The server's URL (without its password).
    #[getter]
    fn url(&self) -> &str {
        self.seg.url()
    }

    /// `(name, kind, type, key type, capacity)` of every entry.
    fn _entries(&self, py: Python<'_>) -> PyResult<Vec<EntryRow>> {
        let list = py.detach(|| self.seg.entries()).map_err(to_py)?;
        Ok(list
            .into_iter()
            .map(|e| (e.name, e.kind, e.elem_type, e.key_type, e.capacity))
            .collect())
    }

    /// Erase the entry `name` (KeyError if there is none).
    fn erase(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.seg.erase(name)).map_err(to_py)
    }

    /// Whether the read cache is connected and caching.
    #[getter]
    fn cache_is_live(&self) -> bool {
        self.seg.cache_is_live()
    }

    /// One round trip to the server, in seconds.
    fn ping(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(py.detach(|| self.seg.ping()).map_err(to_py)?.as_secs_f64())
    }

    /// Failure injection: every call raises UnavailableError.
    fn _fault_unavailable(&self) {
        self.seg.faults().make_unavailable();
    }

    fn _fault_delay(&self, secs: f64) -> PyResult<()> {
        self.seg.faults().delay(seconds(secs, "delay")?);
        Ok(())
    }

    fn _fault_flaky(&self, p: f64, seed: u64) {
        self.seg.faults().flaky(p, seed);
    }

    fn _fault_lose_replies(&self, p: f64, seed: u64) {
        self.seg.faults().lose_replies(p, seed);
    }

    fn _fault_clear(&self) {
        self.seg.faults().clear();
    }

    fn _faults_injected(&self) -> u64 {
        self.seg.faults().injected()
    }
}

/// Remove every key of the remote segment `name`; whether it existed.
#[pyfunction]
pub(crate) fn remote_remove(py: Python<'_>, url: &str, name: &str) -> PyResult<bool> {
    py.detach(|| remote::Segment::remove(url, name))
        .map_err(to_py)
}

fn codec_of(
    descriptor: &str,
    size: usize,
    encode: Option<Py<PyAny>>,
    decode: Option<Py<PyAny>>,
) -> PyResult<Codec> {
    Codec::new(descriptor, size, encode, decode)
}

fn encode_one(codec: &Codec, size: usize, item: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = vec![0u8; size];
    codec.encode(item, &mut out)?;
    Ok(out)
}

/// A remote queue or stack with `queue.Queue`'s methods, plus `take` (at
/// least once) and `recover`.
#[pyclass(module = "shmds._shmds", name = "RemoteQueue", subclass)]
pub(crate) struct RemoteQueue {
    q: Option<remote::RawQueue>,
    codec: Codec,
}

impl RemoteQueue {
    fn q(&self) -> PyResult<&remote::RawQueue> {
        self.q.as_ref().ok_or_else(closed)
    }
}

#[pymethods]
impl RemoteQueue {
    #[new]
    #[pyo3(signature = (segment, name, kind, descriptor=None, capacity=None, encode=None, decode=None))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        py: Python<'_>,
        segment: &RemoteSegment,
        name: &str,
        kind: &str,
        descriptor: Option<&str>,
        capacity: Option<usize>,
        encode: Option<Py<PyAny>>,
        decode: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let seg = &segment.seg;
        let q = py
            .detach(|| match (kind, descriptor, capacity) {
                ("queue", Some(d), Some(c)) => seg.open_or_create_queue_raw(name, d, c),
                ("stack", Some(d), Some(c)) => seg.open_or_create_stack_raw(name, d, c),
                ("queue", _, _) => seg.open_queue_raw(name),
                ("stack", _, _) => seg.open_stack_raw(name),
                _ => Err(shmds::Error::InvalidArgument(format!(
                    "kind must be \"queue\" or \"stack\", not {kind:?}"
                ))),
            })
            .map_err(to_py)?;
        let codec = codec_of(q.type_descriptor(), q.elem_size(), encode, decode)?;
        Ok(RemoteQueue { q: Some(q), codec })
    }

    /// Put `item`, waiting for room unless `block` is false (at most
    /// `timeout` seconds; None: as long as it takes). `queue.Full` when
    /// there was no room.
    #[pyo3(signature = (item, block=true, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        item: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let q = self.q()?;
        let bytes = encode_one(&self.codec, q.elem_size(), item)?;
        if py.detach(|| q.try_push_bytes(&bytes)).map_err(to_py)? == 1 {
            return Ok(());
        }
        if !block {
            return Err(Full::new_err(format!("{} is full", q.name())));
        }
        let timeout = crate::queue::wait_time(timeout)?;
        match sliced(py, timeout, |slice| {
            q.push_bytes(&bytes, Some(slice)).and_then(|n| {
                if n == 1 {
                    Ok(())
                } else {
                    Err(shmds::Error::Timeout {
                        name: String::new(),
                    })
                }
            })
        })? {
            Some(()) => Ok(()),
            None => Err(Full::new_err(format!("{} stayed full", q.name()))),
        }
    }

    /// `put(item, block=False)`.
    fn put_nowait(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, item, false, None)
    }

    /// Take an element (the oldest; a stack's top), waiting unless `block`
    /// is false; `queue.Empty` when none came. At most once: an element
    /// whose reply is lost is gone (see `take`).
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = self.q()?;
        let got = py.detach(|| q.try_pop_bytes(1)).map_err(to_py)?;
        if !got.is_empty() {
            return self.codec.decode(py, &got);
        }
        if !block {
            return Err(Empty::new_err(format!("{} is empty", q.name())));
        }
        let timeout = crate::queue::wait_time(timeout)?;
        match sliced(py, timeout, |slice| q.pop_bytes(1, Some(slice)))? {
            Some(got) => self.codec.decode(py, &got),
            None => Err(Empty::new_err(format!("{} stayed empty", q.name()))),
        }
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Put the packed elements of `data`, in order; returns how many were
    /// put (fewer if the wait timed out or `block` is false).
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn _put_bytes(
        &self,
        py: Python<'_>,
        data: &[u8],
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        let q = self.q()?;
        if !block {
            return py.detach(|| q.try_push_bytes(data)).map_err(to_py);
        }
        let timeout = crate::queue::wait_time(timeout)?;
        let size = q.elem_size();
        let total = data.len() / size.max(1);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let r = sliced(py, timeout, |slice| {
            let from = done.load(std::sync::atomic::Ordering::Relaxed);
            let n = q.push_bytes(&data[from * size..], Some(slice))?;
            let now = from + n;
            done.store(now, std::sync::atomic::Ordering::Relaxed);
            if now == total {
                Ok(())
            } else {
                Err(shmds::Error::Timeout {
                    name: String::new(),
                })
            }
        })?;
        let _ = r;
        Ok(done.into_inner())
    }

    /// Up to `n` elements, packed, waiting (unless `block` is false) for
    /// the first: `b""` when none came.
    #[pyo3(signature = (n, block=true, timeout=None))]
    fn _get_bytes<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let q = self.q()?;
        let got = py.detach(|| q.try_pop_bytes(n)).map_err(to_py)?;
        if !got.is_empty() || !block || n == 0 {
            return Ok(PyBytes::new(py, &got));
        }
        let timeout = crate::queue::wait_time(timeout)?;
        let got = sliced(py, timeout, |slice| q.pop_bytes(n, Some(slice)))?.unwrap_or_default();
        Ok(PyBytes::new(py, &got))
    }

    /// Take an element **at least once**: a `Delivery` whose `value` is the
    /// element, which stays on the server until `delivery.ack()`. An
    /// element not acknowledged within the lease goes back to the queue.
    /// `queue.Empty` when none came.
    #[pyo3(signature = (block=true, timeout=None))]
    fn take(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Delivery> {
        let q = self.q()?;
        let got = py.detach(|| q.try_take_bytes()).map_err(to_py)?;
        let got = match got {
            Some(d) => Some(d),
            None if !block => None,
            None => sliced(py, crate::queue::wait_time(timeout)?, |slice| {
                q.take_bytes(Some(slice))
            })?,
        };
        let Some(d) = got else {
            return Err(Empty::new_err(format!("{} is empty", q.name())));
        };
        let value = self.codec.decode(py, d.value())?.unbind();
        Ok(Delivery {
            value,
            delivery: Some(Taken::Element(d)),
        })
    }

    /// Put back every element taken by a consumer whose lease ran out;
    /// returns how many.
    fn recover(&self, py: Python<'_>) -> PyResult<usize> {
        let q = self.q()?;
        py.detach(|| q.recover()).map_err(to_py)
    }

    /// The number of waiting elements.
    fn qsize(&self, py: Python<'_>) -> PyResult<usize> {
        let q = self.q()?;
        py.detach(|| q.len()).map_err(to_py)
    }

    /// Whether no element is waiting.
    fn empty(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.qsize(py)? == 0)
    }

    /// Whether waiting plus taken-unacknowledged elements fill it.
    fn full(&self, py: Python<'_>) -> PyResult<bool> {
        let q = self.q()?;
        py.detach(|| q.is_full()).map_err(to_py)
    }

    /// Elements taken and not yet acknowledged.
    fn in_flight(&self, py: Python<'_>) -> PyResult<usize> {
        let q = self.q()?;
        py.detach(|| q.in_flight()).map_err(to_py)
    }

    /// The capacity.
    #[getter]
    fn maxsize(&self) -> PyResult<usize> {
        Ok(self.q()?.capacity())
    }

    /// "queue" or "stack".
    #[getter]
    fn kind(&self) -> PyResult<&'static str> {
        Ok(self.q()?.kind())
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.q()?.name().to_owned())
    }

    /// The segment name.
    #[getter]
    fn segment_name(&self) -> PyResult<String> {
        Ok(self.q()?.segment_name().to_owned())
    }

    /// The element type descriptor.
    #[getter]
    fn descriptor(&self) -> PyResult<String> {
        Ok(self.q()?.type_descriptor().to_owned())
    }

    /// Bytes per element.
    #[getter]
    fn itemsize(&self) -> PyResult<usize> {
        Ok(self.q()?.elem_size())
    }

    /// Drop this handle.
    fn close(&mut self) {
        self.q = None;
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.q.is_none()
    }
}

/// An element taken with `RemoteQueue.take`: `value`, and `ack()` once it
/// is handled (False if the lease ran out and it went back).
#[pyclass(module = "shmds._shmds", name = "Delivery")]
pub(crate) struct Delivery {
    #[pyo3(get)]
    value: Py<PyAny>,
    delivery: Option<Taken>,
}

/// What a delivery acknowledges.
enum Taken {
    Element(remote::Delivery<Vec<u8>>),
    Message(remote::ChannelDelivery),
}

#[pymethods]
impl Delivery {
    /// Acknowledge: the element leaves the server. False if it was not
    /// pending any more (this consumer's lease ran out; it is delivered
    /// again). ValueError if already acknowledged.
    fn ack(&mut self, py: Python<'_>) -> PyResult<bool> {
        let d = self.delivery.take().ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err("this delivery was already acknowledged")
        })?;
        py.detach(|| match d {
            Taken::Element(d) => d.ack(),
            Taken::Message(d) => d.ack(),
        })
        .map_err(to_py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<shmds.Delivery {}>", self.value.bind(py).repr()?))
    }
}

/// A remote map; `shmds.RemoteMap` adds the `MutableMapping` methods.
#[pyclass(module = "shmds._shmds", name = "RemoteMap", subclass)]
pub(crate) struct RemoteMap {
    m: remote::RawMap,
    key: Codec,
    value: Codec,
}

impl RemoteMap {
    fn key_bytes(&self, key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        encode_one(&self.key, self.m.key_size(), key)
    }
}

#[pymethods]
impl RemoteMap {
    #[new]
    #[pyo3(signature = (segment, name, key=None, value=None, capacity=None, codecs=None))]
    fn py_new(
        py: Python<'_>,
        segment: &RemoteSegment,
        name: &str,
        key: Option<&str>,
        value: Option<&str>,
        capacity: Option<usize>,
        codecs: Option<crate::map::Codecs>,
    ) -> PyResult<Self> {
        let seg = &segment.seg;
        let m = py
            .detach(|| match (key, value, capacity) {
                (Some(k), Some(v), Some(c)) => seg.open_or_create_map_raw(name, k, v, c),
                _ => seg.open_map_raw(name),
            })
            .map_err(to_py)?;
        let (ke, kd, ve, vd) = codecs.unwrap_or((None, None, None, None));
        Ok(RemoteMap {
            key: codec_of(m.key_type(), m.key_size(), ke, kd)?,
            value: codec_of(m.value_type(), m.value_size(), ve, vd)?,
            m,
        })
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = self.key_bytes(key)?;
        match py.detach(|| self.m.get_bytes(&k)).map_err(to_py)? {
            Some(v) => self.value.decode(py, &v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = self.key_bytes(key)?;
        let v = encode_one(&self.value, self.m.value_size(), value)?;
        py.detach(|| self.m.insert_bytes(&k, &v))
            .map_err(to_py)
            .map(|_| ())
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = self.key_bytes(key)?;
        match py.detach(|| self.m.remove_bytes(&k)).map_err(to_py)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        // A key the map's type cannot hold is not in it.
        let Ok(k) = self.key_bytes(key) else {
            return Ok(false);
        };
        Ok(py.detach(|| self.m.get_bytes(&k)).map_err(to_py)?.is_some())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.m.len()).map_err(to_py)
    }

    /// `[(key, value), ...]` in one atomic read.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let all = py.detach(|| self.m.items_bytes()).map_err(to_py)?;
        let out = PyList::empty(py);
        for (k, v) in all {
            out.append((self.key.decode(py, &k)?, self.value.decode(py, &v)?))?;
        }
        Ok(out)
    }

    /// Remove every key.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.m.clear()).map_err(to_py)
    }

    /// Add `delta` (wrapping) to an integer value, an absent key counting
    /// as 0; returns the previous value.
    fn fetch_add<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        delta: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !self.value.is_int() {
            return Err(PyTypeError::new_err("fetch_add needs integer values"));
        }
        let k = self.key_bytes(key)?;
        let mut d = vec![0u8; self.m.value_size()];
        crate::codec::write_int(Codec::delta_bits(delta)?, &mut d);
        let old = py
            .detach(|| self.m.fetch_add_bytes(&k, &d))
            .map_err(to_py)?;
        self.value.decode(py, &old)
    }

    /// If `key` holds `current`, store `new`: `(True, current)`; else
    /// `(False, actual)`, with `actual` None for an absent key.
    fn compare_exchange<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        current: &Bound<'py, PyAny>,
        new: &Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let k = self.key_bytes(key)?;
        let c = encode_one(&self.value, self.m.value_size(), current)?;
        let n = encode_one(&self.value, self.m.value_size(), new)?;
        match py
            .detach(|| self.m.compare_exchange_bytes(&k, &c, &n))
            .map_err(to_py)?
        {
            Ok(old) => Ok((true, self.value.decode(py, &old)?)),
            Err(Some(actual)) => Ok((false, self.value.decode(py, &actual)?)),
            Err(None) => Ok((false, py.None().into_bound(py))),
        }
    }

    /// The capacity.
    #[getter]
    fn capacity(&self) -> usize {
        self.m.capacity()
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        self.m.name()
    }

    /// The key type descriptor.
    #[getter]
    fn key_descriptor(&self) -> &str {
        self.m.key_type()
    }

    /// The value type descriptor.
    #[getter]
    fn value_descriptor(&self) -> &str {
        self.m.value_type()
    }
}

/// A remote fixed-length array: `a[i]`, `a[i] = v`, `len(a)`, `read`,
/// `write`, `tolist`, and for integers `fetch_add`/`compare_exchange`.
#[pyclass(module = "shmds._shmds", name = "RemoteArray", subclass)]
pub(crate) struct RemoteArray {
    a: remote::RawArray,
    codec: Codec,
}

impl RemoteArray {
    fn index(&self, i: isize) -> PyResult<usize> {
        let len = self.a.len() as isize;
        let j = if i < 0 { i + len } else { i };
        if j < 0 || j >= len {
            return Err(PyIndexError::new_err(format!(
                "index {i} out of range for length {len}"
            )));
        }
        Ok(j as usize)
    }
}

#[pymethods]
impl RemoteArray {
    #[new]
    #[pyo3(signature = (segment, name, descriptor=None, length=None, encode=None, decode=None))]
    fn py_new(
        py: Python<'_>,
        segment: &RemoteSegment,
        name: &str,
        descriptor: Option<&str>,
        length: Option<usize>,
        encode: Option<Py<PyAny>>,
        decode: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let seg = &segment.seg;
        let a = py
            .detach(|| match (descriptor, length) {
                (Some(d), Some(n)) => seg.open_or_create_array_raw(name, d, n),
                _ => seg.open_array_raw(name),
            })
            .map_err(to_py)?;
        let codec = codec_of(a.type_descriptor(), a.elem_size(), encode, decode)?;
        Ok(RemoteArray { a, codec })
    }

    fn __len__(&self) -> usize {
        self.a.len()
    }

    fn __getitem__<'py>(&self, py: Python<'py>, i: isize) -> PyResult<Bound<'py, PyAny>> {
        let i = self.index(i)?;
        let got = py.detach(|| self.a.read_bytes(i, 1)).map_err(to_py)?;
        self.codec.decode(py, &got)
    }

    fn __setitem__(&self, py: Python<'_>, i: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = self.index(i)?;
        let b = encode_one(&self.codec, self.a.elem_size(), value)?;
        py.detach(|| self.a.write_bytes(i, &b)).map_err(to_py)
    }

    /// `n` elements from `start` as a list (one atomic read).
    fn read<'py>(&self, py: Python<'py>, start: usize, n: usize) -> PyResult<Bound<'py, PyList>> {
        let got = py.detach(|| self.a.read_bytes(start, n)).map_err(to_py)?;
        let out = PyList::empty(py);
        for chunk in got.chunks_exact(self.a.elem_size()) {
            out.append(self.codec.decode(py, chunk)?)?;
        }
        Ok(out)
    }

    /// Write the elements of `items` from `start` (one atomic write).
    fn write(&self, py: Python<'_>, start: usize, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let packed = self.codec.encode_many(items, self.a.elem_size())?;
        py.detach(|| self.a.write_bytes(start, &packed))
            .map_err(to_py)
    }

    /// The whole array as a list.
    fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.read(py, 0, self.a.len())
    }

    /// Add `delta` (wrapping) to integer element `i`; returns the old value.
    fn fetch_add<'py>(
        &self,
        py: Python<'py>,
        i: isize,
        delta: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !self.codec.is_int() {
            return Err(PyTypeError::new_err("fetch_add needs integer elements"));
        }
        let i = self.index(i)?;
        let mut d = vec![0u8; self.a.elem_size()];
        crate::codec::write_int(Codec::delta_bits(delta)?, &mut d);
        let old = py.detach(|| self.a.fetch_add_bytes(i, &d)).map_err(to_py)?;
        self.codec.decode(py, &old)
    }

    /// If element `i` holds `current`, store `new`: `(True, current)`, else
    /// `(False, actual)`.
    fn compare_exchange<'py>(
        &self,
        py: Python<'py>,
        i: isize,
        current: &Bound<'py, PyAny>,
        new: &Bound<'py, PyAny>,
    ) -> PyResult<(bool, Bound<'py, PyAny>)> {
        let i = self.index(i)?;
        let c = encode_one(&self.codec, self.a.elem_size(), current)?;
        let n = encode_one(&self.codec, self.a.elem_size(), new)?;
        match py
            .detach(|| self.a.compare_exchange_bytes(i, &c, &n))
            .map_err(to_py)?
        {
            Ok(old) => Ok((true, self.codec.decode(py, &old)?)),
            Err(actual) => Ok((false, self.codec.decode(py, &actual)?)),
        }
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        self.a.name()
    }

    /// The element type descriptor.
    #[getter]
    fn descriptor(&self) -> &str {
        self.a.type_descriptor()
    }
}

/// A remote lock with `threading.Lock`'s methods. A holder that let its
/// lease run out is taken over by the next acquire, which issues an
/// `OwnerDiedWarning` and sets `owner_died`, as a local lock does.
#[pyclass(module = "shmds._shmds", name = "RemoteLock", subclass)]
pub(crate) struct RemoteLock {
    lock: remote::Lock,
    guard: std::sync::Mutex<Option<remote::LockGuard>>,
    died: std::sync::atomic::AtomicU32,
}

#[pymethods]
impl RemoteLock {
    #[new]
    fn py_new(py: Python<'_>, segment: &RemoteSegment, name: &str) -> PyResult<Self> {
        let lock = py
            .detach(|| segment.seg.open_or_create_lock(name))
            .map_err(to_py)?;
        Ok(RemoteLock {
            lock,
            guard: std::sync::Mutex::new(None),
            died: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Take the lock: True once taken, False if `blocking` is false and it
    /// is held, or `timeout` seconds passed (-1: no limit).
    #[pyo3(signature = (blocking=true, timeout=-1.0))]
    fn acquire(&self, py: Python<'_>, blocking: bool, timeout: f64) -> PyResult<bool> {
        let wait = crate::coord::lock_wait(blocking, timeout)?;
        let outcome = match wait {
            Some(Duration::ZERO) => Some(py.detach(|| self.lock.try_lock())),
            _ => sliced(py, wait, |slice| match self.lock.lock_timeout(slice) {
                Ok(None) => Err(shmds::Error::Timeout {
                    name: String::new(),
                }),
                other => Ok(other),
            })?,
        };
        let guard = match outcome {
            None | Some(Ok(None)) => return Ok(false),
            Some(Ok(Some(g))) => {
                self.died.store(0, std::sync::atomic::Ordering::Relaxed);
                g
            }
            Some(Err(shmds::LockError::OwnerDied(d))) => {
                let pid = d.pid();
                let g = d.into_guard();
                self.died.store(pid, std::sync::atomic::Ordering::Relaxed);
                *self.guard.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
                crate::coord::warn_died(py, "lock", self.lock.name(), pid)?;
                return Ok(true);
            }
            Some(Err(shmds::LockError::Failed(e))) => return Err(to_py(e)),
        };
        *self.guard.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
        Ok(true)
    }

    /// Release it (NotOwnerError if this handle does not hold it, or the
    /// lease ran out and another holder took it).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let g = self.guard.lock().unwrap_or_else(|p| p.into_inner()).take();
        match g {
            Some(g) => py.detach(|| g.unlock()).map_err(to_py),
            None => Err(to_py(shmds::Error::NotOwner {
                name: self.lock.name().to_owned(),
                holder: 0,
            })),
        }
    }

    /// Renew the lease of the held lock.
    fn extend(&self, py: Python<'_>) -> PyResult<()> {
        let g = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(g) => py.detach(|| g.extend()).map_err(to_py),
            None => Err(to_py(shmds::Error::NotOwner {
                name: self.lock.name().to_owned(),
                holder: 0,
            })),
        }
    }

    /// Whether anyone holds it.
    fn locked(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.lock.is_locked()).map_err(to_py)
    }

    /// The pid of the holder (on its machine), None if free.
    #[getter]
    fn holder(&self, py: Python<'_>) -> PyResult<Option<u32>> {
        py.detach(|| self.lock.holder()).map_err(to_py)
    }

    /// The pid of the lapsed holder the last acquire took over from.
    #[getter]
    fn owner_died(&self) -> Option<u32> {
        match self.died.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            pid => Some(pid),
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, -1.0)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _type: &Bound<'_, PyAny>,
        _value: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.release(py)
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        self.lock.name()
    }
}

/// Open a channel or topic (`capacity` given: creating it if missing, with
/// `max_message` bytes at most, 1 MiB by default) without the GIL.
fn messages<T: Send>(
    py: Python<'_>,
    capacity: Option<usize>,
    max_message: Option<usize>,
    create: impl FnOnce(usize, usize) -> shmds::Result<T> + Send,
    open: impl FnOnce() -> shmds::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| match capacity {
        Some(c) => create(c, max_message.unwrap_or(1 << 20)),
        None => open(),
    })
    .map_err(to_py)
}

/// A remote channel of byte messages: `send`/`recv` (at most once),
/// `take` (at least once, `Delivery.ack()`).
#[pyclass(module = "shmds._shmds", name = "RemoteChannel", subclass)]
pub(crate) struct RemoteChannel {
    ch: remote::Channel,
}

#[pymethods]
impl RemoteChannel {
    #[new]
    #[pyo3(signature = (segment, name, capacity=None, max_message=None))]
    fn py_new(
        py: Python<'_>,
        segment: &RemoteSegment,
        name: &str,
        capacity: Option<usize>,
        max_message: Option<usize>,
    ) -> PyResult<Self> {
        let seg = &segment.seg;
        let ch = messages(
            py,
            capacity,
            max_message,
            |c, m| seg.open_or_create_channel(name, c, m),
            || seg.open_channel(name),
        )?;
        Ok(RemoteChannel { ch })
    }

    /// Send `data`, waiting for room unless `block` is false;
    /// `queue.Full` when there was none.
    #[pyo3(signature = (data, block=true, timeout=None))]
    fn send(&self, py: Python<'_>, data: &[u8], block: bool, timeout: Option<f64>) -> PyResult<()> {
        let ch = &self.ch;
        match py.detach(|| ch.try_send(data)) {
            Err(shmds::Error::Full { .. }) if block => {}
            Err(shmds::Error::Full { .. }) => {
                return Err(Full::new_err(format!("{} is full", ch.name())))
            }
            other => return other.map_err(to_py),
        }
        let timeout = crate::queue::wait_time(timeout)?;
        match sliced(py, timeout, |slice| ch.send(data, Some(slice)))? {
            Some(()) => Ok(()),
            None => Err(Full::new_err(format!("{} stayed full", ch.name()))),
        }
    }

    /// The oldest message, waiting unless `block` is false; at most once.
    /// `queue.Empty` when none came.
    #[pyo3(signature = (block=true, timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let ch = &self.ch;
        if let Some(m) = py.detach(|| ch.try_recv()).map_err(to_py)? {
            return Ok(PyBytes::new(py, &m));
        }
        if !block {
            return Err(Empty::new_err(format!("{} is empty", ch.name())));
        }
        match sliced(py, crate::queue::wait_time(timeout)?, |slice| {
            ch.recv(Some(slice))
        })? {
            Some(m) => Ok(PyBytes::new(py, &m)),
            None => Err(Empty::new_err(format!("{} stayed empty", ch.name()))),
        }
    }

    /// Take a message at least once: a `Delivery` (`value` is the bytes)
    /// to `ack()` once handled.
    #[pyo3(signature = (block=true, timeout=None))]
    fn take(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<Delivery> {
        let ch = &self.ch;
        let got = match py.detach(|| ch.try_take()).map_err(to_py)? {
            Some(d) => Some(d),
            None if !block => None,
            None => sliced(py, crate::queue::wait_time(timeout)?, |slice| {
                ch.take(Some(slice))
            })?,
        };
        let Some(d) = got else {
            return Err(Empty::new_err(format!("{} is empty", ch.name())));
        };
        Ok(Delivery {
            value: PyBytes::new(py, d.message()).into_any().unbind(),
            delivery: Some(Taken::Message(d)),
        })
    }

    /// Messages held (sent, not yet acknowledged).
    fn qsize(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.ch.len()).map_err(to_py)
    }

    /// The most messages it holds.
    #[getter]
    fn maxsize(&self) -> usize {
        self.ch.capacity()
    }

    /// The largest message, in bytes.
    #[getter]
    fn max_message(&self) -> usize {
        self.ch.max_message()
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        self.ch.name()
    }
}

/// A remote broadcast topic: `publish(data)`, `subscribe()`.
#[pyclass(module = "shmds._shmds", name = "RemoteTopic", subclass)]
pub(crate) struct RemoteTopic {
    topic: remote::Topic,
}

#[pymethods]
impl RemoteTopic {
    #[new]
    #[pyo3(signature = (segment, name, capacity=None, max_message=None))]
    fn py_new(
        py: Python<'_>,
        segment: &RemoteSegment,
        name: &str,
        capacity: Option<usize>,
        max_message: Option<usize>,
    ) -> PyResult<Self> {
        let seg = &segment.seg;
        let topic = messages(
            py,
            capacity,
            max_message,
            |c, m| seg.open_or_create_topic(name, c, m),
            || seg.open_topic(name),
        )?;
        Ok(RemoteTopic { topic })
    }

    /// Publish `data` to every subscriber; its sequence number.
    fn publish(&self, py: Python<'_>, data: &[u8]) -> PyResult<u64> {
        py.detach(|| self.topic.publish(data)).map_err(to_py)
    }

    /// A subscriber of what is published from now on (`from_oldest`: from
    /// the oldest message kept).
    #[pyo3(signature = (from_oldest=false))]
    fn subscribe(&self, py: Python<'_>, from_oldest: bool) -> PyResult<RemoteSubscriber> {
        let sub = py
            .detach(|| {
                if from_oldest {
                    self.topic.subscribe_from_oldest()
                } else {
                    self.topic.subscribe()
                }
            })
            .map_err(to_py)?;
        Ok(RemoteSubscriber {
            sub: std::sync::Mutex::new(sub),
        })
    }

    /// Messages published so far.
    fn published(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.topic.published()).map_err(to_py)
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> &str {
        self.topic.name()
    }
}

/// One reader of a remote topic: `recv()` raises `shmds.Lagged` (with
/// `missed`) once when it fell behind, then goes on from the oldest kept.
#[pyclass(module = "shmds._shmds", name = "RemoteSubscriber")]
pub(crate) struct RemoteSubscriber {
    sub: std::sync::Mutex<remote::Subscriber>,
}

#[pymethods]
impl RemoteSubscriber {
    /// The next message, waiting unless `block` is false; `queue.Empty`
    /// when none came.
    #[pyo3(signature = (block=true, timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let sub = &self.sub;
        let lock = || sub.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = py.detach(|| lock().try_recv()).map_err(to_py)? {
            return Ok(PyBytes::new(py, &m));
        }
        if !block {
            return Err(Empty::new_err("nothing published"));
        }
        match sliced(py, crate::queue::wait_time(timeout)?, |slice| {
            lock().recv(Some(slice))
        })? {
            Some(m) => Ok(PyBytes::new(py, &m)),
            None => Err(Empty::new_err("nothing published in time")),
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RemoteChannel>()?;
    m.add_class::<RemoteTopic>()?;
    m.add_class::<RemoteSubscriber>()?;
    m.add_class::<RemoteSegment>()?;
    m.add_class::<RemoteQueue>()?;
    m.add_class::<Delivery>()?;
    m.add_class::<RemoteMap>()?;
    m.add_class::<RemoteArray>()?;
    m.add_class::<RemoteLock>()?;
    m.add_function(wrap_pyfunction!(remote_remove, m)?)?;
    Ok(())
}
