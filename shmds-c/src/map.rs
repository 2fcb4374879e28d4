//! Maps (`ShmdsMap`): fixed-capacity hash maps from keys to values;
//! `shmds_map_get/insert/remove` return 1 or 0 on success.

use super::*;

/// A full map is "no space" (`SHMDS_E_FULL` is for queues and stacks).
fn map_full(e: core_lib::Error) -> Fail {
    full_is_no_space("map", e)
}

/// `e`, with a full map or set (`what`) as "no space".
pub(crate) fn full_is_no_space(what: &str, e: core_lib::Error) -> Fail {
    match e {
        core_lib::Error::Full { name } => Fail(
            SHMDS_E_NO_SPACE,
            format!("{what} {name:?} is full (create it with a larger capacity)"),
        ),
        e => e.into(),
    }
}

/// `Err` unless `map` has the keys and values the caller stated.
fn check_map(map: &core_lib::RawMap, keys: &Stated<'_>, values: &Stated<'_>) -> Result<(), Fail> {
    let owner = Named("map", map.name());
    keys.matches(&owner, map.key_size(), map.key_type())?;
    values.matches(&owner, map.value_size(), map.value_type())
}

/// Run `body` on the map behind `map` and the size checks of its keys and
/// values.
unsafe fn with_map(
    map: *const ShmdsMap,
    body: impl FnOnce(&core_lib::RawMap, &Need<'_>, &Need<'_>) -> Result<c_int, Fail>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let m = unsafe { &handle(map)?.0 };
        let owner = Named("map", m.name());
        let need = |unit, want| Need {
            unit,
            owner: &owner,
            want,
        };
        body(
            m,
            &need("keys", m.key_size()),
            &need("values", m.value_size()),
        )
    })
}

/// Open the existing map `name`, which must have keys of `key_size` bytes
/// and values of `value_size` bytes and, unless the descriptor is NULL, of
/// those types (else `SHMDS_E_TYPE`).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_open(
    seg: *const ShmdsSegment,
    name: *const c_char,
    key_size: usize,
    key_descriptor: *const c_char,
    value_size: usize,
    value_descriptor: *const c_char,
    out: *mut *mut ShmdsMap,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let keys = Stated::new("keys", key_size, key_descriptor)?;
            let values = Stated::new("values", value_size, value_descriptor)?;
            let map = seg.open_map_raw(name)?;
            check_map(&map, &keys, &values)?;
            Ok(ShmdsMap(map))
        })
    }
}

/// Create the map `name` from keys of type `key_descriptor` (`key_size`
/// bytes) to values of type `value_descriptor` (`value_size` bytes),
/// holding at most `capacity` keys; with `open_existing`, open it instead
/// if it exists (same types required, `SHMDS_E_SHAPE` for another capacity).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_create(
    seg: *const ShmdsSegment,
    name: *const c_char,
    key_size: usize,
    key_descriptor: *const c_char,
    value_size: usize,
    value_descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut ShmdsMap,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let keys = Stated::new("keys", key_size, key_descriptor)?;
            let values = Stated::new("values", value_size, value_descriptor)?;
            let (k, v) = (keys.required()?, values.required()?);
            let map = if open_existing {
                seg.open_or_create_map_raw(name, k, v, crate::count(capacity))?
            } else {
                seg.create_map_raw(name, k, v, crate::count(capacity))?
            };
            check_map(&map, &keys, &values)?;
            Ok(ShmdsMap(map))
        })
    }
}

/// Release a map handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_close(map: *mut ShmdsMap) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(map) }
}

/// Copy the value of `key` into `value_out`: 1 if found, 0 if absent.
/// `key_size` and `value_size` are the buffers' sizes (exactly the map's
/// key and value sizes); the buffers may overlap.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_get(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
    value_out: *mut c_void,
    value_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, values| {
            // Copy the key first: the caller may pass overlapping key and
            // output buffers.
            let mut k = [0u8; core_lib::MAX_KEY_SIZE];
            let k = &mut k[..m.key_size()];
            k.copy_from_slice(keys.input(key, key_size)?);
            Ok(m.get(k, values.output(value_out, value_size)?)? as c_int)
        })
    }
}

/// Set `key` to `value` (buffers of `key_size` and `value_size` bytes,
/// exactly the map's sizes): 1 if the key was present (replaced), 0 if
/// new; `SHMDS_E_NO_SPACE` when the key is new and the map is full.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_insert(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
    value: *const c_void,
    value_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, values| {
            let (k, v) = (keys.input(key, key_size)?, values.input(value, value_size)?);
            Ok(m.insert(k, v, None).map_err(map_full)? as c_int)
        })
    }
}

/// Remove `key` (a buffer of `key_size` bytes, exactly the map's key
/// size): 1 if it was present, 0 if not.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_remove(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, _| {
            Ok(m.remove(keys.input(key, key_size)?, None)? as c_int)
        })
    }
}

/// Whether `key` (a buffer of `key_size` bytes, exactly the key size) is in
/// the map: 1 or 0.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_contains(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, _| {
            Ok(m.contains_key(keys.input(key, key_size)?)? as c_int)
        })
    }
}

/// Remove every key (each removal is atomic; keys inserted meanwhile by
/// other processes may stay).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_clear(map: *const ShmdsMap) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { liveness(map, |m| m.0.clear()) }
}

/// Integer values: add `delta` (wrapping at the value's width) to the value
/// of `key` (a buffer of `key_size` bytes) atomically; an absent key counts
/// as 0. The previous value (zero-extended to 64 bits, whatever the value's
/// width) goes to `*old` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_fetch_add(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
    delta: u64,
    old: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, _| {
            let prev = m.fetch_add(keys.input(key, key_size)?, delta);
            put(old, prev.map_err(map_full)?);
            Ok(SHMDS_OK)
        })
    }
}

/// Number of keys (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_len(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(map, |m| m.0.len()) }
}

/// SHMDS_OK while the map exists; SHMDS_E_STALE once it was erased (its
/// length then describes the old block).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_check(map: *const ShmdsMap) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { liveness(map, |m| m.0.check()) }
}

/// The most keys the map holds (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_capacity(map: *const ShmdsMap) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(map, |m| m.0.capacity() as u64) }
}

/// Size of a key in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_key_size(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(map, |m| m.0.key_size()) }
}

/// Size of a value in bytes (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_map_value_size(map: *const ShmdsMap) -> usize {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(map, |m| m.0.value_size()) }
}

/// Integer values: if the value of `key` (a buffer of `key_size` bytes) is
/// `current` (truncated to the value's width), set it to `new`,
/// atomically: 1 if it was swapped, 0 if the value differs (nothing
/// changes), `SHMDS_E_NOT_FOUND` if the key is absent. The value found
/// (zero-extended to 64 bits) goes to `*previous` if not NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_compare_exchange(
    map: *const ShmdsMap,
    key: *const c_void,
    key_size: usize,
    current: u64,
    new: u64,
    previous: *mut u64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, _| {
            match m.compare_exchange(keys.input(key, key_size)?, current, new)? {
                Ok(old) => {
                    put(previous, old);
                    Ok(1)
                }
                Err(Some(actual)) => {
                    put(previous, actual);
                    Ok(0)
                }
                Err(None) => Ok(miss(SHMDS_E_NOT_FOUND, c"the key is absent")),
            }
        })
    }
}

/// Iterate: the next key and value from slot `*cursor` on, into `key_out`
/// and `value_out` (buffers of exactly the map's key and value sizes that
/// do not overlap): 1 and `*cursor` moved past it, or 0 at the end. Start
/// with `*cursor = 0`. Weakly consistent: every key present from start
/// to end is visited exactly once; one inserted or removed meanwhile may
/// or may not be.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_next(
    map: *const ShmdsMap,
    cursor: *mut u64,
    key_out: *mut c_void,
    key_size: usize,
    value_out: *mut c_void,
    value_size: usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_map(map, |m, keys, values| {
            if cursor.is_null() {
                return Err(invalid("cursor is NULL"));
            }
            let (k0, v0) = (key_out as usize, value_out as usize);
            if k0 < v0.wrapping_add(value_size) && v0 < k0.wrapping_add(key_size) {
                return Err(invalid("the key and value buffers overlap"));
            }
            let key = keys.output(key_out, key_size)?;
            let value = values.output(value_out, value_size)?;
            let mut slot = cursor.read();
            let end = m.capacity() as u64;
            while slot < end {
                slot += 1;
                if m.read_slot(crate::count(slot - 1), key, value)? {
                    cursor.write(slot);
                    return Ok(1);
                }
            }
            cursor.write(slot.max(end));
            Ok(0)
        })
    }
}

/// Copy the key type descriptor (e.g. "T{B:len:16s:bytes:}"),
/// NUL-terminated, into `buf` (`buf_size` bytes); its length goes to
/// `*len` if not NULL. `SHMDS_E_BUFFER_TOO_SMALL` if it does not fit.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_key_descriptor(
    map: *const ShmdsMap,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_map(map, |m, _, _| give_text(m.key_type(), buf, buf_size, len)) }
}

/// Copy the value type descriptor (e.g. "<d") as `shmds_map_key_descriptor`.
#[no_mangle]
pub unsafe extern "C" fn shmds_map_value_descriptor(
    map: *const ShmdsMap,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_map(map, |m, _, _| give_text(m.value_type(), buf, buf_size, len)) }
}
