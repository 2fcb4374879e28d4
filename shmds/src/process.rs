//! Who we are and whether a peer process is still alive.
//!
//! Crash recovery in this crate rests on one question: "is the process that
//! holds this claim still running?". We answer it with `kill(pid, 0)` and, for
//! a process that exists, a look at `/proc/<pid>/stat` so that an unreaped
//! zombie counts as dead; a zombie *leader* thread is not enough to call it
//! dead, since a process is alive while any of its threads is (its other
//! threads are read in `/proc/<pid>/task`). Limits, also stated in FORMAT.md: all processes that
//! share a segment must share a PID namespace, and a PID reused by an unrelated
//! process (or thread: `kill` accepts thread ids) is taken as alive (recovery
//! then waits until it ends). A `/proc` read that fails for another reason
//! than "gone" counts as alive too. Where a start time is recorded beside
//! the pid (segment attachments, the segment's creator), a reused pid is
//! told apart by its start time ([`is_same_process`]).

/// The calling process's id, as stored in claim words.
///
/// `getpid` is a system call (~100 ns) and every queue operation needs the
/// pid, so it is cached. A `pthread_atfork` handler clears the cache in a
/// forked child, which then reads its own pid on first use. (A child made by
/// a raw `clone` system call that skips the fork handlers would inherit the
/// parent's pid; use `fork`, `posix_spawn` or threads.)
#[cfg(not(loom))]
#[inline]
pub(crate) fn current_pid() -> u32 {
    match CACHED_PID.load(std::sync::atomic::Ordering::Relaxed) {
        0 => read_pid(),
        pid => pid,
    }
}

#[cfg(not(loom))]
static CACHED_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[cfg(not(loom))]
#[cold]
fn read_pid() -> u32 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        extern "C" fn forget_pid_in_child() {
            CACHED_PID.store(0, std::sync::atomic::Ordering::Relaxed);
            CACHED_START.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: registering a fork handler that only stores to an atomic,
        // which is async-signal-safe as the child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid_in_child)) };
    });
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    CACHED_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    pid
}

/// Under loom each model thread plays a distinct process.
#[cfg(loom)]
pub(crate) fn current_pid() -> u32 {
    // loom's ThreadId prints as "ThreadId(n)"; n is unique within a model.
    let text = format!("{:?}", loom::thread::current().id());
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    digits.parse::<u32>().map_or(1, |n| n + 1)
}

/// The start time of process `pid`: clock ticks after boot, field 22 of
/// `/proc/PID/stat` (`None` if it cannot be read or parsed). With the pid
/// it names one process: a pid reused by a later process has another.
#[cfg(not(loom))]
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may itself contain `)` or spaces, so the fields are
/// counted from the last `)`: the state (field 3) follows it.
#[cfg(not(loom))]
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after) = stat.rsplit_once(')')?;
    after.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The calling process's start time ([`start_time`] of [`current_pid`]),
/// or 0 if it cannot be read. Cached like the pid, and cleared with it in
/// a forked child (which has its own start time).
#[cfg(not(loom))]
pub(crate) fn current_start_time() -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    // The cache holds the value + 1, so that 0 means "not read yet".
    match CACHED_START.load(Relaxed) {
        0 => {
            // Reads (and caches) the pid first, which registers the fork
            // handler that clears both caches.
            let pid = current_pid();
            match start_time(pid) {
                Some(t) if t < u64::MAX => {
                    CACHED_START.store(t + 1, Relaxed);
                    t
                }
                _ => 0,
            }
        }
        cached => cached - 1,
    }
}

#[cfg(not(loom))]
static CACHED_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Under loom a model thread plays a process without a start time.
#[cfg(loom)]
pub(crate) fn current_start_time() -> u64 {
    0
}

/// Whether the process recorded as (`pid`, `start_time`) still runs: `pid`
/// is alive ([`is_alive`]) and, unless `start_time` is 0 (not recorded),
/// its start time is `start_time`, so a pid reused by a later process is
/// not taken for the one recorded. A start time that cannot be read counts
/// as matching (the answer errs to "alive", as [`is_alive`]'s does).
pub(crate) fn is_same_process(pid: u32, start_time: u64) -> bool {
    #[cfg(not(loom))]
    if start_time != 0 {
        if let Some(now) = self::start_time(pid) {
            if now != start_time {
                return false;
            }
        }
    }
    #[cfg(loom)]
    let _ = start_time;
    is_alive(pid)
}

/// Whether process `pid` is running: it exists and at least one of its
/// threads is not a zombie.
///
/// The leader thread's state alone is not enough: a program whose `main`
/// called `pthread_exit` (or whose leader thread otherwise exited) shows
/// the leader as a zombie while its other threads run on, and such a
/// process still holds its claims and locks.
#[cfg(not(loom))]
pub(crate) fn is_alive(pid: u32) -> bool {
    if EVERYONE_DEAD.with(std::cell::Cell::get) {
        return false;
    }
    // We are running, so our own process is alive: no system call.
    if pid == current_pid() {
        return true;
    }
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
    // A /proc read that fails for any reason but "gone" leaves the answer
    // open; it is then "alive": waiting for a dead process only delays,
    // taking over a live one's claim loses data.
    use std::io::ErrorKind::NotFound;
    match task_state(&format!("/proc/{pid}/stat")) {
        // A live leader (or a stat line we cannot parse): alive.
        Ok(state) if !state.is_some_and(is_zombie) => true,
        // Gone between kill and the read: dead. Other errors: alive.
        Err(e) => e.kind() != NotFound,
        // A zombie leader: a killed child not yet reaped (dead), or a
        // leader that exited before its other threads (alive while any is).
        Ok(_) => {
            let tasks = match std::fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(tasks) => tasks,
                Err(e) => return e.kind() != NotFound,
            };
            for task in tasks {
                let Ok(task) = task else {
                    return true;
                };
                match task_state(&task.path().join("stat").to_string_lossy()) {
                    Ok(Some(state)) if is_zombie(state) => {}
                    // That thread ended since the listing.
                    Err(e) if e.kind() == NotFound => {}
                    _ => return true,
                }
            }
            false
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static EVERYONE_DEAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f` with every process, this one included, taken for dead by this
/// thread's liveness questions: the structures' own recovery then takes
/// over every claim it meets. Only for a segment nobody else can be using
/// (a durable segment opened in a new boot, a restored snapshot), whose
/// stamps name processes of another boot or of another segment.
#[cfg(not(loom))]
pub(crate) fn as_if_everyone_died<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            EVERYONE_DEAD.with(|d| d.set(false));
        }
    }
    EVERYONE_DEAD.with(|d| d.set(true));
    let _reset = Reset;
    f()
}

/// Under loom no model revokes: the models' deaths go through
/// `fault::crash`.
#[cfg(loom)]
pub(crate) fn as_if_everyone_died<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// The state letter of a `/proc/.../stat` file (`None` if the line cannot
/// be parsed).
#[cfg(not(loom))]
fn task_state(path: &str) -> std::io::Result<Option<char>> {
    let stat = std::fs::read_to_string(path)?;
    // The state follows the last ')' (the command name may contain ')').
    Ok(stat
        .rsplit(')')
        .next()
        .and_then(|s| s.trim_start().chars().next()))
}

#[cfg(not(loom))]
fn is_zombie(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Under loom, a model process is alive until `fault::crash` kills it.
#[cfg(loom)]
pub(crate) fn is_alive(pid: u32) -> bool {
    !crate::fault::crash::is_dead(pid)
}

/// How long a thread trusts an "alive" answer of [`seems_alive`].
#[cfg(not(loom))]
const ALIVE_FOR: std::time::Duration = std::time::Duration::from_millis(20);

/// [`is_alive`] for callers that poll without waiting (the `try_` calls
/// of the queue and the stack): asking costs a system call and a `/proc`
/// read (microseconds), so a thread remembers its last "alive" answer for
/// 20 ms and does not ask again about that pid meanwhile. Only "alive" is
/// remembered, which can only delay taking over a dead process's claim
/// (as a blocking waiter's naps do), never take over a live one's.
#[cfg(not(loom))]
pub(crate) fn seems_alive(pid: u32) -> bool {
    use std::cell::Cell;
    std::thread_local! {
        static LAST_ALIVE: Cell<Option<(u32, std::time::Instant)>> = const { Cell::new(None) };
    }
    if let Some((p, at)) = LAST_ALIVE.with(Cell::get) {
        if p == pid && at.elapsed() < ALIVE_FOR {
            return true;
        }
    }
    let alive = is_alive(pid);
    LAST_ALIVE.with(|c| c.set(alive.then(|| (pid, std::time::Instant::now()))));
    alive
}

/// Under loom there is nothing to remember: [`is_alive`] is a lookup.
#[cfg(loom)]
pub(crate) fn seems_alive(pid: u32) -> bool {
    is_alive(pid)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive() {
        assert!(is_alive(current_pid()));
    }

    #[test]
    fn start_time_parsing() {
        // A command name with ')' and spaces; field 22 is 4242.
        let mut line = String::from("123 (a) b (c)) S");
        for field in 4..=21 {
            line.push_str(&format!(" {field}"));
        }
        line.push_str(" 4242 99 100");
        assert_eq!(parse_start_time(&line), Some(4242));
        assert_eq!(parse_start_time("123 (x) S 1 2"), None);
        assert_eq!(parse_start_time("no parenthesis"), None);
        assert_eq!(parse_start_time(""), None);
    }

    #[test]
    fn own_start_time_is_cached_and_matches() {
        let t = current_start_time();
        assert_ne!(t, 0, "/proc/self/stat is readable in tests");
        assert_eq!(start_time(current_pid()), Some(t));
        assert_eq!(current_start_time(), t);
        assert!(is_same_process(current_pid(), t));
        assert!(is_same_process(current_pid(), 0));
        // Our pid with another start time: a reused pid, not us.
        assert!(!is_same_process(current_pid(), t + 1));
        assert_eq!(start_time(0), None);
    }

    #[test]
    fn forked_child_forgets_the_cached_start_time() {
        let parent = current_start_time();
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child only loads two atomics, writes to a pipe and
        // calls _exit: no allocation or lock that another thread of the
        // parent could have held at the fork.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // The cache was cleared by the fork handler: the child's own
            // start time is not the parent's cached one. Compare through
            // the raw cache word, without allocating.
            let cleared = CACHED_START.load(std::sync::atomic::Ordering::Relaxed) == 0
                && CACHED_PID.load(std::sync::atomic::Ordering::Relaxed) == 0;
            let byte = [u8::from(cleared)];
            // SAFETY: write to the pipe, then _exit (async-signal-safe).
            unsafe {
                libc::write(fds[1], byte.as_ptr().cast(), 1);
                libc::_exit(0)
            }
        }
        assert!(child > 0);
        let mut byte = [0u8];
        // SAFETY: read one byte from our pipe, then close both ends.
        unsafe {
            assert_eq!(libc::read(fds[0], byte.as_mut_ptr().cast(), 1), 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let mut status = 0;
        // SAFETY: waiting for the child we forked.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert_eq!(byte[0], 1, "the fork handler cleared the caches");
        assert_eq!(current_start_time(), parent);
    }

    #[test]
    fn reaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn forked_child_sees_its_own_pid() {
        let parent = current_pid();
        // SAFETY: the child only calls async-signal-safe functions (getpid via
        // current_pid after the fork handler cleared the cache, write, _exit).
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: getpid has no preconditions.
            let real = unsafe { libc::getpid() } as u32;
            let ok = current_pid() != parent && current_pid() == real;
            // SAFETY: _exit ends the forked child without running the test
            // harness's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(child > 0);
        let mut status = 0;
        // SAFETY: waiting for the child we just forked.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(current_pid(), parent);
    }

    /// A process whose leader thread exited (`pthread_exit` in main) while
    /// another thread runs is alive; once that thread ends too, it is dead.
    #[test]
    fn process_with_exited_leader_is_alive() {
        /// The worker blocks reading this pipe until the parent closes it.
        static READ_END: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
        extern "C" fn worker(_: *mut libc::c_void) -> *mut libc::c_void {
            let mut byte = 0u8;
            let fd = READ_END.load(std::sync::atomic::Ordering::Relaxed);
            // SAFETY: read into a local byte, then _exit (async-signal-safe),
            // which ends the whole forked child from this thread.
            unsafe {
                libc::read(fd, (&mut byte as *mut u8).cast(), 1);
                libc::_exit(0)
            }
        }
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into the array (close-on-exec,
        // so programs other tests spawn meanwhile do not keep the pipe open).
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        READ_END.store(fds[0], std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the child only calls close, pthread_create (glibc supports
        // it after fork), the exit system call, read and _exit.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: see above; `worker` matches the start routine type.
            unsafe {
                libc::close(fds[1]);
                let mut t: libc::pthread_t = std::mem::zeroed();
                if libc::pthread_create(&mut t, std::ptr::null(), worker, std::ptr::null_mut()) != 0
                {
                    libc::_exit(2);
                }
                // End only this (the leader) thread, as pthread_exit in a C
                // main does; the raw system call does not unwind through
                // Rust frames as pthread_exit would.
                libc::syscall(libc::SYS_exit, 0);
                libc::_exit(3);
            }
        }
        assert!(child > 0);
        // SAFETY: our copy of the read end is not needed.
        unsafe { libc::close(fds[0]) };
        let pid = child as u32;
        let leader_is_zombie =
            || task_state(&format!("/proc/{pid}/stat")).is_ok_and(|s| s.is_some_and(is_zombie));
        let mut leader_gone = false;
        for _ in 0..5000 {
            if leader_is_zombie() {
                leader_gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(leader_gone, "the child's leader thread did not exit");
        assert!(is_alive(pid), "its worker thread still runs");
        // Let the worker go: it ends the process.
        // SAFETY: closing our write end of the pipe.
        unsafe { libc::close(fds[1]) };
        for _ in 0..5000 {
            if !is_alive(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!is_alive(pid), "all its threads ended");
        let mut status = 0;
        // SAFETY: waiting for the child we forked.
        while unsafe { libc::waitpid(child, &mut status, 0) } != child {}
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
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
