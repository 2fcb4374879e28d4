//! Arrays (`ShmdsArray`): fixed-length element storage with atomic
//! integer operations.

use super::*;

/// `Err` unless `array` holds what the caller stated.
fn check_array(array: &core_lib::RawArray, stated: &Stated<'_>) -> Result<(), Fail> {
    let owner = Named("array", array.name());
    stated.matches(&owner, array.elem_size(), array.type_descriptor())
}

/// Open the existing array `name`, which must hold elements of `elem_size`
/// bytes and, unless `descriptor` is NULL, of that type (else
/// `SHMDS_E_TYPE`).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    elem_size: usize,
    descriptor: *const c_char,
    out: *mut *mut ShmdsArray,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let stated = Stated::new("elements", elem_size, descriptor)?;
            let array = seg.open_array_raw(name)?;
            check_array(&array, &stated)?;
            Ok(ShmdsArray(array))
        })
    }
}

/// Create the array `name` of `len` elements of type `descriptor`, each
/// `elem_size` bytes (the size the descriptor describes); with
/// `open_existing`, open it instead if it exists (same type required,
/// `SHMDS_E_SHAPE` for another length).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    elem_size: usize,
    descriptor: *const c_char,
    len: u64,
    open_existing: bool,
    out: *mut *mut ShmdsArray,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let stated = Stated::new("elements", elem_size, descriptor)?;
            let desc = stated.required()?;
            let array = if open_existing {
                seg.open_or_create_array_raw(name, desc, crate::count(len))?
            } else {
                seg.create_array_raw(name, desc, crate::count(len))?
            };
            check_array(&array, &stated)?;
            Ok(ShmdsArray(array))
        })
    }
}

/// Release an array handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_close(array: *mut ShmdsArray) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(array) }
}

/// Number of elements (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_len(array: *const ShmdsArray) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(array, |a| a.0.len() as u64) }
}

/// SHMDS_OK while the array exists; SHMDS_E_STALE once it was erased (its
/// length and data pointer then describe the old block).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_check(array: *const ShmdsArray) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { liveness(array, |a| a.0.check()) }
}

/// Size of one element in bytes (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_elem_size(array: *const ShmdsArray) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(array, |a| a.0.elem_size()) }
}

/// The first element: `len * elem_size` bytes of shared memory, valid while
/// the handle is open. Other processes may write them at any time.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_data(array: *const ShmdsArray) -> *mut c_void {
    // SAFETY: pointer rules of the header.
    unsafe { array.as_ref() }.map_or(std::ptr::null_mut(), |a| a.0.as_ptr().cast())
}

/// The element size check for array calls, and a refusal of a caller's
/// buffer that overlaps element `index` itself (a copy onto itself).
fn array_need<'a>(
    a: &core_lib::RawArray,
    owner: &'a Named<'a>,
    index: u64,
    buf: *const c_void,
) -> Result<Need<'a>, Fail> {
    let size = a.elem_size();
    if index < a.len() as u64 {
        let elem = (a.as_ptr() as usize).wrapping_add(index as usize * size);
        let (start, end) = (buf as usize, (buf as usize).wrapping_add(size));
        if start < elem.wrapping_add(size) && elem < end {
            return Err(invalid(&format!(
                "the buffer overlaps element {index} of {owner} (copy through another buffer)"
            )));
        }
    }
    Ok(Need {
        unit: "elements",
        owner,
        want: size,
    })
}

/// Run `body` on the array behind `array` and the size check of a buffer
/// `buf` for element `index`.
unsafe fn with_array(
    array: *const ShmdsArray,
    index: u64,
    buf: *const c_void,
    body: impl FnOnce(&core_lib::RawArray, &Need<'_>) -> Result<(), Fail>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let a = unsafe { &handle(array)?.0 };
        let owner = Named("array", a.name());
        body(a, &array_need(a, &owner, index, buf)?)?;
        Ok(SHMDS_OK)
    })
}

/// Copy element `index` into `out`, a buffer of `out_size` bytes (exactly
/// the element size).
#[no_mangle]
pub unsafe extern "C" fn shmds_array_get(
    array: *const ShmdsArray,
    index: u64,
    out: *mut c_void,
    out_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_array(array, index, out, |a, need| {
            Ok(a.read_bytes(crate::count(index), need.output(out, out_size)?)?)
        })
    }
}

/// Copy `value`, a buffer of `value_size` bytes (exactly the element size),
/// into element `index`.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_set(
    array: *const ShmdsArray,
    index: u64,
    value: *const c_void,
    value_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_array(array, index, value, |a, need| {
            Ok(a.write_bytes(crate::count(index), need.input(value, value_size)?)?)
        })
    }
}

/// Integer arrays: add `delta` (wrapping at the element's width; a negative
/// delta as its two's complement) to element `index` atomically; the
/// previous value (zero-extended to 64 bits, whatever the element's width)
/// goes to `*old` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_fetch_add(
    array: *const ShmdsArray,
    index: u64,
    delta: u64,
    old: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        let prev = handle(array)?.0.fetch_add(crate::count(index), delta)?;
        put(old, prev);
        Ok(SHMDS_OK)
    })
}

/// Integer arrays: if element `index` is `current` (truncated to the
/// element's width), set it to `new`, atomically: 1 if it was swapped, 0
/// if not (nothing changes). The value found (zero-extended to 64 bits)
/// goes to `*previous` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_compare_exchange(
    array: *const ShmdsArray,
    index: u64,
    current: u64,
    new: u64,
    previous: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        match handle(array)?
            .0
            .compare_exchange(crate::count(index), current, new)?
        {
            Ok(old) => {
                put(previous, old);
                Ok(1)
            }
            Err(actual) => {
                put(previous, actual);
                Ok(0)
            }
        }
    })
}

/// Copy the element type descriptor (e.g. "<f"), NUL-terminated, into
/// `buf` (`buf_size` bytes); its length goes to `*len` if not NULL.
/// `SHMDS_E_BUFFER_TOO_SMALL` if it does not fit.
#[no_mangle]
pub unsafe extern "C" fn shmds_array_descriptor(
    array: *const ShmdsArray,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe { give_text(handle(array)?.0.type_descriptor(), buf, buf_size, len) })
}
