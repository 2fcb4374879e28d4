//! Moving elements in and out of slot payloads, typed (`T: Element`) or as
//! raw bytes. Queue and stack share these: their algorithms hand each
//! element's payload pointer to a closure made here.

use crate::element::Element;
use crate::error::{Error, Result};

/// The number of `elem_size`-byte elements in `bytes` bytes, or an error
/// naming `name` when `bytes` is not a whole number of them.
pub(crate) fn count(bytes: usize, elem_size: usize, name: &str) -> Result<usize> {
    if elem_size == 0 || bytes % elem_size != 0 {
        return Err(Error::InvalidArgument(format!(
            "{bytes} bytes are not a whole number of {elem_size}-byte elements of {name:?}"
        )));
    }
    Ok(bytes / elem_size)
}

/// Exactly one element of `elem_size` bytes in `bytes`, or an error.
pub(crate) fn one(bytes: usize, elem_size: usize, name: &str) -> Result<()> {
    if bytes != elem_size {
        return Err(Error::InvalidArgument(format!(
            "an element of {name:?} has {elem_size} bytes, not {bytes}"
        )));
    }
    Ok(())
}

/// Writes element `i` of the packed elements in `src` into a payload.
/// `src` must hold at least `(i + 1) * size` bytes for every `i` asked for.
#[inline]
pub(crate) fn copy_in(src: &[u8], size: usize) -> impl FnMut(usize, *mut u8) + '_ {
    move |i, p| {
        let elem = &src[i * size..(i + 1) * size];
        // SAFETY: a payload has room for `size` bytes and is the caller's
        // while its slot is claimed; `elem` has exactly `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(elem.as_ptr(), p, size) }
    }
}

/// Reads a payload into element `i` of the packed elements in `dst`.
#[inline]
pub(crate) fn copy_out(dst: &mut [u8], size: usize) -> impl FnMut(usize, *const u8) + '_ {
    move |i, p| {
        let elem = &mut dst[i * size..(i + 1) * size];
        // SAFETY: a payload holds `size` bytes written by a push; `elem`
        // has exactly `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(p, elem.as_mut_ptr(), size) }
    }
}

/// Writes `values[i]` into a payload of `size_of::<T>()` bytes.
#[inline]
pub(crate) fn write_typed<T: Element>(values: &[T]) -> impl FnMut(usize, *mut u8) + '_ {
    move |i, p| {
        let v = values[i];
        // SAFETY: the payload has size_of::<T>() bytes and is the caller's
        // while its slot is claimed; unaligned because payloads are only
        // 8-aligned.
        unsafe { p.cast::<T>().write_unaligned(v) }
    }
}

/// Reads a payload holding a `T` into `out[i]`.
#[inline]
pub(crate) fn read_typed<T: Element>(out: &mut [T]) -> impl FnMut(usize, *const u8) + '_ {
    move |i, p| {
        // SAFETY: the payload holds size_of::<T>() bytes written by a push,
        // and every bit pattern is a valid T (Element).
        out[i] = unsafe { p.cast::<T>().read_unaligned() }
    }
}

/// An all-zero `T`, a valid placeholder (every bit pattern is a `T`).
#[inline]
pub(crate) fn zeroed<T: Element>() -> T {
    // SAFETY: Element types accept every bit pattern, zero included.
    unsafe { std::mem::zeroed() }
}
