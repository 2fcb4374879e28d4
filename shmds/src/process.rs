//! Who we are and whether a peer process is still alive.
//!
//! Crash recovery in this crate rests on one question: "is the process that
//! holds this claim still running?". We answer it with `kill(pid, 0)` and, for
//! a process that exists, a look at `/proc/<pid>/stat` so that an unreaped
//! zombie counts as dead. Limits, also stated in FORMAT.md: all processes that
//! share a segment must share a PID namespace, and a PID reused by an unrelated
//! process is taken as alive (recovery then waits until that process ends).

/// The calling process's id, as stored in claim words.
#[cfg(not(loom))]
pub(crate) fn current_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Under loom each model thread plays a distinct process.
#[cfg(loom)]
pub(crate) fn current_pid() -> u32 {
    // loom's ThreadId prints as "ThreadId(n)"; n is unique within a model.
    let text = format!("{:?}", loom::thread::current().id());
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse::<u32>().map_or(1, |n| n + 1)
}

/// Whether process `pid` is running (not gone, not a zombie).
#[cfg(not(loom))]
pub(crate) fn is_alive(pid: u32) -> bool {
    let Some(raw) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // EPERM means it exists but belongs to someone else: alive.
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(raw) {
        return false;
    }
    // A killed child stays a zombie until its parent reaps it: count it dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the last ')' (the command name may contain ')').
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => true,
    }
}

#[cfg(loom)]
pub(crate) fn is_alive(_pid: u32) -> bool {
    true
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive() {
        assert!(is_alive(current_pid()));
    }

    #[test]
    fn reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn zombie_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Let it exit without reaping it.
        for _ in 0..200 {
            if !is_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_alive(pid));
        child.wait().unwrap();
    }
}
