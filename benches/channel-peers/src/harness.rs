//! Separate-process plumbing shared by every benchmark in this binary.
//!
//! The binary re-executes itself as `channel-peers --child <role> <args...>`.
//! The parent is only an orchestrator: it never takes part in the measured
//! traffic, and while the children run it sleeps in a blocking pipe read, so
//! the two cores are left to the two (or four) processes being measured.
//!
//! Protocol, one line each, on the child's stdin/stdout (lines that do not
//! start with `@@ ` are the child's own output and are passed to stderr):
//!
//! 1. the child does all of its set-up (opening shared memory, creating its
//!    ports, waiting until its peer's ports are connected), then prints
//!    `@@ READY`;
//! 2. once every child of the run is ready, the parent reads the monotonic
//!    clock (`t0`) and writes `GO` to each child: **timing starts here, after
//!    all set-up**;
//! 3. the child does the measured work and prints `@@ DONE k=v k=v ...`, where
//!    end times are `CLOCK_MONOTONIC` nanoseconds (the same clock in every
//!    process), then exits 0.
//!
//! A throughput is `messages received / (latest consumer end - t0)`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// `CLOCK_MONOTONIC` in nanoseconds; comparable across processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `k=v` pairs a child reported in its `DONE` line.
#[derive(Debug, Default)]
pub struct Report(pub HashMap<String, String>);

impl Report {
    pub fn u64(&self, key: &str) -> u64 {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("child report has no {key}: {:?}", self.0))
            .parse()
            .unwrap_or_else(|e| panic!("child report {key}: {e}"))
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("child report has no {key}: {:?}", self.0))
            .parse()
            .unwrap_or_else(|e| panic!("child report {key}: {e}"))
    }
}

/// One child process of a run.
pub struct Proc {
    role: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    ready: bool,
}

impl Proc {
    /// Start `<this binary> --child <role> <args...>`; stderr is inherited.
    pub fn spawn(role: &str, args: &[String]) -> Proc {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .arg("--child")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn child {role}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Proc {
            role: role.to_string(),
            child,
            stdin,
            stdout,
            ready: false,
        }
    }

    /// The next protocol line (`@@ ...`, without the marker).
    fn next_line(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading from child {}: {e}", self.role));
            if n == 0 {
                let status = self.child.wait().ok();
                panic!(
                    "child {} exited before finishing the protocol (status {status:?})",
                    self.role
                );
            }
            let line = line.trim_end();
            match line.strip_prefix("@@ ") {
                Some(msg) => return msg.to_string(),
                None => eprintln!("[{}] {line}", self.role),
            }
        }
    }

    /// Wait until the child has finished its set-up (once; later calls
    /// return at once).
    pub fn wait_ready(&mut self) {
        if !self.ready {
            let line = self.next_line();
            assert_eq!(line, "READY", "child {}: expected READY", self.role);
            self.ready = true;
        }
    }

    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(b"GO\n")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("writing GO to child {}: {e}", self.role));
    }

    /// Wait for `DONE`, then for the child to exit successfully.
    pub fn finish(mut self) -> Report {
        let line = self.next_line();
        let rest = line
            .strip_prefix("DONE")
            .unwrap_or_else(|| panic!("child {}: expected DONE, got {line:?}", self.role));
        let mut report = Report::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=').expect("k=v");
            report.0.insert(k.to_string(), v.to_string());
        }
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait child");
        assert!(status.success(), "child {} failed: {status}", self.role);
        report
    }
}

impl Drop for Proc {
    /// A child left behind by a failed run is killed (it is ours: we
    /// started it and hold its handle).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Which figures pin their processes, from `CHANNEL_BENCH_PIN`:
/// `latency` (the default), `all` or `none`. A pinned run puts its i-th
/// child on CPU i (mod the number of CPUs) before GO, as iceoryx2's own
/// benchmarks pin their two sides.
///
/// Why only latency by default (iceoryx2, 3 runs each, same half hour, load
/// average ~2 from other work): ping-pong unpinned had runs at a one-way
/// median of ~350 ns and runs at ~850–1000 ns (both processes put on one
/// core, taking turns through `sched_yield`), pinned it stayed at 356–400
/// ns; throughput pinned fell to 0.4–1.9 M msg/s against 1.5–3.3 unpinned,
/// because a pinned process cannot move away from a core that other work
/// is using.
pub fn pin_latency() -> bool {
    matches!(pin_mode().as_str(), "latency" | "all")
}

pub fn pin_throughput() -> bool {
    pin_mode() == "all"
}

pub fn pin_mode() -> String {
    let mode = std::env::var("CHANNEL_BENCH_PIN").unwrap_or_else(|_| "latency".into());
    assert!(
        matches!(mode.as_str(), "latency" | "all" | "none"),
        "CHANNEL_BENCH_PIN={mode}: expected latency, all or none"
    );
    mode
}

impl Proc {
    fn pin(&self, cpu: usize) {
        // SAFETY: cpu_set_t is plain data; zeroed is the empty set, and
        // CPU_SET/sched_setaffinity get a valid pointer and its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            let rc = libc::sched_setaffinity(
                self.child.id() as libc::pid_t,
                std::mem::size_of::<libc::cpu_set_t>(),
                &set,
            );
            assert_eq!(rc, 0, "sched_setaffinity({}, cpu {cpu})", self.role);
        }
    }
}

/// Children of one run: wait until all are ready, pin them if `pin`, start
/// them together. Returns `t0` (monotonic ns), taken just before the first
/// `GO`.
pub fn start_all(procs: &mut [Proc], pin: bool) -> u64 {
    for p in procs.iter_mut() {
        p.wait_ready();
    }
    if pin {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (i, p) in procs.iter().enumerate() {
            p.pin(i % cpus);
        }
    }
    let t0 = now_ns();
    for p in procs.iter_mut() {
        p.go();
    }
    t0
}

// ------------------------------------------------------------ child side

/// Child: set-up is finished.
pub fn ready() {
    println!("@@ READY");
    std::io::stdout().flush().unwrap();
}

/// Child: block (in a pipe read, not spinning) until the parent says GO.
pub fn wait_go() {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read GO");
    assert_eq!(line.trim(), "GO", "expected GO from the parent");
}

/// Child: report results; `pairs` are `k=v` words.
pub fn done(pairs: &[(&str, String)]) {
    let mut line = String::from("@@ DONE");
    for (k, v) in pairs {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(v);
    }
    println!("{line}");
    std::io::stdout().flush().unwrap();
}

// ------------------------------------------------------------ polling

/// How every benchmark loop waits for the other side: spin with
/// `core::hint::spin_loop()` for the first `spins` empty polls in a row,
/// then `sched_yield` once per empty poll until work arrives.
///
/// - Throughput loops ([`Poll::throughput`]) spin only briefly (128 empty
///   polls by default, `CHANNEL_BENCH_SPINS`). Pure spinning is the classic
///   way to measure, but on this 2-core machine, shared with other work, the
///   scheduler often puts both processes of a run on one core; a consumer
///   that only spins then burns its time slice while the producer waits to
///   run. Measured with iceoryx2 (2 M messages, 4 runs each, same hour):
///   pure spin 0.40–0.89 M msg/s, spin 128 then yield 2.1–3.2 M msg/s.
/// - Latency loops ([`Poll::latency`]) spin much longer (65,536 empty polls,
///   `CHANNEL_BENCH_LATENCY_SPINS`), since a yield on the round trip's
///   path shows in the tail: with 128 spins iceoryx2's one-way p99 was
///   ~26 µs against ~0.5 µs spinning only, with the same median.
///
/// Use the same for the shmds variants, so that both sides see the same waits.
pub struct Poll {
    empty: u32,
    spins: u32,
}

fn env_spins(key: &str, default: u32) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Poll {
    /// Empty polls spun before yielding in throughput loops.
    pub fn throughput_spins() -> u32 {
        static SPINS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *SPINS.get_or_init(|| env_spins("CHANNEL_BENCH_SPINS", 128))
    }

    /// Empty polls spun before yielding in latency loops.
    pub fn latency_spins() -> u32 {
        static SPINS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *SPINS.get_or_init(|| env_spins("CHANNEL_BENCH_LATENCY_SPINS", 1 << 16))
    }

    pub fn throughput() -> Poll {
        Poll {
            empty: 0,
            spins: Self::throughput_spins(),
        }
    }

    pub fn latency() -> Poll {
        Poll {
            empty: 0,
            spins: Self::latency_spins(),
        }
    }

    /// An empty poll: spin or yield.
    #[inline]
    pub fn idle(&mut self) {
        if self.empty < self.spins {
            self.empty += 1;
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }

    /// Work arrived.
    #[inline]
    pub fn reset(&mut self) {
        self.empty = 0;
    }
}

// ------------------------------------------------------------ statistics

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    assert!(n > 0);
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile (0 < p <= 100) of already sorted values.
pub fn percentile_sorted(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty());
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
