//! The table of named entries.
//!
//! Lookups are lock-free: each entry is guarded by a sequence lock (its
//! `generation`, see [`Entry`]). Changes (create, erase) and heap allocations
//! are made under one registration lock in the segment header, so a name is
//! created exactly once even when many processes race to create it, and an
//! entry becomes visible only after its structure is fully initialised.
//!
//! The lock word holds the holder's pid. A process killed while holding it is
//! detected by its pid and the lock is taken over; the new holder then repairs
//! any entry left half-written (odd generation) by freeing it, and rebuilds
//! the heap from the live entries (see [`alloc`](crate::alloc)), so a block
//! the dead process was allocating or freeing is neither leaked nor owned
//! twice.
//!
//! The table is a list of chunks that grows: chunk 0 (`table_capacity`
//! entries) follows the header, chunk `k >= 1` (`table_capacity << k`
//! entries) is a heap block whose offset the header records once it exists.
//! Entry `index` numbers run through the chunks in order. A name lives in
//! one of the [`PROBE`] entries after its hash's position in some chunk;
//! creating takes the first free one, chunk by chunk, and allocates the
//! next chunk when all are taken. A lookup probes every chunk's window (a
//! chunk count that grows with the logarithm of the number of names) up to
//! the first entry that was never used, skipping entries whose stored name
//! hash differs without reading them.

use crate::alloc::{Block, Heap, Memory};
use crate::error::{Error, Result};
use crate::layout::{
    block_state, entry_state, kind, name_hash, Entry, SegmentHeader, BLOCK_HEADER_SIZE, ENTRY_SIZE,
    KEY_TYPE_MAX, NAME_MAX, TABLE_CHUNKS, TYPE_MAX,
};
use crate::process::{current_pid, is_alive};
use crate::sync::{fence, AtomicU64, Ordering};
#[cfg(loom)]
use crate::wait::PeerWait;
use crate::wait::{futex_wait, futex_wake};
use std::time::Duration;

/// What the table says about one live entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Position in the table.
    pub index: u64,
    /// Generation when read (even).
    pub generation: u64,
    /// The entry's name.
    pub name: String,
    /// Kind code (see [`layout::kind`](crate::layout::kind)).
    pub kind: u32,
    /// Element (value) type descriptor.
    pub elem_type: String,
    /// Key type descriptor (maps), else empty.
    pub key_type: String,
    /// Bytes per element (value).
    pub elem_size: u32,
    /// Bytes per key (maps), else 0.
    pub key_size: u32,
    /// Capacity (array length, queue/stack/map capacity).
    pub capacity: u64,
    /// Block offset from the segment start.
    pub offset: u64,
    /// Block size in bytes.
    pub size: u64,
    /// Pid of the creating process.
    pub creator_pid: u32,
}

impl EntryInfo {
    /// The kind as a word: "array", "queue", "stack", "map".
    pub fn kind_name(&self) -> &'static str {
        kind::name(self.kind)
    }
}

/// The description of an entry to create.
#[derive(Clone, Debug)]
pub(crate) struct NewEntry<'a> {
    pub name: &'a str,
    pub kind: u32,
    pub elem_type: &'a str,
    pub key_type: &'a str,
    pub elem_size: u32,
    pub key_size: u32,
    pub capacity: u64,
    pub block_size: u64,
}

/// Check an entry name: 1 to 63 bytes of UTF-8 without control characters.
pub(crate) fn validate_entry_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "entry names cannot be empty"
    } else if name.len() > NAME_MAX {
        "entry names are at most 63 bytes of UTF-8"
    } else if name.chars().any(|c| c.is_control()) {
        "entry names cannot contain control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Entries a name may occupy after its hash's position, in each chunk.
pub(crate) const PROBE: usize = 32;

/// Bytes of table chunk `k` of a table whose chunk 0 has `capacity` entries.
pub(crate) fn chunk_bytes(capacity: u32, k: usize) -> Option<u64> {
    (capacity as u64)
        .checked_shl(k as u32)
        .filter(|&n| n >> k == capacity as u64)?
        .checked_mul(ENTRY_SIZE)
}

/// Index of the first entry of chunk `k`.
fn chunk_base(capacity: u32, k: usize) -> u64 {
    (capacity as u64) * ((1u64 << k) - 1)
}

/// The chunk holding entry `index`, and its position there.
fn locate(capacity: u32, index: u64) -> Option<(usize, usize)> {
    let units = index / capacity as u64 + 1;
    let k = (63 - units.leading_zeros()) as usize;
    (k < TABLE_CHUNKS).then(|| (k, (index - chunk_base(capacity, k)) as usize))
}

/// A view of a segment's header and table.
pub(crate) struct Table<'a> {
    /// The segment header; only its atomic words are used.
    pub header: &'a SegmentHeader,
    /// The memory the table chunks and the heap live in.
    pub memory: &'a dyn Memory,
    pub segment: &'a str,
    /// How long to wait for a live holder of the registration lock.
    pub lock_timeout: Duration,
}

/// Held registration lock; released on drop.
pub(crate) struct TableLock<'a> {
    header: &'a SegmentHeader,
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        // A loom model process that "died" unwinds through this guard; a
        // killed process never releases the lock. Its stores are all visible
        // by the time a survivor can tell it is dead (the kernel's teardown
        // orders them before the exit anyone observes); loom does not know
        // that, so the death is modelled as a release of the lock word's
        // unchanged value, which the survivor's takeover CAS acquires.
        #[cfg(loom)]
        if crate::fault::crash::is_dying(current_pid()) {
            self.header.lock.fetch_add(0, Ordering::Release);
            return;
        }
        // SeqCst swap then SeqCst load: pairs with the waiter's SeqCst
        // increment of `lock_waiters` before it sleeps, so either it sees the
        // lock free or we see it waiting and wake it.
        self.header.lock.swap(0, Ordering::SeqCst);
        if self.header.lock_waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.header.lock, 1);
        }
    }
}

fn store_text(words: &[AtomicU64], text: &str) {
    let bytes = text.as_bytes();
    for (i, word) in words.iter().enumerate() {
        let mut chunk = [0u8; 8];
        for (j, b) in chunk.iter_mut().enumerate() {
            if let Some(&c) = bytes.get(i * 8 + j) {
                *b = c;
            }
        }
        word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
    }
}

/// The bytes of a text field (`N` = 8 × its words), without allocating.
fn load_text<const N: usize>(words: &[AtomicU64]) -> [u8; N] {
    let mut out = [0u8; N];
    for (chunk, word) in out.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    out
}

/// Decode a NUL-terminated UTF-8 field read from the segment.
fn decode_text(raw: &[u8], field: &str, max: usize) -> std::result::Result<String, String> {
    let end = raw
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| format!("{field} is not NUL-terminated"))?;
    if end > max {
        return Err(format!("{field} is longer than {max} bytes"));
    }
    std::str::from_utf8(&raw[..end])
        .map(str::to_owned)
        .map_err(|_| format!("{field} is not valid UTF-8"))
}

/// How often a reader retries an entry that is being changed before it
/// treats the entry as absent (fewer under loom, to keep models small).
#[cfg(not(loom))]
const READ_ATTEMPTS: usize = 64;
#[cfg(loom)]
const READ_ATTEMPTS: usize = 2;

/// Raw field values of one entry, read under its sequence lock.
struct RawEntry {
    generation: u64,
    state: u32,
    kind: u32,
    elem_size: u32,
    key_size: u32,
    capacity: u64,
    offset: u64,
    size: u64,
    creator_pid: u32,
    name: [u8; 64],
    key_type: [u8; 64],
    elem_type: [u8; 128],
}

impl<'a> Table<'a> {
    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            name: self.segment.to_owned(),
            detail,
        }
    }

    /// A consistent copy of entry `index`, or `None` if it is being changed
    /// right now (or was left half-changed by a dead process).
    fn read_raw(&self, e: &Entry) -> Option<RawEntry> {
        for _ in 0..READ_ATTEMPTS {
            let g1 = e.generation.load(Ordering::Acquire);
            if g1 % 2 == 1 {
                crate::sync::spin_hint();
                continue;
            }
            let raw = RawEntry {
                generation: g1,
                state: e.state.load(Ordering::Relaxed),
                kind: e.kind.load(Ordering::Relaxed),
                elem_size: e.elem_size.load(Ordering::Relaxed),
                key_size: e.key_size.load(Ordering::Relaxed),
                capacity: e.capacity.load(Ordering::Relaxed),
                offset: e.offset.load(Ordering::Relaxed),
                size: e.size.load(Ordering::Relaxed),
                creator_pid: e.creator_pid.load(Ordering::Relaxed),
                name: load_text(&e.name),
                key_type: load_text(&e.key_type),
                elem_type: load_text(&e.elem_type),
            };
            fence(Ordering::Acquire);
            if e.generation.load(Ordering::Relaxed) == g1 {
                return Some(raw);
            }
        }
        None
    }

    /// The heap of a segment's mapping.
    pub(crate) fn heap_of(mapping: &'a crate::segment::Mapping) -> Heap<'a> {
        Heap {
            header: mapping.header(),
            mem: mapping,
        }
    }

    /// The heap the table's blocks come from.
    pub(crate) fn heap(&self) -> Heap<'a> {
        Heap {
            header: self.header,
            mem: self.memory,
        }
    }

    /// Entry `index`, if its chunk exists.
    pub(crate) fn entry(&self, index: u64) -> Option<&'a Entry> {
        let (k, i) = locate(self.memory.table_capacity(), index)?;
        self.memory.chunk(k)?.get(i)
    }

    /// Every existing chunk with the index of its first entry.
    fn chunks(&self) -> impl Iterator<Item = (u64, &'a [Entry])> + '_ {
        let capacity = self.memory.table_capacity();
        (0..TABLE_CHUNKS).map_while(move |k| Some((chunk_base(capacity, k), self.memory.chunk(k)?)))
    }

    /// Entries the table has now (all chunks).
    pub(crate) fn capacity(&self) -> u64 {
        self.chunks().map(|(_, c)| c.len() as u64).sum()
    }

    /// The probe window of `hash` in `chunk`: indexes into the chunk.
    fn window(chunk: &[Entry], hash: u32) -> impl Iterator<Item = usize> {
        let len = chunk.len();
        let start = hash as usize % len.max(1);
        (0..PROBE.min(len)).map(move |j| (start + j) % len)
    }

    /// Snapshot of entry `index` if it is live. Malformed text fields are a
    /// `Corrupt` error.
    pub(crate) fn snapshot(&self, index: u64) -> Result<Option<EntryInfo>> {
        let Some(e) = self.entry(index) else {
            return Ok(None);
        };
        match self.read_raw(e) {
            Some(raw) if raw.state == entry_state::LIVE => self.decode(index, raw).map(Some),
            _ => Ok(None),
        }
    }

    /// Turn one consistent raw read into an `EntryInfo`.
    fn decode(&self, index: u64, raw: RawEntry) -> Result<EntryInfo> {
        let text = |bytes: &[u8], field: &str, max: usize| {
            decode_text(bytes, field, max).map_err(|d| self.corrupt(format!("entry {index}: {d}")))
        };
        Ok(EntryInfo {
            index,
            generation: raw.generation,
            name: text(&raw.name, "name", NAME_MAX)?,
            kind: raw.kind,
            elem_type: text(&raw.elem_type, "element type", TYPE_MAX)?,
            key_type: text(&raw.key_type, "key type", KEY_TYPE_MAX)?,
            elem_size: raw.elem_size,
            key_size: raw.key_size,
            capacity: raw.capacity,
            offset: raw.offset,
            size: raw.size,
            creator_pid: raw.creator_pid,
        })
    }

    /// Find a live entry by name (lock-free). The answer comes from the same
    /// consistent read that matched the name.
    pub(crate) fn find(&self, name: &str) -> Result<Option<EntryInfo>> {
        let wanted = name.as_bytes();
        let hash = name_hash(wanted);
        for (base, chunk) in self.chunks() {
            for i in Self::window(chunk, hash) {
                let e = &chunk[i];
                // Generation first (acquire), so a hash stored by a create
                // that happened before this lookup is seen.
                let g = e.generation.load(Ordering::Acquire);
                let stored = e.name_hash.load(Ordering::Relaxed);
                if g % 2 == 0 && stored == 0 {
                    // Never used (every name's hash is non-zero, and an
                    // erased entry keeps it): a name is always put in the
                    // first free entry of its window, and entries never
                    // become unused again, so the name is not further on.
                    break;
                }
                if g % 2 == 0 && stored != hash {
                    continue;
                }
                let Some(raw) = self.read_raw(e) else {
                    continue;
                };
                let len = raw
                    .name
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(raw.name.len());
                if raw.state == entry_state::LIVE && &raw.name[..len] == wanted {
                    return self.decode(base + i as u64, raw).map(Some);
                }
            }
        }
        Ok(None)
    }

    /// All live entries, in table order.
    pub(crate) fn list(&self) -> Result<Vec<EntryInfo>> {
        let mut out = Vec::new();
        for (base, chunk) in self.chunks() {
            for (i, e) in chunk.iter().enumerate() {
                if let Some(raw) = self.read_raw(e) {
                    if raw.state == entry_state::LIVE {
                        out.push(self.decode(base + i as u64, raw)?);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Take the registration lock, taking it over from a dead holder. A live
    /// holder is waited for at most `lock_timeout` ([`Error::LockBusy`]).
    pub(crate) fn lock(&self) -> Result<TableLock<'a>> {
        let me = current_pid();
        let lock = &self.header.lock;
        // Spin and yield a little (the holder is usually about to let go),
        // then sleep on the futex each round. Loom models take the
        // shorter PeerWait, so that they stay small.
        #[cfg(not(loom))]
        let mut waiting = crate::wait::Backoff::default();
        #[cfg(loom)]
        let mut waiting = PeerWait::new();
        let nap = Duration::from_millis(10);
        // The holder we wait for, and since when.
        let mut last_holder = 0;
        let mut since = std::time::Instant::now();
        loop {
            let holder = match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(TableLock {
                        header: self.header,
                    })
                }
                Err(holder) => holder,
            };
            #[cfg(not(loom))]
            if waiting.snooze() {
                continue;
            }
            #[cfg(loom)]
            if !waiting.snooze() {
                continue;
            }
            if holder != last_holder {
                last_holder = holder;
                since = std::time::Instant::now();
            }
            let held = since.elapsed();
            // Liveness costs system calls and /proc reads, so it is asked
            // only of a holder that kept the lock for a nap's time (a dead
            // holder is taken over that much later). Loom models have no
            // clock: they ask every time.
            if (cfg!(loom) || held >= nap) && holder != me && !is_alive(holder) {
                if lock
                    .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.repair();
                    return Ok(TableLock {
                        header: self.header,
                    });
                }
                continue;
            }
            if held >= self.lock_timeout {
                return Err(Error::LockBusy {
                    segment: self.segment.to_owned(),
                    pid: holder,
                    seconds: held.as_secs(),
                });
            }
            // A live holder: sleep until it unlocks (bounded, to re-check liveness).
            self.header.lock_waiters.fetch_add(1, Ordering::SeqCst);
            futex_wait(lock, holder, Some(nap));
            self.header.lock_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Take the registration lock whatever holds it, repairing as after a
    /// dead holder if anyone did: for a segment nobody else can be using
    /// (see `crate::segment::revoke`).
    pub(crate) fn seize(&self) -> TableLock<'a> {
        let held = self.header.lock.swap(current_pid(), Ordering::Acquire);
        self.header.lock_waiters.store(0, Ordering::Relaxed);
        if held != 0 {
            self.repair();
        }
        TableLock {
            header: self.header,
        }
    }

    /// After taking the lock from a dead holder: free entries it left
    /// half-written, then rebuild the heap from the live entries and table
    /// chunks (the dead process may have been changing it).
    fn repair(&self) {
        let mut owned = Vec::new();
        for (base, chunk) in self.chunks() {
            for (i, e) in chunk.iter().enumerate() {
                let g = e.generation.load(Ordering::Acquire);
                if g % 2 == 1 {
                    e.state.store(entry_state::FREE, Ordering::Relaxed);
                    e.generation.store(g.wrapping_add(1), Ordering::Release);
                    continue;
                }
                if e.state.load(Ordering::Relaxed) == entry_state::LIVE {
                    let offset = e.offset.load(Ordering::Relaxed);
                    let size = e.size.load(Ordering::Relaxed);
                    if let (Some(block), Some(bytes)) = (
                        offset.checked_sub(BLOCK_HEADER_SIZE),
                        size.checked_add(BLOCK_HEADER_SIZE),
                    ) {
                        owned.push(Block {
                            offset: block,
                            size: bytes,
                            prev_size: 0,
                            state: block_state::USED,
                            owner: base + i as u64,
                            owner_generation: g,
                        });
                    }
                }
            }
        }
        let capacity = self.memory.table_capacity();
        for k in 1..TABLE_CHUNKS {
            let offset = self.header.table_chunks[k].load(Ordering::Acquire);
            let Some(bytes) = chunk_bytes(capacity, k) else {
                break;
            };
            if offset == 0 {
                break;
            }
            if let Some(block) = offset.checked_sub(BLOCK_HEADER_SIZE) {
                owned.push(Block {
                    offset: block,
                    size: bytes + BLOCK_HEADER_SIZE,
                    prev_size: 0,
                    state: block_state::TABLE,
                    owner: k as u64,
                    owner_generation: 0,
                });
            }
        }
        // A damaged heap that cannot be rebuilt leaves the error to the next
        // allocation (and to `check`).
        let _ = self.heap().rebuild(owned);
    }

    /// A free entry for `name_hash`: its index. Allocates the next table
    /// chunk when every window is taken. Lock held.
    fn free_slot(&self, hash: u32) -> Result<u64> {
        let capacity = self.memory.table_capacity();
        for k in 0..TABLE_CHUNKS {
            let chunk = match self.memory.chunk(k) {
                Some(chunk) => chunk,
                None => self.add_chunk(k)?,
            };
            for i in Self::window(chunk, hash) {
                let e = &chunk[i];
                if e.state.load(Ordering::Acquire) == entry_state::FREE
                    && e.generation.load(Ordering::Acquire) % 2 == 0
                {
                    return Ok(chunk_base(capacity, k) + i as u64);
                }
            }
        }
        Err(Error::TableFull {
            capacity: self.capacity().min(u32::MAX as u64) as u32,
        })
    }

    /// Allocate table chunk `k` (zeroed: every entry free) and publish it.
    fn add_chunk(&self, k: usize) -> Result<&'a [Entry]> {
        let capacity = self.memory.table_capacity();
        let bytes = chunk_bytes(capacity, k).ok_or(Error::TableFull {
            capacity: self.capacity().min(u32::MAX as u64) as u32,
        })?;
        let block = self
            .heap()
            .allocate(bytes, block_state::TABLE, k as u64, 0)?;
        crate::fault::pause_point("table.chunk.allocated");
        self.header.table_chunks[k].store(block.offset + BLOCK_HEADER_SIZE, Ordering::Release);
        self.memory
            .chunk(k)
            .ok_or_else(|| self.corrupt(format!("table chunk {k} vanished after it was made")))
    }

    /// Create an entry, or (with `existing_ok`) return the live entry that
    /// already has the name. `init` initialises the freshly allocated block
    /// (given its offset) before the entry is published.
    pub(crate) fn create(
        &self,
        new: &NewEntry<'_>,
        existing_ok: bool,
        init: impl FnOnce(u64) -> Result<()>,
    ) -> Result<(EntryInfo, bool)> {
        validate_entry_name(new.name)?;
        if new.elem_type.len() > TYPE_MAX || new.key_type.len() > KEY_TYPE_MAX {
            return Err(Error::InvalidType {
                descriptor: new.elem_type.to_owned(),
                reason: format!(
                    "type descriptors are at most {TYPE_MAX} bytes (keys {KEY_TYPE_MAX})"
                ),
            });
        }
        let _guard = self.lock()?;
        if let Some(existing) = self.find(new.name)? {
            if existing_ok {
                return Ok((existing, false));
            }
            return Err(Error::EntryExists {
                segment: self.segment.to_owned(),
                name: new.name.to_owned(),
            });
        }
        let hash = name_hash(new.name.as_bytes());
        let index = self.free_slot(hash)?;
        let e = self.entry(index).ok_or_else(|| {
            self.corrupt(format!("entry {index} vanished while the lock was held"))
        })?;
        let g = e.generation.load(Ordering::Relaxed);
        let block =
            self.heap()
                .allocate(new.block_size, block_state::USED, index, g.wrapping_add(2))?;
        let offset = block.offset + BLOCK_HEADER_SIZE;
        crate::fault::pause_point("table.create.allocated");
        init(offset)?;

        e.generation.store(g.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        e.kind.store(new.kind, Ordering::Relaxed);
        e.elem_size.store(new.elem_size, Ordering::Relaxed);
        e.key_size.store(new.key_size, Ordering::Relaxed);
        e.capacity.store(new.capacity, Ordering::Relaxed);
        e.offset.store(offset, Ordering::Relaxed);
        e.size
            .store(block.size - BLOCK_HEADER_SIZE, Ordering::Relaxed);
        e.creator_pid.store(current_pid(), Ordering::Relaxed);
        e.name_hash.store(hash, Ordering::Relaxed);
        store_text(&e.name, new.name);
        store_text(&e.key_type, new.key_type);
        store_text(&e.elem_type, new.elem_type);
        crate::fault::pause_point("table.create.half_written");
        e.state.store(entry_state::LIVE, Ordering::Relaxed);
        e.generation.store(g.wrapping_add(2), Ordering::Release);
        let info = self.snapshot(index)?.ok_or_else(|| {
            self.corrupt(format!("entry {index} vanished while the lock was held"))
        })?;
        Ok((info, true))
    }

    /// Erase the live entry `name`. Its generation changes, so handles to it
    /// become stale; its block goes back to the heap (zeroed first with
    /// `wipe`, or when the segment wipes on erase).
    pub(crate) fn erase(&self, name: &str, wipe: bool) -> Result<()> {
        let _guard = self.lock()?;
        let info = self.find(name)?.ok_or_else(|| Error::EntryNotFound {
            segment: self.segment.to_owned(),
            name: name.to_owned(),
        })?;
        let e = self
            .entry(info.index)
            .ok_or_else(|| self.corrupt(format!("entry {} vanished", info.index)))?;
        let g = e.generation.load(Ordering::Relaxed);
        e.generation.store(g.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        e.state.store(entry_state::FREE, Ordering::Relaxed);
        e.generation.store(g.wrapping_add(2), Ordering::Release);
        crate::fault::pause_point("table.erase.unpublished");
        let block = info.offset.checked_sub(BLOCK_HEADER_SIZE).ok_or_else(|| {
            self.corrupt(format!(
                "entry {name:?}: block offset {} is before the heap",
                info.offset
            ))
        })?;
        let heap = self.heap();
        let owner = heap.read(block, heap.end()?)?;
        if owner.owner != info.index {
            return Err(self.corrupt(format!(
                "entry {name:?}: its heap block belongs to entry {}, not {}",
                owner.owner, info.index
            )));
        }
        heap.free(block, wipe)?;
        crate::fault::pause_point("table.erase.freed");
        Ok(())
    }
}

#[cfg(all(test, loom))]
pub(crate) mod model {
    //! A segment header, table chunks and heap in plain memory, for loom
    //! models. The heap is one `BlockHeader` per cache line (every block
    //! starts on one); table chunks live beside it, while their heap blocks
    //! are allocated as in a segment.
    use super::*;
    use crate::alloc::Memory;
    use crate::layout::BlockHeader;
    use crate::sync::AtomicU32;

    /// Model heap start (one page, so growth rounds as in a segment).
    pub(crate) const START: u64 = 4096;

    pub(crate) struct Model {
        pub header: Box<SegmentHeader>,
        pub chunks: Vec<Vec<Entry>>,
        pub lines: Vec<BlockHeader>,
        pub max_size: u64,
        pub capacity: u32,
    }

    fn entry() -> Entry {
        Entry {
            generation: AtomicU64::new(0),
            state: AtomicU32::new(0),
            kind: AtomicU32::new(0),
            elem_size: AtomicU32::new(0),
            key_size: AtomicU32::new(0),
            capacity: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            size: AtomicU64::new(0),
            creator_pid: AtomicU32::new(0),
            name_hash: AtomicU32::new(0),
            reserved: [0; 2],
            name: std::array::from_fn(|_| AtomicU64::new(0)),
            key_type: std::array::from_fn(|_| AtomicU64::new(0)),
            elem_type: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn line() -> BlockHeader {
        BlockHeader {
            magic: AtomicU32::new(0),
            state: AtomicU32::new(0),
            size: AtomicU64::new(0),
            prev_size: AtomicU64::new(0),
            owner: AtomicU64::new(0),
            owner_generation: AtomicU64::new(0),
            next_free: AtomicU64::new(0),
            prev_free: AtomicU64::new(0),
            check: AtomicU64::new(0),
        }
    }

    impl Model {
        /// A table whose chunk 0 has `capacity` entries (and up to two more
        /// chunks), a heap of `size` bytes (from START) that may grow to
        /// `max_size`.
        pub(crate) fn new(capacity: u32, size: u64, max_size: u64) -> Model {
            let m = Model {
                header: Box::new(SegmentHeader {
                    magic: crate::layout::MAGIC,
                    format_version: crate::layout::FORMAT_VERSION,
                    header_size: 0,
                    fingerprint: 0,
                    max_size,
                    table_offset: 0,
                    table_capacity: capacity,
                    entry_size: 0,
                    heap_offset: START,
                    seed: 0,
                    state: AtomicU32::new(2),
                    creator_pid: AtomicU32::new(1),
                    lock: AtomicU32::new(0),
                    lock_waiters: AtomicU32::new(0),
                    size: AtomicU64::new(size),
                    created_unix_ns: AtomicU64::new(0),
                    flags: AtomicU32::new(0),
                    attach_overflow: AtomicU32::new(0),
                    creator_start: AtomicU64::new(0),
                    heap_last: AtomicU64::new(0),
                    free_bytes: AtomicU64::new(0),
                    free_blocks: AtomicU64::new(0),
                    table_chunks: std::array::from_fn(|_| AtomicU64::new(0)),
                    free_lists: std::array::from_fn(|_| AtomicU64::new(0)),
                    boot_id: std::array::from_fn(|_| AtomicU64::new(0)),
                    durable: AtomicU32::new(0),
                    durable_pad: 0,
                    header_sum: [0; 4],
                    reserved: [0; 32],
                }),
                chunks: (0..3)
                    .map(|k| (0..(capacity as usize) << k).map(|_| entry()).collect())
                    .collect(),
                lines: (0..(max_size - START) / 64).map(|_| line()).collect(),
                max_size,
                capacity,
            };
            m.heap().init(size).unwrap();
            m
        }

        pub(crate) fn table(&self) -> Table<'_> {
            Table {
                header: &self.header,
                memory: self,
                segment: "model",
                lock_timeout: Duration::MAX,
            }
        }

        pub(crate) fn heap(&self) -> Heap<'_> {
            Heap {
                header: &self.header,
                mem: self,
            }
        }

        /// The heap is sound: tiling, lists, counters; returns its figures.
        pub(crate) fn sound(&self) -> crate::alloc::HeapStats {
            let heap = self.heap();
            let end = heap.end().unwrap();
            let stats = heap.walk(end).unwrap();
            heap.check_lists(end, &stats).unwrap();
            stats
        }
    }

    impl Memory for Model {
        fn block(&self, offset: u64) -> Option<&BlockHeader> {
            if offset < START || offset % 64 != 0 {
                return None;
            }
            self.lines.get(((offset - START) / 64) as usize)
        }

        fn chunk(&self, k: usize) -> Option<&[Entry]> {
            if k > 0 && self.header.table_chunks.get(k)?.load(Ordering::Acquire) == 0 {
                return None;
            }
            self.chunks.get(k).map(|c| c.as_slice())
        }

        fn zero(&self, offset: u64, len: u64) {
            let first = (offset - START) / 64;
            for line in &self.lines[first as usize..((offset + len - START) / 64) as usize] {
                line.magic.store(0, Ordering::Relaxed);
                line.state.store(0, Ordering::Relaxed);
                line.size.store(0, Ordering::Relaxed);
                line.check.store(0, Ordering::Relaxed);
            }
        }

        fn heap_start(&self) -> u64 {
            START
        }

        fn max_size(&self) -> u64 {
            self.max_size
        }

        fn table_capacity(&self) -> u32 {
            self.capacity
        }

        fn flags(&self) -> u32 {
            0
        }

        fn ensure_mapped(&self, _end: u64) -> Result<()> {
            Ok(())
        }

        fn grow_to(&self, new_size: u64) -> Result<()> {
            assert!(new_size <= self.max_size);
            Ok(())
        }

        fn name(&self) -> &str {
            "model"
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::model::{Model, START};
    use super::*;
    use crate::fault::crash;
    use loom::sync::Arc;

    fn spec(name: &str, bytes: u64) -> NewEntry<'_> {
        NewEntry {
            name,
            kind: kind::ARRAY,
            elem_type: "<Q",
            key_type: "",
            elem_size: 8,
            key_size: 0,
            capacity: 1,
            block_size: bytes,
        }
    }

    /// Two processes create the same name at once: exactly one creates it,
    /// the other opens the same entry.
    #[test]
    fn create_same_name_once() {
        crate::sync::model(|| {
            let m = Arc::new(Model::new(4, START + 64 * 8, START + 64 * 8));
            let m2 = m.clone();
            let t = loom::thread::spawn(move || {
                let (info, created) = m2.table().create(&spec("a", 64), true, |_| Ok(())).unwrap();
                (info.index, info.offset, created)
            });
            let (info, created) = m.table().create(&spec("a", 64), true, |_| Ok(())).unwrap();
            let other = t.join().unwrap();
            assert_eq!(info.index, other.0);
            assert_eq!(info.offset, other.1);
            assert!(created ^ other.2, "exactly one creator");
            let list = m.table().list().unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(m.sound().used_blocks, 1);
        });
    }

    /// Lookups racing with erase and re-create see either nothing or a
    /// whole entry. (The reader is the spawned thread: see `sync::tests`.)
    ///
    /// A one-entry table, so the re-create reuses the erased slot (and the
    /// freed block). An entry read is ~40 relaxed loads, each of which loom
    /// may satisfy from several stores, so this model is a *bounded* search:
    /// the first 20 000 interleavings, in which it found a lookup returning
    /// the re-created entry instead of the one it matched.
    #[test]
    fn lookup_races_erase() {
        crate::sync::model_limited(2, Some(20_000), || {
            let m = Arc::new(Model::new(1, START + 64 * 8, START + 64 * 8));
            m.table().create(&spec("a", 64), false, |_| Ok(())).unwrap();
            let m2 = m.clone();
            let reader = loom::thread::spawn(move || {
                let found = m2.table().find("a").unwrap();
                if let Some(found) = &found {
                    assert_eq!(found.name, "a");
                    assert_eq!(found.elem_type, "<Q");
                }
                found.is_some()
            });
            m.table().erase("a", false).unwrap();
            m.table().create(&spec("b", 64), false, |_| Ok(())).unwrap();
            reader.join().unwrap();
            assert!(m.table().find("a").unwrap().is_none());
            assert!(m.table().find("b").unwrap().is_some());
        });
    }

    /// Two processes churn blocks in a small heap: each creates a structure
    /// of another size and erases it again. Blocks never overlap (each
    /// creator checks its block against the other's), and afterwards the
    /// free space is one block again (freed blocks coalesced).
    #[test]
    fn allocate_free_coalesce() {
        crate::sync::model_limited(2, None, || {
            let m = Arc::new(Model::new(4, START + 64 * 12, START + 64 * 12));
            // A third structure in the middle keeps the others apart.
            m.table()
                .create(&spec("mid", 64), false, |_| Ok(()))
                .unwrap();
            let m2 = m.clone();
            let t = loom::thread::spawn(move || {
                let (a, _) = m2
                    .table()
                    .create(&spec("a", 128), false, |_| Ok(()))
                    .unwrap();
                m2.table().erase("a", false).unwrap();
                (a.offset, a.size)
            });
            let (b, _) = m.table().create(&spec("b", 64), false, |_| Ok(())).unwrap();
            m.table().erase("b", false).unwrap();
            let a = t.join().unwrap();
            // Not both live at once necessarily, but never overlapping while
            // both were: the heap walk proves the tiling at the end.
            let _ = (a, b.offset);
            m.table().erase("mid", false).unwrap();
            let stats = m.sound();
            assert_eq!(stats.free_blocks, 1, "{stats:?}");
            assert_eq!(stats.used_blocks, 0);
        });
    }

    /// A process dies at each step of creating or erasing (its allocation,
    /// a split, an unlink, a half-written entry, a free); the survivor's
    /// next registration takes the lock over and rebuilds the heap: the
    /// dead one's unpublished block is reclaimed, nothing is owned twice,
    /// and the heap is sound.
    #[test]
    fn dead_registrant_leaks_nothing() {
        const POINTS: [&str; 6] = [
            "alloc.free.unlinked",
            "alloc.split",
            "table.create.allocated",
            "table.create.half_written",
            "table.erase.unpublished",
            "table.erase.freed",
        ];
        for point in POINTS {
            crate::sync::model_limited(2, Some(5_000), move || {
                crash::reset();
                let m = Arc::new(Model::new(4, START + 64 * 12, START + 64 * 12));
                m.table()
                    .create(&spec("old", 64), false, |_| Ok(()))
                    .unwrap();
                let m2 = m.clone();
                let t = loom::thread::spawn(move || {
                    crash::die_at(point, || {
                        m2.table()
                            .create(&spec("a", 128), false, |_| Ok(()))
                            .unwrap();
                        m2.table().erase("old", false).unwrap();
                    })
                });
                m.table().create(&spec("b", 64), false, |_| Ok(())).unwrap();
                let survived = t.join().unwrap();
                // One more registration after the death: takes the lock over.
                if let Err(e) = m.table().create(&spec("c", 64), false, |_| Ok(())) {
                    let heap = m.heap();
                    let mut blocks = Vec::new();
                    let walked = heap.walk_blocks(heap.end().unwrap(), |b| blocks.push(*b));
                    let lists: Vec<u64> = m
                        .header
                        .free_lists
                        .iter()
                        .map(|l| l.load(Ordering::Relaxed))
                        .collect();
                    panic!(
                        "{point}: {e} {survived:?} {walked:?} {blocks:?} lists {lists:?} lock {}",
                        m.header.lock.load(Ordering::Relaxed)
                    );
                }
                let stats = m.sound();
                let live = m.table().list().unwrap();
                assert_eq!(
                    stats.used_blocks as usize,
                    live.len(),
                    "{point}: {survived:?} {stats:?} {live:?}"
                );
                for name in ["a", "b", "c", "old"] {
                    let _ = m.table().erase(name, false);
                }
                let stats = m.sound();
                assert_eq!(stats.free_blocks, 1, "{point}: {stats:?}");
            });
        }
    }

    /// The table grows while a lookup runs: a one-entry first chunk, a
    /// second name goes to a new chunk; the reader finds the first name
    /// throughout, and the second either not yet or whole.
    #[test]
    fn lookup_races_table_growth() {
        crate::sync::model_limited(2, Some(20_000), || {
            let m = Arc::new(Model::new(1, START + 64 * 24, START + 64 * 24));
            m.table().create(&spec("a", 64), false, |_| Ok(())).unwrap();
            let m2 = m.clone();
            let reader = loom::thread::spawn(move || {
                assert!(m2.table().find("a").unwrap().is_some());
                if let Some(b) = m2.table().find("b").unwrap() {
                    assert_eq!(b.name, "b");
                    assert_eq!(b.elem_type, "<Q");
                }
            });
            m.table().create(&spec("b", 64), false, |_| Ok(())).unwrap();
            reader.join().unwrap();
            assert_eq!(m.table().capacity(), 1 + 2);
            assert!(m.table().find("b").unwrap().is_some());
            m.sound();
        });
    }

    /// Growth: a heap too small for the next structure grows (once) and the
    /// structure lands in the new space; the heap stays sound.
    #[test]
    fn heap_grows() {
        crate::sync::model(|| {
            let m = Model::new(2, START + 4096, START + 3 * 4096);
            m.table()
                .create(&spec("a", 2048), false, |_| Ok(()))
                .unwrap();
            m.table()
                .create(&spec("b", 4096), false, |_| Ok(()))
                .unwrap();
            let size = m.header.size.load(Ordering::Relaxed);
            assert!(size > START + 4096 && size <= START + 3 * 4096, "{size}");
            let stats = m.sound();
            assert_eq!(stats.used_blocks, 2);
            assert!(matches!(
                m.table().create(&spec("c", 8192), false, |_| Ok(())),
                Err(Error::OutOfSpace { .. })
            ));
        });
    }
}
