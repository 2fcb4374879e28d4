//! Bytes-like arguments of any element type: the raw bytes of a contiguous
//! buffer (`bytes`, `bytearray`, `memoryview`, a numpy array of any dtype),
//! usable without the GIL.

use pyo3::ffi;
use pyo3::prelude::*;

/// A buffer export held for as long as this value lives.
pub(crate) struct RawBuf {
    /// Boxed: some exporters keep pointers into the `Py_buffer` they
    /// filled, so it must not move until it is released.
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the export pins the exporter's memory until `drop` releases it;
// the pointer and length are plain data. Writes through `as_mut_slice`
// need `&mut self`.
unsafe impl Send for RawBuf {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for RawBuf {}

impl RawBuf {
    /// The contiguous bytes of `obj` (writable ones with `writable`).
    /// Raises the exporter's `BufferError` for a non-contiguous or (with
    /// `writable`) a read-only buffer, `TypeError` for a non-buffer.
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<RawBuf> {
        // SAFETY: Py_buffer is a plain C struct; all-zero is a valid
        // "not filled" value, and PyObject_GetBuffer fills it.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // PyBUF_SIMPLE asks for one contiguous run of bytes, whatever the
        // element type: exporters that cannot give one refuse.
        let flags = if writable {
            ffi::PyBUF_WRITABLE
        } else {
            ffi::PyBUF_SIMPLE
        };
        // SAFETY: `obj` is a live object (we hold the GIL) and `view` is
        // ours to fill; on failure nothing needs releasing.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) } != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(RawBuf { view })
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len.max(0) as usize
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a PyBUF_SIMPLE export is `len` contiguous bytes at
        // `buf`, valid until released (in drop). Another thread may write
        // them meanwhile (as with any buffer handed to C), which changes
        // only the bytes.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), self.len()) }
    }

    /// The bytes, to write. Only for buffers got `writable`.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        debug_assert_eq!(self.view.readonly, 0);
        if self.len() == 0 || self.view.buf.is_null() {
            return &mut [];
        }
        // SAFETY: as in as_slice; the export is writable (`get` asked for
        // PyBUF_WRITABLE, which a read-only exporter refuses).
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), self.len()) }
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // Releasing needs the interpreter; after it is finalised there is
        // nothing left to release.
        let _ = Python::try_attach(|_| {
            // SAFETY: `view` was filled by a successful PyObject_GetBuffer
            // and is released exactly once, here.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}

/// A one-dimensional buffer export, as `__getbuffer__` fills it in.
pub(crate) struct Export {
    pub(crate) buf: *const u8,
    /// Bytes.
    pub(crate) len: isize,
    pub(crate) itemsize: isize,
    pub(crate) readonly: bool,
    /// NUL-terminated struct-module format.
    pub(crate) format: *const std::os::raw::c_char,
    /// One element each, living in the exporting object.
    pub(crate) shape: *mut isize,
    pub(crate) strides: *mut isize,
}

/// Fill `view` with `export` for the requester's `flags` (format, shape
/// and strides only when asked for), holding a reference to `obj`.
///
/// # Safety
/// `view` must be non-null and the requester's to fill; `obj` must be the
/// exporting object, and every pointer of `export` must stay valid while
/// `obj` lives and the export is counted (until `__releasebuffer__`).
pub(crate) unsafe fn fill_view(
    view: *mut ffi::Py_buffer,
    flags: std::os::raw::c_int,
    obj: *mut ffi::PyObject,
    export: Export,
) {
    let pick = |wanted: bool, p: *mut isize| if wanted { p } else { std::ptr::null_mut() };
    let format = if flags & ffi::PyBUF_FORMAT != 0 {
        export.format as *mut std::os::raw::c_char
    } else {
        std::ptr::null_mut()
    };
    let shape = pick(flags & ffi::PyBUF_ND != 0, export.shape);
    let strides = pick(
        flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES,
        export.strides,
    );
    // SAFETY: (caller) `view` is ours to fill and the pointers outlive the
    // export, which holds the reference to `obj` taken here.
    unsafe {
        (*view).buf = export.buf as *mut std::os::raw::c_void;
        (*view).len = export.len;
        (*view).itemsize = export.itemsize;
        (*view).readonly = export.readonly as std::os::raw::c_int;
        (*view).ndim = 1;
        (*view).format = format;
        (*view).shape = shape;
        (*view).strides = strides;
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
        ffi::Py_INCREF(obj);
        (*view).obj = obj;
    }
}
