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
use crate::process::{current_pid, is_alive, seems_alive};
use crate::segment::Segment;
use crate::sync::{fence, AtomicU64, Ordering};
use crate::wait::{
    futex_wait, futex_wait_low, futex_wake, futex_wake_low, Deadline, PeerWait, Wait,
};
use std::marker::PhantomData;
use std::mem::offset_of;
use std::time::Duration;

/// Spin steps (1, 2, 4 pause instructions) a `try_` call spends on a
/// position another process has claimed before it reports full or empty:
/// 7 pauses, about 0.2 µs where a pause costs 27 ns (the AMD EPYC VM of
/// BENCHMARKS.md), less on most Intel parts. A live claimant's step
/// between its claim and its publish takes a few nanoseconds.
const TRY_SPIN_STEPS: u32 = 3;

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

/// What a push or pop did: moved a run of elements (a pop that met a
/// skip mark moves 0), or could not start.
#[derive(Debug)]
pub(crate) enum Step {
    Moved(usize),
    Blocked(Blocked),
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

    /// Push up to `want` (at least 1) elements, the `i`-th of this run
    /// written by `write(i, payload)`: one claim by CAS, then as many of the
    /// following positions as are free now and `want` allows (see "Runs" in
    /// the module documentation). Returns how many were pushed, or what the
    /// first position waits on.
    ///
    /// The first attempt (an empty slot, claimed at once) is inlined into
    /// the caller; everything else runs out of line in `push_contended`.
    #[inline(always)]
    pub(crate) fn push(
        &self,
        want: usize,
        write: &mut impl FnMut(usize, *mut u8),
        deadline: Option<&Deadline>,
        look: bool,
    ) -> std::result::Result<Step, Stop> {
        let first = self.first_claim(
            look,
            &self.header.tail,
            |tag| SlotState::Empty { tag, waited: false },
            |tag, pid| SlotState::Writing { tag, pid },
        );
        match first {
            FirstClaim::Claimed { pos, idx, tag } => Ok(Step::Moved(
                self.complete_push(pos, idx, tag, want, write, false)?,
            )),
            FirstClaim::Seen(seen) => self.push_contended(want, write, deadline, seen),
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
        want: usize,
        write: &mut impl FnMut(usize, *mut u8),
        deadline: Option<&Deadline>,
        mut seen: Option<(u64, u64)>,
    ) -> std::result::Result<Step, Stop> {
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
                        let moved = self.complete_push(t, idx, tag, want, write, waited)?;
                        return Ok(Step::Moved(moved));
                    }
                }
                // The previous lap's element is still there: the queue is full.
                SlotState::Full { tag: st, .. } if st == prev_tag(tag) => {
                    if self.header.tail.load(Ordering::Acquire) == t {
                        return Ok(Step::Blocked(Blocked {
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
                        return Ok(Step::Blocked(Blocked {
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
                        return Ok(Step::Blocked(Blocked {
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
    ///
    /// Like `push`, it takes a run of up to `want` (at least 1) elements,
    /// the `i`-th of the run handed to `read(i, payload)`, and returns how
    /// many it took.
    #[inline(always)]
    pub(crate) fn pop(
        &self,
        want: usize,
        read: &mut impl FnMut(usize, *const u8),
        taken: &mut impl FnMut(),
        deadline: Option<&Deadline>,
        look: bool,
    ) -> std::result::Result<Step, Stop> {
        let first = self.first_claim(
            look,
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
            FirstClaim::Claimed { pos, idx, tag } => Ok(Step::Moved(
                self.complete_pop(pos, idx, tag, want, read, taken, false, false),
            )),
            FirstClaim::Seen(seen) => self.pop_contended(want, read, taken, deadline, seen),
        }
    }

    /// The whole pop protocol: every state a slot can be found in. As in
    /// `push_contended`, `seen` is what the fast path saw, and the word is
    /// loaded before any CAS from here on.
    #[inline(never)]
    fn pop_contended(
        &self,
        want: usize,
        read: &mut impl FnMut(usize, *const u8),
        taken: &mut impl FnMut(),
        deadline: Option<&Deadline>,
        mut seen: Option<(u64, u64)>,
    ) -> std::result::Result<Step, Stop> {
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
                        let moved = self.complete_pop(h, idx, tag, want, read, taken, waited, skip);
                        if !skip {
                            return Ok(Step::Moved(moved));
                        }
                    }
                }
                // Nothing pushed at h yet (or the previous lap's popper has
                // not freed the slot): empty.
                SlotState::Empty { tag: st, .. } if st == tag => {
                    return Ok(Step::Blocked(Blocked {
                        idx,
                        observed: word,
                    }));
                }
                SlotState::Reading { tag: st, .. } | SlotState::Writing { tag: st, .. }
                    if st == prev_tag(tag) =>
                {
                    if self.header.head.load(Ordering::Acquire) == h {
                        return Ok(Step::Blocked(Blocked {
                            idx,
                            observed: word,
                        }));
                    }
                }
                // A pusher is writing position h: wait for it (like crossbeam),
                // so that FIFO order holds for elements already published after it.
                SlotState::Writing { tag: st, .. } if st == tag => {
                    if !self.wait_on_claim(idx, word, &mut patience, deadline)? {
                        return Ok(Step::Blocked(Blocked {
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
                        return Ok(Step::Blocked(Blocked {
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
    ///
    /// With `look`, the word is loaded first and the CAS made only if it
    /// holds the common state: a caller that found the queue full (empty)
    /// last time, and is probably polling, then reads the slot's line
    /// instead of taking it away from the process it waits for (which
    /// would slow that process down by a cache-line transfer per poll).
    #[inline(always)]
    fn first_claim(
        &self,
        look: bool,
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
        if look {
            let word = self.slot(idx).state.load(Ordering::Acquire);
            if word != from {
                return FirstClaim::Seen(Some((pos, word)));
            }
        }
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
    /// claimed: extend the claim over the positions after it that are free
    /// (up to `want` in all), move `tail` past them, write the elements,
    /// publish them, wake sleepers. Returns how many were pushed. If the
    /// queue was shut down before the claims took effect, publish skip
    /// marks instead and report [`Stop::ShutDown`].
    #[inline(always)]
    fn complete_push(
        &self,
        t: u64,
        idx: u64,
        tag: u64,
        want: usize,
        write: &mut impl FnMut(usize, *mut u8),
        waited: bool,
    ) -> std::result::Result<usize, Stop> {
        crate::fault::pause_point("queue.push.slot_claimed");
        let (run, end) = self.extend(
            t,
            want,
            |tag| SlotState::Empty { tag, waited: false },
            |tag, pid| SlotState::Writing { tag, pid },
        );
        self.header.tail.store(end, Ordering::Release);
        crate::fault::pause_point("queue.push.tail_moved");
        // After the claims: a popper that saw the queue empty and then the
        // flag set finds them when it looks again. The first claim was a
        // SeqCst CAS; the run's plain stores need the fence (a store then a
        // load of another word, as in Dekker's algorithm).
        if run > 1 {
            fence(Ordering::SeqCst);
        }
        let shut = self.shut_down();
        crate::fault::pause_point("queue.push.shutdown_read");
        let first = self.slot(idx);
        for (i, (idx, tag)) in self.run_slots(t, idx, tag, run).enumerate() {
            if !shut {
                write(i, self.payload(idx));
            }
            let full = SlotState::Full {
                tag,
                waited: false,
                skip: shut,
            };
            self.slot(idx).state.store(full.encode(), Ordering::Release);
        }
        if waited {
            futex_wake_low(&first.state);
        }
        if shut {
            return Err(Stop::ShutDown);
        }
        Ok(run)
    }

    /// The slot index and lap tag of each of the `run` positions from
    /// `pos` (slot `idx`, lap tag `tag`).
    #[inline(always)]
    fn run_slots(
        &self,
        pos: u64,
        idx: u64,
        tag: u64,
        run: usize,
    ) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut pos = pos;
        (0..run).map(move |i| {
            if i == 0 {
                return (idx, tag);
            }
            pos = self.next(pos);
            let (tag, idx) = self.lap_tag_and_index(pos);
            (idx, tag)
        })
    }

    /// A position's lap tag and slot index.
    #[inline(always)]
    fn lap_tag_and_index(&self, pos: u64) -> (u64, u64) {
        let (lap, idx) = self.split(pos);
        (lap & TAG_MASK, idx)
    }

    /// Extend the claim of position `first` over the positions after it
    /// (a run of at most `want`, and of at most `capacity`): each one whose
    /// slot is exactly `from(tag)` is claimed with a plain store of
    /// `to(tag, pid)`. No CAS is needed: until its claimant moves the end
    /// past `first`, no other process may claim or flag those slots (see
    /// "Runs" in the module documentation). Returns the run's length and
    /// the position after it.
    #[inline(always)]
    fn extend(
        &self,
        first: u64,
        want: usize,
        from: impl Fn(u64) -> SlotState,
        to: impl Fn(u64, u32) -> SlotState,
    ) -> (usize, u64) {
        let mut end = self.next(first);
        let mut run = 1;
        if want > 1 {
            let me = current_pid();
            let most = want.min(self.shape.capacity as usize);
            while run < most {
                let (tag, idx) = self.lap_tag_and_index(end);
                let state = &self.slot(idx).state;
                // Acquire: the previous owner's use of the payload (its
                // read, or the pusher's write) happens before ours.
                if state.load(Ordering::Acquire) != from(tag).encode() {
                    break;
                }
                state.store(to(tag, me).encode(), Ordering::Relaxed);
                run += 1;
                end = self.next(end);
            }
            crate::fault::pause_point("queue.run_claimed");
        }
        (run, end)
    }

    /// Whether the queue was shut down (any bit of the flag word).
    #[inline(always)]
    pub(crate) fn shut_down(&self) -> bool {
        self.header.shutdown.load(Ordering::SeqCst) != 0
    }

    /// The rest of a pop once position `h` is claimed: extend the claim
    /// over the full positions after it (up to `want` in all; not past a
    /// skip mark, and not from one), move `head` past them, read the
    /// elements (none for a skip mark), free the slots for the next lap,
    /// wake sleepers. Returns how many elements were taken (0 for a skip
    /// mark).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn complete_pop(
        &self,
        h: u64,
        idx: u64,
        tag: u64,
        want: usize,
        read: &mut impl FnMut(usize, *const u8),
        taken: &mut impl FnMut(),
        waited: bool,
        skip: bool,
    ) -> usize {
        crate::fault::pause_point("queue.pop.slot_claimed");
        let (run, end) = if skip {
            (1, self.next(h))
        } else {
            self.extend(
                h,
                want,
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
            )
        };
        if !skip {
            for _ in 0..run {
                taken();
            }
        }
        self.header.head.store(end, Ordering::Release);
        crate::fault::pause_point("queue.pop.head_moved");
        let first = self.slot(idx);
        for (i, (idx, tag)) in self.run_slots(h, idx, tag, run).enumerate() {
            if !skip {
                read(i, self.payload(idx));
            }
            let empty = SlotState::Empty {
                tag: next_tag(tag),
                waited: false,
            };
            self.slot(idx)
                .state
                .store(empty.encode(), Ordering::Release);
        }
        if waited {
            futex_wake_low(&first.state);
        }
        if skip {
            0
        } else {
            run
        }
    }

    /// Wait a little for the claimant of slot `idx` (state `word`); take the
    /// claim over if the claimant is dead. `Ok(true)`: look again.
    ///
    /// Without a deadline (a `try_` call, which must not sleep or yield)
    /// this spins briefly ([`TRY_SPIN_STEPS`]), then asks whether the claimant
    /// lives ([`seems_alive`]: at most once per 20 ms per thread, and never
    /// about our own process), and gives up with `Ok(false)` if the claim is
    /// still there, so the caller reports full or empty rather than waiting
    /// for a stalled process. A `try_` call therefore never falls into a
    /// mode of microseconds per call.
    fn wait_on_claim(
        &self,
        idx: u64,
        word: u64,
        patience: &mut PeerWait,
        deadline: Option<&Deadline>,
    ) -> std::result::Result<bool, Stop> {
        let Some(d) = deadline else {
            return Ok(self.glance_at_claim(idx, word));
        };
        if d.expired() {
            return Err(Stop::TimedOut);
        }
        if patience.snooze() {
            self.recover(idx, word);
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

    /// The `try_` form of [`wait_on_claim`](QueueCore::wait_on_claim):
    /// whether slot `idx` moved on from the claim `word` after a short spin
    /// (taking the claim over if its process is gone).
    #[cold]
    #[inline(never)]
    fn glance_at_claim(&self, idx: u64, word: u64) -> bool {
        let state = &self.slot(idx).state;
        for step in 0..TRY_SPIN_STEPS {
            for _ in 0..(1u32 << step) {
                crate::sync::spin_hint();
            }
            if state.load(Ordering::Acquire) != word {
                return true;
            }
        }
        if let SlotState::Writing { pid, .. } | SlotState::Reading { pid, .. } =
            SlotState::decode(word)
        {
            if !seems_alive(pid) {
                self.recover(idx, word);
            }
        }
        state.load(Ordering::Acquire) != word
    }

    /// Take over every claim in the queue, as each is recovered when its
    /// claimant dies, and forget sleepers; run inside
    /// [`as_if_everyone_died`](crate::process::as_if_everyone_died) on a
    /// queue nobody else uses. Returns the claims taken over.
    pub(crate) fn revoke(&self) -> u64 {
        let mut taken = 0;
        for idx in 0..self.shape.capacity {
            let word = self.slot(idx).state.load(Ordering::Acquire);
            if let SlotState::Writing { .. } | SlotState::Reading { .. } = SlotState::decode(word) {
                self.recover(idx, word);
                taken += 1;
            }
        }
        self.header.join_waiters.store(0, Ordering::Relaxed);
        taken
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

    /// Copies of up to `max` elements (`size` bytes each) from `head`
    /// towards `tail`, oldest first, taking nothing: a slot is copied only
    /// while it holds its position's published element, and kept only if
    /// its state word is unchanged after the copy (so no copy is torn: a
    /// slot reused meanwhile has another lap tag). Weakly consistent:
    /// elements taken or added meanwhile may be missing or present. At
    /// most one lap is read, whatever the shared words say.
    pub(crate) fn peek(&self, max: usize, size: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pos = self.header.head.load(Ordering::Acquire);
        let tail = self.header.tail.load(Ordering::Acquire);
        for _ in 0..self.shape.capacity {
            if out.len() >= max || pos == tail {
                break;
            }
            let (lap, idx) = self.split(pos);
            if idx >= self.shape.capacity {
                break;
            }
            let slot = self.slot(idx);
            let before = slot.state.load(Ordering::Acquire);
            if let SlotState::Full {
                tag, skip: false, ..
            } = SlotState::decode(before)
            {
                if tag == lap & TAG_MASK {
                    let mut item = vec![0u8; size];
                    // SAFETY: idx < capacity, so the payload is inside the
                    // slot array and holds `size` bytes (the element size the
                    // shape was validated with). Another process may rewrite
                    // them meanwhile (a racy copy, as a topic reader makes);
                    // the state check below drops such a copy.
                    unsafe {
                        std::ptr::copy_nonoverlapping(self.payload(idx), item.as_mut_ptr(), size)
                    };
                    fence(Ordering::Acquire);
                    if slot.state.load(Ordering::Relaxed) == before {
                        out.push(item);
                    }
                }
            }
            pos = self.next(pos);
        }
        out
    }

    /// Positions pushed and popped since the queue was made (`tail` and
    /// `head` as counts; wrapping), for rates.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let count = |pos: u64| {
            let (lap, idx) = self.split(pos);
            lap.wrapping_mul(self.shape.capacity).wrapping_add(idx)
        };
        (
            count(self.header.tail.load(Ordering::Acquire)),
            count(self.header.head.load(Ordering::Acquire)),
        )
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

mod raw;
mod typed;

pub(crate) use raw::revoke;
pub use raw::RawQueue;
pub(crate) use raw::{check, totals};
pub use typed::Queue;

#[cfg(all(test, loom))]
mod loom_tests;
#[cfg(all(test, loom))]
pub(crate) mod model;
#[cfg(test)]
mod tests;
