//! Objects in messages: what `Channel.put` and `Topic.put` send (the
//! package pickles them), read back by `get`.
//!
//! A message is either a plain pickle (protocol 5; it starts with the
//! PROTO opcode, byte 0x80) or, when the object carried buffers
//! (numpy arrays...) out of band, this framing, little-endian:
//!
//! | offset      | size   | field                                        |
//! |-------------|--------|----------------------------------------------|
//! | 0           | 4      | magic `b"\0OOB"`                             |
//! | 4           | 4      | `n`, the number of out-of-band buffers       |
//! | 8           | 8      | `p`, the pickle's length                     |
//! | 16          | 8 × n  | each buffer's length                         |
//! | 16 + 8n     | p      | the pickle                                   |
//!
//! then each buffer, starting at the next multiple of 64 bytes from the
//! start of the message (zero bytes between). The message ends with the
//! last buffer. `shmds/__init__.py` (`_pickle_parts`) writes it.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyDict, PyList, PyMemoryView, PySlice};

pyo3::import_exception!(pickle, UnpicklingError);

/// First bytes of an out-of-band framed message.
pub(crate) const MAGIC: &[u8; 4] = b"\0OOB";

static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn loads(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    LOADS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("pickle")?.getattr("loads")?.unbind())
        })
        .map(|f| f.bind(py))
}

/// Where the parts of a framed message lie: the pickle and each buffer.
struct Frame {
    pickle: std::ops::Range<usize>,
    buffers: Vec<std::ops::Range<usize>>,
}

fn align64(n: usize) -> Option<usize> {
    n.checked_add(63).map(|n| n & !63)
}

fn parse(bytes: &[u8]) -> Result<Frame, String> {
    let u64_at = |at: usize| -> Option<usize> {
        let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(raw)).ok()
    };
    let n = bytes
        .get(4..8)
        .map(|raw| u32::from_le_bytes(raw.try_into().expect("4 bytes")) as usize)
        .ok_or("the header is cut short")?;
    if n > bytes.len() / 8 {
        return Err(format!("its header claims {n} buffers"));
    }
    let start = 16 + 8 * n;
    let p = u64_at(8).ok_or("the header is cut short")?;
    let mut end = start
        .checked_add(p)
        .filter(|&end| end <= bytes.len())
        .ok_or("the pickle overruns the message")?;
    let pickle = start..end;
    let mut buffers = Vec::with_capacity(n);
    for i in 0..n {
        let len = u64_at(16 + 8 * i).ok_or("the header is cut short")?;
        let at = align64(end).ok_or("a buffer overruns the message")?;
        end = at
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or("a buffer overruns the message")?;
        buffers.push(at..end);
    }
    if end != bytes.len() {
        return Err(format!("{} bytes follow its last part", bytes.len() - end));
    }
    Ok(Frame { pickle, buffers })
}

/// Unpickle the message `bytes`, exported (the same memory) by `exporter`,
/// which the unpickler reads through the buffer protocol: a message still
/// in the ring is read in place. Out-of-band buffers are copied, each into
/// its own `bytearray`, so the objects built on them (numpy arrays) own
/// their memory and are writable.
pub(crate) fn unpickle<'py>(
    py: Python<'py>,
    bytes: &[u8],
    exporter: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    if !bytes.starts_with(MAGIC) {
        return loads(py)?.call1((exporter,));
    }
    let frame = parse(bytes).map_err(|detail| {
        UnpicklingError::new_err(format!(
            "this {}-byte message is not an object sent by put(): it starts like one with \
             out-of-band buffers, but {detail} (receive raw bytes with recv())",
            bytes.len()
        ))
    })?;
    let buffers = PyList::empty(py);
    for range in &frame.buffers {
        buffers.append(PyByteArray::new(py, &bytes[range.clone()]))?;
    }
    let whole = PyMemoryView::from(exporter)?;
    let part = whole.get_item(PySlice::new(
        py,
        frame.pickle.start as isize,
        frame.pickle.end as isize,
        1,
    ))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("buffers", buffers)?;
    let result = loads(py)?.call((&part,), Some(&kwargs));
    // The unpickler keeps no reference to its input; releasing the views
    // at once makes sure of it (a view still exported would make this fail,
    // and the exporter then lives on until it is released).
    let _ = part.call_method0("release");
    let _ = whole.call_method0("release");
    result
}
