//! Sets of keys (`ShmdsSet`): the map functions' conventions, with keys
//! only. Like `shmds_map_get/insert/remove`, `shmds_set_contains`,
//! `shmds_set_insert` and `shmds_set_remove` return 1 or 0 on success: 1 if
//! the key was in the set (found), 0 if not.

use super::*;
use crate::map::full_is_no_space;

/// A fixed-capacity set of keys (a map without values).
pub struct ShmdsSet(core_lib::RawSet);

/// `Err` unless `set` has the keys the caller stated.
fn check_set(set: &core_lib::RawSet, keys: &Stated<'_>) -> Result<(), Fail> {
    keys.matches(&Named("set", set.name()), set.key_size(), set.key_type())
}

/// Run `op` on the set behind `set` with the caller's key, `key_size`
/// bytes at `key` (exactly the set's key size); its answer as 1 or 0.
unsafe fn with_key(
    set: *const ShmdsSet,
    key: *const c_void,
    key_size: usize,
    op: impl FnOnce(&core_lib::RawSet, &[u8]) -> core_lib::Result<bool>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let s = unsafe { &handle(set)?.0 };
        let owner = Named("set", s.name());
        let keys = Need {
            unit: "keys",
            owner: &owner,
            want: s.key_size(),
        };
        // SAFETY: the caller passes `key_size` readable bytes at `key`.
        let k = unsafe { keys.input(key, key_size)? };
        Ok(op(s, k).map_err(|e| full_is_no_space("set", e))? as c_int)
    })
}

/// Open the existing set `name`, which must have keys of `key_size` bytes
/// and, unless `key_descriptor` is NULL, of that type (else
/// `SHMDS_E_TYPE`; a map or any other kind of that name too).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    key_size: usize,
    key_descriptor: *const c_char,
    out: *mut *mut ShmdsSet,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let keys = Stated::new("keys", key_size, key_descriptor)?;
            let set = seg.open_set_raw(name)?;
            check_set(&set, &keys)?;
            Ok(ShmdsSet(set))
        })
    }
}

/// Create the set `name` of keys of type `key_descriptor` (`key_size`
/// bytes), holding at most `capacity` keys; with `open_existing`, open it
/// instead if it exists (same key type required, `SHMDS_E_SHAPE` for
/// another capacity).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    key_size: usize,
    key_descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut ShmdsSet,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let keys = Stated::new("keys", key_size, key_descriptor)?;
            let k = keys.required()?;
            let set = if open_existing {
                seg.open_or_create_set_raw(name, k, crate::count(capacity))?
            } else {
                seg.create_set_raw(name, k, crate::count(capacity))?
            };
            check_set(&set, &keys)?;
            Ok(ShmdsSet(set))
        })
    }
}

/// Release a set handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_close(set: *mut ShmdsSet) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(set) }
}

/// Add `key` (a buffer of `key_size` bytes, exactly the set's key size): 1
/// if it was already in the set (nothing changes), 0 if it was added;
/// `SHMDS_E_NO_SPACE` when it is new and the set is full.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_insert(
    set: *const ShmdsSet,
    key: *const c_void,
    key_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_key(set, key, key_size, |s, k| s.insert(k).map(|new| !new)) }
}

/// Whether `key` (a buffer of `key_size` bytes) is in the set: 1 or 0.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_contains(
    set: *const ShmdsSet,
    key: *const c_void,
    key_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_key(set, key, key_size, |s, k| s.contains(k)) }
}

/// Remove `key` (a buffer of `key_size` bytes): 1 if it was in the set, 0
/// if not.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_remove(
    set: *const ShmdsSet,
    key: *const c_void,
    key_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_key(set, key, key_size, |s, k| s.remove(k)) }
}

/// Remove every key (each removal is atomic; keys inserted meanwhile by
/// other processes may stay).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_clear(set: *const ShmdsSet) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { liveness(set, |s| s.0.clear()) }
}

/// Number of keys (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_len(set: *const ShmdsSet) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(set, |s| s.0.len()) }
}

/// SHMDS_OK while the set exists; SHMDS_E_STALE once it was erased.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_check(set: *const ShmdsSet) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { liveness(set, |s| s.0.check()) }
}

/// The most keys the set holds (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_capacity(set: *const ShmdsSet) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(set, |s| s.0.capacity() as u64) }
}

/// Size of a key in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_set_key_size(set: *const ShmdsSet) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(set, |s| s.0.key_size()) }
}

/// Iterate: the next key from slot `*cursor` on, into `key_out` (a buffer
/// of exactly the key size): 1 and `*cursor` moved past it, or 0 at the
/// end. Start with `*cursor = 0`; weakly consistent as `shmds_map_next`.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_next(
    set: *const ShmdsSet,
    cursor: *mut u64,
    key_out: *mut c_void,
    key_size: usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let s = unsafe { &handle(set)?.0 };
        if cursor.is_null() {
            return Err(invalid("cursor is NULL"));
        }
        let owner = Named("set", s.name());
        let keys = Need {
            unit: "keys",
            owner: &owner,
            want: s.key_size(),
        };
        // SAFETY: the caller passes `key_size` writable bytes at `key_out`.
        let key = unsafe { keys.output(key_out, key_size)? };
        // SAFETY: a non-NULL cursor points to a readable, writable u64.
        let mut slot = unsafe { cursor.read() };
        let end = s.capacity() as u64;
        while slot < end {
            slot += 1;
            if s.read_slot(crate::count(slot - 1), key)? {
                // SAFETY: as above.
                unsafe { cursor.write(slot) };
                return Ok(1);
            }
        }
        // SAFETY: as above.
        unsafe { cursor.write(slot.max(end)) };
        Ok(0)
    })
}

/// Copy the key type descriptor, NUL-terminated, into `buf` (`buf_size`
/// bytes); its length goes to `*len` if not NULL.
/// `SHMDS_E_BUFFER_TOO_SMALL` if it does not fit.
#[no_mangle]
pub unsafe extern "C" fn shmds_set_key_descriptor(
    set: *const ShmdsSet,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let s = unsafe { &handle(set)?.0 };
        // SAFETY: the caller passes `buf_size` writable bytes at `buf`.
        unsafe { give_text(s.key_type(), buf, buf_size, len) }
    })
}
