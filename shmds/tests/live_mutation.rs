//! Shared memory is untrusted all the time, not only at open: another process
//! may rewrite any byte while we use the segment.
//!
//! - Regression tests: header fields rewritten after open (table offset and
//!   capacity, total size, heap offset) must not move the table or the heap.
//! - A live-mutation fuzzer: a child process opens a segment and runs every
//!   operation while this process rewrites random words of the header, the
//!   table and the structures' blocks. Crashes by signal, panics and hangs
//!   are counted and must be 0. `SHMDS_FUZZ_CASES` sets the number of cases
//!   (default 2,000; `make fuzz` runs a long campaign) and `SHMDS_FUZZ_SEED`
//!   the first seed.

mod common;
use common::{Rng, ShmName};
use shmds::{FixedStr, Segment};
use std::os::unix::fs::FileExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Header field offsets (FORMAT.md, "Segment header").
const MAX_SIZE: u64 = 24;
const TABLE_OFFSET: u64 = 32;
const TABLE_CAPACITY: u64 = 40;
const HEAP_OFFSET: u64 = 48;
const SIZE: u64 = 80;
/// The first table chunk (after the header and the attachment slots).
const ENTRY0: u64 = shmds::layout::TABLE_OFFSET;
/// Where the header keeps table chunk 1's offset.
const CHUNK1: u64 = 136 + 8;
const ENTRY_SIZE: u64 = 320;

fn poke(name: &ShmName, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn sample(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::options()
        .size(1 << 20)
        .table_capacity(8)
        .create(name.as_str())
        .unwrap();
    seg.create_array::<u64>("a", 16).unwrap();
    (name, seg)
}

#[test]
fn table_offset_rewritten_after_open() {
    let (name, seg) = sample("live-toff");
    poke(&name, TABLE_OFFSET, &(1u64 << 44).to_ne_bytes());
    let names: Vec<String> = seg.entries().unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a"]);
    assert!(seg.open_array::<u64>("a").is_ok());
    let report = seg.check();
    assert!(
        report.problems.iter().any(|p| p.contains("table offset")),
        "check must report the rewritten header field: {:?}",
        report.problems
    );
}

#[test]
fn table_capacity_rewritten_after_open() {
    let (name, seg) = sample("live-tcap");
    poke(&name, TABLE_CAPACITY, &65_536u32.to_ne_bytes());
    assert_eq!(seg.table_capacity(), 8);
    assert_eq!(seg.entries().unwrap().len(), 1);
    // The real 8-entry first chunk fills, then the table grows by a chunk
    // of 16 in the heap (not by what the header now claims).
    for i in 0..12 {
        seg.create_array::<u8>(&format!("x{i}"), 1).unwrap();
    }
    assert_eq!(seg.table_capacity(), 8 + 16);
    assert_eq!(seg.entries().unwrap().len(), 13);
    assert!(seg
        .check()
        .problems
        .iter()
        .all(|p| p.contains("table capacity")));
}

#[test]
fn sizes_rewritten_after_open() {
    let name = ShmName::new("live-size");
    let seg = Segment::options()
        .size(1 << 20)
        .max_size(1 << 20)
        .table_capacity(8)
        .create(name.as_str())
        .unwrap();
    seg.create_array::<u64>("a", 16).unwrap();
    let size = seg.size();
    poke(&name, MAX_SIZE, &(1u64 << 44).to_ne_bytes());
    poke(&name, HEAP_OFFSET, &(1u64 << 44).to_ne_bytes());
    assert_eq!(seg.size(), size);
    assert_eq!(seg.max_size(), size);
    assert!(seg.used() <= size);
    // Allocation stays inside the maximum size this process validated: a
    // block past it is refused (the rewritten maximum is not believed).
    let err = seg.create_array::<u8>("big", 2 << 20).unwrap_err();
    assert!(matches!(err, shmds::Error::OutOfSpace { .. }), "{err}");
    let arr = seg.create_array::<u64>("b", 8).unwrap();
    arr.set(7, 1).unwrap();
    for e in seg.entries().unwrap() {
        assert!(e.offset + e.size <= size, "{e:?}");
    }
    // A size pushed past the maximum is refused, not followed.
    poke(&name, SIZE, &(1u64 << 44).to_ne_bytes());
    let err = seg.create_array::<u8>("c", 1).unwrap_err();
    assert!(matches!(err, shmds::Error::Corrupt { .. }), "{err}");
    assert!(seg.used() <= size);
}

/// Segment A's table offset pointed past its end, at whatever is mapped
/// next (another segment, B): registering in A must still write A's table.
#[test]
fn table_offset_pointing_into_another_segment() {
    let (name_a, seg_a) = sample("live-a");
    let name_b = ShmName::new("live-b");
    let seg_b = Segment::options()
        .size(1 << 20)
        .table_capacity(8)
        .create(name_b.as_str())
        .unwrap();
    seg_b.create_array::<u64>("b", 4).unwrap();
    let before = std::fs::read(name_b.path()).unwrap();
    let distance = (seg_b.as_ptr() as u64).wrapping_sub(seg_a.as_ptr() as u64);
    let target = if distance < (1 << 40) {
        distance + ENTRY0
    } else {
        seg_a.size() + ENTRY0
    };
    poke(&name_a, TABLE_OFFSET, &target.to_ne_bytes());
    seg_a.create_array::<u64>("new", 4).unwrap();
    assert_eq!(std::fs::read(name_b.path()).unwrap(), before);
    let names: Vec<String> = seg_a
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a", "new"]);
}

// ---------------------------------------------------------------------------
// The live-mutation fuzzer.

const CHILD_SEGMENT: &str = "SHMDS_LIVE_FUZZ_SEGMENT";
const CHILD_SEED: &str = "SHMDS_LIVE_FUZZ_SEED";
/// A child that has not finished by then is counted as hung.
const HANG_LIMIT: Duration = Duration::from_secs(20);

/// The structures every case starts from.
fn populate(seg: &Segment) {
    let a = seg.create_array::<u64>("a", 16).unwrap();
    a.write(0, &[1, 2, 3, 4]).unwrap();
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    assert!(q.try_push(11).unwrap());
    assert!(q.try_push(12).unwrap());
    let q1 = seg.create_queue::<u32>("q1", 1).unwrap();
    assert!(q1.try_push(5).unwrap());
    let s = seg.create_stack::<u64>("s", 4).unwrap();
    assert!(s.try_push(21).unwrap());
    assert!(s.try_push(22).unwrap());
    let m = seg.create_map::<u64, u64>("m", 8).unwrap();
    for k in 0..4 {
        m.insert(k, k * 10).unwrap();
    }
    let ms = seg.create_map::<FixedStr<8>, [u32; 2]>("ms", 4).unwrap();
    ms.insert(FixedStr::new("k").unwrap(), [1, 2]).unwrap();
    let c = seg
        .create_channel("c", shmds::ChannelOptions::new(1024).checksum(true))
        .unwrap();
    let mut tx = c.sender().unwrap();
    tx.try_send(b"first").unwrap();
    tx.try_send(&[7; 100]).unwrap();
    let cs = seg
        .create_channel("cs", shmds::ChannelOptions::new(512).spsc(true))
        .unwrap();
    cs.sender().unwrap().try_send(b"spsc").unwrap();
    let t = seg
        .create_topic("t", shmds::TopicOptions::new(1024))
        .unwrap();
    for i in 0..3u8 {
        t.publish(&[i; 70]).unwrap();
    }
}

/// Values a mutation writes: edge cases, near misses and noise.
fn mutated_value(rng: &mut Rng, old: u64, pids: [u32; 2]) -> u64 {
    match rng.next() % 16 {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => 1 << 44,
        4 => old ^ (1 << (rng.next() % 64)),
        5 => old.wrapping_add(1),
        6 => old.wrapping_sub(1),
        7 => old.wrapping_add(64),
        8 => rng.next() % 256,
        9 => pids[0] as u64,
        10 => pids[1] as u64 | (old & !0xffff_ffff),
        11 => 1 << 63,
        12 => old.wrapping_mul(2),
        13 => u32::MAX as u64,
        14 => (rng.next() % 4096) * 64,
        _ => rng.next(),
    }
}

/// Where a mutation lands: the header, the used part of the table, the
/// first lines of a structure's block, or anywhere in a block.
///
/// `tables` are the table chunks (chunk 0 and the chained ones in the
/// heap); a block's first lines include its heap block header, the 64 bytes
/// before the structure.
fn mutated_offset(rng: &mut Rng, size: u64, tables: &[(u64, u64)], blocks: &[(u64, u64)]) -> u64 {
    let word = |n: u64| n & !7;
    match rng.next() % 10 {
        0 | 1 => word(rng.next() % ENTRY0),
        2..=4 => {
            let (off, len) = tables[(rng.next() % tables.len() as u64) as usize];
            word(off + rng.next() % len)
        }
        5..=7 => {
            let (off, len) = blocks[(rng.next() % blocks.len() as u64) as usize];
            word(off - 64 + rng.next() % (len.min(256) + 64))
        }
        8 => {
            let (off, len) = blocks[(rng.next() % blocks.len() as u64) as usize];
            word(off + rng.next() % len)
        }
        _ => word(rng.next() % size),
    }
}

enum Outcome {
    Ok,
    Signal(i32),
    Panic(i32),
    Hang,
}

fn spawn_child(name: &str, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "live_mutation_fuzz",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_SEGMENT, name)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the fuzz child")
}

/// One case: a fresh segment, a child using it, mutations while it runs.
/// The snapshot store of the fuzz child `pid`.
fn store_dir(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shmds-fuzz-store-{pid}"))
}

fn run_case(seed: u64) -> (Outcome, String) {
    use std::os::unix::process::ExitStatusExt;
    let name = ShmName::new("fuzz");
    let seg = Segment::options()
        .size(64 << 10)
        .table_capacity(12)
        .create(name.as_str())
        .unwrap();
    populate(&seg);
    let entries = seg.entries().unwrap();
    let blocks: Vec<(u64, u64)> = entries.iter().map(|e| (e.offset, e.size)).collect();
    let size = seg.size();
    // Chunk 0 (12 entries) and, since 11 names do not all fit their hash
    // windows there, usually chunk 1 (24 entries) in the heap.
    let mut tables = vec![(ENTRY0, 12 * ENTRY_SIZE)];
    let mut word = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(name.path()).unwrap(),
        &mut word,
        CHUNK1,
    )
    .unwrap();
    let chunk1 = u64::from_ne_bytes(word);
    if chunk1 != 0 {
        tables.push((chunk1, 24 * ENTRY_SIZE));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.path())
        .unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut child = spawn_child(name.as_str(), seed);
    let pids = [std::process::id(), child.id()];
    let mutations = 1 + rng.next() % 12;
    for _ in 0..mutations {
        // Some mutations land before the child opens, most while it works.
        std::thread::sleep(Duration::from_micros(rng.next() % 3000));
        let offset = mutated_offset(&mut rng, size, &tables, &blocks);
        let mut old = [0u8; 8];
        if file.read_exact_at(&mut old, offset).is_err() {
            continue;
        }
        let value = mutated_value(&mut rng, u64::from_ne_bytes(old), pids);
        let bytes = value.to_ne_bytes();
        let width = if rng.next() % 4 == 0 { 4 } else { 8 };
        let _ = file.write_all_at(&bytes[..width], offset);
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if start.elapsed() > HANG_LIMIT => break None,
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let mut stderr = String::new();
    let outcome = match status {
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Outcome::Hang
        }
        Some(status) => {
            use std::io::Read;
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            match (status.signal(), status.code()) {
                (Some(sig), _) => Outcome::Signal(sig),
                (None, Some(0)) => Outcome::Ok,
                (None, code) => Outcome::Panic(code.unwrap_or(-1)),
            }
        }
    };
    // What a child that failed half-way left: its restored segment and store.
    let _ = Segment::remove(&format!("{}-r", name.as_str()));
    let _ = std::fs::remove_dir_all(store_dir(pids[1]));
    (outcome, stderr)
}

#[test]
fn live_mutation_fuzz() {
    if let Ok(name) = std::env::var(CHILD_SEGMENT) {
        let seed = std::env::var(CHILD_SEED)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        child::run(&name, seed);
        return;
    }
    let cases: u64 = std::env::var("SHMDS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let first: u64 = std::env::var("SHMDS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let started = Instant::now();
    let (mut signals, mut panics, mut hangs) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    // Two cases at a time (one per core here).
    let mut seed = first;
    while seed < first + cases {
        let batch: Vec<u64> = (seed..(seed + 2).min(first + cases)).collect();
        seed += batch.len() as u64;
        let results: Vec<(u64, Outcome, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|&case| s.spawn(move || (case, run_case(case))))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    let (case, (outcome, err)) = h.join().unwrap();
                    (case, outcome, err)
                })
                .collect()
        });
        let done = seed - first;
        if cases >= 10_000 && done % 5_000 < 2 {
            eprintln!(
                "live mutation fuzz: {done} of {cases} cases, {:.0} s, {} failures so far",
                started.elapsed().as_secs_f64(),
                signals + panics + hangs
            );
        }
        for (case, outcome, err) in results {
            let what = match outcome {
                Outcome::Ok => continue,
                Outcome::Signal(sig) => {
                    signals += 1;
                    format!("signal {sig}")
                }
                Outcome::Panic(code) => {
                    panics += 1;
                    format!("exit code {code}")
                }
                Outcome::Hang => {
                    hangs += 1;
                    "hang".to_owned()
                }
            };
            if failures.len() < 10 {
                // The panic message and the innermost frames.
                let lines: Vec<&str> = err.lines().collect();
                let at = lines.iter().position(|l| l.contains("panicked at"));
                let tail: String = match at {
                    Some(i) => lines[i..]
                        .iter()
                        .take(30)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" | "),
                    None => lines
                        .iter()
                        .rev()
                        .take(12)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" | "),
                };
                failures.push(format!("seed {case}: {what}: {tail}"));
            }
        }
    }
    eprintln!(
        "live mutation fuzz: {cases} cases from seed {first} in {:.1} s: {signals} crashes by signal, \
         {panics} panics, {hangs} hangs",
        started.elapsed().as_secs_f64()
    );
    assert!(
        signals + panics + hangs == 0,
        "{signals} crashes, {panics} panics, {hangs} hangs; first failures:\n{}",
        failures.join("\n")
    );
}

/// The child: every operation on every structure, errors ignored; only a
/// crash, a panic or a hang is a failure.
mod child {
    use super::Rng;
    use shmds::{FixedStr, Segment};
    use std::time::Duration;

    const T: Option<Duration> = Some(Duration::from_millis(1));

    pub fn run(name: &str, seed: u64) {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        let opts = Segment::options()
            .open_timeout(Duration::from_millis(20))
            .lock_timeout(Duration::from_millis(20));
        for round in 0..6 {
            let seg = match opts.open(name) {
                Ok(seg) => seg,
                Err(_) => {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
            };
            whole_segment(&seg);
            for _ in 0..40 {
                one_op(&seg, &mut rng, round);
            }
            whole_segment(&seg);
        }
        if let Ok(seg) = Segment::options()
            .read_only(true)
            .open_timeout(Duration::from_millis(20))
            .open(name)
        {
            whole_segment(&seg);
            snapshot_and_restore(&seg, name);
        }
    }

    /// A snapshot of the damaged segment, restored (its claims revoked on
    /// whatever bytes it holds) and used: errors are fine, a panic is not.
    fn snapshot_and_restore(seg: &Segment, name: &str) {
        let dir = super::store_dir(std::process::id());
        if let Ok(store) = shmds::snapshot::Store::open(&dir) {
            if let Ok(taken) = seg.snapshot(&store) {
                let restored = format!("{name}-r");
                if let Ok(back) = store.restore(&taken.id, &restored) {
                    whole_segment(&back);
                    let mut rng = Rng(taken.size | 1);
                    for _ in 0..20 {
                        one_op(&back, &mut rng, 0);
                    }
                }
                let _ = Segment::remove(&restored);
            }
            let _ = store.verify(None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn whole_segment(seg: &Segment) {
        let _ = seg.size() + seg.used() + seg.available();
        let _ = seg.table_capacity();
        let _ = seg.check();
        if let Ok(entries) = seg.entries() {
            for e in &entries {
                let _ = seg.inspect(e);
                let _ = seg.totals(e);
                let _ = seg.probe_bounds(e);
                let _ = seg.primitive_status(e);
                let _ = e.kind_name();
            }
        }
        for name in ["a", "q", "q1", "s", "m", "ms", "x", "y"] {
            let _ = seg.entry(name);
        }
    }

    fn one_op(seg: &Segment, rng: &mut Rng, round: u64) {
        let r = rng.next();
        let v = rng.next() % 100;
        let mut buf = [0u64; 3];
        match r % 24 {
            0 => {
                if let Ok(a) = seg.open_array::<u64>("a") {
                    let i = rng.next() % 18;
                    let _ = a.get(i as usize);
                    let _ = a.set(i as usize, v);
                    let _ = a.fetch_add(i as usize, 1);
                    let _ = a.compare_exchange(i as usize, v, v + 1);
                    let _ = a.read(i.min(15) as usize, &mut buf[..1]);
                    let _ = a.write(0, &buf);
                    let _ = a.to_vec();
                    let _ = a.len();
                }
            }
            1 => {
                if let Ok(a) = seg.open_array_raw("a") {
                    let mut bytes = [0u8; 16];
                    let _ = a.read_bytes((rng.next() % 17) as usize, &mut bytes);
                    let _ = a.write_bytes((rng.next() % 17) as usize, &bytes);
                    let _ = a.fetch_add((rng.next() % 17) as usize, 1);
                    let _ = a.check();
                }
            }
            2..=4 => {
                if let Ok(q) = seg.open_queue::<u64>("q") {
                    let _ = q.try_push(v);
                    let _ = q.try_pop();
                    let _ = q.push(v, T);
                    let _ = q.pop(T);
                    let _ = q.try_push_slice(&buf);
                    let _ = q.try_pop_into(&mut buf);
                    let _ = q.push_slice(&buf[..2], T);
                    let _ = q.pop_into(&mut buf[..2], T);
                    let _ = (q.len(), q.is_empty(), q.is_full(), q.capacity());
                }
            }
            5 => {
                if let Ok(q) = seg.open_queue_raw("q1") {
                    let mut e = [0u8; 4];
                    let _ = q.try_push(&e);
                    let _ = q.try_pop(&mut e);
                    let _ = q.push_slice(&e, T, None);
                    let _ = q.pop_into(&mut e, T, None);
                    let _ = q.len();
                    let _ = q.peek(8);
                    let _ = q.try_pop_tasks_into(&mut e);
                    let _ = q.task_done();
                    q.wake_waiters();
                    if r % 4 == 0 {
                        // The waits (each up to T) on a quarter of the visits.
                        let _ = q.pop_tasks_into(&mut e, T, None);
                        let _ = q.join(T, None);
                        let _ = q.wait_not_empty(T, None);
                        let _ = q.wait_not_full(T, None);
                    }
                    let _ = (q.unfinished_tasks(), q.is_shutdown());
                }
            }
            6..=8 => {
                if let Ok(s) = seg.open_stack::<u64>("s") {
                    let _ = s.try_push(v);
                    let _ = s.try_pop();
                    let _ = s.push(v, T);
                    let _ = s.pop(T);
                    let _ = s.try_push_slice(&buf);
                    let _ = s.try_pop_into(&mut buf);
                    let _ = (s.len(), s.is_empty(), s.is_full(), s.capacity());
                    let _ = s.is_shutdown();
                }
                if let Ok(s) = seg.open_stack_raw("s") {
                    let _ = s.peek(8);
                    s.wake_waiters();
                    if r % 4 == 0 {
                        let _ = s.wait_not_empty(T, None);
                        let _ = s.wait_not_full(T, None);
                    }
                }
            }
            9..=12 => {
                if let Ok(m) = seg.open_map::<u64, u64>("m") {
                    let k = rng.next() % 12;
                    let _ = m.get(&k);
                    let _ = m.insert(k, v);
                    let _ = m.contains_key(&k);
                    let _ = m.fetch_add(&k, 1);
                    let _ = m.compare_exchange(&k, v, v + 1);
                    let _ = m.get_or_insert(k + 1, v);
                    if r % 5 == 0 {
                        let _ = m.remove(&k);
                    }
                    let _ = m.iter().take(20).count();
                    let _ = (m.len(), m.is_empty(), m.capacity(), m.home_slot(&k));
                    if r % 31 == 0 {
                        let _ = m.clear();
                    }
                }
            }
            13 => {
                if let Ok(m) = seg.open_map_raw("m") {
                    let mut key = [0u8; 8];
                    let mut value = [0u8; 8];
                    for slot in 0..10 {
                        let _ = m.read_slot(slot, &mut key, &mut value);
                    }
                    let _ = m.get(&key, &mut value);
                    let _ = m.insert(&key, &value, None);
                    let _ = m.iter().take(20).count();
                }
            }
            14 | 15 => {
                if let Ok(m) = seg.open_map::<FixedStr<8>, [u32; 2]>("ms") {
                    if let Ok(k) = FixedStr::new(["k", "l", "mm"][(r % 3) as usize]) {
                        let _ = m.get(&k);
                        let _ = m.insert(k, [v as u32, 1]);
                        let _ = m.remove(&k);
                    }
                    let _ = m.iter().take(10).count();
                }
            }
            16 => {
                let _ = seg.open_or_create_array::<u32>("x", 4 + round as usize);
                let _ = seg.create_queue::<u8>(&format!("y{}", r % 3), 2);
                // Shut down throwaway structures only ("q" and "s" stay open).
                if let Ok(y) = seg.open_queue::<u8>(&format!("y{}", r % 3)) {
                    let _ = y.try_push(1);
                    let _ = y.shutdown(r % 2 == 0);
                    let _ = (y.try_push(2), y.try_pop(), y.is_shutdown());
                }
                if let Ok(z) = seg.open_or_create_stack::<u8>(&format!("z{}", r % 2), 2) {
                    let _ = z.try_push(1);
                    let _ = z.shutdown(r % 3 == 0);
                    let _ = (z.try_push(2), z.try_pop(), z.is_shutdown());
                }
            }
            17 => {
                let _ = seg.erase(["x", "y0", "y1", "y2", "z0", "z1"][(r % 6) as usize]);
            }
            18 => {
                if let Ok(q) = seg.open_or_create_queue::<u64>("q", 4) {
                    let _ = q.try_pop();
                }
                if let Ok(s) = seg.open_or_create_stack::<u64>("s", 4) {
                    let _ = s.try_pop();
                }
                if let Ok(m) = seg.open_or_create_map::<u64, u64>("m", 8) {
                    let _ = m.len();
                }
            }
            20 | 21 => {
                let name = if r % 2 == 0 { "c" } else { "cs" };
                if let Ok(c) = seg.open_channel(name) {
                    let _ = (c.len(), c.is_empty(), c.is_full(), c.used_bytes());
                    let _ = c.peek(8);
                    let short = Duration::from_millis(1 + v % 3);
                    if let Ok(mut tx) = c.sender() {
                        let msg = vec![v as u8; (rng.next() % 300) as usize];
                        let _ = tx.try_send(&msg);
                        let _ = tx.send_timeout(&msg, short);
                        if let Ok(mut slot) = tx.try_reserve((v % 70) as usize) {
                            slot.fill(1);
                            if v % 2 == 0 {
                                slot.commit();
                            }
                        }
                    }
                    if let Ok(mut rx) = c.receiver() {
                        let mut out = Vec::new();
                        let _ = rx.try_recv(&mut out);
                        let _ = rx.recv_timeout(&mut out, short);
                        if let Ok(m) = rx.try_recv_ref() {
                            let _ = m.iter().map(|&b| b as u64).sum::<u64>();
                        }
                    }
                    if v == 0 {
                        let _ = c.shutdown();
                    }
                }
            }
            22 => {
                if let Ok(t) = seg.open_topic("t") {
                    let mut sub = if v % 2 == 0 {
                        t.subscribe()
                    } else {
                        t.subscribe_from_oldest()
                    };
                    let _ = t.publish(&vec![v as u8; (rng.next() % 600) as usize]);
                    let mut out = Vec::new();
                    for _ in 0..4 {
                        let _ = sub.try_recv(&mut out);
                    }
                    let _ = sub.recv_timeout(&mut out, Duration::from_millis(1));
                    let _ = sub.recv_latest(&mut out);
                    let _ = t.latest(&mut out);
                    let _ = (t.len(), t.published(), sub.pending());
                }
            }
            19 => {
                for name in ["a", "q", "q1", "s", "m", "ms", "c", "cs", "t"] {
                    let _ = seg.open_channel(name);
                    let _ = seg.open_topic(name);
                    let _ = seg.open_queue_raw(name);
                    let _ = seg.open_stack_raw(name);
                    let _ = seg.open_map_raw(name);
                    let _ = seg.open_array_raw(name);
                }
            }
            _ => {
                whole_segment(seg);
            }
        }
    }
}
