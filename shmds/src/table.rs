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
//! any entry left half-written (odd generation) by freeing it. The block the
//! dead process had allocated stays unused (a leak, never a corruption).

use crate::error::{Error, Result};
use crate::layout::{entry_state, kind, Entry, SegmentHeader, KEY_TYPE_MAX, NAME_MAX, TYPE_MAX};
use crate::process::{current_pid, is_alive};
use crate::sync::{fence, AtomicU64, Ordering};
use crate::wait::{futex_wait, futex_wake, PeerWait};
use std::time::Duration;

/// What the table says about one live entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Position in the table.
    pub index: u32,
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

/// A view of a segment's header and table.
pub(crate) struct Table<'a> {
    /// The segment header; only its atomic words are used.
    pub header: &'a SegmentHeader,
    pub entries: &'a [Entry],
    /// The heap, `[start, end)`: the opener's validated copies of the
    /// header's `heap_offset` and `total_size`.
    pub heap: (u64, u64),
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

fn load_text(words: &[AtomicU64]) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
        .collect()
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
    name: Vec<u8>,
    key_type: Vec<u8>,
    elem_type: Vec<u8>,
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
    fn read_raw(&self, index: usize) -> Option<RawEntry> {
        let e = &self.entries[index];
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

    /// Snapshot of entry `index` if it is live. Malformed text fields are a
    /// `Corrupt` error.
    pub(crate) fn snapshot(&self, index: usize) -> Result<Option<EntryInfo>> {
        match self.read_raw(index) {
            Some(raw) if raw.state == entry_state::LIVE => self.decode(index, raw).map(Some),
            _ => Ok(None),
        }
    }

    /// Turn one consistent raw read into an `EntryInfo`.
    fn decode(&self, index: usize, raw: RawEntry) -> Result<EntryInfo> {
        let text = |bytes: &[u8], field: &str, max: usize| {
            decode_text(bytes, field, max).map_err(|d| self.corrupt(format!("entry {index}: {d}")))
        };
        Ok(EntryInfo {
            index: index as u32,
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
        for index in 0..self.entries.len() {
            let Some(raw) = self.read_raw(index) else {
                continue;
            };
            let len = raw
                .name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(raw.name.len());
            if raw.state == entry_state::LIVE && &raw.name[..len] == wanted {
                return self.decode(index, raw).map(Some);
            }
        }
        Ok(None)
    }

    /// All live entries, in table order.
    pub(crate) fn list(&self) -> Result<Vec<EntryInfo>> {
        let mut out = Vec::new();
        for index in 0..self.entries.len() {
            if let Some(info) = self.snapshot(index)? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Take the registration lock, taking it over from a dead holder. A live
    /// holder is waited for at most `lock_timeout` ([`Error::LockBusy`]).
    pub(crate) fn lock(&self) -> Result<TableLock<'a>> {
        let me = current_pid();
        let lock = &self.header.lock;
        let mut waiting = PeerWait::new();
        let nap = Duration::from_millis(10);
        let mut slept = Duration::ZERO;
        let mut last_holder = 0;
        loop {
            let holder = match lock.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    return Ok(TableLock {
                        header: self.header,
                    })
                }
                Err(holder) => holder,
            };
            if !waiting.snooze() {
                continue;
            }
            if holder != me && !is_alive(holder) {
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
            if holder != last_holder {
                last_holder = holder;
                slept = Duration::ZERO;
            } else if slept >= self.lock_timeout {
                return Err(Error::LockBusy {
                    segment: self.segment.to_owned(),
                    pid: holder,
                    seconds: slept.as_secs(),
                });
            }
            // A live holder: sleep until it unlocks (bounded, to re-check liveness).
            self.header.lock_waiters.fetch_add(1, Ordering::SeqCst);
            futex_wait(lock, holder, Some(nap));
            self.header.lock_waiters.fetch_sub(1, Ordering::SeqCst);
            slept += nap;
        }
    }

    /// After taking the lock from a dead holder: free entries it left
    /// half-written. Their blocks are leaked.
    fn repair(&self) {
        for e in self.entries {
            let g = e.generation.load(Ordering::Acquire);
            if g % 2 == 1 {
                e.state.store(entry_state::FREE, Ordering::Relaxed);
                e.generation.store(g.wrapping_add(1), Ordering::Release);
            }
        }
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
        let index = (0..self.entries.len())
            .find(|&i| {
                let e = &self.entries[i];
                e.state.load(Ordering::Acquire) == entry_state::FREE
                    && e.generation.load(Ordering::Acquire) % 2 == 0
            })
            .ok_or(Error::TableFull {
                capacity: self.entries.len() as u32,
            })?;
        let offset = crate::alloc::allocate(
            &self.header.heap_last,
            self.heap,
            self.segment,
            new.block_size,
        )?;
        crate::fault::pause_point("table.create.allocated");
        init(offset)?;

        let e = &self.entries[index];
        let g = e.generation.load(Ordering::Relaxed);
        e.generation.store(g.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        e.kind.store(new.kind, Ordering::Relaxed);
        e.elem_size.store(new.elem_size, Ordering::Relaxed);
        e.key_size.store(new.key_size, Ordering::Relaxed);
        e.capacity.store(new.capacity, Ordering::Relaxed);
        e.offset.store(offset, Ordering::Relaxed);
        e.size.store(
            crate::alloc::align_up(new.block_size.max(1)).unwrap_or(0),
            Ordering::Relaxed,
        );
        e.creator_pid.store(current_pid(), Ordering::Relaxed);
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
    /// become stale; its block is not reused.
    pub(crate) fn erase(&self, name: &str) -> Result<()> {
        let _guard = self.lock()?;
        let info = self.find(name)?.ok_or_else(|| Error::EntryNotFound {
            segment: self.segment.to_owned(),
            name: name.to_owned(),
        })?;
        let e = &self.entries[info.index as usize];
        let g = e.generation.load(Ordering::Relaxed);
        e.generation.store(g.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        e.state.store(entry_state::FREE, Ordering::Relaxed);
        e.generation.store(g.wrapping_add(2), Ordering::Release);
        Ok(())
    }
}

#[cfg(all(test, loom))]
pub(crate) mod model {
    //! Heap-allocated header and table for loom models.
    use super::*;
    use crate::sync::AtomicU32;

    pub(crate) struct Model {
        pub header: Box<SegmentHeader>,
        pub entries: Vec<Entry>,
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
            reserved: [0; 3],
            name: std::array::from_fn(|_| AtomicU64::new(0)),
            key_type: std::array::from_fn(|_| AtomicU64::new(0)),
            elem_type: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    impl Model {
        pub(crate) fn new(entries: usize, heap: u64) -> Model {
            Model {
                header: Box::new(SegmentHeader {
                    magic: crate::layout::MAGIC,
                    format_version: crate::layout::FORMAT_VERSION,
                    header_size: 0,
                    fingerprint: 0,
                    max_size: 64 + heap,
                    table_offset: 0,
                    table_capacity: entries as u32,
                    entry_size: 0,
                    heap_offset: 64,
                    seed: 0,
                    state: AtomicU32::new(2),
                    creator_pid: AtomicU32::new(1),
                    lock: AtomicU32::new(0),
                    lock_waiters: AtomicU32::new(0),
                    size: AtomicU64::new(64 + heap),
                    flags: AtomicU32::new(0),
                    attach_overflow: AtomicU32::new(0),
                    creator_start: AtomicU64::new(0),
                    heap_last: AtomicU64::new(64),
                    free_bytes: AtomicU64::new(0),
                    free_blocks: AtomicU64::new(0),
                    table_chunks: std::array::from_fn(|_| AtomicU64::new(0)),
                    free_lists: std::array::from_fn(|_| AtomicU64::new(0)),
                    created_unix_ns: AtomicU64::new(0),
                    reserved: [0; 39],
                }),
                entries: (0..entries).map(|_| entry()).collect(),
            }
        }

        pub(crate) fn table(&self) -> Table<'_> {
            Table {
                header: &self.header,
                entries: &self.entries,
                heap: (self.header.heap_offset, self.header.max_size),
                segment: "model",
                lock_timeout: Duration::MAX,
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::model::Model;
    use super::*;
    use loom::sync::Arc;

    fn spec(name: &str) -> NewEntry<'_> {
        NewEntry {
            name,
            kind: kind::ARRAY,
            elem_type: "<Q",
            key_type: "",
            elem_size: 8,
            key_size: 0,
            capacity: 1,
            block_size: 64,
        }
    }

    /// Two processes create the same name at once: exactly one creates it,
    /// the other opens the same entry; a third name gets a disjoint block.
    #[test]
    fn create_same_name_once() {
        crate::sync::model(|| {
            let m = Arc::new(Model::new(3, 64 * 4));
            let m2 = m.clone();
            let t = loom::thread::spawn(move || {
                let (info, created) = m2.table().create(&spec("a"), true, |_| Ok(())).unwrap();
                (info.index, info.offset, created)
            });
            let (info, created) = m.table().create(&spec("a"), true, |_| Ok(())).unwrap();
            let other = t.join().unwrap();
            assert_eq!(info.index, other.0);
            assert_eq!(info.offset, other.1);
            assert!(created ^ other.2, "exactly one creator");
            let list = m.table().list().unwrap();
            assert_eq!(list.len(), 1);
        });
    }

    /// Lookups racing with erase and re-create see either nothing or a
    /// whole entry. (The reader is the spawned thread: see `sync::tests`.)
    ///
    /// One entry, so the re-create reuses the erased slot. An entry read is
    /// ~40 relaxed loads, each of which loom may satisfy from several
    /// stores, so this model is a *bounded* search: the first 20 000
    /// interleavings, in which it found a lookup returning the re-created
    /// entry instead of the one it matched.
    #[test]
    fn lookup_races_erase() {
        crate::sync::model_limited(2, Some(20_000), || {
            let m = Arc::new(Model::new(1, 64 * 4));
            m.table().create(&spec("a"), false, |_| Ok(())).unwrap();
            let m2 = m.clone();
            let reader = loom::thread::spawn(move || {
                let found = m2.table().find("a").unwrap();
                if let Some(found) = &found {
                    assert_eq!(found.name, "a");
                    assert_eq!(found.elem_type, "<Q");
                }
                found.is_some()
            });
            m.table().erase("a").unwrap();
            m.table().create(&spec("b"), false, |_| Ok(())).unwrap();
            reader.join().unwrap();
            assert!(m.table().find("a").unwrap().is_none());
            assert!(m.table().find("b").unwrap().is_some());
        });
    }
}
