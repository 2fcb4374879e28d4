//! Pausing a segment's other processes for the instant a snapshot copies
//! it: SIGSTOP every live attached process, wait until each of its threads
//! is stopped, and SIGCONT them all afterwards, from a guard that also runs
//! on an early return or a panic, and from a watchdog child that continues
//! them if this process dies in between.
//!
//! A stopped process is a process frozen at some instruction, so a copy
//! taken while all are stopped is the segment as a crash of all of them at
//! that instant would leave it; the restore then runs the structures' crash
//! recovery on it (see `crate::segment::revoke`).

use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// How long to wait for a process's threads to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The processes stopped, continued on drop.
pub(crate) struct Paused {
    pids: Vec<i32>,
    /// Write end of the watchdog's pipe: closing it (our exit, or drop)
    /// tells the watchdog to continue `pids` and leave.
    watchdog: Option<(i32, i32)>,
    /// How long they were stopped for.
    since: Instant,
}

impl Paused {
    /// Stop `pids` (live processes other than this one).
    pub(crate) fn stop(name: &str, pids: &[u32]) -> Result<Paused> {
        let pids: Vec<i32> = pids.iter().filter_map(|&p| i32::try_from(p).ok()).collect();
        let mut paused = Paused {
            watchdog: None,
            pids: Vec::new(),
            since: Instant::now(),
        };
        if pids.is_empty() {
            return Ok(paused);
        }
        paused.watchdog = Some(spawn_watchdog(&pids)?);
        for &pid in &pids {
            // SAFETY: kill(2) with a plain pid and signal; no memory involved.
            let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
            if rc == 0 {
                paused.pids.push(pid);
                continue;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                // Exited meanwhile: nothing to stop.
                Some(libc::ESRCH) => {}
                Some(libc::EPERM) => {
                    return Err(Error::InvalidArgument(format!(
                        "cannot pause process {pid}, attached to segment {name:?}, for a \
                         consistent snapshot: it belongs to another user (run the snapshot as \
                         that user or as root, or stop the process first)"
                    )))
                }
                _ => return Err(Error::io("kill(SIGSTOP)", err)),
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for &pid in &paused.pids {
            while !all_threads_stopped(pid) {
                if Instant::now() >= deadline {
                    return Err(Error::NotReady {
                        name: name.to_owned(),
                        detail: format!(
                            "process {pid} did not stop within {} s for the snapshot (is it in \
                             an uninterruptible wait?); nothing was written",
                            STOP_TIMEOUT.as_secs()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        paused.since = Instant::now();
        Ok(paused)
    }

    /// How many processes are stopped.
    pub(crate) fn count(&self) -> usize {
        self.pids.len()
    }

    /// How long the processes have been stopped.
    pub(crate) fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        if let Some((fd, child)) = self.watchdog.take() {
            // SAFETY: our own pipe end and our own child: closing tells it
            // to leave; waitpid reaps it.
            unsafe {
                libc::close(fd);
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
            }
        }
    }
}

/// Whether every thread of `pid` is stopped (or gone).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.trim_start().chars().next());
        if !matches!(state, Some('T' | 't' | 'Z' | 'X' | 'x') | None) {
            return false;
        }
    }
    true
}

/// Fork a child that waits for the read end of a pipe to report end of file
/// (this process closed it, or died) and then continues `pids`. Returns our
/// write end and the child's pid.
fn spawn_watchdog(pids: &[i32]) -> Result<(i32, i32)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::io("pipe2", std::io::Error::last_os_error()));
    }
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child runs only async-signal-safe calls (close, read,
    // kill, _exit) on memory that exists before the fork (`pids`), so it
    // cannot deadlock on a lock another thread held at the fork.
    let child = unsafe { libc::fork() };
    if child < 0 {
        let err = std::io::Error::last_os_error();
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(read_end);
            libc::close(write_end);
        }
        return Err(Error::io("fork", err));
    }
    if child == 0 {
        // SAFETY: see above; `pids` is a live slice copied by the fork.
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            loop {
                let n = libc::read(read_end, (&mut byte as *mut u8).cast(), 1);
                if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                    break;
                }
            }
            for &pid in pids {
                libc::kill(pid, libc::SIGCONT);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: our copy of the read end.
    unsafe { libc::close(read_end) };
    Ok((write_end, child))
}
