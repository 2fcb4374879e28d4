//! Test-only pause points (feature `fault-injection`).
//!
//! With the feature on, a process whose environment has
//! `SHMDS_PAUSE_AT=<point>` pauses when it reaches that point, after creating
//! the file named by `SHMDS_PAUSE_FILE`: for `SHMDS_PAUSE_MS` milliseconds if
//! set, otherwise for good. A test waits for the file and then kills the
//! process with SIGKILL: a crash at a known instruction. Without the feature,
//! pause points compile to nothing.

#[cfg(all(feature = "fault-injection", not(loom)))]
pub(crate) fn pause_point(point: &str) {
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let target = TARGET.get_or_init(|| std::env::var("SHMDS_PAUSE_AT").ok());
    if target.as_deref() != Some(point) {
        return;
    }
    if let Ok(path) = std::env::var("SHMDS_PAUSE_FILE") {
        let _ = std::fs::write(path, point);
    }
    let ms = std::env::var("SHMDS_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    match ms {
        Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        None => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
    }
}

#[cfg(not(any(feature = "fault-injection", loom)))]
#[inline(always)]
pub(crate) fn pause_point(_point: &str) {}

/// Under loom, a pause point is where a model thread may be made to die.
#[cfg(loom)]
pub(crate) fn pause_point(point: &str) {
    crash::reached(point)
}

/// Crashes in loom models.
///
/// Each model thread plays a process (its pid is `process::current_pid`).
/// [`crash::die_at`] runs an operation as a process that dies when it
/// reaches a given pause point: from that instruction on it does nothing
/// more, and `process::is_alive` reports its pid dead, so the survivors'
/// recovery code runs against exactly the state a SIGKILL there leaves.
/// Loom explores every interleaving of the dying process's steps with the
/// survivors', the death included.
#[cfg(loom)]
pub(crate) mod crash {
    use std::cell::RefCell;

    // Loom runs a model's threads as coroutines on one OS thread, so these
    // thread-locals are shared by all of a model's threads; `reset` clears
    // them at the start of each interleaving.
    std::thread_local! {
        static DEAD: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        static DYING: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        static DOOMED: RefCell<Vec<(u32, &'static str)>> = const { RefCell::new(Vec::new()) };
    }

    /// The unwind payload of a model process's death.
    struct Died;

    /// Start of an interleaving: nobody is dead or doomed.
    #[cfg(test)]
    pub(crate) fn reset() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info.payload().downcast_ref::<Died>().is_none() {
                    previous(info)
                }
            }));
        });
        DEAD.with(|d| d.borrow_mut().clear());
        DYING.with(|d| d.borrow_mut().clear());
        DOOMED.with(|d| d.borrow_mut().clear());
    }

    /// Whether the model process `pid` has died (as survivors see it).
    pub(crate) fn is_dead(pid: u32) -> bool {
        DEAD.with(|d| d.borrow().contains(&pid))
    }

    /// Whether the model process `pid` is dying or dead: its guards, which
    /// run while it unwinds, then do what the kernel's teardown does for a
    /// killed process (make its stores visible) and nothing a live process
    /// would (no unlocking). Survivors see it dead ([`is_dead`]) only once
    /// it has unwound, as a killed process's stores all land before anyone
    /// can tell it is gone.
    pub(crate) fn is_dying(pid: u32) -> bool {
        DYING.with(|d| d.borrow().contains(&pid)) || is_dead(pid)
    }

    pub(super) fn reached(point: &str) {
        let me = crate::process::current_pid();
        let doomed = DOOMED.with(|d| d.borrow().iter().any(|&(p, at)| p == me && at == point));
        if doomed {
            DYING.with(|d| d.borrow_mut().push(me));
            std::panic::panic_any(Died);
        }
    }

    /// Run `op` as this model thread's process, which dies at pause point
    /// `point` if it gets there: `None` then, else `Some` of what `op`
    /// returned.
    #[cfg(test)]
    pub(crate) fn die_at<R>(point: &'static str, op: impl FnOnce() -> R) -> Option<R> {
        let me = crate::process::current_pid();
        DOOMED.with(|d| d.borrow_mut().push((me, point)));
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(op)) {
            Ok(r) => {
                DOOMED.with(|d| d.borrow_mut().retain(|&(p, _)| p != me));
                Some(r)
            }
            Err(payload) if payload.downcast_ref::<Died>().is_some() => {
                DEAD.with(|d| d.borrow_mut().push(me));
                None
            }
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}
