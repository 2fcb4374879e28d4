//! The heap: blocks with headers, segregated free lists, coalescing, growth,
//! and the rebuild that makes allocation crash-safe.
//!
//! Blocks tile the heap from `heap_offset` to the segment's current `size`
//! with no gaps: a block at offset `b` of `s` bytes is followed by the block
//! at `b + s`. Each starts with a 64-byte [`BlockHeader`] (magic, size, the
//! previous block's size, state, owner, free-list links and a check word);
//! a structure's bytes follow its header, so they stay cache-line aligned.
//!
//! Free blocks are kept on [`FREE_LISTS`] doubly linked lists, list `c`
//! holding blocks of `2^c .. 2^(c+1)` cache lines. Allocation takes the first
//! block that fits from the smallest list that can hold the request (a
//! bounded scan of its own class, then the head of any larger one), splits
//! off the rest when that is at least two lines, and zeroes the block. Freeing
//! merges the block with a free neighbour on either side (the next block is
//! at `b + size`, the previous at `b - prev_size`), so no two free blocks are
//! ever adjacent. When nothing fits, the segment grows (up to its maximum
//! size) and the new space joins the last block.
//!
//! Every change is made by the holder of the registration lock, so the heap
//! needs no lock-free algorithm of its own; what it needs is crash safety.
//! The headers and lists are *derived* state: the ground truth is the table
//! (every live entry names its block, every table chunk is in the segment
//! header). A process that takes the lock over from a dead holder calls
//! [`Heap::rebuild`], which rewrites every header and list from that truth:
//! whatever the dead process was doing (splitting, merging, growing, an
//! allocation it never published), nothing is leaked and nothing is owned
//! twice afterwards.
//!
//! All of it reads untrusted memory: every offset and size read from the
//! segment is checked against the heap bounds (this process's copies) before
//! it is followed, walks are bounded by the number of lines in the heap, and
//! a header that fails its checks is an [`Error::Corrupt`], never a panic.

use crate::error::{Error, Result};
use crate::layout::{
    block_check, block_state, BlockHeader, Entry, SegmentHeader, BLOCK_HEADER_SIZE, BLOCK_MAGIC,
    CACHE_LINE, FREE_LISTS,
};
use crate::sync::Ordering;

/// Round `n` up to a multiple of [`CACHE_LINE`]; `None` on overflow.
pub(crate) fn align_up(n: u64) -> Option<u64> {
    n.checked_add(CACHE_LINE - 1).map(|v| v & !(CACHE_LINE - 1))
}

/// Bytes a block must have to hold `payload` bytes: header included,
/// cache-line multiple.
pub(crate) fn block_bytes(payload: u64) -> Option<u64> {
    align_up(payload.max(1))?.checked_add(BLOCK_HEADER_SIZE)
}

/// Smallest remainder worth splitting off as a free block: a header and one
/// line. (Smaller free blocks, one header line, appear only from a rebuild.)
const MIN_SPLIT: u64 = 2 * CACHE_LINE;

/// How many blocks of its own size class an allocation looks at before it
/// takes a block from a larger class.
const CLASS_SCAN: usize = 16;

/// The free list of blocks of `size` bytes.
fn class_of(size: u64) -> usize {
    let lines = (size / CACHE_LINE).max(1);
    ((63 - lines.leading_zeros()) as usize).min(FREE_LISTS - 1)
}

/// What the heap needs from the memory it lives in: a segment mapping, or
/// plain memory in a loom model.
pub(crate) trait Memory {
    /// The block header at `offset` if `offset` is a cache-line multiple
    /// whose header lies in the mapped part of the heap.
    fn block(&self, offset: u64) -> Option<&BlockHeader>;
    /// Table chunk `k` (chunk 0 is not in the heap), if it exists.
    fn chunk(&self, k: usize) -> Option<&[Entry]>;
    /// Zero the bytes `[offset, offset + len)`, all inside one block of the
    /// mapped heap (the caller checked).
    fn zero(&self, offset: u64, len: u64);
    /// First byte of the heap (this process's validated copy).
    fn heap_start(&self) -> u64;
    /// The most the segment may grow to (validated copy).
    fn max_size(&self) -> u64;
    /// Entries in table chunk 0 (validated copy).
    fn table_capacity(&self) -> u32;
    /// [`segment_flags`](crate::layout::segment_flags) (validated copy).
    fn flags(&self) -> u32;
    /// Map the segment up to byte `end` if it has grown that far.
    fn ensure_mapped(&self, end: u64) -> Result<()>;
    /// Extend the segment's file to `new_size` bytes and map it (the caller
    /// holds the registration lock and then publishes the size).
    fn grow_to(&self, new_size: u64) -> Result<()>;
    /// The segment's name, for errors.
    fn name(&self) -> &str;
}

/// A block header's fields, copied and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// Offset of the header.
    pub offset: u64,
    pub size: u64,
    pub prev_size: u64,
    pub state: u32,
    pub owner: u64,
    pub owner_generation: u64,
}

/// Heap statistics (see [`Segment::heap`](crate::Segment::heap)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// The segment's current size in bytes.
    pub size: u64,
    /// The size it may grow to.
    pub max_size: u64,
    /// Bytes of the heap (the segment after its header and first table chunk).
    pub heap_bytes: u64,
    /// Bytes in blocks that hold structures or table chunks, headers included.
    pub used_bytes: u64,
    /// Bytes in free blocks, headers included.
    pub free_bytes: u64,
    /// The largest free block (headers included): the biggest structure that
    /// fits without growing is 64 bytes less.
    pub largest_free: u64,
    /// Blocks in use.
    pub used_blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
}

impl HeapStats {
    /// How scattered the free space is: 0 when it is one block (or there is
    /// none), approaching 1 when it is many small pieces
    /// (`1 - largest_free / free_bytes`).
    pub fn fragmentation(&self) -> f64 {
        if self.free_bytes == 0 {
            0.0
        } else {
            1.0 - self.largest_free as f64 / self.free_bytes as f64
        }
    }
}

/// The heap of one segment, as seen by one process.
pub(crate) struct Heap<'a> {
    pub header: &'a SegmentHeader,
    pub mem: &'a dyn Memory,
}

impl<'a> Heap<'a> {
    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.mem.name().to_owned(),
            detail,
        }
    }

    /// The heap's end (the segment's current size), checked and mapped.
    pub(crate) fn end(&self) -> Result<u64> {
        let size = self.header.size.load(Ordering::Acquire);
        let start = self.mem.heap_start();
        if size < start || size > self.mem.max_size() || size % CACHE_LINE != 0 {
            return Err(self.corrupt(format!(
                "the segment's size {size} is not between its heap start {start} and its maximum \
                 size {}",
                self.mem.max_size()
            )));
        }
        self.mem.ensure_mapped(size)?;
        Ok(size)
    }

    fn header_at(&self, offset: u64) -> Result<&'a BlockHeader> {
        self.mem
            .block(offset)
            .ok_or_else(|| self.corrupt(format!("heap block offset {offset} is outside the heap")))
    }

    /// The block at `offset`, checked: magic, size, bounds and check word.
    pub(crate) fn read(&self, offset: u64, end: u64) -> Result<Block> {
        let h = self.header_at(offset)?;
        let block = Block {
            offset,
            size: h.size.load(Ordering::Relaxed),
            prev_size: h.prev_size.load(Ordering::Relaxed),
            state: h.state.load(Ordering::Relaxed),
            owner: h.owner.load(Ordering::Relaxed),
            owner_generation: h.owner_generation.load(Ordering::Relaxed),
        };
        let magic = h.magic.load(Ordering::Relaxed);
        let check = h.check.load(Ordering::Relaxed);
        let bad = if magic != BLOCK_MAGIC {
            Some(format!("bad magic {magic:#010x}"))
        } else if block.size < CACHE_LINE
            || block.size % CACHE_LINE != 0
            || offset.checked_add(block.size).is_none_or(|e| e > end)
        {
            Some(format!("size {} does not fit the heap", block.size))
        } else if !matches!(
            block.state,
            block_state::FREE | block_state::USED | block_state::TABLE
        ) {
            Some(format!("unknown state {}", block.state))
        } else if check != block_check(offset, block.size, block.state, block.owner) {
            Some("its check word does not match (overwritten or half-written)".into())
        } else {
            None
        };
        match bad {
            Some(why) => Err(self.corrupt(format!("heap block at {offset}: {why}"))),
            None => Ok(block),
        }
    }

    fn write(&self, b: &Block) -> Result<()> {
        let h = self.header_at(b.offset)?;
        h.magic.store(BLOCK_MAGIC, Ordering::Relaxed);
        h.state.store(b.state, Ordering::Relaxed);
        h.size.store(b.size, Ordering::Relaxed);
        h.prev_size.store(b.prev_size, Ordering::Relaxed);
        h.owner.store(b.owner, Ordering::Relaxed);
        h.owner_generation
            .store(b.owner_generation, Ordering::Relaxed);
        h.check.store(
            block_check(b.offset, b.size, b.state, b.owner),
            Ordering::Relaxed,
        );
        Ok(())
    }

    fn set_prev_size(&self, offset: u64, prev_size: u64, end: u64) -> Result<()> {
        if offset >= end {
            return Ok(());
        }
        let mut next = self.read(offset, end)?;
        next.prev_size = prev_size;
        self.write(&next)
    }

    /// Put the free block `b` (already written FREE) at the head of its list.
    fn push_free(&self, b: &Block, end: u64) -> Result<()> {
        let list = &self.header.free_lists[class_of(b.size)];
        let head = list.load(Ordering::Relaxed);
        let h = self.header_at(b.offset)?;
        h.next_free.store(head, Ordering::Relaxed);
        h.prev_free.store(0, Ordering::Relaxed);
        if head != 0 {
            self.read_free(head, end)?;
            self.header_at(head)?
                .prev_free
                .store(b.offset, Ordering::Relaxed);
        }
        list.store(b.offset, Ordering::Relaxed);
        self.header.free_bytes.fetch_add(b.size, Ordering::Relaxed);
        self.header.free_blocks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_free(&self, offset: u64, end: u64) -> Result<Block> {
        let b = self.read(offset, end)?;
        if b.state != block_state::FREE {
            return Err(self.corrupt(format!(
                "heap block at {offset} is on a free list but not free"
            )));
        }
        Ok(b)
    }

    /// Take the free block `b` off its list.
    fn unlink(&self, b: &Block, end: u64) -> Result<()> {
        let h = self.header_at(b.offset)?;
        let next = h.next_free.load(Ordering::Relaxed);
        let prev = h.prev_free.load(Ordering::Relaxed);
        let list = &self.header.free_lists[class_of(b.size)];
        if prev == 0 {
            if list.load(Ordering::Relaxed) != b.offset {
                return Err(self.corrupt(format!(
                    "free heap block at {} is not on its free list",
                    b.offset
                )));
            }
            list.store(next, Ordering::Relaxed);
        } else {
            self.read_free(prev, end)?;
            self.header_at(prev)?
                .next_free
                .store(next, Ordering::Relaxed);
        }
        if next != 0 {
            self.read_free(next, end)?;
            self.header_at(next)?
                .prev_free
                .store(prev, Ordering::Relaxed);
        }
        crate::fault::pause_point("alloc.free.unlinked");
        self.header.free_bytes.fetch_sub(b.size, Ordering::Relaxed);
        self.header.free_blocks.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    /// A free block of at least `need` bytes, if one exists.
    fn find_free(&self, need: u64, end: u64) -> Result<Option<Block>> {
        let first = class_of(need);
        let lines = (end - self.mem.heap_start()) / CACHE_LINE;
        for class in first..FREE_LISTS {
            let mut at = self.header.free_lists[class].load(Ordering::Relaxed);
            let mut seen = 0u64;
            while at != 0 {
                let b = self.read_free(at, end)?;
                if class_of(b.size) != class {
                    return Err(self.corrupt(format!(
                        "free heap block at {at} of {} bytes is on the wrong list",
                        b.size
                    )));
                }
                if b.size >= need {
                    return Ok(Some(b));
                }
                seen += 1;
                if class > first || seen as usize >= CLASS_SCAN || seen > lines {
                    break;
                }
                at = self.header_at(at)?.next_free.load(Ordering::Relaxed);
            }
        }
        Ok(None)
    }

    /// Allocate a block for `payload` bytes owned by `owner` (`state` USED
    /// or TABLE). Returns the block; its bytes after the header are zero.
    pub(crate) fn allocate(
        &self,
        payload: u64,
        state: u32,
        owner: u64,
        owner_generation: u64,
    ) -> Result<Block> {
        let need = block_bytes(payload).ok_or(Error::OutOfSpace {
            requested: payload,
            available: 0,
        })?;
        let mut end = self.end()?;
        let found = loop {
            if let Some(b) = self.find_free(need, end)? {
                break b;
            }
            end = self.grow(need, end)?;
        };
        self.unlink(&found, end)?;
        let mut block = Block {
            state,
            owner,
            owner_generation,
            ..found
        };
        if found.size - need >= MIN_SPLIT {
            block.size = need;
            let rest = Block {
                offset: found.offset + need,
                size: found.size - need,
                prev_size: need,
                state: block_state::FREE,
                owner: 0,
                owner_generation: 0,
            };
            self.write(&rest)?;
            crate::fault::pause_point("alloc.split");
            self.set_prev_size(rest.offset + rest.size, rest.size, end)?;
            if self.header.heap_last.load(Ordering::Relaxed) == found.offset {
                self.header.heap_last.store(rest.offset, Ordering::Relaxed);
            }
            self.push_free(&rest, end)?;
        }
        self.write(&block)?;
        self.mem.zero(
            block.offset + BLOCK_HEADER_SIZE,
            block.size - BLOCK_HEADER_SIZE,
        );
        Ok(block)
    }

    /// Free the used block at `offset` (optionally zeroing it first) and
    /// merge it with free neighbours.
    pub(crate) fn free(&self, offset: u64, wipe: bool) -> Result<()> {
        let end = self.end()?;
        let b = self.read(offset, end)?;
        if b.state != block_state::USED {
            return Err(self.corrupt(format!(
                "heap block at {offset} is freed but is not in use (state {})",
                b.state
            )));
        }
        if wipe || self.mem.flags() & crate::layout::segment_flags::WIPE_ON_ERASE != 0 {
            self.mem
                .zero(offset + BLOCK_HEADER_SIZE, b.size - BLOCK_HEADER_SIZE);
        }
        let mut merged = Block {
            state: block_state::FREE,
            owner: 0,
            owner_generation: 0,
            ..b
        };
        let last = self.header.heap_last.load(Ordering::Relaxed);
        let mut is_last = last == offset;
        let next_at = offset + b.size;
        if next_at < end {
            let next = self.read(next_at, end)?;
            if next.state == block_state::FREE {
                self.unlink(&next, end)?;
                merged.size += next.size;
                is_last |= last == next_at;
            }
        }
        if b.prev_size != 0 {
            let prev_at = offset
                .checked_sub(b.prev_size)
                .filter(|&p| p >= self.mem.heap_start());
            let prev_at = prev_at.ok_or_else(|| {
                self.corrupt(format!(
                    "heap block at {offset}: previous size {} reaches before the heap",
                    b.prev_size
                ))
            })?;
            let prev = self.read(prev_at, end)?;
            if prev.size != b.prev_size {
                return Err(self.corrupt(format!(
                    "heap block at {offset}: previous block is {} bytes, not {}",
                    prev.size, b.prev_size
                )));
            }
            if prev.state == block_state::FREE {
                self.unlink(&prev, end)?;
                merged.offset = prev.offset;
                merged.prev_size = prev.prev_size;
                merged.size += prev.size;
            }
        }
        self.write(&merged)?;
        self.set_prev_size(merged.offset + merged.size, merged.size, end)?;
        if is_last {
            self.header
                .heap_last
                .store(merged.offset, Ordering::Relaxed);
        }
        self.push_free(&merged, end)
    }

    /// Grow the segment so that a block of `need` bytes fits at its end;
    /// returns the new end.
    fn grow(&self, need: u64, end: u64) -> Result<u64> {
        let max = self.mem.max_size();
        let last_at = self.header.heap_last.load(Ordering::Relaxed);
        let last = self.read(last_at, end)?;
        if last.offset + last.size != end {
            return Err(self.corrupt(format!(
                "the last heap block (at {last_at}) does not end at the segment's end {end}"
            )));
        }
        // Space already free at the end counts toward the request.
        let tail_free = if last.state == block_state::FREE {
            last.size
        } else {
            0
        };
        let short = need.saturating_sub(tail_free);
        let page = 4096;
        let wanted = end
            .checked_add(short)
            .and_then(|e| e.checked_add(page - 1))
            .map(|e| e & !(page - 1));
        let available = max.saturating_sub(end) + tail_free;
        let Some(wanted) = wanted.filter(|&w| w <= max) else {
            return Err(Error::OutOfSpace {
                requested: need,
                available: available.max(self.largest_free(end)),
            });
        };
        // Grow at least by half again (amortised), but not past the maximum.
        let new_end = wanted
            .max((end + end / 2 + page - 1) & !(page - 1))
            .min(max);
        self.mem.grow_to(new_end)?;
        let grown = new_end - end;
        if last.state == block_state::FREE {
            self.unlink(&last, end)?;
            let merged = Block {
                size: last.size + grown,
                ..last
            };
            self.write(&merged)?;
            self.push_free(&merged, new_end)?;
        } else {
            let added = Block {
                offset: end,
                size: grown,
                prev_size: last.size,
                state: block_state::FREE,
                owner: 0,
                owner_generation: 0,
            };
            self.write(&added)?;
            self.header.heap_last.store(end, Ordering::Relaxed);
            self.push_free(&added, new_end)?;
        }
        self.header.size.store(new_end, Ordering::Release);
        Ok(new_end)
    }

    fn largest_free(&self, end: u64) -> u64 {
        self.walk(end).map(|s| s.largest_free).unwrap_or(0)
    }

    /// Write the heap of a new segment: one free block `[start, end)`.
    pub(crate) fn init(&self, end: u64) -> Result<()> {
        for list in &self.header.free_lists {
            list.store(0, Ordering::Relaxed);
        }
        self.header.free_bytes.store(0, Ordering::Relaxed);
        self.header.free_blocks.store(0, Ordering::Relaxed);
        let start = self.mem.heap_start();
        let all = Block {
            offset: start,
            size: end - start,
            prev_size: 0,
            state: block_state::FREE,
            owner: 0,
            owner_generation: 0,
        };
        self.write(&all)?;
        self.header.heap_last.store(start, Ordering::Relaxed);
        self.push_free(&all, end)
    }

    /// Walk every block from the heap start to `end`, checking the tiling;
    /// returns the figures (or the first damage found).
    pub(crate) fn walk(&self, end: u64) -> Result<HeapStats> {
        self.walk_blocks(end, |_| {})
    }

    /// [`walk`](Heap::walk), calling `each` with every block.
    pub(crate) fn walk_blocks(&self, end: u64, mut each: impl FnMut(&Block)) -> Result<HeapStats> {
        let start = self.mem.heap_start();
        let mut stats = HeapStats {
            size: end,
            max_size: self.mem.max_size(),
            heap_bytes: end - start,
            ..HeapStats::default()
        };
        let mut at = start;
        let mut prev = 0u64;
        let mut prev_free = false;
        while at < end {
            let b = self.read(at, end)?;
            if b.prev_size != prev {
                return Err(self.corrupt(format!(
                    "heap block at {at}: records a previous block of {} bytes, the previous one has {prev}",
                    b.prev_size
                )));
            }
            if b.state == block_state::FREE {
                if prev_free {
                    return Err(self.corrupt(format!(
                        "heap blocks before {at} and at {at} are both free (not merged)"
                    )));
                }
                stats.free_bytes += b.size;
                stats.free_blocks += 1;
                stats.largest_free = stats.largest_free.max(b.size);
            } else {
                stats.used_bytes += b.size;
                stats.used_blocks += 1;
            }
            each(&b);
            prev_free = b.state == block_state::FREE;
            prev = b.size;
            if at + b.size == end && self.header.heap_last.load(Ordering::Relaxed) != at {
                return Err(self.corrupt(format!(
                    "the heap's last block is at {at}, but the header says {}",
                    self.header.heap_last.load(Ordering::Relaxed)
                )));
            }
            at += b.size;
        }
        Ok(stats)
    }

    /// Check the free lists against the walk: every listed block is free,
    /// on the right list, linked both ways, and every free block is listed.
    pub(crate) fn check_lists(&self, end: u64, stats: &HeapStats) -> Result<()> {
        let lines = (end - self.mem.heap_start()) / CACHE_LINE;
        let (mut count, mut bytes) = (0u64, 0u64);
        for (class, list) in self.header.free_lists.iter().enumerate() {
            let mut at = list.load(Ordering::Relaxed);
            let mut prev = 0;
            while at != 0 {
                let b = self.read_free(at, end)?;
                let h = self.header_at(at)?;
                if class_of(b.size) != class || h.prev_free.load(Ordering::Relaxed) != prev {
                    return Err(
                        self.corrupt(format!("free list {class} is damaged at the block at {at}"))
                    );
                }
                count += 1;
                bytes += b.size;
                if count > lines {
                    return Err(self.corrupt(format!("free list {class} has a cycle")));
                }
                prev = at;
                at = h.next_free.load(Ordering::Relaxed);
            }
        }
        if count != stats.free_blocks || bytes != stats.free_bytes {
            return Err(self.corrupt(format!(
                "the free lists hold {count} blocks of {bytes} bytes, the heap has {} free blocks \
                 of {} bytes",
                stats.free_blocks, stats.free_bytes
            )));
        }
        let (hb, hc) = (
            self.header.free_bytes.load(Ordering::Relaxed),
            self.header.free_blocks.load(Ordering::Relaxed),
        );
        if hb != bytes || hc != count {
            return Err(self.corrupt(format!(
                "the header counts {hc} free blocks of {hb} bytes, the lists hold {count} of \
                 {bytes}"
            )));
        }
        Ok(())
    }

    /// Rebuild every block header and free list from the owners: `owned`
    /// lists `(block offset, minimum block size, state, owner, generation)`
    /// of every live entry and table chunk. Blocks between owners become
    /// free (so a block a dead process allocated but never published is
    /// reclaimed); an owner that overlaps an earlier one or lies outside the
    /// heap is left out (its entry then fails its block check).
    ///
    /// Called with the registration lock held, after taking it over from a
    /// dead holder.
    pub(crate) fn rebuild(&self, mut owned: Vec<Block>) -> Result<()> {
        let end = self.end()?;
        let start = self.mem.heap_start();
        owned.retain(|b| {
            b.offset >= start
                && b.offset % CACHE_LINE == 0
                && b.size >= CACHE_LINE
                && b.size % CACHE_LINE == 0
                && b.offset.checked_add(b.size).is_some_and(|e| e <= end)
        });
        owned.sort_by_key(|b| b.offset);
        // Owners that overlap an earlier one (only damage does that) are
        // left out.
        let mut distinct: Vec<Block> = Vec::with_capacity(owned.len());
        for b in owned {
            if distinct
                .last()
                .is_none_or(|k| k.offset + k.size <= b.offset)
            {
                distinct.push(b);
            }
        }
        // A used block keeps the size its header records when that header is
        // intact and agrees (it may be up to a split's worth larger than its
        // owner needs), but never reaches the next owner.
        let mut kept = distinct.clone();
        for (i, b) in kept.iter_mut().enumerate() {
            let limit = distinct.get(i + 1).map_or(end, |n| n.offset);
            if let Ok(h) = self.read(b.offset, end) {
                if h.state == b.state && h.owner == b.owner && h.size >= b.size {
                    b.size = h.size.min(limit - b.offset);
                }
            }
        }
        for list in &self.header.free_lists {
            list.store(0, Ordering::Relaxed);
        }
        self.header.free_bytes.store(0, Ordering::Relaxed);
        self.header.free_blocks.store(0, Ordering::Relaxed);
        let wipe = self.mem.flags() & crate::layout::segment_flags::WIPE_ON_ERASE != 0;
        let mut at = start;
        let mut prev = 0;
        let mut last = start;
        let write_free = |at: u64, size: u64, prev: u64| -> Result<()> {
            let free = Block {
                offset: at,
                size,
                prev_size: prev,
                state: block_state::FREE,
                owner: 0,
                owner_generation: 0,
            };
            self.write(&free)?;
            if wipe {
                self.mem
                    .zero(at + BLOCK_HEADER_SIZE, size - BLOCK_HEADER_SIZE);
            }
            self.push_free(&free, end)
        };
        for b in &kept {
            if b.offset > at {
                write_free(at, b.offset - at, prev)?;
                prev = b.offset - at;
            }
            self.write(&Block {
                prev_size: prev,
                ..*b
            })?;
            last = b.offset;
            prev = b.size;
            at = b.offset + b.size;
        }
        if at < end {
            write_free(at, end - at, prev)?;
            last = at;
        }
        self.header.heap_last.store(last, Ordering::Relaxed);
        Ok(())
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
        assert_eq!(block_bytes(0), Some(128));
        assert_eq!(block_bytes(64), Some(128));
        assert_eq!(block_bytes(65), Some(192));
    }

    #[test]
    fn classes() {
        assert_eq!(class_of(64), 0);
        assert_eq!(class_of(128), 1);
        assert_eq!(class_of(192), 1);
        assert_eq!(class_of(256), 2);
        assert_eq!(class_of(!63), FREE_LISTS - 1);
    }
}
