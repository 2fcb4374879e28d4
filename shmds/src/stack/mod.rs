//! `Stack<T>`: a bounded LIFO in shared memory.
//!
//! # The algorithm
//!
//! The block is a [`StackHeader`] and `capacity` element slots. The whole
//! state of the stack is one 64-bit word, `top`:
//!
//! ```text
//!  bits 0-23   count    elements on the stack (slots 0 .. count hold them)
//!  bits 24-45  pid      the process holding the claim (0 when idle)
//!  bits 46-47  phase    0 idle, 1 pushing, 2 popping
//!  bit  48     SHUT     set once the stack was shut down
//!  bits 49-63  version  grows with every claim
//! ```
//!
//! A push or pop **claims** the stack by one compare-and-swap of `top` from
//! `IDLE(count)` to `PUSHING(count, pid)` or `POPPING(count, pid)`, moves
//! its elements (a push writes slots `count ..`, a pop reads slots
//! `.. count` from the top down), and releases the claim with one store of
//! `IDLE(new count)`. One CAS and one store per call, for any number of
//! elements: `push_slice` and `pop_into` move as many as fit in one claim.
//!
//! Invariants:
//! - Slots `0 .. count` of an idle word hold the elements, bottom first.
//! - Only the claimant writes `top` while it is claimed (and whoever takes
//!   over a dead claimant's claim); only the claimant touches the slots.
//! - The SHUT bit is only ever added to an idle word (by CAS), so a claim
//!   sees it or happens wholly before it.
//!
//! *Crashed peers.* A claim carries the claimant's pid. Whoever finds the
//! stack claimed for more than a moment asks whether that process lives;
//! if it is gone, it takes the claim back by CAS to `IDLE(count)`, with the
//! count the dead process found: a dead pusher's half-written elements are
//! not counted (its push never returned), a dead popper's elements are still
//! there and are popped again (its pop never returned them). Nothing is
//! leaked and nothing committed is lost. The version makes a stale takeover
//! CAS fail even if the dead pid was reused by a new claimant.
//!
//! *Progress.* A call completes in a bounded number of its own steps unless
//! another process holds the claim; it then waits for it (a claim lasts as
//! long as copying the elements). A process stopped (SIGSTOP) while holding
//! the claim delays the others until it resumes, or, for blocking calls,
//! until the segment's lock timeout ([`Error::Busy`]); a dead one does not.
//! A `try_` call that meets a claim spins briefly, asks (at most every
//! 20 ms per thread) whether the claimant lives, and otherwise reports
//! full (empty): it never sleeps or yields.
//!
//! *Sleeping.* A pop on an empty stack registers in `pop_waiters`, reads
//! the event counter `not_empty`, checks the stack again and sleeps on the
//! counter with a shared futex. A push loads `pop_waiters` after its claim
//! (both sequentially consistent) and, if anyone waits, bumps the counter
//! and wakes one. A waiter that finds the stack claimed does not sleep: it
//! waits for the claim to end, so a push it raced with cannot miss it. Full
//! stacks use `push_waiters`/`not_full` the same way.
//!
//! *Shutdown.* `StackHeader::shutdown` is set, then the SHUT bit is added
//! to `top` by CAS once the word is idle. A push that finds SHUT refuses; a
//! pop drains what is there and then reports "shut down". So the shutdown
//! is one atomic step with every push and pop: once a pop has reported
//! "shut down", no element can arrive after it.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, StackHeader, STACK_HEADER_SIZE};
use crate::payload;
use crate::process::{current_pid, is_alive, seems_alive};
use crate::segment::Segment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{futex_wait, futex_wake, Deadline, PeerWait, Wait};
use std::marker::PhantomData;
use std::mem::offset_of;
use std::time::Duration;

/// Largest stack capacity (the count has 24 bits).
pub const MAX_STACK_CAPACITY: u64 = COUNT_MASK;

const COUNT_MASK: u64 = (1 << 24) - 1;
const PID_SHIFT: u32 = 24;
const PID_MASK: u64 = (1 << 22) - 1;
const PHASE_SHIFT: u32 = 46;
const PHASE_MASK: u64 = 0b11;
const IDLE: u64 = 0;
const PUSHING: u64 = 1;
const POPPING: u64 = 2;
/// Bit 48 of `top`: the stack was shut down (no more pushes).
const SHUT: u64 = 1 << 48;
const VERSION_ONE: u64 = 1 << 49;
const VERSION_MASK: u64 = !(VERSION_ONE - 1);

/// Spin steps (1, 2, 4 pauses) a `try_` call spends on a claimed stack
/// before it asks whether the claimant lives (as the queue's).
const TRY_SPIN_STEPS: u32 = 3;

/// A decoded `top` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    Idle { count: u64, shut: bool },
    Claimed { count: u64, pid: u32 },
}

/// The idle word after `word` (a claim) with `count` elements: the version
/// and the SHUT bit as in `word`.
#[inline(always)]
fn idle(word: u64, count: u64) -> u64 {
    (word & (VERSION_MASK | SHUT)) | (count & COUNT_MASK)
}

/// The claim of `word` (idle) by `pid` for `phase`: a new version.
#[inline(always)]
fn claim(word: u64, pid: u32, phase: u64) -> u64 {
    (word & (VERSION_MASK | SHUT | COUNT_MASK)).wrapping_add(VERSION_ONE)
        | (pid as u64 & PID_MASK) << PID_SHIFT
        | phase << PHASE_SHIFT
}

/// What a push or pop would find (for the calls that wait for readiness).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// It could move an element, or the stack was shut down (it returns).
    Ready,
    /// Full (empty): sleep.
    Sleep,
    /// Claimed (`word`, by `pid`): wait for the claim, never sleep on it.
    Claimed { word: u64, pid: u32 },
}

/// The wait for one claim: starts over when the claim word changes, so
/// the lock timeout counts the time one claim stood, not a stream of
/// different (live, progressing) claimants.
#[derive(Default)]
pub(crate) struct ClaimWait {
    word: u64,
    patience: PeerWait,
}

impl ClaimWait {
    /// The patience for claim `word`.
    pub(crate) fn on(&mut self, word: u64) -> &mut PeerWait {
        if self.word != word {
            self.word = word;
            self.patience = PeerWait::new();
        }
        &mut self.patience
    }
}

/// How one push or pop attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// This many elements went in (came out), at least one.
    Moved(usize),
    /// Full (empty), or claimed by a live process a `try_` call does not
    /// wait for: nothing happened.
    Blocked,
    /// The stack was shut down: a push was refused, or a pop found it empty.
    ShutDown,
}

/// Why an attempt stopped without a step.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The word does not fit the protocol.
    Corrupt(String),
    /// A live process held the claim for longer than the lock timeout.
    Busy(u32),
}

/// The stack algorithm over a header and a slot array; the same code runs
/// on a segment's bytes and, under loom, on heap memory.
pub(crate) struct StackCore<'a> {
    header: &'a StackHeader,
    slots: *mut u8,
    stride: usize,
    capacity: u64,
    /// How long a blocking call waits for a live claimant.
    patience: Duration,
}

/// Bytes between slots for elements of `elem_size` bytes.
pub(crate) fn slot_stride(elem_size: u64) -> u64 {
    (elem_size + 7) & !7
}

impl<'a> StackCore<'a> {
    /// # Safety
    /// `slots` must point to `capacity` slots of `stride` bytes, valid for
    /// `'a`.
    unsafe fn new(
        header: &'a StackHeader,
        slots: *mut u8,
        stride: usize,
        capacity: u64,
        patience: Duration,
    ) -> Self {
        StackCore {
            header,
            slots,
            stride,
            capacity,
            patience,
        }
    }

    /// Decode `word`, or report it.
    #[inline(always)]
    fn decode(&self, word: u64) -> std::result::Result<Top, Stop> {
        let count = word & COUNT_MASK;
        let pid = ((word >> PID_SHIFT) & PID_MASK) as u32;
        let phase = (word >> PHASE_SHIFT) & PHASE_MASK;
        match phase {
            IDLE if count <= self.capacity && pid == 0 => Ok(Top::Idle {
                count,
                shut: word & SHUT != 0,
            }),
            PUSHING | POPPING if count <= self.capacity => Ok(Top::Claimed { count, pid }),
            _ => Err(self.bad_word(word)),
        }
    }

    #[cold]
    fn bad_word(&self, word: u64) -> Stop {
        Stop::Corrupt(format!(
            "the stack word {word:#x} is no state of a stack of {} slots",
            self.capacity
        ))
    }

    #[inline(always)]
    fn payload(&self, slot: u64) -> *mut u8 {
        debug_assert!(slot < self.capacity);
        // SAFETY: callers pass slot < count <= capacity (push: count + i <
        // capacity; pop: count - 1 - i with i < count); the slots lie in
        // the block (new).
        unsafe { self.slots.add(slot as usize * self.stride) }
    }

    /// Push up to `want` (at least 1) elements, the `i`-th written by
    /// `write(i, payload)`, in one claim. `blocking`: wait for a live
    /// claimant (up to the lock timeout) instead of reporting `Blocked`.
    #[inline(always)]
    pub(crate) fn push(
        &self,
        want: usize,
        write: &mut impl FnMut(usize, *mut u8),
        blocking: bool,
    ) -> std::result::Result<Step, Stop> {
        let top = &self.header.top;
        // SeqCst (a plain load on x86 and ARMv8): a waiter's retry after
        // its registration must be ordered before a claim it misses.
        let mut word = top.load(Ordering::SeqCst);
        let mut waiting = ClaimWait::default();
        loop {
            match self.decode(word)? {
                Top::Idle { shut: true, .. } => return Ok(Step::ShutDown),
                Top::Idle { count, .. } if count >= self.capacity => return Ok(Step::Blocked),
                Top::Idle { count, .. } => {
                    let mine = claim(word, current_pid(), PUSHING);
                    // SeqCst: before the load of `pop_waiters` below, and
                    // after a waiter's registration and look (module docs).
                    match top.compare_exchange(word, mine, Ordering::SeqCst, Ordering::Acquire) {
                        Ok(_) => {
                            crate::fault::pause_point("stack.push.claimed");
                            let n = (want as u64).min(self.capacity - count);
                            for i in 0..n {
                                write(i as usize, self.payload(count + i));
                            }
                            crate::fault::pause_point("stack.push.written");
                            top.store(idle(mine, count + n), Ordering::Release);
                            notify(&self.header.pop_waiters, &self.header.not_empty, n);
                            return Ok(Step::Moved(n as usize));
                        }
                        Err(seen) => word = seen,
                    }
                }
                Top::Claimed { pid, .. } => {
                    if !self.wait_for_claim(word, pid, blocking, waiting.on(word))? {
                        return Ok(Step::Blocked);
                    }
                    word = top.load(Ordering::SeqCst);
                }
            }
        }
    }

    /// Pop up to `want` (at least 1) elements, top first, the `i`-th
    /// handed to `read(i, payload)`, in one claim; `blocking` as for `push`.
    #[inline(always)]
    pub(crate) fn pop(
        &self,
        want: usize,
        read: &mut impl FnMut(usize, *const u8),
        blocking: bool,
    ) -> std::result::Result<Step, Stop> {
        let top = &self.header.top;
        let mut word = top.load(Ordering::SeqCst);
        let mut waiting = ClaimWait::default();
        loop {
            match self.decode(word)? {
                Top::Idle { count: 0, shut } => {
                    return Ok(if shut { Step::ShutDown } else { Step::Blocked })
                }
                Top::Idle { count, .. } => {
                    let mine = claim(word, current_pid(), POPPING);
                    match top.compare_exchange(word, mine, Ordering::SeqCst, Ordering::Acquire) {
                        Ok(_) => {
                            crate::fault::pause_point("stack.pop.claimed");
                            let n = (want as u64).min(count);
                            for i in 0..n {
                                read(i as usize, self.payload(count - 1 - i));
                            }
                            crate::fault::pause_point("stack.pop.read");
                            top.store(idle(mine, count - n), Ordering::Release);
                            notify(&self.header.push_waiters, &self.header.not_full, n);
                            return Ok(Step::Moved(n as usize));
                        }
                        Err(seen) => word = seen,
                    }
                }
                Top::Claimed { pid, .. } => {
                    if !self.wait_for_claim(word, pid, blocking, waiting.on(word))? {
                        return Ok(Step::Blocked);
                    }
                    word = top.load(Ordering::SeqCst);
                }
            }
        }
    }

    /// The stack is claimed (`word`, by `pid`): wait a little, and take the
    /// claim back if `pid` is dead. `Ok(true)`: look again. A `try_` call
    /// (not `blocking`) spins briefly and asks once ([`seems_alive`]), then
    /// gives up with `Ok(false)` while the claim stands; a blocking one
    /// waits (spinning, yielding, napping) up to the lock timeout.
    #[cold]
    #[inline(never)]
    fn wait_for_claim(
        &self,
        word: u64,
        pid: u32,
        blocking: bool,
        patience: &mut PeerWait,
    ) -> std::result::Result<bool, Stop> {
        let top = &self.header.top;
        if !blocking {
            for step in 0..TRY_SPIN_STEPS {
                for _ in 0..(1u32 << step) {
                    crate::sync::spin_hint();
                }
                if top.load(Ordering::Acquire) != word {
                    return Ok(true);
                }
            }
            if !seems_alive(pid) {
                self.recover(word);
            }
            return Ok(top.load(Ordering::Acquire) != word);
        }
        if patience.snooze() {
            if !is_alive(pid) {
                self.recover(word);
            } else if patience.waited() > self.patience && top.load(Ordering::Acquire) == word {
                return Err(Stop::Busy(pid));
            }
        }
        Ok(true)
    }

    /// Take back a claim on `top` and forget sleepers (see
    /// `QueueCore::revoke`). Returns the claims taken back.
    pub(crate) fn revoke(&self) -> u64 {
        self.header.pop_waiters.store(0, Ordering::Relaxed);
        self.header.push_waiters.store(0, Ordering::Relaxed);
        let word = self.header.top.load(Ordering::Acquire);
        match self.decode(word) {
            Ok(Top::Claimed { .. }) => {
                self.recover(word);
                1
            }
            _ => 0,
        }
    }

    /// If `top` still holds `word`, a claim of a dead process, take it back:
    /// idle with the count the dead process found.
    fn recover(&self, word: u64) {
        let back = idle(word, word & COUNT_MASK).wrapping_add(VERSION_ONE);
        if self
            .header
            .top
            .compare_exchange(word, back, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            // Whoever slept while it held the claim looks again.
            self.wake_all();
        }
    }

    /// Whether the stack was shut down.
    pub(crate) fn shut_down(&self) -> bool {
        self.header.top.load(Ordering::SeqCst) & SHUT != 0
    }

    /// Set `shutdown`, then the SHUT bit in `top`, once the word is idle
    /// (waiting for a live claimant, taking a dead one's claim back).
    fn shut(&self) -> std::result::Result<(), Stop> {
        self.header.shutdown.fetch_or(1, Ordering::SeqCst);
        let top = &self.header.top;
        let mut waiting = ClaimWait::default();
        loop {
            let word = top.load(Ordering::Acquire);
            match self.decode(word)? {
                Top::Idle { shut: true, .. } => return Ok(()),
                Top::Idle { .. } => {
                    if top
                        .compare_exchange(word, word | SHUT, Ordering::SeqCst, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
                Top::Claimed { pid, .. } => {
                    self.wait_for_claim(word, pid, true, waiting.on(word))?;
                }
            }
        }
    }

    /// What a push (`push`) or a pop would find now.
    fn readiness(&self, push: bool) -> std::result::Result<Readiness, Stop> {
        let word = self.header.top.load(Ordering::SeqCst);
        Ok(match self.decode(word)? {
            Top::Idle { shut: true, .. } => Readiness::Ready,
            Top::Idle { count, .. } if push && count < self.capacity => Readiness::Ready,
            Top::Idle { count, .. } if !push && count > 0 => Readiness::Ready,
            Top::Idle { .. } => Readiness::Sleep,
            Top::Claimed { pid, .. } => Readiness::Claimed { word, pid },
        })
    }

    /// Wake every process sleeping on this stack, so that each re-checks
    /// its condition, the shutdown bit and its interrupt callback.
    pub(crate) fn wake_all(&self) {
        for event in [&self.header.not_empty, &self.header.not_full] {
            // The bump makes a sleeper between reading the counter and its
            // futex wait return at once.
            event.fetch_add(1, Ordering::SeqCst);
            futex_wake(event, i32::MAX as u32);
        }
    }

    /// Copies of up to `max` elements (`size` bytes each), top first,
    /// taking nothing: read while `top` is idle and kept only if `top` is
    /// the same word afterwards (its version grows with every claim, so no
    /// push or pop ran meanwhile). Empty if the stack stays claimed or
    /// keeps changing. The version has 15 bits: a copy that lasted over
    /// 32,768 claims and ended on the same word could mix two moments (a
    /// wrong snapshot, never an access outside the slots).
    pub(crate) fn peek(&self, max: usize, size: usize) -> Vec<Vec<u8>> {
        for _ in 0..100 {
            let word = self.header.top.load(Ordering::Acquire);
            let Ok(Top::Idle { count, .. }) = self.decode(word) else {
                crate::sync::spin_hint();
                continue;
            };
            let n = (count as usize).min(max);
            let mut out = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let mut item = vec![0u8; size];
                // SAFETY: count - 1 - i < count <= capacity (decode checked
                // the count), so the slot lies in the block and holds `size`
                // bytes (size <= stride). A claimant may rewrite them
                // meanwhile (a racy copy); the check of `top` below drops
                // such copies.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.payload(count - 1 - i),
                        item.as_mut_ptr(),
                        size,
                    )
                };
                out.push(item);
            }
            crate::sync::fence(Ordering::Acquire);
            if self.header.top.load(Ordering::Relaxed) == word {
                return out;
            }
        }
        Vec::new()
    }

    /// Elements on the stack (exact for an idle word; a claim shows the
    /// count before it).
    pub(crate) fn len(&self) -> u64 {
        (self.header.top.load(Ordering::Acquire) & COUNT_MASK).min(self.capacity)
    }
}

/// After a push (pop) of `moved` elements: wake that many sleeping
/// poppers (pushers), if any is registered.
#[inline]
fn notify(waiters: &AtomicU32, event: &AtomicU32, moved: u64) {
    // SeqCst: pairs with the waiter's SeqCst registration before its re-check.
    if waiters.load(Ordering::SeqCst) > 0 {
        event.fetch_add(1, Ordering::SeqCst);
        futex_wake(event, moved.min(i32::MAX as u64) as u32);
    }
}

/// Sleep on `event` until notified (or a nap passes), having re-checked with
/// `retry` after registering in `waiters`; `retry` returns `true` when
/// there is no need to sleep. `stop` is called after that, before the
/// sleep: `true` means do not sleep (an interrupt). A process that sets a
/// stop condition and then bumps `event` and wakes it (`wake_all`) never
/// leaves us asleep: `stop` sees the condition, or the counter has changed
/// since we read it and the futex wait returns at once.
fn sleep_until(
    waiters: &AtomicU32,
    event: &AtomicU32,
    deadline: &Deadline,
    retry: &mut dyn FnMut() -> bool,
    stop: &mut dyn FnMut() -> bool,
) {
    waiters.fetch_add(1, Ordering::SeqCst);
    let seen = event.load(Ordering::SeqCst);
    if !retry() {
        crate::sync::fence(Ordering::SeqCst);
        if !stop() {
            if let Some(nap) = deadline.next_sleep() {
                futex_wait(event, seen, Some(nap));
            }
        }
    }
    waiters.fetch_sub(1, Ordering::SeqCst);
}

mod raw;
mod typed;

pub(crate) use raw::check;
pub(crate) use raw::revoke;
pub use raw::RawStack;
pub use typed::Stack;

#[cfg(all(test, loom))]
mod loom_tests;
