//! Every `#[repr(C)]` structure that lives in a segment, with compile-time
//! checks of each size and field offset. This file and `FORMAT.md` are the
//! contract other languages follow; a test checks they agree.
//!
//! All multi-byte fields are in the creating machine's byte order; the layout
//! fingerprint in the header makes a machine of another byte order, pointer
//! width or cache-line size refuse the segment instead of misreading it.
//!
//! Fields that other processes may change while we look are atomics from the
//! `sync` shim. Fields that are written once, before the
//! structure is published, are plain.

use crate::sync::{AtomicU32, AtomicU64};

/// Cache-line size assumed by the layout. Every block is aligned to it.
pub const CACHE_LINE: u64 = 64;

/// A private copy of one cache line of a segment (the fields of a header
/// that are fixed at creation), read with eight 64-bit atomic loads.
///
/// Those fields are plain in the layout, but another process may rewrite
/// any byte at any moment: reading them as atomic words makes that a race
/// on values, never undefined behaviour, and the copy is then validated and
/// used instead of the bytes. Fields are picked out by their offset
/// (`offset_of!`), in this machine's byte order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line([u64; 8]);

impl Line {
    /// Read the line at `at`.
    ///
    /// # Safety
    /// `at` must be 8-aligned and point to 64 bytes of a live mapping.
    pub(crate) unsafe fn read(at: *const u8) -> Line {
        use core::sync::atomic::{AtomicU64 as Word, Ordering};
        // SAFETY: (caller) 64 mapped, 8-aligned bytes; AtomicU64 has the size
        // and alignment of u64 and every bit pattern is a valid u64.
        let words = unsafe { &*at.cast::<[Word; 8]>() };
        Line(std::array::from_fn(|i| words[i].load(Ordering::Relaxed)))
    }

    fn bytes<const N: usize>(&self, offset: usize) -> [u8; N] {
        let word = self.0[offset / 8].to_ne_bytes();
        let start = offset % 8;
        std::array::from_fn(|i| word[start + i])
    }

    /// The line's 64 bytes.
    pub(crate) fn to_bytes(self) -> [u8; 64] {
        std::array::from_fn(|i| self.0[i / 8].to_ne_bytes()[i % 8])
    }

    /// The `u32` at byte `offset` (4-aligned, < 64).
    pub(crate) fn u32_at(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.bytes(offset))
    }

    /// The `u64` at byte `offset` (8-aligned, < 64).
    pub(crate) fn u64_at(&self, offset: usize) -> u64 {
        u64::from_ne_bytes(self.bytes(offset))
    }
}

/// First 8 bytes of every segment.
pub const MAGIC: [u8; 8] = *b"SHMDS\0\x01\x00";

/// Format version written by this build. Opening a segment with another
/// version fails with `Incompatible`.
pub const FORMAT_VERSION: u32 = 7;

/// `SegmentHeader::state` values.
pub mod segment_state {
    /// Fresh zeroed memory: the creator has not started.
    pub const UNINIT: u32 = 0;
    /// The creator is writing the header and table.
    pub const INITIALIZING: u32 = 1;
    /// Fully initialised; safe to use.
    pub const READY: u32 = 2;
    /// A temporary segment whose last attached process left: it is being
    /// (or was) removed, and nobody may attach any more.
    pub const REMOVED: u32 = 3;
}

/// `SegmentHeader::flags` bits, fixed at creation.
pub mod segment_flags {
    /// Remove the segment when the last attached process detaches or dies.
    pub const TEMPORARY: u32 = 1;
    /// Zero every block when it is freed (as if erased with wipe).
    pub const WIPE_ON_ERASE: u32 = 2;
    /// A durable segment: a regular file outside /dev/shm (see
    /// [`durable_state`](super::durable_state)).
    pub const DURABLE: u32 = 4;
}

/// Number of [`AttachSlot`]s after the segment header.
pub const ATTACH_SLOTS: usize = 128;
/// Number of heap free lists (size classes; see FORMAT.md, "The heap").
pub const FREE_LISTS: usize = 48;
/// Most table chunks: chunk 0 after the attachment slots, chunks 1.. in
/// the heap, chunk `k` holding `table_capacity << k` entries.
pub const TABLE_CHUNKS: usize = 24;

/// The segment header, at offset 0.
///
/// Line 0 is written once by the creator before `state` becomes `READY` and
/// never changes after. The other lines hold the words that change; every
/// change except `state`, the attachment slots and `lock` itself is made
/// by the holder of the registration lock.
#[repr(C)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `size_of::<SegmentHeader>()`.
    pub header_size: u32,
    /// [`fingerprint()`] of the creating build.
    pub fingerprint: u64,
    /// Largest size the segment may grow to; every process reserves this
    /// much address space, so a mapping never moves. `>= size`, whole pages.
    pub max_size: u64,
    /// Offset of table chunk 0 (`header_size + ATTACH_SLOTS * 16`).
    pub table_offset: u64,
    /// Entries in table chunk 0 (chunk `k` has `table_capacity << k`).
    pub table_capacity: u32,
    /// `size_of::<Entry>()`.
    pub entry_size: u32,
    /// Offset of the heap: the first block header. Cache-line aligned,
    /// `>= table_offset + table_capacity * entry_size`.
    pub heap_offset: u64,
    /// Random per-segment seed (hash seeds for maps are derived from it).
    pub seed: u64,

    /// One of [`segment_state`]. The creator stores `READY` with `Release`
    /// after everything else is written; openers load it with `Acquire`.
    pub state: AtomicU32,
    /// Pid of the creating process (so an opener can tell a creator that died
    /// half-way from one that is slow).
    pub creator_pid: AtomicU32,
    /// Registration lock: 0 when free, else the pid of the holder. Every change
    /// to the table and every allocation happens while holding it. A holder
    /// that died is detected by its pid and the lock is taken over.
    pub lock: AtomicU32,
    /// Number of processes sleeping on `lock` (so unlock skips the wake
    /// syscall when there are none).
    pub lock_waiters: AtomicU32,
    /// Current size in bytes: the heap ends here. Only grows, in whole
    /// pages, up to `max_size`; the file is extended before it is stored.
    pub size: AtomicU64,
    /// Creation time, nanoseconds since the Unix epoch (informational).
    pub created_unix_ns: AtomicU64,
    /// [`segment_flags`], written before `READY`.
    pub flags: AtomicU32,
    /// Attached processes that found no free [`AttachSlot`] (they are
    /// counted here instead, and a temporary segment with any is kept).
    pub attach_overflow: AtomicU32,
    /// Start time of the creating process (clock ticks since boot, as in
    /// `/proc/PID/stat`), so a reused creator pid is not taken for it.
    pub creator_start: AtomicU64,
    /// Offset of the last block of the heap (the one that ends at `size`).
    pub heap_last: AtomicU64,
    /// Bytes in free blocks, headers included (statistics; exact while the
    /// registration lock is free).
    pub free_bytes: AtomicU64,
    /// Number of free blocks (statistics, as `free_bytes`).
    pub free_blocks: AtomicU64,
    /// Offset of table chunk `k` for `k >= 1` (0 = not allocated yet; index
    /// 0 is unused). Stored once, with `Release`, and never changed.
    pub table_chunks: [AtomicU64; TABLE_CHUNKS],
    /// Heads of the free lists (offsets of free blocks, 0 = empty); list
    /// `c` holds free blocks of `2^c` to `2^(c+1) - 1` cache lines.
    pub free_lists: [AtomicU64; FREE_LISTS],
    /// A durable segment's boot: the Linux boot id (`/proc/sys/kernel/random/
    /// boot_id`, 16 bytes) of the boot that last opened it. An opener in
    /// another boot treats every process stamped in it as dead (see
    /// FORMAT.md, "Durable segments"). Zero in a /dev/shm segment.
    pub boot_id: [AtomicU64; 2],
    /// One of [`durable_state`]; written only under the file's `flock`.
    pub durable: AtomicU32,
    /// Reserved, zero.
    pub durable_pad: u32,
    /// A durable segment's header checksum: BLAKE3 of line 0 (bytes 0..64,
    /// which never change), written before `state = READY`. Zero in a
    /// /dev/shm segment.
    pub header_sum: [u64; 4],
    /// Reserved, zero.
    pub reserved: [u64; 32],
}

/// `SegmentHeader::durable` values.
pub mod durable_state {
    /// Not durable: a /dev/shm segment.
    pub const NONE: u32 = 0;
    /// A durable segment some process has opened since it was last sealed:
    /// its bytes may have changed, so no checksum covers them.
    pub const OPEN: u32 = 1;
    /// A durable segment sealed by its last process's close: the checksum
    /// trailer at offset `size` covers every byte before it.
    pub const SEALED: u32 = 2;
}

/// One attached process: after the segment header, [`ATTACH_SLOTS`] of
/// them. A process attaches by finding a slot with its pid (and start
/// time) and adding 1 to the count, or by claiming a free slot (0 → its
/// pid, count 1) or one whose process is dead; it detaches by subtracting
/// 1, freeing the slot at 0.
#[repr(C)]
pub struct AttachSlot {
    /// `pid | count << 32`; 0 when free.
    pub process: AtomicU64,
    /// The process's start time (clock ticks since boot); 0 while it is
    /// being claimed.
    pub start_time: AtomicU64,
}

/// `BlockHeader::state` values.
pub mod block_state {
    /// On a free list.
    pub const FREE: u32 = 1;
    /// Holds an entry's structure (`owner` = its table index).
    pub const USED: u32 = 2;
    /// Holds a table chunk (`owner` = the chunk number).
    pub const TABLE: u32 = 3;
}

/// `BlockHeader::magic`: "BLK" and a version byte.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"BLK\x01");

/// The 64-byte header before every heap block. Blocks tile the heap from
/// `heap_offset` to `size` with no gaps: the next block starts at
/// `offset + size`. A structure's data (the entry's `offset`) starts right
/// after its block header. Every field is changed only by the holder of the
/// registration lock.
#[repr(C)]
pub struct BlockHeader {
    /// [`BLOCK_MAGIC`].
    pub magic: AtomicU32,
    /// One of [`block_state`].
    pub state: AtomicU32,
    /// Size of the block, this header included; a multiple of 64, `>= 128`.
    pub size: AtomicU64,
    /// Size of the block before this one (0 for the first block).
    pub prev_size: AtomicU64,
    /// USED: the owning entry's table index; TABLE: the chunk number.
    pub owner: AtomicU64,
    /// USED: the owning entry's generation once published.
    pub owner_generation: AtomicU64,
    /// FREE: the next block on the same free list (0 = none).
    pub next_free: AtomicU64,
    /// FREE: the previous block on the same free list (0 = none: the head).
    pub prev_free: AtomicU64,
    /// [`block_check`] of this block's offset, size, state and owner.
    pub check: AtomicU64,
}

/// The check word of a block header: catches a header that was overwritten
/// or half-written (FNV-1a over the offset, size, state and owner).
pub const fn block_check(offset: u64, size: u64, state: u32, owner: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    h = mix(h, offset);
    h = mix(h, size);
    h = mix(h, state as u64);
    mix(h, owner)
}

/// Entry kinds.
pub mod kind {
    /// `Entry::kind` of a fixed-length array.
    pub const ARRAY: u32 = 1;
    /// `Entry::kind` of a bounded MPMC queue.
    pub const QUEUE: u32 = 2;
    /// `Entry::kind` of a bounded stack.
    pub const STACK: u32 = 3;
    /// `Entry::kind` of a hash map.
    pub const MAP: u32 = 4;
    /// `Entry::kind` of a channel of variable-length messages.
    pub const CHANNEL: u32 = 5;
    /// `Entry::kind` of a broadcast topic of variable-length messages.
    pub const TOPIC: u32 = 6;
    /// `Entry::kind` of a set of keys.
    pub const SET: u32 = 7;
    /// `Entry::kind` of a robust mutual-exclusion lock.
    pub const LOCK: u32 = 8;
    /// `Entry::kind` of a readers-writer lock.
    pub const RWLOCK: u32 = 9;
    /// `Entry::kind` of a condition variable with its own lock.
    pub const CONDITION: u32 = 10;
    /// `Entry::kind` of a counting semaphore.
    pub const SEMAPHORE: u32 = 11;
    /// `Entry::kind` of a barrier.
    pub const BARRIER: u32 = 12;
    /// `Entry::kind` of an event flag.
    pub const EVENT: u32 = 13;
    /// `Entry::kind` of a count-down latch.
    pub const LATCH: u32 = 14;
    /// `Entry::kind` of a run-once cell.
    pub const ONCE: u32 = 15;

    /// Human name of a kind code.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            ARRAY => "array",
            QUEUE => "queue",
            STACK => "stack",
            MAP => "map",
            CHANNEL => "channel",
            TOPIC => "topic",
            SET => "set",
            LOCK => "lock",
            RWLOCK => "rwlock",
            CONDITION => "condition",
            SEMAPHORE => "semaphore",
            BARRIER => "barrier",
            EVENT => "event",
            LATCH => "latch",
            ONCE => "once",
            _ => "unknown",
        }
    }
}

/// `Entry::state` values.
pub mod entry_state {
    /// Unused (never used, or erased).
    pub const FREE: u32 = 0;
    /// Holds a published structure.
    pub const LIVE: u32 = 1;
}

/// Longest entry name in bytes (UTF-8, NUL-terminated in a 64-byte field).
pub const NAME_MAX: usize = 63;
/// Longest element type descriptor in bytes.
pub const TYPE_MAX: usize = 127;
/// Longest key type descriptor in bytes.
pub const KEY_TYPE_MAX: usize = 63;

/// The hash of an entry name that places it in a table chunk (FNV-1a,
/// 32 bits of the 64-bit hash, never 0).
pub const fn name_hash(name: &[u8]) -> u32 {
    let h = fnv1a(0xcbf2_9ce4_8422_2325, name);
    let folded = (h ^ (h >> 32)) as u32;
    if folded == 0 {
        1
    } else {
        folded
    }
}

/// One entry of the name table.
///
/// `generation` is a sequence lock over the whole entry: it is odd while the
/// registration lock holder rewrites the entry and even when the entry is
/// stable. A reader loads it (`Acquire`), reads the fields, and loads it again:
/// equal even values mean a consistent snapshot. Every transition (create,
/// erase) adds 2, so a handle that remembers the generation it opened notices
/// that its structure was erased ([`Error::Stale`](crate::Error::Stale)).
///
/// All fields are atomics so that readers racing with the lock holder read
/// torn-free words; names and types are read as 8-byte words and reassembled
/// into bytes (NUL-terminated UTF-8).
#[repr(C)]
pub struct Entry {
    /// Sequence lock and erase counter (see above).
    pub generation: AtomicU64,
    /// One of [`entry_state`].
    pub state: AtomicU32,
    /// One of [`kind`].
    pub kind: AtomicU32,
    /// Size of one element (for maps: of one value) in bytes.
    pub elem_size: AtomicU32,
    /// Size of one key in bytes (maps only; 0 otherwise).
    pub key_size: AtomicU32,
    /// Number of elements the structure holds (array length, queue capacity...).
    pub capacity: AtomicU64,
    /// Offset of the structure's block from the segment start.
    pub offset: AtomicU64,
    /// Size of the block in bytes (a multiple of [`CACHE_LINE`]).
    pub size: AtomicU64,
    /// Pid of the process that created the entry (informational).
    pub creator_pid: AtomicU32,
    /// [`name_hash`] of the name, so lookups skip most entries unread.
    pub name_hash: AtomicU32,
    /// Reserved, zero.
    pub reserved: [u32; 2],
    /// Name: UTF-8, NUL-padded, at most [`NAME_MAX`] bytes.
    pub name: [AtomicU64; 8],
    /// Key type descriptor (maps), NUL-padded, at most [`KEY_TYPE_MAX`] bytes.
    pub key_type: [AtomicU64; 8],
    /// Element type descriptor, NUL-padded, at most [`TYPE_MAX`] bytes.
    pub elem_type: [AtomicU64; 16],
}

/// Header at the start of an array's block; the elements follow at
/// `data_offset`, densely packed (`elem_size` apart).
#[repr(C)]
pub struct ArrayHeader {
    /// [`kind::ARRAY`].
    pub kind: u32,
    /// Size of one element in bytes.
    pub elem_size: u32,
    /// Number of elements.
    pub len: u64,
    /// Offset of element 0 from the start of the block ([`CACHE_LINE`]).
    pub data_offset: u64,
    /// Reserved, zero.
    pub reserved: [u64; 5],
}

/// Header at the start of a queue's block (three cache lines: immutable
/// description, producers' `tail`, consumers' `head`). `capacity` slots
/// follow at `slots_offset`, `slot_stride` bytes apart.
///
/// Positions (`head`, `tail`) are 64-bit and encode `lap * one_lap + index`
/// with `index < capacity` and `one_lap` the smallest power of two
/// `>= capacity`: the next position after `index == capacity - 1` is
/// `(lap + 1) * one_lap`. No capacity is rounded up: `one_lap` only spaces
/// the encoding. See `queue/mod.rs` for the slot protocol.
#[repr(C)]
pub struct QueueHeader {
    /// [`kind::QUEUE`].
    pub kind: u32,
    /// Size of one element in bytes.
    pub elem_size: u32,
    /// Number of slots (the real capacity).
    pub capacity: u64,
    /// `capacity.next_power_of_two()`.
    pub one_lap: u64,
    /// Bytes from one slot to the next: `align8(8 + elem_size)`.
    pub slot_stride: u64,
    /// Offset of slot 0 from the start of the block ([`QUEUE_HEADER_SIZE`]).
    pub slots_offset: u64,
    /// 0 while the queue is open; bit 0 once it was shut down (no more
    /// pushes; pops drain what is left), bit 1 if that shutdown also
    /// discarded the elements. Only ever gains bits. It sits on the line of
    /// fixed fields, which no hot path writes, so pushers read it from their
    /// own cache at no cost (see `queue/mod.rs`, "Shutdown").
    pub shutdown: AtomicU64,
    /// Reserved, zero.
    pub reserved0: [u64; 2],
    /// Position of the next push. Advanced only by the producer that claimed
    /// the slot for that position (or by a survivor taking over from it).
    pub tail: AtomicU64,
    /// Reserved (keeps `tail` alone on its cache line).
    pub reserved1: [u64; 7],
    /// Position of the next pop. Advanced only by the consumer that claimed
    /// the slot for that position (or by a survivor taking over from it).
    pub head: AtomicU64,
    /// Elements taken by counting pops (the Python binding's `get`) whose
    /// `task_done` has not been called yet: `join` waits for it to be 0 and
    /// the queue empty. On the consumers' line: counting pops increment it
    /// while they hold their slot.
    pub unfinished: AtomicU64,
    /// Bumped (and futex-woken) when `unfinished` drops to 0, at shutdown
    /// and when a process asks its waiters to re-check, if anyone joins.
    pub join_event: AtomicU32,
    /// Processes sleeping in `join` on `join_event`.
    pub join_waiters: AtomicU32,
    /// Reserved (keeps `head` and the join words alone on their cache line).
    pub reserved2: [u64; 5],
}

/// The state word at the start of every queue slot; the element follows it.
///
/// Bits 0-1 phase (0 empty, 1 writing, 2 full, 3 reading). For empty and
/// full: bit 2 "a process sleeps on this word", bit 3 (full only) "skip: the
/// producer died, no element". For writing and reading: bits 2-23 the pid of
/// the claimant; bit 24 (reading only) "the claimed position is a skip
/// mark". Bits 25-63: the lap (mod 2^39) the state belongs to.
#[repr(C)]
pub struct QueueSlot {
    /// The slot state (see above).
    pub state: AtomicU64,
}

/// Header at the start of a stack's block: `capacity` element slots follow
/// at `slots_offset`, `slot_stride` bytes apart. See `stack/mod.rs` for the
/// protocol.
#[repr(C)]
pub struct StackHeader {
    /// [`kind::STACK`].
    pub kind: u32,
    /// Size of one element in bytes.
    pub elem_size: u32,
    /// Number of slots: the most elements the stack holds.
    pub capacity: u64,
    /// Bytes from one slot to the next: `align8(elem_size)`.
    pub slot_stride: u64,
    /// Offset of slot 0 from the start of the block ([`STACK_HEADER_SIZE`]).
    pub slots_offset: u64,
    /// 0 while the stack is open, 1 once it was shut down (set before the
    /// SHUT bit of `top`). On the line of fixed fields; read only off the
    /// hot path.
    pub shutdown: AtomicU64,
    /// Reserved, zero.
    pub reserved0: [u64; 3],
    /// The stack word: bits 0-23 the number of elements, 24-45 the pid of
    /// the process holding the claim, 46-47 the phase (0 idle, 1 pushing,
    /// 2 popping), 48 SHUT, 49-63 a version that grows with every claim.
    pub top: AtomicU64,
    /// Bumped (and futex-woken) when an element is pushed and someone waits.
    pub not_empty: AtomicU32,
    /// Processes sleeping on `not_empty`.
    pub pop_waiters: AtomicU32,
    /// Reserved.
    pub reserved1: [u64; 6],
    /// Reserved, zero.
    pub reserved2: u64,
    /// Bumped (and futex-woken) when an element is popped and someone waits.
    pub not_full: AtomicU32,
    /// Processes sleeping on `not_full`.
    pub push_waiters: AtomicU32,
    /// Reserved.
    pub reserved3: [u64; 6],
}

/// Header at the start of a map's block: an open-addressing hash table of
/// `capacity` slots at `slots_offset`, `slot_stride` bytes apart. See
/// `map/mod.rs` for the protocol.
#[repr(C)]
pub struct MapHeader {
    /// [`kind::MAP`].
    pub kind: u32,
    /// Size of one value in bytes.
    pub value_size: u32,
    /// Number of slots: the most keys the map holds.
    pub capacity: u64,
    /// Size of one key in bytes.
    pub key_size: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Bytes from one slot to the next:
    /// `MAP_SLOT_SIZE + align8(key_size) + align8(value_size)`.
    pub slot_stride: u64,
    /// Offset of slot 0 from the start of the block ([`MAP_HEADER_SIZE`]).
    pub slots_offset: u64,
    /// Seed of the key hash (random per map; see FORMAT.md for the hash).
    pub hash_seed: u64,
    /// Offset of the control bytes from the start of the block: two bytes
    /// per slot (see [`MAP_CTRL_PER_SLOT`]), after the slots, 64-aligned.
    pub ctrl_offset: u64,
    /// Reserved, zero.
    pub reserved1: u64,
    /// Number of keys (approximate while writers run; see `map/mod.rs`).
    pub len: AtomicU64,
    /// Reserved (keeps `len` alone on its cache line).
    pub reserved2: [u64; 7],
}

/// Control bytes per map slot, in the array at `MapHeader::ctrl_offset`:
/// byte `2 * i` is slot `i`'s **tag** (the low byte of the hash of the key
/// last written there), byte `2 * i + 1` the **bound mirror** of home `i`
/// (`min(bound, 255)`; 255: read the bound from the home word). Lookups
/// read these first, so one cache line answers for 32 slots.
pub const MAP_CTRL_PER_SLOT: u64 = 2;

/// The three words at the start of every map slot; the key follows (padded
/// to 8 bytes with zeros), then the value (likewise).
///
/// `state`: bits 0-1 phase (0 free, 1 live, 2 busy), bit 2 (busy only) "the
/// slot held a live key before", bits 3-24 the pid of the busy slot's writer,
/// bits 25-63 a version that grows with every change of the slot's contents.
///
/// `home`: the lock and probe bound of the keys whose *home* (first probed
/// slot) is this slot: bits 0-31 the pid of the writer holding the lock (0
/// when free), bits 32-63 the largest probe distance of any such key.
#[repr(C)]
pub struct MapSlot {
    /// Phase, writer pid and version (see above).
    pub state: AtomicU64,
    /// Home lock and probe bound (see above).
    pub home: AtomicU64,
    /// The key's 64-bit hash (meaningful while the slot is live or busy).
    pub hash: AtomicU64,
}

/// Bytes of message data per cell of a channel or topic ring; payloads
/// start at a cell boundary (64-byte aligned).
pub const MESSAGE_CELL: u64 = 64;

/// Number of attachment words in a [`ChannelHeader`].
pub const CHANNEL_ATTACH_SLOTS: usize = 32;

/// `ChannelHeader::flags` and `TopicHeader::flags` bits.
pub mod message_flags {
    /// Channel: one producer and one consumer (the SPSC protocol).
    pub const SPSC: u32 = 1;
    /// Every message carries a CRC32C of its payload, checked on receipt.
    pub const CHECKSUM: u32 = 2;
}

/// `ChannelCell::len` / `TopicCell::len` of a padding frame: the rest of
/// the lap (up to the end of the ring) holds no message.
pub const PAD_LEN: u32 = u32::MAX;

/// Header of a channel's block: a ring of `cells` cells of
/// [`MESSAGE_CELL`] data bytes each, with one [`ChannelCell`] control
/// record per cell. A message of `len` bytes occupies
/// `max(1, ceil(len / 64))` consecutive cells, never wrapping (a padding
/// frame fills the end of the ring instead). See `channel/` for the
/// protocols (MPMC and SPSC).
///
/// Positions (`head`, `tail`) count cells in the queue's encoding:
/// `lap * one_lap + index`, `index < cells`.
#[repr(C)]
pub struct ChannelHeader {
    /// [`kind::CHANNEL`].
    pub kind: u32,
    /// [`message_flags`] bits.
    pub flags: u32,
    /// Data bytes in the ring: `cells * MESSAGE_CELL`.
    pub capacity: u64,
    /// Number of cells.
    pub cells: u64,
    /// `cells.next_power_of_two()`.
    pub one_lap: u64,
    /// Largest message in bytes (`<= capacity`, `< PAD_LEN`).
    pub max_message: u64,
    /// Offset of the control records from the block start (= header size).
    pub cells_offset: u64,
    /// Offset of the data ring: `align64(cells_offset + cells * 16)`.
    pub data_offset: u64,
    /// Reserved, zero.
    pub reserved0: u64,
    /// Position after the last claimed frame (producers).
    pub tail: AtomicU64,
    /// Reserved (keeps `tail` alone on its cache line).
    pub reserved1: [u64; 7],
    /// Position of the next frame to take (consumers).
    pub head: AtomicU64,
    /// Messages taken by counting receives (the Python binding's) whose
    /// `task_done` has not been called yet: `join` waits for it to be 0 and
    /// the channel empty. Counted before `head` moves, on the consumers'
    /// line.
    pub unfinished: AtomicU64,
    /// Bumped (and futex-woken) when `unfinished` drops to 0 while someone
    /// joins.
    pub join_event: AtomicU32,
    /// Processes sleeping in `join` on `join_event`.
    pub join_waiters: AtomicU32,
    /// Reserved (keeps `head` and the task words alone on their line).
    pub reserved2: [u64; 5],
    /// 1 once the channel was shut down (no more sends; receivers drain).
    pub shutdown: AtomicU32,
    /// Bit 0: a sender attached at some time; bit 1: a receiver did.
    pub ever_attached: AtomicU32,
    /// Senders sleeping for room (MPMC on `space`, SPSC on `head`). On a
    /// line of its own, written only by sleepers, so that checking it after
    /// every message costs no cache miss.
    pub send_waiters: AtomicU32,
    /// Receivers sleeping (SPSC, on `tail`).
    pub recv_waiters: AtomicU32,
    /// MPMC: bumped (and futex-woken) when room is freed while
    /// `send_waiters > 0`.
    pub space: AtomicU32,
    /// Reserved, zero.
    pub reserved3: u32,
    /// Reserved, zero.
    pub reserved4: [u64; 5],
    /// Who is attached: 0 for a free word, else `pid | role << 32 |
    /// count << 34` (role 1 sender, 2 receiver; count: that process's
    /// handles of that role). SPSC channels use word 0 (sender) and 1
    /// (receiver) only.
    pub attached: [AtomicU64; CHANNEL_ATTACH_SLOTS],
}

/// The control record of a channel cell (meaningful at a frame's first
/// cell). `state` is the queue slot word (`QueueSlot`'s bits; "skip" marks
/// a frame without a message: a padding frame, an aborted reservation or a
/// dead producer's claim). SPSC channels leave `state` zero.
#[repr(C)]
pub struct ChannelCell {
    /// Phase, lap tag, claimant pid and flags, as in `QueueSlot`.
    pub state: AtomicU64,
    /// The message length in bytes, or [`PAD_LEN`].
    pub len: AtomicU32,
    /// CRC32C of the payload (with [`message_flags::CHECKSUM`]), else 0.
    pub checksum: AtomicU32,
}

/// Header of a topic's block: a broadcast ring laid out like a channel's
/// (cells of [`MESSAGE_CELL`] bytes and one [`TopicCell`] per cell), written
/// by one publisher at a time (the `lock`) and read by any number of
/// subscribers, each with its own cursor. See `topic.rs`.
#[repr(C)]
pub struct TopicHeader {
    /// [`kind::TOPIC`].
    pub kind: u32,
    /// [`message_flags`] bits (`CHECKSUM` only).
    pub flags: u32,
    /// Data bytes in the ring: `cells * MESSAGE_CELL`.
    pub capacity: u64,
    /// Number of cells.
    pub cells: u64,
    /// `cells.next_power_of_two()`.
    pub one_lap: u64,
    /// Largest message in bytes.
    pub max_message: u64,
    /// Offset of the control records (= header size).
    pub cells_offset: u64,
    /// Offset of the data ring.
    pub data_offset: u64,
    /// Reserved, zero.
    pub reserved0: u64,
    /// Position after the newest published message.
    pub tail: AtomicU64,
    /// Position of the newest published message (`u64::MAX`: none yet).
    pub newest: AtomicU64,
    /// Sequence number the next message gets (messages published so far).
    pub next_seq: AtomicU64,
    /// Subscribers sleeping on `tail`.
    pub sub_waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved1: u32,
    /// Reserved (keeps `tail` off the `oldest` line).
    pub reserved2: [u64; 4],
    /// Position of the oldest message still intact. A publisher moves it
    /// past a frame *before* overwriting any byte of it.
    pub oldest: AtomicU64,
    /// Reserved (keeps `oldest` alone on its cache line).
    pub reserved3: [u64; 7],
    /// Publish lock: 0 when free, else the holder's pid.
    pub lock: AtomicU32,
    /// Publishers sleeping on `lock`.
    pub lock_waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved4: [u64; 7],
}

/// The control record of a topic cell (meaningful at a frame's first cell).
#[repr(C)]
pub struct TopicCell {
    /// The message's sequence number (0 for the first message).
    pub seq: AtomicU64,
    /// The message length in bytes, or [`PAD_LEN`].
    pub len: AtomicU32,
    /// CRC32C of the payload (with [`message_flags::CHECKSUM`]), else 0.
    pub checksum: AtomicU32,
}

const fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn mix(hash: u64, value: u64) -> u64 {
    fnv1a(hash, &value.to_le_bytes())
}

/// The state of a robust lock, one cache line: the lock of a [`LockHeader`]
/// and a [`ConditionHeader`], and the writers' lock of an [`RwLockHeader`].
///
/// `word` is 0 while the lock is free and the holder's pid while it is
/// held; it is the futex word waiters sleep on. The holder writes
/// `holder_stamp` (`pid | start_time << 24`, start time in clock ticks
/// after boot, truncated to 40 bits) and `holder_tid` after taking `word`
/// and clears both before letting go; a waiter that finds the holder dead
/// (`holder_stamp` tells a reused pid apart) takes `word` over with a
/// compare-and-swap and is told (FORMAT.md, "Coordination primitives").
#[repr(C)]
pub struct LockState {
    /// 0 when free, else the holder's pid (the futex word).
    pub word: AtomicU32,
    /// Waits sleeping on `word`, or about to (a releaser wakes one when
    /// it is not 0).
    pub sleepers: AtomicU32,
    /// The holder's pid (bits 0-23) and start time (bits 24-63); 0 when
    /// free or not yet written.
    pub holder_stamp: AtomicU64,
    /// The holding thread's id (diagnostics); 0 when free.
    pub holder_tid: AtomicU32,
    /// Pid of the last holder that died holding the lock.
    pub last_dead_pid: AtomicU32,
    /// Times the lock was taken over from a holder that died holding it.
    pub owner_deaths: AtomicU64,
    /// Reserved, zero.
    pub reserved: [u64; 4],
}

/// The block of a lock: fixed fields, then its [`LockState`].
#[repr(C)]
pub struct LockHeader {
    /// [`kind::LOCK`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
    /// The lock.
    pub lock: LockState,
}

/// The block of a condition variable: its own lock and the notification
/// sequence its waiters sleep on.
#[repr(C)]
pub struct ConditionHeader {
    /// [`kind::CONDITION`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
    /// The lock a waiter holds around `wait`.
    pub lock: LockState,
    /// Bumped by every notify (the futex word of waiters).
    pub seq: AtomicU32,
    /// Waits in progress (sleeping, or between letting go of the lock and
    /// sleeping).
    pub waiters: AtomicU32,
    /// The wake-ups notifies owe: bits 0-31 the waits in progress that no
    /// notify has picked yet, bits 32-63 the picks not yet taken by a
    /// waiter (so that `notify(n)` ends at most `n` waits).
    pub signals: AtomicU64,
    /// Reserved, zero.
    pub reserved2: [u64; 6],
}

/// The block of a readers-writer lock: fixed fields, the writers' lock,
/// the drain word, then `reader_slots` [`ReaderSlot`]s at `slots_offset`.
#[repr(C)]
pub struct RwLockHeader {
    /// [`kind::RWLOCK`].
    pub kind: u32,
    /// Number of reader slots: the most processes that hold read locks at once.
    pub reader_slots: u32,
    /// Offset of slot 0 from the start of the block ([`RWLOCK_HEADER_SIZE`]).
    pub slots_offset: u64,
    /// Reserved, zero.
    pub reserved0: [u64; 6],
    /// The writers' lock: held by the writer, and while a writer waits for
    /// readers to leave (new readers then wait).
    pub writer: LockState,
    /// Bumped by a reader that lets go while a writer waits for readers to
    /// leave (the futex word of that writer).
    pub drain: AtomicU32,
    /// 1 while a writer sleeps on `drain`.
    pub drain_waiting: AtomicU32,
    /// Read locks taken back from reader processes that died holding them.
    pub reader_deaths: AtomicU64,
    /// Reserved, zero.
    pub reserved1: [u64; 6],
}

/// One reader process's read locks on an [`RwLockHeader`].
#[repr(C)]
pub struct ReaderSlot {
    /// The process's pid (bits 0-23) and start time (bits 24-63), 0 when
    /// the slot is free.
    pub stamp: AtomicU64,
    /// Read locks the process holds (its threads' together).
    pub count: AtomicU32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved (one slot per cache line), zero.
    pub reserved1: [u64; 6],
}

/// `SemaphoreHeader::flags`: releases beyond the initial value fail.
pub const SEMAPHORE_BOUNDED: u32 = 1;

/// The block of a counting semaphore.
#[repr(C)]
pub struct SemaphoreHeader {
    /// [`kind::SEMAPHORE`].
    pub kind: u32,
    /// [`SEMAPHORE_BOUNDED`] or 0.
    pub flags: u32,
    /// The initial value (the bound of a bounded semaphore).
    pub initial: u64,
    /// Reserved, zero.
    pub reserved0: [u64; 6],
    /// Permits available (the futex word of waiters).
    pub value: AtomicU32,
    /// Waits sleeping on `value`, or about to.
    pub waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
}

/// The block of a barrier: fixed fields, the state, then `parties`
/// [`BarrierSlot`]s at `slots_offset`.
#[repr(C)]
pub struct BarrierHeader {
    /// [`kind::BARRIER`].
    pub kind: u32,
    /// Parties that must call `wait` for the barrier to trip.
    pub parties: u32,
    /// Offset of slot 0 from the start of the block ([`BARRIER_HEADER_SIZE`]).
    pub slots_offset: u64,
    /// Reserved, zero.
    pub reserved0: [u64; 6],
    /// Bits 0-31 the phase (the futex word): generation << 1, | 1 once
    /// broken; bits 32-63 the parties arrived in this generation.
    pub state: AtomicU64,
    /// The phase a reset left, with bit 0 (broken) set; 0 before any
    /// reset (a waiter of that generation woken after the reset was
    /// broken, not released).
    pub reset_from: AtomicU32,
    /// Waits sleeping on the phase, or about to.
    pub waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved1: [u64; 6],
}

/// The party waiting at one arrival index of a [`BarrierHeader`].
#[repr(C)]
pub struct BarrierSlot {
    /// The waiting process's pid (bits 0-23) and start time (bits 24-63),
    /// 0 when nobody waits at this index.
    pub stamp: AtomicU64,
}

/// The block of an event.
#[repr(C)]
pub struct EventHeader {
    /// [`kind::EVENT`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
    /// 1 while set, 0 while clear (the futex word of waiters).
    pub flag: AtomicU32,
    /// Waits sleeping on `flag`, or about to.
    pub waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved2: [u64; 7],
}

/// The block of a count-down latch.
#[repr(C)]
pub struct LatchHeader {
    /// [`kind::LATCH`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// The count it started from.
    pub initial: u64,
    /// Reserved, zero.
    pub reserved1: [u64; 6],
    /// Count-downs still awaited (the futex word of waiters); never grows.
    pub count: AtomicU32,
    /// Waits sleeping on `count`, or about to.
    pub waiters: AtomicU32,
    /// Reserved, zero.
    pub reserved2: [u64; 7],
}

/// `OnceHeader::state` once the initialiser has run.
pub const ONCE_DONE: u32 = u32::MAX;

/// The block of a run-once cell.
#[repr(C)]
pub struct OnceHeader {
    /// [`kind::ONCE`].
    pub kind: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Reserved, zero.
    pub reserved1: [u64; 7],
    /// 0 before the initialiser ran, [`ONCE_DONE`] after, else the pid of
    /// the process running it (the futex word of waiters).
    pub state: AtomicU32,
    /// Waits sleeping on `state`, or about to.
    pub waiters: AtomicU32,
    /// The runner's pid (bits 0-23) and start time (bits 24-63).
    pub runner_stamp: AtomicU64,
    /// Initialiser runs started (more than 1 after a failure or a death).
    pub attempts: AtomicU64,
    /// Reserved, zero.
    pub reserved2: [u64; 5],
}

/// The layout fingerprint: FNV-1a (64-bit, offset basis
/// `0xcbf29ce484222325`) over these values, each as 8 little-endian bytes:
/// pointer width in bits, 1 for little-endian (2 for big), [`CACHE_LINE`],
/// then the sizes of `SegmentHeader`, `Entry`, `ArrayHeader`, `QueueHeader`,
/// `QueueSlot`, `StackHeader`, `MapHeader`, `MapSlot`,
/// `ChannelHeader`, `ChannelCell`, `TopicHeader`, `TopicCell`,
/// `AttachSlot`, `BlockHeader`, `LockState`, `LockHeader`,
/// `ConditionHeader`, `RwLockHeader`, `ReaderSlot`, `SemaphoreHeader`,
/// `BarrierHeader`, `BarrierSlot`, `EventHeader`, `LatchHeader`,
/// `OnceHeader` (see
/// FORMAT.md). A segment whose fingerprint differs was written by a build
/// whose layout differs and is refused.
pub const fn fingerprint() -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    h = mix(h, usize::BITS as u64);
    h = mix(h, if cfg!(target_endian = "little") { 1 } else { 2 });
    h = mix(h, CACHE_LINE);
    let sizes = STRUCT_SIZES;
    let mut i = 0;
    while i < sizes.len() {
        h = mix(h, sizes[i]);
        i += 1;
    }
    h
}

/// The struct sizes that enter the fingerprint, in order.
const STRUCT_SIZES: [u64; 25] = [
    SEGMENT_HEADER_SIZE,
    ENTRY_SIZE,
    ARRAY_HEADER_SIZE,
    QUEUE_HEADER_SIZE,
    QUEUE_SLOT_SIZE,
    STACK_HEADER_SIZE,
    MAP_HEADER_SIZE,
    MAP_SLOT_SIZE,
    CHANNEL_HEADER_SIZE,
    CHANNEL_CELL_SIZE,
    TOPIC_HEADER_SIZE,
    TOPIC_CELL_SIZE,
    ATTACH_SLOT_SIZE,
    BLOCK_HEADER_SIZE,
    LOCK_STATE_SIZE,
    LOCK_HEADER_SIZE,
    CONDITION_HEADER_SIZE,
    RWLOCK_HEADER_SIZE,
    READER_SLOT_SIZE,
    SEMAPHORE_HEADER_SIZE,
    BARRIER_HEADER_SIZE,
    BARRIER_SLOT_SIZE,
    EVENT_HEADER_SIZE,
    LATCH_HEADER_SIZE,
    ONCE_HEADER_SIZE,
];

/// `size_of::<SegmentHeader>()` in this format version.
pub const SEGMENT_HEADER_SIZE: u64 = 1024;
/// `size_of::<Entry>()` in this format version.
pub const ENTRY_SIZE: u64 = 320;
/// `size_of::<ArrayHeader>()` in this format version.
pub const ARRAY_HEADER_SIZE: u64 = 64;
/// `size_of::<QueueHeader>()` in this format version.
pub const QUEUE_HEADER_SIZE: u64 = 192;
/// `size_of::<QueueSlot>()` in this format version.
pub const QUEUE_SLOT_SIZE: u64 = 8;
/// `size_of::<StackHeader>()` in this format version.
pub const STACK_HEADER_SIZE: u64 = 192;
/// `size_of::<MapHeader>()` in this format version.
pub const MAP_HEADER_SIZE: u64 = 128;
/// `size_of::<MapSlot>()` in this format version.
pub const MAP_SLOT_SIZE: u64 = 24;
/// `size_of::<ChannelHeader>()` in this format version.
pub const CHANNEL_HEADER_SIZE: u64 = 512;
/// `size_of::<ChannelCell>()` in this format version.
pub const CHANNEL_CELL_SIZE: u64 = 16;
/// `size_of::<TopicHeader>()` in this format version.
pub const TOPIC_HEADER_SIZE: u64 = 256;
/// `size_of::<TopicCell>()` in this format version.
pub const TOPIC_CELL_SIZE: u64 = 16;
/// `size_of::<AttachSlot>()` in this format version.
pub const ATTACH_SLOT_SIZE: u64 = 16;
/// `size_of::<BlockHeader>()` in this format version.
pub const BLOCK_HEADER_SIZE: u64 = 64;
/// `size_of::<LockState>()` in this format version.
pub const LOCK_STATE_SIZE: u64 = 64;
/// `size_of::<LockHeader>()` in this format version.
pub const LOCK_HEADER_SIZE: u64 = 128;
/// `size_of::<ConditionHeader>()` in this format version.
pub const CONDITION_HEADER_SIZE: u64 = 192;
/// `size_of::<RwLockHeader>()` in this format version.
pub const RWLOCK_HEADER_SIZE: u64 = 192;
/// `size_of::<ReaderSlot>()` in this format version.
pub const READER_SLOT_SIZE: u64 = 64;
/// `size_of::<SemaphoreHeader>()` in this format version.
pub const SEMAPHORE_HEADER_SIZE: u64 = 128;
/// `size_of::<BarrierHeader>()` in this format version.
pub const BARRIER_HEADER_SIZE: u64 = 128;
/// `size_of::<BarrierSlot>()` in this format version.
pub const BARRIER_SLOT_SIZE: u64 = 8;
/// `size_of::<EventHeader>()` in this format version.
pub const EVENT_HEADER_SIZE: u64 = 128;
/// `size_of::<LatchHeader>()` in this format version.
pub const LATCH_HEADER_SIZE: u64 = 128;
/// `size_of::<OnceHeader>()` in this format version.
pub const ONCE_HEADER_SIZE: u64 = 128;
/// Offset of table chunk 0: after the header and the attachment slots.
pub const TABLE_OFFSET: u64 = SEGMENT_HEADER_SIZE + ATTACH_SLOTS as u64 * ATTACH_SLOT_SIZE;

#[cfg(not(loom))]
mod asserts {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    macro_rules! at {
        ($t:ty, $f:ident, $off:expr) => {
            const _: () = assert!(offset_of!($t, $f) == $off);
        };
    }

    const _: () = assert!(size_of::<SegmentHeader>() as u64 == SEGMENT_HEADER_SIZE);
    const _: () = assert!(align_of::<SegmentHeader>() == 8);
    at!(SegmentHeader, magic, 0);
    at!(SegmentHeader, format_version, 8);
    at!(SegmentHeader, header_size, 12);
    at!(SegmentHeader, fingerprint, 16);
    at!(SegmentHeader, max_size, 24);
    at!(SegmentHeader, table_offset, 32);
    at!(SegmentHeader, table_capacity, 40);
    at!(SegmentHeader, entry_size, 44);
    at!(SegmentHeader, heap_offset, 48);
    at!(SegmentHeader, seed, 56);
    at!(SegmentHeader, state, 64);
    at!(SegmentHeader, creator_pid, 68);
    at!(SegmentHeader, lock, 72);
    at!(SegmentHeader, lock_waiters, 76);
    at!(SegmentHeader, size, 80);
    at!(SegmentHeader, created_unix_ns, 88);
    at!(SegmentHeader, flags, 96);
    at!(SegmentHeader, attach_overflow, 100);
    at!(SegmentHeader, creator_start, 104);
    at!(SegmentHeader, heap_last, 112);
    at!(SegmentHeader, free_bytes, 120);
    at!(SegmentHeader, free_blocks, 128);
    at!(SegmentHeader, table_chunks, 136);
    at!(SegmentHeader, free_lists, 328);
    at!(SegmentHeader, boot_id, 712);
    at!(SegmentHeader, durable, 728);
    at!(SegmentHeader, durable_pad, 732);
    at!(SegmentHeader, header_sum, 736);
    at!(SegmentHeader, reserved, 768);

    const _: () = assert!(size_of::<AttachSlot>() as u64 == ATTACH_SLOT_SIZE);
    at!(AttachSlot, process, 0);
    at!(AttachSlot, start_time, 8);

    const _: () = assert!(size_of::<BlockHeader>() as u64 == BLOCK_HEADER_SIZE);
    at!(BlockHeader, magic, 0);
    at!(BlockHeader, state, 4);
    at!(BlockHeader, size, 8);
    at!(BlockHeader, prev_size, 16);
    at!(BlockHeader, owner, 24);
    at!(BlockHeader, owner_generation, 32);
    at!(BlockHeader, next_free, 40);
    at!(BlockHeader, prev_free, 48);
    at!(BlockHeader, check, 56);

    const _: () = assert!(size_of::<Entry>() as u64 == ENTRY_SIZE);
    const _: () = assert!(align_of::<Entry>() == 8);
    at!(Entry, generation, 0);
    at!(Entry, state, 8);
    at!(Entry, kind, 12);
    at!(Entry, elem_size, 16);
    at!(Entry, key_size, 20);
    at!(Entry, capacity, 24);
    at!(Entry, offset, 32);
    at!(Entry, size, 40);
    at!(Entry, creator_pid, 48);
    at!(Entry, name_hash, 52);
    at!(Entry, reserved, 56);
    at!(Entry, name, 64);
    at!(Entry, key_type, 128);
    at!(Entry, elem_type, 192);

    const _: () = assert!(size_of::<ArrayHeader>() as u64 == ARRAY_HEADER_SIZE);
    at!(ArrayHeader, kind, 0);
    at!(ArrayHeader, elem_size, 4);
    at!(ArrayHeader, len, 8);
    at!(ArrayHeader, data_offset, 16);
    at!(ArrayHeader, reserved, 24);

    const _: () = assert!(size_of::<QueueHeader>() as u64 == QUEUE_HEADER_SIZE);
    at!(QueueHeader, kind, 0);
    at!(QueueHeader, elem_size, 4);
    at!(QueueHeader, capacity, 8);
    at!(QueueHeader, one_lap, 16);
    at!(QueueHeader, slot_stride, 24);
    at!(QueueHeader, slots_offset, 32);
    at!(QueueHeader, shutdown, 40);
    at!(QueueHeader, reserved0, 48);
    at!(QueueHeader, tail, 64);
    at!(QueueHeader, reserved1, 72);
    at!(QueueHeader, head, 128);
    at!(QueueHeader, unfinished, 136);
    at!(QueueHeader, join_event, 144);
    at!(QueueHeader, join_waiters, 148);
    at!(QueueHeader, reserved2, 152);

    const _: () = assert!(size_of::<QueueSlot>() as u64 == QUEUE_SLOT_SIZE);
    at!(QueueSlot, state, 0);

    const _: () = assert!(size_of::<StackHeader>() as u64 == STACK_HEADER_SIZE);
    at!(StackHeader, kind, 0);
    at!(StackHeader, elem_size, 4);
    at!(StackHeader, capacity, 8);
    at!(StackHeader, slot_stride, 16);
    at!(StackHeader, slots_offset, 24);
    at!(StackHeader, shutdown, 32);
    at!(StackHeader, reserved0, 40);
    at!(StackHeader, top, 64);
    at!(StackHeader, not_empty, 72);
    at!(StackHeader, pop_waiters, 76);
    at!(StackHeader, reserved1, 80);
    at!(StackHeader, reserved2, 128);
    at!(StackHeader, not_full, 136);
    at!(StackHeader, push_waiters, 140);
    at!(StackHeader, reserved3, 144);

    const _: () = assert!(size_of::<MapHeader>() as u64 == MAP_HEADER_SIZE);
    at!(MapHeader, kind, 0);
    at!(MapHeader, value_size, 4);
    at!(MapHeader, capacity, 8);
    at!(MapHeader, key_size, 16);
    at!(MapHeader, reserved0, 20);
    at!(MapHeader, slot_stride, 24);
    at!(MapHeader, slots_offset, 32);
    at!(MapHeader, hash_seed, 40);
    at!(MapHeader, ctrl_offset, 48);
    at!(MapHeader, reserved1, 56);
    at!(MapHeader, len, 64);
    at!(MapHeader, reserved2, 72);

    const _: () = assert!(size_of::<MapSlot>() as u64 == MAP_SLOT_SIZE);
    at!(MapSlot, state, 0);
    at!(MapSlot, home, 8);
    at!(MapSlot, hash, 16);

    const _: () = assert!(size_of::<ChannelHeader>() as u64 == CHANNEL_HEADER_SIZE);
    at!(ChannelHeader, kind, 0);
    at!(ChannelHeader, flags, 4);
    at!(ChannelHeader, capacity, 8);
    at!(ChannelHeader, cells, 16);
    at!(ChannelHeader, one_lap, 24);
    at!(ChannelHeader, max_message, 32);
    at!(ChannelHeader, cells_offset, 40);
    at!(ChannelHeader, data_offset, 48);
    at!(ChannelHeader, reserved0, 56);
    at!(ChannelHeader, tail, 64);
    at!(ChannelHeader, reserved1, 72);
    at!(ChannelHeader, head, 128);
    at!(ChannelHeader, unfinished, 136);
    at!(ChannelHeader, join_event, 144);
    at!(ChannelHeader, join_waiters, 148);
    at!(ChannelHeader, reserved2, 152);
    at!(ChannelHeader, shutdown, 192);
    at!(ChannelHeader, ever_attached, 196);
    at!(ChannelHeader, send_waiters, 200);
    at!(ChannelHeader, recv_waiters, 204);
    at!(ChannelHeader, space, 208);
    at!(ChannelHeader, reserved3, 212);
    at!(ChannelHeader, reserved4, 216);
    at!(ChannelHeader, attached, 256);

    const _: () = assert!(size_of::<ChannelCell>() as u64 == CHANNEL_CELL_SIZE);
    at!(ChannelCell, state, 0);
    at!(ChannelCell, len, 8);
    at!(ChannelCell, checksum, 12);

    const _: () = assert!(size_of::<TopicHeader>() as u64 == TOPIC_HEADER_SIZE);
    at!(TopicHeader, kind, 0);
    at!(TopicHeader, flags, 4);
    at!(TopicHeader, capacity, 8);
    at!(TopicHeader, cells, 16);
    at!(TopicHeader, one_lap, 24);
    at!(TopicHeader, max_message, 32);
    at!(TopicHeader, cells_offset, 40);
    at!(TopicHeader, data_offset, 48);
    at!(TopicHeader, reserved0, 56);
    at!(TopicHeader, tail, 64);
    at!(TopicHeader, newest, 72);
    at!(TopicHeader, next_seq, 80);
    at!(TopicHeader, sub_waiters, 88);
    at!(TopicHeader, reserved1, 92);
    at!(TopicHeader, reserved2, 96);
    at!(TopicHeader, oldest, 128);
    at!(TopicHeader, reserved3, 136);
    at!(TopicHeader, lock, 192);
    at!(TopicHeader, lock_waiters, 196);
    at!(TopicHeader, reserved4, 200);

    const _: () = assert!(size_of::<LockState>() as u64 == LOCK_STATE_SIZE);
    const _: () = assert!(size_of::<LockHeader>() as u64 == LOCK_HEADER_SIZE);
    const _: () = assert!(size_of::<ConditionHeader>() as u64 == CONDITION_HEADER_SIZE);
    const _: () = assert!(size_of::<RwLockHeader>() as u64 == RWLOCK_HEADER_SIZE);
    const _: () = assert!(size_of::<ReaderSlot>() as u64 == READER_SLOT_SIZE);
    const _: () = assert!(size_of::<SemaphoreHeader>() as u64 == SEMAPHORE_HEADER_SIZE);
    const _: () = assert!(size_of::<BarrierHeader>() as u64 == BARRIER_HEADER_SIZE);
    const _: () = assert!(size_of::<BarrierSlot>() as u64 == BARRIER_SLOT_SIZE);
    const _: () = assert!(size_of::<EventHeader>() as u64 == EVENT_HEADER_SIZE);
    const _: () = assert!(size_of::<LatchHeader>() as u64 == LATCH_HEADER_SIZE);
    const _: () = assert!(size_of::<OnceHeader>() as u64 == ONCE_HEADER_SIZE);
    const _: () = assert!(size_of::<TopicCell>() as u64 == TOPIC_CELL_SIZE);
    at!(TopicCell, seq, 0);
    at!(TopicCell, len, 8);
    at!(TopicCell, checksum, 12);
}

/// A field of a layout struct, as C declares it (for the generated C
/// header and the FORMAT.md check).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct FieldInfo {
    /// The field name (as in Rust, C and FORMAT.md).
    pub name: &'static str,
    /// The C type of the field, or of one element of an array field.
    pub c_type: &'static str,
    /// The array length, or 0 for a scalar.
    pub len: usize,
    /// Whether processes change it concurrently (atomic in Rust).
    pub atomic: bool,
    /// Offset from the start of the struct.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

/// A layout struct: its Rust and C names, size and fields.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct StructInfo {
    /// The Rust name (and FORMAT.md's).
    pub name: &'static str,
    /// The C name in `include/shmds.h`.
    pub c_name: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// The fields, in order.
    pub fields: Vec<FieldInfo>,
}

/// The C spelling of a field type.
#[cfg(not(loom))]
trait CType {
    const C: &'static str;
    const LEN: usize = 0;
    const ATOMIC: bool = false;
}

#[cfg(not(loom))]
macro_rules! c_type {
    ($($t:ty => $c:literal, $atomic:literal;)*) => {$(
        impl CType for $t {
            const C: &'static str = $c;
            const ATOMIC: bool = $atomic;
        }
    )*};
}

#[cfg(not(loom))]
c_type! {
    u8 => "uint8_t", false;
    u32 => "uint32_t", false;
    u64 => "uint64_t", false;
    AtomicU32 => "uint32_t", true;
    AtomicU64 => "uint64_t", true;
}

#[cfg(not(loom))]
impl CType for LockState {
    const C: &'static str = "struct shmds_lock_state";
    const ATOMIC: bool = true;
}

#[cfg(not(loom))]
impl<T: CType, const N: usize> CType for [T; N] {
    const C: &'static str = T::C;
    const LEN: usize = N;
    const ATOMIC: bool = T::ATOMIC;
}

#[cfg(not(loom))]
macro_rules! describe {
    ($t:ident as $c:literal: $($f:ident),* $(,)?) => {{
        fn info<T: CType>(
            name: &'static str,
            offset: usize,
            _field: fn(&$t) -> &T,
        ) -> FieldInfo {
            FieldInfo {
                name,
                c_type: T::C,
                len: T::LEN,
                atomic: T::ATOMIC,
                offset,
                size: core::mem::size_of::<T>(),
            }
        }
        StructInfo {
            name: stringify!($t),
            c_name: $c,
            size: core::mem::size_of::<$t>(),
            fields: vec![$(info(stringify!($f), core::mem::offset_of!($t, $f), |s: &$t| &s.$f)),*],
        }
    }};
}

/// Every layout struct with its fields: the single list that FORMAT.md
/// (by test) and `include/shmds.h` (generated) follow.
#[doc(hidden)]
#[cfg(not(loom))]
pub fn describe() -> Vec<StructInfo> {
    vec![
        describe!(SegmentHeader as "shmds_segment_header": magic, format_version, header_size,
            fingerprint, max_size, table_offset, table_capacity, entry_size, heap_offset, seed,
            state, creator_pid, lock, lock_waiters, size, created_unix_ns, flags,
            attach_overflow, creator_start, heap_last, free_bytes, free_blocks, table_chunks,
            free_lists, boot_id, durable, durable_pad, header_sum, reserved),
        describe!(AttachSlot as "shmds_attach_slot": process, start_time),
        describe!(BlockHeader as "shmds_block_header": magic, state, size, prev_size, owner,
            owner_generation, next_free, prev_free, check),
        describe!(Entry as "shmds_entry": generation, state, kind, elem_size, key_size, capacity,
            offset, size, creator_pid, name_hash, reserved, name, key_type, elem_type),
        describe!(ArrayHeader as "shmds_array_header": kind, elem_size, len, data_offset, reserved),
        describe!(QueueHeader as "shmds_queue_header": kind, elem_size, capacity, one_lap,
            slot_stride, slots_offset, shutdown, reserved0, tail, reserved1, head, unfinished,
            join_event, join_waiters, reserved2),
        describe!(QueueSlot as "shmds_queue_slot": state),
        describe!(StackHeader as "shmds_stack_header": kind, elem_size, capacity, slot_stride,
            slots_offset, shutdown, reserved0, top, not_empty, pop_waiters, reserved1, reserved2,
            not_full, push_waiters, reserved3),
        describe!(MapHeader as "shmds_map_header": kind, value_size, capacity, key_size, reserved0,
            slot_stride, slots_offset, hash_seed, ctrl_offset, reserved1, len, reserved2),
        describe!(MapSlot as "shmds_map_slot": state, home, hash),
        describe!(ChannelHeader as "shmds_channel_header": kind, flags, capacity, cells, one_lap,
            max_message, cells_offset, data_offset, reserved0, tail, reserved1, head, unfinished,
            join_event, join_waiters, reserved2, shutdown, ever_attached, send_waiters, recv_waiters, space, reserved3, reserved4,
            attached),
        describe!(ChannelCell as "shmds_channel_cell": state, len, checksum),
        describe!(TopicHeader as "shmds_topic_header": kind, flags, capacity, cells, one_lap,
            max_message, cells_offset, data_offset, reserved0, tail, newest, next_seq,
            sub_waiters, reserved1, reserved2, oldest, reserved3, lock, lock_waiters, reserved4),
        describe!(TopicCell as "shmds_topic_cell": seq, len, checksum),
        describe!(LockState as "shmds_lock_state": word, sleepers, holder_stamp, holder_tid,
            last_dead_pid, owner_deaths, reserved),
        describe!(LockHeader as "shmds_lock_header": kind, reserved0, reserved1, lock),
        describe!(ConditionHeader as "shmds_condition_header": kind, reserved0, reserved1, lock,
            seq, waiters, signals, reserved2),
        describe!(RwLockHeader as "shmds_rwlock_header": kind, reader_slots, slots_offset,
            reserved0, writer, drain, drain_waiting, reader_deaths, reserved1),
        describe!(ReaderSlot as "shmds_reader_slot": stamp, count, reserved0, reserved1),
        describe!(SemaphoreHeader as "shmds_semaphore_header": kind, flags, initial, reserved0,
            value, waiters, reserved1),
        describe!(BarrierHeader as "shmds_barrier_header": kind, parties, slots_offset, reserved0,
            state, reset_from, waiters, reserved1),
        describe!(BarrierSlot as "shmds_barrier_slot": stamp),
        describe!(EventHeader as "shmds_event_header": kind, reserved0, reserved1, flag, waiters,
            reserved2),
        describe!(LatchHeader as "shmds_latch_header": kind, reserved0, initial, reserved1, count,
            waiters, reserved2),
        describe!(OnceHeader as "shmds_once_header": kind, reserved0, reserved1, state, waiters,
            runner_stamp, attempts, reserved2),
    ]
}
