//! `Topic` and `Subscriber` handles: broadcast of variable-length
//! messages, as bytes (`publish`, `recv`) or pickled objects (the
//! package's `put`, `get`). Publishing never waits for subscribers; a
//! subscriber that fell too far behind gets `Lagged` (with `.missed`) and
//! goes on from the oldest message held.

use crate::buffer::RawBuf;
use crate::channel::{mismatch, py_bool, COPY_WITH_GIL};
use crate::pickled;
use crate::queue::wait_time;
use crate::wait::{wait, wait_cancellable, CancelToken, Closing, Fail, Waiting};
use crate::{closed, to_py, Segment};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmds::TopicOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

pyo3::import_exception!(queue, Empty);

/// A broadcast topic of variable-length messages in a segment.
#[pyclass(module = "shmds._shmds", name = "Topic", subclass, frozen)]
pub(crate) struct Topic {
    topic: shmds::Topic,
    closing: Closing,
}

impl Topic {
    fn get(&self) -> PyResult<&shmds::Topic> {
        if self.closing.is_closed() {
            return Err(closed());
        }
        Ok(&self.topic)
    }

    fn py_err(&self, fail: Fail) -> PyErr {
        let name = self.topic.name();
        match fail {
            Fail::Closed => closed(),
            Fail::Interrupted => {
                PyKeyboardInterrupt::new_err(format!("waiting on {name:?} was interrupted"))
            }
            Fail::Shmds(e) => to_py(e),
            other => PyRuntimeError::new_err(format!("{name:?}: {other:?}")),
        }
    }

    /// Publish through `op`: holding the GIL for a small message if the
    /// publish lock is free at once, else through [`wait`].
    fn publish_with(
        &self,
        py: Python<'_>,
        len: usize,
        op: impl Fn(&shmds::Topic, Option<&mut Waiting<'_>>) -> shmds::Result<u64> + Sync,
    ) -> PyResult<u64> {
        let topic = self.get()?;
        if len <= COPY_WITH_GIL {
            match op(topic, None) {
                Ok(seq) => return Ok(seq),
                Err(shmds::Error::Timeout { .. }) => {}
                Err(e) => return Err(to_py(e)),
            }
        }
        wait(py, &self.closing, None, |w| {
            op(topic, Some(w)).map_err(Fail::from)
        })?
        .map_err(|f| self.py_err(f))
    }
}

/// The publish lock's wait: none (a try) without `w`.
fn lock_wait<'a>(
    w: Option<&'a mut Waiting<'_>>,
) -> (Option<Duration>, Option<&'a mut dyn FnMut() -> bool>) {
    match w {
        None => (Some(Duration::ZERO), None),
        Some(w) => (None, Some(w.check())),
    }
}

#[pymethods]
impl Topic {
    /// Open the topic `name` of `segment`; with a `capacity` (in bytes),
    /// create it first if it does not exist. The other arguments, when
    /// given, must match an existing topic.
    #[new]
    #[pyo3(signature = (segment, name, capacity=None, max_message=None, checksum=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        capacity: Option<u64>,
        max_message: Option<u64>,
        checksum: Option<bool>,
    ) -> PyResult<Topic> {
        let seg = segment.get()?;
        let topic = match capacity {
            None => seg.open_topic(name),
            Some(capacity) => {
                let mut options = TopicOptions::new(capacity).checksum(checksum.unwrap_or(false));
                if let Some(max) = max_message {
                    options = options.max_message(max);
                }
                seg.open_or_create_topic(name, options)
            }
        }
        .map_err(to_py)?;
        if let Some(m) = max_message.filter(|&m| m != topic.max_message()) {
            return Err(mismatch(
                "topic",
                name,
                "max_message",
                topic.max_message(),
                m,
            ));
        }
        let has_checksum = topic.has_checksum();
        if let Some(c) = checksum.filter(|&c| c != has_checksum) {
            return Err(mismatch("topic", name, "checksum", py_bool(!c), py_bool(c)));
        }
        Ok(Topic {
            topic,
            closing: Closing::default(),
        })
    }

    /// Publish the bytes of `data` (any C-contiguous buffer) to every
    /// subscriber; returns its sequence number. Never waits for
    /// subscribers. `MessageTooLargeError` (a ValueError) above
    /// `max_message`.
    fn publish(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u64> {
        let buf = RawBuf::get(data, false)?;
        let msg = buf.as_slice();
        self.publish_with(py, msg.len(), |topic, w| {
            let (timeout, interrupt) = lock_wait(w);
            topic.publish_interruptible(msg, timeout, interrupt)
        })
    }

    /// Publish the concatenation of the buffers in `parts` as one message,
    /// each copied once, straight into the ring; returns its sequence
    /// number.
    fn _publish_parts(&self, py: Python<'_>, parts: &Bound<'_, PyList>) -> PyResult<u64> {
        let bufs = parts
            .iter()
            .map(|p| RawBuf::get(&p, false))
            .collect::<PyResult<Vec<_>>>()?;
        let total = bufs.iter().map(RawBuf::len).sum();
        self.publish_with(py, total, |topic, w| {
            let (timeout, interrupt) = lock_wait(w);
            let mut room = topic.reserve_interruptible(total, timeout, interrupt)?;
            let mut at = 0;
            for part in &bufs {
                let bytes = part.as_slice();
                room[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }
            Ok(room.commit())
        })
    }

    /// The newest message as bytes, or None when nothing was published.
    fn latest<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut buf = Vec::new();
        let got = self.get()?.latest(&mut buf).map_err(to_py)?;
        Ok(got.map(|_| PyBytes::new(py, &buf)))
    }

    /// A new subscriber: it receives the messages published from now on,
    /// or (with `from_oldest`) from the oldest one the topic still holds.
    #[pyo3(signature = (from_oldest=false))]
    fn subscribe(&self, from_oldest: bool) -> PyResult<Subscriber> {
        let topic = self.get()?;
        let sub = if from_oldest {
            topic.subscribe_from_oldest()
        } else {
            topic.subscribe()
        };
        Ok(Subscriber {
            topic: topic.clone(),
            closing: Closing::default(),
            last_seq: AtomicU64::new(NO_SEQ),
            state: Mutex::new(SubState {
                sub,
                buf: Vec::new(),
            }),
        })
    }

    /// Messages the topic holds (the newest that fit).
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.get()?.len())
    }

    /// Messages published since the topic was created (the next sequence
    /// number).
    #[getter]
    fn published(&self) -> PyResult<u64> {
        Ok(self.get()?.published())
    }

    /// The ring's capacity in bytes.
    #[getter]
    fn capacity(&self) -> u64 {
        self.topic.capacity()
    }

    /// The largest message in bytes.
    #[getter]
    fn max_message(&self) -> u64 {
        self.topic.max_message()
    }

    /// Whether messages carry a CRC32C, checked by subscribers.
    #[getter]
    fn checksum(&self) -> bool {
        self.topic.has_checksum()
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> String {
        self.topic.name().to_owned()
    }

    /// The name of the segment holding it.
    #[getter]
    fn segment_name(&self) -> String {
        self.topic.segment_name().to_owned()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.is_closed()
    }

    /// Stop using this handle (idempotent). Its subscribers are handles of
    /// their own and stay usable.
    fn close(&self) {
        self.closing.close();
    }
}

/// `last_seq` before the first message.
const NO_SEQ: u64 = u64::MAX;

struct SubState {
    sub: shmds::Subscriber,
    buf: Vec<u8>,
}

/// A reader of a topic with its own cursor (nothing of it lives in the
/// segment). One thread at a time: give each thread its own.
#[pyclass(module = "shmds._shmds", name = "Subscriber", frozen)]
pub(crate) struct Subscriber {
    topic: shmds::Topic,
    closing: Closing,
    last_seq: AtomicU64,
    state: Mutex<SubState>,
}

impl Subscriber {
    fn py_err(&self, fail: Fail) -> PyErr {
        let name = self.topic.name();
        match fail {
            Fail::Shmds(shmds::Error::Empty { .. }) => {
                Empty::new_err(format!("no new message in {name:?}"))
            }
            Fail::TimedOut => {
                Empty::new_err(format!("no new message in {name:?} until the timeout"))
            }
            Fail::Closed => closed(),
            Fail::Interrupted => {
                PyKeyboardInterrupt::new_err(format!("waiting on {name:?} was interrupted"))
            }
            Fail::Shmds(e) => to_py(e),
            other => PyRuntimeError::new_err(format!("{name:?}: {other:?}")),
        }
    }

    /// Run `f` on the state, refusing a second thread.
    fn with_state<R>(&self, f: impl FnOnce(&mut SubState) -> PyResult<R>) -> PyResult<R> {
        if self.closing.is_closed() {
            return Err(closed());
        }
        let mut guard = match self.state.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Err(PyRuntimeError::new_err(format!(
                    "another thread is using this subscriber of {:?}; give each thread its own \
                     (topic.subscribe())",
                    self.topic.name()
                )))
            }
        };
        f(&mut guard)
    }

    /// Receive the next message into the state's buffer, then `then`.
    fn receive<R>(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
        then: impl FnOnce(&SubState) -> PyResult<R>,
    ) -> PyResult<R> {
        let timeout = if block { wait_time(timeout)? } else { None };
        self.with_state(|st| {
            let got = match st.sub.recv_interruptible(&mut st.buf, false, None, None) {
                Err(shmds::Error::Empty { .. }) if block => {
                    wait(py, &self.closing, timeout, |w| {
                        let SubState { sub, buf } = &mut *st;
                        sub.recv_interruptible(buf, true, w.left(), Some(w.check()))
                            .map_err(Fail::from)
                    })?
                }
                got => got.map_err(Fail::from),
            };
            let seq = got.map_err(|f| self.py_err(f))?;
            self.last_seq.store(seq, Ordering::Relaxed);
            then(st)
        })
    }

    fn latest_into(&self) -> PyResult<Option<Vec<u8>>> {
        self.with_state(|st| {
            let mut buf = Vec::new();
            let got = st.sub.recv_latest(&mut buf).map_err(to_py)?;
            Ok(got.map(|seq| {
                self.last_seq.store(seq, Ordering::Relaxed);
                buf
            }))
        })
    }
}

#[pymethods]
impl Subscriber {
    /// The next message as bytes; if there is none, wait (forever when
    /// `timeout` is None) unless `block` is false. Raises `queue.Empty`
    /// when none came, `Lagged` (with `.missed`) when messages were
    /// overwritten before this subscriber read them (the next call goes
    /// on with the oldest message held).
    #[pyo3(signature = (block=true, timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.receive(py, block, timeout, |st| Ok(PyBytes::new(py, &st.buf)))
    }

    /// The next object published with `put` (unpickled); like `recv`.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.receive(py, block, timeout, |st| {
            let bytes = PyBytes::new(py, &st.buf);
            pickled::unpickle(py, &st.buf, bytes.as_any())
        })
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// The newest message as bytes, skipping everything before it (this
    /// subscriber goes on after it); None when nothing was published.
    fn recv_latest<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self.latest_into()?.map(|buf| PyBytes::new(py, &buf)))
    }

    /// The newest object, like `recv_latest`; `queue.Empty` when nothing
    /// was published.
    fn get_latest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.latest_into()? {
            Some(buf) => {
                let bytes = PyBytes::new(py, &buf);
                pickled::unpickle(py, &buf, bytes.as_any())
            }
            None => Err(Empty::new_err(format!(
                "nothing was published to {:?} yet",
                self.topic.name()
            ))),
        }
    }

    /// Messages published that this subscriber has not read yet (more than
    /// the topic holds means the next receive raises `Lagged`).
    #[getter]
    fn pending(&self) -> PyResult<u64> {
        self.with_state(|st| Ok(st.sub.pending()))
    }

    /// The sequence number of the last message received (None before the
    /// first).
    #[getter]
    fn last_seq(&self) -> Option<u64> {
        match self.last_seq.load(Ordering::Relaxed) {
            NO_SEQ => None,
            seq => Some(seq),
        }
    }

    /// The topic's entry name.
    #[getter]
    fn name(&self) -> String {
        self.topic.name().to_owned()
    }

    /// The name of the segment holding the topic.
    #[getter]
    fn segment_name(&self) -> String {
        self.topic.segment_name().to_owned()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.is_closed()
    }

    /// Wait until a message may be there to receive, taking nothing: True,
    /// or False once `timeout` passed. Stops (raising) when the subscriber
    /// is closed or `cancel` is cancelled and `_wake()` called. For
    /// `shmds._aio`.
    #[pyo3(signature = (timeout=None, cancel=None))]
    fn _wait_recv(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        cancel: Option<PyRef<'_, CancelToken>>,
    ) -> PyResult<bool> {
        let timeout = wait_time(timeout)?;
        self.with_state(|st| {
            let sub = &st.sub;
            wait_cancellable(py, &self.closing, cancel.as_deref(), timeout, |w| {
                sub.wait_readable(w.left(), Some(w.check()))
                    .map_err(Fail::Shmds)
            })?
            .map_err(|f| self.py_err(f))
        })
    }

    /// Wake every sleeping subscriber of the topic (in every process) so
    /// that each looks at its cancellation token again.
    fn _wake(&self) {
        self.topic.wake_subscribers();
    }

    /// ``await`` form of `recv`: the next message, waiting up to `timeout`
    /// seconds (None: as long as it takes) without blocking the event
    /// loop; `queue.Empty` once `timeout` passed, `Lagged` as for `recv`.
    /// Cancellable: a cancelled call took nothing.
    #[pyo3(signature = (timeout=None))]
    fn recv_async<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        aio_retry(slf, "recv", timeout)
    }

    /// ``await`` form of `get` (as `recv_async`, unpickled).
    #[pyo3(signature = (timeout=None))]
    fn get_async<'py>(slf: &Bound<'py, Self>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        aio_retry(slf, "get", timeout)
    }

    /// Stop using this subscriber (idempotent); a receive waiting in
    /// another thread raises `ValueError`.
    fn close(&self) {
        if self.closing.close() {
            self.topic.wake_subscribers();
        }
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "a Subscriber is a cursor of this process and cannot be pickled: pass the Topic \
             and subscribe() in the other process",
        ))
    }

    fn __repr__(&self) -> String {
        if self.closing.is_closed() {
            return "<shmds.Subscriber (closed)>".to_owned();
        }
        format!("<shmds.Subscriber of {:?}>", self.topic.name())
    }
}

/// `shmds._aio.retry(<method>(block=False), queue.Empty, _wait_recv, _wake,
/// timeout)`: the coroutine of an awaitable receive.
fn aio_retry<'py>(
    slf: &Bound<'py, Subscriber>,
    method: &str,
    timeout: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("block", false)?;
    let attempt = py
        .import("functools")?
        .getattr("partial")?
        .call((slf.getattr(method)?,), Some(&kwargs))?;
    let empty = py.import("queue")?.getattr("Empty")?;
    py.import("shmds._aio")?.call_method1(
        "retry",
        (
            attempt,
            empty,
            slf.getattr("_wait_recv")?,
            slf.getattr("_wake")?,
            timeout,
        ),
    )
}
