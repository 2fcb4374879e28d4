//! [`Once`]: run an initialiser once among all processes; if the process
//! running it dies or the initialiser fails, the next caller runs it.
//!
//! `state` is 0 before any run, [`ONCE_DONE`] after a run that completed,
//! and the runner's pid during a run. A caller that finds 0
//! compare-and-swaps its pid in (Acquire), writes `runner_stamp`, counts
//! the attempt and runs the initialiser; then it swaps `state` to
//! `ONCE_DONE` (success) or back to 0 (failure, panic), SeqCst, and wakes
//! every sleeper. Callers that find a run in progress sleep on `state`;
//! one that has watched the same runner for
//! [`LIVENESS_EVERY`](super::LIVENESS_EVERY) asks whether it runs and, if
//! not, compare-and-swaps the dead pid to its own and runs the
//! initialiser again. The initialiser must therefore cope with finding
//! the half-done work of a dead run (as after any crash).

use super::{sleep, waiter, waiting_summary, Primitive, Spin, Status, Stop, Watch};
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::layout::{kind, OnceHeader, ONCE_DONE, ONCE_HEADER_SIZE};
use crate::process::current_pid;
use crate::sync::Ordering;
use std::time::Duration;

/// What a caller found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Begin {
    /// The initialiser has run.
    Done,
    /// The caller now runs it (`Some(pid)`: after process `pid` died
    /// running it).
    Run(Option<u32>),
}

pub(crate) fn begin(
    h: &OnceHeader,
    wait: &mut crate::wait::Wait<'_>,
) -> std::result::Result<Begin, Stop> {
    let me = current_pid();
    let once = wait.deadline.expired();
    let mut spin = Spin::default();
    let mut watch = Watch::new(once);
    loop {
        let s = h.state.load(Ordering::Acquire);
        if s == ONCE_DONE {
            return Ok(Begin::Done);
        }
        let claim = if s == 0 {
            Some(None)
        } else if watch.dead(s, &h.runner_stamp) {
            Some(Some(s))
        } else {
            None
        };
        if let Some(dead) = claim {
            if h.state
                .compare_exchange(s, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                crate::fault::pause_point("coord.once.claimed");
                h.runner_stamp.store(super::my_stamp(), Ordering::Relaxed);
                h.attempts.fetch_add(1, Ordering::Relaxed);
                return Ok(Begin::Run(dead));
            }
            continue;
        }
        if once {
            return Err(Stop::TimedOut);
        }
        if spin.snooze() {
            continue;
        }
        sleep(&h.state, s, &h.waiters, wait)?;
    }
}

/// End our run: done, or failed (the next caller runs it).
pub(crate) fn finish(h: &OnceHeader, done: bool) {
    #[cfg(loom)]
    if crate::fault::crash::is_dying(current_pid()) {
        h.state.fetch_add(0, Ordering::Release);
        return;
    }
    h.runner_stamp.store(0, Ordering::Relaxed);
    h.state
        .swap(if done { ONCE_DONE } else { 0 }, Ordering::SeqCst);
    super::wake(&h.state, &h.waiters, true);
}

/// A run-once cell shared by processes.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-once-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let init = seg.create_once("schema")?;
/// assert!(init.call_once(|| { /* create tables */ })?);
/// assert!(!init.call_once(|| unreachable!())?); // ran already
/// // A failing initialiser leaves it to the next caller:
/// let other = seg.create_once("cache")?;
/// assert_eq!(other.try_call_once(|| Err::<(), _>("disk full"))?, Err("disk full"));
/// assert_eq!(other.try_call_once(|| Ok::<(), &str>(()))?, Ok(true));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Once {
    handle: Handle,
    header: *const OnceHeader,
}

super::primitive_common!(Once);

impl std::fmt::Debug for Once {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Once")
            .field("name", &self.name())
            .field("done", &self.is_done())
            .finish()
    }
}

/// A run of a [`Once`]'s initialiser in progress: [`complete`](OnceRun::complete)
/// marks it done; dropped otherwise (an error, a panic), the next caller
/// runs the initialiser.
#[must_use = "dropping the run without complete() leaves the initialiser to the next caller"]
pub struct OnceRun<'a> {
    once: &'a Once,
    /// The pid of a process that died running the initialiser before us.
    after_death: Option<u32>,
}

impl OnceRun<'_> {
    /// Mark the initialiser done.
    pub fn complete(self) {
        if self.once.handle.check().is_ok() {
            finish(self.once.header(), true);
        }
        std::mem::forget(self);
    }

    /// The pid of a process that died running the initialiser before this
    /// run, if one did (its work may be half done).
    pub fn after_death(&self) -> Option<u32> {
        self.after_death
    }

    /// Keep the run going after the value is gone (end it with
    /// [`Once::finish`]).
    pub fn leak(self) {
        std::mem::forget(self)
    }
}

impl Drop for OnceRun<'_> {
    fn drop(&mut self) {
        if self.once.handle.check().is_ok() {
            finish(self.once.header(), false);
        }
    }
}

impl Primitive for Once {
    const KIND: u32 = kind::ONCE;
    const SHAPE: &'static str = "capacity";

    fn block_size(_capacity: u64) -> Result<u64> {
        Ok(ONCE_HEADER_SIZE)
    }

    unsafe fn init(block: *mut u8, _capacity: u64, _flags: u32) {
        // SAFETY: a fresh block of ONCE_HEADER_SIZE bytes; the rest starts
        // zero (not run).
        unsafe { block.cast::<u32>().write(kind::ONCE) };
    }

    fn from_handle(handle: Handle) -> Result<Once> {
        let header: *const OnceHeader =
            handle.fresh(super::header(&handle, kind::ONCE, ONCE_HEADER_SIZE))?;
        Ok(Once { handle, header })
    }

    fn status(&self) -> Status {
        let h = self.header();
        let s = h.state.load(Ordering::Acquire);
        let waiters = h.waiters.load(Ordering::Relaxed);
        let attempts = h.attempts.load(Ordering::Relaxed);
        let (holder_pid, holder_alive, text) = match s {
            0 => (None, None, "not run".to_owned()),
            ONCE_DONE => (None, None, "done".to_owned()),
            super::GHOST_PID => (None, None, super::REVOKED.to_owned()),
            pid => {
                let alive = super::ask_alive(pid, h.runner_stamp.load(Ordering::Acquire));
                let dead = if alive { "" } else { ", which is dead" };
                (
                    Some(pid),
                    Some(alive),
                    format!("running in pid {pid}{dead}"),
                )
            }
        };
        Status {
            kind: "once",
            holder_pid,
            holder_alive,
            waiters,
            value: Some(u64::from(s == ONCE_DONE)),
            summary: format!(
                "{text}{}{}",
                if attempts > 1 {
                    format!(", {attempts} attempts")
                } else {
                    String::new()
                },
                waiting_summary(waiters)
            ),
            ..Status::default()
        }
    }
}

impl Once {
    fn header(&self) -> &OnceHeader {
        // SAFETY: validated at open; the mapping lives as long as handle.
        unsafe { &*self.header }
    }

    /// Run `f` unless it has run (here or in another process), waiting
    /// while another caller runs it. Returns whether this call ran it. If
    /// `f` panics, the next caller runs it (the panic goes on).
    pub fn call_once(&self, f: impl FnOnce()) -> Result<bool> {
        self.try_call_once(|| {
            f();
            Ok::<(), std::convert::Infallible>(())
        })
        .map(|r| r.unwrap_or_else(|never| match never {}))
    }

    /// Run the fallible `f` unless it has run: `Ok(Ok(ran))`, or
    /// `Ok(Err(e))` if `f` failed (the next caller then runs it).
    pub fn try_call_once<E>(
        &self,
        f: impl FnOnce() -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<bool, E>> {
        let Some(run) = self.begin(None, None)? else {
            return Ok(Ok(false));
        };
        match f() {
            Ok(()) => {
                run.complete();
                Ok(Ok(true))
            }
            Err(e) => {
                drop(run);
                Ok(Err(e))
            }
        }
    }

    /// Begin a run of the initialiser, waiting at most `timeout` (`None`:
    /// no limit) while another caller runs it and `interrupt` returns
    /// `false`. `Ok(None)` if it has run; [`Error::Timeout`] if the other
    /// run did not end in time.
    pub fn begin(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Option<OnceRun<'_>>> {
        self.handle.check()?;
        let mut wait = waiter(timeout, interrupt);
        match begin(self.header(), &mut wait) {
            Ok(Begin::Done) => Ok(None),
            Ok(Begin::Run(after_death)) => Ok(Some(OnceRun {
                once: self,
                after_death,
            })),
            Err(stop) => Err(stop.error(&self.handle)),
        }
    }

    /// End a run this process began (after [`OnceRun::leak`]): done, or
    /// failed. [`Error::NotOwner`] if this process runs none.
    pub fn finish(&self, done: bool) -> Result<()> {
        self.handle.check()?;
        let s = self.header().state.load(Ordering::Relaxed);
        if s != current_pid() {
            return Err(Error::NotOwner {
                name: self.name().to_owned(),
                holder: if s == ONCE_DONE { 0 } else { s },
            });
        }
        finish(self.header(), done);
        Ok(())
    }

    /// Whether the initialiser has run.
    pub fn is_done(&self) -> bool {
        self.header().state.load(Ordering::Acquire) == ONCE_DONE
    }

    /// Initialiser runs started so far (more than 1 after failures or deaths).
    pub fn attempts(&self) -> u64 {
        self.header().attempts.load(Ordering::Relaxed)
    }
}
