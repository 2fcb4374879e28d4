//! Waiting: shared futexes and patient spinning.
//!
//! Blocking operations sleep on a futex word that lives in the segment. The
//! futex calls never pass `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the
//! waiter's address space and could never be woken by another process.
//!
//! Under loom a futex wait is modelled as a yield (a futex may always wake
//! spuriously, so every caller already re-checks its condition).

use crate::sync::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

/// How long a sleeping waiter sleeps at most before it wakes to look for a
/// dead peer (a process killed while holding a claim never wakes anyone).
pub(crate) const RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Sleep while `*word == expected`, for at most `timeout`. Returns on wake-up,
/// time-out, signal or a changed value alike: callers re-check their condition.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    });
    // Errors are EAGAIN (value changed), ETIMEDOUT and EINTR: all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wake up to `n` sleepers on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    use rustix::thread::futex;
    let _ = futex::wake(word, futex::Flags::empty(), n);
}

#[cfg(loom)]
pub(crate) fn futex_wait(_word: &AtomicU32, _expected: u32, _timeout: Option<Duration>) {
    loom::thread::yield_now();
}

#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) {}

/// The 32-bit half of a 64-bit word that holds its low-order bits.
#[cfg(not(loom))]
fn low_half(word: &AtomicU64) -> &AtomicU32 {
    let offset = if cfg!(target_endian = "little") { 0 } else { 4 };
    // SAFETY: an AtomicU64 is 8 bytes, 8-aligned, so the 4 bytes at offset 0 or 4
    // are in bounds and 4-aligned, and AtomicU32 has the layout of u32. We only
    // hand this reference to the kernel's futex calls, which read the word
    // atomically; no Rust code performs a mixed-size access through it.
    unsafe {
        &*(word as *const AtomicU64)
            .cast::<u8>()
            .add(offset)
            .cast::<AtomicU32>()
    }
}

/// [`futex_wait`] on the low 32 bits of a 64-bit word.
#[cfg(not(loom))]
pub(crate) fn futex_wait_low(word: &AtomicU64, expected_low: u32, timeout: Option<Duration>) {
    futex_wait(low_half(word), expected_low, timeout)
}

/// [`futex_wake`] on the low 32 bits of a 64-bit word, waking every sleeper.
#[cfg(not(loom))]
pub(crate) fn futex_wake_low(word: &AtomicU64) {
    futex_wake(low_half(word), i32::MAX as u32)
}

#[cfg(loom)]
pub(crate) fn futex_wait_low(_word: &AtomicU64, _expected_low: u32, _timeout: Option<Duration>) {
    loom::thread::yield_now();
}

#[cfg(loom)]
pub(crate) fn futex_wake_low(_word: &AtomicU64) {}

/// An optional point in time by which a blocking call gives up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        Deadline(timeout.and_then(|t| Instant::now().checked_add(t)))
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        matches!(self.0, Some(end) if Instant::now() >= end)
    }

    /// Time left, capped at [`RECHECK_INTERVAL`]; `None` once the deadline passed.
    pub(crate) fn next_sleep(&self) -> Option<Duration> {
        match self.0 {
            None => Some(RECHECK_INTERVAL),
            Some(end) => {
                let left = end.checked_duration_since(Instant::now())?;
                if left.is_zero() {
                    None
                } else {
                    Some(left.min(RECHECK_INTERVAL))
                }
            }
        }
    }
}

/// How a blocking call waits: until a deadline, and while an optional
/// interrupt check (run between sleeps, at least every
/// [`RECHECK_INTERVAL`] and after every signal) says to go on.
pub(crate) struct Wait<'w> {
    pub(crate) deadline: Deadline,
    interrupt: Option<&'w mut dyn FnMut() -> bool>,
}

impl<'w> Wait<'w> {
    pub(crate) fn new(
        timeout: Option<Duration>,
        interrupt: Option<&'w mut dyn FnMut() -> bool>,
    ) -> Wait<'w> {
        Wait {
            deadline: Deadline::after(timeout),
            interrupt,
        }
    }

    /// Whether the caller asked to stop waiting.
    pub(crate) fn interrupted(&mut self) -> bool {
        self.interrupt.as_mut().is_some_and(|check| check())
    }
}

/// Back-off for waiting on a peer that is in the middle of an operation:
/// spin, then yield, then sleep in growing naps (never burning a core for
/// long). [`PeerWait::snooze`] says when it is time to ask whether the peer is
/// still alive.
#[derive(Debug, Default)]
pub(crate) struct PeerWait {
    step: u32,
    /// When the first snooze began.
    since: Option<Instant>,
}

impl PeerWait {
    #[cfg(not(loom))]
    const SPIN_STEPS: u32 = 7;
    #[cfg(not(loom))]
    const YIELD_STEPS: u32 = 12;

    pub(crate) fn new() -> PeerWait {
        PeerWait {
            step: 0,
            since: None,
        }
    }

    /// How long this wait has lasted (since the first snooze).
    pub(crate) fn waited(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// Wait a little longer than last time. Returns `true` when the wait has
    /// gone on long enough that the caller should check the peer's liveness.
    pub(crate) fn snooze(&mut self) -> bool {
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        #[cfg(loom)]
        {
            loom::thread::yield_now();
            self.step += 1;
            self.step % 4 == 0
        }
        #[cfg(not(loom))]
        {
            if self.step < Self::SPIN_STEPS {
                for _ in 0..(1u32 << self.step) {
                    core::hint::spin_loop();
                }
            } else if self.step < Self::YIELD_STEPS {
                std::thread::yield_now();
            } else {
                let nap = 20u64 << (self.step - Self::YIELD_STEPS).min(6);
                std::thread::sleep(Duration::from_micros(nap));
            }
            self.step = self.step.saturating_add(1);
            self.step >= Self::YIELD_STEPS
        }
    }
}

/// Back-off before a blocking call goes to sleep: spin in short bursts,
/// then yield the CPU a few times, and only then sleep on a futex. Staying
/// awake for a few microseconds means a peer that is about to deliver
/// does not have to make a wake-up system call (and we none to sleep),
/// which is what keeps a steady stream of messages out of a mode where
/// each one costs two system calls.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    /// Spin steps of a few pause instructions each (short, so a message
    /// is noticed within a few hundred nanoseconds), then yields.
    const SPIN_STEPS: u32 = 256;
    const SPINS_PER_STEP: u32 = 1;
    const YIELD_STEPS: u32 = Self::SPIN_STEPS + 8;

    /// Wait a little; `false` once it is time to sleep instead.
    pub(crate) fn snooze(&mut self) -> bool {
        if self.step < Self::SPIN_STEPS {
            for _ in 0..Self::SPINS_PER_STEP {
                crate::sync::spin_hint();
            }
        } else if self.step < Self::YIELD_STEPS {
            #[cfg(not(loom))]
            std::thread::yield_now();
            #[cfg(loom)]
            loom::thread::yield_now();
        } else {
            return false;
        }
        self.step += 1;
        true
    }

    /// Whether the spinning and yielding are over.
    pub(crate) fn done(&self) -> bool {
        self.step >= Self::YIELD_STEPS
    }
}
