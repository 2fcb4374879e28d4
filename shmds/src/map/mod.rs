//! `Map<K, V>`: a fixed-capacity concurrent hash map in shared memory, and
//! `Set<K>` (`set.rs`): the same table with values of 0 bytes (kind SET).
//! Everything below holds for both; a set's slots simply have no value
//! words, and its inserts never replace anything.
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

use crate::element::{AtomicElement, Element, Lookup, TypeDescriptor};
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, MapHeader, MAP_CTRL_PER_SLOT, MAP_HEADER_SIZE, MAP_SLOT_SIZE};
use crate::process::{current_pid, is_alive};
use crate::segment::Segment;
use crate::sync::{fence, AtomicU64, AtomicU8, Ordering};
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

#[inline(always)]
const fn words_for(bytes: usize) -> usize {
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
    #[inline(always)]
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

/// Where a map block's control bytes start (after the slots, 64-aligned)
/// and the block's size, for `capacity` slots of `stride` bytes.
pub(crate) fn block_layout(capacity: u64, stride: u64) -> Result<(u64, u64)> {
    let too_big = || {
        Error::InvalidArgument(format!(
            "{capacity} map slots of {stride} bytes do not fit in a 64-bit size"
        ))
    };
    let ctrl = block_size(MAP_HEADER_SIZE, capacity, stride)?;
    let size = capacity
        .checked_mul(MAP_CTRL_PER_SLOT)
        .and_then(|c| c.checked_add(ctrl))
        .and_then(crate::alloc::align_up)
        .ok_or_else(too_big)?;
    Ok((ctrl, size))
}

/// A key's tag: the low byte of its hash (the home comes from the high
/// bits, so keys of one home do not share their tags).
#[inline(always)]
fn tag_of(hash: u64) -> u8 {
    hash as u8
}

/// The bound mirror that stands for a bound of `bound`.
#[inline(always)]
fn mirror_of(bound: u64) -> u8 {
    bound.min(MIRROR_SEE_HOME as u64) as u8
}

/// A bound mirror of 255: the bound is 255 or more, read the home word.
const MIRROR_SEE_HOME: u8 = 255;

/// The map algorithm over a header and a slot array. The same code runs on
/// a segment's bytes and, under loom, on heap memory.
pub(crate) struct MapCore<'a> {
    header: &'a MapHeader,
    words: *const AtomicU64,
    /// `MAP_CTRL_PER_SLOT * capacity` control bytes: tag, bound mirror.
    ctrl: *const AtomicU8,
    shape: MapShape,
    patience: Duration,
}

impl<'a> MapCore<'a> {
    /// # Safety
    /// `words` must point to `shape.capacity * shape.stride` initialised
    /// words and `ctrl` to `2 * shape.capacity` initialised bytes, valid
    /// for `'a`.
    unsafe fn new(
        header: &'a MapHeader,
        words: *const AtomicU64,
        ctrl: *const AtomicU8,
        shape: MapShape,
        patience: Duration,
    ) -> Self {
        MapCore {
            header,
            words,
            ctrl,
            shape,
            patience,
        }
    }

    /// The tag byte of `slot`.
    #[inline(always)]
    fn tag(&self, slot: u64) -> &'a AtomicU8 {
        debug_assert!(slot < self.shape.capacity);
        // SAFETY: slot < capacity (as for `word`); the bytes are initialised.
        unsafe { &*self.ctrl.add(slot as usize * MAP_CTRL_PER_SLOT as usize) }
    }

    /// The bound mirror byte of home `h`.
    #[inline(always)]
    fn mirror(&self, h: u64) -> &'a AtomicU8 {
        debug_assert!(h < self.shape.capacity);
        // SAFETY: as in `tag`.
        unsafe { &*self.ctrl.add(h as usize * MAP_CTRL_PER_SLOT as usize + 1) }
    }

    /// The bound a lookup of home `h` reads up to: the mirror, or the home
    /// word when the mirror says 255 (always less than the capacity).
    #[inline(always)]
    fn lookup_bound(&self, h: u64) -> std::result::Result<u64, Fault> {
        match self.mirror(h).load(Ordering::Relaxed) {
            MIRROR_SEE_HOME => self.bound(h),
            m => Ok((m as u64).min(self.shape.capacity - 1)),
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
    #[inline(always)]
    pub(crate) fn key<'k>(&self, bytes: &'k [u8]) -> Key<'k> {
        Key::new(self.shape.seed, bytes)
    }

    #[inline(always)]
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
    #[inline(always)]
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

    #[inline(always)]
    fn key_matches(&self, slot: u64, key: &Key<'_>) -> bool {
        if self.word(slot, KEY).load(Ordering::Relaxed) != key.first {
            return false;
        }
        (1..self.shape.key_words)
            .all(|j| self.word(slot, KEY + j).load(Ordering::Relaxed) == key.word(j))
    }

    #[inline(always)]
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
    #[inline(always)]
    fn scan(
        &self,
        h: u64,
        bound: u64,
        key: &Key<'_>,
        mut out: Option<&mut [u8]>,
    ) -> std::result::Result<Option<(u64, u64)>, Fault> {
        let tag = tag_of(key.hash);
        let mut slot = h;
        for d in 0..=bound {
            // The tag filters: a slot whose tag differs did not hold the
            // key when we looked (a writer stores the tag before it
            // publishes the key), so only candidates are read.
            if self.tag(slot).load(Ordering::Relaxed) == tag
                && self.read_if_match(slot, key, out.as_deref_mut())?
            {
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

    /// Free every busy slot and release every home lock, as their holders'
    /// deaths would (see `QueueCore::revoke`). Returns the claims taken.
    pub(crate) fn revoke(&self) -> u64 {
        let mut taken = 0;
        for slot in 0..self.shape.capacity {
            let s = self.word(slot, STATE).load(Ordering::Acquire);
            if s & PHASE_MASK == BUSY {
                self.recover(slot, s);
                taken += 1;
            }
            let home = self.word(slot, HOME);
            let w = home.load(Ordering::Acquire);
            if w & LOCK_MASK != 0 {
                home.store(w & !LOCK_MASK, Ordering::Release);
                taken += 1;
            }
        }
        taken
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
    #[inline(always)]
    pub(crate) fn get(
        &self,
        key: &Key<'_>,
        out: Option<&mut [u8]>,
    ) -> std::result::Result<bool, Fault> {
        let h = self.home_of(key.hash);
        let bound = self.lookup_bound(h)?;
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
                    // And the mirror lookups read, before the key exists
                    // (also when an earlier holder died between the two).
                    let mirror = core.mirror(self.h);
                    if mirror.load(Ordering::Relaxed) < mirror_of(d) {
                        mirror.store(mirror_of(d), Ordering::Relaxed);
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
                        core.tag(slot)
                            .store(tag_of(self.key.hash), Ordering::Relaxed);
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

    /// The value word of `slot` (values of at most 8 bytes; never a set's,
    /// which has no value word).
    pub(crate) fn value_word(&self, slot: u64) -> u64 {
        debug_assert_eq!(self.core.shape.value_words, 1);
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
            core.mirror(self.h)
                .store(mirror_of(bound), Ordering::Relaxed);
        }
    }
}

/// Write a fresh map header of kind `map_kind` (a map, or a set) into
/// `block` (zeroed, so all slots are free).
///
/// # Safety
/// `block` must be valid for writes of `MAP_HEADER_SIZE` bytes, 8-aligned,
/// and not visible to anyone else.
unsafe fn init(
    block: *mut u8,
    map_kind: u32,
    capacity: u64,
    key_size: u64,
    value_size: u64,
    seed: u64,
    ctrl_offset: u64,
) {
    let header = MapHeader {
        kind: map_kind,
        value_size: value_size as u32,
        capacity,
        key_size: key_size as u32,
        reserved0: 0,
        slot_stride: slot_stride(key_size, value_size),
        slots_offset: MAP_HEADER_SIZE,
        hash_seed: seed,
        ctrl_offset,
        reserved1: 0,
        len: AtomicU64::new(0),
        reserved2: [0; 7],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<MapHeader>().write(header) };
}

/// Check a map block (or a set's: kind SET, values of 0 bytes) against its
/// table entry; returns the header and the shape to use from now on.
fn validate(handle: &Handle) -> Result<(&MapHeader, MapShape)> {
    let info = &handle.info;
    let what = kind::name(info.kind);
    if info.size < MAP_HEADER_SIZE {
        return Err(handle.corrupt(format!("{what} block is smaller than its header")));
    }
    // Only a set has values of 0 bytes; the entry's kind was checked at open
    // (or picked this function, for `Segment::check`).
    let set = info.kind == kind::SET;
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
    let layout = block_layout(capacity, stride);
    if field32(offset_of!(MapHeader, kind)) != info.kind
        || !(set || info.kind == kind::MAP)
        || field32(offset_of!(MapHeader, value_size)) != value_size
        || field32(offset_of!(MapHeader, key_size)) != key_size
        || key_size == 0
        || key_size as usize > MAX_KEY_SIZE
        || (value_size == 0) != set
        || field(offset_of!(MapHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_MAP_CAPACITY
        || field(offset_of!(MapHeader, slot_stride)) != stride
        || field(offset_of!(MapHeader, slots_offset)) != MAP_HEADER_SIZE
        || layout.as_ref().map_or(true, |&(ctrl, size)| {
            field(offset_of!(MapHeader, ctrl_offset)) != ctrl || size > info.size
        })
    {
        return Err(handle.corrupt(format!(
            "{what} header disagrees with its table entry or overruns its block"
        )));
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
    // The offset validate checked against the header (recomputed, not read
    // from the header, which a peer may have rewritten since).
    let ctrl = MAP_HEADER_SIZE as usize + shape.capacity as usize * shape.stride * 8;
    let ctrl = (ctrl + 63) & !63;
    // SAFETY: validate proved capacity * stride words and then the control
    // bytes at that offset lie inside the block.
    unsafe {
        MapCore::new(
            header,
            handle
                .block
                .add(MAP_HEADER_SIZE as usize)
                .cast::<AtomicU64>(),
            handle.block.add(ctrl).cast::<AtomicU8>(),
            shape,
            handle.seg.map.lock_timeout(),
        )
    }
}

/// The largest and the mean probe bound over the homes of a map or set
/// (how far lookups scan), read without writing anything; homes whose
/// bound is damaged are left out.
pub(crate) fn probe_bounds(handle: &Handle) -> Result<(u64, f64)> {
    let (header, shape) = validate(handle)?;
    let core = core_of(handle, header, shape);
    let (mut max, mut sum, mut homes) = (0u64, 0u64, 0u64);
    for h in 0..shape.capacity {
        if let Ok(b) = core.bound(h) {
            max = max.max(b);
            sum += b;
            homes += 1;
        }
    }
    Ok((
        max,
        if homes == 0 {
            0.0
        } else {
            sum as f64 / homes as f64
        },
    ))
}

/// Take over every claim (see `MapCore::revoke`).
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    let (header, shape) = validate(handle)?;
    Ok(core_of(handle, header, shape).revoke())
}

/// Per-kind validation for `Segment::check` (maps and sets); returns the
/// number of keys.
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
        // Read everything the checks judge, then the state again: a writer
        // may have changed the slot (or its home's bound, mirror or the
        // tag) meanwhile, and only a slot that held still is judged.
        let hash = core.word(slot, HASH).load(Ordering::Relaxed);
        let home = core.home_of(hash);
        let d = core.distance(home, slot);
        let bound = core.bound(home).map_err(fault)?;
        let mirror = core.mirror(home).load(Ordering::Relaxed);
        let tag = core.tag(slot).load(Ordering::Relaxed);
        core.read_bytes(slot, KEY, &mut key);
        fence(Ordering::Acquire);
        if core.word(slot, STATE).load(Ordering::Relaxed) != s {
            continue;
        }
        if d > bound {
            return Err(handle.corrupt(format!(
                "slot {slot} holds a key at distance {d} from its home {home}, beyond the bound {bound}"
            )));
        }
        if mirror < mirror_of(d) {
            return Err(handle.corrupt(format!(
                "slot {slot} holds a key at distance {d} from its home {home}, beyond the bound \
                 mirror {mirror} (lookups would miss it)"
            )));
        }
        if tag != tag_of(hash) {
            return Err(handle.corrupt(format!(
                "slot {slot}: its tag byte is not its key's (lookups would miss the key)"
            )));
        }
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

mod raw;
mod set;
mod typed;

pub use raw::RawMap;
#[allow(unused_imports)]
use raw::*;
pub use set::{RawSet, Set, SetIter};
pub use typed::{Iter, Map};

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, loom))]
pub(crate) mod model;
#[cfg(test)]
mod tests;
