//! The geometry of a message ring (Channel and Topic): cells of
//! [`MESSAGE_CELL`] bytes, positions in the queue's `lap * one_lap + index`
//! encoding, frames of whole cells that never wrap.
//!
//! Every value handled here may come from shared memory, so each helper
//! checks its result against the ring's own copy of its shape and returns
//! `None` for what does not fit; callers report that as corruption.

use crate::layout::{MESSAGE_CELL, PAD_LEN};

/// The fixed shape of a message ring, copied once validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingShape {
    /// Number of cells.
    pub(crate) cells: u64,
    /// log2 of `one_lap`.
    pub(crate) shift: u32,
    /// Largest message in bytes.
    pub(crate) max_message: u64,
    /// Whether messages carry a CRC32C.
    pub(crate) checksum: bool,
}

/// Cells a message of `len` bytes occupies: at least one, so that even an
/// empty message has a frame.
#[inline]
pub(crate) fn cells_for(len: u64) -> u64 {
    len.div_ceil(MESSAGE_CELL).max(1)
}

impl RingShape {
    pub(crate) fn new(cells: u64, max_message: u64, checksum: bool) -> RingShape {
        RingShape {
            cells,
            shift: cells.next_power_of_two().trailing_zeros(),
            max_message,
            checksum,
        }
    }

    /// `(lap, index)` of a position.
    #[inline]
    pub(crate) fn split(&self, pos: u64) -> (u64, u64) {
        (pos >> self.shift, pos & ((1u64 << self.shift) - 1))
    }

    /// The index of `pos` if it lies inside the ring.
    #[inline]
    pub(crate) fn index(&self, pos: u64) -> Option<u64> {
        let (_, idx) = self.split(pos);
        (idx < self.cells).then_some(idx)
    }

    /// The position `run` cells after `pos` (whose index is `idx`); the
    /// caller made sure `idx + run <= cells`. The end of the ring is the
    /// start of the next lap.
    #[inline]
    pub(crate) fn advance(&self, pos: u64, idx: u64, run: u64) -> u64 {
        if idx + run < self.cells {
            pos + run
        } else {
            ((pos >> self.shift).wrapping_add(1)) << self.shift
        }
    }

    /// Cells from position `from` to position `to`, if `from <= to` and the
    /// two are at most one ring apart.
    #[inline]
    pub(crate) fn distance(&self, from: u64, to: u64) -> Option<u64> {
        let (fl, fi) = self.split(from);
        let (tl, ti) = self.split(to);
        if fi >= self.cells || ti >= self.cells {
            return None;
        }
        let laps = tl.checked_sub(fl)?;
        let n = laps
            .checked_mul(self.cells)?
            .checked_add(ti)?
            .checked_sub(fi)?;
        (n <= self.cells).then_some(n)
    }

    /// The cells of the frame at index `idx` whose control record says
    /// `len`: the rest of the ring for a padding frame, else the message's
    /// cells, if they fit before the end of the ring.
    #[inline]
    pub(crate) fn run_of(&self, len: u32, idx: u64) -> Option<u64> {
        let left = self.cells.checked_sub(idx).filter(|&n| n > 0)?;
        if len == PAD_LEN {
            return Some(left);
        }
        let run = cells_for(len as u64);
        (run <= left).then_some(run)
    }

    /// Offset of cell `idx`'s data from the start of the data ring.
    #[inline]
    pub(crate) fn data_offset(idx: u64) -> usize {
        (idx * MESSAGE_CELL) as usize
    }
}

/// Bytes of control records and data for `cells` cells, and the offset of
/// the data from the block start, for a header of `header` bytes.
pub(crate) fn ring_bytes(header: u64, cells: u64) -> Option<(u64, u64)> {
    let records = cells.checked_mul(crate::layout::CHANNEL_CELL_SIZE)?;
    let data_offset = crate::alloc::align_up(header.checked_add(records)?)?;
    let total = data_offset.checked_add(cells.checked_mul(MESSAGE_CELL)?)?;
    Some((data_offset, total))
}

/// The first line of a [`ChannelHeader`](crate::layout::ChannelHeader) or
/// [`TopicHeader`](crate::layout::TopicHeader): the same fields at the
/// same offsets in both (asserted below), written once at creation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingLine {
    pub(crate) kind: u32,
    pub(crate) flags: u32,
    pub(crate) cells: u64,
    pub(crate) max_message: u64,
    /// The header size, where the control records start.
    pub(crate) header_size: u64,
}

/// Offsets of the first-line fields, the same in both headers.
#[allow(non_upper_case_globals)]
mod line_offsets {
    use crate::layout::{ChannelHeader as C, TopicHeader as T};
    use core::mem::offset_of;
    macro_rules! same {
        ($($f:ident),*) => {$(
            const _: () = assert!(offset_of!(C, $f) == offset_of!(T, $f));
            pub(super) const $f: usize = offset_of!(C, $f);
        )*};
    }
    same!(
        kind,
        flags,
        capacity,
        cells,
        one_lap,
        max_message,
        cells_offset,
        data_offset
    );
}

impl RingLine {
    /// Write the line at the start of a fresh block.
    ///
    /// # Safety
    /// `block` must be 8-aligned, valid for writes of 64 bytes, and not
    /// visible to anyone else.
    pub(crate) unsafe fn write(&self, block: *mut u8) {
        use line_offsets as at;
        let (data_offset, _) =
            ring_bytes(self.header_size, self.cells).expect("sized by the caller");
        let words = [
            (at::capacity, self.cells * MESSAGE_CELL),
            (at::cells, self.cells),
            (at::one_lap, self.cells.next_power_of_two()),
            (at::max_message, self.max_message),
            (at::cells_offset, self.header_size),
            (at::data_offset, data_offset),
        ];
        // SAFETY: (caller) the block is ours; every offset is a field of
        // the first line, aligned for its type (layout.rs asserts them).
        unsafe {
            block.add(at::kind).cast::<u32>().write(self.kind);
            block.add(at::flags).cast::<u32>().write(self.flags);
            for (offset, value) in words {
                block.add(offset).cast::<u64>().write(value);
            }
        }
    }

    /// Read and check our copy of a block's first line against its table
    /// entry: the kind, the element size (1), the capacity, the derived
    /// fields, `flags` within `allowed_flags`, at least `min_cells` cells,
    /// `max_message <= max_limit(capacity)`, and a block large enough.
    pub(crate) fn check(
        line: &crate::layout::Line,
        info: &crate::table::EntryInfo,
        expect: RingLine,
        min_cells: u64,
        max_limit: impl Fn(u64) -> u64,
    ) -> Option<RingLine> {
        use line_offsets as at;
        let cells = line.u64_at(at::cells);
        let flags = line.u32_at(at::flags);
        let max_message = line.u64_at(at::max_message);
        let bytes = ring_bytes(expect.header_size, cells)?;
        let ok = line.u32_at(at::kind) == expect.kind
            && info.elem_size == 1
            && cells >= min_cells
            && cells.checked_mul(MESSAGE_CELL) == Some(info.capacity)
            && info.capacity <= crate::MAX_RING_CAPACITY
            && line.u64_at(at::capacity) == info.capacity
            && line.u64_at(at::one_lap) == cells.next_power_of_two()
            && max_message <= max_limit(info.capacity)
            && flags & !expect.flags == 0
            && line.u64_at(at::cells_offset) == expect.header_size
            && line.u64_at(at::data_offset) == bytes.0
            && bytes.1 <= info.size;
        ok.then_some(RingLine {
            kind: expect.kind,
            flags,
            cells,
            max_message,
            header_size: expect.header_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let r = RingShape::new(5, 64, false);
        assert_eq!(r.split(8 + 3), (1, 3));
        assert_eq!(r.advance(3, 3, 2), 8);
        assert_eq!(r.advance(1, 1, 2), 3);
        assert_eq!(r.distance(3, 8 + 3), Some(5));
        assert_eq!(r.distance(3, 16 + 4), None);
        assert_eq!(r.distance(4, 3), None);
        assert_eq!(r.run_of(PAD_LEN, 3), Some(2));
        assert_eq!(r.run_of(129, 2), Some(3));
        assert_eq!(r.run_of(129, 3), None);
        assert_eq!(r.run_of(0, 4), Some(1));
        assert_eq!(r.run_of(0, 5), None);
        assert_eq!(cells_for(0), 1);
        assert_eq!(cells_for(64), 1);
        assert_eq!(cells_for(65), 2);
    }
}
