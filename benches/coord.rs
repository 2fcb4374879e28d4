//! Coordination benchmarks (issue 15), a plain program (`harness = false`),
//! each shmds figure beside its peer's in the same run, rounds alternated:
//!
//! - uncontended lock + unlock, one thread: shmds `Lock` against a pthread
//!   robust, process-shared mutex in a shared mapping, `parking_lot::Mutex`
//!   and `std::sync::Mutex` (in-process);
//! - contended handoff between two processes: both increment a shared
//!   counter under the lock; time per acquisition, shmds against the pthread
//!   robust mutex;
//! - wake-up across processes: two processes ping-pong through two events
//!   (each side waits for its event, clears it, sets the other's); median
//!   and p99 of half a round trip.
//!
//! `cargo bench -p shmds --bench coord`; `SHMDS_BENCH_QUICK=1` for a smoke
//! run. Segments are named `shmds-bench-coord-<pid>-...` and removed on exit.

use shmds::Segment;
use std::time::{Duration, Instant};

struct Owned(String);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

fn quick() -> bool {
    std::env::var_os("SHMDS_BENCH_QUICK").is_some()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A pthread mutex, robust and process-shared, in an anonymous shared
/// mapping (inherited by a forked child).
struct RobustMutex {
    m: *mut libc::pthread_mutex_t,
    counter: *mut u64,
}

impl RobustMutex {
    fn new() -> RobustMutex {
        // SAFETY: a fresh anonymous shared mapping, sized for the mutex and
        // a counter; the attribute calls get valid pointers.
        unsafe {
            let size = 4096;
            let p = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let m = p.cast::<libc::pthread_mutex_t>();
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(m, &attr), 0);
            RobustMutex {
                m,
                counter: p.cast::<u8>().add(256).cast::<u64>(),
            }
        }
    }

    #[inline]
    fn lock_unlock(&self, bump: bool) {
        // SAFETY: the mutex was initialised; the counter is only touched
        // while it is held.
        unsafe {
            let r = libc::pthread_mutex_lock(self.m);
            if r == libc::EOWNERDEAD {
                libc::pthread_mutex_consistent(self.m);
            }
            if bump {
                *self.counter += 1;
            }
            libc::pthread_mutex_unlock(self.m);
        }
    }
}

fn time_per_op(n: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn uncontended(seg: &Segment) {
    let n = if quick() { 200_000 } else { 5_000_000 };
    let lock = seg.create_lock("uncontended").unwrap();
    let robust = RobustMutex::new();
    let pl = parking_lot::Mutex::new(0u64);
    let std_m = std::sync::Mutex::new(0u64);
    let (mut s, mut r, mut p, mut m) = (vec![], vec![], vec![], vec![]);
    for _ in 0..7 {
        s.push(time_per_op(n, || {
            drop(std::hint::black_box(lock.lock().ok()))
        }));
        r.push(time_per_op(n, || robust.lock_unlock(false)));
        p.push(time_per_op(n, || *pl.lock() += 1));
        m.push(time_per_op(n, || *std_m.lock().unwrap() += 1));
    }
    let (s, r, p, m) = (
        median(&mut s),
        median(&mut r),
        median(&mut p),
        median(&mut m),
    );
    println!("uncontended lock+unlock, 1 thread, median of 7 rounds of {n}:");
    println!("  shmds Lock                {s:6.1} ns");
    println!(
        "  pthread robust pshared    {r:6.1} ns   shmds/pthread = {:.2}",
        s / r
    );
    println!(
        "  parking_lot::Mutex        {p:6.1} ns   shmds/parking_lot = {:.2}",
        s / p
    );
    println!("  std::sync::Mutex          {m:6.1} ns");
}

/// Fork a child that runs `f`, then exits.
fn fork(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark is single-threaded when it forks; the child
    // runs `f` and exits without returning into the parent's code.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            f();
            libc::_exit(0);
        }
        pid
    }
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0, "benchmark child failed");
}

fn contended(seg: &Segment) {
    let n = if quick() { 50_000 } else { 1_000_000 };
    let lock = seg.create_lock("contended").unwrap();
    let robust = RobustMutex::new();
    // The same critical section for both: a plain increment of a counter
    // in an anonymous shared mapping (the other mutex's page, other line).
    // SAFETY: inside the mapping RobustMutex made (4096 bytes).
    let counter = unsafe { robust.counter.cast::<u8>().add(256).cast::<u64>() } as usize;
    let run_shmds = || {
        let work = || {
            for _ in 0..n {
                let _g = lock.lock().unwrap();
                // SAFETY: only touched while the shmds lock is held.
                unsafe { *(counter as *mut u64) += 1 };
            }
        };
        let start = Instant::now();
        let child = fork(work);
        work();
        reap(child);
        start.elapsed().as_nanos() as f64 / (2 * n) as f64
    };
    let run_robust = || {
        let work = || {
            for _ in 0..n {
                robust.lock_unlock(true);
            }
        };
        let start = Instant::now();
        let child = fork(work);
        work();
        reap(child);
        start.elapsed().as_nanos() as f64 / (2 * n) as f64
    };
    let (mut s, mut r) = (vec![], vec![]);
    for _ in 0..5 {
        s.push(run_shmds());
        r.push(run_robust());
    }
    // SAFETY: both children are reaped; nobody else touches the counter.
    assert_eq!(unsafe { *(counter as *const u64) }, 5 * 2 * n);
    // SAFETY: both children are reaped; nobody else touches the counter.
    assert_eq!(unsafe { *robust.counter }, 5 * 2 * n);
    let (s, r) = (median(&mut s), median(&mut r));
    println!("contended handoff, 2 processes x {n} lock+increment+unlock, median of 5:");
    println!("  shmds Lock                {s:6.1} ns per acquisition");
    println!(
        "  pthread robust pshared    {r:6.1} ns   shmds/pthread = {:.2}",
        s / r
    );
}

fn wakeup(seg: &Segment) {
    let rounds = if quick() { 200 } else { 5_000 };
    let ping = seg.create_event("ping").unwrap();
    let pong = seg.create_event("pong").unwrap();
    let child = fork(|| {
        for _ in 0..rounds {
            ping.wait().unwrap();
            ping.clear();
            pong.set();
        }
    });
    let mut half = Vec::with_capacity(rounds);
    for i in 0..rounds {
        // Every tenth round the peer has gone to sleep on the futex.
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let start = Instant::now();
        ping.set();
        pong.wait().unwrap();
        pong.clear();
        half.push(start.elapsed().as_nanos() as f64 / 2.0);
    }
    reap(child);
    let mut asleep: Vec<f64> = half.iter().step_by(10).copied().collect();
    let p99 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[(v.len() * 99 / 100).min(v.len() - 1)]
    };
    let m_all = median(&mut half.clone());
    let p_all = p99(&mut half);
    let m_sleep = median(&mut asleep.clone());
    let p_sleep = p99(&mut asleep);
    println!("event wake-up across 2 processes, half a round trip, {rounds} rounds:");
    println!(
        "  peer awake (spinning)     median {:6.2} us, p99 {:6.2} us",
        m_all / 1e3,
        p_all / 1e3
    );
    println!(
        "  peer asleep on the futex  median {:6.2} us, p99 {:6.2} us",
        m_sleep / 1e3,
        p_sleep / 1e3
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let name = Owned(format!("shmds-bench-coord-{}", std::process::id()));
    let seg = Segment::create(&name.0, 1 << 20).unwrap();
    uncontended(&seg);
    contended(&seg);
    wakeup(&seg);
}
