//! Helpers shared by the heap tests (`heap.rs`, `heap_process.rs`).
//!
//! - Structures of every kind whose contents follow from their names
//!   ([`create`], [`verify`]): any process can fill one and any other can
//!   check it, including after its creator was killed half-way.
//! - [`Churn`]: a seeded random create/erase workload that keeps its live
//!   bytes under a budget and verifies every structure before erasing it
//!   (two structures given overlapping blocks would damage each other's
//!   contents, which the verification sees).
//! - [`heap_sound`], [`assert_all_free`]: the heap invariants of the v4
//!   contract (`Segment::check`, `Segment::heap`).
#![allow(dead_code)]

use crate::common::Rng;
use shmds::layout::kind;
use shmds::{ChannelOptions, EntryInfo, Error, HeapStats, Segment, TopicOptions};

/// A non-zero word derived from a name (FNV-1a).
pub fn tag_of(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

/// Element `i` of the structure tagged `tag`: every byte non-zero, so a
/// byte that reads 0 is one not written yet.
pub fn word(tag: u64, i: u64) -> u64 {
    let mut x = tag ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    x | 0x0101_0101_0101_0101
}

/// Byte `i` of the byte array tagged `tag` (never 0).
pub fn byte(tag: u64, i: u64) -> u8 {
    (word(tag, i / 8) >> (8 * (i % 8))) as u8
}

/// Message `j` of the channel or topic tagged `tag`: its first byte is `j`,
/// then 0 to 63 bytes of content.
pub fn message(tag: u64, j: u64) -> Vec<u8> {
    let len = 1 + word(tag, 1000 + j) % 64;
    let mut m = vec![j as u8];
    m.extend((1..len).map(|k| byte(tag ^ (j + 1).wrapping_mul(0x2545_f491_4f6c_dd1d), k)));
    m
}

/// Elements a new queue or stack gets (at most 64; capacities are >= 64).
pub fn ring_fill(tag: u64) -> u64 {
    (tag >> 8) % 65
}

/// Keys a new map gets (at most 32; capacities are >= 64).
pub fn map_fill(tag: u64) -> u64 {
    (tag >> 16) % 33
}

/// Messages a new channel gets (at most 8 of at most 64 bytes; capacities
/// are >= 2 KiB, so they always fit).
pub fn channel_fill(tag: u64) -> u64 {
    (tag >> 24) % 9
}

/// Messages published to a new topic (1 to 5).
pub fn topic_fill(tag: u64) -> u64 {
    1 + (tag >> 32) % 5
}

/// What to create: the kind and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `Array<u64>` of this length.
    Words(u64),
    /// `Array<u8>` of this length.
    Bytes(u64),
    /// `Queue<u64>` of this capacity (>= 64).
    Queue(u64),
    /// `Stack<u64>` of this capacity (>= 64).
    Stack(u64),
    /// `Map<u64, u64>` of this capacity (>= 64).
    Map(u64),
    /// Channel of this many bytes (>= 2048).
    Channel(u64),
    /// Topic of this many bytes (>= 1024).
    Topic(u64),
}

/// A random plan whose payload is at most about `max_bytes` (sizes are
/// log-uniform: mostly small, some large).
pub fn random_plan(rng: &mut Rng, max_bytes: u64) -> Plan {
    let max_words = (max_bytes / 8).max(1);
    let bits = 64 - max_words.leading_zeros() as u64;
    let n = (1 + rng.next() % (1u64 << (rng.next() % bits))).min(max_words);
    match rng.next() % 20 {
        0..=5 => Plan::Words(n),
        6..=8 => Plan::Bytes((n * 8 - rng.next() % 8).max(1)),
        9..=11 => Plan::Queue((n / 2).clamp(64, 512)),
        12 | 13 => Plan::Stack((n / 2).clamp(64, 256)),
        14..=16 => Plan::Map((n / 8).clamp(64, 128)),
        17 | 18 => Plan::Channel((n * 8).clamp(2048, max_bytes.max(2048))),
        _ => Plan::Topic((n * 8).clamp(1024, max_bytes.max(1024))),
    }
}

/// Create `name` as planned, check that it starts zeroed / empty (panics
/// otherwise: new blocks must be zeroed, whatever the space held before),
/// and fill it with the contents its name determines.
pub fn create(seg: &Segment, name: &str, plan: Plan) -> shmds::Result<()> {
    let tag = tag_of(name);
    match plan {
        Plan::Words(n) => {
            let a = seg.create_array::<u64>(name, n as usize)?;
            let fresh = a.to_vec()?;
            if let Some(i) = fresh.iter().position(|&w| w != 0) {
                panic!(
                    "new array {name:?} of {n} words is not zeroed at {i}: {:#x}",
                    fresh[i]
                );
            }
            let values: Vec<u64> = (0..n).map(|i| word(tag, i)).collect();
            a.write(0, &values)?;
        }
        Plan::Bytes(n) => {
            let a = seg.create_array::<u8>(name, n as usize)?;
            let fresh = a.to_vec()?;
            if let Some(i) = fresh.iter().position(|&b| b != 0) {
                panic!(
                    "new array {name:?} of {n} bytes is not zeroed at {i}: {:#x}",
                    fresh[i]
                );
            }
            let values: Vec<u8> = (0..n).map(|i| byte(tag, i)).collect();
            a.write(0, &values)?;
        }
        Plan::Queue(cap) => {
            let q = seg.create_queue::<u64>(name, cap as usize)?;
            assert!(
                q.is_empty(),
                "new queue {name:?} holds {} elements",
                q.len()
            );
            match q.try_pop() {
                Ok(None) => {}
                other => panic!("new queue {name:?}: try_pop gave {other:?}"),
            }
            for j in 0..ring_fill(tag) {
                assert!(q.try_push(word(tag, j))?, "new queue {name:?} is full");
            }
        }
        Plan::Stack(cap) => {
            let s = seg.create_stack::<u64>(name, cap as usize)?;
            assert!(
                s.is_empty(),
                "new stack {name:?} holds {} elements",
                s.len()
            );
            match s.try_pop() {
                Ok(None) => {}
                other => panic!("new stack {name:?}: try_pop gave {other:?}"),
            }
            for j in 0..ring_fill(tag) {
                assert!(s.try_push(word(tag, j))?, "new stack {name:?} is full");
            }
        }
        Plan::Map(cap) => {
            let m = seg.create_map::<u64, u64>(name, cap as usize)?;
            assert!(m.is_empty(), "new map {name:?} holds {} keys", m.len());
            let found: Vec<(u64, u64)> = m.iter().collect();
            assert!(found.is_empty(), "new map {name:?} yields {found:x?}");
            for k in 1..=map_fill(tag) {
                assert_eq!(m.insert(k, word(tag, k))?, None, "new map {name:?}");
            }
        }
        Plan::Channel(cap) => {
            let c = seg.create_channel(name, ChannelOptions::new(cap))?;
            assert!(
                c.is_empty(),
                "new channel {name:?} holds {} messages",
                c.len()
            );
            assert_eq!(c.used_bytes(), 0, "new channel {name:?}");
            let mut tx = c.sender()?;
            for j in 0..channel_fill(tag) {
                tx.try_send(&message(tag, j))?;
            }
        }
        Plan::Topic(cap) => {
            let t = seg.create_topic(name, TopicOptions::new(cap))?;
            assert_eq!(t.published(), 0, "new topic {name:?}");
            let mut buf = Vec::new();
            assert_eq!(t.latest(&mut buf)?, None, "new topic {name:?}");
            for j in 0..topic_fill(tag) {
                assert_eq!(t.publish(&message(tag, j))?, j, "topic {name:?}");
            }
        }
    }
    Ok(())
}

/// The `j` of a message of the structure tagged `tag`, if it is one.
fn message_index(tag: u64, m: &[u8], below: u64) -> Option<u64> {
    let j = *m.first()? as u64;
    (j < below && m == message(tag, j).as_slice()).then_some(j)
}

/// Check the contents of the live entry `info` against its name.
///
/// `complete`: its creator finished filling it and nobody took anything
/// out. Otherwise (its creator may have been killed while filling it, or
/// while verifying it) every element present must still be one its name
/// determines, in an order the structure allows.
///
/// Queues, stacks and channels are drained: call this just before erasing.
pub fn verify(seg: &Segment, info: &EntryInfo, complete: bool) -> Result<(), String> {
    let name = info.name.as_str();
    let tag = tag_of(name);
    let err = |e: Error| format!("{name:?}: {e}");
    match (info.kind, info.elem_size) {
        (kind::ARRAY, 8) => {
            let got = seg
                .open_array::<u64>(name)
                .map_err(err)?
                .to_vec()
                .map_err(err)?;
            for (i, &w) in got.iter().enumerate() {
                let want = word(tag, i as u64);
                let ok = if complete {
                    w == want
                } else {
                    (0..8).all(|b| {
                        let (g, e) = ((w >> (8 * b)) as u8, (want >> (8 * b)) as u8);
                        g == 0 || g == e
                    })
                };
                if !ok {
                    return Err(format!(
                        "{name:?}: word {i} of {} is {w:#x}, expected {want:#x}",
                        got.len()
                    ));
                }
            }
        }
        (kind::ARRAY, 1) => {
            let got = seg
                .open_array::<u8>(name)
                .map_err(err)?
                .to_vec()
                .map_err(err)?;
            for (i, &b) in got.iter().enumerate() {
                let want = byte(tag, i as u64);
                if b != want && (complete || b != 0) {
                    return Err(format!(
                        "{name:?}: byte {i} of {} is {b:#x}, expected {want:#x}",
                        got.len()
                    ));
                }
            }
        }
        (kind::QUEUE, 8) => {
            let q = seg.open_queue::<u64>(name).map_err(err)?;
            let got = drain(|| q.try_pop()).map_err(err)?;
            let fill = ring_fill(tag);
            let index: Vec<Option<u64>> = got.iter().map(|&v| find(tag, v, fill)).collect();
            let ok = if complete {
                index.iter().copied().eq((0..fill).map(Some))
            } else {
                increasing(&index)
            };
            if !ok {
                return Err(format!("{name:?}: queue held {got:x?}, {fill} pushed"));
            }
        }
        (kind::STACK, 8) => {
            let s = seg.open_stack::<u64>(name).map_err(err)?;
            let got = drain(|| s.try_pop()).map_err(err)?;
            let fill = ring_fill(tag);
            let mut index: Vec<Option<u64>> = got.iter().map(|&v| find(tag, v, fill)).collect();
            index.reverse();
            let ok = if complete {
                index.iter().copied().eq((0..fill).map(Some))
            } else {
                increasing(&index)
            };
            if !ok {
                return Err(format!("{name:?}: stack held {got:x?}, {fill} pushed"));
            }
        }
        (kind::MAP, 8) => {
            let m = seg.open_map::<u64, u64>(name).map_err(err)?;
            m.check().map_err(err)?;
            let mut got: Vec<(u64, u64)> = m.iter().collect();
            got.sort();
            let fill = map_fill(tag);
            let sound = got
                .iter()
                .all(|&(k, v)| (1..=fill).contains(&k) && v == word(tag, k));
            let keys = got.iter().map(|&(k, _)| k);
            if !sound || (complete && !keys.eq(1..=fill)) {
                return Err(format!(
                    "{name:?}: map holds {got:x?}, {fill} keys inserted"
                ));
            }
        }
        (kind::CHANNEL, _) => {
            let c = seg.open_channel(name).map_err(err)?;
            let mut rx = c.receiver().map_err(err)?;
            let mut got = Vec::new();
            let mut quiet = 0;
            let mut buf = Vec::new();
            while quiet < 3 {
                match rx.try_recv(&mut buf) {
                    Ok(_) => got.push(buf.clone()),
                    Err(Error::Empty { .. } | Error::Disconnected { .. }) => quiet += 1,
                    Err(e) => return Err(err(e)),
                }
                if got.len() > 64 {
                    return Err(format!("{name:?}: endless messages"));
                }
            }
            let fill = channel_fill(tag);
            let index: Vec<Option<u64>> = got.iter().map(|m| message_index(tag, m, fill)).collect();
            let ok = if complete {
                index.iter().copied().eq((0..fill).map(Some))
            } else {
                increasing(&index)
            };
            if !ok {
                return Err(format!(
                    "{name:?}: channel held {} messages {index:?}, {fill} sent",
                    got.len()
                ));
            }
        }
        (kind::TOPIC, _) => {
            let t = seg.open_topic(name).map_err(err)?;
            let fill = topic_fill(tag);
            let mut buf = Vec::new();
            match t.latest(&mut buf).map_err(err)? {
                Some(seq) => {
                    let j = message_index(tag, &buf, fill);
                    if j != Some(seq) || (complete && seq + 1 != fill) {
                        return Err(format!(
                            "{name:?}: latest message {seq} is {buf:x?}, {fill} published"
                        ));
                    }
                }
                None if complete => {
                    return Err(format!("{name:?}: no message, {fill} published"));
                }
                None => {}
            }
        }
        (k, size) => {
            return Err(format!(
                "{name:?}: unexpected kind {k} of {size}-byte elements"
            ))
        }
    }
    Ok(())
}

/// Take until three `Empty` in a row (a dead process's claim is taken over
/// on a later attempt).
fn drain(mut pop: impl FnMut() -> shmds::Result<Option<u64>>) -> shmds::Result<Vec<u64>> {
    let mut got = Vec::new();
    let mut empty = 0;
    while empty < 3 {
        match pop()? {
            Some(v) => got.push(v),
            None => empty += 1,
        }
        if got.len() > 1024 {
            break;
        }
    }
    Ok(got)
}

/// The `j < below` with `word(tag, j) == v`.
fn find(tag: u64, v: u64, below: u64) -> Option<u64> {
    (0..below).find(|&j| word(tag, j) == v)
}

/// Every element known and strictly increasing.
fn increasing(index: &[Option<u64>]) -> bool {
    index.iter().all(Option::is_some) && index.windows(2).all(|w| w[0] < w[1])
}

/// Read another process's array while it may be erased and its memory
/// reused at any moment: if the handle is still valid after the read, the
/// read happened while the array was live, so it must show only bytes of
/// this array (each 0, not written yet, or its own). Reads of an array
/// erased meanwhile are discarded; so are arrays that vanished.
pub fn peek(seg: &Segment, info: &EntryInfo) -> Result<(), String> {
    if info.kind != kind::ARRAY {
        return Ok(());
    }
    let name = info.name.as_str();
    let tag = tag_of(name);
    // Erased, or erased and made again under the same name as another
    // kind or type (churners reuse names) since `info` was read.
    let gone = |e: &Error| {
        matches!(
            e,
            Error::Stale { .. }
                | Error::EntryNotFound { .. }
                | Error::KindMismatch { .. }
                | Error::TypeMismatch { .. }
        )
    };
    let bytes: Vec<u8> = match info.elem_size {
        8 => {
            let a = match seg.open_array::<u64>(name) {
                Ok(a) => a,
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            };
            let words = match a.to_vec() {
                Ok(w) => w,
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            };
            match a.get(0) {
                Ok(_) => {}
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            }
            words.iter().flat_map(|w| w.to_ne_bytes()).collect()
        }
        1 => {
            let a = match seg.open_array::<u8>(name) {
                Ok(a) => a,
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            };
            let got = match a.to_vec() {
                Ok(b) => b,
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            };
            match a.get(0) {
                Ok(_) => {}
                Err(e) if gone(&e) => return Ok(()),
                Err(e) => return Err(format!("{name:?}: {e}")),
            }
            got
        }
        _ => return Ok(()),
    };
    let want = |i: u64| -> u8 {
        if info.elem_size == 8 {
            (word(tag, i / 8) >> (8 * (i % 8))) as u8
        } else {
            byte(tag, i)
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if b != 0 && b != want(i as u64) {
            return Err(format!(
                "{name:?}: a read of the live array found byte {i} = {b:#x}, which is \
                 neither 0 nor its own {:#x} (another structure's data?)",
                want(i as u64)
            ));
        }
    }
    Ok(())
}

/// A seeded random create/erase workload; see the module documentation.
pub struct Churn<'a> {
    pub seg: &'a Segment,
    /// Names are `prefix` and a number.
    pub prefix: String,
    /// `Some(n)`: names are drawn from `n` numbers (a name is re-created
    /// after it was erased); `None`: every name is new.
    pub pool: Option<u64>,
    /// Largest payload of one structure.
    pub max_bytes: u64,
    /// Live bytes (block sizes as the table reports them) stay at most this.
    pub budget: u64,
    /// Most live structures at once.
    pub max_live: usize,
    /// One erase in `wipe_one_in` is `erase_and_wipe` (0: none).
    pub wipe_one_in: u64,
    pub rng: Rng,
    /// Live structures and their block sizes.
    pub live: Vec<(String, u64)>,
    pub live_bytes: u64,
    pub creates: u64,
    pub erases: u64,
    serial: u64,
}

impl<'a> Churn<'a> {
    pub fn new(seg: &'a Segment, prefix: &str, seed: u64) -> Churn<'a> {
        Churn {
            seg,
            prefix: prefix.to_owned(),
            pool: None,
            max_bytes: 32 << 10,
            budget: u64::MAX,
            max_live: usize::MAX,
            wipe_one_in: 8,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            live: Vec::new(),
            live_bytes: 0,
            creates: 0,
            erases: 0,
            serial: 0,
        }
    }

    fn next_name(&mut self) -> String {
        match self.pool {
            None => {
                self.serial += 1;
                format!("{}{}", self.prefix, self.serial)
            }
            Some(n) => loop {
                let name = format!("{}{}", self.prefix, self.rng.next() % n);
                if !self.live.iter().any(|(l, _)| *l == name) {
                    break name;
                }
            },
        }
    }

    /// Room kept for the next structure: its payload and its headers.
    fn headroom(&self) -> u64 {
        self.max_bytes + 4096
    }

    /// One create or one erase (verifying first). An error says what went
    /// wrong, with the state of the heap.
    pub fn step(&mut self) -> Result<(), String> {
        let names_left = self.pool.is_none_or(|n| (self.live.len() as u64) < n);
        let full = self.live_bytes.saturating_add(self.headroom()) > self.budget
            || self.live.len() >= self.max_live
            || !names_left;
        let erase = !self.live.is_empty() && (full || self.rng.next() % 100 < 45);
        if erase {
            let i = (self.rng.next() % self.live.len() as u64) as usize;
            self.erase_at(i)
        } else if full {
            Err(format!(
                "the budget ({} bytes) cannot hold one more structure",
                self.budget
            ))
        } else {
            self.create_one()
        }
    }

    pub fn create_one(&mut self) -> Result<(), String> {
        let plan = random_plan(&mut self.rng, self.max_bytes);
        let name = self.next_name();
        create(self.seg, &name, plan).map_err(|e| {
            format!(
                "create {name:?} ({plan:?}) with {} live structures of {} bytes: {e}; heap {:?}",
                self.live.len(),
                self.live_bytes,
                self.seg.heap()
            )
        })?;
        let size = self
            .seg
            .entry(&name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name:?} was created but is not in the table"))?
            .size;
        self.live.push((name, size));
        self.live_bytes += size;
        self.creates += 1;
        Ok(())
    }

    pub fn erase_at(&mut self, i: usize) -> Result<(), String> {
        let (name, size) = self.live.swap_remove(i);
        let info = self
            .seg
            .entry(&name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("live {name:?} vanished from the table"))?;
        verify(self.seg, &info, true)?;
        let wipe = self.wipe_one_in > 0 && self.rng.next() % self.wipe_one_in == 0;
        if wipe {
            self.seg.erase_and_wipe(&name)
        } else {
            self.seg.erase(&name)
        }
        .map_err(|e| format!("erase {name:?}: {e}"))?;
        self.live_bytes -= size;
        self.erases += 1;
        Ok(())
    }

    /// Verify and erase every live structure.
    pub fn erase_all(&mut self) -> Result<(), String> {
        while !self.live.is_empty() {
            self.erase_at(self.live.len() - 1)?;
        }
        Ok(())
    }
}

/// `check()` is clean and the heap statistics are consistent: every byte
/// of the heap is in a free or a used block, no two free blocks are
/// adjacent (so there are at most used + 1 of them), each live entry owns
/// a block. Call it while no other process registers.
pub fn heap_sound(seg: &Segment, ctx: &str) -> HeapStats {
    let report = seg.check();
    assert!(
        report.is_ok(),
        "{ctx}: check() found {} problems: {:#?}",
        report.problems.len(),
        report.problems
    );
    let h = seg.heap().unwrap_or_else(|e| panic!("{ctx}: heap(): {e}"));
    assert_eq!(h.size, seg.size(), "{ctx}: {h:?}");
    assert!(h.max_size >= h.size, "{ctx}: {h:?}");
    assert!(h.heap_bytes > 0 && h.heap_bytes <= h.size, "{ctx}: {h:?}");
    assert_eq!(
        h.free_bytes + h.used_bytes,
        h.heap_bytes,
        "{ctx}: free + used bytes != heap bytes (a leak, or a block counted twice): {h:?}"
    );
    assert!(h.largest_free <= h.free_bytes, "{ctx}: {h:?}");
    assert_eq!(h.free_blocks == 0, h.free_bytes == 0, "{ctx}: {h:?}");
    assert_eq!(h.free_blocks == 0, h.largest_free == 0, "{ctx}: {h:?}");
    assert!(
        h.free_blocks <= h.used_blocks + 1,
        "{ctx}: more free blocks than used blocks + 1, so two free blocks are adjacent: {h:?}"
    );
    assert!(
        h.used_blocks >= report.entries as u64,
        "{ctx}: {} live entries but {} used blocks: {h:?}",
        report.entries,
        h.used_blocks
    );
    let f = h.fragmentation();
    assert!(
        (0.0..=1.0).contains(&f),
        "{ctx}: fragmentation {f} of {h:?}"
    );
    if h.free_blocks <= 1 {
        assert!(
            f == 0.0,
            "{ctx}: fragmentation {f} with one free block: {h:?}"
        );
    }
    h
}

/// Number of table chunks in the heap (chunks 1..) when chunk 0 holds
/// `first` entries, chunk `k` holds `first << k`, and the table holds
/// `total` (an upper bound if the chunking differs).
pub fn heap_table_chunks(first: u64, total: u64) -> u64 {
    let (mut sum, mut k) = (first, 0u64);
    while sum < total {
        k += 1;
        sum += first << k;
    }
    k
}

/// Erase every entry that is left (without verifying).
pub fn erase_everything(seg: &Segment) {
    for e in seg.entries().unwrap() {
        seg.erase(&e.name)
            .unwrap_or_else(|err| panic!("erase {:?}: {err}", e.name));
    }
}

/// With no entry left, the heap is one free block (apart from the table
/// chunks the table grew into, which stay allocated: then at most one
/// free block more than there are chunks). `first` is the table capacity
/// the segment was created with.
pub fn assert_all_free(seg: &Segment, first: u64, ctx: &str) -> HeapStats {
    let entries = seg.entries().unwrap();
    assert!(entries.is_empty(), "{ctx}: entries left: {entries:?}");
    let h = heap_sound(seg, ctx);
    let chunks = heap_table_chunks(first, seg.table_capacity());
    if chunks == 0 {
        assert_eq!(h.free_blocks, 1, "{ctx}: everything erased: {h:?}");
        assert_eq!(h.used_blocks, 0, "{ctx}: everything erased: {h:?}");
        assert_eq!(h.used_bytes, 0, "{ctx}: everything erased: {h:?}");
        assert_eq!(
            h.largest_free, h.heap_bytes,
            "{ctx}: everything erased: {h:?}"
        );
    } else {
        assert!(
            h.used_blocks <= chunks,
            "{ctx}: everything erased, {chunks} table chunks in the heap: {h:?}"
        );
        assert!(
            h.free_blocks <= chunks + 1,
            "{ctx}: everything erased, {chunks} table chunks in the heap: {h:?}"
        );
    }
    h
}
