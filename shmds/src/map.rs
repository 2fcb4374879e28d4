//! `Map<K, V>`: a fixed-capacity concurrent hash map in shared memory.
//!
//! # The algorithm
//!
//! The map is an open-addressing table of `capacity` slots with linear
//! probing. Its bytes are [`MapHeader`] and [`MapSlot`]; a slot is three
//! words (`state`, `home`, `hash`) followed by the key and the value, each
//! padded with zeros to whole 8-byte words. Keys never move once written: an
//! insert picks a free slot, a remove frees it, and nothing is ever shifted.
//!
//! *Homes and bounds.* A key's *home* is slot `(hash * capacity) >> 64`
//! (the high half of a 128-bit product). A key sits at probe distance `d`
//! from its home: slot `(home + d) mod capacity`. The `home` word of each
//! slot holds, for the keys whose home it is, a **lock** (the pid of the
//! writer holding it) and a **bound**: no such key sits further than
//! `bound` from the home. A lookup therefore reads slots `home ..= home +
//! bound` and stops; it never has to scan to an empty slot, so removed slots
//! need no tombstones and are simply free again.
//!
//! *Slot states.* `state` holds a phase, a version and, while busy, the
//! writer's pid:
//!
//! ```text
//!   FREE(v) --claim CAS--> BUSY(v, pid) --publish--> LIVE(v+1)
//!     ^                                                |  |
//!     +------------------ remove: FREE(v+1) <----------+  |
//!                                                         | (values > 8 bytes)
//!                 LIVE(v+1) <--publish-- BUSY(v, pid, was-live) <--+
//! ```
//!
//! Invariants:
//! - Only the holder of a home's lock adds, changes or removes keys whose
//!   home it is. Two inserts of one key therefore serialise, and a key is in
//!   at most one slot.
//! - A free slot is claimed by compare-and-swap from `FREE`, by any writer
//!   (of any home); a live or busy slot is written only by the holder of its
//!   key's home lock.
//! - The bound only covers keys that exist or are being written: a writer
//!   raises its home's bound *before* claiming a slot further out, and lowers
//!   it, after a remove, to the furthest remaining key of that home.
//! - A value of at most 8 bytes is one word and is replaced with one atomic
//!   store, so readers see the old or the new value whole. Longer values are
//!   rewritten between `BUSY(was-live)` and `LIVE(v+1)`.
//!
//! *Reads* are a sequence lock per slot: load `state` (must be `LIVE`),
//! compare the hash and key, copy the value, and load `state` again; a
//! change means a writer interfered and the slot is read again. Readers
//! never write shared memory and never take a lock.
//!
//! *Progress.*
//! - `get`, `contains_key` and iteration are lock-free with respect to each
//!   other and to writers of other keys. A read of key `k` retries only while
//!   a writer changes the very slot it reads, and waits only while a value
//!   longer than 8 bytes of `k` itself is being rewritten (a few dozen
//!   instructions of the writer).
//! - `insert`, `remove`, `fetch_add`, `compare_exchange`, `get_or_insert`
//!   take the lock of the key's home slot for a bounded number of their own
//!   steps (a probe of at most `capacity` slots). Writers of keys with
//!   different homes never wait for each other. A writer waits for the lock
//!   while another writer of the same home holds it.
//! - Any wait on a live peer gives up after the segment's lock timeout with
//!   [`Error::Busy`]; a dead peer is detected and recovered from at once.
//!
//! *Crashed peers.* A process killed at any instruction leaves at most one
//! home lock and one busy slot, both carrying its pid:
//! - A lock held by a dead process is taken over by the next writer of that
//!   home, which first frees every slot of that home that the dead process
//!   left busy.
//! - A busy slot of a dead process is freed by whoever meets it: a reader
//!   waiting for it, the writer taking over its home, or an insert that
//!   finds no free slot. A new key that was being inserted is absent (its
//!   `insert` never returned). A key whose long value (> 8 bytes) was being
//!   overwritten is removed: survivors never see a torn value. Values of at
//!   most 8 bytes are never torn and are never lost this way.
//! - The `len` counter is updated after the slot changes; a process killed
//!   between the two leaves it off by one (a deep [`Segment::check`]
//!   reports the difference).

use crate::element::{AtomicElement, Element, TypeDescriptor};
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, MapHeader, MAP_HEADER_SIZE, MAP_SLOT_SIZE};
use crate::process::{current_pid, is_alive};
use crate::segment::Segment;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::wait::{Deadline, PeerWait};
use std::marker::PhantomData;
use std::mem::{offset_of, MaybeUninit};
use std::time::Duration;

/// Largest map capacity (slots).
pub const MAX_MAP_CAPACITY: u64 = 1 << 31;
/// Largest key size in bytes.
pub const MAX_KEY_SIZE: usize = 256;

const PHASE_MASK: u64 = 0b11;
const FREE: u64 = 0;
const LIVE: u64 = 1;
const BUSY: u64 = 2;
const WAS_LIVE: u64 = 1 << 2;
const PID_SHIFT: u32 = 3;
const PID_MASK: u64 = (1 << 22) - 1;
const VERSION_SHIFT: u32 = 25;
const VERSION_MASK: u64 = (1 << 39) - 1;

/// Word indices inside a slot.
const STATE: usize = 0;
const HOME: usize = 1;
const HASH: usize = 2;
const KEY: usize = 3;

const LOCK_MASK: u64 = 0xffff_ffff;

fn version(state: u64) -> u64 {
    state >> VERSION_SHIFT
}

fn free(version: u64) -> u64 {
    (version & VERSION_MASK) << VERSION_SHIFT | FREE
}

fn live(version: u64) -> u64 {
    (version & VERSION_MASK) << VERSION_SHIFT | LIVE
}

fn busy(version: u64, pid: u32, was_live: bool) -> u64 {
    let flag = if was_live { WAS_LIVE } else { 0 };
    (version & VERSION_MASK) << VERSION_SHIFT | (pid as u64 & PID_MASK) << PID_SHIFT | flag | BUSY
}

fn busy_pid(state: u64) -> u32 {
    ((state >> PID_SHIFT) & PID_MASK) as u32
}

fn words_for(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

/// `lo(a * b) ^ hi(a * b)` of the 128-bit product.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    (p as u64) ^ ((p >> 64) as u64)
}

const HASH_K0: u64 = 0x9e37_79b9_7f4a_7c15;
const HASH_K1: u64 = 0xa076_1d64_78bd_642f;

/// The key hash of FORMAT.md ("Map key hash"): the same bytes and seed give
/// the same hash in every language.
///
/// ```
/// let a = shmds::map_key_hash(7, b"AAPL");
/// assert_eq!(a, shmds::map_key_hash(7, b"AAPL"));
/// assert_ne!(a, shmds::map_key_hash(8, b"AAPL"));
/// ```
#[inline]
pub fn map_key_hash(seed: u64, key: &[u8]) -> u64 {
    Key::new(seed, key).hash
}

/// A key ready for the table: its bytes and its hash.
pub(crate) struct Key<'k> {
    bytes: &'k [u8],
    hash: u64,
    /// Word 0 as stored in a slot.
    first: u64,
}

impl<'k> Key<'k> {
    #[inline]
    pub(crate) fn new(seed: u64, bytes: &'k [u8]) -> Key<'k> {
        let m = (seed ^ HASH_K0) | 1;
        let mut h = seed.rotate_left(32) ^ bytes.len() as u64;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8-byte chunk"));
            h = fold(h ^ w, m);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            for (d, &x) in b.iter_mut().zip(rest) {
                *d = x;
            }
            h = fold(h ^ u64::from_le_bytes(b), m);
        }
        let hash = fold(h ^ HASH_K1, (seed ^ HASH_K1) | 1);
        Key {
            bytes,
            hash,
            first: word_of(bytes, 0),
        }
    }

    /// Word `j` as stored in a slot.
    #[inline]
    fn word(&self, j: usize) -> u64 {
        word_of(self.bytes, j)
    }
}

/// Word `j` of `bytes` as stored in a slot: native order, zero-padded.
#[inline]
fn word_of(bytes: &[u8], j: usize) -> u64 {
    let start = j * 8;
    if let Some(c) = bytes.get(start..start + 8) {
        u64::from_ne_bytes(c.try_into().expect("8-byte chunk"))
    } else {
        let mut b = [0u8; 8];
        for (d, &x) in b.iter_mut().zip(&bytes[start.min(bytes.len())..]) {
            *d = x;
        }
        u64::from_ne_bytes(b)
    }
}

/// Why a map operation failed inside the algorithm.
#[derive(Debug)]
pub(crate) enum Fault {
    /// A word does not fit the protocol: the map is damaged.
    Corrupt(String),
    /// No free slot for a new key.
    Full,
    /// A live process held a lock or slot for longer than the lock timeout.
    Busy(u32),
}

/// The validated shape of a map, copied out of the header at open so that
/// a peer rewriting the header later cannot send us out of bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MapShape {
    capacity: u64,
    stride: usize,
    key_size: usize,
    key_words: usize,
    value_size: usize,
    value_words: usize,
    seed: u64,
}

impl MapShape {
    fn new(capacity: u64, key_size: usize, value_size: usize, seed: u64) -> MapShape {
        let key_words = words_for(key_size);
        let value_words = words_for(value_size);
        MapShape {
            capacity,
            stride: 3 + key_words + value_words,
            key_size,
            key_words,
            value_size,
            value_words,
            seed,
        }
    }
}

/// Bytes from one slot to the next.
pub(crate) fn slot_stride(key_size: u64, value_size: u64) -> u64 {
    MAP_SLOT_SIZE
        + words_for(key_size as usize) as u64 * 8
        + words_for(value_size as usize) as u64 * 8
}

/// The map algorithm over a header and a slot array. The same code runs on
/// a segment's bytes and, under loom, on heap memory.
pub(crate) struct MapCore<'a> {
    header: &'a MapHeader,
    words: *const AtomicU64,
    shape: MapShape,
    patience: Duration,
}

impl<'a> MapCore<'a> {
    /// # Safety
    /// `words` must point to `shape.capacity * shape.stride` initialised
    /// words, valid for `'a`.
    unsafe fn new(
        header: &'a MapHeader,
        words: *const AtomicU64,
        shape: MapShape,
        patience: Duration,
    ) -> Self {
        MapCore {
            header,
            words,
            shape,
            patience,
        }
    }

    #[inline]
    fn word(&self, slot: u64, w: usize) -> &'a AtomicU64 {
        debug_assert!(slot < self.shape.capacity && w < self.shape.stride);
        // SAFETY: every caller passes slot < capacity (homes are reduced into
        // range, probes wrap) and w < stride; the words are initialised (new).
        unsafe { &*self.words.add(slot as usize * self.shape.stride + w) }
    }

    #[inline]
    fn value_at(&self) -> usize {
        KEY + self.shape.key_words
    }

    #[inline]
    fn next(&self, slot: u64) -> u64 {
        if slot + 1 == self.shape.capacity {
            0
        } else {
            slot + 1
        }
    }

    /// Prepare `bytes` (a key of `key_size` bytes) for the table.
    #[inline]
    pub(crate) fn key<'k>(&self, bytes: &'k [u8]) -> Key<'k> {
        Key::new(self.shape.seed, bytes)
    }

    #[inline]
    fn home_of(&self, hash: u64) -> u64 {
        ((hash as u128 * self.shape.capacity as u128) >> 64) as u64
    }

    fn distance(&self, home: u64, slot: u64) -> u64 {
        if slot >= home {
            slot - home
        } else {
            slot + self.shape.capacity - home
        }
    }

    fn corrupt(&self, detail: String) -> Fault {
        Fault::Corrupt(detail)
    }

    fn bad_state(&self, slot: u64, state: u64) -> Fault {
        self.corrupt(format!(
            "slot {slot} has state {state:#x}, which is no phase"
        ))
    }

    /// The probe bound of home `h`.
    #[inline]
    fn bound(&self, h: u64) -> std::result::Result<u64, Fault> {
        let bound = self.word(h, HOME).load(Ordering::Acquire) >> 32;
        if bound >= self.shape.capacity {
            return Err(self.corrupt(format!(
                "slot {h} has probe bound {bound}, beyond the {} slots",
                self.shape.capacity
            )));
        }
        Ok(bound)
    }

    #[inline]
    fn key_matches(&self, slot: u64, key: &Key<'_>) -> bool {
        if self.word(slot, KEY).load(Ordering::Relaxed) != key.first {
            return false;
        }
        (1..self.shape.key_words)
            .all(|j| self.word(slot, KEY + j).load(Ordering::Relaxed) == key.word(j))
    }

    #[inline]
    fn read_bytes(&self, slot: u64, first: usize, out: &mut [u8]) {
        let full = out.len() / 8;
        for j in 0..full {
            let w = self.word(slot, first + j).load(Ordering::Relaxed);
            // SAFETY: j * 8 + 8 <= out.len(); unaligned writes are allowed.
            unsafe { out.as_mut_ptr().add(j * 8).cast::<u64>().write_unaligned(w) };
        }
        if out.len() % 8 != 0 {
            let w = self.word(slot, first + full).load(Ordering::Relaxed);
            for (d, x) in out[full * 8..].iter_mut().zip(w.to_ne_bytes()) {
                *d = x;
            }
        }
    }

    fn write_bytes(&self, slot: u64, first: usize, bytes: &[u8]) {
        for j in 0..words_for(bytes.len()) {
            self.word(slot, first + j)
                .store(word_of(bytes, j), Ordering::Relaxed);
        }
    }

    /// Look `key` up in slots `h ..= h + bound`, copying its value into
    /// `out` when found. Returns the slot and its distance from `h`.
    #[inline]
    fn scan(
        &self,
        h: u64,
        bound: u64,
        key: &Key<'_>,
        mut out: Option<&mut [u8]>,
    ) -> std::result::Result<Option<(u64, u64)>, Fault> {
        let mut slot = h;
        for d in 0..=bound {
            if self.read_if_match(slot, key, out.as_deref_mut())? {
                return Ok(Some((slot, d)));
            }
            slot = self.next(slot);
        }
        Ok(None)
    }

    /// Whether `slot` holds `key` (copying its value into `out`), read as a
    /// consistent snapshot.
    #[inline(always)]
    fn read_if_match(
        &self,
        slot: u64,
        key: &Key<'_>,
        mut out: Option<&mut [u8]>,
    ) -> std::result::Result<bool, Fault> {
        let state = self.word(slot, STATE);
        loop {
            let s = state.load(Ordering::Acquire);
            match s & PHASE_MASK {
                FREE => return Ok(false),
                LIVE => {}
                _ => return self.read_if_match_slow(slot, key, out),
            }
            if let Some(same) = self.compare(slot, s, key, out.as_deref_mut()) {
                return Ok(same);
            }
        }
    }

    /// Compare `slot`, seen in state `s`, with `key`, copying its value into
    /// `out` on a match. `None` when a writer changed the slot meanwhile
    /// (read it again); else whether it holds `key`.
    #[inline(always)]
    fn compare(&self, slot: u64, s: u64, key: &Key<'_>, out: Option<&mut [u8]>) -> Option<bool> {
        if self.word(slot, HASH).load(Ordering::Relaxed) != key.hash {
            return Some(false);
        }
        let same = self.key_matches(slot, key);
        if same {
            if let Some(o) = out {
                self.read_bytes(slot, self.value_at(), o);
            }
        }
        fence(Ordering::Acquire);
        (self.word(slot, STATE).load(Ordering::Relaxed) == s).then_some(same)
    }

    /// `read_if_match` for a slot that is not simply free or live.
    #[cold]
    #[inline(never)]
    fn read_if_match_slow(
        &self,
        slot: u64,
        key: &Key<'_>,
        mut out: Option<&mut [u8]>,
    ) -> std::result::Result<bool, Fault> {
        let state = self.word(slot, STATE);
        let mut waiting: Option<(PeerWait, Deadline)> = None;
        loop {
            let s = state.load(Ordering::Acquire);
            let is_live = match s & PHASE_MASK {
                FREE => return Ok(false),
                LIVE => true,
                // A key being inserted does not exist yet.
                BUSY if s & WAS_LIVE == 0 => return Ok(false),
                BUSY => false,
                _ => return Err(self.bad_state(slot, s)),
            };
            // A long value being rewritten is not copied (it may be torn).
            let copy_to = if is_live { out.as_deref_mut() } else { None };
            match self.compare(slot, s, key, copy_to) {
                None => continue,
                Some(false) => return Ok(false),
                Some(true) if is_live => return Ok(true),
                Some(true) => {}
            }
            // Our key, its long value being rewritten: wait for the writer.
            let (patience, deadline) = waiting
                .get_or_insert_with(|| (PeerWait::new(), Deadline::after(Some(self.patience))));
            self.wait_for_writer(slot, s, patience, deadline)?;
        }
    }

    /// Wait a little for the writer of busy `slot` (state `s`); free the
    /// slot if the writer is dead.
    fn wait_for_writer(
        &self,
        slot: u64,
        s: u64,
        patience: &mut PeerWait,
        deadline: &Deadline,
    ) -> std::result::Result<(), Fault> {
        if patience.snooze() {
            let pid = busy_pid(s);
            if !is_alive(pid) {
                self.recover(slot, s);
            } else if deadline.expired() {
                return Err(Fault::Busy(pid));
            }
        }
        Ok(())
    }

    /// Free `slot`, left busy (state `s`) by a dead writer.
    fn recover(&self, slot: u64, s: u64) {
        let state = self.word(slot, STATE);
        if state
            .compare_exchange(s, free(version(s) + 1), Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
            && s & WAS_LIVE != 0
        {
            self.decrement_len();
        }
    }

    fn decrement_len(&self) {
        let _ = self
            .header
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Free every busy slot whose writer is dead. Returns whether any was.
    fn recover_dead_slots(&self) -> bool {
        let mut any = false;
        for slot in 0..self.shape.capacity {
            let s = self.word(slot, STATE).load(Ordering::Acquire);
            if s & PHASE_MASK == BUSY && !is_alive(busy_pid(s)) {
                self.recover(slot, s);
                any = true;
            }
        }
        any
    }

    /// The value of `key` into `out`; `false` when absent. Never writes.
    #[inline]
    pub(crate) fn get(
        &self,
        key: &Key<'_>,
        out: Option<&mut [u8]>,
    ) -> std::result::Result<bool, Fault> {
        let h = self.home_of(key.hash);
        let bound = self.bound(h)?;
        Ok(self.scan(h, bound, key, out)?.is_some())
    }

    /// Take the lock of the home of `key`.
    #[inline]
    pub(crate) fn lock<'c>(
        &'c self,
        key: &'c Key<'c>,
    ) -> std::result::Result<Locked<'c, 'a>, Fault> {
        let h = self.home_of(key.hash);
        let home = self.word(h, HOME);
        let me = current_pid();
        let w = home.load(Ordering::Acquire);
        let bound = w >> 32;
        if w & LOCK_MASK == 0
            && bound < self.shape.capacity
            && home
                .compare_exchange(w, w | me as u64, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(Locked {
                core: self,
                key,
                h,
                bound,
                me,
            });
        }
        self.lock_slow(key, h, me)
    }

    /// `lock` when the lock was not free at first sight.
    #[cold]
    #[inline(never)]
    fn lock_slow<'c>(
        &'c self,
        key: &'c Key<'c>,
        h: u64,
        me: u32,
    ) -> std::result::Result<Locked<'c, 'a>, Fault> {
        let home = self.word(h, HOME);
        let mut patience = PeerWait::new();
        let mut deadline: Option<Deadline> = None;
        loop {
            let w = home.load(Ordering::Acquire);
            let bound = w >> 32;
            if bound >= self.shape.capacity {
                return Err(self.corrupt(format!(
                    "slot {h} has probe bound {bound}, beyond the {} slots",
                    self.shape.capacity
                )));
            }
            let holder = (w & LOCK_MASK) as u32;
            let locked = || Locked {
                core: self,
                key,
                h,
                bound,
                me,
            };
            if holder == 0 {
                if home
                    .compare_exchange(w, w | me as u64, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(locked());
                }
                continue;
            }
            if patience.snooze() {
                if !is_alive(holder) {
                    let ours = (w & !LOCK_MASK) | me as u64;
                    if home
                        .compare_exchange(w, ours, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        let guard = locked();
                        guard.recover_home(holder);
                        return Ok(guard);
                    }
                    continue;
                }
                let d = deadline.get_or_insert_with(|| Deadline::after(Some(self.patience)));
                if d.expired() {
                    return Err(Fault::Busy(holder));
                }
            }
        }
    }

    /// Copy slot `slot` out if it holds a live key. Waits while a long value
    /// is being rewritten (the key is present all along).
    pub(crate) fn read_slot(
        &self,
        slot: u64,
        key_out: &mut [u8],
        value_out: &mut [u8],
    ) -> std::result::Result<bool, Fault> {
        let state = self.word(slot, STATE);
        let mut waiting: Option<(PeerWait, Deadline)> = None;
        loop {
            let s = state.load(Ordering::Acquire);
            match s & PHASE_MASK {
                FREE => return Ok(false),
                BUSY if s & WAS_LIVE == 0 => return Ok(false),
                BUSY => {
                    let (patience, deadline) = waiting.get_or_insert_with(|| {
                        (PeerWait::new(), Deadline::after(Some(self.patience)))
                    });
                    self.wait_for_writer(slot, s, patience, deadline)?;
                    continue;
                }
                LIVE => {}
                _ => return Err(self.bad_state(slot, s)),
            }
            self.read_bytes(slot, KEY, key_out);
            self.read_bytes(slot, self.value_at(), value_out);
            fence(Ordering::Acquire);
            if state.load(Ordering::Relaxed) == s {
                return Ok(true);
            }
        }
    }

    /// Keys in the map (see the module docs on crashes).
    pub(crate) fn len(&self) -> u64 {
        self.header
            .len
            .load(Ordering::Relaxed)
            .min(self.shape.capacity)
    }
}

/// The lock of one home slot, held; released on drop.
pub(crate) struct Locked<'c, 'a> {
    core: &'c MapCore<'a>,
    key: &'c Key<'c>,
    h: u64,
    bound: u64,
    me: u32,
}

impl Drop for Locked<'_, '_> {
    fn drop(&mut self) {
        self.core
            .word(self.h, HOME)
            .store(self.bound << 32, Ordering::Release);
    }
}

impl Locked<'_, '_> {
    /// Free the slots of this home that `dead`, the previous holder, left busy.
    fn recover_home(&self, dead: u32) {
        let mut slot = self.h;
        for _ in 0..=self.bound {
            let s = self.core.word(slot, STATE).load(Ordering::Acquire);
            if s & PHASE_MASK == BUSY && busy_pid(s) == dead {
                self.core.recover(slot, s);
            }
            slot = self.core.next(slot);
        }
    }

    /// The slot holding the key and its probe distance; its value into `out`.
    #[inline]
    pub(crate) fn find(
        &self,
        out: Option<&mut [u8]>,
    ) -> std::result::Result<Option<(u64, u64)>, Fault> {
        self.core.scan(self.h, self.bound, self.key, out)
    }

    fn set_bound(&mut self, bound: u64) {
        self.bound = bound;
        self.core
            .word(self.h, HOME)
            .store(bound << 32 | self.me as u64, Ordering::Release);
    }

    /// Insert the key, known to be absent, with `value`.
    pub(crate) fn insert_new(&mut self, value: &[u8]) -> std::result::Result<(), Fault> {
        let core = self.core;
        debug_assert_eq!(value.len(), core.shape.value_size);
        for attempt in 0..2 {
            let mut slot = self.h;
            for d in 0..core.shape.capacity {
                let state = core.word(slot, STATE);
                let s = state.load(Ordering::Relaxed);
                if s & PHASE_MASK == FREE {
                    if d > self.bound {
                        // Raise the bound first, so that if we die holding
                        // the slot, whoever takes over our lock finds it.
                        self.set_bound(d);
                    }
                    let claim = busy(version(s), self.me, false);
                    if state
                        .compare_exchange(s, claim, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        // Readers that see any word below also see `claim`.
                        fence(Ordering::Release);
                        core.word(slot, HASH)
                            .store(self.key.hash, Ordering::Relaxed);
                        core.write_bytes(slot, KEY, self.key.bytes);
                        core.write_bytes(slot, core.value_at(), value);
                        crate::fault::pause_point("map.insert.written");
                        state.store(live(version(s) + 1), Ordering::Release);
                        core.header.len.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
                slot = core.next(slot);
            }
            if attempt == 0 && !core.recover_dead_slots() {
                break;
            }
        }
        Err(Fault::Full)
    }

    /// Replace the value in `slot` (which holds our key) with `value`.
    #[inline]
    pub(crate) fn set_value(&self, slot: u64, value: &[u8]) {
        let core = self.core;
        debug_assert_eq!(value.len(), core.shape.value_size);
        let at = core.value_at();
        if core.shape.value_words == 1 {
            core.word(slot, at)
                .store(word_of(value, 0), Ordering::Release);
            return;
        }
        let state = core.word(slot, STATE);
        let s = state.load(Ordering::Relaxed);
        state.store(busy(version(s), self.me, true), Ordering::Relaxed);
        fence(Ordering::Release);
        core.write_bytes(slot, at, value);
        crate::fault::pause_point("map.update.written");
        state.store(live(version(s) + 1), Ordering::Release);
    }

    /// The value word of `slot` (values of at most 8 bytes).
    pub(crate) fn value_word(&self, slot: u64) -> u64 {
        self.core
            .word(slot, self.core.value_at())
            .load(Ordering::Acquire)
    }

    /// Remove the key from `slot`, at probe distance `d`.
    pub(crate) fn remove_at(&mut self, slot: u64, d: u64) {
        let core = self.core;
        let state = core.word(slot, STATE);
        let s = state.load(Ordering::Relaxed);
        state.store(free(version(s) + 1), Ordering::Release);
        crate::fault::pause_point("map.remove.freed");
        core.decrement_len();
        if d == self.bound && d > 0 {
            // Shrink the bound to the furthest key of this home still there.
            let mut bound = 0;
            for dd in (1..d).rev() {
                let at = (self.h + dd) % core.shape.capacity;
                let st = core.word(at, STATE).load(Ordering::Acquire);
                if st & PHASE_MASK != FREE
                    && core.home_of(core.word(at, HASH).load(Ordering::Relaxed)) == self.h
                {
                    bound = dd;
                    break;
                }
            }
            self.bound = bound;
        }
    }
}

/// Write a fresh map header into `block` (zeroed, so all slots are free).
///
/// # Safety
/// `block` must be valid for writes of `MAP_HEADER_SIZE` bytes, 8-aligned,
/// and not visible to anyone else.
unsafe fn init(block: *mut u8, capacity: u64, key_size: u64, value_size: u64, seed: u64) {
    let header = MapHeader {
        kind: kind::MAP,
        value_size: value_size as u32,
        capacity,
        key_size: key_size as u32,
        reserved0: 0,
        slot_stride: slot_stride(key_size, value_size),
        slots_offset: MAP_HEADER_SIZE,
        hash_seed: seed,
        reserved1: [0; 2],
        len: AtomicU64::new(0),
        reserved2: [0; 7],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<MapHeader>().write(header) };
}

/// Check a map block against its table entry; returns the header and the
/// shape to use from now on.
fn validate(handle: &Handle) -> Result<(&MapHeader, MapShape)> {
    let info = &handle.info;
    if info.size < MAP_HEADER_SIZE {
        return Err(handle.corrupt("map block is smaller than its header"));
    }
    // SAFETY: the block holds at least MAP_HEADER_SIZE bytes (just checked),
    // is 64-aligned (check_block), and MapHeader's mutable field is atomic.
    let header = unsafe { &*handle.block.cast::<MapHeader>() };
    // The shape comes from the entry snapshot and the header's fixed fields
    // from one private copy (`first_line`), not from the header itself,
    // which a peer could rewrite after we looked.
    let line = handle.first_line();
    let field32 = |offset| line.u32_at(offset);
    let field = |offset| line.u64_at(offset);
    let (capacity, key_size, value_size) = (info.capacity, info.key_size, info.elem_size);
    let stride = slot_stride(key_size as u64, value_size as u64);
    let needed = block_size(MAP_HEADER_SIZE, capacity, stride);
    if field32(offset_of!(MapHeader, kind)) != kind::MAP
        || field32(offset_of!(MapHeader, value_size)) != value_size
        || field32(offset_of!(MapHeader, key_size)) != key_size
        || key_size == 0
        || key_size as usize > MAX_KEY_SIZE
        || value_size == 0
        || field(offset_of!(MapHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_MAP_CAPACITY
        || field(offset_of!(MapHeader, slot_stride)) != stride
        || field(offset_of!(MapHeader, slots_offset)) != MAP_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("map header disagrees with its table entry or overruns its block")
        );
    }
    let shape = MapShape::new(
        capacity,
        key_size as usize,
        value_size as usize,
        field(offset_of!(MapHeader, hash_seed)),
    );
    Ok((header, shape))
}

#[inline]
fn core_of<'a>(handle: &'a Handle, header: &'a MapHeader, shape: MapShape) -> MapCore<'a> {
    // SAFETY: validate proved capacity * stride words lie inside the block.
    unsafe {
        MapCore::new(
            header,
            handle
                .block
                .add(MAP_HEADER_SIZE as usize)
                .cast::<AtomicU64>(),
            shape,
            handle.seg.map.lock_timeout(),
        )
    }
}

/// Per-kind validation for `Segment::check`; returns the number of keys.
/// The deep check reads every slot: phases, bounds, keys beyond their
/// home's bound (which lookups would miss), duplicate keys, and the count.
pub(crate) fn check(handle: &Handle, deep: bool) -> Result<Option<u64>> {
    let (header, shape) = validate(handle)?;
    let core = core_of(handle, header, shape);
    if !deep {
        return Ok(Some(core.len()));
    }
    let fault = |f: Fault| match f {
        Fault::Corrupt(d) => handle.corrupt(d),
        other => handle.corrupt(format!("{other:?}")),
    };
    let mut keys = std::collections::HashSet::new();
    let mut key = vec![0u8; shape.key_size];
    let mut live_count = 0u64;
    for slot in 0..shape.capacity {
        core.bound(slot).map_err(fault)?;
        let s = core.word(slot, STATE).load(Ordering::Acquire);
        match s & PHASE_MASK {
            FREE => continue,
            LIVE | BUSY => {}
            _ => return Err(fault(core.bad_state(slot, s))),
        }
        if s & PHASE_MASK == BUSY && s & WAS_LIVE == 0 {
            continue;
        }
        live_count += 1;
        let hash = core.word(slot, HASH).load(Ordering::Relaxed);
        let home = core.home_of(hash);
        let d = core.distance(home, slot);
        let bound = core.bound(home).map_err(fault)?;
        if d > bound {
            return Err(handle.corrupt(format!(
                "slot {slot} holds a key at distance {d} from its home {home}, beyond the bound {bound}"
            )));
        }
        core.read_bytes(slot, KEY, &mut key);
        if core.key(&key).hash != hash {
            return Err(handle.corrupt(format!("slot {slot}: the stored hash is not its key's")));
        }
        if !keys.insert(key.clone()) {
            return Err(handle.corrupt(format!(
                "slot {slot} holds a key that is also in another slot"
            )));
        }
    }
    let counted = header.len.load(Ordering::Relaxed);
    if counted != live_count {
        return Err(handle.corrupt(format!(
            "the length counter says {counted} keys but {live_count} are present (a process killed mid-insert or mid-remove leaves this)"
        )));
    }
    Ok(Some(live_count))
}

/// How to turn a typed key or value into the canonical bytes stored in a
/// slot: its bytes with every padding byte zero.
#[derive(Clone, Debug)]
struct Canon {
    size: usize,
    /// Data byte ranges, or `None` when the type has no padding.
    ranges: Option<Vec<(usize, usize)>>,
}

impl Canon {
    /// For values of `size` bytes described by `descriptor`.
    fn described(descriptor: &str, size: usize) -> Canon {
        // Descriptors were parsed at open; were one not to parse, copying
        // every byte (as the queue does) is the safe reading.
        let ranges = TypeDescriptor::parse(descriptor)
            .map(|d| d.data_ranges())
            .unwrap_or_else(|_| vec![(0, size as u64)]);
        let plain = ranges.len() == 1 && ranges[0] == (0, size as u64);
        Canon {
            size,
            ranges: (!plain).then(|| {
                ranges
                    .into_iter()
                    .map(|(o, l)| (o as usize, l as usize))
                    .filter(|&(o, l)| o + l <= size)
                    .collect()
            }),
        }
    }

    /// Call `f` with the canonical form of `bytes` (`size` bytes).
    #[inline]
    fn with_bytes<R>(&self, bytes: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        debug_assert_eq!(bytes.len(), self.size);
        match &self.ranges {
            None => f(bytes),
            Some(ranges) => {
                let mut buf = vec![0u8; self.size];
                for &(off, len) in ranges {
                    buf[off..off + len].copy_from_slice(&bytes[off..off + len]);
                }
                f(&buf)
            }
        }
    }

    /// Call `f` with the canonical bytes of `v`.
    #[inline]
    fn with<T: Element, R>(&self, v: &T, f: impl FnOnce(&[u8]) -> R) -> R {
        match &self.ranges {
            None => {
                // SAFETY: T has no padding (its descriptor says so), so all
                // size_of::<T>() bytes of `v` are initialised.
                let bytes =
                    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), self.size) };
                f(bytes)
            }
            Some(ranges) => {
                let mut buf = vec![0u8; self.size];
                let base = (v as *const T).cast::<u8>();
                for &(off, len) in ranges {
                    // SAFETY: data ranges lie inside T and hold initialised
                    // field bytes (padding is excluded).
                    let src = unsafe { std::slice::from_raw_parts(base.add(off), len) };
                    buf[off..off + len].copy_from_slice(src);
                }
                f(&buf)
            }
        }
    }
}

/// Fill a `T` from bytes written by `fill` (every bit pattern is a `T`).
#[inline]
fn read_typed<T: Element, E>(
    fill: impl FnOnce(&mut [u8]) -> std::result::Result<bool, E>,
) -> std::result::Result<Option<T>, E> {
    let mut v = MaybeUninit::<T>::zeroed();
    // SAFETY: zeroed memory is initialised bytes; the slice covers exactly v.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of::<T>())
    };
    if fill(bytes)? {
        // SAFETY: all bytes are initialised and Element types accept any bits.
        Ok(Some(unsafe { v.assume_init() }))
    } else {
        Ok(None)
    }
}

/// A fixed-capacity concurrent hash map from `K` to `V` in shared memory.
///
/// Keys are compared by their bytes (with padding zeroed); string keys use
/// [`FixedStr`](crate::FixedStr). Every method takes `&self` and may run
/// concurrently with any other, in any process.
///
/// ```
/// use shmds::{FixedStr, Segment};
/// # let name = format!("doc-map-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let prices = seg.create_map::<FixedStr<8>, f64>("prices", 100)?;
/// let aapl = FixedStr::new("AAPL")?;
/// assert_eq!(prices.insert(aapl, 189.5)?, None);
/// assert_eq!(prices.insert(aapl, 190.0)?, Some(189.5));
/// assert_eq!(prices.get(&aapl)?, Some(190.0));
///
/// let hits = seg.create_map::<u64, u64>("hits", 100)?;
/// hits.fetch_add(&7, 1)?;
/// hits.fetch_add(&7, 1)?;
/// assert_eq!(hits.get(&7)?, Some(2));
/// assert_eq!(hits.compare_exchange(&7, 2, 10)?, Ok(2));
/// assert_eq!(hits.remove(&7)?, Some(10));
/// assert!(hits.is_empty());
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/map.rs` and FORMAT.md for the algorithm, the progress
/// guarantee of each operation and what a crashed process leaves behind.
pub struct Map<K: Element, V: Element> {
    raw: RawMap,
    _t: PhantomData<(K, V)>,
}

impl<K: Element, V: Element> std::fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

/// A map whose key and value types are known at run time only, by their
/// type descriptors: keys and values go in and out as byte slices of
/// [`key_size`](RawMap::key_size) and [`value_size`](RawMap::value_size)
/// bytes. Python and C use this; [`Map<K, V>`] is the same map with Rust
/// types. Padding bytes of record keys are zeroed before use, so keys
/// compare by their data.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawmap-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_map_raw("hits", "<Q", "<q", 100)?;
/// raw.insert(&7u64.to_ne_bytes(), &(-3i64).to_ne_bytes(), None)?;
/// let hits = seg.open_map::<u64, i64>("hits")?;
/// assert_eq!(hits.get(&7)?, Some(-3));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
pub struct RawMap {
    handle: Handle,
    header: *const MapHeader,
    shape: MapShape,
    key: Canon,
    value: Canon,
}

// SAFETY: all shared state is reached through atomics and the slot protocol;
// key and value bytes carry no Rust invariants.
unsafe impl Send for RawMap {}
// SAFETY: as above; every method takes &self and is safe to call concurrently.
unsafe impl Sync for RawMap {}

impl std::fmt::Debug for RawMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map")
            .field("name", &self.handle.name())
            .field("key_type", &self.handle.info.key_type)
            .field("value_type", &self.handle.info.elem_type)
            .field("capacity", &self.shape.capacity)
            .finish()
    }
}

impl Segment {
    /// Create the map `name` holding at most `capacity` keys. Key types
    /// must be at most [`MAX_KEY_SIZE`] bytes.
    pub fn create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: u64,
    ) -> Result<Map<K, V>> {
        RawMap::create(self, Typed::map::<K, V>(), name, capacity, false).map(Map::new)
    }

    /// Open the existing map `name`, checking its key and value types.
    pub fn open_map<K: Element, V: Element>(&self, name: &str) -> Result<Map<K, V>> {
        RawMap::from_handle(Typed::map::<K, V>().open(self, name)?).map(Map::new)
    }

    /// Open the map `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_map<K: Element, V: Element>(
        &self,
        name: &str,
        capacity: u64,
    ) -> Result<Map<K, V>> {
        RawMap::create(self, Typed::map::<K, V>(), name, capacity, true).map(Map::new)
    }

    /// Create the map `name` from keys of type `key` to values of type
    /// `value` (type descriptors, see [`TypeDescriptor`]).
    pub fn create_map_raw(
        &self,
        name: &str,
        key: &str,
        value: &str,
        capacity: u64,
    ) -> Result<RawMap> {
        RawMap::create(
            self,
            Typed::described_map(key, value)?,
            name,
            capacity,
            false,
        )
    }

    /// Open the map `name`, creating it if it does not exist. An existing
    /// map must have these key and value types.
    pub fn open_or_create_map_raw(
        &self,
        name: &str,
        key: &str,
        value: &str,
        capacity: u64,
    ) -> Result<RawMap> {
        RawMap::create(
            self,
            Typed::described_map(key, value)?,
            name,
            capacity,
            true,
        )
    }

    /// Open the map `name` whatever its key and value types.
    pub fn open_map_raw(&self, name: &str) -> Result<RawMap> {
        RawMap::from_handle(Typed::stored(self, kind::MAP, name)?.open(self, name)?)
    }
}

impl RawMap {
    fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawMap> {
        let (key_size, value_size) = (typed.key_size() as u64, typed.elem_size() as u64);
        if capacity == 0 || capacity > MAX_MAP_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "map capacity must be 1..={MAX_MAP_CAPACITY}, not {capacity}"
            )));
        }
        if key_size == 0 || key_size as usize > MAX_KEY_SIZE {
            return Err(Error::InvalidArgument(format!(
                "map keys must be 1..={MAX_KEY_SIZE} bytes, not {key_size}"
            )));
        }
        let stride = slot_stride(key_size, value_size);
        let size = block_size(MAP_HEADER_SIZE, capacity, stride)?;
        let seed = crate::segment::random_seed() ^ seg.seed().rotate_left(17);
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe { init(block, capacity, key_size, value_size, seed) };
            Ok(())
        })?;
        RawMap::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<RawMap> {
        let (header, shape) = validate(&handle)?;
        let header: *const MapHeader = header;
        let key = Canon::described(&handle.info.key_type, shape.key_size);
        let value = Canon::described(&handle.info.elem_type, shape.value_size);
        Ok(RawMap {
            handle,
            header,
            shape,
            key,
            value,
        })
    }

    /// The algorithm over this map, with the sizes of `shape`.
    #[inline]
    fn core_with(&self, shape: MapShape) -> MapCore<'_> {
        // SAFETY: the header was validated at open and lives as long as the
        // mapping, which self.handle keeps alive.
        core_of(&self.handle, unsafe { &*self.header }, shape)
    }

    #[inline]
    fn core(&self) -> MapCore<'_> {
        self.core_with(self.shape)
    }

    fn fault(&self, fault: Fault) -> Error {
        match fault {
            Fault::Corrupt(detail) => self.handle.corrupt(detail),
            Fault::Full => self.handle.full(),
            Fault::Busy(pid) => Error::Busy {
                name: self.handle.name().to_owned(),
                pid,
                seconds: self.handle.seg.map.lock_timeout().as_secs(),
            },
        }
    }

    /// Run `op` holding the lock of the home slot of `key` (canonical bytes).
    #[inline]
    fn locked<R>(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        op: impl FnOnce(&mut Locked<'_, '_>) -> std::result::Result<R, Fault>,
    ) -> Result<R> {
        self.handle.check()?;
        let key = core.key(key);
        let result = core.lock(&key).and_then(|mut guard| op(&mut guard));
        result.map_err(|f| self.fault(f))
    }

    // The operations below take canonical key and value bytes and a core;
    // the typed Map passes a core specialised to its sizes.

    #[inline]
    fn get_in(&self, core: &MapCore<'_>, key: &[u8], out: Option<&mut [u8]>) -> Result<bool> {
        self.handle.check()?;
        core.get(&core.key(key), out).map_err(|f| self.fault(f))
    }

    fn insert_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        value: &[u8],
        old: Option<&mut [u8]>,
    ) -> Result<bool> {
        self.locked(core, key, |g| match g.find(old)? {
            Some((slot, _)) => {
                g.set_value(slot, value);
                Ok(true)
            }
            None => g.insert_new(value).map(|()| false),
        })
    }

    fn get_or_insert_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        value: &[u8],
        out: &mut [u8],
    ) -> Result<bool> {
        self.locked(core, key, |g| match g.find(Some(&mut *out))? {
            Some(_) => Ok(true),
            None => {
                g.insert_new(value)?;
                out.copy_from_slice(value);
                Ok(false)
            }
        })
    }

    fn remove_in(&self, core: &MapCore<'_>, key: &[u8], old: Option<&mut [u8]>) -> Result<bool> {
        self.locked(core, key, |g| match g.find(old)? {
            Some((slot, d)) => {
                g.remove_at(slot, d);
                Ok(true)
            }
            None => Ok(false),
        })
    }

    /// Atomic arithmetic needs native-order integer values.
    fn require_word_value(&self) -> Result<()> {
        let integer = TypeDescriptor::parse(self.value_type())
            .ok()
            .and_then(|d| d.scalar())
            .is_some_and(|s| matches!(s, crate::element::Scalar::Int { .. }));
        if !integer {
            return Err(Error::InvalidArgument(format!(
                "map {:?} has values of type {:?}; atomic arithmetic needs integer values",
                self.handle.name(),
                self.value_type()
            )));
        }
        Ok(())
    }

    fn fetch_add_in(&self, core: &MapCore<'_>, key: &[u8], delta: u64) -> Result<u64> {
        let size = self.shape.value_size;
        self.locked(core, key, |g| match g.find(None)? {
            Some((slot, _)) => {
                let old = int_of(&g.value_word(slot).to_ne_bytes()[..size]);
                g.set_value(slot, int_bytes(old.wrapping_add(delta), size).as_slice());
                Ok(old)
            }
            None => {
                g.insert_new(int_bytes(delta, size).as_slice())?;
                Ok(0)
            }
        })
    }

    fn compare_exchange_in(
        &self,
        core: &MapCore<'_>,
        key: &[u8],
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, Option<u64>>> {
        let size = self.shape.value_size;
        self.locked(core, key, |g| match g.find(None)? {
            Some((slot, _)) => {
                let old = int_of(&g.value_word(slot).to_ne_bytes()[..size]);
                if old == truncate(current, size) {
                    g.set_value(slot, int_bytes(new, size).as_slice());
                    Ok(Ok(old))
                } else {
                    Ok(Err(Some(old)))
                }
            }
            None => Ok(Err(None)),
        })
    }

    /// Check the length of a key and run `f` with its canonical bytes.
    fn with_key<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        crate::payload::one(key.len(), self.shape.key_size, self.name()).map_err(|_| {
            Error::InvalidArgument(format!(
                "keys of map {:?} have {} bytes, not {}",
                self.name(),
                self.shape.key_size,
                key.len()
            ))
        })?;
        self.key.with_bytes(key, f)
    }

    /// Check the length of a value and run `f` with its canonical bytes.
    fn with_value<R>(&self, value: &[u8], f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        crate::payload::one(value.len(), self.shape.value_size, self.name())?;
        self.value.with_bytes(value, f)
    }

    /// The value of `key` into `out` (`value_size` bytes); `false` when the
    /// key is absent. Never blocks writers.
    pub fn get(&self, key: &[u8], out: &mut [u8]) -> Result<bool> {
        crate::payload::one(out.len(), self.shape.value_size, self.name())?;
        self.with_key(key, |k| self.get_in(&self.core(), k, Some(out)))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.with_key(key, |k| self.get_in(&self.core(), k, None))
    }

    /// Set `key` to `value`. Returns whether the key was present, and then
    /// copies its previous value into `old` if given. [`Error::Full`] when
    /// the key is new and every slot is taken.
    pub fn insert(&self, key: &[u8], value: &[u8], old: Option<&mut [u8]>) -> Result<bool> {
        if let Some(old) = &old {
            crate::payload::one(old.len(), self.shape.value_size, self.name())?;
        }
        self.with_key(key, |k| {
            self.with_value(value, |v| self.insert_in(&self.core(), k, v, old))
        })
    }

    /// Copy `key`'s value into `out`, inserting `value` first if the key is
    /// absent. Returns whether the key was already present.
    pub fn get_or_insert(&self, key: &[u8], value: &[u8], out: &mut [u8]) -> Result<bool> {
        crate::payload::one(out.len(), self.shape.value_size, self.name())?;
        self.with_key(key, |k| {
            self.with_value(value, |v| self.get_or_insert_in(&self.core(), k, v, out))
        })
    }

    /// Remove `key`; returns whether it was present, and then copies its
    /// value into `old` if given.
    pub fn remove(&self, key: &[u8], old: Option<&mut [u8]>) -> Result<bool> {
        if let Some(old) = &old {
            crate::payload::one(old.len(), self.shape.value_size, self.name())?;
        }
        self.with_key(key, |k| self.remove_in(&self.core(), k, old))
    }

    /// For integer values (at most 8 bytes): add `delta` to the value of
    /// `key`, wrapping at the value's width, and return the previous value
    /// zero-extended to 64 bits (sign-extend it yourself for signed types;
    /// a negative `delta` is its two's complement). An absent key counts as
    /// zero and is inserted with `delta`.
    pub fn fetch_add(&self, key: &[u8], delta: u64) -> Result<u64> {
        self.require_word_value()?;
        self.with_key(key, |k| self.fetch_add_in(&self.core(), k, delta))
    }

    /// For integer values (at most 8 bytes): if `key`'s value is `current`
    /// (truncated to the value's width), set it to `new`. `Ok(previous)` on
    /// success, `Err(Some(actual))` when the value differs, `Err(None)` when
    /// the key is absent.
    pub fn compare_exchange(
        &self,
        key: &[u8],
        current: u64,
        new: u64,
    ) -> Result<std::result::Result<u64, Option<u64>>> {
        self.require_word_value()?;
        self.with_key(key, |k| {
            self.compare_exchange_in(&self.core(), k, current, new)
        })
    }

    /// Copy slot `slot`'s key and value out if it holds a live key
    /// (`Ok(false)` for a free slot or `slot >= capacity`). Iterating slots
    /// `0..capacity` visits every key present throughout exactly once (keys
    /// never move); this is what [`RawMap::iter`] does, for cursors that
    /// cannot hold a borrow.
    pub fn read_slot(&self, slot: u64, key: &mut [u8], value: &mut [u8]) -> Result<bool> {
        crate::payload::one(value.len(), self.shape.value_size, self.name())?;
        if key.len() != self.shape.key_size {
            return Err(Error::InvalidArgument(format!(
                "keys of map {:?} have {} bytes, not {}",
                self.name(),
                self.shape.key_size,
                key.len()
            )));
        }
        self.handle.check()?;
        if slot >= self.shape.capacity {
            return Ok(false);
        }
        self.core()
            .read_slot(slot, key, value)
            .map_err(|f| self.fault(f))
    }

    /// A weakly consistent iterator over `(key, value)` byte pairs; see
    /// [`Map::iter`]. Unreadable (damaged) slots are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
        (0..self.shape.capacity).filter_map(move |slot| {
            let mut key = vec![0; self.shape.key_size];
            let mut value = vec![0; self.shape.value_size];
            matches!(self.read_slot(slot, &mut key, &mut value), Ok(true)).then_some((key, value))
        })
    }

    /// Remove every key (keys inserted concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.handle.check()?;
        for (k, _) in self.iter() {
            self.remove(&k, None)?;
        }
        Ok(())
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write).
    /// It does not check that the map still exists: see [`RawMap::check`].
    pub fn len(&self) -> usize {
        self.core().len() as usize
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Ok(())` while the map behind this handle exists; [`Error::Stale`]
    /// once it was erased. Every key operation checks this itself; `len` and
    /// `is_empty` do not (they stay infallible), so call this first where a
    /// stale handle must not read as a count.
    pub fn check(&self) -> Result<()> {
        self.handle.check()
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> u64 {
        self.shape.capacity
    }

    /// Size of a key in bytes.
    pub fn key_size(&self) -> usize {
        self.shape.key_size
    }

    /// Size of a value in bytes.
    pub fn value_size(&self) -> usize {
        self.shape.value_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        &self.handle.info.key_type
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        &self.handle.info.elem_type
    }

    /// The name of the segment the map lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }
}

/// The unsigned integer whose native-order bytes are `bytes` (at most 8).
fn int_of(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if cfg!(target_endian = "little") {
        b[..bytes.len()].copy_from_slice(bytes);
    } else {
        b[8 - bytes.len()..].copy_from_slice(bytes);
    }
    u64::from_ne_bytes(b)
}

/// The low `size` bytes of `v`, in native order.
fn int_bytes(v: u64, size: usize) -> Vec<u8> {
    let b = v.to_ne_bytes();
    if cfg!(target_endian = "little") {
        b[..size].to_vec()
    } else {
        b[8 - size..].to_vec()
    }
}

/// `v` truncated to `size` bytes.
fn truncate(v: u64, size: usize) -> u64 {
    if size >= 8 {
        v
    } else {
        v & ((1u64 << (size * 8)) - 1)
    }
}

impl<K: Element, V: Element> Map<K, V> {
    fn new(raw: RawMap) -> Map<K, V> {
        debug_assert_eq!(raw.shape.key_size, std::mem::size_of::<K>());
        debug_assert_eq!(raw.shape.value_size, std::mem::size_of::<V>());
        Map {
            raw,
            _t: PhantomData,
        }
    }

    #[inline]
    fn core(&self) -> MapCore<'_> {
        // The sizes are those of K and V (the open checked the entry
        // against them); spelling them as constants lets the compiler
        // specialise the algorithm for this key and value type.
        let shape = MapShape {
            capacity: self.raw.shape.capacity,
            seed: self.raw.shape.seed,
            ..MapShape::new(0, std::mem::size_of::<K>(), std::mem::size_of::<V>(), 0)
        };
        debug_assert_eq!(shape.stride, self.raw.shape.stride);
        self.raw.core_with(shape)
    }

    /// The value of `key`, if present. Never blocks writers (see the module
    /// docs).
    #[inline]
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let core = self.core();
        self.raw.key.with(key, |k| {
            read_typed::<V, Error>(|out| self.raw.get_in(&core, k, Some(out)))
        })
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        let core = self.core();
        self.raw.key.with(key, |k| self.raw.get_in(&core, k, None))
    }

    /// Set `key` to `value`; returns the previous value. [`Error::Full`]
    /// when the key is new and every slot is taken.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let core = self.core();
        self.raw.key.with(&key, |k| {
            self.raw.value.with(&value, |v| {
                read_typed::<V, Error>(|old| self.raw.insert_in(&core, k, v, Some(old)))
            })
        })
    }

    /// The value of `key`, inserting `value` first if the key is absent
    /// (Python's `setdefault`).
    pub fn get_or_insert(&self, key: K, value: V) -> Result<V> {
        let core = self.core();
        let found = self.raw.key.with(&key, |k| {
            self.raw.value.with(&value, |v| {
                read_typed::<V, Error>(|out| {
                    self.raw.get_or_insert_in(&core, k, v, out)?;
                    Ok(true)
                })
            })
        })?;
        Ok(found.unwrap_or(value))
    }

    /// Remove `key`; returns its value if it was present. The slot is free
    /// for any key at once.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let core = self.core();
        self.raw.key.with(key, |k| {
            read_typed::<V, Error>(|old| self.raw.remove_in(&core, k, Some(old)))
        })
    }

    /// Number of keys. Exact when no writer runs (and none died mid-write).
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// `Ok(())` while the map exists, [`Error::Stale`] once it was erased
    /// (see [`RawMap::check`]; `len` and `is_empty` do not check).
    pub fn check(&self) -> Result<()> {
        self.raw.check()
    }

    /// The most keys the map holds.
    pub fn capacity(&self) -> u64 {
        self.raw.capacity()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.raw.name()
    }

    /// The home slot of `key` (FORMAT.md), for tests and byte-level tools.
    #[doc(hidden)]
    pub fn home_slot(&self, key: &K) -> u64 {
        let core = self.core();
        self.raw.key.with(key, |k| core.home_of(core.key(k).hash))
    }

    /// The key type descriptor.
    pub fn key_type(&self) -> &str {
        self.raw.key_type()
    }

    /// The value type descriptor.
    pub fn value_type(&self) -> &str {
        self.raw.value_type()
    }

    /// A weakly consistent iterator over `(key, value)` pairs: every key
    /// present for the whole iteration is yielded exactly once (keys never
    /// move); keys inserted or removed meanwhile may or may not be. Slots
    /// that cannot be read (a damaged segment) are skipped; `Segment::check`
    /// reports them.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter { map: self, next: 0 }
    }

    /// Remove every key (each removal as by [`Map::remove`]; keys inserted
    /// concurrently may survive).
    pub fn clear(&self) -> Result<()> {
        self.raw.clear()
    }

    fn read_slot(&self, slot: u64) -> std::result::Result<Option<(K, V)>, Fault> {
        let core = self.core();
        let mut value = None;
        let key = read_typed::<K, Fault>(|k| {
            value = read_typed::<V, Fault>(|v| core.read_slot(slot, k, v))?;
            Ok(value.is_some())
        })?;
        Ok(key.zip(value))
    }
}

impl<K: Element, V: AtomicElement> Map<K, V> {
    /// Add `delta` (wrapping) to the value of `key` and return the previous
    /// value; an absent key counts as zero and is inserted with `delta`.
    /// Atomic: concurrent `fetch_add`s from any processes all count.
    pub fn fetch_add(&self, key: &K, delta: V) -> Result<V> {
        let core = self.core();
        let old = self
            .raw
            .key
            .with(key, |k| self.raw.fetch_add_in(&core, k, bits_of(delta)))?;
        Ok(from_bits(old))
    }

    /// If `key`'s value is `current`, set it to `new`. Returns `Ok(previous)`
    /// on success, `Err(Some(actual))` when the value differs and
    /// `Err(None)` when the key is absent.
    pub fn compare_exchange(
        &self,
        key: &K,
        current: V,
        new: V,
    ) -> Result<std::result::Result<V, Option<V>>> {
        let core = self.core();
        let result = self.raw.key.with(key, |k| {
            self.raw
                .compare_exchange_in(&core, k, bits_of(current), bits_of(new))
        })?;
        Ok(result.map(from_bits).map_err(|e| e.map(from_bits)))
    }
}

/// An integer element as the unsigned integer of its bytes.
fn bits_of<V: AtomicElement>(v: V) -> u64 {
    // SAFETY: integer AtomicElements have no padding; the slice covers v.
    let bytes = unsafe {
        std::slice::from_raw_parts((&v as *const V).cast::<u8>(), std::mem::size_of::<V>())
    };
    int_of(bytes)
}

/// The integer element whose bytes are the low bytes of `bits`.
fn from_bits<V: AtomicElement>(bits: u64) -> V {
    read_typed::<V, ()>(|b| {
        b.copy_from_slice(&int_bytes(bits, b.len()));
        Ok(true)
    })
    .ok()
    .flatten()
    .expect("filled")
}

/// Iterator over a [`Map`]'s pairs; see [`Map::iter`].
pub struct Iter<'m, K: Element, V: Element> {
    map: &'m Map<K, V>,
    next: u64,
}

impl<K: Element, V: Element> Iterator for Iter<'_, K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        while self.next < self.map.raw.shape.capacity {
            let slot = self.next;
            self.next += 1;
            if let Ok(Some(pair)) = self.map.read_slot(slot) {
                return Some(pair);
            }
        }
        None
    }
}

#[cfg(all(test, loom))]
pub(crate) mod model {
    //! A map on the heap for loom models: same algorithm, loom atomics.
    use super::*;

    pub(crate) struct Model {
        header: Box<MapHeader>,
        words: Box<[AtomicU64]>,
        shape: MapShape,
    }

    impl Model {
        /// A map of `capacity` slots from u64 keys to values of
        /// `value_size` bytes, hash seed 0.
        pub(crate) fn new(capacity: u64, value_size: usize) -> Model {
            let shape = MapShape::new(capacity, 8, value_size, 0);
            let header = Box::new(MapHeader {
                kind: kind::MAP,
                value_size: value_size as u32,
                capacity,
                key_size: 8,
                reserved0: 0,
                slot_stride: slot_stride(8, value_size as u64),
                slots_offset: MAP_HEADER_SIZE,
                hash_seed: 0,
                reserved1: [0; 2],
                len: AtomicU64::new(0),
                reserved2: [0; 7],
            });
            let words = (0..capacity as usize * shape.stride)
                .map(|_| AtomicU64::new(0))
                .collect();
            Model {
                header,
                words,
                shape,
            }
        }

        pub(crate) fn core(&self) -> MapCore<'_> {
            // SAFETY: `words` holds capacity * stride initialised words.
            unsafe {
                MapCore::new(
                    &self.header,
                    self.words.as_ptr(),
                    self.shape,
                    Duration::from_secs(3600),
                )
            }
        }

        /// The home slot of key `k`.
        pub(crate) fn home(&self, k: u64) -> u64 {
            let core = self.core();
            core.home_of(core.key(&k.to_ne_bytes()).hash)
        }

        pub(crate) fn get(&self, k: u64) -> Option<Vec<u8>> {
            let mut out = vec![0u8; self.shape.value_size];
            self.core()
                .get(&self.core().key(&k.to_ne_bytes()), Some(&mut out))
                .unwrap()
                .then_some(out)
        }

        pub(crate) fn insert(&self, k: u64, v: &[u8]) -> Result<Option<Vec<u8>>, ()> {
            let core = self.core();
            let bytes = k.to_ne_bytes();
            let key = core.key(&bytes);
            let mut g = core.lock(&key).unwrap();
            let mut old = vec![0u8; self.shape.value_size];
            match g.find(Some(&mut old)).unwrap() {
                Some((slot, _)) => {
                    g.set_value(slot, v);
                    Ok(Some(old))
                }
                None => match g.insert_new(v) {
                    Ok(()) => Ok(None),
                    Err(Fault::Full) => Err(()),
                    Err(e) => panic!("{e:?}"),
                },
            }
        }

        pub(crate) fn remove(&self, k: u64) -> bool {
            let core = self.core();
            let bytes = k.to_ne_bytes();
            let key = core.key(&bytes);
            let mut g = core.lock(&key).unwrap();
            match g.find(None).unwrap() {
                Some((slot, d)) => {
                    g.remove_at(slot, d);
                    true
                }
                None => false,
            }
        }

        /// (live slots holding k, len counter)
        pub(crate) fn census(&self, k: u64) -> (usize, u64) {
            let core = self.core();
            let key = k.to_ne_bytes();
            let n = (0..self.shape.capacity)
                .filter(|&s| {
                    core.word(s, STATE).load(Ordering::SeqCst) & PHASE_MASK == LIVE
                        && core.key_matches(s, &core.key(&key))
                })
                .count();
            (n, core.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip() {
        let b = busy(5, 4_000_000, true);
        assert_eq!(b & PHASE_MASK, BUSY);
        assert_eq!(busy_pid(b), 4_000_000);
        assert_ne!(b & WAS_LIVE, 0);
        assert_eq!(version(b), 5);
        assert_eq!(version(live(VERSION_MASK + 1)), 0);
        assert_eq!(free(3) & PHASE_MASK, FREE);
    }

    #[test]
    fn hash_is_as_documented() {
        // The test vectors of FORMAT.md ("Map key hash").
        assert_eq!(map_key_hash(0, b""), 0xf47c_dffd_9671_363d);
        assert_eq!(map_key_hash(0, b"a"), 0x3507_7c9c_abe2_5ca4);
        assert_eq!(map_key_hash(1, b"0123456789abcdef!"), 0xced6_78fc_4d43_228b);
        let key = crate::FixedStr::<16>::new("AAPL").unwrap();
        // SAFETY: FixedStr has no padding; all 17 bytes are initialised.
        let bytes = unsafe {
            std::slice::from_raw_parts((&key as *const crate::FixedStr<16>).cast::<u8>(), 17)
        };
        assert_eq!(
            map_key_hash(0x0123_4567_89ab_cdef, bytes),
            0x9350_73d2_f31d_0b08
        );
    }

    #[test]
    fn homes_spread_over_the_table() {
        let shape = MapShape::new(1000, 8, 8, 0x1234);
        let header = MapHeader {
            kind: kind::MAP,
            value_size: 8,
            capacity: 1000,
            key_size: 8,
            reserved0: 0,
            slot_stride: 40,
            slots_offset: MAP_HEADER_SIZE,
            hash_seed: 0x1234,
            reserved1: [0; 2],
            len: AtomicU64::new(0),
            reserved2: [0; 7],
        };
        let words: Vec<AtomicU64> = (0..1000 * 5).map(|_| AtomicU64::new(0)).collect();
        // SAFETY: words holds capacity * stride words.
        let core = unsafe { MapCore::new(&header, words.as_ptr(), shape, Duration::from_secs(1)) };
        let mut used = std::collections::HashSet::new();
        for k in 0u64..1000 {
            used.insert(core.home_of(core.key(&k.to_ne_bytes()).hash));
        }
        // Random placement fills about 1 - 1/e of the homes.
        assert!(used.len() > 550, "{} homes used", used.len());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::model::Model;
    use crate::sync::model;
    use loom::sync::Arc;
    use loom::thread;

    /// Two keys with the same home slot in a map of `capacity`.
    fn colliding(m: &Model) -> (u64, u64) {
        let a = 1;
        let b = (2..1000).find(|&k| m.home(k) == m.home(a)).unwrap();
        (a, b)
    }

    #[test]
    fn insert_insert_same_key() {
        model(|| {
            let m = Arc::new(Model::new(2, 8));
            let m2 = m.clone();
            let t = thread::spawn(move || m2.insert(5, &1u64.to_ne_bytes()).unwrap());
            let mine = m.insert(5, &2u64.to_ne_bytes()).unwrap();
            let theirs = t.join().unwrap();
            // Exactly one insert found the key absent.
            assert!(mine.is_none() != theirs.is_none());
            assert_eq!(m.census(5), (1, 1));
            assert!(m.get(5).is_some());
        });
    }

    #[test]
    fn insert_remove_get() {
        model(|| {
            let m = Arc::new(Model::new(2, 8));
            m.insert(3, &7u64.to_ne_bytes()).unwrap();
            let reader = {
                let m = m.clone();
                thread::spawn(move || m.get(3))
            };
            let writer = {
                let m = m.clone();
                thread::spawn(move || m.insert(3, &8u64.to_ne_bytes()).unwrap())
            };
            let removed = m.remove(3);
            let seen = reader.join().unwrap();
            let replaced = writer.join().unwrap();
            // The reader sees 7, 8 or nothing, never anything else.
            if let Some(v) = seen {
                let v = u64::from_ne_bytes(v.try_into().unwrap());
                assert!(v == 7 || v == 8, "read {v}");
            }
            let (n, len) = m.census(3);
            assert!(removed);
            assert_eq!(n as u64, len);
            // Either the remove came last (absent) or the insert re-added it.
            assert_eq!(n == 1, replaced.is_none());
        });
    }

    #[test]
    fn removed_slots_are_reused() {
        model(|| {
            // Capacity 1: the second key only fits in the slot the first frees.
            let m = Arc::new(Model::new(1, 8));
            m.insert(1, &1u64.to_ne_bytes()).unwrap();
            let reader = {
                let m = m.clone();
                thread::spawn(move || (m.get(1), m.get(2)))
            };
            let inserted = {
                let m = m.clone();
                thread::spawn(move || m.insert(2, &2u64.to_ne_bytes()))
            };
            assert!(m.remove(1));
            let (one, two) = reader.join().unwrap();
            let inserted = inserted.join().unwrap();
            if let Some(v) = one {
                assert_eq!(u64::from_ne_bytes(v.try_into().unwrap()), 1);
            }
            if let Some(v) = two {
                assert_eq!(u64::from_ne_bytes(v.try_into().unwrap()), 2);
            }
            match inserted {
                // It ran before the remove freed the slot: full.
                Err(()) => assert_eq!(m.census(2), (0, 0)),
                Ok(None) => assert_eq!(m.census(2), (1, 1)),
                Ok(Some(_)) => panic!("key 2 was never there"),
            }
            assert_eq!(m.census(1).0, 0);
        });
    }

    #[test]
    fn colliding_keys_and_long_values() {
        model(|| {
            // 16-byte values take the busy path; two keys share a home.
            let m = Arc::new(Model::new(2, 16));
            let (a, b) = colliding(&m);
            let value = |x: u64| [x.to_ne_bytes(), x.to_ne_bytes()].concat();
            m.insert(a, &value(1)).unwrap();
            let reader = {
                let m = m.clone();
                thread::spawn(move || m.get(b))
            };
            let writer = {
                let m = m.clone();
                thread::spawn(move || m.insert(b, &value(2)).unwrap())
            };
            m.insert(a, &value(3)).unwrap();
            assert!(m.remove(a));
            if let Some(v) = reader.join().unwrap() {
                assert_eq!(v, value(2), "torn or foreign value");
            }
            assert!(writer.join().unwrap().is_none());
            assert_eq!(m.get(b), Some(value(2)));
            assert_eq!(m.get(a), None);
            assert_eq!(m.census(b), (1, 1));
        });
    }
}
