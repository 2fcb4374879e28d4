//! Queue and stack benchmarks, each beside the peer it is compared with.
//!
//! - push+pop pair, one thread: shmds Queue / Stack vs crossbeam ArrayQueue
//! - 1 producer -> 1 consumer throughput of u64: threads (shmds, crossbeam,
//!   rtrb) and separate processes (shmds, one element per call and batches
//!   of 256 through `push_slice`/`try_pop_into`, which claim runs)
//! - round trip between two processes: shmds queues vs a raw shared
//!   cache-line ping-pong (the physical floor); the same between two threads
//!   for crossbeam, to show where a peer of the same family lands
//! - blocking wake-up latency across processes (futex), median and p99
//!
//! Run with `make bench`; the ratios printed at the end go to BENCHMARKS.md.

mod common;
use common::ratio;
use criterion::{black_box, Criterion, Throughput};
use crossbeam_queue::ArrayQueue;
use shmds::Segment;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMDS_BENCH_ROLE";

/// Elements per call in the batch benchmark.
const BATCH: usize = 256;

struct Shm(String);

impl Shm {
    fn new(tag: &str) -> (Shm, Segment) {
        let name = format!("shmds-bench-{tag}-{}", std::process::id());
        let _ = Segment::remove(&name);
        let seg = Segment::create(&name, 64 << 20).unwrap();
        (Shm(name), seg)
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

fn spawn(role: &str, seg: &str, n: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env("SHMDS_BENCH_SEG", seg)
        .env("SHMDS_BENCH_N", n.to_string())
        .spawn()
        .unwrap()
}

/// The atomic word behind element `i` of a u64 array.
fn word(a: &shmds::Array<u64>, i: usize) -> &AtomicU64 {
    // SAFETY: the array has at least i + 1 elements, 8-aligned, and lives as
    // long as `a`; AtomicU64 has the layout of u64.
    unsafe { &*(a.as_ptr().add(i) as *const AtomicU64) }
}

fn now_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Child processes: consumer, pong, raw pong, waker target.
fn child(role: &str) {
    let seg = Segment::open(&std::env::var("SHMDS_BENCH_SEG").unwrap()).unwrap();
    let n: u64 = std::env::var("SHMDS_BENCH_N").unwrap().parse().unwrap();
    let flags = seg.open_array::<u64>("flags").unwrap();
    match role {
        "consumer" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            word(&flags, 0).store(1, Ordering::SeqCst); // ready
            let mut got = 0;
            while got < n {
                if q.try_pop().unwrap().is_some() {
                    got += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
            word(&flags, 1).store(1, Ordering::SeqCst); // done
        }
        "batch-consumer" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            word(&flags, 0).store(1, Ordering::SeqCst);
            let mut buf = [0u64; BATCH];
            let mut got = 0;
            while got < n {
                match q.try_pop_into(&mut buf).unwrap() {
                    0 => std::hint::spin_loop(),
                    k => got += k as u64,
                }
            }
            word(&flags, 1).store(1, Ordering::SeqCst);
        }
        "pong" => {
            let ping = seg.open_queue::<u64>("ping").unwrap();
            let pong = seg.open_queue::<u64>("pong").unwrap();
            word(&flags, 0).store(1, Ordering::SeqCst);
            for _ in 0..n {
                let v = loop {
                    match ping.try_pop().unwrap() {
                        Some(v) => break v,
                        None => std::hint::spin_loop(),
                    }
                };
                while !pong.try_push(v).unwrap() {
                    std::hint::spin_loop();
                }
            }
        }
        "raw-pong" => {
            let cell = word(&flags, 8);
            word(&flags, 0).store(1, Ordering::SeqCst);
            for i in 0..n {
                while cell.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                cell.store(2 * i + 2, Ordering::Release);
            }
        }
        "sleeper" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let lat = seg.open_array::<u64>("lat").unwrap();
            word(&flags, 0).store(1, Ordering::SeqCst);
            for i in 0..n {
                let sent = q.pop(None).unwrap();
                lat.set(i as usize, now_ns() - sent).unwrap();
                word(&flags, 1).store(i + 1, Ordering::SeqCst);
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn wait_flag(flags: &shmds::Array<u64>, i: usize, value: u64) {
    while word(flags, i).load(Ordering::SeqCst) < value {
        std::hint::spin_loop();
    }
}

fn pairs(c: &mut Criterion) {
    let (_shm, seg) = Shm::new("pair");
    let q = seg.create_queue::<u64>("q", 1024).unwrap();
    let s = seg.create_stack::<u64>("s", 1024).unwrap();
    let cb = ArrayQueue::<u64>::new(1024);
    let mut g = c.benchmark_group("pair");
    g.bench_function("shmds Queue push+pop", |b| {
        b.iter(|| {
            assert!(q.try_push(black_box(7)).unwrap());
            black_box(q.try_pop().unwrap().unwrap())
        })
    });
    g.bench_function("crossbeam ArrayQueue push+pop", |b| {
        b.iter(|| {
            cb.push(black_box(7)).unwrap();
            black_box(cb.pop().unwrap())
        })
    });
    g.bench_function("shmds Stack push+pop", |b| {
        b.iter(|| {
            assert!(s.try_push(black_box(7)).unwrap());
            black_box(s.try_pop().unwrap().unwrap())
        })
    });
    g.finish();
}

/// One producer (this thread) and one consumer thread moving `n` items;
/// the clock runs from the moment the consumer is running until it has
/// taken the last item, so that thread start-up and exit are not counted
/// (they are tens of microseconds: counted, they dominate a small `n`, and
/// criterion then picks a small `n`).
fn threads_spsc(
    n: u64,
    mut push: impl FnMut(u64) -> bool,
    mut pop: impl FnMut() -> bool + Send + 'static,
) -> Duration {
    let ready = std::sync::Arc::new(AtomicU64::new(0));
    let seen = ready.clone();
    let consumer = std::thread::spawn(move || {
        seen.store(1, Ordering::SeqCst);
        let mut got = 0;
        while got < n {
            if pop() {
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        seen.store(2, Ordering::SeqCst);
    });
    while ready.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
    }
    let start = Instant::now();
    for i in 0..n {
        while !push(i) {
            std::hint::spin_loop();
        }
    }
    while ready.load(Ordering::SeqCst) != 2 {
        std::hint::spin_loop();
    }
    let elapsed = start.elapsed();
    consumer.join().unwrap();
    elapsed
}

fn spsc(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc");
    g.throughput(Throughput::Elements(1));
    g.bench_function("crossbeam ArrayQueue threads", |b| {
        b.iter_custom(|n| {
            let q = std::sync::Arc::new(ArrayQueue::<u64>::new(1024));
            let q2 = q.clone();
            threads_spsc(n, |i| q.push(i).is_ok(), move || q2.pop().is_some())
        })
    });
    g.bench_function("rtrb threads", |b| {
        b.iter_custom(|n| {
            let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(1024);
            threads_spsc(n, |i| tx.push(i).is_ok(), move || rx.pop().is_ok())
        })
    });
    let (_shm, seg) = Shm::new("spsc-t");
    // One queue for every call (each call drains what it pushed): no set-up
    // inside the measured routine.
    let q = std::sync::Arc::new(seg.create_queue::<u64>("q", 1024).unwrap());
    g.bench_function("shmds Queue threads", |b| {
        b.iter_custom(|n| {
            let q2 = q.clone();
            threads_spsc(
                n,
                |i| q.try_push(i).unwrap(),
                move || q2.try_pop().unwrap().is_some(),
            )
        })
    });
    g.bench_function("shmds Queue processes", |b| {
        b.iter_custom(|n| {
            let (shm, seg) = Shm::new("spsc-p");
            let q = seg.create_queue::<u64>("q", 1024).unwrap();
            let flags = seg.create_array::<u64>("flags", 16).unwrap();
            let mut child = spawn("consumer", &shm.0, n);
            wait_flag(&flags, 0, 1);
            let start = Instant::now();
            for i in 0..n {
                while !q.try_push(i).unwrap() {
                    std::hint::spin_loop();
                }
            }
            wait_flag(&flags, 1, 1);
            let elapsed = start.elapsed();
            child.wait().unwrap();
            elapsed
        })
    });
    g.bench_function("shmds Queue processes, batches of 256", |b| {
        b.iter_custom(|n| {
            let (shm, seg) = Shm::new("spsc-b");
            let q = seg.create_queue::<u64>("q", 1024).unwrap();
            let flags = seg.create_array::<u64>("flags", 16).unwrap();
            let mut child = spawn("batch-consumer", &shm.0, n);
            wait_flag(&flags, 0, 1);
            let batch: Vec<u64> = (0..BATCH as u64).collect();
            let start = Instant::now();
            let mut sent = 0;
            while sent < n {
                let k = (n - sent).min(BATCH as u64) as usize;
                match q.try_push_slice(&batch[..k]).unwrap() {
                    0 => std::hint::spin_loop(),
                    done => sent += done as u64,
                }
            }
            wait_flag(&flags, 1, 1);
            let elapsed = start.elapsed();
            child.wait().unwrap();
            elapsed
        })
    });
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("roundtrip");
    g.bench_function("raw cache-line ping-pong, 2 processes", |b| {
        b.iter_custom(|n| {
            let (shm, seg) = Shm::new("raw");
            let flags = seg.create_array::<u64>("flags", 16).unwrap();
            let cell = word(&flags, 8);
            let mut child = spawn("raw-pong", &shm.0, n);
            wait_flag(&flags, 0, 1);
            let start = Instant::now();
            for i in 0..n {
                cell.store(2 * i + 1, Ordering::Release);
                while cell.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            let elapsed = start.elapsed();
            child.wait().unwrap();
            elapsed
        })
    });
    // The same two measures between two threads, with crossbeam's queue as
    // the peer: how far above the floor a queue of this family lands.
    g.bench_function("raw cache-line ping-pong, 2 threads", |b| {
        b.iter_custom(|n| {
            let cell = std::sync::Arc::new(AtomicU64::new(0));
            let peer = cell.clone();
            let pong = std::thread::spawn(move || {
                for i in 0..n {
                    while peer.load(Ordering::Acquire) != 2 * i + 1 {
                        std::hint::spin_loop();
                    }
                    peer.store(2 * i + 2, Ordering::Release);
                }
            });
            let start = Instant::now();
            for i in 0..n {
                cell.store(2 * i + 1, Ordering::Release);
                while cell.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            let elapsed = start.elapsed();
            pong.join().unwrap();
            elapsed
        })
    });
    g.bench_function("crossbeam ArrayQueue ping-pong, 2 threads", |b| {
        b.iter_custom(|n| {
            let ping = std::sync::Arc::new(ArrayQueue::<u64>::new(1));
            let pong = std::sync::Arc::new(ArrayQueue::<u64>::new(1));
            let (ping2, pong2) = (ping.clone(), pong.clone());
            let peer = std::thread::spawn(move || {
                for _ in 0..n {
                    let v = loop {
                        match ping2.pop() {
                            Some(v) => break v,
                            None => std::hint::spin_loop(),
                        }
                    };
                    while pong2.push(v).is_err() {
                        std::hint::spin_loop();
                    }
                }
            });
            let start = Instant::now();
            for i in 0..n {
                while ping.push(i).is_err() {
                    std::hint::spin_loop();
                }
                while pong.pop().is_none() {
                    std::hint::spin_loop();
                }
            }
            let elapsed = start.elapsed();
            peer.join().unwrap();
            elapsed
        })
    });
    g.bench_function("shmds Queue ping-pong, 2 processes", |b| {
        b.iter_custom(|n| {
            let (shm, seg) = Shm::new("pp");
            let ping = seg.create_queue::<u64>("ping", 1).unwrap();
            let pong = seg.create_queue::<u64>("pong", 1).unwrap();
            let flags = seg.create_array::<u64>("flags", 16).unwrap();
            let mut child = spawn("pong", &shm.0, n);
            wait_flag(&flags, 0, 1);
            let start = Instant::now();
            for i in 0..n {
                while !ping.try_push(i).unwrap() {
                    std::hint::spin_loop();
                }
                loop {
                    if pong.try_pop().unwrap().is_some() {
                        break;
                    }
                    std::hint::spin_loop();
                }
            }
            let elapsed = start.elapsed();
            child.wait().unwrap();
            elapsed
        })
    });
    g.finish();
}

/// Wake-up latency of a process sleeping in `pop(None)` (on the futex) after
/// a push from another process. Not a criterion benchmark: we want the
/// distribution, so we print median and p99 of many single wake-ups.
fn wake_latency() -> (u64, u64) {
    const N: u64 = 300;
    let (shm, seg) = Shm::new("wake");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let lat = seg.create_array::<u64>("lat", N as usize).unwrap();
    let flags = seg.create_array::<u64>("flags", 16).unwrap();
    let mut child = spawn("sleeper", &shm.0, N);
    wait_flag(&flags, 0, 1);
    for i in 0..N {
        // Long enough for the sleeper to pass its spin phase and sleep.
        std::thread::sleep(Duration::from_millis(2));
        q.push(now_ns(), None).unwrap();
        wait_flag(&flags, 1, i + 1);
    }
    child.wait().unwrap();
    let mut v = lat.to_vec().unwrap();
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    pairs(&mut c);
    spsc(&mut c);
    round_trip(&mut c);
    c.final_summary();
    let (p50, p99) = wake_latency();
    println!(
        "\nwake-up latency across processes (futex): median {:.1} us, p99 {:.1} us",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3
    );

    println!("\nratios of medians (lower is better for shmds):");
    ratio(
        "pair: shmds Queue / crossbeam",
        ("pair", "shmds Queue push+pop"),
        ("pair", "crossbeam ArrayQueue push+pop"),
    );
    ratio(
        "pair: shmds Stack / crossbeam",
        ("pair", "shmds Stack push+pop"),
        ("pair", "crossbeam ArrayQueue push+pop"),
    );
    ratio(
        "spsc per item: shmds threads / crossbeam threads",
        ("spsc", "shmds Queue threads"),
        ("spsc", "crossbeam ArrayQueue threads"),
    );
    ratio(
        "spsc per item: shmds processes / crossbeam threads",
        ("spsc", "shmds Queue processes"),
        ("spsc", "crossbeam ArrayQueue threads"),
    );
    ratio(
        "spsc per item: shmds processes / rtrb threads",
        ("spsc", "shmds Queue processes"),
        ("spsc", "rtrb threads"),
    );
    ratio(
        "spsc per item: shmds processes, batches of 256 / crossbeam threads",
        ("spsc", "shmds Queue processes, batches of 256"),
        ("spsc", "crossbeam ArrayQueue threads"),
    );
    ratio(
        "round trip: shmds / raw cache line",
        ("roundtrip", "shmds Queue ping-pong, 2 processes"),
        ("roundtrip", "raw cache-line ping-pong, 2 processes"),
    );
    ratio(
        "round trip, threads: crossbeam / raw cache line",
        ("roundtrip", "crossbeam ArrayQueue ping-pong, 2 threads"),
        ("roundtrip", "raw cache-line ping-pong, 2 threads"),
    );
}
