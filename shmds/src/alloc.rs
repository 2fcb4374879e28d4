//! The bump allocator: hands out cache-line-aligned blocks of the heap.
//!
//! One atomic word, `SegmentHeader::bump`, is the offset of the next free
//! byte. Allocation is a compare-and-swap that moves it forward, so two
//! allocations never overlap, even without the registration lock (which every
//! caller in this crate holds anyway). Blocks are never returned: the space of
//! an erased entry stays unused (FORMAT.md, "Allocation").

use crate::error::{Error, Result};
use crate::layout::CACHE_LINE;
use crate::sync::{AtomicU64, Ordering};

/// Round `n` up to a multiple of [`CACHE_LINE`]; `None` on overflow.
pub(crate) fn align_up(n: u64) -> Option<u64> {
    n.checked_add(CACHE_LINE - 1).map(|v| v & !(CACHE_LINE - 1))
}

/// Allocate `size` bytes (rounded up to a cache line) from the heap
/// `[heap.0, heap.1)` by moving the segment's `bump` pointer. Returns the
/// offset of the block from the start of the segment.
///
/// The heap bounds are the opener's validated copies (never re-read from the
/// segment); `bump` is shared and untrusted, so it is checked against them at
/// every step.
pub(crate) fn allocate(
    bump: &AtomicU64,
    heap: (u64, u64),
    segment: &str,
    size: u64,
) -> Result<u64> {
    let (heap_offset, total) = heap;
    let requested = align_up(size.max(1)).ok_or(Error::OutOfSpace {
        requested: size,
        available: 0,
    })?;
    let mut current = bump.load(Ordering::Acquire);
    loop {
        if current < heap_offset || current > total || current % CACHE_LINE != 0 {
            return Err(Error::Corrupt {
                name: segment.to_owned(),
                detail: format!("allocation pointer {current} is outside the heap"),
            });
        }
        let available = total - current;
        if requested > available {
            return Err(Error::OutOfSpace {
                requested,
                available,
            });
        }
        match bump.compare_exchange_weak(
            current,
            current + requested,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Ok(current),
            Err(seen) => current = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(64));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(65), Some(128));
        assert_eq!(align_up(u64::MAX), None);
    }
}
