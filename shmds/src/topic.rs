//! `Topic`: broadcast of variable-length messages. Every subscriber sees
//! every message (unless it falls more than a ring behind), each with its
//! own cursor; publishers never wait for subscribers.
//!
//! # The algorithm
//!
//! The ring is laid out like a channel's (`channel/`): cells of 64 bytes,
//! one [`TopicCell`] control record per cell, frames of whole cells that
//! never wrap (a padding frame fills the end of a lap). Positions are the
//! queue's `lap * one_lap + index` and only grow.
//!
//! *Publishing* is serialised by the header's `lock` (the holder's pid;
//! taken over when the holder is dead). The holder, for a frame that ends
//! at position `end`:
//! 1. moves `oldest` forward, frame by frame, until the whole ring before
//!    `end` holds no frame older than `oldest` (`end - oldest <= cells`),
//!    and issues a release fence: **no byte of a frame is overwritten
//!    before `oldest` has passed it**;
//! 2. writes the control record (`seq`, `len`, `checksum`) and the payload;
//! 3. stores `next_seq`, `tail` and finally `newest` (release), and wakes
//!    sleeping subscribers if `sub_waiters` says there are any.
//!
//! *Subscribing* is reading only. A subscriber at position `c` loads `tail`
//! (acquire); if `c != tail` it reads the control record and copies the
//! payload, then issues an acquire fence and loads `oldest`. If `oldest` is
//! still at most `c`, no publisher had begun to overwrite the frame (step 1
//! comes before every write, and the fences pair), so the copy is whole.
//! Otherwise the subscriber lagged: it jumps to `oldest` and reports
//! [`Error::Lagged`] with the number of messages it missed (the sequence
//! numbers tell). A torn message is never returned.
//!
//! *Crashes.* A publisher that dies holding the lock leaves `tail` where it
//! was: its half-written message is never visible, and the next publisher
//! takes the lock over and writes from `tail`. It may have moved `oldest`
//! early (subscribers then lose those messages, told by `Lagged`) and, if
//! it died between storing `next_seq` and `tail`, a sequence number is
//! skipped. Subscribers hold nothing in the segment, so their death costs
//! nothing.

use crate::checksum::crc32c;
use crate::error::{Error, Result};
use crate::handle::{Handle, Typed};
use crate::layout::{
    kind, message_flags, TopicCell, TopicHeader, MESSAGE_CELL, PAD_LEN, TOPIC_HEADER_SIZE,
};
use crate::process::{current_pid, is_alive};
use crate::ring::{cells_for, ring_bytes, RingLine, RingShape};
use crate::segment::Segment;
use crate::sync::{fence, Ordering};
use crate::wait::{futex_wait, futex_wait_low, futex_wake, futex_wake_low, Wait};
use crate::{MAX_MESSAGE, MAX_RING_CAPACITY};
use std::mem::offset_of;
use std::sync::Arc;
use std::time::Duration;

/// How a topic is made: its size in bytes and the largest message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicOptions {
    capacity: u64,
    max_message: Option<u64>,
    checksum: bool,
}

impl TopicOptions {
    /// A topic of `capacity` bytes of message data (rounded up to a
    /// multiple of 64). It holds the newest messages that fit.
    pub fn new(capacity: u64) -> TopicOptions {
        TopicOptions {
            capacity,
            max_message: None,
            checksum: false,
        }
    }

    /// The largest message in bytes (default and most: half the capacity,
    /// so that the newest message always survives the next one).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// Messages carry a CRC32C, checked by subscribers.
    pub fn checksum(mut self, checksum: bool) -> Self {
        self.checksum = checksum;
        self
    }

    fn resolve(&self) -> Result<(u64, u64, u32)> {
        let capacity = self.capacity.div_ceil(MESSAGE_CELL) * MESSAGE_CELL;
        if !(2 * MESSAGE_CELL..=MAX_RING_CAPACITY).contains(&capacity) {
            return Err(Error::InvalidArgument(format!(
                "a topic's capacity must be 128..={MAX_RING_CAPACITY} bytes, not {}",
                self.capacity
            )));
        }
        let half = (capacity / 2).min(MAX_MESSAGE);
        let max = self.max_message.unwrap_or(half);
        if max > half {
            return Err(Error::InvalidArgument(format!(
                "a topic's max_message must be at most half its capacity ({half} bytes), not {max}"
            )));
        }
        let flags = if self.checksum {
            message_flags::CHECKSUM
        } else {
            0
        };
        Ok((capacity, max, flags))
    }
}

/// The topic algorithm over a header, control records and data (the same
/// code runs on a segment and, under loom, on the heap).
pub(crate) struct TopicCore<'a> {
    header: &'a TopicHeader,
    cells: *const TopicCell,
    data: *mut u8,
    ring: &'a RingShape,
}

/// Where a publisher writes its message: the frame position, its index,
/// the tail after it and its sequence number.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) pos: u64,
    pub(crate) idx: u64,
    end: u64,
    seq: u64,
}

/// What a subscriber read.
#[derive(Debug)]
pub(crate) enum Read {
    /// A whole message: its sequence number and position; the cursor
    /// moved past it.
    /// The checksum was read with the rest of the control record, before
    /// the frame was checked intact (read later, it could be a newer
    /// message's).
    Message { seq: u64, pos: u64, checksum: u32 },
    /// Nothing new since `tail` (the value seen).
    Empty(u64),
    /// Overwritten before it was read: `missed` messages lost; the cursor
    /// is now at the oldest message held.
    Lagged(u64),
}

/// A subscriber's cursor: the next position and the sequence number
/// expected there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    pub(crate) next: u64,
    pub(crate) expect: Option<u64>,
}

impl<'a> TopicCore<'a> {
    /// # Safety
    /// `cells` must point to `ring.cells` initialised control records and
    /// `data` to `ring.cells * 64` bytes, valid for `'a`.
    pub(crate) unsafe fn new(
        header: &'a TopicHeader,
        cells: *const TopicCell,
        data: *mut u8,
        ring: &'a RingShape,
    ) -> Self {
        TopicCore {
            header,
            cells,
            data,
            ring,
        }
    }

    #[inline]
    fn cell(&self, idx: u64) -> &'a TopicCell {
        debug_assert!(idx < self.ring.cells);
        // SAFETY: callers pass indices checked against our own copy of the
        // cell count (RingShape::index / run_of).
        unsafe { &*self.cells.add(idx as usize) }
    }

    #[inline]
    pub(crate) fn payload(&self, idx: u64) -> *mut u8 {
        // SAFETY: idx < cells, so the offset lies in the data ring.
        unsafe { self.data.add(RingShape::data_offset(idx)) }
    }

    // ------------------------------------------------------------ the lock

    /// Take the publish lock, taking it over from a dead holder. A live
    /// holder that keeps it for longer than `patience` is reported
    /// (`LockStop::Busy`): a stopped process, or a damaged lock word naming
    /// a process that never publishes.
    pub(crate) fn lock(
        &self,
        wait: &mut Wait<'_>,
        patience: Duration,
    ) -> std::result::Result<(), LockStop> {
        let me = current_pid();
        let lock = &self.header.lock;
        let mut spins = 0u32;
        let mut since: Option<std::time::Instant> = None;
        loop {
            let holder = match lock.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(holder) => holder,
            };
            if spins < 64 {
                spins += 1;
                crate::sync::spin_hint();
                continue;
            }
            if !is_alive(holder)
                && lock
                    .compare_exchange(holder, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(());
            }
            let Some(nap) = wait.deadline.next_sleep() else {
                return Err(LockStop::TimedOut);
            };
            let started = *since.get_or_insert_with(std::time::Instant::now);
            if started.elapsed() > patience {
                return Err(LockStop::Busy(holder));
            }
            self.header.lock_waiters.fetch_add(1, Ordering::SeqCst);
            futex_wait(lock, holder, Some(nap));
            self.header.lock_waiters.fetch_sub(1, Ordering::SeqCst);
            if wait.interrupted() {
                return Err(LockStop::Interrupted);
            }
        }
    }

    pub(crate) fn unlock(&self) {
        let me = current_pid();
        let _ = self
            .header
            .lock
            .compare_exchange(me, 0, Ordering::SeqCst, Ordering::Relaxed);
        if self.header.lock_waiters.load(Ordering::SeqCst) != 0 {
            futex_wake(&self.header.lock, 1);
        }
    }

    // ---------------------------------------------------------- publishing

    /// With the lock held: make room for a message of `len` bytes at
    /// `tail` (retiring the oldest frames first) and write its padding
    /// frame if it needs one. The caller then writes the payload at the
    /// slot and calls [`publish`](Self::publish).
    pub(crate) fn prepare(&self, len: u32) -> std::result::Result<Slot, String> {
        let ring = *self.ring;
        let t = self.header.tail.load(Ordering::Acquire);
        let idx = ring
            .index(t)
            .ok_or_else(|| format!("tail position {t} is outside the ring"))?;
        let need = cells_for(len as u64);
        let (pos, sidx) = if idx + need > ring.cells {
            (ring.advance(t, idx, ring.cells - idx), 0)
        } else {
            (t, idx)
        };
        let end = ring.advance(pos, sidx, need);
        self.retire(t, pos, end)?;
        let seq = self.header.next_seq.load(Ordering::Relaxed);
        if pos != t {
            let pad = self.cell(idx);
            pad.seq.store(seq, Ordering::Relaxed);
            pad.len.store(PAD_LEN, Ordering::Relaxed);
            pad.checksum.store(0, Ordering::Relaxed);
        }
        Ok(Slot {
            pos,
            idx: sidx,
            end,
            seq,
        })
    }

    /// Move `oldest` until no frame older than it overlaps the cells up to
    /// `end`, then fence: subscribers that read a byte written after this
    /// see the new `oldest`.
    fn retire(&self, tail: u64, pos: u64, end: u64) -> std::result::Result<(), String> {
        let ring = *self.ring;
        let mut o = self.header.oldest.load(Ordering::Relaxed);
        let start = o;
        let mut steps = 0u64;
        while ring.distance(o, end).is_none_or(|d| d > ring.cells) {
            if o == tail || steps > ring.cells {
                // Everything held goes (or `oldest` was damaged): the new
                // message is the oldest.
                o = pos;
                break;
            }
            let Some(idx) = ring.index(o).filter(|_| ring.distance(o, tail).is_some()) else {
                o = pos;
                break;
            };
            let len = self.cell(idx).len.load(Ordering::Relaxed);
            let Some(run) = ring.run_of(len, idx) else {
                return Err(format!(
                    "the frame at position {o} says {len} bytes, which does not fit the ring"
                ));
            };
            o = ring.advance(o, idx, run);
            steps += 1;
        }
        if o != start {
            self.header.oldest.store(o, Ordering::Relaxed);
            crate::fault::pause_point("topic.publish.retired");
        }
        fence(Ordering::Release);
        Ok(())
    }

    /// With the lock held: publish the message written at `slot`.
    pub(crate) fn publish(&self, slot: &Slot, len: u32, checksum: u32) {
        let cell = self.cell(slot.idx);
        cell.seq.store(slot.seq, Ordering::Relaxed);
        cell.len.store(len, Ordering::Relaxed);
        cell.checksum.store(checksum, Ordering::Relaxed);
        crate::fault::pause_point("topic.publish.written");
        self.header
            .next_seq
            .store(slot.seq.wrapping_add(1), Ordering::Release);
        // `tail` before `newest`: whoever sees the new `newest` sees the
        // message inside `tail` (a reader of `latest` in between, or after
        // a publisher killed here, finds the previous newest, still whole).
        self.header.tail.store(slot.end, Ordering::Release);
        crate::fault::pause_point("topic.publish.tail_moved");
        self.header.newest.store(slot.pos, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.header.sub_waiters.load(Ordering::Relaxed) != 0 {
            futex_wake_low(&self.header.tail);
        }
    }

    // --------------------------------------------------------- subscribing

    /// Whether the frame at `pos` was intact through everything read
    /// before this call.
    #[inline]
    fn intact(&self, pos: u64) -> bool {
        fence(Ordering::Acquire);
        self.header.oldest.load(Ordering::Relaxed) <= pos
    }

    /// Read the next message at the cursor, handing its bytes to `copy`
    /// (which must copy them out: they are checked only afterwards).
    pub(crate) fn read(
        &self,
        cursor: &mut Cursor,
        copy: &mut dyn FnMut(*const u8, usize),
    ) -> std::result::Result<Read, String> {
        let ring = *self.ring;
        loop {
            let c = cursor.next;
            let t = self.header.tail.load(Ordering::Acquire);
            if c == t {
                return Ok(Read::Empty(t));
            }
            let idx = ring
                .index(c)
                .ok_or_else(|| format!("cursor {c} outside the ring"))?;
            let Some(avail) = ring.distance(c, t) else {
                if !self.intact(c) {
                    match self.jump(cursor) {
                        0 => continue,
                        missed => return Ok(Read::Lagged(missed)),
                    }
                }
                // Behind `oldest` is handled above; ahead of `tail` means
                // the topic was damaged (or re-created under us): resync.
                cursor.next = t;
                cursor.expect = None;
                return Ok(Read::Empty(t));
            };
            let cell = self.cell(idx);
            let seq = cell.seq.load(Ordering::Relaxed);
            let len = cell.len.load(Ordering::Relaxed);
            let checksum = cell.checksum.load(Ordering::Relaxed);
            let run = ring
                .run_of(len, idx)
                .filter(|&r| r <= avail && (len == PAD_LEN || len as u64 <= ring.max_message));
            let Some(run) = run else {
                if !self.intact(c) {
                    match self.jump(cursor) {
                        0 => continue,
                        missed => return Ok(Read::Lagged(missed)),
                    }
                }
                return Err(format!(
                    "the frame at position {c} says {len} bytes, which does not fit the ring"
                ));
            };
            if len != PAD_LEN {
                copy(self.payload(idx), len as usize);
            }
            if !self.intact(c) {
                // Only padding was retired under us: nothing was missed.
                match self.jump(cursor) {
                    0 => continue,
                    missed => return Ok(Read::Lagged(missed)),
                }
            }
            cursor.next = ring.advance(c, idx, run);
            if len == PAD_LEN {
                continue;
            }
            cursor.expect = Some(seq.wrapping_add(1));
            return Ok(Read::Message {
                seq,
                pos: c,
                checksum,
            });
        }
    }

    /// Move a lagging cursor to the oldest message held; returns how many
    /// messages it missed.
    fn jump(&self, cursor: &mut Cursor) -> u64 {
        loop {
            let o = self.header.oldest.load(Ordering::Acquire);
            let Some(idx) = self.ring.index(o) else {
                cursor.next = self.header.tail.load(Ordering::Acquire);
                cursor.expect = None;
                return 0;
            };
            let seq = self.cell(idx).seq.load(Ordering::Relaxed);
            if self.intact(o) {
                let missed = cursor
                    .expect
                    .map_or(0, |e| seq.wrapping_sub(e).min(1 << 62));
                cursor.next = o;
                cursor.expect = Some(seq);
                return missed;
            }
        }
    }

    /// Read the newest message; `Ok(None)` when none was published.
    pub(crate) fn latest(
        &self,
        copy: &mut dyn FnMut(*const u8, usize),
    ) -> std::result::Result<Option<Latest>, String> {
        let ring = *self.ring;
        for _ in 0..1000 {
            let n = self.header.newest.load(Ordering::Acquire);
            if n == u64::MAX {
                return Ok(None);
            }
            let t = self.header.tail.load(Ordering::Acquire);
            let idx = ring
                .index(n)
                .ok_or_else(|| format!("newest position {n} is outside the ring"))?;
            let avail = ring.distance(n, t).unwrap_or(0);
            let cell = self.cell(idx);
            let seq = cell.seq.load(Ordering::Relaxed);
            let len = cell.len.load(Ordering::Relaxed);
            let checksum = cell.checksum.load(Ordering::Relaxed);
            let run = ring
                .run_of(len, idx)
                .filter(|&r| r <= avail && len != PAD_LEN && len as u64 <= ring.max_message);
            if let Some(run) = run {
                copy(self.payload(idx), len as usize);
                if self.intact(n) {
                    return Ok(Some(Latest {
                        seq,
                        end: ring.advance(n, idx, run),
                        pos: n,
                        checksum,
                    }));
                }
            } else if self.intact(n) && self.header.newest.load(Ordering::Acquire) == n {
                return Err(format!(
                    "the newest frame at position {n} says {len} bytes, which does not fit"
                ));
            }
        }
        Err("the newest message kept changing while it was read".into())
    }

    /// Wake every sleeping subscriber (they look again).
    pub(crate) fn wake_subscribers(&self) {
        futex_wake_low(&self.header.tail);
    }

    /// The current `tail`.
    pub(crate) fn tail(&self) -> u64 {
        self.header.tail.load(Ordering::Acquire)
    }

    /// Sleep until `tail` moves from `seen` (or a nap passes).
    pub(crate) fn sleep(&self, seen: u64, nap: Duration) {
        self.header.sub_waiters.fetch_add(1, Ordering::SeqCst);
        if self.header.tail.load(Ordering::SeqCst) == seen {
            futex_wait_low(&self.header.tail, seen as u32, Some(nap));
        }
        self.header.sub_waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Messages held, from `oldest` to `tail` (bounded walk).
    pub(crate) fn messages(&self) -> u64 {
        let ring = *self.ring;
        let mut pos = self.header.oldest.load(Ordering::Acquire);
        let tail = self.header.tail.load(Ordering::Acquire);
        let Some(mut left) = ring.distance(pos, tail) else {
            return 0;
        };
        let mut n = 0;
        while left > 0 {
            let Some(idx) = ring.index(pos) else { break };
            let len = self.cell(idx).len.load(Ordering::Relaxed);
            let Some(run) = ring.run_of(len, idx).filter(|&r| r <= left) else {
                break;
            };
            if len != PAD_LEN {
                n += 1;
            }
            left -= run;
            pos = ring.advance(pos, idx, run);
        }
        n
    }

    pub(crate) fn cursor_at_tail(&self) -> Cursor {
        Cursor {
            next: self.header.tail.load(Ordering::Acquire),
            expect: Some(self.header.next_seq.load(Ordering::Acquire)),
        }
    }

    pub(crate) fn cursor_at_oldest(&self) -> Cursor {
        loop {
            let next = self.header.oldest.load(Ordering::Acquire);
            let seq = self.header.next_seq.load(Ordering::Acquire);
            if next == self.header.tail.load(Ordering::Acquire) {
                return Cursor {
                    next,
                    expect: Some(seq),
                };
            }
            let Some(idx) = self.ring.index(next) else {
                return Cursor { next, expect: None };
            };
            let seq = self.cell(idx).seq.load(Ordering::Relaxed);
            if self.intact(next) {
                return Cursor {
                    next,
                    expect: Some(seq),
                };
            }
        }
    }

    pub(crate) fn published(&self) -> u64 {
        self.header.next_seq.load(Ordering::Acquire)
    }
}

/// The newest message, as [`TopicCore::latest`] read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latest {
    pub(crate) seq: u64,
    pub(crate) pos: u64,
    /// The position after it (where a subscriber goes on).
    pub(crate) end: u64,
    pub(crate) checksum: u32,
}

/// Why taking the publish lock stopped.
#[derive(Debug)]
pub(crate) enum LockStop {
    TimedOut,
    Interrupted,
    /// A live process (this pid) held the lock for longer than the patience.
    Busy(u32),
}

struct Inner {
    handle: Handle,
    header: *const TopicHeader,
    cells: *const TopicCell,
    data: *mut u8,
    ring: RingShape,
}

// SAFETY: shared state is touched only through atomics and the publish
// protocol; payload bytes carry no Rust invariants; the pointers stay valid
// while `handle` keeps the mapping alive.
unsafe impl Send for Inner {}
// SAFETY: as above; every method takes &self.
unsafe impl Sync for Inner {}

impl Inner {
    fn core(&self) -> TopicCore<'_> {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { TopicCore::new(&*self.header, self.cells, self.data, &self.ring) }
    }

    fn corrupt(&self, detail: String) -> Error {
        self.handle.corrupt(detail)
    }
}

/// A broadcast topic of variable-length byte messages in a segment.
///
/// ```
/// use shmds::{Segment, TopicOptions};
/// # let name = format!("doc-topic-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let ticks = seg.create_topic("ticks", TopicOptions::new(64 << 10))?;
/// let mut a = ticks.subscribe();
/// let mut b = seg.open_topic("ticks")?.subscribe();
/// ticks.publish(b"tick 1")?;
/// let mut buf = Vec::new();
/// assert_eq!(a.try_recv(&mut buf)?, 0); // sequence number
/// assert_eq!(buf, b"tick 1");
/// b.try_recv(&mut buf)?;
/// assert_eq!(buf, b"tick 1");
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Topic {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Segment {
    /// Create a topic.
    pub fn create_topic(&self, name: &str, options: TopicOptions) -> Result<Topic> {
        Topic::create(self, name, options, false)
    }

    /// Open the topic `name`, creating it with `options` if it does not exist.
    pub fn open_or_create_topic(&self, name: &str, options: TopicOptions) -> Result<Topic> {
        Topic::create(self, name, options, true)
    }

    /// Open the topic `name`.
    pub fn open_topic(&self, name: &str) -> Result<Topic> {
        Topic::from_handle(typed().open(self, name)?)
    }
}

fn typed() -> Typed {
    Typed::of::<u8>(kind::TOPIC)
}

fn validate(handle: &Handle) -> Result<(&TopicHeader, RingShape)> {
    let info = &handle.info;
    if info.size < TOPIC_HEADER_SIZE {
        return Err(handle.corrupt("topic block is smaller than its header"));
    }
    // SAFETY: the block holds at least TOPIC_HEADER_SIZE bytes inside the
    // mapping (check_block, just checked); only the atomics are used
    // through this reference, the fixed fields are read once as a copy.
    let header = unsafe { &*handle.block.cast::<TopicHeader>() };
    let expect = RingLine {
        kind: kind::TOPIC,
        flags: message_flags::CHECKSUM,
        cells: 0,
        max_message: 0,
        header_size: TOPIC_HEADER_SIZE,
    };
    let Some(line) = RingLine::check(&handle.first_line(), info, expect, 2, |capacity| {
        capacity / 2
    }) else {
        return Err(
            handle.corrupt("topic header disagrees with its table entry or overruns its block")
        );
    };
    Ok((
        header,
        RingShape::new(
            line.cells,
            line.max_message,
            line.flags & message_flags::CHECKSUM != 0,
        ),
    ))
}

/// Messages published since creation, read without writing anything.
pub(crate) fn published(handle: &Handle) -> Result<u64> {
    let topic = Topic::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    Ok(topic.published())
}

/// Release the publish lock and forget sleepers, as the holder's and the
/// sleepers' deaths would (a publisher that takes a dead holder's lock
/// over just writes from `tail`). Returns the locks released.
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    let topic = Topic::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    // SAFETY: validated at open; the mapping lives as long as the handle.
    let header = unsafe { &*topic.inner.header };
    header.sub_waiters.store(0, Ordering::Relaxed);
    header.lock_waiters.store(0, Ordering::Relaxed);
    Ok(u64::from(header.lock.swap(0, Ordering::AcqRel) != 0))
}

/// Per-kind validation for `Segment::check`; returns the messages held.
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    let topic = Topic::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    Ok(Some(topic.len() as u64))
}

impl Topic {
    fn create(
        seg: &Segment,
        name: &str,
        options: TopicOptions,
        existing_ok: bool,
    ) -> Result<Topic> {
        let (capacity, max, flags) = options.resolve()?;
        let cells = capacity / MESSAGE_CELL;
        let (_, size) = ring_bytes(TOPIC_HEADER_SIZE, cells).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a topic of {capacity} bytes does not fit in memory"
            ))
        })?;
        let handle = typed().create(seg, name, capacity, size, existing_ok, |block| {
            let line = RingLine {
                kind: kind::TOPIC,
                flags,
                cells,
                max_message: max,
                header_size: TOPIC_HEADER_SIZE,
            };
            // SAFETY: the fresh zeroed block has `size` bytes, is 64-aligned
            // and unpublished: the line, then `newest` = u64::MAX (no
            // message yet); every other atomic starts at zero.
            unsafe {
                line.write(block);
                block
                    .add(offset_of!(TopicHeader, newest))
                    .cast::<u64>()
                    .write(u64::MAX);
            }
            Ok(())
        })?;
        Topic::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<Topic> {
        let (header, ring) = handle.fresh(validate(&handle))?;
        let header: *const TopicHeader = header;
        let (data_offset, _) = ring_bytes(TOPIC_HEADER_SIZE, ring.cells).expect("validated");
        // SAFETY: validate proved the records and data lie inside the block.
        let (cells, data) = unsafe {
            (
                handle
                    .block
                    .add(TOPIC_HEADER_SIZE as usize)
                    .cast::<TopicCell>(),
                handle.block.add(data_offset as usize),
            )
        };
        Ok(Topic {
            inner: Arc::new(Inner {
                handle,
                header,
                cells,
                data,
                ring,
            }),
        })
    }

    fn check_len(&self, len: usize) -> Result<u32> {
        let max = self.inner.ring.max_message;
        if len as u64 > max {
            return Err(Error::MessageTooLarge {
                name: self.name().to_owned(),
                len: len as u64,
                max,
            });
        }
        Ok(len as u32)
    }

    fn lock(&self, wait: &mut Wait<'_>) -> Result<()> {
        self.inner.handle.check()?;
        self.inner.handle.seg.require_writable()?;
        let patience = self.inner.handle.seg.map.lock_timeout();
        self.inner
            .core()
            .lock(wait, patience)
            .map_err(|stop| match stop {
                LockStop::TimedOut => self.inner.handle.timeout(),
                LockStop::Interrupted => Error::Interrupted {
                    name: self.name().to_owned(),
                },
                LockStop::Busy(pid) => Error::Busy {
                    name: self.name().to_owned(),
                    pid,
                    seconds: patience.as_secs(),
                },
            })
    }

    fn reserve_wait(&self, len: usize, wait: &mut Wait<'_>) -> Result<TopicReservation<'_>> {
        let n = self.check_len(len)?;
        self.lock(wait)?;
        let core = self.inner.core();
        match core.prepare(n) {
            Ok(slot) => Ok(TopicReservation {
                topic: self,
                slot,
                len: n,
                done: false,
            }),
            Err(detail) => {
                core.unlock();
                Err(self.inner.corrupt(detail))
            }
        }
    }

    /// Publish a message to every subscriber; returns its sequence number.
    /// Waits only for another publisher (never for subscribers).
    pub fn publish(&self, msg: &[u8]) -> Result<u64> {
        self.publish_interruptible(msg, None, None)
    }

    /// [`publish`](Self::publish) with a timeout for the publish lock and an
    /// interrupt check.
    #[doc(hidden)]
    pub fn publish_interruptible(
        &self,
        msg: &[u8],
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<u64> {
        let mut r = self.reserve_wait(msg.len(), &mut Wait::new(timeout, interrupt))?;
        r.copy_from_slice(msg);
        Ok(r.commit())
    }

    /// Room for a message of `len` bytes, written in place, published by
    /// [`TopicReservation::commit`]. Holds the publish lock until then.
    pub fn reserve(&self, len: usize) -> Result<TopicReservation<'_>> {
        self.reserve_wait(len, &mut Wait::new(None, None))
    }

    /// [`reserve`](Self::reserve) with a timeout for the publish lock and an
    /// interrupt check.
    #[doc(hidden)]
    pub fn reserve_interruptible(
        &self,
        len: usize,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<TopicReservation<'_>> {
        self.reserve_wait(len, &mut Wait::new(timeout, interrupt))
    }

    /// Wake every process's sleeping subscribers of this topic without
    /// publishing: they look again and sleep again. For bindings whose
    /// interrupt check depends on something set outside the topic (a
    /// subscriber closed in another thread).
    #[doc(hidden)]
    pub fn wake_subscribers(&self) {
        self.inner.core().wake_subscribers();
    }

    /// A subscriber that receives the messages published from now on.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            cursor: self.inner.core().cursor_at_tail(),
            inner: self.inner.clone(),
        }
    }

    /// A subscriber that starts with the oldest message still held.
    pub fn subscribe_from_oldest(&self) -> Subscriber {
        Subscriber {
            cursor: self.inner.core().cursor_at_oldest(),
            inner: self.inner.clone(),
        }
    }

    /// The newest message into `buf`: its sequence number, or `None` when
    /// nothing was published yet.
    pub fn latest(&self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        self.inner.handle.check()?;
        let got = read_latest(&self.inner, buf)?;
        Ok(got.map(|latest| latest.seq))
    }

    /// Messages held (the newest that fit in the ring); 0 once the topic
    /// was erased.
    pub fn len(&self) -> usize {
        if self.inner.handle.check().is_err() {
            return 0;
        }
        self.inner.core().messages() as usize
    }

    /// Whether no message is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages published since creation (the next sequence number); 0
    /// once the topic was erased.
    pub fn published(&self) -> u64 {
        if self.inner.handle.check().is_err() {
            return 0;
        }
        self.inner.core().published()
    }

    /// The ring's capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.ring.cells * MESSAGE_CELL
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> u64 {
        self.inner.ring.max_message
    }

    /// Whether messages carry a CRC32C, checked by subscribers.
    pub fn has_checksum(&self) -> bool {
        self.inner.ring.checksum
    }

    /// `Err(Stale)` once the topic has been erased.
    pub fn check(&self) -> Result<()> {
        self.inner.handle.check()
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.inner.handle.name()
    }

    /// The name of the segment holding the topic.
    pub fn segment_name(&self) -> &str {
        self.inner.handle.seg.name()
    }
}

fn read_latest(inner: &Inner, buf: &mut Vec<u8>) -> Result<Option<Latest>> {
    let mut copy = |p: *const u8, len: usize| copy_out(buf, p, len);
    let got = inner
        .core()
        .latest(&mut copy)
        .map_err(|d| inner.corrupt(d))?;
    if let Some(latest) = got {
        verify(inner, buf, latest.pos, latest.checksum)?;
    }
    Ok(got)
}

fn copy_out(buf: &mut Vec<u8>, p: *const u8, len: usize) {
    buf.clear();
    buf.reserve(len);
    // SAFETY: `p` points to `len` bytes of the data ring (bounded by
    // run_of); a publisher may be overwriting them, which the caller
    // detects afterwards (`intact`); `buf` has room for `len` bytes and u8
    // has no invalid values.
    unsafe {
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), len);
        buf.set_len(len);
    }
}

/// Check a copied message against the checksum read with its control
/// record (both were checked intact together).
fn verify(inner: &Inner, buf: &[u8], pos: u64, stored: u32) -> Result<()> {
    if !inner.ring.checksum {
        return Ok(());
    }
    if crc32c(buf) != stored {
        return Err(inner.corrupt(format!(
            "the message at position {pos} fails its CRC32C check"
        )));
    }
    Ok(())
}

/// Room for one topic message, holding the publish lock: write it through
/// `DerefMut<Target = [u8]>`, then [`commit`](Self::commit). Dropped
/// without commit, nothing is published.
pub struct TopicReservation<'a> {
    topic: &'a Topic,
    slot: Slot,
    len: u32,
    done: bool,
}

impl std::fmt::Debug for TopicReservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReservation")
            .field("len", &self.len)
            .finish()
    }
}

impl TopicReservation<'_> {
    /// Publish the message; returns its sequence number.
    pub fn commit(mut self) -> u64 {
        self.done = true;
        // Erased meanwhile: the message goes nowhere (its memory may hold
        // another structure now, whose lock this is not).
        if self.topic.inner.handle.check().is_err() {
            return self.slot.seq;
        }
        let core = self.topic.inner.core();
        let checksum = if self.topic.inner.ring.checksum {
            crc32c(&self)
        } else {
            0
        };
        core.publish(&self.slot, self.len, checksum);
        core.unlock();
        self.slot.seq
    }
}

impl std::ops::Deref for TopicReservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the slot's cells hold `len` bytes (cells_for(len) cells from
        // slot.idx, inside the ring); we hold the publish lock, so no other
        // publisher writes them.
        unsafe {
            std::slice::from_raw_parts(
                self.topic.inner.core().payload(self.slot.idx),
                self.len as usize,
            )
        }
    }
}

impl std::ops::DerefMut for TopicReservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.topic.inner.core().payload(self.slot.idx),
                self.len as usize,
            )
        }
    }
}

impl Drop for TopicReservation<'_> {
    fn drop(&mut self) {
        if !self.done && self.topic.inner.handle.check().is_ok() {
            self.topic.inner.core().unlock();
        }
    }
}

/// A reader of a [`Topic`] with its own cursor (nothing of it lives in the
/// segment: subscribers come and go freely).
pub struct Subscriber {
    inner: Arc<Inner>,
    cursor: Cursor,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.inner.handle.name())
            .field("next", &self.cursor.next)
            .finish()
    }
}

impl Subscriber {
    fn recv_wait(&mut self, buf: &mut Vec<u8>, mut wait: Option<&mut Wait<'_>>) -> Result<u64> {
        let mut backoff = crate::wait::Backoff::default();
        loop {
            self.inner.handle.check()?;
            let core = self.inner.core();
            let mut copy = |p: *const u8, len: usize| copy_out(buf, p, len);
            match core.read(&mut self.cursor, &mut copy) {
                Ok(Read::Message { seq, pos, checksum }) => {
                    verify(&self.inner, buf, pos, checksum)?;
                    return Ok(seq);
                }
                Ok(Read::Lagged(missed)) => {
                    return Err(Error::Lagged {
                        name: self.inner.handle.name().to_owned(),
                        missed,
                    })
                }
                Ok(Read::Empty(seen)) => {
                    let Some(w) = wait.as_deref_mut() else {
                        return Err(Error::Empty {
                            name: self.inner.handle.name().to_owned(),
                        });
                    };
                    if backoff.snooze() {
                        continue;
                    }
                    let Some(nap) = w.deadline.next_sleep() else {
                        return Err(self.inner.handle.timeout());
                    };
                    core.sleep(seen, nap);
                    if w.interrupted() {
                        return Err(Error::Interrupted {
                            name: self.inner.handle.name().to_owned(),
                        });
                    }
                }
                Err(detail) => return Err(self.inner.corrupt(detail)),
            }
        }
    }

    /// The next message into `buf`, waiting for one; returns its sequence
    /// number. [`Error::Lagged`] when messages were overwritten before this
    /// subscriber read them (the next call goes on from the oldest held).
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        self.recv_wait(buf, Some(&mut Wait::new(None, None)))
    }

    /// The next message if there is one ([`Error::Empty`] otherwise).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        self.recv_wait(buf, None)
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u64> {
        self.recv_wait(buf, Some(&mut Wait::new(Some(timeout), None)))
    }

    /// [`recv`](Self::recv) with a timeout (`None`: none), an interrupt
    /// check, or (`block == false`) as a try.
    #[doc(hidden)]
    pub fn recv_interruptible(
        &mut self,
        buf: &mut Vec<u8>,
        block: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<u64> {
        if block {
            self.recv_wait(buf, Some(&mut Wait::new(timeout, interrupt)))
        } else {
            self.recv_wait(buf, None)
        }
    }

    /// Wait until a message may be there to read (`Ok(true)`), or until
    /// `timeout` passed (`Ok(false)`), taking nothing (for the bindings'
    /// asyncio forms).
    #[doc(hidden)]
    pub fn wait_readable(
        &self,
        timeout: Option<Duration>,
        mut interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        let wait = Wait::new(timeout, None);
        let mut backoff = crate::wait::Backoff::default();
        loop {
            self.inner.handle.check()?;
            let tail = self.inner.core().tail();
            if tail != self.cursor.next {
                return Ok(true);
            }
            if backoff.snooze() {
                continue;
            }
            let Some(nap) = wait.deadline.next_sleep() else {
                return Ok(false);
            };
            self.inner.core().sleep(tail, nap);
            if interrupt.as_mut().is_some_and(|check| check()) {
                return Err(Error::Interrupted {
                    name: self.inner.handle.name().to_owned(),
                });
            }
        }
    }

    /// The newest message into `buf`, skipping everything before it (the
    /// cursor moves past it); `None` when nothing was published yet.
    pub fn recv_latest(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        self.inner.handle.check()?;
        let got = read_latest(&self.inner, buf)?;
        Ok(got.map(|Latest { seq, end, .. }| {
            self.cursor = Cursor {
                next: end,
                expect: Some(seq.wrapping_add(1)),
            };
            seq
        }))
    }

    /// Messages published that this subscriber has not read yet (an
    /// estimate; more than the topic holds means it will lag).
    pub fn pending(&self) -> u64 {
        let published = self.inner.core().published();
        self.cursor
            .expect
            .map_or(0, |e| published.saturating_sub(e))
    }

    /// The topic this subscriber reads.
    pub fn topic(&self) -> Topic {
        Topic {
            inner: self.inner.clone(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Error, Segment, TopicOptions};
    use std::time::Duration;

    struct Seg(Segment);

    impl Drop for Seg {
        fn drop(&mut self) {
            let _ = Segment::remove(self.0.name());
        }
    }

    fn segment(tag: &str) -> Seg {
        let name = format!("shmds-unit-topic-{tag}-{}", std::process::id());
        Seg(Segment::create(&name, 8 << 20).unwrap())
    }

    #[test]
    fn every_subscriber_sees_every_message() {
        let s = segment("all");
        let t = s.0.create_topic("t", TopicOptions::new(4096)).unwrap();
        let mut subs: Vec<_> = (0..4).map(|_| t.subscribe()).collect();
        let mut buf = Vec::new();
        for round in 0..50u64 {
            for i in 0..5u64 {
                let len = ((round * 5 + i) * 13 % 300) as usize;
                let mut msg = vec![(i + round) as u8; len.max(8)];
                msg[..8].copy_from_slice(&(round * 5 + i).to_le_bytes());
                assert_eq!(t.publish(&msg).unwrap(), round * 5 + i);
            }
            for sub in &mut subs {
                for i in 0..5u64 {
                    let seq = sub.try_recv(&mut buf).unwrap();
                    assert_eq!(seq, round * 5 + i);
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), seq);
                    assert!(buf[8..].iter().all(|&b| b == (i + round) as u8));
                }
                assert!(matches!(sub.try_recv(&mut buf), Err(Error::Empty { .. })));
            }
        }
        assert_eq!(t.published(), 250);
    }

    #[test]
    fn a_lagging_subscriber_is_told_what_it_missed() {
        let s = segment("lag");
        let t = s.0.create_topic("t", TopicOptions::new(1024)).unwrap();
        let mut slow = t.subscribe();
        let mut buf = Vec::new();
        for i in 0..100u64 {
            t.publish(&i.to_le_bytes()).unwrap();
        }
        // 1024 bytes hold 16 one-cell messages.
        assert_eq!(t.len(), 16);
        match slow.try_recv(&mut buf) {
            Err(Error::Lagged { missed, .. }) => assert_eq!(missed, 84),
            other => panic!("{other:?}"),
        }
        for i in 84..100u64 {
            assert_eq!(slow.try_recv(&mut buf).unwrap(), i);
            assert_eq!(buf, i.to_le_bytes());
        }
        assert!(matches!(slow.try_recv(&mut buf), Err(Error::Empty { .. })));
        let mut late = t.subscribe_from_oldest();
        assert_eq!(late.try_recv(&mut buf).unwrap(), 84);
        assert_eq!(t.latest(&mut buf).unwrap(), Some(99));
        assert_eq!(buf, 99u64.to_le_bytes());
        assert_eq!(late.recv_latest(&mut buf).unwrap(), Some(99));
        assert!(matches!(late.try_recv(&mut buf), Err(Error::Empty { .. })));
    }

    #[test]
    fn limits_and_blocking() {
        let s = segment("limits");
        let t =
            s.0.create_topic("t", TopicOptions::new(4096).checksum(true))
                .unwrap();
        assert_eq!(t.max_message(), 2048);
        assert!(matches!(
            t.publish(&[0; 2049]),
            Err(Error::MessageTooLarge { .. })
        ));
        let mut buf = Vec::new();
        assert_eq!(t.latest(&mut buf).unwrap(), None);
        let mut sub = t.subscribe();
        assert!(matches!(
            sub.recv_timeout(&mut buf, Duration::from_millis(20)),
            Err(Error::Timeout { .. })
        ));
        let t2 = t.clone();
        let j = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            let mut r = t2.reserve(2048).unwrap();
            r.fill(5);
            r.commit()
        });
        assert_eq!(sub.recv(&mut buf).unwrap(), 0);
        assert_eq!(buf, vec![5; 2048]);
        j.join().unwrap();
        {
            let _aborted = t.reserve(10).unwrap();
        }
        t.publish(b"").unwrap();
        assert_eq!(sub.try_recv(&mut buf).unwrap(), 1);
        assert!(buf.is_empty());
        assert!(s.0.check().is_ok());
        assert!(t.has_checksum());
        // The publish lock is held by an open reservation: a timed reserve
        // gives up.
        let open = t.reserve(4).unwrap();
        let short = Some(Duration::from_millis(20));
        assert!(matches!(
            t.reserve_interruptible(4, short, None),
            Err(Error::Timeout { .. })
        ));
        drop(open);
        let mut r = t.reserve_interruptible(4, short, None).unwrap();
        r.copy_from_slice(b"four");
        assert_eq!(r.commit(), 2);
        assert!(t.check().is_ok());
        s.0.erase("t").unwrap();
        assert!(matches!(t.check(), Err(Error::Stale { .. })));
    }

    #[test]
    fn threads_publish_and_subscribe_without_torn_messages() {
        let s = segment("threads");
        let t = s.0.create_topic("t", TopicOptions::new(2048)).unwrap();
        let per = 20_000u64;
        let pubs: Vec<_> = (0..2u64)
            .map(|p| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let len = 8 + (i as usize * 11) % 200;
                        let mut msg = vec![(i % 256) as u8; len];
                        msg[..8].copy_from_slice(&(p << 32 | i).to_le_bytes());
                        t.publish(&msg).unwrap();
                    }
                })
            })
            .collect();
        let subs: Vec<_> = (0..2)
            .map(|_| {
                let mut sub = t.subscribe_from_oldest();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let (mut got, mut lagged) = (0u64, 0u64);
                    let mut last_seq = None;
                    while got + lagged < 2 * per {
                        match sub.recv_timeout(&mut buf, Duration::from_millis(500)) {
                            Ok(seq) => {
                                let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                                let i = v & 0xffff_ffff;
                                assert_eq!(buf.len(), 8 + (i as usize * 11) % 200, "torn");
                                assert!(buf[8..].iter().all(|&b| b == (i % 256) as u8), "torn");
                                if let Some(l) = last_seq {
                                    assert!(seq > l);
                                }
                                last_seq = Some(seq);
                                got += 1;
                            }
                            Err(Error::Lagged { missed, .. }) => lagged += missed,
                            Err(Error::Timeout { .. }) => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (got, lagged)
                })
            })
            .collect();
        for p in pubs {
            p.join().unwrap();
        }
        for s in subs {
            let (got, lagged) = s.join().unwrap();
            assert!(got > 0);
            assert!(got + lagged <= 2 * per);
        }
    }
}
