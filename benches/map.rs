//! Map benchmarks, each beside the peer it is compared with, at 50 % and
//! 90 % load (keys present / capacity):
//!
//! - one thread: `get` hit, `get` miss and `insert` (overwrite) of u64 -> u64,
//!   shmds `Map` vs `std::collections::HashMap` (default hasher);
//! - two threads, a mixed workload (90 % get, 10 % insert over the present
//!   keys): shmds `Map` vs `Mutex<HashMap>` and `dashmap::DashMap`.
//!
//! Run with `make bench`; the ratios printed at the end go to BENCHMARKS.md.

mod common;
use common::ratio;
use criterion::{black_box, Criterion};
use dashmap::DashMap;
use shmds::{Map, Segment};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CAPACITY: u64 = 1 << 16;
const LOADS: [u64; 2] = [50, 90];

/// Keys that look random, so neither table sees a friendly pattern.
fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5555
}

/// A visiting order of `n` items that jumps around (a stride coprime to n).
fn order(n: u64) -> impl Iterator<Item = u64> {
    let stride = (n / 2 + 1) | 1;
    let stride = (stride..).find(|s| gcd(*s, n) == 1).unwrap();
    (0..).map(move |i: u64| (i.wrapping_mul(stride)) % n)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

struct Shm(String);

impl Drop for Shm {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

fn shmds_map(load: u64) -> (Shm, Map<u64, u64>, u64) {
    let name = format!("shmds-bench-map-{load}-{}", std::process::id());
    let _ = Segment::remove(&name);
    let seg = Segment::create(&name, 64 << 20).unwrap();
    let m = seg.create_map::<u64, u64>("m", CAPACITY as usize).unwrap();
    let n = CAPACITY * load / 100;
    for i in 0..n {
        m.insert(key(i), i).unwrap();
    }
    (Shm(name), m, n)
}

fn std_map(n: u64) -> HashMap<u64, u64> {
    // Same number of keys; std sizes its own table.
    let mut h = HashMap::with_capacity(CAPACITY as usize);
    for i in 0..n {
        h.insert(key(i), i);
    }
    h
}

fn single_thread(c: &mut Criterion) {
    for load in LOADS {
        let (_shm, m, n) = shmds_map(load);
        let mut h = std_map(n);
        let mut g = c.benchmark_group(format!("map {load}% load"));
        let mut hit = order(n);
        g.bench_function("shmds get hit", |b| {
            b.iter(|| black_box(m.get(&key(hit.next().unwrap())).unwrap()))
        });
        let mut hit = order(n);
        g.bench_function("HashMap get hit", |b| {
            b.iter(|| black_box(h.get(&key(hit.next().unwrap())).copied()))
        });
        let mut miss = order(n).map(move |i| i + CAPACITY);
        g.bench_function("shmds get miss", |b| {
            b.iter(|| black_box(m.get(&key(miss.next().unwrap())).unwrap()))
        });
        let mut miss = order(n).map(move |i| i + CAPACITY);
        g.bench_function("HashMap get miss", |b| {
            b.iter(|| black_box(h.get(&key(miss.next().unwrap())).copied()))
        });
        let mut at = order(n);
        g.bench_function("shmds insert", |b| {
            b.iter(|| {
                let i = at.next().unwrap();
                black_box(m.insert(key(i), i).unwrap())
            })
        });
        let mut at = order(n);
        g.bench_function("HashMap insert", |b| {
            b.iter(|| {
                let i = at.next().unwrap();
                black_box(h.insert(key(i), i))
            })
        });
        g.finish();
    }
}

/// Run `op(thread, i)` for i in 0..iters on two threads at once; the time
/// per operation is the wall time over 2 * iters.
fn two_threads(iters: u64, op: &(impl Fn(u64, u64) + Sync)) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            s.spawn(move || {
                for i in 0..iters {
                    op(t, i);
                }
            });
        }
    });
    start.elapsed() / 2
}

/// The mixed workload: the i-th operation of thread t, over n present keys.
/// Returns (key index, is_insert).
#[inline]
fn mixed(t: u64, i: u64, n: u64) -> (u64, bool) {
    let x = (i + t * 7_919).wrapping_mul(0x2545_f491_4f6c_dd1d);
    ((x >> 20) % n, (x >> 8) % 10 == 0)
}

fn concurrent(c: &mut Criterion) {
    let load = 50;
    let (_shm, m, n) = shmds_map(load);
    let locked = Mutex::new(std_map(n));
    let dash: DashMap<u64, u64> = DashMap::with_capacity(CAPACITY as usize);
    for i in 0..n {
        dash.insert(key(i), i);
    }
    let mut g = c.benchmark_group("map 2 threads");
    g.bench_function("shmds mixed 90/10", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let (k, write) = mixed(t, i, n);
                if write {
                    m.insert(key(k), i).unwrap();
                } else {
                    black_box(m.get(&key(k)).unwrap());
                }
            })
        })
    });
    g.bench_function("Mutex<HashMap> mixed 90/10", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let (k, write) = mixed(t, i, n);
                let mut h = locked.lock().unwrap();
                if write {
                    h.insert(key(k), i);
                } else {
                    black_box(h.get(&key(k)).copied());
                }
            })
        })
    });
    g.bench_function("DashMap mixed 90/10", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let (k, write) = mixed(t, i, n);
                if write {
                    dash.insert(key(k), i);
                } else {
                    black_box(dash.get(&key(k)).map(|v| *v));
                }
            })
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    single_thread(&mut c);
    concurrent(&mut c);
    c.final_summary();
    println!("\nratios of medians (lower is better for shmds):");
    for load in LOADS {
        let group = format!("map {load}% load");
        for op in ["get hit", "get miss", "insert"] {
            ratio(
                &format!("{load}% load, {op}: shmds / HashMap"),
                (&group, &format!("shmds {op}")),
                (&group, &format!("HashMap {op}")),
            );
        }
    }
    ratio(
        "2 threads mixed: shmds / Mutex<HashMap>",
        ("map 2 threads", "shmds mixed 90/10"),
        ("map 2 threads", "Mutex<HashMap> mixed 90/10"),
    );
    ratio(
        "2 threads mixed: shmds / DashMap",
        ("map 2 threads", "shmds mixed 90/10"),
        ("map 2 threads", "DashMap mixed 90/10"),
    );
}
