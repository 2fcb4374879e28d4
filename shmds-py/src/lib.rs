//! `shmds._shmds`: the native half of the Python package. It is a thin
//! layer over the `shmds` crate; Python idioms (numpy dtypes, `queue`
//! exceptions, `MutableMapping`) live in the pure-Python package beside it.

use pyo3::exceptions::{
    PyBufferError, PyException, PyFileExistsError, PyFileNotFoundError, PyIndexError, PyKeyError,
    PyOSError, PyPermissionError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::ffi::CString;

mod buffer;
mod channel;
mod codec;
mod coord;
mod map;
mod pickled;
mod queue;
mod remote;
mod set;
mod snapshot;
mod topic;
mod wait;
use std::os::raw::c_int;

pyo3::create_exception!(
    _shmds,
    ShmdsError,
    PyException,
    "Base class of shmds errors."
);
pyo3::create_exception!(
    _shmds,
    CorruptError,
    ShmdsError,
    "The segment's bytes do not make sense: damaged, or not a shmds segment."
);
pyo3::create_exception!(
    _shmds,
    IncompatibleError,
    ShmdsError,
    "The segment was written by an incompatible shmds format or machine."
);
pyo3::create_exception!(
    _shmds,
    StaleError,
    ShmdsError,
    "The structure behind this handle was erased."
);
pyo3::create_exception!(
    _shmds,
    BusyError,
    ShmdsError,
    "A live process held a lock for longer than the lock timeout."
);
pyo3::create_exception!(
    _shmds,
    NotReadyError,
    ShmdsError,
    "The segment's creator has not finished (or died) initialising it."
);
pyo3::create_exception!(
    _shmds,
    NoSpaceError,
    ShmdsError,
    "No room: /dev/shm, the segment's heap or its name table is full, or \
     every attachment record of a channel is taken."
);

pyo3::create_exception!(
    _shmds,
    AlreadyAttachedError,
    ShmdsError,
    "A single-producer single-consumer channel already has its sender (or \
     receiver) attached, in this or another process."
);

/// An exception class with several bases, or with a base known only at
/// run time, made once per interpreter (`create_exception!` takes one
/// base fixed at compile time).
pub(crate) struct DynException {
    cell: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>>,
    name: &'static std::ffi::CStr,
    doc: &'static std::ffi::CStr,
    bases: for<'py> fn(Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>>,
}

impl DynException {
    const fn new(
        name: &'static std::ffi::CStr,
        doc: &'static std::ffi::CStr,
        bases: for<'py> fn(Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>>,
    ) -> DynException {
        DynException {
            cell: pyo3::sync::PyOnceLock::new(),
            name,
            doc,
            bases,
        }
    }

    /// The class.
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<&Bound<'py, pyo3::types::PyType>> {
        self.cell
            .get_or_try_init(py, || {
                let bases = PyTuple::new(py, (self.bases)(py)?)?;
                // SAFETY: name and doc are NUL-terminated static strings
                // (the name dotted, as PyErr_NewException requires), bases
                // a live tuple of exception classes; the call returns a
                // new reference or NULL with an exception set.
                let ty = unsafe {
                    pyo3::ffi::PyErr_NewExceptionWithDoc(
                        self.name.as_ptr(),
                        self.doc.as_ptr(),
                        bases.as_ptr(),
                        std::ptr::null_mut(),
                    )
                };
                if ty.is_null() {
                    return Err(PyErr::fetch(py));
                }
                // SAFETY: a new, non-null reference to a type object.
                let ty = unsafe { Bound::from_owned_ptr(py, ty) };
                Ok::<_, PyErr>(ty.cast_into::<pyo3::types::PyType>()?.unbind())
            })
            .map(|ty| ty.bind(py))
    }

    /// An instance with `msg` and the attributes `attrs`.
    pub(crate) fn err(&self, msg: String, attrs: &[(&str, u64)]) -> PyErr {
        Python::attach(|py| {
            let ty = match self.get(py) {
                Ok(ty) => ty.clone(),
                Err(e) => return e,
            };
            let err = PyErr::from_type(ty, msg);
            for (name, value) in attrs {
                if let Err(e) = err.value(py).setattr(*name, *value) {
                    return e;
                }
            }
            err
        })
    }
}

fn shmds_error_base(py: Python<'_>) -> Bound<'_, PyAny> {
    py.get_type::<ShmdsError>().into_any()
}

/// `shmds.Disconnected`: the other side of a channel is gone.
pub(crate) static DISCONNECTED: DynException = DynException::new(
    c"shmds._shmds.Disconnected",
    c"The other side of a channel is gone: every sender (for a receiver that \
      found the channel empty) or every receiver (for a sender that found it \
      full) detached or died. An EOFError, as multiprocessing.Connection.recv \
      raises when the other end is closed.",
    |py| {
        Ok(vec![
            shmds_error_base(py),
            py.get_type::<pyo3::exceptions::PyEOFError>().into_any(),
        ])
    },
);

/// `shmds.ShutDown`: the structure was shut down. A `queue.ShutDown` on
/// Python 3.13 and later (where `queue.Queue.shutdown` raises it), else an
/// `Exception`. The one definition of it in the package.
pub(crate) static SHUT_DOWN: DynException = DynException::new(
    c"shmds._shmds.ShutDown",
    c"The structure was shut down (shutdown()): nothing more goes in, and \
      what was in it has been taken. queue.ShutDown on Python 3.13+.",
    |py| {
        let queue = py.import("queue")?;
        Ok(vec![match queue.getattr("ShutDown") {
            Ok(base) => base,
            Err(_) => py.get_type::<PyException>().into_any(),
        }])
    },
);

/// `shmds.Lagged`: a topic subscriber fell behind (`.missed`).
pub(crate) static LAGGED: DynException = DynException::new(
    c"shmds._shmds.Lagged",
    c"A topic subscriber fell behind by more than the topic holds: `missed` \
      messages were overwritten before it read them. The next receive goes \
      on with the oldest message still held.",
    |py| Ok(vec![shmds_error_base(py)]),
);

/// `shmds.MessageTooLargeError`: a message larger than the limit (`.size`,
/// `.limit`): a channel's or topic's max_message, or a receive buffer.
pub(crate) static MESSAGE_TOO_LARGE: DynException = DynException::new(
    c"shmds._shmds.MessageTooLargeError",
    c"A message is larger than allowed: `size` bytes against a `limit` of a \
      channel's or topic's max_message (on send), or of the buffer given to \
      recv_into (the message is then kept for the next receive).",
    |py| {
        Ok(vec![
            shmds_error_base(py),
            py.get_type::<PyValueError>().into_any(),
        ])
    },
);

/// `shmds.UnavailableError`: a remote segment's server is not there (lost
/// connection, timeout, server error). A `ConnectionError`.
pub(crate) static UNAVAILABLE: DynException = DynException::new(
    c"shmds._shmds.UnavailableError",
    c"A remote segment's server could not be reached or did not answer in \
      time; whether a write took effect is unknown. A ConnectionError.",
    |py| {
        Ok(vec![
            shmds_error_base(py),
            py.get_type::<pyo3::exceptions::PyConnectionError>()
                .into_any(),
        ])
    },
);

/// The Python exception for a shmds error.
pub(crate) fn to_py(e: shmds::Error) -> PyErr {
    use shmds::Error as E;
    let msg = e.to_string();
    match e {
        E::Disconnected { .. } => DISCONNECTED.err(msg, &[]),
        E::ShutDown { .. } => SHUT_DOWN.err(msg, &[]),
        E::Lagged { missed, .. } => LAGGED.err(msg, &[("missed", missed)]),
        E::MessageTooLarge { len, max, .. } => {
            MESSAGE_TOO_LARGE.err(msg, &[("size", len), ("limit", max)])
        }
        E::OwnerDied { pid, .. } => coord::OWNER_DIED.err(msg, &[("pid", pid.into())]),
        E::NotOwner { holder, .. } => coord::NOT_OWNER.err(msg, &[("holder", holder.into())]),
        E::BrokenBarrier { .. } => coord::BrokenBarrierError::new_err(msg),
        E::TooManyReleases { value, max, .. } => {
            coord::TOO_MANY_RELEASES.err(msg, &[("value", value.into()), ("max", max.into())])
        }
        E::ReaderSlotsFull { slots, .. } => {
            coord::READER_SLOTS_FULL.err(msg, &[("slots", slots.into())])
        }
        E::AlreadyAttached { .. } => AlreadyAttachedError::new_err(msg),
        E::TooManyAttached { .. } => NoSpaceError::new_err(msg),
        E::SegmentNotFound { .. } | E::SnapshotNotFound { .. } => PyFileNotFoundError::new_err(msg),
        E::EntryNotFound { .. } => PyKeyError::new_err(msg),
        E::SegmentExists { .. } | E::EntryExists { .. } => PyFileExistsError::new_err(msg),
        E::PermissionDenied { .. } => PyPermissionError::new_err(msg),
        E::TypeMismatch { .. } | E::KindMismatch { .. } => PyTypeError::new_err(msg),
        E::InvalidName { .. }
        | E::InvalidType { .. }
        | E::InvalidArgument(_)
        | E::ShapeMismatch { .. } => PyValueError::new_err(msg),
        E::IndexOutOfBounds { .. } => PyIndexError::new_err(msg),
        E::Corrupt { .. } | E::Damaged { .. } => CorruptError::new_err(msg),
        E::Incompatible { .. } => IncompatibleError::new_err(msg),
        E::Stale { .. } => StaleError::new_err(msg),
        E::LockBusy { .. } | E::Busy { .. } => BusyError::new_err(msg),
        E::NotReady { .. } => NotReadyError::new_err(msg),
        E::NoSpace { .. } | E::OutOfSpace { .. } | E::TableFull { .. } | E::Full { .. } => {
            NoSpaceError::new_err(msg)
        }
        E::Timeout { .. } => pyo3::exceptions::PyTimeoutError::new_err(msg),
        E::Interrupted { .. } => pyo3::exceptions::PyKeyboardInterrupt::new_err(msg),
        E::Io { .. } => PyOSError::new_err(msg),
        E::Unavailable { .. } => UNAVAILABLE.err(msg, &[]),
        _ => ShmdsError::new_err(msg),
    }
}

pub(crate) fn closed() -> PyErr {
    PyValueError::new_err("operation on a closed shmds handle")
}

/// A segment: a named POSIX shared memory region holding named structures.
#[pyclass(module = "shmds._shmds", name = "Segment", subclass)]
pub(crate) struct Segment {
    seg: Option<shmds::Segment>,
}

impl Segment {
    pub(crate) fn get(&self) -> PyResult<&shmds::Segment> {
        self.seg.as_ref().ok_or_else(closed)
    }
}

#[pymethods]
impl Segment {
    /// Attach to the segment `name` (a /dev/shm name, or a file path: a
    /// durable segment). With `create=None`, open it if it exists, else
    /// create it with `size` bytes (and no `size` means open only);
    /// `create=True` always creates, `create=False` only opens.
    /// `max_size`, `temporary` and `wipe_on_erase` apply to a segment
    /// this call creates; `flush_on_close` to this handle. `_snapshot`,
    /// `(store, id)`, creates `name` from that snapshot (`Store.restore`).
    #[new]
    #[pyo3(signature = (
        name, size=None, *, create=None, mode=0o600, table_capacity=None, max_size=None,
        temporary=false, wipe_on_erase=false, flush_on_close=false, _snapshot=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = snapshot::segment_name)] name: String,
        size: Option<u64>,
        create: Option<bool>,
        mode: u32,
        table_capacity: Option<u32>,
        max_size: Option<u64>,
        temporary: bool,
        wipe_on_erase: bool,
        flush_on_close: bool,
        _snapshot: Option<(Bound<'_, snapshot::Store>, String)>,
    ) -> PyResult<Self> {
        let name = name.as_str();
        if let Some((store, id)) = _snapshot {
            let seg = snapshot::restore(py, &store, &id, name)?;
            return Ok(Segment { seg: Some(seg) });
        }
        let mut opts = shmds::Segment::options()
            .mode(mode)
            .temporary(temporary)
            .wipe_on_erase(wipe_on_erase)
            .flush_on_close(flush_on_close);
        if let Some(n) = table_capacity {
            opts = opts.table_capacity(n);
        }
        if let Some(n) = max_size {
            opts = opts.max_size(n);
        }
        let need_size = || {
            size.ok_or_else(|| PyValueError::new_err("creating a segment needs a size in bytes"))
        };
        let seg = match (create, size) {
            (Some(false), _) | (None, None) => opts.open(name),
            (Some(true), _) => opts.size(need_size()?).create(name),
            (None, Some(bytes)) => opts.size(bytes).open_or_create(name),
        }
        .map_err(to_py)?;
        Ok(Segment { seg: Some(seg) })
    }

    /// The segment name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.get()?.name().to_owned())
    }

    /// Total size in bytes.
    #[getter]
    fn size(&self) -> PyResult<u64> {
        Ok(self.get()?.size())
    }

    /// Bytes handed out so far (header, table and structures).
    #[getter]
    fn used(&self) -> PyResult<u64> {
        Ok(self.get()?.used())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.seg.is_none()
    }

    /// The table: one tuple per structure, `(name, kind, type, key_type,
    /// capacity, bytes, fill)`; `fill` is None where it does not apply.
    fn _entries<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let seg = self.get()?;
        let mut out = Vec::new();
        for e in seg.entries().map_err(to_py)? {
            let fill = seg.inspect(&e).ok().flatten();
            out.push(PyTuple::new(
                py,
                [
                    e.name.clone().into_pyobject(py)?.into_any(),
                    e.kind_name().into_pyobject(py)?.into_any(),
                    e.elem_type.clone().into_pyobject(py)?.into_any(),
                    e.key_type.clone().into_pyobject(py)?.into_any(),
                    e.capacity.into_pyobject(py)?.into_any(),
                    e.size.into_pyobject(py)?.into_any(),
                    fill.into_pyobject(py)?.into_any(),
                ],
            )?);
        }
        Ok(out)
    }

    /// Erase the structure `name` (handles to it raise StaleError); with
    /// `wipe`, zero its memory too.
    #[pyo3(signature = (name, wipe=false))]
    fn erase(&self, name: &str, wipe: bool) -> PyResult<()> {
        let seg = self.get()?;
        if wipe {
            seg.erase_and_wipe(name)
        } else {
            seg.erase(name)
        }
        .map_err(to_py)
    }

    /// Whether the segment is removed when the last attached process
    /// detaches or dies.
    #[getter]
    fn temporary(&self) -> PyResult<bool> {
        Ok(self.get()?.is_temporary())
    }

    /// Whether the segment lives in a regular file (a durable segment,
    /// named by its path) rather than in /dev/shm.
    #[getter]
    fn is_durable(&self) -> PyResult<bool> {
        Ok(self.get()?.is_durable())
    }

    /// Write a durable segment's changes so far to its file and wait for
    /// the disk (msync and fsync), so they survive a crash of the machine.
    /// Nothing to do for a /dev/shm segment.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let seg = self.get()?.clone();
        py.detach(|| seg.flush()).map_err(to_py)
    }

    /// Whether erased structures' memory is zeroed.
    #[getter]
    fn wipe_on_erase(&self) -> PyResult<bool> {
        Ok(self.get()?.wipes_on_erase())
    }

    /// Pid of the process that created the segment.
    #[getter]
    fn creator_pid(&self) -> PyResult<u32> {
        Ok(self.get()?.creator_pid())
    }

    /// Whether the process that created the segment still runs.
    #[getter]
    fn creator_alive(&self) -> PyResult<bool> {
        Ok(self.get()?.creator_alive())
    }

    /// Whether no live process is attached (never for a handle that is
    /// itself attached).
    #[getter]
    fn abandoned(&self) -> PyResult<bool> {
        Ok(self.get()?.is_abandoned())
    }

    /// Attached processes counted without a record (all records taken).
    #[getter]
    fn attach_overflow(&self) -> PyResult<u32> {
        Ok(self.get()?.attach_overflow())
    }

    /// The attached processes: `(pid, start_time, handles, alive)` each.
    fn _attachers(&self) -> PyResult<Vec<AttacherTuple>> {
        Ok(self.get()?.attachers().iter().map(attacher_tuple).collect())
    }

    /// The heap's figures: `(size, max_size, heap_bytes, used_bytes,
    /// free_bytes, largest_free, used_blocks, free_blocks, fragmentation)`.
    fn _heap(&self) -> PyResult<HeapTuple> {
        let h = self.get()?.heap().map_err(to_py)?;
        Ok((
            h.size,
            h.max_size,
            h.heap_bytes,
            h.used_bytes,
            h.free_bytes,
            h.largest_free,
            h.used_blocks,
            h.free_blocks,
            h.fragmentation(),
        ))
    }

    /// A deep check: a list of problems, empty when the segment is sound.
    fn check(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.check().problems)
    }

    /// Remove the segment's name from /dev/shm (attached processes keep
    /// their mapping until they close it).
    fn unlink(&self) -> PyResult<()> {
        self.get()?.unlink().map_err(to_py)
    }

    /// Drop this handle (idempotent). Structures opened from it stay usable.
    fn close(&mut self) {
        self.seg = None;
    }
}

type HeapTuple = (u64, u64, u64, u64, u64, u64, u64, u64, f64);

/// An attached process: `(pid, start_time, handles, alive)`.
type AttacherTuple = (u32, u64, u32, bool);

fn attacher_tuple(a: &shmds::Attacher) -> AttacherTuple {
    (a.pid, a.start_time, a.handles, a.alive)
}

/// A fixed-length array in a segment, exposing its bytes through the
/// buffer protocol (zero-copy `numpy.asarray`).
#[pyclass(module = "shmds._shmds", name = "Array", subclass)]
struct Array {
    raw: Option<shmds::RawArray>,
    format: CString,
    shape: [isize; 1],
    strides: [isize; 1],
    /// Buffers handed out and not yet released.
    exports: usize,
    /// The element codec when the native layer converts the elements
    /// (numbers, strings, raw bytes); None for records and sub-arrays.
    codec: Option<codec::Codec>,
}

impl Array {
    fn new(raw: shmds::RawArray) -> PyResult<Array> {
        let format = CString::new(raw.type_descriptor())
            .map_err(|_| PyValueError::new_err("type descriptor contains a NUL byte"))?;
        let len = isize::try_from(raw.len())
            .map_err(|_| PyValueError::new_err("array too long for this machine"))?;
        let strides = [raw.elem_size() as isize];
        let codec = codec::Codec::new(raw.type_descriptor(), raw.elem_size(), None, None)
            .ok()
            .filter(codec::Codec::is_native);
        Ok(Array {
            raw: Some(raw),
            format,
            shape: [len],
            strides,
            exports: 0,
            codec,
        })
    }

    fn get(&self) -> PyResult<&shmds::RawArray> {
        self.raw.as_ref().ok_or_else(closed)
    }

    /// A Python index (negative counts from the end), checked.
    fn index(&self, index: i64) -> PyResult<usize> {
        let len = self.get()?.len();
        let at = if index < 0 {
            (len as i64).checked_add(index)
        } else {
            Some(index)
        };
        match at {
            Some(i) if i >= 0 && (i as u64) < len as u64 => Ok(i as usize),
            _ => Err(PyIndexError::new_err(format!(
                "index {index} out of range for length {len}"
            ))),
        }
    }

    /// The native codec of the elements; TypeError for records and
    /// sub-arrays.
    fn native(&self) -> PyResult<&codec::Codec> {
        let raw = self.get()?;
        self.codec.as_ref().ok_or_else(|| {
            PyTypeError::new_err(format!(
                "elements of type {:?} are converted by numpy",
                raw.type_descriptor()
            ))
        })
    }

    /// The integer codec of the elements; TypeError for other types.
    fn ints(&self) -> PyResult<&codec::Codec> {
        let raw = self.get()?;
        self.codec.as_ref().filter(|c| c.is_int()).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "atomic arithmetic needs an integer array, not {:?}",
                raw.type_descriptor()
            ))
        })
    }
}

#[pymethods]
impl Array {
    /// Open the array `name` of `segment`. With a `descriptor` (a PEP 3118
    /// format) and `length`, create it first if it does not exist; without,
    /// open it whatever its type.
    #[new]
    #[pyo3(signature = (segment, name, descriptor=None, length=None))]
    fn py_new(
        segment: PyRef<'_, Segment>,
        name: &str,
        descriptor: Option<&str>,
        length: Option<usize>,
    ) -> PyResult<Array> {
        let seg = segment.get()?;
        let raw = match (descriptor, length) {
            (None, _) => seg.open_array_raw(name),
            (Some(d), Some(n)) => seg.open_or_create_array_raw(name, d, n),
            (Some(_), None) => {
                return Err(PyValueError::new_err("creating an array needs its length"))
            }
        }
        .map_err(to_py)?;
        Array::new(raw)
    }

    fn __len__(&self) -> PyResult<usize> {
        let raw = self.get()?;
        raw.check().map_err(to_py)?;
        Ok(raw.len())
    }

    /// The entry name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.get()?.name().to_owned())
    }

    /// The name of the segment holding the array.
    #[getter]
    fn segment_name(&self) -> PyResult<String> {
        Ok(self.get()?.segment_name().to_owned())
    }

    /// The element type descriptor (PEP 3118 format).
    #[getter]
    fn descriptor(&self) -> PyResult<String> {
        Ok(self.get()?.type_descriptor().to_owned())
    }

    /// Size of one element in bytes.
    #[getter]
    fn itemsize(&self) -> PyResult<usize> {
        Ok(self.get()?.elem_size())
    }

    /// For integer arrays: add `delta` (wrapping at the element's width)
    /// to element `index`, atomically across processes. Returns the
    /// previous value.
    #[pyo3(signature = (index, delta=None))]
    fn fetch_add<'py>(
        &self,
        py: Python<'py>,
        index: i64,
        delta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = self.get()?;
        let ints = self.ints()?;
        let at = self.index(index)?;
        let delta = delta
            .map(codec::Codec::delta_bits)
            .transpose()?
            .unwrap_or(1);
        let old = raw.fetch_add(at, delta).map_err(to_py)?;
        ints.int_object(py, old)
    }

    /// For integer arrays: if element `index` is `current`, set it to
    /// `new`, atomically. Returns the value before the call (the swap
    /// happened if it equals `current`).
    fn compare_exchange<'py>(
        &self,
        py: Python<'py>,
        index: i64,
        current: &Bound<'py, PyAny>,
        new: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = self.get()?;
        let at = self.index(index)?;
        let ints = self.ints()?;
        let (current, new) = (ints.int_bits(current)?, ints.int_bits(new)?);
        let (Ok(old) | Err(old)) = raw.compare_exchange(at, current, new).map_err(to_py)?;
        ints.int_object(py, old)
    }

    /// Element `index` as a Python object (str for strings, bytes for raw
    /// bytes, int or float), for element types the native layer converts.
    fn _get<'py>(&self, py: Python<'py>, index: i64) -> PyResult<Bound<'py, PyAny>> {
        let raw = self.get()?;
        let codec = self.native()?;
        let at = self.index(index)?;
        let mut elem = codec::Scratch::new(raw.elem_size());
        raw.read_bytes(at, elem.bytes()).map_err(to_py)?;
        codec.decode(py, elem.bytes())
    }

    /// Set element `index` to `value`, converted as a queue `put` does.
    fn _set(&self, index: i64, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let raw = self.get()?;
        let codec = self.native()?;
        let at = self.index(index)?;
        let mut elem = codec::Scratch::new(raw.elem_size());
        codec.encode(value, elem.bytes())?;
        raw.write_bytes(at, elem.bytes()).map_err(to_py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.raw.is_none()
    }

    /// Drop this handle (idempotent). Raises BufferError while views of its
    /// memory (numpy arrays, memoryviews) exist.
    fn close(&mut self) -> PyResult<()> {
        if self.exports > 0 {
            return Err(PyBufferError::new_err(format!(
                "{} view(s) of this array's memory still exist; delete them first",
                self.exports
            )));
        }
        self.raw = None;
        Ok(())
    }

    /// # Safety
    /// Called by the interpreter with a valid `view` to fill.
    unsafe fn __getbuffer__(
        mut slf: PyRefMut<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no view to fill"));
        }
        let (buf, len, itemsize) = {
            let raw = slf.get()?;
            raw.check().map_err(to_py)?;
            (
                raw.as_ptr(),
                raw.len() as isize * raw.elem_size() as isize,
                raw.elem_size() as isize,
            )
        };
        slf.exports += 1;
        let export = buffer::Export {
            buf,
            len,
            itemsize,
            readonly: false,
            format: slf.format.as_ptr(),
            shape: slf.shape.as_mut_ptr(),
            strides: slf.strides.as_mut_ptr(),
        };
        // SAFETY: `view` is non-null and ours to fill (buffer protocol). The
        // pointers stay valid while the view holds its reference to `slf`:
        // the data lives in the mapping this object keeps alive (close()
        // refuses while exports > 0), and format/shape/strides live in the
        // object itself.
        unsafe { buffer::fill_view(view, flags, slf.as_ptr(), export) };
        Ok(())
    }

    /// # Safety
    /// Called by the interpreter when a view from `__getbuffer__` is released.
    unsafe fn __releasebuffer__(mut slf: PyRefMut<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        slf.exports = slf.exports.saturating_sub(1);
    }
}

/// Names of the shmds segments in /dev/shm.
#[pyfunction]
fn list_segments() -> PyResult<Vec<String>> {
    shmds::list_segments().map_err(to_py)
}

/// Remove the segment `name` from /dev/shm (or a durable segment's file).
#[pyfunction]
fn remove(#[pyo3(from_py_with = snapshot::segment_name)] name: String) -> PyResult<()> {
    shmds::Segment::remove(&name).map_err(to_py)
}

/// A segment status tuple (see `_segment_status`).
type StatusTuple = (String, u64, bool, u32, bool, Vec<AttacherTuple>, u32, bool);

/// The lifetime status of the segment `name`, read without attaching:
/// `(name, size, temporary, creator_pid, creator_alive, attachers,
/// overflow, abandoned)`.
#[pyfunction]
fn _segment_status(
    py: Python<'_>,
    #[pyo3(from_py_with = snapshot::segment_name)] name: String,
) -> PyResult<StatusTuple> {
    let s = py.detach(|| shmds::segment_status(&name)).map_err(to_py)?;
    Ok((
        s.name,
        s.size,
        s.temporary,
        s.creator_pid,
        s.creator_alive,
        s.attachers.iter().map(attacher_tuple).collect(),
        s.overflow,
        s.abandoned,
    ))
}

/// Remove every segment no live process is attached to; their names.
#[pyfunction]
fn remove_abandoned(py: Python<'_>) -> PyResult<Vec<String>> {
    py.detach(shmds::remove_abandoned).map_err(to_py)
}

/// The elements of the iterable `items` converted to `descriptor` (a
/// number, string or raw-bytes type) by the rules of a single element,
/// packed: what a batch write stores.
#[pyfunction]
fn _pack<'py>(
    py: Python<'py>,
    descriptor: &str,
    items: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let parsed = shmds::TypeDescriptor::parse(descriptor).map_err(to_py)?;
    let codec = codec::Codec::new(parsed.as_str(), parsed.size() as usize, None, None)?;
    let packed = codec.encode_many(items, parsed.size() as usize)?;
    Ok(pyo3::types::PyBytes::new(py, &packed))
}

/// Parse a PEP 3118 type descriptor: `(canonical form, size in bytes)`.
#[pyfunction]
fn parse_descriptor(descriptor: &str) -> PyResult<(String, u64)> {
    let d = shmds::TypeDescriptor::parse(descriptor).map_err(to_py)?;
    Ok((d.as_str().to_owned(), d.size()))
}

/// The name people read for a type descriptor: `u64` for `"<Q"`, `str16`
/// for a 16-byte string, `record{ts: u64, price: f64}`; a descriptor it
/// does not understand comes back as it is.
#[pyfunction]
fn human_type(descriptor: &str) -> String {
    shmds::human_type(descriptor)
}

#[pymodule]
fn _shmds(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Segment>()?;
    m.add_class::<Array>()?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<map::Map>()?;
    m.add_class::<set::Set>()?;
    m.add_class::<wait::CancelToken>()?;
    m.add_class::<channel::Channel>()?;
    m.add_class::<channel::MessageView>()?;
    m.add_class::<topic::Topic>()?;
    m.add_class::<topic::Subscriber>()?;
    coord::register(m)?;
    snapshot::register(m)?;
    remote::register(m)?;
    m.add_function(wrap_pyfunction!(list_segments, m)?)?;
    m.add_function(wrap_pyfunction!(remove, m)?)?;
    m.add_function(wrap_pyfunction!(_segment_status, m)?)?;
    m.add_function(wrap_pyfunction!(remove_abandoned, m)?)?;
    m.add_function(wrap_pyfunction!(parse_descriptor, m)?)?;
    m.add_function(wrap_pyfunction!(human_type, m)?)?;
    m.add_function(wrap_pyfunction!(_pack, m)?)?;
    let after_fork = wrap_pyfunction!(wait::_after_fork_in_child, m)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("after_in_child", &after_fork)?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&kwargs))?;
    m.add("ShmdsError", py.get_type::<ShmdsError>())?;
    m.add("CorruptError", py.get_type::<CorruptError>())?;
    m.add("IncompatibleError", py.get_type::<IncompatibleError>())?;
    m.add("StaleError", py.get_type::<StaleError>())?;
    m.add("BusyError", py.get_type::<BusyError>())?;
    m.add("NotReadyError", py.get_type::<NotReadyError>())?;
    m.add("NoSpaceError", py.get_type::<NoSpaceError>())?;
    m.add("WaitCancelled", py.get_type::<wait::WaitCancelled>())?;
    m.add(
        "AlreadyAttachedError",
        py.get_type::<AlreadyAttachedError>(),
    )?;
    m.add("Disconnected", DISCONNECTED.get(py)?)?;
    m.add("ShutDown", SHUT_DOWN.get(py)?)?;
    m.add("Lagged", LAGGED.get(py)?)?;
    m.add("MessageTooLargeError", MESSAGE_TOO_LARGE.get(py)?)?;
    m.add("UnavailableError", UNAVAILABLE.get(py)?)?;
    Ok(())
}
