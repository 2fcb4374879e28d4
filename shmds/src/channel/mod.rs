//! `Channel`: a bounded ring of variable-length messages in shared memory,
//! many producers and many consumers (MPMC) or, chosen at creation, one of
//! each (SPSC). Each message is delivered to one consumer, in the order the
//! producers claimed their frames (so in per-producer FIFO order).
//!
//! # The ring
//!
//! The block holds a [`ChannelHeader`], one [`ChannelCell`] control record
//! per cell, and the data ring: `cells` cells of 64 bytes. A message of
//! `len` bytes is a *frame* of `max(1, ceil(len / 64))` consecutive cells;
//! its payload starts at the frame's first cell (64-byte aligned) and is
//! contiguous, so a reader can be handed a slice of it in place. A frame
//! never wraps: when a message does not fit before the end of the ring, a
//! *padding frame* (`len == PAD_LEN`) fills the rest of the lap and the
//! message starts the next one. `head` and `tail` are cell positions in the
//! queue's encoding (`lap * one_lap + index`).
//!
//! # MPMC: the queue's claim protocol, per frame
//!
//! Every cell's `state` word is a queue slot word (`queue/`): `EMPTY(lap)`
//! means "free for lap `lap`". Invariants:
//! - Every lap is covered by frames end to end: each cell belongs to exactly
//!   one frame per lap. `tail` and `head` only ever hold frame starts.
//! - **Send** at `t = tail` (index `i`, lap tag `L`) with a frame of `run`
//!   cells: every cell `i..i+run` must be `EMPTY(L)` (the previous lap's
//!   frames over them were consumed). The producer checks cells `i+1..`
//!   first, then claims cell `i` by CAS `EMPTY(L) -> WRITING(L, pid)`. The
//!   claim makes it the one owner of position `t`; no one else can touch
//!   cells `i+1..i+run` in lap `L`, because only the owner of `t` moves
//!   `tail` past them (so the check made before the CAS still holds). It
//!   stores the frame's `len`, then `tail = t + run` (release: whoever sees
//!   the new `tail` sees `len`), writes the payload and `checksum`, and
//!   publishes `FULL(L)`.
//! - **Receive** at `h = head`: cell `i` must be `FULL(L)`; the CAS
//!   `FULL(L) -> READING(L, pid)` makes the consumer the owner of the frame.
//!   It reads `len` (bounded: the frame must end inside the ring and a
//!   message must be at most `max_message`), stores `head = h + run`, reads
//!   the payload, and frees the frame: `EMPTY(L + 1)` into every cell of it,
//!   the first last. A consumer that finds the message longer than it can
//!   take (a caller's buffer) stores `FULL(L)` back before moving `head`,
//!   as recovery does for a consumer that died there: the message stays
//!   first in line.
//! - A frame marked *skip* (`FULL` with the skip bit) carries no message: a
//!   padding frame, an aborted reservation, a dead producer's frame.
//!   Consumers (and producers that need the space) free it and go on.
//! - Waiting: a consumer that finds `EMPTY(L)` at `head` sets the cell's
//!   "waited" bit and sleeps on the word; the producer's claim CAS sees the
//!   bit and wakes it after publishing (no syscall when nobody waits). A
//!   producer short of space registers in `send_waiters` and sleeps on the
//!   `space` counter, which a consumer bumps after freeing a frame when
//!   `send_waiters` is not zero (a `SeqCst` fence on each side orders the
//!   registration against the frees).
//!
//! *Crashed peers* (claims carry the pid; a waiter checks it):
//! - `WRITING` before `tail` moved: the claim is undone (`EMPTY(L)`);
//!   nothing was visible. After `tail` moved: the frame becomes a skip
//!   frame; the dead producer's message is lost (its `send` or `commit`
//!   never returned).
//! - `READING` before `head` moved: back to `FULL(L)`, delivered to the next
//!   consumer. After: the frame is freed; that one message is lost (the
//!   dead consumer's `recv` never returned it). A consumer killed while
//!   holding a zero-copy guard loses the message it was reading.
//!
//! # SPSC: one writer per index, no CAS
//!
//! The producer owns `tail`, the consumer `head`; each keeps its own copy
//! of its position and a cached copy of the other's, reloaded only when the
//! cached one says full or empty. The producer writes the frame's `len`,
//! payload and checksum, then stores `tail` (release); the consumer loads
//! `tail` (acquire), reads, and stores `head`. Cell `state` words are not
//! used. Sleepers register in `recv_waiters`/`send_waiters` and sleep on
//! the low half of `tail`/`head`; the other side checks the count after a
//! `SeqCst` fence. The attachment words 0 and 1 record the one producer and
//! the one consumer: a second live one is refused.
//!
//! *Crashed peers:* a producer killed mid-message never moved `tail`:
//! nothing is visible, and the next producer (allowed once the dead one's
//! pid is gone) writes from `tail`. A consumer killed mid-read never moved
//! `head`: the message is delivered again to the next consumer (at least
//! once).
//!
//! # Attachment, disconnection, shutdown
//!
//! Senders and receivers attach in the header's `attached` words (pid,
//! role, count of handles) and detach on drop. A receiver that finds the
//! channel empty reports [`Error::Disconnected`] once a sender has attached
//! at some time and none is attached now or alive; a sender that finds it
//! full does the same for receivers. [`Channel::shutdown`] sets a flag:
//! sends fail with [`Error::ShutDown`], receivers drain what is left and
//! then get the same error. Every change of these wakes all sleepers.

mod api;
#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, not(loom)))]
mod tests;

pub(crate) use api::revoke;
pub(crate) use api::{check, totals};

pub use api::{Channel, ChannelOptions, Message, Receiver, Reservation, Sender};

use crate::layout::{ChannelCell, ChannelHeader, PAD_LEN};
use crate::process::is_alive;
use crate::queue::{next_tag, prev_tag, SlotState, TAG_MASK};
use crate::ring::{cells_for, RingShape};
use crate::sync::{fence, Ordering};
use crate::wait::{futex_wait, futex_wait_low, futex_wake, futex_wake_low, Deadline};
use std::time::Duration;

/// Largest message: 1 GiB.
pub const MAX_MESSAGE: u64 = 1 << 30;
/// Largest channel or topic capacity in bytes (2^32 cells of 64 bytes).
pub const MAX_RING_CAPACITY: u64 = 1 << 38;

const ROLE_SENDER: u64 = 1;
const ROLE_RECEIVER: u64 = 2;
const ROLE_SHIFT: u32 = 32;
const COUNT_SHIFT: u32 = 34;
const COUNT_ONE: u64 = 1 << COUNT_SHIFT;

/// A side of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Sender,
    Receiver,
}

impl Role {
    fn bits(self) -> u64 {
        match self {
            Role::Sender => ROLE_SENDER,
            Role::Receiver => ROLE_RECEIVER,
        }
    }

    pub(crate) fn noun(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }
}

/// Why a channel operation stopped without completing.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The state seen does not fit the protocol: the channel is damaged.
    Corrupt(String),
}

/// What an operation that cannot proceed waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Blocked {
    /// MPMC send: room (sleep on `space`). `holder`: the claim (cell,
    /// word seen) on the previous lap's frame in the way, if a receiver
    /// took it and has not freed it yet: if that receiver died, the frame
    /// is freed by taking its claim over.
    Space { holder: Option<(u64, u64)> },
    /// MPMC receive: the cell at `head` is empty (`word` seen).
    Empty { idx: u64, word: u64 },
    /// A peer holds a claim on cell `idx` (`word` seen): wait, and take it
    /// over if the peer died.
    Claim { idx: u64, word: u64 },
    /// SPSC send: room; `head` was seen at this position.
    SpscFull { head: u64 },
    /// SPSC receive: a message; `tail` was seen at this position.
    SpscEmpty { tail: u64 },
}

impl Blocked {
    /// The claim to take over if its holder died: a claim in the way, or
    /// the receiver's claim on an unfreed frame where room is wanted.
    pub(crate) fn claim(self) -> Option<(u64, u64)> {
        match self {
            Blocked::Claim { idx, word } => Some((idx, word)),
            Blocked::Space { holder } => holder,
            _ => None,
        }
    }
}

/// A frame claimed by a producer (MPMC) or about to be written (SPSC).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Claim {
    /// Position of the frame.
    pub(crate) pos: u64,
    pub(crate) idx: u64,
    tag: u64,
    /// MPMC: a consumer sleeps on the cell.
    waited: bool,
    /// SPSC: `tail` after this frame.
    next: u64,
}

/// What a consumer found at `head`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Took {
    /// A message, now the consumer's.
    Frame(Taken),
    /// A message of this many bytes, longer than the consumer's limit: it
    /// was left first in line (`head` did not move).
    TooLong(u32),
}

/// A frame claimed by a consumer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Taken {
    pub(crate) pos: u64,
    pub(crate) idx: u64,
    tag: u64,
    run: u64,
    /// Message length in bytes.
    pub(crate) len: u32,
    waited: bool,
    /// SPSC: `head` after this frame.
    next: u64,
}

/// What a receive takes: messages of at most `limit` bytes (a longer one
/// stays first in line), counted as unfinished tasks with `count`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    pub(crate) limit: u32,
    pub(crate) count: bool,
}

impl Want {
    /// Any message, not counted.
    pub(crate) const ANY: Want = Want {
        limit: u32::MAX,
        count: false,
    };
}

/// A producer's or consumer's own view of an SPSC channel: its position
/// and a cached copy of the other side's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpscEnd {
    pub(crate) pos: u64,
    pub(crate) cached: u64,
}

/// The shape of a channel, copied from its header once validated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelShape {
    pub(crate) ring: RingShape,
    pub(crate) spsc: bool,
}

/// The channel algorithms over a header, control records and data. The
/// same code runs on a segment's bytes and, under loom, on heap memory.
pub(crate) struct ChannelCore<'a> {
    header: &'a ChannelHeader,
    cells: *const ChannelCell,
    data: *mut u8,
    shape: &'a ChannelShape,
}

impl<'a> ChannelCore<'a> {
    /// # Safety
    /// `cells` must point to `shape.ring.cells` initialised control records
    /// and `data` to `shape.ring.cells * 64` bytes, valid for `'a`.
    pub(crate) unsafe fn new(
        header: &'a ChannelHeader,
        cells: *const ChannelCell,
        data: *mut u8,
        shape: &'a ChannelShape,
    ) -> Self {
        ChannelCore {
            header,
            cells,
            data,
            shape,
        }
    }

    #[inline]
    fn ring(&self) -> &RingShape {
        &self.shape.ring
    }

    #[inline]
    fn cell(&self, idx: u64) -> &'a ChannelCell {
        debug_assert!(idx < self.ring().cells);
        // SAFETY: every caller passes an index checked against our own copy
        // of the cell count (`RingShape::index`, `run_of`); the records are
        // initialised (new).
        unsafe { &*self.cells.add(idx as usize) }
    }

    /// The payload of the frame at cell `idx`, `len` bytes (the caller
    /// checked that the frame's cells hold them).
    #[inline]
    pub(crate) fn payload(&self, idx: u64) -> *mut u8 {
        // SAFETY: idx < cells (as in `cell`), so the offset lies in the data ring.
        unsafe { self.data.add(RingShape::data_offset(idx)) }
    }

    fn corrupt(&self, what: &str, pos: u64) -> Stop {
        Stop::Corrupt(format!("{what} position {pos} is outside the ring"))
    }

    // ------------------------------------------------------------------ MPMC

    /// Try to claim a frame for a message of `len` bytes at `tail`, passing
    /// padding frames as needed. `Ok(Err(blocked))` when it cannot now.
    pub(crate) fn claim(
        &self,
        len: u32,
        me: u32,
    ) -> std::result::Result<std::result::Result<Claim, Blocked>, Stop> {
        let ring = *self.ring();
        let need = cells_for(len as u64);
        loop {
            let t = self.header.tail.load(Ordering::Acquire);
            let Some(idx) = ring.index(t) else {
                return Err(self.corrupt("tail", t));
            };
            let tag = ring.split(t).0 & TAG_MASK;
            let (run, record) = if idx + need > ring.cells {
                (ring.cells - idx, PAD_LEN)
            } else {
                (need, len)
            };
            // The frame's other cells must be free for this lap.
            let mut blocked = None;
            for j in idx + 1..idx + run {
                let word = self.cell(j).state.load(Ordering::Acquire);
                match SlotState::decode(word) {
                    SlotState::Empty { tag: st, .. } if st == tag => {}
                    _ => {
                        blocked = Some((j, word));
                        break;
                    }
                }
            }
            if let Some((j, word)) = blocked {
                if self.header.tail.load(Ordering::Acquire) != t {
                    continue;
                }
                match self.not_free(idx, j, word, tag)? {
                    Some(blocked) => return Ok(Err(blocked)),
                    None => continue,
                }
            }
            let cell = self.cell(idx);
            let empty = SlotState::Empty { tag, waited: false }.encode();
            let mine = SlotState::Writing { tag, pid: me }.encode();
            let waited =
                match cell
                    .state
                    .compare_exchange(empty, mine, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => false,
                    Err(word) => match SlotState::decode(word) {
                        SlotState::Empty {
                            tag: st,
                            waited: true,
                        } if st == tag => {
                            if cell
                                .state
                                .compare_exchange(word, mine, Ordering::AcqRel, Ordering::Relaxed)
                                .is_err()
                            {
                                continue;
                            }
                            true
                        }
                        _ => {
                            if self.header.tail.load(Ordering::Acquire) != t {
                                continue;
                            }
                            match SlotState::decode(word) {
                                // Another producer claimed t and is about to move tail.
                                SlotState::Writing { tag: st, .. } if st == tag => {
                                    return Ok(Err(Blocked::Claim { idx, word }))
                                }
                                _ => match self.not_free(idx, idx, word, tag)? {
                                    Some(blocked) => return Ok(Err(blocked)),
                                    None => continue,
                                },
                            }
                        }
                    },
                };
            cell.len.store(record, Ordering::Relaxed);
            crate::fault::pause_point("channel.send.claimed");
            self.header
                .tail
                .store(ring.advance(t, idx, run), Ordering::Release);
            crate::fault::pause_point("channel.send.tail_moved");
            let claim = Claim {
                pos: t,
                idx,
                tag,
                waited,
                next: 0,
            };
            if record == PAD_LEN {
                self.publish(&claim, true, 0);
                continue;
            }
            return Ok(Ok(claim));
        }
    }

    /// Cell `j` (word `word`) of a frame starting at cell `from` is not free
    /// for lap `tag`: full (its previous lap's frame is still there), a
    /// claim to wait on, or damage. `None`: a skip frame at `head` was in
    /// the way and has been passed; look again.
    fn not_free(
        &self,
        from: u64,
        j: u64,
        word: u64,
        tag: u64,
    ) -> std::result::Result<Option<Blocked>, Stop> {
        match SlotState::decode(word) {
            SlotState::Writing { tag: st, .. } | SlotState::Reading { tag: st, .. }
                if st == prev_tag(tag) =>
            {
                Ok(Some(Blocked::Claim { idx: j, word }))
            }
            SlotState::Empty { tag: st, .. } | SlotState::Full { tag: st, .. }
                if st == prev_tag(tag) =>
            {
                // A padding or skip frame at head may hold the space: pass it.
                if self.pass_skip_at_head() {
                    return Ok(None);
                }
                Ok(Some(Blocked::Space {
                    holder: self.frame_holder(from, j, tag),
                }))
            }
            _ => Err(Stop::Corrupt(format!(
                "cell {j} has state {word:#x}, which does not fit the tail's lap"
            ))),
        }
    }

    /// The claim on the previous lap's frame that covers cell `j`, if cell
    /// `j` is one of its inner cells (`EMPTY` of the previous lap: not
    /// freed yet) and its first cell, at or after `from`, holds a claim.
    /// Inner cells carry no claimant, so a receiver that died after moving
    /// `head` past a frame of several cells, before freeing it (or while
    /// freeing it), is found only here, through the frame's first cell.
    /// The walk passes inner cells of either lap (a frame killed while
    /// being freed has some of each); the first cell is freed last, so it
    /// still holds the claim while any inner cell is unfreed. It is at or
    /// after `from`, the start of the frame being claimed: the cells
    /// before `from` were claimed in this lap, so the frames that covered
    /// them were freed, first cells included.
    fn frame_holder(&self, from: u64, j: u64, tag: u64) -> Option<(u64, u64)> {
        let prev = prev_tag(tag);
        let mut k = j;
        loop {
            let word = self.cell(k).state.load(Ordering::Acquire);
            match SlotState::decode(word) {
                SlotState::Empty { tag: st, .. } if (st == prev || st == tag) && k > from => k -= 1,
                SlotState::Reading { tag: st, .. } | SlotState::Writing { tag: st, .. }
                    if st == prev =>
                {
                    // The claim must cover `j` (a length read from the ring
                    // is bounded by `run_of`).
                    let len = self.cell(k).len.load(Ordering::Relaxed);
                    let run = self.ring().run_of(len, k)?;
                    return (k + run > j).then_some((k, word));
                }
                _ => return None,
            }
        }
    }

    /// Publish a claimed frame: a message, or with `skip` a frame without one.
    pub(crate) fn publish(&self, claim: &Claim, skip: bool, checksum: u32) {
        let cell = self.cell(claim.idx);
        cell.checksum.store(checksum, Ordering::Relaxed);
        crate::fault::pause_point("channel.send.written");
        let full = SlotState::Full {
            tag: claim.tag,
            waited: false,
            skip,
        };
        cell.state.store(full.encode(), Ordering::Release);
        if claim.waited {
            futex_wake_low(&cell.state);
        }
    }

    /// If the frame at `head` is a skip frame, take and free it (what a
    /// consumer would do), so a producer waiting for space is not held up
    /// by a padding frame when no consumer runs.
    fn pass_skip_at_head(&self) -> bool {
        let h = self.header.head.load(Ordering::Acquire);
        let Some(idx) = self.ring().index(h) else {
            return false;
        };
        let tag = self.ring().split(h).0 & TAG_MASK;
        let word = self.cell(idx).state.load(Ordering::Acquire);
        if let SlotState::Full {
            tag: st,
            waited,
            skip: true,
        } = SlotState::decode(word)
        {
            if st == tag {
                let _ = self.take_claimed(h, idx, tag, word, waited, true, Want::ANY);
                return true;
            }
        }
        false
    }

    /// Try to take the frame at `head`; skip frames are freed and passed. A
    /// message longer than `limit` bytes is left where it is.
    pub(crate) fn take(
        &self,
        me: u32,
        want: Want,
    ) -> std::result::Result<std::result::Result<Took, Blocked>, Stop> {
        loop {
            let h = self.header.head.load(Ordering::Acquire);
            let Some(idx) = self.ring().index(h) else {
                return Err(self.corrupt("head", h));
            };
            let tag = self.ring().split(h).0 & TAG_MASK;
            let cell = self.cell(idx);
            let full = SlotState::Full {
                tag,
                waited: false,
                skip: false,
            }
            .encode();
            let word = match cell.state.compare_exchange(
                full,
                SlotState::Reading {
                    tag,
                    pid: me,
                    skip: false,
                }
                .encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => match self.after_take(h, idx, tag, false, false, want)? {
                    Some(taken) => return Ok(Ok(taken)),
                    None => continue,
                },
                Err(word) => word,
            };
            match SlotState::decode(word) {
                SlotState::Full {
                    tag: st,
                    waited,
                    skip,
                } if st == tag => {
                    if let Some(took) = self.take_claimed(h, idx, tag, word, waited, skip, want)? {
                        return Ok(Ok(took));
                    }
                }
                // Nothing sent at h yet (or the previous lap's frame over
                // this cell is not freed yet): empty.
                SlotState::Empty { tag: st, .. } if st == tag || st == prev_tag(tag) => {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Ok(Err(Blocked::Empty { idx, word }));
                    }
                }
                // A producer claimed h and has not published; or the
                // previous lap's consumer of this cell is still at it.
                SlotState::Writing { tag: st, .. } if st == tag => {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Ok(Err(Blocked::Claim { idx, word }));
                    }
                }
                SlotState::Reading { tag: st, .. } if st == prev_tag(tag) => {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Ok(Err(Blocked::Claim { idx, word }));
                    }
                }
                // Another consumer took h and is about to move head: give
                // it a moment, then treat it as a claim to wait on (it may
                // have died before moving head).
                SlotState::Reading { tag: st, .. } if st == tag => {
                    let mut moved = false;
                    for _ in 0..32 {
                        crate::sync::spin_hint();
                        if self.header.head.load(Ordering::Acquire) != h {
                            moved = true;
                            break;
                        }
                    }
                    if !moved {
                        return Ok(Err(Blocked::Claim { idx, word }));
                    }
                }
                _ => {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Err(Stop::Corrupt(format!(
                            "cell {idx} has state {word:#x}, which does not fit head position {h}"
                        )));
                    }
                }
            }
        }
    }

    /// CAS the `FULL` word `word` at `h` to our claim and finish the take.
    /// `Ok(None)`: lost the race or passed a skip frame (look again).
    #[allow(clippy::too_many_arguments)]
    fn take_claimed(
        &self,
        h: u64,
        idx: u64,
        tag: u64,
        word: u64,
        waited: bool,
        skip: bool,
        want: Want,
    ) -> std::result::Result<Option<Took>, Stop> {
        let me = crate::process::current_pid();
        let claim = SlotState::Reading { tag, pid: me, skip }.encode();
        if self
            .cell(idx)
            .state
            .compare_exchange(word, claim, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Ok(None);
        }
        self.after_take(h, idx, tag, waited, skip, want)
    }

    /// The frame at `h` is ours: bound it, move `head`; free a skip frame.
    /// A message longer than `limit` goes back to `FULL` before `head`
    /// moves (no one else touches a frame we claimed at `head`).
    fn after_take(
        &self,
        h: u64,
        idx: u64,
        tag: u64,
        waited: bool,
        skip: bool,
        want: Want,
    ) -> std::result::Result<Option<Took>, Stop> {
        let cell = self.cell(idx);
        let len = cell.len.load(Ordering::Relaxed);
        let run = self.ring().run_of(len, idx);
        let run = match run {
            Some(run) if skip || (len != PAD_LEN && len as u64 <= self.ring().max_message) => run,
            _ => {
                return Err(Stop::Corrupt(format!(
                    "the frame at position {h} says {len} bytes, which does not fit the ring \
                     or the channel's {}-byte message limit",
                    self.ring().max_message
                )))
            }
        };
        if !skip && len > want.limit {
            let full = SlotState::Full {
                tag,
                waited,
                skip: false,
            };
            cell.state.store(full.encode(), Ordering::Release);
            return Ok(Some(Took::TooLong(len)));
        }
        if want.count && !skip {
            // Before head moves: whoever sees the message gone sees it counted.
            self.header.unfinished.fetch_add(1, Ordering::AcqRel);
        }
        crate::fault::pause_point("channel.recv.claimed");
        self.header
            .head
            .store(self.ring().advance(h, idx, run), Ordering::Release);
        crate::fault::pause_point("channel.recv.head_moved");
        let taken = Taken {
            pos: h,
            idx,
            tag,
            run,
            len,
            waited,
            next: 0,
        };
        if skip {
            self.release(&taken);
            return Ok(None);
        }
        Ok(Some(Took::Frame(taken)))
    }

    /// Free a taken frame for the next lap and wake whoever waits for room.
    pub(crate) fn release(&self, taken: &Taken) {
        crate::fault::pause_point("channel.recv.read");
        self.free(taken.idx, taken.run, taken.tag, taken.waited);
    }

    fn free(&self, idx: u64, run: u64, tag: u64, waited: bool) {
        let empty = SlotState::Empty {
            tag: next_tag(tag),
            waited: false,
        }
        .encode();
        // Last cell first, the first cell (the claim) last: a process
        // killed in between leaves the unfreed inner cells right after the
        // claim, where a sender walking back from them finds it.
        for j in (idx + 1..idx + run).rev() {
            self.cell(j).state.store(empty, Ordering::Release);
            if j == idx + run - 1 {
                crate::fault::pause_point("channel.free.inner");
            }
        }
        let cell = self.cell(idx);
        cell.state.store(empty, Ordering::Release);
        if waited {
            futex_wake_low(&cell.state);
        }
        fence(Ordering::SeqCst);
        if self.header.send_waiters.load(Ordering::Relaxed) != 0 {
            self.header.space.fetch_add(1, Ordering::Release);
            futex_wake(&self.header.space, i32::MAX as u32);
        }
    }

    /// Take over every claim, release every attachment word and forget
    /// sleepers, as the deaths of all of them would (see `QueueCore::revoke`).
    /// Returns the claims and attachments taken over.
    pub(crate) fn revoke(&self) -> u64 {
        let mut taken = 0;
        if !self.shape.spsc {
            for idx in 0..self.ring().cells {
                let word = self.cell(idx).state.load(Ordering::Acquire);
                if let SlotState::Writing { .. } | SlotState::Reading { .. } =
                    SlotState::decode(word)
                {
                    self.recover(idx, word);
                    taken += 1;
                }
            }
        }
        for word in &self.header.attached {
            if word.swap(0, Ordering::AcqRel) != 0 {
                taken += 1;
            }
        }
        self.header.send_waiters.store(0, Ordering::Relaxed);
        self.header.recv_waiters.store(0, Ordering::Relaxed);
        self.header.join_waiters.store(0, Ordering::Relaxed);
        taken
    }

    /// If cell `idx` still holds `word`, a claim by a dead process, take it
    /// over and finish or undo the dead process's step. Returns whether
    /// the claimant is alive (nothing was done).
    pub(crate) fn recover(&self, idx: u64, word: u64) -> bool {
        let cell = self.cell(idx);
        let me = crate::process::current_pid();
        match SlotState::decode(word) {
            SlotState::Writing { tag, pid } if !is_alive(pid) => {
                let ours = SlotState::Writing { tag, pid: me }.encode();
                if cell
                    .state
                    .compare_exchange(word, ours, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    return false;
                }
                // Only the claimant moves `tail` past its position, so if
                // `tail` is still there (confirmed by a CAS, which reads the
                // latest value, where a load could return an older one) it
                // stays there, and the claim can be undone.
                let t = self.header.tail.load(Ordering::Acquire);
                let (lap, i) = self.ring().split(t);
                let undo = i == idx
                    && lap & TAG_MASK == tag
                    && self
                        .header
                        .tail
                        .compare_exchange(t, t, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                let next = if undo {
                    // It died before moving tail: nothing was visible.
                    SlotState::Empty { tag, waited: false }
                } else {
                    // Its frame is in the ring: no message there.
                    SlotState::Full {
                        tag,
                        waited: false,
                        skip: true,
                    }
                };
                cell.state.store(next.encode(), Ordering::Release);
                futex_wake_low(&cell.state);
                false
            }
            SlotState::Reading { tag, pid, skip } if !is_alive(pid) => {
                let ours = SlotState::Reading { tag, pid: me, skip }.encode();
                if cell
                    .state
                    .compare_exchange(word, ours, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    return false;
                }
                // As for `tail` above: confirm with a CAS that `head` is
                // still at the claim's position before giving it back.
                let h = self.header.head.load(Ordering::Acquire);
                let (lap, i) = self.ring().split(h);
                if i == idx
                    && lap & TAG_MASK == tag
                    && self
                        .header
                        .head
                        .compare_exchange(h, h, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    // It died before moving head: the message goes to the
                    // next consumer.
                    let full = SlotState::Full {
                        tag,
                        waited: false,
                        skip,
                    };
                    cell.state.store(full.encode(), Ordering::Release);
                    futex_wake_low(&cell.state);
                } else {
                    let len = cell.len.load(Ordering::Relaxed);
                    match self.ring().run_of(len, idx) {
                        Some(run) => self.free(idx, run, tag, true),
                        // A damaged length: free what is certainly ours.
                        None => self.free(idx, 1, tag, true),
                    }
                }
                false
            }
            SlotState::Writing { .. } | SlotState::Reading { .. } => true,
            _ => false,
        }
    }

    /// Sleep until the blocked state may have changed (or a nap passes).
    pub(crate) fn sleep(&self, blocked: Blocked, deadline: &Deadline) {
        let Some(nap) = deadline.next_sleep() else {
            return;
        };
        match blocked {
            Blocked::Space { .. } => {
                let seen = self.header.space.load(Ordering::Acquire);
                self.header.send_waiters.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                // Look again after registering: a consumer that freed room
                // before it saw us did not bump `space`.
                let still = matches!(self.room_check(), Some(false));
                if still {
                    futex_wait(&self.header.space, seen, Some(nap));
                }
                self.header.send_waiters.fetch_sub(1, Ordering::SeqCst);
            }
            Blocked::Empty { idx, word } => {
                let flagged = match SlotState::decode(word) {
                    SlotState::Empty { tag, .. } => SlotState::Empty { tag, waited: true }.encode(),
                    _ => return,
                };
                let cell = self.cell(idx);
                if flagged != word
                    && cell
                        .state
                        .compare_exchange(word, flagged, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    return;
                }
                futex_wait_low(&cell.state, flagged as u32, Some(nap));
            }
            Blocked::Claim { .. } => {
                std::thread::sleep(nap.min(Duration::from_micros(50)));
            }
            Blocked::SpscFull { head } => {
                self.header.send_waiters.fetch_add(1, Ordering::SeqCst);
                if self.header.head.load(Ordering::SeqCst) == head
                    && self.header.shutdown.load(Ordering::SeqCst) == 0
                {
                    futex_wait_low(&self.header.head, head as u32, Some(nap));
                }
                self.header.send_waiters.fetch_sub(1, Ordering::SeqCst);
            }
            Blocked::SpscEmpty { tail } => {
                self.header.recv_waiters.fetch_add(1, Ordering::SeqCst);
                if self.header.tail.load(Ordering::SeqCst) == tail
                    && self.header.shutdown.load(Ordering::SeqCst) == 0
                {
                    futex_wait_low(&self.header.tail, tail as u32, Some(nap));
                }
                self.header.recv_waiters.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Whether the frame at `tail` could be claimed for the smallest
    /// message now (`None`: the state is changing; look again).
    fn room_check(&self) -> Option<bool> {
        let t = self.header.tail.load(Ordering::Acquire);
        let idx = self.ring().index(t)?;
        let tag = self.ring().split(t).0 & TAG_MASK;
        let word = self.cell(idx).state.load(Ordering::Acquire);
        Some(matches!(SlotState::decode(word), SlotState::Empty { tag: st, .. } if st == tag))
    }

    /// Wake every sleeper of the channel (shutdown, a side detaching).
    pub(crate) fn wake_all(&self) {
        self.header.space.fetch_add(1, Ordering::Release);
        futex_wake(&self.header.space, i32::MAX as u32);
        futex_wake_low(&self.header.tail);
        futex_wake_low(&self.header.head);
        if !self.shape.spsc {
            for end in [&self.header.head, &self.header.tail] {
                if let Some(idx) = self.ring().index(end.load(Ordering::Acquire)) {
                    futex_wake_low(&self.cell(idx).state);
                }
            }
        }
    }

    // ------------------------------------------------------------------ SPSC

    /// Make room for a message of `len` bytes at the producer's position,
    /// writing a padding frame first if it does not fit before the end.
    pub(crate) fn spsc_claim(
        &self,
        end: &mut SpscEnd,
        len: u32,
    ) -> std::result::Result<std::result::Result<Claim, Blocked>, Stop> {
        let ring = *self.ring();
        let t = end.pos;
        let Some(idx) = ring.index(t) else {
            return Err(self.corrupt("tail", t));
        };
        let need = cells_for(len as u64);
        let pad = if idx + need > ring.cells {
            ring.cells - idx
        } else {
            0
        };
        let total = pad + need;
        let used = match ring.distance(end.cached, t) {
            Some(n) if ring.cells - n >= total => n,
            _ => {
                end.cached = self.header.head.load(Ordering::Acquire);
                match ring.distance(end.cached, t) {
                    Some(n) => n,
                    None => {
                        return Err(Stop::Corrupt(format!(
                            "head position {} does not fit tail position {t}",
                            end.cached
                        )))
                    }
                }
            }
        };
        if ring.cells - used < total {
            if pad > 0 && ring.cells - used >= pad {
                // Publish the padding alone: the consumer passes it, and the
                // message then starts the next lap.
                self.cell(idx).len.store(PAD_LEN, Ordering::Relaxed);
                let next = ring.advance(t, idx, pad);
                let claim = Claim {
                    pos: next,
                    idx: 0,
                    tag: 0,
                    waited: false,
                    next,
                };
                self.spsc_publish_to(end, &claim);
                return self.spsc_claim(end, len);
            }
            return Ok(Err(Blocked::SpscFull { head: end.cached }));
        }
        let (pos, idx) = if pad > 0 {
            self.cell(idx).len.store(PAD_LEN, Ordering::Relaxed);
            let next = ring.advance(t, idx, pad);
            (next, 0)
        } else {
            (t, idx)
        };
        Ok(Ok(Claim {
            pos,
            idx,
            tag: 0,
            waited: false,
            next: ring.advance(pos, idx, need),
        }))
    }

    /// Publish an SPSC message of `len` bytes written at `claim`.
    pub(crate) fn spsc_publish(&self, end: &mut SpscEnd, claim: &Claim, len: u32, checksum: u32) {
        let cell = self.cell(claim.idx);
        cell.len.store(len, Ordering::Relaxed);
        cell.checksum.store(checksum, Ordering::Relaxed);
        crate::fault::pause_point("channel.spsc.written");
        self.spsc_publish_to(end, claim);
    }

    fn spsc_publish_to(&self, end: &mut SpscEnd, claim: &Claim) {
        self.header.tail.store(claim.next, Ordering::Release);
        end.pos = claim.next;
        fence(Ordering::SeqCst);
        if self.header.recv_waiters.load(Ordering::Relaxed) != 0 {
            futex_wake_low(&self.header.tail);
        }
    }

    /// Take the next SPSC message, passing padding frames; one longer than
    /// `limit` bytes is left where it is (`head` moves only on release).
    pub(crate) fn spsc_take(
        &self,
        end: &mut SpscEnd,
        want: Want,
    ) -> std::result::Result<std::result::Result<Took, Blocked>, Stop> {
        let ring = *self.ring();
        loop {
            let h = end.pos;
            if h == end.cached {
                end.cached = self.header.tail.load(Ordering::Acquire);
                if h == end.cached {
                    return Ok(Err(Blocked::SpscEmpty { tail: h }));
                }
            }
            let (Some(idx), Some(avail)) = (ring.index(h), ring.distance(h, end.cached)) else {
                return Err(Stop::Corrupt(format!(
                    "tail position {} does not fit head position {h}",
                    end.cached
                )));
            };
            let len = self.cell(idx).len.load(Ordering::Relaxed);
            let run = match ring.run_of(len, idx) {
                Some(run) if run <= avail && (len == PAD_LEN || len as u64 <= ring.max_message) => {
                    run
                }
                _ => {
                    return Err(Stop::Corrupt(format!(
                        "the frame at position {h} says {len} bytes, which does not fit the ring"
                    )))
                }
            };
            let next = ring.advance(h, idx, run);
            if len == PAD_LEN {
                self.spsc_release_to(end, next);
                continue;
            }
            if len > want.limit {
                return Ok(Ok(Took::TooLong(len)));
            }
            if want.count {
                // Before head moves (at release).
                self.header.unfinished.fetch_add(1, Ordering::AcqRel);
            }
            return Ok(Ok(Took::Frame(Taken {
                pos: h,
                idx,
                tag: 0,
                run,
                len,
                waited: false,
                next,
            })));
        }
    }

    /// Free an SPSC message: move `head` past it.
    pub(crate) fn spsc_release(&self, end: &mut SpscEnd, taken: &Taken) {
        crate::fault::pause_point("channel.spsc.read");
        self.spsc_release_to(end, taken.next);
    }

    fn spsc_release_to(&self, end: &mut SpscEnd, next: u64) {
        self.header.head.store(next, Ordering::Release);
        end.pos = next;
        fence(Ordering::SeqCst);
        if self.header.send_waiters.load(Ordering::Relaxed) != 0 {
            futex_wake_low(&self.header.head);
        }
    }

    // ------------------------------------------------------------ readiness

    /// Whether a receive could find a message now (`Err` says what to wait
    /// on). Takes nothing: for waits that must lose nothing when abandoned
    /// (asyncio). A skip frame at `head` counts as ready; the receive then
    /// passes it.
    pub(crate) fn readable(&self) -> std::result::Result<std::result::Result<(), Blocked>, Stop> {
        let h = self.header.head.load(Ordering::Acquire);
        let t = self.header.tail.load(Ordering::Acquire);
        if self.shape.spsc {
            return Ok(if h != t {
                Ok(())
            } else {
                Err(Blocked::SpscEmpty { tail: t })
            });
        }
        let Some(idx) = self.ring().index(h) else {
            return Err(self.corrupt("head", h));
        };
        let tag = self.ring().split(h).0 & TAG_MASK;
        let word = self.cell(idx).state.load(Ordering::Acquire);
        Ok(match SlotState::decode(word) {
            SlotState::Empty { tag: st, .. } if st == tag => Err(Blocked::Empty { idx, word }),
            SlotState::Empty { tag: st, .. } if st == prev_tag(tag) => {
                Err(Blocked::Claim { idx, word })
            }
            SlotState::Writing { tag: st, .. } if st == tag => Err(Blocked::Claim { idx, word }),
            _ => Ok(()),
        })
    }

    /// Whether a send of `len` bytes could find room now (approximately:
    /// the send itself decides), taking nothing.
    pub(crate) fn writable(&self, len: u32) -> std::result::Result<(), Blocked> {
        let h = self.header.head.load(Ordering::Acquire);
        let t = self.header.tail.load(Ordering::Acquire);
        let used = self.ring().distance(h, t).unwrap_or(0);
        let room = self.ring().cells - used >= cells_for(len as u64);
        match (room, self.shape.spsc) {
            (true, _) => Ok(()),
            (false, true) => Err(Blocked::SpscFull { head: h }),
            (false, false) => Err(Blocked::Space { holder: None }),
        }
    }

    // ------------------------------------------------------------- figures

    /// Messages held (walks the frames from `head` to `tail`; exact when
    /// nothing runs concurrently, bounded by the ring whatever the bytes).
    pub(crate) fn messages(&self) -> u64 {
        let ring = *self.ring();
        let mut pos = self.header.head.load(Ordering::Acquire);
        let tail = self.header.tail.load(Ordering::Acquire);
        let Some(mut left) = ring.distance(pos, tail) else {
            return 0;
        };
        let mut n = 0;
        while left > 0 {
            let Some(idx) = ring.index(pos) else { break };
            let cell = self.cell(idx);
            let len = cell.len.load(Ordering::Relaxed);
            let Some(run) = ring.run_of(len, idx).filter(|&r| r <= left) else {
                break;
            };
            let skip = !self.shape.spsc
                && matches!(
                    SlotState::decode(cell.state.load(Ordering::Relaxed)),
                    SlotState::Full { skip: true, .. } | SlotState::Reading { skip: true, .. }
                );
            if len != PAD_LEN && !skip {
                n += 1;
            }
            left -= run;
            pos = ring.advance(pos, idx, run);
        }
        n
    }

    /// Copies of up to `max` messages from `head` towards `tail`, oldest
    /// first, taking nothing (for inspection). MPMC: a frame is copied only
    /// while its first cell holds a published message, and kept only if
    /// that word is unchanged afterwards; SPSC: kept only if `head` has not
    /// passed it meanwhile (the sender reuses nothing before that). Every
    /// length is bounded by the ring and `max_message`; at most one lap is
    /// read. Weakly consistent, never torn.
    pub(crate) fn peek(&self, max: usize) -> Vec<Vec<u8>> {
        let ring = *self.ring();
        let mut out = Vec::new();
        let mut pos = self.header.head.load(Ordering::Acquire);
        let tail = self.header.tail.load(Ordering::Acquire);
        let Some(mut left) = ring.distance(pos, tail) else {
            return out;
        };
        while left > 0 && out.len() < max {
            let Some(idx) = ring.index(pos) else { break };
            let cell = self.cell(idx);
            let before = cell.state.load(Ordering::Acquire);
            let len = cell.len.load(Ordering::Acquire);
            let Some(run) = ring.run_of(len, idx).filter(|&r| r <= left) else {
                break;
            };
            let published = self.shape.spsc
                || matches!(
                    SlotState::decode(before),
                    SlotState::Full { tag, skip: false, .. } if tag == ring.split(pos).0 & TAG_MASK
                );
            if len != PAD_LEN && len as u64 <= ring.max_message && published {
                let mut msg = vec![0u8; len as usize];
                // SAFETY: `run_of` proved the frame of `len` bytes lies inside
                // the ring from cell `idx`. Another process may rewrite it
                // meanwhile (a racy copy, as a topic reader makes); the
                // checks below drop such a copy.
                unsafe {
                    std::ptr::copy_nonoverlapping(self.payload(idx), msg.as_mut_ptr(), msg.len())
                };
                fence(Ordering::Acquire);
                let intact = if self.shape.spsc {
                    ring.distance(self.header.head.load(Ordering::Relaxed), pos)
                        .is_some()
                } else {
                    cell.state.load(Ordering::Relaxed) == before
                };
                if intact {
                    out.push(msg);
                }
            }
            left -= run;
            pos = ring.advance(pos, idx, run);
        }
        out
    }

    /// Cells between `head` and `tail` (0 when the words do not fit).
    pub(crate) fn used_cells(&self) -> u64 {
        let h = self.header.head.load(Ordering::Acquire);
        let t = self.header.tail.load(Ordering::Acquire);
        self.ring().distance(h, t).unwrap_or(0)
    }

    // ------------------------------------------------------------ attaching

    /// Record an attachment of `role` by process `me`; `Err(pid)` names a
    /// live holder of an SPSC side, `Err(0)` means every word is taken.
    pub(crate) fn attach(&self, role: Role, me: u32) -> std::result::Result<usize, u32> {
        let bits = role.bits();
        self.header
            .ever_attached
            .fetch_or(bits as u32, Ordering::AcqRel);
        let mine = me as u64 | bits << ROLE_SHIFT;
        let words = &self.header.attached;
        if self.shape.spsc {
            let i = if role == Role::Sender { 0 } else { 1 };
            loop {
                let w = words[i].load(Ordering::Acquire);
                let pid = w as u32;
                if w != 0 && is_alive(pid) {
                    return Err(pid);
                }
                if words[i]
                    .compare_exchange(w, mine | COUNT_ONE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(i);
                }
            }
        }
        // Our own word for this role, if there is one.
        for (i, word) in words.iter().enumerate() {
            let w = word.load(Ordering::Acquire);
            if w & (u32::MAX as u64 | 3 << ROLE_SHIFT) == mine
                && w >> COUNT_SHIFT < (1 << 30) - 1
                && word
                    .compare_exchange(w, w + COUNT_ONE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                return Ok(i);
            }
        }
        // A free word, else one of a dead process.
        for pass in 0..2 {
            for (i, word) in words.iter().enumerate() {
                let w = word.load(Ordering::Acquire);
                let free = if pass == 0 {
                    w == 0
                } else {
                    !is_alive(w as u32)
                };
                if free
                    && word
                        .compare_exchange(w, mine | COUNT_ONE, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(i);
                }
            }
        }
        Err(0)
    }

    /// Undo one attachment in word `i` by process `me`; wakes everyone when
    /// it was the last of its role.
    pub(crate) fn detach(&self, i: usize, role: Role, me: u32) {
        let Some(word) = self.header.attached.get(i) else {
            return;
        };
        let mine = me as u64 | role.bits() << ROLE_SHIFT;
        loop {
            let w = word.load(Ordering::Acquire);
            if w & (u32::MAX as u64 | 3 << ROLE_SHIFT) != mine || w >> COUNT_SHIFT == 0 {
                break;
            }
            let next = if w >> COUNT_SHIFT == 1 {
                0
            } else {
                w - COUNT_ONE
            };
            if word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        if !self.attached(role, false) {
            self.wake_all();
        }
    }

    /// Whether any process has `role` attached (with `live`, checking that
    /// it is alive: a process killed while attached does not count).
    pub(crate) fn attached(&self, role: Role, live: bool) -> bool {
        self.header.attached.iter().any(|word| {
            let w = word.load(Ordering::Acquire);
            w != 0 && (w >> ROLE_SHIFT) & 3 == role.bits() && (!live || is_alive(w as u32))
        })
    }

    /// Whether `role` attached at some time and no process of it is
    /// attached now (with `live`: alive now).
    pub(crate) fn gone(&self, role: Role, live: bool) -> bool {
        self.header.ever_attached.load(Ordering::Acquire) & role.bits() as u32 != 0
            && !self.attached(role, live)
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.header.shutdown.load(Ordering::Acquire) != 0
    }

    pub(crate) fn shut_down(&self) {
        self.header.shutdown.store(1, Ordering::SeqCst);
        self.wake_all();
    }

    /// A one-line picture of the ring's control state for diagnostics:
    /// `head`, `tail` and the state words of the cells at and after both.
    pub(crate) fn describe(&self) -> String {
        let ring = *self.ring();
        let h = self.header.head.load(Ordering::Acquire);
        let t = self.header.tail.load(Ordering::Acquire);
        let around = |pos: u64| -> String {
            let Some(idx) = ring.index(pos) else {
                return "outside the ring".to_owned();
            };
            (idx..(idx + 3).min(ring.cells))
                .map(|j| {
                    let c = self.cell(j);
                    format!(
                        "cell {j}: {:?} len {}",
                        SlotState::decode(c.state.load(Ordering::Acquire)),
                        c.len.load(Ordering::Relaxed)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let attached: Vec<String> = self
            .header
            .attached
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .filter(|&w| w != 0)
            .map(|w| format!("{:#x}", w))
            .collect();
        format!(
            "head {h} (lap {}, {}), tail {t} (lap {}, {}), send_waiters {}, attached [{}]",
            ring.split(h).0,
            around(h),
            ring.split(t).0,
            around(t),
            self.header.send_waiters.load(Ordering::Relaxed),
            attached.join(", ")
        )
    }

    /// Cells sent and received since the channel was made (`tail` and
    /// `head` as counts of cells, padding included; wrapping), for rates.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let ring = *self.ring();
        let count = |pos: u64| {
            let (lap, idx) = ring.split(pos);
            lap.wrapping_mul(ring.cells).wrapping_add(idx)
        };
        (
            count(self.header.tail.load(Ordering::Acquire)),
            count(self.header.head.load(Ordering::Acquire)),
        )
    }

    /// The current `tail`/`head` words (SPSC attach).
    pub(crate) fn ends(&self) -> (u64, u64) {
        (
            self.header.tail.load(Ordering::Acquire),
            self.header.head.load(Ordering::Acquire),
        )
    }
}
