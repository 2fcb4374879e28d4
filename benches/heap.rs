//! Heap benchmarks (format version 4), a plain program (`harness = false`):
//!
//! - allocate + free: `create_array::<u64>` of 1 to 16 elements and
//!   `erase`, with 1 process and with 4 processes doing it at once (median
//!   and p99 per operation, pooled over the processes);
//! - registration rate: creates per second with 10 names present and with
//!   10,000, and the ratio (lookups too);
//! - growth: the time to grow a segment from 1 MiB to 256 MiB by adding
//!   1 MiB arrays, alone and while two other processes keep opening and
//!   reading the newest arrays.
//!
//! `cargo bench -p shmds --bench heap`; `SHMDS_BENCH_QUICK=1` runs smaller
//! sizes (a smoke test, not figures). Results go into BENCHMARKS.md.
//! Segments are named `shmds-bench-heap-<pid>-...` and removed on exit,
//! also when a step fails.

use shmds::{Error, Segment};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Tells a re-run of this program which role to play.
const ROLE: &str = "SHMDS_HEAP_BENCH_ROLE";
const MIB: u64 = 1 << 20;

/// Removes a segment when dropped.
struct Owned(String);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

fn seg_name(tag: &str) -> Owned {
    Owned(format!("shmds-bench-heap-{}-{tag}", std::process::id()))
}

/// Kills and reaps a child when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, env: &[(&str, String)]) -> Peer {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Peer(cmd.spawn().expect("spawn a benchmark peer"))
}

fn var(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// Wait until `a[i]` reaches `value`.
fn wait_for(a: &shmds::Array<u64>, i: u64, value: u64) {
    let start = Instant::now();
    while a.load(i as usize).unwrap() < value {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "a peer never got ready"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ns(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.2} ms", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} µs", v as f64 / 1e3)
    } else {
        format!("{v} ns")
    }
}

/// "median X, p99 Y" of some samples.
fn summary(samples: &mut [u64]) -> String {
    samples.sort_unstable();
    format!(
        "median {}, p99 {}",
        ns(percentile(samples, 0.5)),
        ns(percentile(samples, 0.99))
    )
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let quick = std::env::var("SHMDS_BENCH_QUICK").is_ok();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# shmds heap benchmarks ({cores} cores{})",
        if quick { ", quick run" } else { "" }
    );
    println!();
    alloc_free(quick);
    println!();
    registration(quick);
    println!();
    growth(quick);
}

fn child(role: &str) {
    let seg = Segment::open(&std::env::var("SHMDS_BENCH_SEGMENT").unwrap()).unwrap();
    let ctl = Segment::open(&std::env::var("SHMDS_BENCH_CONTROL").unwrap()).unwrap();
    match role {
        "alloc" => {
            let k = var("SHMDS_BENCH_WORKER");
            let samples = alloc_loop(&seg, &ctl, k, var("SHMDS_BENCH_PAIRS"));
            ctl.open_array::<u64>(&format!("samples-{k}"))
                .unwrap()
                .write(0, &samples)
                .unwrap();
        }
        "reader" => {
            // Open the newest arrays and read their first and last byte
            // (pages the grower just added), until told to stop.
            let flags = ctl.open_array::<u64>("flags").unwrap();
            flags.fetch_add(1, 1).unwrap();
            let mut reads = 0u64;
            while flags.load(0).unwrap() == 0 {
                let entries = seg.entries().unwrap();
                for e in entries.iter().rev().take(4) {
                    if let Ok(a) = seg.open_array::<u8>(&e.name) {
                        reads += a.get(0).unwrap() as u64 + a.get(a.len() - 1).unwrap() as u64;
                    }
                }
            }
            flags.fetch_add(2, reads.min(1)).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// `pairs` timed create + erase pairs after a warm-up; returns the create
/// and erase times (ns), interleaved. Waits for `flags[0]` (go) first.
fn alloc_loop(seg: &Segment, ctl: &Segment, worker: u64, pairs: u64) -> Vec<u64> {
    let flags = ctl.open_array::<u64>("flags").unwrap();
    let names: Vec<String> = (0..32).map(|i| format!("w{worker}-{i}")).collect();
    for i in 0..1000u64 {
        let name = &names[(i % 32) as usize];
        seg.create_array::<u64>(name, (1 + i % 16) as usize)
            .unwrap();
        seg.erase(name).unwrap();
    }
    flags.fetch_add(1, 1).unwrap();
    wait_for(&flags, 0, 1);
    let mut samples = Vec::with_capacity(2 * pairs as usize);
    for i in 0..pairs {
        let name = &names[(i % 32) as usize];
        let t0 = Instant::now();
        let a = seg
            .create_array::<u64>(name, (1 + i % 16) as usize)
            .unwrap();
        let t1 = Instant::now();
        seg.erase(name).unwrap();
        let t2 = Instant::now();
        drop(a);
        samples.push((t1 - t0).as_nanos() as u64);
        samples.push((t2 - t1).as_nanos() as u64);
    }
    samples
}

fn alloc_free(quick: bool) {
    let pairs: u64 = if quick { 2_000 } else { 50_000 };
    println!("## allocate + free (create_array::<u64> of 1..=16 elements, then erase)");
    println!();
    println!("| processes | create | erase | create + erase |");
    println!("|---:|---|---|---|");
    for procs in [1u64, 4] {
        let name = seg_name(&format!("alloc{procs}"));
        let ctl_name = seg_name(&format!("alloc{procs}-ctl"));
        let seg = Segment::options()
            .size(64 * MIB)
            .table_capacity(256)
            .create(&name.0)
            .unwrap();
        let ctl = Segment::create(
            &ctl_name.0,
            (procs * pairs * 16 + 4 * MIB).next_power_of_two(),
        )
        .unwrap();
        let flags = ctl.create_array::<u64>("flags", 4).unwrap();
        for k in 0..procs {
            ctl.create_array::<u64>(&format!("samples-{k}"), 2 * pairs as usize)
                .unwrap();
        }
        let peers: Vec<Peer> = (1..procs)
            .map(|k| {
                spawn(
                    "alloc",
                    &[
                        ("SHMDS_BENCH_SEGMENT", name.0.clone()),
                        ("SHMDS_BENCH_CONTROL", ctl_name.0.clone()),
                        ("SHMDS_BENCH_WORKER", k.to_string()),
                        ("SHMDS_BENCH_PAIRS", pairs.to_string()),
                    ],
                )
            })
            .collect();
        // Start everyone at once: the peers check in after their warm-up
        // and wait for flags[0]; this process is worker 0.
        let go = std::thread::scope(|s| {
            let starter = s.spawn(|| {
                wait_for(&flags, 1, procs);
                flags.store(0, 1).unwrap();
            });
            let mine = alloc_loop(&seg, &ctl, 0, pairs);
            starter.join().unwrap();
            mine
        });
        ctl.open_array::<u64>("samples-0")
            .unwrap()
            .write(0, &go)
            .unwrap();
        for mut p in peers {
            let status = p.0.wait().unwrap();
            assert!(status.success(), "an allocation peer failed: {status}");
        }
        let (mut create, mut erase, mut pair) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..procs {
            let s = ctl
                .open_array::<u64>(&format!("samples-{k}"))
                .unwrap()
                .to_vec()
                .unwrap();
            for c in s.chunks(2) {
                create.push(c[0]);
                erase.push(c[1]);
                pair.push(c[0] + c[1]);
            }
        }
        println!(
            "| {procs} ({} pairs each) | {} | {} | {} |",
            pairs,
            summary(&mut create),
            summary(&mut erase),
            summary(&mut pair)
        );
        let report = seg.check();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
}

/// Creates per second (median of rounds of `per_round` new names, each
/// round erased again, untimed) and lookups per second, with the names
/// already in `seg`.
fn rates(seg: &Segment, present: &[String], rounds: usize, per_round: u64) -> (f64, f64) {
    let mut create_rates = Vec::new();
    for r in 0..rounds {
        let names: Vec<String> = (0..per_round).map(|i| format!("new-{r}-{i}")).collect();
        let start = Instant::now();
        for n in &names {
            seg.create_array::<u64>(n, 1).unwrap();
        }
        create_rates.push(per_round as f64 / start.elapsed().as_secs_f64());
        for n in &names {
            seg.erase(n).unwrap();
        }
    }
    create_rates.sort_by(f64::total_cmp);
    let lookups = 20_000usize;
    let start = Instant::now();
    for i in 0..lookups {
        let n = &present[(i * 7919) % present.len()];
        std::hint::black_box(seg.open_array::<u64>(n).unwrap());
    }
    let lookup_rate = lookups as f64 / start.elapsed().as_secs_f64();
    (create_rates[rounds / 2], lookup_rate)
}

fn registration(quick: bool) {
    let (rounds, per_round, many) = if quick {
        (3, 200, 2_000)
    } else {
        (9, 1_000, 10_000)
    };
    println!("## registration rate (create_array::<u64> of 1 element, new names)");
    println!();
    let name = seg_name("reg");
    let seg = Segment::options().size(64 * MIB).create(&name.0).unwrap();
    let mut present: Vec<String> = Vec::new();
    let fill_to = |n: usize, present: &mut Vec<String>| {
        while present.len() < n {
            let p = format!("present-{}", present.len());
            seg.create_array::<u64>(&p, 1).unwrap();
            present.push(p);
        }
    };
    fill_to(10, &mut present);
    let (few_create, few_lookup) = rates(&seg, &present, rounds, per_round);
    fill_to(many, &mut present);
    let (many_create, many_lookup) = rates(&seg, &present, rounds, per_round);
    println!("| names present | creates/s (median of {rounds} rounds of {per_round}) | lookups/s (open_array) |");
    println!("|---:|---:|---:|");
    println!("| 10 | {few_create:.0} | {few_lookup:.0} |");
    println!("| {many} | {many_create:.0} | {many_lookup:.0} |");
    println!();
    println!(
        "creates/s at 10 names / at {many} names = {:.2}; lookups: {:.2} (1.0 = no slowdown)",
        few_create / many_create,
        few_lookup / many_lookup
    );
    println!("table capacity at the end: {}", seg.table_capacity());
}

/// Grow a segment from 1 MiB to `max` by adding arrays of about 1 MiB;
/// with `readers` peers opening and reading the newest ones meanwhile.
fn grow_once(max: u64, readers: u64) -> String {
    let name = seg_name(&format!("grow{readers}"));
    let ctl_name = seg_name(&format!("grow{readers}-ctl"));
    let seg = Segment::options()
        .size(MIB)
        .max_size(max)
        .table_capacity(512)
        .create(&name.0)
        .unwrap();
    let ctl = Segment::create(&ctl_name.0, MIB).unwrap();
    let flags = ctl.create_array::<u64>("flags", 4).unwrap();
    let peers: Vec<Peer> = (0..readers)
        .map(|_| {
            spawn(
                "reader",
                &[
                    ("SHMDS_BENCH_SEGMENT", name.0.clone()),
                    ("SHMDS_BENCH_CONTROL", ctl_name.0.clone()),
                ],
            )
        })
        .collect();
    wait_for(&flags, 1, readers);
    let len = MIB - 1024;
    let mut creates = Vec::new();
    let mut steps = 0u64;
    let mut size = seg.size();
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        let t = Instant::now();
        match seg.create_array::<u8>(&format!("g{i}"), len as usize) {
            Ok(a) => {
                creates.push(t.elapsed().as_nanos() as u64);
                a.set(len as usize - 1, 1).unwrap();
                a.set(0, 1).unwrap();
            }
            Err(Error::OutOfSpace { .. }) => break,
            Err(e) => panic!("growth: {e}"),
        }
        if seg.size() != size {
            steps += 1;
            size = seg.size();
        }
        i += 1;
    }
    let total = start.elapsed();
    flags.store(0, 1).unwrap();
    for mut p in peers {
        let status = p.0.wait().unwrap();
        assert!(status.success(), "a reader failed: {status}");
    }
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
    let max_create = creates.iter().copied().max().unwrap_or(0);
    format!(
        "| {readers} | 1 MiB → {} MiB | {:.1} ms | {} | {:.0} MiB/s | {} | {} | {} |",
        seg.size() / MIB,
        total.as_secs_f64() * 1e3,
        i,
        (seg.size() - MIB) as f64 / MIB as f64 / total.as_secs_f64(),
        steps,
        summary(&mut creates),
        ns(max_create)
    )
}

fn growth(quick: bool) {
    let max = if quick { 32 * MIB } else { 256 * MIB };
    println!("## growth (arrays of 1 MiB - 1 KiB added until the segment reaches max_size)");
    println!();
    println!(
        "| readers | growth | time | arrays | growth rate | size changes | create | slowest create |"
    );
    println!("|---:|---|---:|---:|---:|---:|---|---:|");
    println!("{}", grow_once(max, 0));
    println!("{}", grow_once(max, 2));
}
