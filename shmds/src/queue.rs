//! `Queue<T>`: a bounded multi-producer multi-consumer FIFO in shared memory.
//!
//! # The algorithm
//!
//! The queue is a ring of `capacity` slots in the Vyukov / crossbeam
//! `ArrayQueue` family, changed so that a process killed at any instruction
//! cannot wedge it. Its bytes are [`QueueHeader`] and [`QueueSlot`].
//!
//! *Positions.* `tail` (next push) and `head` (next pop) are 64-bit positions
//! `lap * one_lap + index`, `index < capacity`, `one_lap` the power of two
//! `>= capacity` (the encoding is spaced, the memory is not: exactly
//! `capacity` slots exist). They never wrap in practice.
//!
//! *Slot states.* Each slot has one 64-bit state word: a phase, the lap it
//! belongs to (mod 2^39), and either the claimant's pid (and, for a read, a
//! skip bit) or two flags:
//!
//! ```text
//!  EMPTY(lap) --producer claims--> WRITING(lap, pid) --publish--> FULL(lap)
//!      ^                                                             |
//!      +---- free: EMPTY(lap+1) <-- READING(lap, pid) <--consumer claims
//! ```
//!
//! Invariants:
//! - A slot's state changes only by compare-and-swap from EMPTY/FULL (a
//!   *claim*, which records the claimant's pid), or by a plain store from the
//!   claimant (or from whoever took the claim over from a dead claimant).
//! - **Push** at position `t = tail`: the slot must be `EMPTY(lap(t))`; the
//!   claim CAS makes the pusher the one owner of position `t`, so it alone
//!   stores `tail = next(t)`, writes the element and publishes `FULL`.
//!   `FULL(lap(t) - 1)` there means the queue is full.
//! - **Pop** at position `h = head`: the slot must be `FULL(lap(h))`; the
//!   claim makes the popper the one owner of position `h`: it stores
//!   `head = next(h)`, copies the element out and frees the slot as
//!   `EMPTY(lap(h) + 1)`. `EMPTY(lap(h))` there means the queue is empty.
//! - Because a claim is exclusive per position and positions are taken in
//!   order, a CAS from `EMPTY(lap)` can only succeed while `tail` is exactly
//!   that position (likewise `FULL`/`head`): no second check is needed.
//! - The claim is tried first without loading the slot word, expecting the
//!   common state (`EMPTY` or `FULL` without flags): one exclusive fetch of
//!   the cache line rather than a shared fetch and an upgrade. A failed CAS
//!   hands back the word, which is then read like a load would have been;
//!   retries load the word first, so a process polling a full or empty
//!   queue does not keep taking the line away from the one it waits for.
//!
//! *Sleeping.* A popper that finds its slot `EMPTY` sets the slot's
//! "waited" flag (bit 2) by CAS and sleeps on the slot word with a shared
//! futex. The pusher's claim CAS sees the flag (its expected value includes
//! it), and after publishing it wakes the sleepers. Pushers waiting on a full
//! slot do the same on `FULL`. When nobody waits, no syscall is made, and no
//! fence is added to the fast path.
//!
//! *Crashed peers.* A claim carries the claimant's pid. Whoever waits on a
//! claim for more than a moment checks that pid; if the process is gone, it
//! takes the claim over with a CAS and finishes the step:
//! - `WRITING` (a pusher died mid-push): the position is marked *skip*
//!   (`FULL` with bit 3): the consumer that reaches it frees it and moves on.
//!   The dead process's element is lost; its `push` never returned.
//! - `READING` before `head` moved: the slot goes back to `FULL`, and the
//!   element is delivered to the next popper (nothing lost). A popper that
//!   claims a skip mark records it in its claim (`READING` with the skip
//!   bit), so taking over from it puts the skip mark back: a position whose
//!   element was lost is never delivered as if it held one.
//! - `READING` after `head` moved: the slot is freed; the element is lost
//!   (the dead process's `pop` never returned it).
//!
//! Sleepers re-check every [`RECHECK_INTERVAL`](crate::wait::RECHECK_INTERVAL)
//! (100 ms), so a claimant that died without waking them is noticed.
//!
//! *Waking sleepers on purpose.* A sleeper calls its stop check (interrupt
//! callback, shutdown flag) after setting the "waited" flag and before its
//! futex wait. Whoever sets a stop condition then calls `wake_all`, which
//! clears the "waited" flag of the head and tail slots by CAS and wakes
//! their sleepers: a sleeper either sees the condition, or its futex wait
//! finds the word changed, or it is woken. (A sleeper on another slot was
//! already woken by the claimant that moved the head or tail past it.)
//!
//! *Shutdown.* `QueueHeader::shutdown` only ever gains bits. It lives on the
//! header's first line, which no hot path writes, so reading it costs a
//! push one load from its own cache.
//! - A push reads the flag before it starts (and refuses), and again after
//!   its claim (SeqCst, like the claim CAS): if it is set by then, the push
//!   publishes a skip mark instead of its element and fails.
//! - A pop that finds the queue empty reads the flag; if it is set, it
//!   issues a SeqCst fence and looks once more, this time waiting for
//!   claims of live pushers, and only then fails with "shut down".
//! - Every push whose second read saw the flag clear made its claim before
//!   the shutdown in the SeqCst order, so that last look finds its claim:
//!   once a pop has reported "shut down", no element can arrive after it.
//!   Without the second read, a pusher delayed between its first read and
//!   its claim could publish an element after every consumer had left.
//!
//! *Tasks* (`task_done`, `join`). Counting pops increment
//! `QueueHeader::unfinished` while they hold their claim, before `head`
//! moves; `join` waits until the queue is empty and the counter is 0.
//! Because the increment comes before the element leaves the queue, no
//! moment exists when a taken element is neither in the queue nor counted.
//! Pops that do not count (the Rust and C API's own) leave the counter alone.
//!
//! *Progress.* A push or pop completes in a bounded number of its own steps
//! unless it meets a position claimed by a process that is stalled (not dead)
//! between two of its instructions; it then waits for that process (spinning,
//! then yielding, then sleeping in short naps). A stopped (SIGSTOP) process
//! holding a claim therefore delays others until it resumes; a dead one does
//! not.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, QueueHeader, QueueSlot, QUEUE_HEADER_SIZE};
use crate::payload;
use crate::process::{current_pid, is_alive};
use crate::segment::Segment;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::wait::{
    futex_wait, futex_wait_low, futex_wake, futex_wake_low, Deadline, PeerWait, Wait,
};
use std::marker::PhantomData;
use std::mem::offset_of;
use std::time::Duration;

/// Largest queue capacity.
pub const MAX_QUEUE_CAPACITY: u64 = 1 << 32;

const PHASE_MASK: u64 = 0b11;
const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const WAITED: u64 = 1 << 2;
const SKIP: u64 = 1 << 3;
/// READING only: the position being read is a skip mark (no element).
const READ_SKIP: u64 = 1 << 24;
const PID_SHIFT: u32 = 2;
const PID_MASK: u64 = (1 << 22) - 1;
const TAG_SHIFT: u32 = 25;
pub(crate) const TAG_MASK: u64 = (1 << 39) - 1;

/// `QueueHeader::shutdown` bits: shut down (any set bit counts), and the
/// shutdown discarded the elements.
const SHUT: u64 = 1;
const SHUT_IMMEDIATE: u64 = 1 << 1;

/// A decoded slot state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotState {
    Empty {
        tag: u64,
        waited: bool,
    },
    Writing {
        tag: u64,
        pid: u32,
    },
    Full {
        tag: u64,
        waited: bool,
        skip: bool,
    },
    /// `skip`: the claimed position is a skip mark, so taking the claim
    /// over from a dead popper must put back a skip mark, not an element.
    Reading {
        tag: u64,
        pid: u32,
        skip: bool,
    },
}

impl SlotState {
    pub(crate) fn decode(word: u64) -> SlotState {
        let tag = word >> TAG_SHIFT;
        let pid = ((word >> PID_SHIFT) & PID_MASK) as u32;
        let waited = word & WAITED != 0;
        match word & PHASE_MASK {
            EMPTY => SlotState::Empty { tag, waited },
            WRITING => SlotState::Writing { tag, pid },
            FULL => SlotState::Full {
                tag,
                waited,
                skip: word & SKIP != 0,
            },
            _ => SlotState::Reading {
                tag,
                pid,
                skip: word & READ_SKIP != 0,
            },
        }
    }

    pub(crate) fn encode(self) -> u64 {
        let flag = |b: bool, bit: u64| if b { bit } else { 0 };
        let pid_bits = |pid: u32| (pid as u64 & PID_MASK) << PID_SHIFT;
        match self {
            SlotState::Empty { tag, waited } => (tag << TAG_SHIFT) | EMPTY | flag(waited, WAITED),
            SlotState::Writing { tag, pid } => (tag << TAG_SHIFT) | WRITING | pid_bits(pid),
            SlotState::Full { tag, waited, skip } => {
                (tag << TAG_SHIFT) | FULL | flag(waited, WAITED) | flag(skip, SKIP)
            }
            SlotState::Reading { tag, pid, skip } => {
                (tag << TAG_SHIFT) | READING | pid_bits(pid) | flag(skip, READ_SKIP)
            }
        }
    }
}

pub(crate) fn prev_tag(tag: u64) -> u64 {
    tag.wrapping_sub(1) & TAG_MASK
}

pub(crate) fn next_tag(tag: u64) -> u64 {
    tag.wrapping_add(1) & TAG_MASK
}

/// Why a queue operation stopped without completing.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The state seen does not fit the protocol: the queue is damaged.
    Corrupt(String),
    /// The deadline passed while waiting on a peer.
    TimedOut,
    /// A live process held a claim for longer than the lock timeout.
    Busy(u32),
    /// The queue was shut down: a push claimed its position, saw the flag
    /// and left a skip mark there instead of an element.
    ShutDown,
}

/// A push or pop that could not proceed: the slot and the state word seen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocked {
    idx: u64,
    observed: u64,
}

/// How the first attempt of a push or pop ended.
enum FirstClaim {
    /// Position `pos` (slot `idx`, lap tag `tag`) is ours.
    Claimed { pos: u64, idx: u64, tag: u64 },
    /// Not claimed: the position and slot word seen, if the position was
    /// inside the ring (the full protocol reports it otherwise).
    Seen(Option<(u64, u64)>),
}

/// The queue algorithm over a header and a slot array. The same code runs on
/// a segment's bytes and, under loom, on heap memory.
pub(crate) struct QueueCore<'a> {
    header: &'a QueueHeader,
    slots: *mut u8,
    shape: &'a QueueShape,
}

const SLOT_HEADER: usize = std::mem::size_of::<QueueSlot>();

/// The immutable shape of a queue, copied out of its header once validated
/// so that a peer rewriting the header later cannot send us out of bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueShape {
    capacity: u64,
    /// log2 of `one_lap`: a position's lap is `pos >> shift`.
    shift: u32,
    stride: usize,
    /// How long to wait for a live claimant before giving up (the
    /// segment's lock timeout).
    patience: Duration,
}

impl<'a> QueueCore<'a> {
    /// # Safety
    /// `slots` must point to `shape.capacity` initialised slots,
    /// `shape.stride` bytes apart, each followed by its element's bytes,
    /// valid for `'a`.
    unsafe fn new(header: &'a QueueHeader, slots: *mut u8, shape: &'a QueueShape) -> Self {
        QueueCore {
            header,
            slots,
            shape,
        }
    }

    #[inline]
    fn split(&self, pos: u64) -> (u64, u64) {
        (
            pos >> self.shape.shift,
            pos & ((1u64 << self.shape.shift) - 1),
        )
    }

    #[inline]
    fn next(&self, pos: u64) -> u64 {
        let (lap, idx) = self.split(pos);
        if idx + 1 < self.shape.capacity {
            pos + 1
        } else {
            lap.wrapping_add(1) << self.shape.shift
        }
    }

    /// Whether `pos` is the position of slot `idx` in the lap tagged `tag`.
    fn is_position(&self, pos: u64, tag: u64, idx: u64) -> bool {
        let (lap, i) = self.split(pos);
        i == idx && lap & TAG_MASK == tag
    }

    #[inline]
    fn slot(&self, idx: u64) -> &'a QueueSlot {
        // SAFETY: callers pass idx < capacity (push and pop check the index
        // of every position they load; `wait`/`recover` get it from them);
        // slots are initialised (new).
        unsafe {
            &*self
                .slots
                .add(idx as usize * self.shape.stride)
                .cast::<QueueSlot>()
        }
    }

    #[inline]
    fn payload(&self, idx: u64) -> *mut u8 {
        // SAFETY: as in `slot`; the payload follows the state word.
        unsafe {
            self.slots
                .add(idx as usize * self.shape.stride + SLOT_HEADER)
        }
    }

    /// Push one element written by `write` into the payload.
    ///
    /// The first attempt (an empty slot, claimed at once) is inlined into
    /// the caller; everything else runs out of line in `push_contended`.
    #[inline(always)]
    pub(crate) fn push(
        &self,
        write: &mut impl FnMut(*mut u8),
        deadline: Option<&Deadline>,
    ) -> std::result::Result<Option<Blocked>, Stop> {
        let first = self.first_claim(
            &self.header.tail,
            |tag| SlotState::Empty { tag, waited: false },
            |tag, pid| SlotState::Writing { tag, pid },
        );
        match first {
            FirstClaim::Claimed { pos, idx, tag } => {
                self.complete_push(pos, idx, tag, write, false)?;
                Ok(None)
            }
            FirstClaim::Seen(seen) => self.push_contended(write, deadline, seen),
        }
    }

    /// The whole push protocol: every state a slot can be found in.
    /// `seen` is the tail position and slot word the fast path saw, if it
    /// got that far. From here on the word is loaded before any CAS, so a
    /// process polling a full queue reads the line instead of taking it
    /// away from the popper.
    #[inline(never)]
    fn push_contended(
        &self,
        write: &mut impl FnMut(*mut u8),
        deadline: Option<&Deadline>,
        mut seen: Option<(u64, u64)>,
    ) -> std::result::Result<Option<Blocked>, Stop> {
        let me = current_pid();
        let mut patience = PeerWait::new();
        loop {
            let (t, idx, tag, word) = self.locate(&self.header.tail, seen.take(), "tail")?;
            let slot = self.slot(idx);
            let claim = SlotState::Writing { tag, pid: me }.encode();
            match SlotState::decode(word) {
                SlotState::Empty { tag: st, waited } if st == tag => {
                    // SeqCst: see "Shutdown" in the module documentation.
                    if slot
                        .state
                        .compare_exchange(word, claim, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.complete_push(t, idx, tag, write, waited)?;
                        return Ok(None);
                    }
                }
                // The previous lap's element is still there: the queue is full.
                SlotState::Full { tag: st, .. } if st == prev_tag(tag) => {
                    if self.header.tail.load(Ordering::Acquire) == t {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                // The previous lap's element is being written or read: wait
                // for that process (and recover the slot if it died), so a
                // dead popper cannot make the queue look full for ever.
                SlotState::Writing { tag: st, .. } | SlotState::Reading { tag: st, .. }
                    if st == prev_tag(tag) =>
                {
                    if self.header.tail.load(Ordering::Acquire) == t
                        && !self.wait_on_claim(idx, word, &mut patience, deadline)?
                    {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                // Another pusher claimed position t and is about to move tail.
                SlotState::Writing { tag: st, .. } if st == tag => {
                    if self.header.tail.load(Ordering::Acquire) == t
                        && !self.wait_on_claim(idx, word, &mut patience, deadline)?
                    {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                _ => {
                    if self.header.tail.load(Ordering::Acquire) == t {
                        return Err(Stop::Corrupt(format!(
                            "slot {idx} has state {word:#x}, which does not fit tail position {t}"
                        )));
                    }
                }
            }
        }
    }

    /// Pop one element, handing its payload to `read`. As with `push`, the
    /// first attempt (a full slot, claimed at once) is inlined.
    ///
    /// `taken` runs once per element delivered, after the claim and before
    /// `head` moves (so the element is never out of the queue and not yet
    /// counted): counting pops use it (see [`RawQueue::task_done`]).
    #[inline(always)]
    pub(crate) fn pop(
        &self,
        read: &mut impl FnMut(*const u8),
        taken: &mut impl FnMut(),
        deadline: Option<&Deadline>,
    ) -> std::result::Result<Option<Blocked>, Stop> {
        let first = self.first_claim(
            &self.header.head,
            |tag| SlotState::Full {
                tag,
                waited: false,
                skip: false,
            },
            |tag, pid| SlotState::Reading {
                tag,
                pid,
                skip: false,
            },
        );
        match first {
            FirstClaim::Claimed { pos, idx, tag } => {
                self.complete_pop(pos, idx, tag, read, taken, false, false);
                Ok(None)
            }
            FirstClaim::Seen(seen) => self.pop_contended(read, taken, deadline, seen),
        }
    }

    /// The whole pop protocol: every state a slot can be found in. As in
    /// `push_contended`, `seen` is what the fast path saw, and the word is
    /// loaded before any CAS from here on.
    #[inline(never)]
    fn pop_contended(
        &self,
        read: &mut impl FnMut(*const u8),
        taken: &mut impl FnMut(),
        deadline: Option<&Deadline>,
        mut seen: Option<(u64, u64)>,
    ) -> std::result::Result<Option<Blocked>, Stop> {
        let me = current_pid();
        let mut patience = PeerWait::new();
        loop {
            let (h, idx, tag, word) = self.locate(&self.header.head, seen.take(), "head")?;
            let slot = self.slot(idx);
            match SlotState::decode(word) {
                // Full (perhaps with a pusher asleep on it, or a skip mark):
                // claim it as it is. A skipped position is freed and passed
                // over; the claim says so, in case we die holding it.
                SlotState::Full {
                    tag: st,
                    waited,
                    skip,
                } if st == tag => {
                    let claim = SlotState::Reading { tag, pid: me, skip }.encode();
                    if slot
                        .state
                        .compare_exchange(word, claim, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.complete_pop(h, idx, tag, read, taken, waited, skip);
                        if !skip {
                            return Ok(None);
                        }
                    }
                }
                // Nothing pushed at h yet (or the previous lap's popper has
                // not freed the slot): empty.
                SlotState::Empty { tag: st, .. } if st == tag => {
                    return Ok(Some(Blocked {
                        idx,
                        observed: word,
                    }));
                }
                SlotState::Reading { tag: st, .. } | SlotState::Writing { tag: st, .. }
                    if st == prev_tag(tag) =>
                {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                // A pusher is writing position h: wait for it (like crossbeam),
                // so that FIFO order holds for elements already published after it.
                SlotState::Writing { tag: st, .. } if st == tag => {
                    if !self.wait_on_claim(idx, word, &mut patience, deadline)? {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                // Another popper claimed h and is about to move head.
                SlotState::Reading { tag: st, .. } if st == tag => {
                    if self.header.head.load(Ordering::Acquire) == h
                        && !self.wait_on_claim(idx, word, &mut patience, deadline)?
                    {
                        return Ok(Some(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                _ => {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Err(Stop::Corrupt(format!(
                            "slot {idx} has state {word:#x}, which does not fit head position {h}"
                        )));
                    }
                }
            }
        }
    }

    /// The first attempt of a push or pop on `end` (`tail` or `head`): a
    /// CAS of the slot at that position from `from(tag)` to `to(tag, pid)`,
    /// without loading the slot word first. On failure, hands back the
    /// position and the word it found, for the full protocol to go on from.
    #[inline(always)]
    fn first_claim(
        &self,
        end: &AtomicU64,
        from: impl Fn(u64) -> SlotState,
        to: impl Fn(u64, u32) -> SlotState,
    ) -> FirstClaim {
        let pos = end.load(Ordering::Acquire);
        let (lap, idx) = self.split(pos);
        if idx >= self.shape.capacity {
            return FirstClaim::Seen(None);
        }
        let tag = lap & TAG_MASK;
        let (from, to) = (from(tag).encode(), to(tag, current_pid()).encode());
        // SeqCst (the same instruction as AcqRel on x86 and ARMv8): a push's
        // claim must precede its load of the shutdown flag in the single
        // order of SeqCst operations (module documentation, "Shutdown").
        match self
            .slot(idx)
            .state
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::Acquire)
        {
            Ok(_) => FirstClaim::Claimed { pos, idx, tag },
            Err(word) => FirstClaim::Seen(Some((pos, word))),
        }
    }

    /// Where a retry of the full protocol stands: the position in `end`
    /// (named `what` in a corruption report), its slot index and lap tag,
    /// and the slot word, `seen` by the first attempt or loaded now.
    #[inline]
    fn locate(
        &self,
        end: &AtomicU64,
        seen: Option<(u64, u64)>,
        what: &str,
    ) -> std::result::Result<(u64, u64, u64, u64), Stop> {
        let pos = seen.map_or_else(|| end.load(Ordering::Acquire), |(pos, _)| pos);
        let (lap, idx) = self.split(pos);
        if idx >= self.shape.capacity {
            return Err(Stop::Corrupt(format!(
                "{what} position {pos} is outside the ring"
            )));
        }
        let word = seen.map_or_else(|| self.slot(idx).state.load(Ordering::Acquire), |(_, w)| w);
        Ok((pos, idx, lap & TAG_MASK, word))
    }

    /// The rest of a push once position `t` (slot `idx`, lap tag `tag`) is
    /// claimed: move `tail`, write the element, publish it, wake sleepers.
    /// If the queue was shut down before the claim took effect, publish a
    /// skip mark instead and report [`Stop::ShutDown`].
    #[inline(always)]
    fn complete_push(
        &self,
        t: u64,
        idx: u64,
        tag: u64,
        write: &mut impl FnMut(*mut u8),
        waited: bool,
    ) -> std::result::Result<(), Stop> {
        crate::fault::pause_point("queue.push.slot_claimed");
        self.header.tail.store(self.next(t), Ordering::Release);
        crate::fault::pause_point("queue.push.tail_moved");
        // After the (SeqCst) claim: a popper that saw the queue empty and
        // then the flag set finds this claim when it looks again.
        let shut = self.shut_down();
        crate::fault::pause_point("queue.push.shutdown_read");
        if !shut {
            write(self.payload(idx));
        }
        let full = SlotState::Full {
            tag,
            waited: false,
            skip: shut,
        };
        let slot = self.slot(idx);
        slot.state.store(full.encode(), Ordering::Release);
        if waited {
            futex_wake_low(&slot.state);
        }
        if shut {
            return Err(Stop::ShutDown);
        }
        Ok(())
    }

    /// Whether the queue was shut down (any bit of the flag word).
    #[inline(always)]
    pub(crate) fn shut_down(&self) -> bool {
        self.header.shutdown.load(Ordering::SeqCst) != 0
    }

    /// The rest of a pop once position `h` is claimed: move `head`, read
    /// the element (unless the position is a skip mark), free the slot for
    /// the next lap, wake sleepers.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn complete_pop(
        &self,
        h: u64,
        idx: u64,
        tag: u64,
        read: &mut impl FnMut(*const u8),
        taken: &mut impl FnMut(),
        waited: bool,
        skip: bool,
    ) {
        crate::fault::pause_point("queue.pop.slot_claimed");
        if !skip {
            taken();
        }
        self.header.head.store(self.next(h), Ordering::Release);
        crate::fault::pause_point("queue.pop.head_moved");
        if !skip {
            read(self.payload(idx));
        }
        let empty = SlotState::Empty {
            tag: next_tag(tag),
            waited: false,
        };
        let slot = self.slot(idx);
        slot.state.store(empty.encode(), Ordering::Release);
        if waited {
            futex_wake_low(&slot.state);
        }
    }

    /// Wait a little for the claimant of slot `idx` (state `word`); take the
    /// claim over if the claimant is dead. Without a deadline (a `try_`
    /// call, which must not sleep) this gives up with `Ok(false)` after a
    /// brief spin and one liveness check, so the caller reports full or
    /// empty rather than waiting for a stalled process.
    fn wait_on_claim(
        &self,
        idx: u64,
        word: u64,
        patience: &mut PeerWait,
        deadline: Option<&Deadline>,
    ) -> std::result::Result<bool, Stop> {
        if let Some(d) = deadline {
            if d.expired() {
                return Err(Stop::TimedOut);
            }
        }
        if patience.snooze() {
            self.recover(idx, word);
            if deadline.is_none() {
                return Ok(self.slot(idx).state.load(Ordering::Acquire) != word);
            }
            if patience.waited() > self.shape.patience {
                if let SlotState::Writing { pid, .. } | SlotState::Reading { pid, .. } =
                    SlotState::decode(word)
                {
                    if self.slot(idx).state.load(Ordering::Acquire) == word && is_alive(pid) {
                        return Err(Stop::Busy(pid));
                    }
                }
            }
        }
        Ok(true)
    }

    /// If slot `idx` still holds `word`, a claim by a dead process, take it
    /// over and finish or undo the dead process's step.
    fn recover(&self, idx: u64, word: u64) {
        let slot = self.slot(idx);
        let me = current_pid();
        match SlotState::decode(word) {
            SlotState::Writing { tag, pid } if !is_alive(pid) => {
                let ours = SlotState::Writing { tag, pid: me }.encode();
                if slot
                    .state
                    .compare_exchange(word, ours, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    return;
                }
                // If it died before moving tail, move it for it: by CAS, as
                // a load may return an older value than the dead pusher's
                // store, and a plain store would then move tail back.
                let t = self.header.tail.load(Ordering::Acquire);
                if self.is_position(t, tag, idx) {
                    let _ = self.header.tail.compare_exchange(
                        t,
                        self.next(t),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                let skip = SlotState::Full {
                    tag,
                    waited: false,
                    skip: true,
                };
                slot.state.store(skip.encode(), Ordering::Release);
                futex_wake_low(&slot.state);
            }
            SlotState::Reading { tag, pid, skip } if !is_alive(pid) => {
                let ours = SlotState::Reading { tag, pid: me, skip }.encode();
                if slot
                    .state
                    .compare_exchange(word, ours, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    return;
                }
                // Confirm with a CAS (which reads the latest value) that
                // head is still at the claim's position before giving the
                // element back; a load may return an older value.
                let h = self.header.head.load(Ordering::Acquire);
                let next = if self.is_position(h, tag, idx)
                    && self
                        .header
                        .head
                        .compare_exchange(h, h, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    // It died before taking the element: give it back (or,
                    // for a skip mark, put the mark back).
                    SlotState::Full {
                        tag,
                        waited: false,
                        skip,
                    }
                } else {
                    SlotState::Empty {
                        tag: next_tag(tag),
                        waited: false,
                    }
                };
                slot.state.store(next.encode(), Ordering::Release);
                futex_wake_low(&slot.state);
            }
            _ => {}
        }
    }

    /// Sleep until slot `b.idx` changes from `b.observed` (or a nap passes).
    /// Empty and full states get the "waited" flag so the next claimant
    /// wakes us; claimed states are waited on in naps (recovering a dead
    /// claimant).
    ///
    /// `stop` is called exactly once, after the flag is set and before the
    /// sleep: when it returns `true` (an interrupt, a shutdown) we do not
    /// sleep. A process that sets such a condition and then calls
    /// [`QueueCore::wake_all`] therefore never leaves us asleep: either
    /// `stop` sees the condition, or `wake_all` sees our flag and clears it
    /// (and the futex wait returns at once) or wakes us.
    pub(crate) fn wait(
        &self,
        b: Blocked,
        deadline: &Deadline,
        patience: &mut PeerWait,
        stop: &mut dyn FnMut() -> bool,
    ) {
        let slot = self.slot(b.idx);
        let flagged = match SlotState::decode(b.observed) {
            SlotState::Empty { tag, .. } => SlotState::Empty { tag, waited: true }.encode(),
            SlotState::Full { tag, skip, .. } => SlotState::Full {
                tag,
                waited: true,
                skip,
            }
            .encode(),
            SlotState::Writing { .. } | SlotState::Reading { .. } => {
                if patience.snooze() {
                    self.recover(b.idx, b.observed);
                }
                stop();
                return;
            }
        };
        if flagged != b.observed
            && slot
                .state
                .compare_exchange(b.observed, flagged, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
        {
            stop();
            return;
        }
        // Our flag before the reads `stop` makes; pairs with the fence in
        // `wake_all` (whoever sets a stop condition stores it first).
        fence(Ordering::SeqCst);
        if stop() {
            return;
        }
        if let Some(nap) = deadline.next_sleep() {
            futex_wait_low(&slot.state, flagged as u32, Some(nap));
        }
    }

    /// Wake every process sleeping on this queue (on the head and tail
    /// slots, or in `join`) so that each re-checks its condition: the
    /// shutdown flag, or an interrupt condition its own process set before
    /// calling this. A sleeper with nothing new to see goes back to sleep.
    ///
    /// A "waited" flag found on the head or tail slot is cleared by CAS
    /// before the wake, so that a sleeper between setting it and its futex
    /// wait returns at once instead of sleeping through the wake.
    pub(crate) fn wake_all(&self) {
        fence(Ordering::SeqCst);
        for end in [&self.header.head, &self.header.tail] {
            let (_, idx) = self.split(end.load(Ordering::Acquire));
            if idx >= self.shape.capacity {
                continue; // a damaged position: the next operation reports it
            }
            let slot = self.slot(idx);
            let word = slot.state.load(Ordering::Acquire);
            let cleared = match SlotState::decode(word) {
                SlotState::Empty { tag, waited: true } => SlotState::Empty { tag, waited: false },
                SlotState::Full {
                    tag,
                    waited: true,
                    skip,
                } => SlotState::Full {
                    tag,
                    waited: false,
                    skip,
                },
                _ => continue,
            };
            // A failed CAS means the word changed: a sleeper's futex wait on
            // the old value returns at once, and one already asleep is woken
            // below.
            let _ = slot.state.compare_exchange(
                word,
                cleared.encode(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            futex_wake_low(&slot.state);
        }
        self.wake_joiners();
    }

    /// Wake every process sleeping in `join`.
    pub(crate) fn wake_joiners(&self) {
        self.header.join_event.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.header.join_event, i32::MAX as u32);
    }

    /// Whether a push (`push`) or a pop would find its position ready now:
    /// `Ok(None)` if so, else what it would wait on. A ready answer may be
    /// stale by the time the caller acts; a blocked one is rechecked by
    /// [`QueueCore::wait`], which sleeps only while the slot word is the
    /// one seen here.
    pub(crate) fn blocked(&self, push: bool) -> std::result::Result<Option<Blocked>, Stop> {
        let (end, what) = if push {
            (&self.header.tail, "tail")
        } else {
            (&self.header.head, "head")
        };
        loop {
            let (pos, idx, tag, word) = self.locate(end, None, what)?;
            let state = SlotState::decode(word);
            let ready = match state {
                SlotState::Empty { tag: st, .. } if push => st == tag,
                SlotState::Full { tag: st, .. } if !push => st == tag,
                _ => false,
            };
            if ready {
                return Ok(None);
            }
            // The states a push (pop) waits in, as in `push_contended`
            // (`pop_contended`): the previous lap still in the slot, or a
            // claim of this position that has not moved the end yet.
            let waits = match state {
                SlotState::Full { tag: st, .. } => push && st == prev_tag(tag),
                SlotState::Empty { tag: st, .. } => !push && st == tag,
                SlotState::Writing { tag: st, .. } => st == prev_tag(tag) || st == tag,
                SlotState::Reading { tag: st, .. } => st == prev_tag(tag) || (!push && st == tag),
            };
            if end.load(Ordering::Acquire) != pos {
                continue;
            }
            if !waits {
                return Err(Stop::Corrupt(format!(
                    "slot {idx} has state {word:#x}, which does not fit {what} position {pos}"
                )));
            }
            return Ok(Some(Blocked {
                idx,
                observed: word,
            }));
        }
    }

    /// Elements in the queue (exact when nothing runs concurrently).
    pub(crate) fn len(&self) -> u64 {
        loop {
            let t = self.header.tail.load(Ordering::SeqCst);
            let h = self.header.head.load(Ordering::SeqCst);
            if self.header.tail.load(Ordering::SeqCst) != t {
                continue;
            }
            let (tl, ti) = self.split(t);
            let (hl, hi) = self.split(h);
            let laps = tl.wrapping_sub(hl);
            let n = laps
                .wrapping_mul(self.shape.capacity)
                .wrapping_add(ti)
                .wrapping_sub(hi);
            return if n > self.shape.capacity { 0 } else { n };
        }
    }
}

/// Bytes between slots for elements of `elem_size` bytes.
pub(crate) fn slot_stride(elem_size: u64) -> u64 {
    (SLOT_HEADER as u64 + elem_size + 7) & !7
}

/// Write a fresh queue into `block` (zeroed, `block_size` bytes).
///
/// # Safety
/// `block` must be valid for writes of `QUEUE_HEADER_SIZE + capacity *
/// slot_stride(elem_size)` bytes, 8-aligned, and not visible to anyone else.
unsafe fn init(block: *mut u8, capacity: u64, elem_size: u64) {
    let header = QueueHeader {
        kind: kind::QUEUE,
        elem_size: elem_size as u32,
        capacity,
        one_lap: capacity.next_power_of_two(),
        slot_stride: slot_stride(elem_size),
        slots_offset: QUEUE_HEADER_SIZE,
        shutdown: crate::sync::AtomicU64::new(0),
        reserved0: [0; 2],
        tail: crate::sync::AtomicU64::new(0),
        reserved1: [0; 7],
        head: crate::sync::AtomicU64::new(0),
        unfinished: crate::sync::AtomicU64::new(0),
        join_event: crate::sync::AtomicU32::new(0),
        join_waiters: crate::sync::AtomicU32::new(0),
        reserved2: [0; 5],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<QueueHeader>().write(header) };
    let stride = slot_stride(elem_size) as usize;
    for i in 0..capacity as usize {
        let slot = QueueSlot {
            state: crate::sync::AtomicU64::new(
                SlotState::Empty {
                    tag: 0,
                    waited: false,
                }
                .encode(),
            ),
        };
        // SAFETY: slot i lies inside the block (see the size above).
        unsafe {
            block
                .add(QUEUE_HEADER_SIZE as usize + i * stride)
                .cast::<QueueSlot>()
                .write(slot)
        };
    }
}

/// Check a queue block against its table entry; returns the header and
/// the shape to use from now on. The shape comes from the entry snapshot,
/// not from the header, which a peer could rewrite after we looked.
fn validate(handle: &Handle) -> Result<(&QueueHeader, QueueShape)> {
    let info = &handle.info;
    if info.size < QUEUE_HEADER_SIZE {
        return Err(handle.corrupt("queue block is smaller than its header"));
    }
    // SAFETY: check_block proved the block lies in the mapping, 64-aligned,
    // and it holds at least QUEUE_HEADER_SIZE bytes (just checked). Only
    // the atomics (`tail`, `head`) are used through this reference; the
    // fixed fields are read once, as a copy (`first_line`).
    let header = unsafe { &*handle.block.cast::<QueueHeader>() };
    let line = handle.first_line();
    let field32 = |offset| line.u32_at(offset);
    let field = |offset| line.u64_at(offset);
    let capacity = info.capacity;
    let stride = slot_stride(info.elem_size as u64);
    let needed = block_size(QUEUE_HEADER_SIZE, capacity, stride);
    if field32(offset_of!(QueueHeader, kind)) != kind::QUEUE
        || field32(offset_of!(QueueHeader, elem_size)) != info.elem_size
        || field(offset_of!(QueueHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_QUEUE_CAPACITY
        || field(offset_of!(QueueHeader, one_lap)) != capacity.next_power_of_two()
        || field(offset_of!(QueueHeader, slot_stride)) != stride
        || field(offset_of!(QueueHeader, slots_offset)) != QUEUE_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("queue header disagrees with its table entry or overruns its block")
        );
    }
    let shape = QueueShape {
        capacity,
        shift: capacity.next_power_of_two().trailing_zeros(),
        stride: stride as usize,
        patience: handle.seg.map.lock_timeout(),
    };
    Ok((header, shape))
}

/// Per-kind validation for `Segment::check`; returns the fill level.
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    let (header, shape) = validate(handle)?;
    // SAFETY: validate proved the slots fit in the block.
    let core =
        unsafe { QueueCore::new(header, handle.block.add(QUEUE_HEADER_SIZE as usize), &shape) };
    Ok(Some(core.len()))
}

/// A queue whose element type is known at run time only, by its type
/// descriptor: elements go in and out as byte slices of
/// [`elem_size`](RawQueue::elem_size) bytes each. This is what the Python and
/// C bindings use; [`Queue<T>`] is the same queue with a Rust type, and both
/// can be open on one queue at once.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawqueue-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_queue_raw("ticks", "<Q", 8)?;
/// raw.try_push(&7u64.to_ne_bytes())?;
/// // The same queue, typed:
/// let ticks = seg.open_queue::<u64>("ticks")?;
/// assert_eq!(ticks.try_pop()?, 7);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
pub struct RawQueue {
    handle: Handle,
    header: *const QueueHeader,
    slots: *mut u8,
    shape: QueueShape,
    elem_size: usize,
}

// SAFETY: the queue's shared state is only touched through atomics and the
// claim protocol; payload bytes carry no Rust invariants.
unsafe impl Send for RawQueue {}
// SAFETY: as above; all methods take &self and are safe to call concurrently.
unsafe impl Sync for RawQueue {}

impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.handle.name())
            .field("type", &self.handle.info.elem_type)
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Segment {
    /// Create a queue of `capacity` elements (exactly; not rounded).
    pub fn create_queue<T: Element>(&self, name: &str, capacity: u64) -> Result<Queue<T>> {
        RawQueue::create(self, Typed::of::<T>(kind::QUEUE), name, capacity, false).map(Queue::new)
    }

    /// Open the queue `name`; fails with [`Error::TypeMismatch`] if it holds another type.
    pub fn open_queue<T: Element>(&self, name: &str) -> Result<Queue<T>> {
        RawQueue::from_handle(Typed::of::<T>(kind::QUEUE).open(self, name)?).map(Queue::new)
    }

    /// Open the queue `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_queue<T: Element>(&self, name: &str, capacity: u64) -> Result<Queue<T>> {
        RawQueue::create(self, Typed::of::<T>(kind::QUEUE), name, capacity, true).map(Queue::new)
    }

    /// Create a queue of `capacity` elements of the type `descriptor`
    /// describes (see [`TypeDescriptor`](crate::TypeDescriptor)).
    pub fn create_queue_raw(
        &self,
        name: &str,
        descriptor: &str,
        capacity: u64,
    ) -> Result<RawQueue> {
        RawQueue::create(
            self,
            Typed::described(kind::QUEUE, descriptor)?,
            name,
            capacity,
            false,
        )
    }

    /// Open the queue `name`, creating it with `capacity` elements of type
    /// `descriptor` if it does not exist. An existing queue must hold that type.
    pub fn open_or_create_queue_raw(
        &self,
        name: &str,
        descriptor: &str,
        capacity: u64,
    ) -> Result<RawQueue> {
        RawQueue::create(
            self,
            Typed::described(kind::QUEUE, descriptor)?,
            name,
            capacity,
            true,
        )
    }

    /// Open the queue `name` whatever its element type.
    pub fn open_queue_raw(&self, name: &str) -> Result<RawQueue> {
        RawQueue::from_handle(Typed::stored(self, kind::QUEUE, name)?.open(self, name)?)
    }
}

impl RawQueue {
    fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawQueue> {
        if capacity == 0 || capacity > MAX_QUEUE_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "queue capacity must be 1..={MAX_QUEUE_CAPACITY}, not {capacity}"
            )));
        }
        let elem_size = typed.elem_size() as u64;
        let size = block_size(QUEUE_HEADER_SIZE, capacity, slot_stride(elem_size))?;
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe { init(block, capacity, elem_size) };
            Ok(())
        })?;
        RawQueue::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<RawQueue> {
        let (header, shape) = validate(&handle)?;
        let header: *const QueueHeader = header;
        // SAFETY: validate proved the slot array lies inside the block.
        let slots = unsafe { handle.block.add(QUEUE_HEADER_SIZE as usize) };
        Ok(RawQueue {
            elem_size: handle.info.elem_size as usize,
            handle,
            header,
            slots,
            shape,
        })
    }

    #[inline]
    fn core(&self) -> QueueCore<'_> {
        // SAFETY: header and slots were validated at open and live as long as
        // the mapping, which self.handle keeps alive.
        unsafe { QueueCore::new(&*self.header, self.slots, &self.shape) }
    }

    fn stop(&self, stop: Stop) -> Error {
        match stop {
            Stop::Corrupt(detail) => self.handle.corrupt(detail),
            Stop::TimedOut => self.handle.timeout(),
            Stop::Busy(pid) => Error::Busy {
                name: self.handle.name().to_owned(),
                pid,
                seconds: self.shape.patience.as_secs(),
            },
            Stop::ShutDown => self.handle.shut_down(),
        }
    }

    /// What a push stopped by a shutdown returns: the error if it pushed
    /// nothing, else how many it pushed (the next call gets the error).
    fn refused(&self, done: usize) -> Result<usize> {
        match done {
            0 => Err(self.handle.shut_down()),
            n => Ok(n),
        }
    }

    /// Push up to `n` elements, the `i`-th written into its payload by
    /// `write(i, payload)`. Without `wait` it stops at the first full slot;
    /// with it, it waits for room until the deadline passes. Returns how
    /// many were pushed (a prefix); [`Error::ShutDown`] if the queue was
    /// shut down before the first.
    #[inline(always)]
    pub(crate) fn push_n(
        &self,
        n: usize,
        write: &mut impl FnMut(usize, *mut u8),
        mut wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.handle.check()?;
        let core = self.core();
        // Refuse early (one read of a line no hot path writes) rather than
        // claim a position only to leave a skip mark in it.
        if core.shut_down() {
            return Err(self.handle.shut_down());
        }
        let mut patience = PeerWait::new();
        let mut done = 0;
        let mut spins = 0;
        while done < n {
            let deadline = wait.as_ref().map(|w| &w.deadline);
            match core.push(&mut |p| write(done, p), deadline) {
                Ok(None) => {
                    done += 1;
                    spins = 0;
                }
                Ok(Some(blocked)) => {
                    if core.shut_down() {
                        return self.refused(done);
                    }
                    let Some(w) = wait.as_deref_mut() else { break };
                    if !self.nap(&core, blocked, w, &mut spins, &mut patience)? {
                        break;
                    }
                }
                Err(Stop::TimedOut) => break,
                Err(Stop::ShutDown) => return self.refused(done),
                Err(stop) => return Err(self.stop(stop)),
            }
        }
        Ok(done)
    }

    /// Pop up to `n` elements, handing the `i`-th payload to `read(i, payload)`.
    /// With `wait` it waits (until the deadline) for the first element only;
    /// it then takes what is there. Returns how many were popped;
    /// [`Error::ShutDown`] if there was none and the queue was shut down.
    #[inline(always)]
    pub(crate) fn pop_n(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.pop_n_with(n, read, &mut || {}, wait)
    }

    /// [`RawQueue::pop_n`], calling `taken` for each element as it leaves
    /// the queue (see `QueueCore::pop`).
    #[inline(always)]
    fn pop_n_with(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        taken: &mut impl FnMut(),
        mut wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.handle.check()?;
        let core = self.core();
        let mut patience = PeerWait::new();
        let mut done = 0;
        let mut spins = 0;
        while done < n {
            let deadline = wait.as_ref().map(|w| &w.deadline);
            match core.pop(&mut |p| read(done, p), taken, deadline) {
                Ok(None) => done += 1,
                Ok(Some(blocked)) => {
                    if done > 0 {
                        break;
                    }
                    if core.shut_down() {
                        return self.last_look(&core, &mut |p| read(0, p), taken);
                    }
                    let Some(w) = wait.as_deref_mut() else { break };
                    if !self.nap(&core, blocked, w, &mut spins, &mut patience)? {
                        break;
                    }
                }
                Err(Stop::TimedOut) => break,
                Err(stop) => return Err(self.stop(stop)),
            }
        }
        Ok(done)
    }

    /// A pop found the queue empty and shut down: look once more, waiting
    /// for live pushers that claimed a position before the shutdown (their
    /// elements are delivered, not stranded); one element or
    /// [`Error::ShutDown`].
    #[cold]
    #[inline(never)]
    fn last_look(
        &self,
        core: &QueueCore<'_>,
        read: &mut dyn FnMut(*const u8),
        taken: &mut dyn FnMut(),
    ) -> Result<usize> {
        // Pairs with the SeqCst claim and flag load of every push (module
        // documentation, "Shutdown").
        fence(Ordering::SeqCst);
        let forever = Deadline::after(None);
        match core.pop(&mut |p| read(p), &mut || taken(), Some(&forever)) {
            Ok(None) => Ok(1),
            Ok(Some(_)) => Err(self.handle.shut_down()),
            Err(stop) => Err(self.stop(stop)),
        }
    }

    /// One step of waiting on a blocked slot: spin a while, then sleep.
    /// `Ok(false)` when the deadline has passed. A shutdown cuts the sleep
    /// short (the caller sees the flag); an interrupt ends the call.
    #[inline]
    fn nap(
        &self,
        core: &QueueCore<'_>,
        blocked: Blocked,
        wait: &mut Wait<'_>,
        spins: &mut u32,
        patience: &mut PeerWait,
    ) -> Result<bool> {
        if wait.deadline.expired() {
            return Ok(false);
        }
        if *spins < SPINS_BEFORE_SLEEP {
            *spins += 1;
            crate::sync::spin_hint();
            return Ok(true);
        }
        let deadline = wait.deadline;
        let mut interrupted = false;
        core.wait(blocked, &deadline, patience, &mut || {
            if core.shut_down() {
                return true;
            }
            interrupted = wait.interrupted();
            interrupted
        });
        self.handle.check()?;
        if interrupted {
            return Err(Error::Interrupted {
                name: self.handle.name().to_owned(),
            });
        }
        Ok(true)
    }

    /// Wait until a push (`push`) or a pop would find its position ready,
    /// or the queue is shut down; `Ok(false)` if `timeout` passed first.
    fn wait_ready(
        &self,
        push: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let core = self.core();
        let mut wait = Wait::new(timeout, interrupt);
        let mut patience = PeerWait::new();
        let mut spins = 0;
        loop {
            if core.shut_down() {
                return Ok(true);
            }
            match core.blocked(push).map_err(|stop| self.stop(stop))? {
                None => return Ok(true),
                Some(blocked) => {
                    if !self.nap(&core, blocked, &mut wait, &mut spins, &mut patience)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Wait until the queue seems to hold an element, without taking it:
    /// `Ok(true)` when a pop would find one (or the queue was shut down, so
    /// a pop returns at once), `Ok(false)` if `timeout` passed first. Another
    /// consumer may take the element before you do; pop without waiting and
    /// wait again if it is gone. `interrupt` as for
    /// [`push_slice`](RawQueue::push_slice); together with
    /// [`wake_waiters`](RawQueue::wake_waiters) it lets a binding cancel the
    /// wait from another thread. This is how the Python binding's asyncio
    /// methods wait without ever losing an element to a cancelled call.
    pub fn wait_not_empty(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(false, timeout, interrupt)
    }

    /// Wait until the queue seems to have room (or was shut down); like
    /// [`wait_not_empty`](RawQueue::wait_not_empty) for pushes.
    pub fn wait_not_full(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(true, timeout, interrupt)
    }

    /// Wake every thread of every process blocked on this queue (in a push,
    /// a pop, a `wait_*` or `join`), so that each checks its interrupt
    /// callback and the shutdown flag again. Those with nothing new to see
    /// go back to sleep. To cancel a wait from another thread: make its
    /// interrupt callback return `true` (an atomic flag), then call this.
    pub fn wake_waiters(&self) {
        self.core().wake_all();
    }

    /// Shut the queue down, for every process: from now on pushes fail
    /// with [`Error::ShutDown`], and pops take the elements still there,
    /// then fail with it instead of waiting. Every blocked call wakes up.
    /// With `immediate`, the elements still there are discarded too (a push
    /// that raced with the shutdown either failed or is discarded).
    /// Returns how many were discarded. Shutting down twice is harmless
    /// (the second may be `immediate`); there is no way back short of
    /// erasing the queue and creating it again.
    pub fn shutdown(&self, immediate: bool) -> Result<u64> {
        self.handle.check()?;
        let bits = if immediate {
            SHUT | SHUT_IMMEDIATE
        } else {
            SHUT
        };
        self.header().shutdown.fetch_or(bits, Ordering::SeqCst);
        let core = self.core();
        core.wake_all();
        if !immediate {
            return Ok(0);
        }
        let mut discarded = 0u64;
        loop {
            match self.pop_n(usize::MAX, &mut |_, _| {}, None) {
                Ok(n) => discarded += n as u64,
                Err(Error::ShutDown { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        // Empty now: a join waiting for the queue to drain can return.
        core.wake_joiners();
        Ok(discarded)
    }

    /// Whether the queue was shut down (by any process).
    pub fn is_shutdown(&self) -> bool {
        self.core().shut_down()
    }

    /// [`try_pop_into`](RawQueue::try_pop_into) that counts every element
    /// it takes as an unfinished task, to be marked done with
    /// [`task_done`](RawQueue::task_done) (see [`join`](RawQueue::join)).
    pub fn try_pop_tasks_into(&self, out: &mut [u8]) -> Result<usize> {
        let n = payload::count(out.len(), self.elem_size, self.name())?;
        let size = self.elem_size;
        let mut count = self.count_task();
        self.pop_n_with(n, &mut payload::copy_out(out, size), &mut count, None)
    }

    /// [`pop_into`](RawQueue::pop_into) that counts every element it takes
    /// as an unfinished task (see [`join`](RawQueue::join)).
    pub fn pop_tasks_into(
        &self,
        out: &mut [u8],
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<usize> {
        let n = payload::count(out.len(), self.elem_size, self.name())?;
        if n == 0 {
            return Ok(0);
        }
        let mut wait = Wait::new(timeout, interrupt);
        let size = self.elem_size;
        let mut count = self.count_task();
        match self.pop_n_with(
            n,
            &mut payload::copy_out(out, size),
            &mut count,
            Some(&mut wait),
        )? {
            0 => Err(self.handle.timeout()),
            got => Ok(got),
        }
    }

    /// The `taken` callback of counting pops: one more unfinished task.
    fn count_task(&self) -> impl FnMut() + '_ {
        let unfinished = &self.header().unfinished;
        // Before `head` moves (release): whoever sees the element gone
        // from the queue also sees it counted.
        move || {
            unfinished.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Mark one task taken by a counting pop as done (by any process).
    /// [`Error::InvalidArgument`] if no task is unfinished: it was called
    /// more times than counting pops took elements.
    pub fn task_done(&self) -> Result<()> {
        self.handle.check()?;
        let header = self.header();
        let mut current = header.unfinished.load(Ordering::Acquire);
        loop {
            if current == 0 {
                return Err(Error::InvalidArgument(format!(
                    "task_done() on {:?} was called more times than elements were taken \
                     from it (call it once for each element a get returned)",
                    self.name()
                )));
            }
            match header.unfinished.compare_exchange_weak(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        // SeqCst: the decrement before this load, the joiner's registration
        // before its check (one of the two sees the other).
        if current == 1 && header.join_waiters.load(Ordering::SeqCst) > 0 {
            self.core().wake_joiners();
        }
        Ok(())
    }

    /// Tasks taken by counting pops and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.header().unfinished.load(Ordering::Acquire)
    }

    /// Wait until the queue is empty and every task taken from it by a
    /// counting pop was marked done ([`task_done`](RawQueue::task_done)):
    /// `Ok(true)`, or `Ok(false)` if `timeout` passed first (`None`: no
    /// limit). Elements taken by pops that do not count (`try_pop`,
    /// `pop_into`...) count as done at once. `interrupt` as for
    /// [`push_slice`](RawQueue::push_slice).
    pub fn join(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let header = self.header();
        let core = self.core();
        let mut wait = Wait::new(timeout, interrupt);
        let finished = || core.len() == 0 && header.unfinished.load(Ordering::SeqCst) == 0;
        loop {
            if finished() {
                return Ok(true);
            }
            if wait.deadline.expired() {
                return Ok(false);
            }
            header.join_waiters.fetch_add(1, Ordering::SeqCst);
            let seen = header.join_event.load(Ordering::SeqCst);
            let mut interrupted = false;
            if !finished() {
                interrupted = wait.interrupted();
                if !interrupted {
                    if let Some(nap) = wait.deadline.next_sleep() {
                        futex_wait(&header.join_event, seen, Some(nap));
                    }
                }
            }
            header.join_waiters.fetch_sub(1, Ordering::SeqCst);
            self.handle.check()?;
            if interrupted {
                return Err(Error::Interrupted {
                    name: self.handle.name().to_owned(),
                });
            }
        }
    }

    fn header(&self) -> &QueueHeader {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe { &*self.header }
    }

    payload::raw_ring_methods!(RawQueue, "oldest");

    /// Number of elements (approximate while other processes push and pop).
    pub fn len(&self) -> usize {
        self.core().len() as usize
    }

    /// Whether the queue holds no elements (approximate under concurrency).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (approximate under concurrency).
    pub fn is_full(&self) -> bool {
        self.len() as u64 >= self.capacity()
    }

    /// The capacity (exactly as created).
    pub fn capacity(&self) -> u64 {
        self.shape.capacity
    }

    /// Size of one element in bytes.
    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.handle.info.elem_type
    }

    /// The name of the segment the queue lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }
}

/// A bounded multi-producer multi-consumer FIFO queue of `T` in shared memory.
///
/// ```
/// use shmds::Segment;
/// use std::time::Duration;
/// # let name = format!("doc-queue-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let jobs = seg.create_queue::<u64>("jobs", 3)?;
/// jobs.try_push(1)?;
/// jobs.push_slice(&[2, 3], None)?;
/// assert!(matches!(jobs.try_push(4), Err(shmds::Error::Full { .. })));
/// assert_eq!(jobs.try_pop()?, 1);
/// let mut out = [0; 8];
/// assert_eq!(jobs.try_pop_into(&mut out)?, 2);
/// assert_eq!(&out[..2], &[2, 3]);
/// assert!(matches!(jobs.pop(Some(Duration::from_millis(1))), Err(shmds::Error::Timeout { .. })));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/queue.rs` and FORMAT.md for the algorithm, the progress
/// guarantee and what a crashed process leaves behind.
pub struct Queue<T: Element> {
    raw: RawQueue,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
}

impl<T: Element> Queue<T> {
    fn new(raw: RawQueue) -> Queue<T> {
        debug_assert_eq!(raw.elem_size, std::mem::size_of::<T>());
        Queue {
            raw,
            _t: PhantomData,
        }
    }

    payload::typed_ring_methods!("queue", "oldest");
}

/// How many times a blocking call retries with a spin hint before sleeping.
const SPINS_BEFORE_SLEEP: u32 = 200;

#[cfg(all(test, loom))]
pub(crate) mod model {
    //! A queue on the heap for loom models.
    use super::*;

    pub(crate) struct Model {
        buf: Vec<u64>,
        capacity: u64,
        shape: QueueShape,
    }

    impl Model {
        pub(crate) fn new(capacity: u64) -> Model {
            let elem = 8u64;
            let bytes = QUEUE_HEADER_SIZE as usize
                + std::mem::size_of::<QueueHeader>()
                + capacity as usize * slot_stride(elem) as usize;
            let mut buf = vec![0u64; bytes / 8 + 1];
            let block = buf.as_mut_ptr().cast::<u8>();
            // SAFETY: the buffer is 8-aligned and large enough for the loom
            // header (whose atomics are larger than the real ones) and slots.
            unsafe {
                let header = QueueHeader {
                    kind: kind::QUEUE,
                    elem_size: elem as u32,
                    capacity,
                    one_lap: capacity.next_power_of_two(),
                    slot_stride: slot_stride(elem),
                    slots_offset: 0,
                    shutdown: crate::sync::AtomicU64::new(0),
                    reserved0: [0; 2],
                    tail: crate::sync::AtomicU64::new(0),
                    reserved1: [0; 7],
                    head: crate::sync::AtomicU64::new(0),
                    unfinished: crate::sync::AtomicU64::new(0),
                    join_event: crate::sync::AtomicU32::new(0),
                    join_waiters: crate::sync::AtomicU32::new(0),
                    reserved2: [0; 5],
                };
                block.cast::<QueueHeader>().write(header);
                let slots = block.add(Self::slots_offset());
                for i in 0..capacity as usize {
                    slots
                        .add(i * slot_stride(elem) as usize)
                        .cast::<QueueSlot>()
                        .write(QueueSlot {
                            state: crate::sync::AtomicU64::new(0),
                        });
                }
            }
            let shape = QueueShape {
                capacity,
                shift: capacity.next_power_of_two().trailing_zeros(),
                stride: slot_stride(elem) as usize,
                patience: Duration::from_secs(3600),
            };
            Model {
                buf,
                capacity,
                shape,
            }
        }

        fn slots_offset() -> usize {
            (std::mem::size_of::<QueueHeader>() + 7) & !7
        }

        pub(crate) fn core(&self) -> QueueCore<'_> {
            let block = self.buf.as_ptr() as *mut u8;
            // SAFETY: initialised in new; lives as long as self.
            unsafe {
                QueueCore::new(
                    &*block.cast::<QueueHeader>(),
                    block.add(Self::slots_offset()),
                    &self.shape,
                )
            }
        }

        pub(crate) fn try_push(&self, v: u64) -> bool {
            let mut w = |p: *mut u8| unsafe { p.cast::<u64>().write_unaligned(v) };
            match self.core().push(&mut w, None) {
                Ok(blocked) => blocked.is_none(),
                Err(Stop::ShutDown) => false,
                Err(e) => panic!("{e:?}"),
            }
        }

        pub(crate) fn try_pop(&self) -> Option<u64> {
            let mut out = None;
            let mut r = |p: *const u8| out = Some(unsafe { p.cast::<u64>().read_unaligned() });
            match self.core().pop(&mut r, &mut || {}, None).unwrap() {
                None => out,
                Some(_) => None,
            }
        }

        pub(crate) fn capacity(&self) -> u64 {
            self.capacity
        }
    }

    impl Drop for Model {
        fn drop(&mut self) {
            let block = self.buf.as_mut_ptr().cast::<u8>();
            // SAFETY: drop the loom objects written in new, exactly once.
            unsafe {
                std::ptr::drop_in_place(block.cast::<QueueHeader>());
                let slots = block.add(Self::slots_offset());
                for i in 0..self.capacity as usize {
                    std::ptr::drop_in_place(
                        slots.add(i * slot_stride(8) as usize).cast::<QueueSlot>(),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip() {
        let states = [
            SlotState::Empty {
                tag: 0,
                waited: false,
            },
            SlotState::Empty {
                tag: TAG_MASK,
                waited: true,
            },
            SlotState::Writing {
                tag: 5,
                pid: 4_194_303,
            },
            SlotState::Full {
                tag: 1 << 38,
                waited: true,
                skip: true,
            },
            SlotState::Full {
                tag: 7,
                waited: false,
                skip: false,
            },
            SlotState::Reading {
                tag: 9,
                pid: 1,
                skip: false,
            },
            SlotState::Reading {
                tag: TAG_MASK,
                pid: 4_194_303,
                skip: true,
            },
        ];
        for s in states {
            assert_eq!(SlotState::decode(s.encode()), s);
        }
        assert_eq!(prev_tag(0), TAG_MASK);
        assert_eq!(next_tag(TAG_MASK), 0);
        assert_eq!(slot_stride(8), 16);
        assert_eq!(slot_stride(1), 16);
        assert_eq!(slot_stride(24), 32);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::model::Model;
    use loom::sync::Arc;
    use loom::thread;

    /// Two producers and a consumer racing, without spin loops (which make
    /// loom's state space explode): every element arrives exactly once and
    /// each producer's elements in order. (The consumer is a spawned thread:
    /// see `sync::tests` for why models are shaped so.) Three threads make a
    /// large space: preemption bound 1 here; `producers_race` covers the
    /// producer/producer races at bound 3.
    #[test]
    fn two_producers_one_consumer() {
        crate::sync::model_limited(1, None, || {
            let q = Arc::new(Model::new(3));
            let q2 = q.clone();
            let consumer = loom::thread::spawn(move || [q2.try_pop(), q2.try_pop()]);
            let q3 = q.clone();
            let other = loom::thread::spawn(move || assert!(q3.try_push(10)));
            assert!(q.try_push(1));
            assert!(q.try_push(2));
            other.join().unwrap();
            let mut got: Vec<u64> = consumer.join().unwrap().into_iter().flatten().collect();
            while let Some(v) = q.try_pop() {
                got.push(v);
            }
            let mine: Vec<u64> = got.iter().copied().filter(|&v| v < 10).collect();
            assert_eq!(mine, vec![1, 2], "per-producer FIFO");
            assert_eq!(got.len(), 3);
            assert!(got.contains(&10));
        });
    }

    /// Two producers race for the same slots, then the main thread drains:
    /// one element per position, each producer's in order.
    #[test]
    fn producers_race() {
        crate::sync::model(|| {
            let q = Arc::new(Model::new(2));
            let q2 = q.clone();
            let other = loom::thread::spawn(move || q2.try_push(10));
            let first = q.try_push(1);
            let second = q.try_push(2);
            let theirs = other.join().unwrap();
            assert!(first, "capacity 2 holds the first push");
            assert_eq!(
                second as u32 + theirs as u32,
                1,
                "exactly one of the other two fits"
            );
            let mut got = Vec::new();
            while let Some(v) = q.try_pop() {
                got.push(v);
            }
            assert_eq!(got.len(), 2);
            assert_eq!(
                got.iter()
                    .filter(|&&v| v < 10)
                    .copied()
                    .collect::<Vec<_>>()
                    .first(),
                Some(&1)
            );
        });
    }

    /// Capacity 1, with wrap-around: a producer and two consumers.
    #[test]
    fn wrap_around_capacity_one() {
        crate::sync::model(|| {
            let q = Arc::new(Model::new(1));
            assert_eq!(q.capacity(), 1);
            let q2 = q.clone();
            let producer = loom::thread::spawn(move || {
                for v in 1..=3u64 {
                    while !q2.try_push(v) {
                        thread::yield_now();
                    }
                }
            });
            let q3 = q.clone();
            let consumer = loom::thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..3 {
                    if let Some(v) = q3.try_pop() {
                        got.push(v);
                    }
                }
                got
            });
            let theirs = consumer.join().unwrap();
            let mut mine = Vec::new();
            while theirs.len() + mine.len() < 3 {
                match q.try_pop() {
                    Some(v) => mine.push(v),
                    None => thread::yield_now(),
                }
            }
            producer.join().unwrap();
            assert!(mine.windows(2).all(|w| w[0] < w[1]));
            let mut all: Vec<u64> = theirs.iter().chain(mine.iter()).copied().collect();
            // FIFO: the consumer thread's elements are increasing, and ours too.
            assert!(theirs.windows(2).all(|w| w[0] < w[1]));
            all.sort();
            assert_eq!(all, vec![1, 2, 3]);
        });
    }

    /// A pusher and a popper die at every pair of their pause points, on a
    /// capacity-1 queue whose slot holds the previous lap's (consumed)
    /// element; loom interleaves each death with the other process's steps.
    /// Whatever happens: no stale or duplicated element is ever delivered, a
    /// completed push is delivered unless a popper died after taking it, and
    /// the queue works afterwards. (With the skip bit left out of a popper's
    /// claim, the popper that dies holding a skip mark makes the survivor
    /// deliver the stale 0xA1.)
    #[test]
    fn killed_pusher_and_popper() {
        use crate::fault::crash;
        const PUSH: [&str; 2] = ["queue.push.slot_claimed", "queue.push.tail_moved"];
        const POP: [&str; 2] = ["queue.pop.slot_claimed", "queue.pop.head_moved"];
        for push_point in PUSH {
            for pop_point in POP {
                crate::sync::model(move || {
                    crash::reset();
                    let q = Arc::new(Model::new(1));
                    assert!(q.try_push(0xA1));
                    assert_eq!(q.try_pop(), Some(0xA1));
                    let q2 = q.clone();
                    let pusher = loom::thread::spawn(move || {
                        crash::die_at(push_point, || q2.try_push(0xB2))
                    });
                    let q3 = q.clone();
                    let popper =
                        loom::thread::spawn(move || crash::die_at(pop_point, || q3.try_pop()));
                    // A survivor pops while they work (and die).
                    let mut got: Vec<u64> = q.try_pop().into_iter().collect();
                    let pushed = pusher.join().unwrap();
                    let popped = popper.join().unwrap();
                    for _ in 0..3 {
                        got.extend(q.try_pop());
                    }
                    got.extend(popped.flatten());
                    let case =
                        format!("{push_point} / {pop_point}: {pushed:?} {popped:?} {got:x?}");
                    assert!(
                        got.iter().all(|&v| v == 0xB2),
                        "stale or foreign element: {case}"
                    );
                    assert!(got.len() <= 1, "duplicated: {case}");
                    if pushed != Some(true) {
                        assert!(got.is_empty(), "a dead push delivered: {case}");
                    } else if popped.is_some() || pop_point != "queue.pop.head_moved" {
                        // The push completed and no popper died holding it.
                        assert_eq!(got, [0xB2], "lost: {case}");
                    }
                    assert!(q.try_push(7), "{case}");
                    assert_eq!(q.try_pop(), Some(7), "{case}");
                });
            }
        }
    }

    /// Full and empty are reported, never a lost or duplicated element.
    #[test]
    fn full_and_empty() {
        crate::sync::model(|| {
            let q = Arc::new(Model::new(1));
            assert!(q.try_push(7));
            let q2 = q.clone();
            let t = loom::thread::spawn(move || q2.try_push(8));
            let a = q.try_pop();
            let pushed = t.join().unwrap();
            assert_eq!(a, Some(7));
            let b = q.try_pop();
            assert_eq!(b.is_some(), pushed);
            if let Some(b) = b {
                assert_eq!(b, 8);
            }
            assert_eq!(q.try_pop(), None);
        });
    }
}
