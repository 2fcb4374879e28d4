//! Durable segments and snapshots (issue 19), a plain program
//! (`harness = false`):
//!
//! - queue push+pop pair on a durable segment (a file under `target/`)
//!   against the same on a /dev/shm segment, alternating A B A B, ratio
//!   per pair;
//! - snapshot of a quiet segment of 256 MiB (a 64 MiB array filled with
//!   varied values, the rest zero): the first (every chunk new), a second
//!   (nothing changed) and one after 1 % of the array changed; bytes per
//!   second of segment covered;
//! - what a snapshot costs the running processes: items per second a
//!   producer/consumer pair moves through a queue in another process pair,
//!   while snapshots are taken back to back and without, and the pause
//!   each snapshot imposes (median, worst).
//!
//! `cargo bench -p shmds --bench durable`; `SHMDS_BENCH_QUICK=1` for a
//! smoke test (small sizes). Segments and files are removed on exit.

use shmds::snapshot::Store;
use shmds::Segment;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMDS_DURABLE_BENCH_ROLE";
const MIB: u64 = 1 << 20;

struct Owned(String);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quick() -> bool {
    std::env::var_os("SHMDS_BENCH_QUICK").is_some()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// ns per push+pop pair on `seg`'s queue "q".
fn pair_ns(seg: &Segment, n: u64) -> f64 {
    let q = seg.open_queue::<u64>("q").unwrap();
    let start = Instant::now();
    for i in 0..n {
        q.try_push(i).unwrap();
        std::hint::black_box(q.try_pop().unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn durable_vs_shm(dir: &Dir) {
    let shm = Owned(format!("shmds-bench-durable-{}", std::process::id()));
    let path = dir.0.join("pair.shmds").to_str().unwrap().to_owned();
    let a = Segment::create(&shm.0, 4 * MIB).unwrap();
    let b = Segment::create(&path, 4 * MIB).unwrap();
    for s in [&a, &b] {
        s.create_queue::<u64>("q", 1024).unwrap();
        pair_ns(s, 100_000);
    }
    let n = if quick() { 100_000 } else { 5_000_000 };
    let (mut ratios, mut sa, mut sb) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..if quick() { 2 } else { 9 } {
        let x = pair_ns(&a, n);
        let y = pair_ns(&b, n);
        sa.push(x);
        sb.push(y);
        ratios.push(y / x);
    }
    println!(
        "queue pair: /dev/shm {:.1} ns, durable file {:.1} ns, ratio durable/shm median {:.3} \
         (pairs: {})",
        median(&mut sa),
        median(&mut sb),
        median(&mut ratios.clone()),
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn quiet_snapshots(dir: &Dir) {
    let size = if quick() { 16 * MIB } else { 256 * MIB };
    let shm = Owned(format!("shmds-bench-snap-{}", std::process::id()));
    let seg = Segment::create(&shm.0, size).unwrap();
    let words = (size / 4 / 8) as usize;
    let a = seg.create_array::<u64>("data", words).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u64; 4096];
    for start in (0..words).step_by(buf.len()) {
        for v in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *v = x;
        }
        let n = buf.len().min(words - start);
        a.write(start, &buf[..n]).unwrap();
    }
    let store = Store::open(dir.0.join("store")).unwrap();
    let gbps = |t: Duration| size as f64 / t.as_secs_f64() / 1e9;
    let t = Instant::now();
    let first = seg.snapshot(&store).unwrap();
    let t1 = t.elapsed();
    let t = Instant::now();
    let second = seg.snapshot(&store).unwrap();
    let t2 = t.elapsed();
    // 1 % of the array's words, spread over it.
    for i in (0..words).step_by(100) {
        a.set(i, 0).unwrap();
    }
    let t = Instant::now();
    let third = seg.snapshot(&store).unwrap();
    let t3 = t.elapsed();
    // 1 % of the array's chunks, whole.
    let chunk_words = shmds::snapshot::CHUNK_SIZE / 8;
    for c in (0..words / chunk_words).step_by(100) {
        a.set(c * chunk_words, 1).unwrap();
    }
    let t = Instant::now();
    let fourth = seg.snapshot(&store).unwrap();
    let t4 = t.elapsed();
    println!(
        "snapshot of a quiet {} MiB segment: first {:.3} s ({:.2} GB/s, {} new chunks of {}), \
         unchanged {:.3} s ({:.2} GB/s, {} new), 1 % of words changed {:.3} s ({:.2} GB/s, {} \
         new), 1 % of chunks changed {:.3} s ({:.2} GB/s, {} new)",
        size / MIB,
        t1.as_secs_f64(),
        gbps(t1),
        first.new_chunks,
        first.chunks,
        t2.as_secs_f64(),
        gbps(t2),
        second.new_chunks,
        t3.as_secs_f64(),
        gbps(t3),
        third.new_chunks,
        t4.as_secs_f64(),
        gbps(t4),
        fourth.new_chunks
    );
    let t = Instant::now();
    let copy = Owned(format!("{}-copy", shm.0));
    drop(store.restore(&fourth.id, &copy.0).unwrap());
    let tr = t.elapsed();
    println!(
        "restore of it: {:.3} s ({:.2} GB/s)",
        tr.as_secs_f64(),
        gbps(tr)
    );
}

/// Items moved per second by the pusher/popper pair over `window`.
fn moved(seg: &Segment, window: Duration) -> f64 {
    let info = seg.entry("q").unwrap().unwrap();
    let before = seg.totals(&info).unwrap().unwrap().1;
    std::thread::sleep(window);
    let after = seg.totals(&info).unwrap().unwrap().1;
    (after - before) as f64 / window.as_secs_f64()
}

fn cost_to_running(dir: &Dir) {
    let shm = Owned(format!("shmds-bench-snapload-{}", std::process::id()));
    {
        let seg = Segment::create(&shm.0, 64 * MIB).unwrap();
        seg.create_queue::<u64>("q", 4096).unwrap();
        // Some bulk, so the copy has something to copy.
        seg.create_array::<u64>("bulk", (48 * MIB / 8) as usize)
            .unwrap();
    }
    let spawn = |role: &str| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE, role).env("SHMDS_SEG", &shm.0);
        Peer(cmd.spawn().unwrap())
    };
    let _peers = [spawn("push"), spawn("pop")];
    let view = Segment::options().read_only(true).open(&shm.0).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let store = Store::open(dir.0.join("store-load")).unwrap();
    let window = Duration::from_millis(if quick() { 200 } else { 1000 });
    let (mut ratios, mut calm, mut busy, mut pauses) = (vec![], vec![], vec![], vec![]);
    for _ in 0..if quick() { 2 } else { 5 } {
        let quiet = moved(&view, window);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let during = std::thread::scope(|s| {
            let snapper = s.spawn(|| {
                let mut p = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = view.snapshot(&store).unwrap();
                    p.push(t.paused_for.as_secs_f64() * 1e3);
                }
                p
            });
            let m = moved(&view, window);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            pauses.extend(snapper.join().unwrap());
            m
        });
        calm.push(quiet);
        busy.push(during);
        ratios.push(during / quiet);
    }
    let worst = pauses.iter().cloned().fold(0.0, f64::max);
    println!(
        "running pair across processes: {:.1} M items/s without snapshots, {:.1} M/s while \
         snapshots of the 64 MiB segment run back to back (ratio median {:.2}); {} snapshots, \
         pause median {:.1} ms, worst {:.1} ms",
        median(&mut calm) / 1e6,
        median(&mut busy) / 1e6,
        median(&mut ratios),
        pauses.len(),
        median(&mut pauses.clone()),
        worst
    );
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let seg = Segment::open(&std::env::var("SHMDS_SEG").unwrap()).unwrap();
        let q = seg.open_queue::<u64>("q").unwrap();
        let mut buf = [0u64; 64];
        loop {
            if role == "push" {
                let _ = q.try_push_slice(&buf);
            } else {
                let _ = q.try_pop_into(&mut buf);
            }
        }
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = Dir(std::env::current_dir()
        .unwrap()
        .join(format!("target/bench-durable-{}", std::process::id())));
    let _ = std::fs::create_dir_all(&dir.0);
    durable_vs_shm(&dir);
    quiet_snapshots(&dir);
    cost_to_running(&dir);
}
