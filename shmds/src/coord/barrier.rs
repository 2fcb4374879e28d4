//! [`Barrier`]: `parties` callers of `wait` meet; the barrier then trips,
//! all of them go on, and it is ready for the next round (Python's
//! `threading.Barrier`, also its broken state).
//!
//! `state` packs the *phase* (bits 0-31: generation << 1, | 1 when broken;
//! the futex word of waiters, so only a trip or a break wakes them) and the
//! parties *arrived* in this generation (bits 32-63). An arrival
//! compare-and-swaps `arrived` one up (SeqCst) and writes its stamp into
//! its arrival slot; the last arrival clears the slots and swaps in the
//! next generation with nobody arrived, which releases the others: a
//! waiter that sees the generation move on has passed. Waiters get their
//! index (0 for the first arrival, `parties - 1` for the last).
//!
//! *Broken.* A wait that times out, is interrupted, or finds a waiting
//! party dead (a waiter that has waited
//! [`LIVENESS_EVERY`](super::LIVENESS_EVERY) asks after the stamps of the
//! parties arrived), and [`Barrier::abort`], set the broken bit: every
//! waiter of that generation, and every later caller until
//! [`Barrier::reset`], fails with [`Error::BrokenBarrier`]. `reset` records
//! the phase it leaves (with the broken bit set, so that the initial 0 names
//! no reset) in `reset_from` and then moves to a new generation:
//! a waiter of the old one woken after the reset reads `reset_from` and
//! knows it was not released.
//!
//! A party that dies before it arrives cannot be told from a slow one:
//! waits that must not hang on it need a timeout (which breaks the
//! barrier for all, as in Python).

use super::{my_stamp, stamp_alive, waiter, Primitive, Spin, Status, Stop};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, BarrierHeader, BarrierSlot, BARRIER_HEADER_SIZE, BARRIER_SLOT_SIZE};
use crate::sync::Ordering;
use std::time::Duration;

/// Bit 0 of the phase: broken.
const BROKEN: u32 = 1;
/// One arrival, in `state`.
const ARRIVAL: u64 = 1 << 32;

fn phase(state: u64) -> u32 {
    state as u32
}

fn arrived(state: u64) -> u32 {
    (state >> 32) as u32
}

/// The phase of the generation after `phase`'s, unbroken.
fn next_phase(phase: u32) -> u32 {
    ((phase >> 1).wrapping_add(1) << 1) & !BROKEN
}

/// Why a barrier wait ended without passing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    Broken,
    Stopped(Stop),
}

/// The algorithm, over the header and its `parties` slots.
pub(crate) struct BarrierCore<'a> {
    pub(crate) header: &'a BarrierHeader,
    pub(crate) slots: &'a [BarrierSlot],
}

impl BarrierCore<'_> {
    fn parties(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Arrive and wait for the others; the arrival index.
    pub(crate) fn wait(&self, wait: &mut crate::wait::Wait<'_>) -> std::result::Result<u32, Fail> {
        let h = self.header;
        let parties = self.parties();
        let (index, seen) = loop {
            let st = h.state.load(Ordering::SeqCst);
            let p = phase(st);
            let a = arrived(st);
            if p & BROKEN != 0 {
                return Err(Fail::Broken);
            }
            if a >= parties {
                // Not a state a barrier reaches: break it (a peer wrote it).
                self.break_phase(p);
                return Err(Fail::Broken);
            }
            if a + 1 == parties {
                for slot in &self.slots[..a as usize] {
                    slot.stamp.store(0, Ordering::Relaxed);
                }
                let next = next_phase(p) as u64;
                if h.state
                    .compare_exchange(st, next, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.wake();
                    return Ok(a);
                }
                continue;
            }
            if h.state
                .compare_exchange(st, st + ARRIVAL, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                crate::fault::pause_point("coord.barrier.arrived");
                self.slots[a as usize]
                    .stamp
                    .store(my_stamp(), Ordering::Release);
                break (a, p);
            }
        };
        let mut spin = Spin::default();
        let since = std::time::Instant::now();
        loop {
            let st = h.state.load(Ordering::SeqCst);
            let p = phase(st);
            if p != seen {
                if p == seen | BROKEN || h.reset_from.load(Ordering::SeqCst) == seen | BROKEN {
                    return Err(Fail::Broken);
                }
                return Ok(index);
            }
            if spin.snooze() {
                continue;
            }
            if (cfg!(loom) || since.elapsed() >= super::LIVENESS_EVERY)
                && self.party_died(arrived(st), index)
            {
                self.break_phase(seen);
                return Err(Fail::Broken);
            }
            if let Err(stop) = self.sleep(seen, wait) {
                self.break_phase(seen);
                return Err(Fail::Stopped(stop));
            }
        }
    }

    /// Whether a party arrived before `arrived` (not us, `me`) has died.
    fn party_died(&self, arrived: u32, me: u32) -> bool {
        self.slots
            .iter()
            .take(arrived.min(self.parties()) as usize)
            .enumerate()
            .any(|(i, slot)| {
                let stamp = slot.stamp.load(Ordering::Acquire);
                i as u32 != me && stamp != 0 && !stamp_alive(stamp)
            })
    }

    fn sleep(&self, seen: u32, wait: &mut crate::wait::Wait<'_>) -> std::result::Result<(), Stop> {
        let h = self.header;
        if wait.interrupted() {
            return Err(Stop::Interrupted);
        }
        let Some(nap) = wait.deadline.next_sleep() else {
            return Err(Stop::TimedOut);
        };
        h.waiters.fetch_add(1, Ordering::SeqCst);
        #[cfg(not(loom))]
        crate::wait::futex_wait_low(&h.state, seen, Some(nap.min(super::LIVENESS_EVERY)));
        #[cfg(loom)]
        {
            let _ = (seen, nap);
            loom::thread::yield_now();
        }
        h.waiters.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    fn wake(&self) {
        if self.header.waiters.load(Ordering::SeqCst) != 0 {
            crate::wait::futex_wake_low(&self.header.state);
        }
    }

    /// Break the generation whose phase is `p` (nothing if it is over).
    pub(crate) fn break_phase(&self, p: u32) {
        let h = self.header;
        let mut st = h.state.load(Ordering::SeqCst);
        while phase(st) == p && p & BROKEN == 0 {
            match h.state.compare_exchange(
                st,
                st | BROKEN as u64,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => st = now,
            }
        }
        self.wake();
    }

    /// Break the current generation.
    pub(crate) fn abort(&self) {
        let p = phase(self.header.state.load(Ordering::SeqCst));
        self.break_phase(p);
    }

    /// A new generation with nobody arrived, not broken; waiters of the
    /// old one fail.
    pub(crate) fn reset(&self) {
        let h = self.header;
        loop {
            let st = h.state.load(Ordering::SeqCst);
            let p = phase(st);
            // With the broken bit set: never the initial 0.
            h.reset_from.store(p | BROKEN, Ordering::SeqCst);
            for slot in self.slots {
                slot.stamp.store(0, Ordering::Relaxed);
            }
            if h.state
                .compare_exchange(
                    st,
                    next_phase(p) as u64,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                break;
            }
        }
        self.wake();
    }

    pub(crate) fn n_waiting(&self) -> u32 {
        let st = self.header.state.load(Ordering::Acquire);
        if phase(st) & BROKEN != 0 {
            0
        } else {
            arrived(st)
        }
    }

    pub(crate) fn is_broken(&self) -> bool {
        phase(self.header.state.load(Ordering::Acquire)) & BROKEN != 0
    }
}

/// What a [`Barrier::wait`] returns: the arrival index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarrierWaitResult {
    index: u32,
    parties: u32,
}

impl BarrierWaitResult {
    /// The arrival index: 0 for the first party, `parties - 1` for the last.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Whether this party arrived last and tripped the barrier (one party
    /// per round is the leader, as `std::sync::BarrierWaitResult`).
    pub fn is_leader(&self) -> bool {
        self.index + 1 == self.parties
    }
}

/// A barrier shared by processes: `parties` callers of
/// [`wait`](Barrier::wait) meet, then all go on.
///
/// ```
/// use shmds::{Error, Segment};
/// use std::time::Duration;
/// # let name = format!("doc-barrier-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let start = seg.create_barrier("start", 1)?;
/// assert!(start.wait()?.is_leader()); // one party: trips at once
///
/// let pair = seg.create_barrier("pair", 2)?;
/// // Nobody else comes: the timeout breaks the barrier.
/// assert!(matches!(pair.wait_timeout(Duration::from_millis(5)), Err(Error::Timeout { .. })));
/// assert!(pair.is_broken());
/// assert!(matches!(pair.wait(), Err(Error::BrokenBarrier { .. })));
/// pair.reset();
/// assert!(!pair.is_broken());
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    handle: Handle,
    header: *const BarrierHeader,
    slots: *const BarrierSlot,
    parties: u32,
}

super::primitive_common!(Barrier);

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("name", &self.name())
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

/// The most parties a barrier has.
pub const MAX_BARRIER_PARTIES: u32 = 1 << 20;

impl Primitive for Barrier {
    const KIND: u32 = kind::BARRIER;
    const SHAPE: &'static str = "parties";

    fn block_size(capacity: u64) -> Result<u64> {
        if capacity == 0 || capacity > MAX_BARRIER_PARTIES as u64 {
            return Err(Error::InvalidArgument(format!(
                "a barrier has 1..={MAX_BARRIER_PARTIES} parties, not {capacity}"
            )));
        }
        crate::handle::block_size(BARRIER_HEADER_SIZE, capacity, BARRIER_SLOT_SIZE)
    }

    unsafe fn init(block: *mut u8, capacity: u64, _flags: u32) {
        let h = block.cast::<BarrierHeader>();
        // SAFETY: a fresh block of block_size(capacity) bytes, unpublished;
        // the state and slots start zero (generation 0, nobody arrived).
        unsafe {
            std::ptr::addr_of_mut!((*h).kind).write(kind::BARRIER);
            std::ptr::addr_of_mut!((*h).parties).write(capacity as u32);
            std::ptr::addr_of_mut!((*h).slots_offset).write(BARRIER_HEADER_SIZE);
        }
    }

    fn from_handle(handle: Handle) -> Result<Barrier> {
        let validated = (|| {
            let header: &BarrierHeader =
                super::header(&handle, kind::BARRIER, BARRIER_HEADER_SIZE)?;
            let line = handle.first_line();
            let parties = handle.info.capacity;
            let fits = Self::block_size(parties).is_ok_and(|n| n <= handle.info.size);
            if line.u32_at(std::mem::offset_of!(BarrierHeader, parties)) as u64 != parties
                || line.u64_at(std::mem::offset_of!(BarrierHeader, slots_offset))
                    != BARRIER_HEADER_SIZE
                || !fits
            {
                return Err(handle.corrupt(
                    "barrier header disagrees with its table entry or overruns its block",
                ));
            }
            Ok((header as *const BarrierHeader, parties as u32))
        })();
        let (header, parties) = handle.fresh(validated)?;
        // SAFETY: the slots lie inside the block (block_size checked above).
        let slots = unsafe {
            handle
                .block
                .add(BARRIER_HEADER_SIZE as usize)
                .cast::<BarrierSlot>()
        };
        Ok(Barrier {
            handle,
            header,
            slots,
            parties,
        })
    }

    fn status(&self) -> Status {
        let core = self.core();
        let waiting = core.n_waiting();
        let broken = core.is_broken();
        Status {
            kind: "barrier",
            waiters: waiting,
            value: Some(waiting as u64),
            summary: if broken {
                format!(
                    "broken ({} parties; reset it to use it again)",
                    self.parties
                )
            } else {
                format!("{waiting} of {} parties waiting", self.parties)
            },
            ..Status::default()
        }
    }
}

impl Barrier {
    fn core(&self) -> BarrierCore<'_> {
        // SAFETY: validated at open: the header and `parties` slots lie in
        // the block, which the mapping keeps alive as long as `handle`.
        unsafe {
            BarrierCore {
                header: &*self.header,
                slots: std::slice::from_raw_parts(self.slots, self.parties as usize),
            }
        }
    }

    /// Wait for all parties. Fails with [`Error::BrokenBarrier`] if the
    /// barrier is or becomes broken.
    pub fn wait(&self) -> Result<BarrierWaitResult> {
        self.wait_interruptible(None, None)
    }

    /// [`wait`](Barrier::wait) at most `timeout`: if the others do not come
    /// in time, the barrier breaks (for all) and this fails with
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult> {
        self.wait_interruptible(Some(timeout), None)
    }

    /// Wait at most `timeout` (`None`: no limit) while `interrupt` returns
    /// `false`; a timeout or an interrupt breaks the barrier.
    pub fn wait_interruptible(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<BarrierWaitResult> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        match self.core().wait(&mut wait) {
            Ok(index) => Ok(BarrierWaitResult {
                index,
                parties: self.parties,
            }),
            Err(Fail::Broken) => Err(Error::BrokenBarrier {
                name: self.name().to_owned(),
            }),
            Err(Fail::Stopped(stop)) => Err(stop.error(&self.handle)),
        }
    }

    /// Break the barrier: every waiter, and every caller until
    /// [`reset`](Barrier::reset), fails with [`Error::BrokenBarrier`].
    pub fn abort(&self) {
        if self.handle.check().is_ok() {
            self.core().abort();
        }
    }

    /// Make the barrier new: not broken, nobody waiting (waiters fail with
    /// [`Error::BrokenBarrier`]).
    pub fn reset(&self) {
        if self.handle.check().is_ok() {
            self.core().reset();
        }
    }

    /// Parties needed to trip it.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.core().n_waiting()
    }

    /// Whether it is broken.
    pub fn is_broken(&self) -> bool {
        self.core().is_broken()
    }

    /// Wake every waiter (they look at their interrupt checks).
    pub fn wake_waiters(&self) {
        crate::wait::futex_wake_low(&self.core().header.state);
    }
}
