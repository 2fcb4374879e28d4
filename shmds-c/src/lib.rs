//! The C ABI of shmds (`libshmds.so`, `libshmds.a`), declared in
//! `include/shmds.h` (generated from this file and `layout.rs`; a test
//! fails when the checked-in header is stale).
//!
//! Conventions:
//! - Functions return `SHMDS_OK` (0) or a negative `SHMDS_E_*` code;
//!   `shmds_strerror(code)` names a code and `shmds_last_error()` gives the
//!   full message of the calling thread's last failure.
//! - Handles are opaque pointers, released with their `*_close` function
//!   (`NULL` is accepted and ignored). Structure handles keep their
//!   segment mapped: closing the segment handle first is allowed.
//! - Elements, keys and values are passed as pointers to exactly
//!   `elem_size` (`key_size`, `value_size`) bytes.
//! - Timeouts are in nanoseconds; a negative timeout waits forever.
//! - No Rust panic crosses the boundary: one would become `SHMDS_E_PANIC`.
//! - Every handle may be used from several threads at once.

#![allow(clippy::missing_safety_doc)] // the header documents each pointer rule

use shmds_core as core_lib;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Success.
pub const SHMDS_OK: c_int = 0;
/// An argument is invalid (a NULL pointer, a bad name, size or type descriptor).
pub const SHMDS_E_INVALID: c_int = -1;
/// No such segment or entry.
pub const SHMDS_E_NOT_FOUND: c_int = -2;
/// The segment or entry already exists.
pub const SHMDS_E_EXISTS: c_int = -3;
/// The operating system refused access.
pub const SHMDS_E_PERMISSION: c_int = -4;
/// The entry is another kind of structure or holds another type.
pub const SHMDS_E_TYPE: c_int = -5;
/// No room: /dev/shm, the segment's heap, its name table, or a full map.
pub const SHMDS_E_NO_SPACE: c_int = -6;
/// The queue or stack is full.
pub const SHMDS_E_FULL: c_int = -7;
/// The queue or stack is empty.
pub const SHMDS_E_EMPTY: c_int = -8;
/// A blocking call timed out.
pub const SHMDS_E_TIMEOUT: c_int = -9;
/// The segment is damaged or not a shmds segment.
pub const SHMDS_E_CORRUPT: c_int = -10;
/// The segment was made by an incompatible format or machine.
pub const SHMDS_E_INCOMPATIBLE: c_int = -11;
/// The structure was erased after the handle was opened.
pub const SHMDS_E_STALE: c_int = -12;
/// A live process held a lock for longer than the lock timeout.
pub const SHMDS_E_BUSY: c_int = -13;
/// The segment's creator has not finished initialising it.
pub const SHMDS_E_NOT_READY: c_int = -14;
/// A system call failed.
pub const SHMDS_E_IO: c_int = -15;
/// An index is past the end of an array.
pub const SHMDS_E_INDEX: c_int = -16;
/// A bug in shmds (a Rust panic), caught at the boundary.
pub const SHMDS_E_PANIC: c_int = -17;

/// Kinds of structure, as in `shmds_entry_info.kind` and FORMAT.md.
pub const SHMDS_KIND_ARRAY: u32 = 1;
/// A FIFO queue.
pub const SHMDS_KIND_QUEUE: u32 = 2;
/// A LIFO stack.
pub const SHMDS_KIND_STACK: u32 = 3;
/// A hash map.
pub const SHMDS_KIND_MAP: u32 = 4;

/// An attached segment.
pub struct ShmdsSegment(core_lib::Segment);
/// An array of fixed-size elements.
pub struct ShmdsArray(core_lib::RawArray);
/// A bounded multi-producer multi-consumer FIFO queue.
pub struct ShmdsQueue(core_lib::RawQueue);
/// A bounded LIFO stack.
pub struct ShmdsStack(core_lib::RawStack);
/// A fixed-capacity hash map.
pub struct ShmdsMap(core_lib::RawMap);

/// One structure in a segment's table (see `shmds_segment_entries`).
#[repr(C)]
pub struct ShmdsEntryInfo {
    /// The name, NUL-terminated.
    pub name: [c_char; 64],
    /// One of `SHMDS_KIND_*`.
    pub kind: u32,
    /// Size of an element (a map's value) in bytes.
    pub elem_size: u32,
    /// Size of a map's key in bytes (0 for other kinds).
    pub key_size: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Array length, or queue, stack or map capacity.
    pub capacity: u64,
    /// Size of the structure's block in bytes.
    pub bytes: u64,
    /// The element (value) type descriptor, NUL-terminated.
    pub elem_type: [c_char; 128],
    /// The key type descriptor (maps), NUL-terminated.
    pub key_type: [c_char; 64],
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn code_of(e: &core_lib::Error) -> c_int {
    use core_lib::Error as E;
    match e {
        E::InvalidName { .. } | E::InvalidType { .. } | E::InvalidArgument(_) => SHMDS_E_INVALID,
        E::SegmentNotFound { .. } | E::EntryNotFound { .. } => SHMDS_E_NOT_FOUND,
        E::SegmentExists { .. } | E::EntryExists { .. } => SHMDS_E_EXISTS,
        E::PermissionDenied { .. } => SHMDS_E_PERMISSION,
        E::KindMismatch { .. } | E::TypeMismatch { .. } => SHMDS_E_TYPE,
        E::NoSpace { .. } | E::OutOfSpace { .. } | E::TableFull { .. } => SHMDS_E_NO_SPACE,
        E::Full { .. } => SHMDS_E_FULL,
        E::Empty { .. } => SHMDS_E_EMPTY,
        E::Timeout { .. } | E::Interrupted { .. } => SHMDS_E_TIMEOUT,
        E::Corrupt { .. } => SHMDS_E_CORRUPT,
        E::Incompatible { .. } => SHMDS_E_INCOMPATIBLE,
        E::Stale { .. } => SHMDS_E_STALE,
        E::LockBusy { .. } | E::Busy { .. } => SHMDS_E_BUSY,
        E::NotReady { .. } => SHMDS_E_NOT_READY,
        E::IndexOutOfBounds { .. } => SHMDS_E_INDEX,
        _ => SHMDS_E_IO,
    }
}

fn remember(msg: String) {
    let msg = CString::new(msg.replace('\0', "?")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; drop the message.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = msg);
}

/// A failure: its code and message.
struct Fail(c_int, String);

impl From<core_lib::Error> for Fail {
    fn from(e: core_lib::Error) -> Fail {
        Fail(code_of(&e), e.to_string())
    }
}

fn invalid(msg: &str) -> Fail {
    Fail(SHMDS_E_INVALID, msg.to_owned())
}

/// Run `body`, turning errors and panics into a code (and the thread's
/// last error message).
fn call(body: impl FnOnce() -> Result<c_int, Fail>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(Fail(code, msg))) => {
            remember(msg);
            code
        }
        Err(_) => {
            remember("internal error: a Rust panic was caught at the C boundary".into());
            SHMDS_E_PANIC
        }
    }
}

/// A C string argument as UTF-8.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string (header contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// A handle argument.
unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, Fail> {
    // SAFETY: a non-NULL handle was returned by this library and not yet
    // closed (header contract).
    unsafe { p.as_ref() }.ok_or_else(|| invalid("handle is NULL"))
}

/// `len` bytes at `p` (an element, key or value).
unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Result<&'a [u8], Fail> {
    if p.is_null() {
        return Err(invalid("data pointer is NULL"));
    }
    // SAFETY: the caller passes `len` readable bytes (header contract).
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// `len` writable bytes at `p`.
unsafe fn bytes_mut<'a>(p: *mut c_void, len: usize) -> Result<&'a mut [u8], Fail> {
    if p.is_null() {
        return Err(invalid("output pointer is NULL"));
    }
    // SAFETY: the caller passes `len` writable bytes (header contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) })
}

/// `Err` for a NULL output handle pointer: checked before anything is
/// created, so that a failed call leaves nothing behind.
fn need_out<T>(out: *mut *mut T) -> Result<(), Fail> {
    if out.is_null() {
        return Err(invalid("output handle pointer is NULL"));
    }
    Ok(())
}

/// Store a new handle in `*out`.
unsafe fn give<T>(out: *mut *mut T, value: T) -> Result<c_int, Fail> {
    need_out(out)?;
    // SAFETY: `out` is non-NULL and points to writable storage for a pointer.
    unsafe { *out = Box::into_raw(Box::new(value)) };
    Ok(SHMDS_OK)
}

/// Store `value` in `*out` if `out` is not NULL.
unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL, and the caller passes writable storage.
        unsafe { *out = value };
    }
}

/// Open a structure by name with `open` and hand out its handle.
unsafe fn open_with<T>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut T,
    open: impl FnOnce(&core_lib::Segment, &str) -> core_lib::Result<T>,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let seg = &handle(seg)?.0;
        give(out, open(seg, text(name, "name")?)?)
    })
}

/// Create (or with `open_existing`, open or create) a structure of type
/// `descriptor` with `make(segment, name, descriptor, open_existing)`.
unsafe fn create_with<T>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    descriptor: *const c_char,
    open_existing: bool,
    out: *mut *mut T,
    make: impl FnOnce(&core_lib::Segment, &str, &str, bool) -> core_lib::Result<T>,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        let seg = &handle(seg)?.0;
        let (name, desc) = (text(name, "name")?, text(descriptor, "descriptor")?);
        give(out, make(seg, name, desc, open_existing)?)
    })
}

fn timeout(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

/// Release a handle made by `give`.
unsafe fn release<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: p came from Box::into_raw in `give` and is closed once.
        drop(unsafe { Box::from_raw(p) });
    }
}

// ------------------------------------------------------------- errors

/// A static description of an error code.
#[no_mangle]
pub extern "C" fn shmds_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        SHMDS_OK => c"success",
        SHMDS_E_INVALID => c"invalid argument",
        SHMDS_E_NOT_FOUND => c"not found",
        SHMDS_E_EXISTS => c"already exists",
        SHMDS_E_PERMISSION => c"permission denied",
        SHMDS_E_TYPE => c"wrong kind or element type",
        SHMDS_E_NO_SPACE => c"no space",
        SHMDS_E_FULL => c"full",
        SHMDS_E_EMPTY => c"empty",
        SHMDS_E_TIMEOUT => c"timed out",
        SHMDS_E_CORRUPT => c"corrupt segment",
        SHMDS_E_INCOMPATIBLE => c"incompatible segment",
        SHMDS_E_STALE => c"structure was erased",
        SHMDS_E_BUSY => c"lock held too long by a live process",
        SHMDS_E_NOT_READY => c"segment not ready",
        SHMDS_E_IO => c"system call failed",
        SHMDS_E_INDEX => c"index out of bounds",
        SHMDS_E_PANIC => c"internal error",
        _ => c"unknown error code",
    };
    s.as_ptr()
}

/// The message of the calling thread's last failed call (empty if none);
/// valid until the thread's next failing call.
#[no_mangle]
pub extern "C" fn shmds_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

// ------------------------------------------------------------- segments

/// Create the segment `name` with `size` bytes (`SHMDS_E_EXISTS` if it exists).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_create(
    name: *const c_char,
    size: u64,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        give(
            out,
            ShmdsSegment(core_lib::Segment::create(text(name, "name")?, size)?),
        )
    })
}

/// Open the existing segment `name`.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open(
    name: *const c_char,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        give(
            out,
            ShmdsSegment(core_lib::Segment::open(text(name, "name")?)?),
        )
    })
}

/// Open the segment `name`, creating it with `size` bytes if it does not exist.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open_or_create(
    name: *const c_char,
    size: u64,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        give(
            out,
            ShmdsSegment(core_lib::Segment::open_or_create(
                text(name, "name")?,
                size,
            )?),
        )
    })
}

/// Release a segment handle (the segment stays; see `shmds_segment_remove`).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_close(seg: *mut ShmdsSegment) {
    // SAFETY: a handle from this library, closed once (header contract).
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(seg) }));
}

/// Remove the segment `name` from /dev/shm (attached processes keep their mapping).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_remove(name: *const c_char) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let name = unsafe { text(name, "name")? };
        core_lib::Segment::remove(name)?;
        Ok(SHMDS_OK)
    })
}

/// The first byte of the mapping (a `shmds_segment_header`, see the layout
/// section); `size` bytes long, valid while the handle is open.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_base(seg: *const ShmdsSegment) -> *const c_void {
    // SAFETY: pointer rules of the header.
    match unsafe { seg.as_ref() } {
        Some(s) => s.0.as_ptr().cast(),
        None => std::ptr::null(),
    }
}

/// The segment size in bytes (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_size(seg: *const ShmdsSegment) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { seg.as_ref() }.map_or(0, |s| s.0.size())
}

/// Copy up to `cap` table entries into `out` and the number of entries into
/// `*count` (which may exceed `cap`: call again with more room).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_entries(
    seg: *const ShmdsSegment,
    out: *mut ShmdsEntryInfo,
    cap: usize,
    count: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let seg = unsafe { handle(seg)? };
        let entries = seg.0.entries()?;
        if cap > 0 && out.is_null() {
            return Err(invalid("entries output is NULL"));
        }
        for (i, e) in entries.iter().take(cap).enumerate() {
            let mut info = ShmdsEntryInfo {
                name: [0; 64],
                kind: e.kind,
                elem_size: e.elem_size,
                key_size: e.key_size,
                reserved: 0,
                capacity: e.capacity,
                bytes: e.size,
                elem_type: [0; 128],
                key_type: [0; 64],
            };
            copy_text(&mut info.name, &e.name);
            copy_text(&mut info.elem_type, &e.elem_type);
            copy_text(&mut info.key_type, &e.key_type);
            // SAFETY: out has room for cap entries (header contract), i < cap.
            unsafe { out.add(i).write(info) };
        }
        // SAFETY: pointer rules of the header.
        unsafe { put(count, entries.len()) };
        Ok(SHMDS_OK)
    })
}

fn copy_text(dst: &mut [c_char], src: &str) {
    let room = dst.len() - 1;
    for (d, s) in dst.iter_mut().zip(src.bytes().take(room)) {
        *d = s as c_char;
    }
}

// ------------------------------------------------------------- arrays

/// Open the array `name` whatever its element type.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut ShmdsArray,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        open_with(seg, name, out, |seg, name| {
            Ok(ShmdsArray(seg.open_array_raw(name)?))
        })
    }
}

/// Create the array `name` of `len` elements of type `descriptor`; with
/// `open_existing`, open it instead if it exists (it must hold that type).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    descriptor: *const c_char,
    len: u64,
    open_existing: bool,
    out: *mut *mut ShmdsArray,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        create_with(
            seg,
            name,
            descriptor,
            open_existing,
            out,
            |seg, name, desc, existing| {
                Ok(ShmdsArray(if existing {
                    seg.open_or_create_array_raw(name, desc, len)?
                } else {
                    seg.create_array_raw(name, desc, len)?
                }))
            },
        )
    }
}

/// Release an array handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_close(array: *mut ShmdsArray) {
    // SAFETY: a handle from this library, closed once (header contract).
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(array) }));
}

/// Number of elements (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_len(array: *const ShmdsArray) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { array.as_ref() }.map_or(0, |a| a.0.len())
}

/// Size of one element in bytes (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_elem_size(array: *const ShmdsArray) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { array.as_ref() }.map_or(0, |a| a.0.elem_size())
}

/// The first element: `len * elem_size` bytes of shared memory, valid while
/// the handle is open. Other processes may write them at any time.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_data(array: *const ShmdsArray) -> *mut c_void {
    // SAFETY: pointer rules of the header.
    unsafe { array.as_ref() }.map_or(std::ptr::null_mut(), |a| a.0.as_ptr().cast())
}

/// Copy element `index` into `out` (`elem_size` bytes).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_get(
    array: *const ShmdsArray,
    index: u64,
    out: *mut c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let a = &handle(array)?.0;
        a.read_bytes(index, bytes_mut(out, a.elem_size())?)?;
        Ok(SHMDS_OK)
    })
}

/// Copy `value` (`elem_size` bytes) into element `index`.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_set(
    array: *const ShmdsArray,
    index: u64,
    value: *const c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let a = &handle(array)?.0;
        a.write_bytes(index, bytes(value, a.elem_size())?)?;
        Ok(SHMDS_OK)
    })
}

/// Integer arrays: add `delta` (wrapping at the element's width; a negative
/// delta as its two's complement) to element `index` atomically; the
/// previous value (zero-extended) goes to `*old` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_fetch_add(
    array: *const ShmdsArray,
    index: u64,
    delta: u64,
    old: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let prev = handle(array)?.0.fetch_add(index, delta)?;
        put(old, prev);
        Ok(SHMDS_OK)
    })
}

// ------------------------------------------------------------- queues and stacks

/// What queues and stacks share, for the functions below.
trait Ring {
    fn elem_size(&self) -> usize;
    fn name(&self) -> &str;
    fn try_push(&self, elem: &[u8]) -> core_lib::Result<()>;
    fn try_pop(&self, out: &mut [u8]) -> core_lib::Result<()>;
    fn push_slice(&self, elems: &[u8], t: Option<Duration>) -> core_lib::Result<usize>;
    fn pop_into(&self, out: &mut [u8], t: Option<Duration>) -> core_lib::Result<usize>;
}

macro_rules! impl_ring {
    ($t:ty) => {
        impl Ring for $t {
            fn elem_size(&self) -> usize {
                self.elem_size()
            }
            fn name(&self) -> &str {
                self.name()
            }
            fn try_push(&self, elem: &[u8]) -> core_lib::Result<()> {
                self.try_push(elem)
            }
            fn try_pop(&self, out: &mut [u8]) -> core_lib::Result<()> {
                self.try_pop(out)
            }
            fn push_slice(&self, elems: &[u8], t: Option<Duration>) -> core_lib::Result<usize> {
                self.push_slice(elems, t, None)
            }
            fn pop_into(&self, out: &mut [u8], t: Option<Duration>) -> core_lib::Result<usize> {
                self.pop_into(out, t, None)
            }
        }
    };
}

impl_ring!(core_lib::RawQueue);
impl_ring!(core_lib::RawStack);

unsafe fn ring_try_push(r: Option<&dyn Ring>, elem: *const c_void) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let r = r.ok_or_else(|| invalid("handle is NULL"))?;
        r.try_push(bytes(elem, r.elem_size())?)?;
        Ok(SHMDS_OK)
    })
}

unsafe fn ring_push(r: Option<&dyn Ring>, elem: *const c_void, timeout_ns: i64) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let r = r.ok_or_else(|| invalid("handle is NULL"))?;
        match r.push_slice(bytes(elem, r.elem_size())?, timeout(timeout_ns))? {
            1 => Ok(SHMDS_OK),
            _ => Err(Fail(
                SHMDS_E_TIMEOUT,
                format!("timed out waiting for room in {:?}", r.name()),
            )),
        }
    })
}

unsafe fn ring_try_pop(r: Option<&dyn Ring>, out: *mut c_void) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let r = r.ok_or_else(|| invalid("handle is NULL"))?;
        r.try_pop(bytes_mut(out, r.elem_size())?)?;
        Ok(SHMDS_OK)
    })
}

unsafe fn ring_pop(r: Option<&dyn Ring>, out: *mut c_void, timeout_ns: i64) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let r = r.ok_or_else(|| invalid("handle is NULL"))?;
        r.pop_into(bytes_mut(out, r.elem_size())?, timeout(timeout_ns))?;
        Ok(SHMDS_OK)
    })
}

/// Open the queue `name` whatever its element type.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut ShmdsQueue,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        open_with(seg, name, out, |seg, name| {
            Ok(ShmdsQueue(seg.open_queue_raw(name)?))
        })
    }
}

/// Create the queue `name` of `capacity` elements of type `descriptor`;
/// with `open_existing`, open it instead if it exists (same type required).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut ShmdsQueue,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        create_with(
            seg,
            name,
            descriptor,
            open_existing,
            out,
            |seg, name, desc, existing| {
                Ok(ShmdsQueue(if existing {
                    seg.open_or_create_queue_raw(name, desc, capacity)?
                } else {
                    seg.create_queue_raw(name, desc, capacity)?
                }))
            },
        )
    }
}

/// Release a queue handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_close(queue: *mut ShmdsQueue) {
    // SAFETY: a handle from this library, closed once (header contract).
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(queue) }));
}

/// Push one element (`elem_size` bytes) if there is room, else
/// `SHMDS_E_FULL`. Never sleeps.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_try_push(
    queue: *const ShmdsQueue,
    elem: *const c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_try_push(queue.as_ref().map(|q| &q.0 as &dyn Ring), elem) }
}

/// Push one element, waiting for room up to `timeout_ns` (negative:
/// forever); `SHMDS_E_TIMEOUT` when it passes.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_push(
    queue: *const ShmdsQueue,
    elem: *const c_void,
    timeout_ns: i64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_push(queue.as_ref().map(|q| &q.0 as &dyn Ring), elem, timeout_ns) }
}

/// Pop the oldest element into `out` (`elem_size` bytes), else
/// `SHMDS_E_EMPTY`. Never sleeps.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_try_pop(queue: *const ShmdsQueue, out: *mut c_void) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_try_pop(queue.as_ref().map(|q| &q.0 as &dyn Ring), out) }
}

/// Pop the oldest element into `out`, waiting up to `timeout_ns`
/// (negative: forever); `SHMDS_E_TIMEOUT` when it passes.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_pop(
    queue: *const ShmdsQueue,
    out: *mut c_void,
    timeout_ns: i64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_pop(queue.as_ref().map(|q| &q.0 as &dyn Ring), out, timeout_ns) }
}

/// Number of elements (approximate under concurrency; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_len(queue: *const ShmdsQueue) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { queue.as_ref() }.map_or(0, |q| q.0.len())
}

/// The capacity (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_capacity(queue: *const ShmdsQueue) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { queue.as_ref() }.map_or(0, |q| q.0.capacity())
}

/// Size of one element in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_elem_size(queue: *const ShmdsQueue) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { queue.as_ref() }.map_or(0, |q| q.0.elem_size())
}

/// Open the stack `name` whatever its element type.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut ShmdsStack,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        open_with(seg, name, out, |seg, name| {
            Ok(ShmdsStack(seg.open_stack_raw(name)?))
        })
    }
}

/// Create the stack `name` of `capacity` elements of type `descriptor`;
/// with `open_existing`, open it instead if it exists (same type required).
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut ShmdsStack,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        create_with(
            seg,
            name,
            descriptor,
            open_existing,
            out,
            |seg, name, desc, existing| {
                Ok(ShmdsStack(if existing {
                    seg.open_or_create_stack_raw(name, desc, capacity)?
                } else {
                    seg.create_stack_raw(name, desc, capacity)?
                }))
            },
        )
    }
}

/// Release a stack handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_close(stack: *mut ShmdsStack) {
    // SAFETY: a handle from this library, closed once (header contract).
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(stack) }));
}

/// Push one element (`elem_size` bytes) if there is room, else
/// `SHMDS_E_FULL`. Never sleeps.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_try_push(
    stack: *const ShmdsStack,
    elem: *const c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_try_push(stack.as_ref().map(|s| &s.0 as &dyn Ring), elem) }
}

/// Push one element, waiting for room up to `timeout_ns` (negative:
/// forever); `SHMDS_E_TIMEOUT` when it passes.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_push(
    stack: *const ShmdsStack,
    elem: *const c_void,
    timeout_ns: i64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_push(stack.as_ref().map(|s| &s.0 as &dyn Ring), elem, timeout_ns) }
}

/// Pop the top element into `out` (`elem_size` bytes), else
/// `SHMDS_E_EMPTY`. Never sleeps.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_try_pop(stack: *const ShmdsStack, out: *mut c_void) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_try_pop(stack.as_ref().map(|s| &s.0 as &dyn Ring), out) }
}

/// Pop the top element into `out`, waiting up to `timeout_ns` (negative:
/// forever); `SHMDS_E_TIMEOUT` when it passes.
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_pop(
    stack: *const ShmdsStack,
    out: *mut c_void,
    timeout_ns: i64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { ring_pop(stack.as_ref().map(|s| &s.0 as &dyn Ring), out, timeout_ns) }
}

/// Number of elements (approximate under concurrency; 0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_len(stack: *const ShmdsStack) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { stack.as_ref() }.map_or(0, |s| s.0.len())
}

/// The capacity (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_capacity(stack: *const ShmdsStack) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { stack.as_ref() }.map_or(0, |s| s.0.capacity())
}

/// Size of one element in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_stack_elem_size(stack: *const ShmdsStack) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { stack.as_ref() }.map_or(0, |s| s.0.elem_size())
}

// ------------------------------------------------------------- maps

/// A full map is "no space" (`SHMDS_E_FULL` is for queues and stacks).
fn map_full(e: core_lib::Error) -> Fail {
    match e {
        core_lib::Error::Full { name } => Fail(
            SHMDS_E_NO_SPACE,
            format!("map {name:?} is full (create it with a larger capacity)"),
        ),
        e => e.into(),
    }
}

/// Open the map `name` whatever its key and value types.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut ShmdsMap,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        open_with(seg, name, out, |seg, name| {
            Ok(ShmdsMap(seg.open_map_raw(name)?))
        })
    }
}

/// Create the map `name` from `key_descriptor` to `value_descriptor` keys
/// holding at most `capacity` keys; with `open_existing`, open it instead
/// if it exists (it must have those types).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    key_descriptor: *const c_char,
    value_descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut ShmdsMap,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        let seg = &handle(seg)?.0;
        let name = text(name, "name")?;
        let (k, v) = (
            text(key_descriptor, "key descriptor")?,
            text(value_descriptor, "value descriptor")?,
        );
        let raw = if open_existing {
            seg.open_or_create_map_raw(name, k, v, capacity)?
        } else {
            seg.create_map_raw(name, k, v, capacity)?
        };
        give(out, ShmdsMap(raw))
    })
}

/// Release a map handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_close(map: *mut ShmdsMap) {
    // SAFETY: a handle from this library, closed once (header contract).
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { release(map) }));
}

/// Copy the value of `key` into `value_out`: 1 if found, 0 if absent.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_get(
    map: *const ShmdsMap,
    key: *const c_void,
    value_out: *mut c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let m = &handle(map)?.0;
        // Copy the key first: the caller may pass overlapping key and
        // output buffers.
        let mut k = [0u8; core_lib::MAX_KEY_SIZE];
        let k = &mut k[..m.key_size()];
        k.copy_from_slice(bytes(key, m.key_size())?);
        let found = m.get(k, bytes_mut(value_out, m.value_size())?)?;
        Ok(found as c_int)
    })
}

/// Set `key` to `value`: 1 if the key was present (replaced), 0 if new;
/// `SHMDS_E_NO_SPACE` when the key is new and the map is full.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_insert(
    map: *const ShmdsMap,
    key: *const c_void,
    value: *const c_void,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let m = &handle(map)?.0;
        match m.insert(
            bytes(key, m.key_size())?,
            bytes(value, m.value_size())?,
            None,
        ) {
            Ok(replaced) => Ok(replaced as c_int),
            Err(core_lib::Error::Full { name }) => {
                Err(Fail(SHMDS_E_NO_SPACE, format!("map {name:?} is full")))
            }
            Err(e) => Err(e.into()),
        }
    })
}

/// Remove `key`: 1 if it was present, 0 if not.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_remove(map: *const ShmdsMap, key: *const c_void) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let m = &handle(map)?.0;
        Ok(m.remove(bytes(key, m.key_size())?, None)? as c_int)
    })
}

/// Integer values: add `delta` (wrapping at the value's width) to the value
/// of `key` atomically (an absent key counts as 0); the previous value
/// (zero-extended) goes to `*old` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_fetch_add(
    map: *const ShmdsMap,
    key: *const c_void,
    delta: u64,
    old: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let m = &handle(map)?.0;
        let prev = m
            .fetch_add(bytes(key, m.key_size())?, delta)
            .map_err(map_full)?;
        put(old, prev);
        Ok(SHMDS_OK)
    })
}

/// Number of keys (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_len(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { map.as_ref() }.map_or(0, |m| m.0.len())
}

/// The most keys the map holds (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_capacity(map: *const ShmdsMap) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { map.as_ref() }.map_or(0, |m| m.0.capacity())
}

/// Size of a key in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_key_size(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { map.as_ref() }.map_or(0, |m| m.0.key_size())
}

/// Size of a value in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_value_size(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { map.as_ref() }.map_or(0, |m| m.0.value_size())
}

#[cfg(test)]
mod header;
