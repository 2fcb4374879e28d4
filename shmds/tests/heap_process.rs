//! The heap shared by real processes: concurrent churn, processes killed
//! with SIGKILL at random moments and at every pause point of the
//! allocator, the table and growth (feature `fault-injection`), many
//! processes registering the same names, and a segment growing while
//! other processes use it.
//!
//! `SHMDS_HEAP_MILLIS` sets how long the churn and storm phases run
//! (default 3,000 ms each); `SHMDS_HEAP_SEED` their seed.

mod common;
mod heap_support;
use common::*;
use heap_support::*;
use shmds::{Error, Segment};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

/// Every pause point of the heap, table and growth code, in one list (a
/// point that was renamed or removed fails the test that arms it: the
/// child finishes without reaching it).
#[cfg(feature = "fault-injection")]
const PAUSE_POINTS: &[&str] = &[
    "table.create.allocated",
    "table.create.half_written",
    "alloc.split",
    "alloc.free.unlinked",
    "table.erase.unpublished",
    "table.erase.freed",
    "segment.grow.extended",
    "table.chunk.allocated",
];

fn millis() -> u64 {
    std::env::var("SHMDS_HEAP_MILLIS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000)
}

fn seed() -> u64 {
    std::env::var("SHMDS_HEAP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4ea9_5eed)
}

fn var(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set"))
        .parse()
        .unwrap()
}

fn spawn(role: &str, seg: &ShmName, extra: &[(&'static str, String)]) -> KillOnDrop {
    let mut env = vec![(ROLE, role.to_owned()), ("SHMDS_SEGMENT", seg.0.clone())];
    env.extend_from_slice(extra);
    KillOnDrop(spawn_self("child_role", &env))
}

/// Wait for a child and fail unless it exited with 0 (naming the signal
/// that killed it, if one did: SIGBUS is 7, SIGSEGV 11).
fn expect_success(child: &mut KillOnDrop, what: &str) {
    let status = child.0.wait().unwrap();
    match status.signal() {
        Some(sig) => panic!("{what} was killed by signal {sig}"),
        None => assert!(status.success(), "{what} failed: {status}"),
    }
}

/// Whether process `pid` still exists (children are reaped as soon as
/// they are killed, so a dead one has no /proc entry).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Erase the structures (named `p<pid>-<n>`) of churners that died.
fn janitor(seg: &Segment, me: u32) {
    let Ok(entries) = seg.entries() else { return };
    for e in entries {
        let owner = e
            .name
            .strip_prefix('p')
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner {
            if pid != me && !alive(pid) {
                match seg.erase(&e.name) {
                    Ok(()) | Err(Error::EntryNotFound { .. }) => {}
                    Err(err) => panic!("janitor: erase {:?}: {err}", e.name),
                }
            }
        }
    }
}

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg_name = std::env::var("SHMDS_SEGMENT").unwrap();
    let seg = Segment::open(&seg_name).unwrap();
    let me = std::process::id();
    match role.as_str() {
        // Create and erase structures of its own for SHMDS_MILLIS, verifying
        // each before erasing it, peeking at other processes' arrays, and
        // erasing what dead churners left.
        "churn" => {
            let deadline = Instant::now() + Duration::from_millis(var("SHMDS_MILLIS"));
            let seed = var("SHMDS_SEED") ^ me as u64;
            let mut churn = Churn::new(&seg, &format!("p{me}-"), seed);
            churn.budget = var("SHMDS_BUDGET");
            churn.max_bytes = var("SHMDS_MAX_BYTES");
            churn.max_live = 40;
            let mut rng = Rng(seed | 1);
            janitor(&seg, me);
            let mut steps = 0u64;
            while Instant::now() < deadline {
                churn
                    .step()
                    .unwrap_or_else(|e| panic!("churner {me}, seed {seed}, step {steps}: {e}"));
                steps += 1;
                if steps % 8 == 0 {
                    let entries = seg.entries().unwrap();
                    if !entries.is_empty() {
                        let e = &entries[(rng.next() % entries.len() as u64) as usize];
                        if !e.name.starts_with(&format!("p{me}-")) {
                            peek(&seg, e).unwrap_or_else(|err| panic!("churner {me}: {err}"));
                        }
                    }
                }
                if steps % 128 == 0 {
                    janitor(&seg, me);
                }
            }
        }
        // Create each of the names, in an order of its own; count the ones
        // it created.
        "register" => {
            let child = var("SHMDS_CHILD");
            let names = var("SHMDS_NAMES");
            let creators = seg.open_array::<u64>("creators").unwrap();
            let mut order: Vec<u64> = (0..names).collect();
            let mut rng = Rng((child + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            let mut created = 0;
            for i in order {
                let name = format!("r-{i}");
                match seg.create_array::<u64>(&name, 2) {
                    Ok(a) => {
                        a.fetch_add(0, 1).unwrap();
                        created += 1;
                    }
                    Err(Error::EntryExists { .. }) => {}
                    Err(e) => panic!("registrar {child}: create {name}: {e}"),
                }
                let a = seg
                    .open_array::<u64>(&name)
                    .unwrap_or_else(|e| panic!("registrar {child}: open {name}: {e}"));
                assert_eq!(a.len(), 2, "{name}");
                a.fetch_add(1, 1).unwrap();
            }
            creators.store(child as usize, created).unwrap();
        }
        // Add SHMDS_COUNT arrays of growing sizes, publishing each in
        // `progress` once it is filled.
        "grow-writer" => {
            let w = var("SHMDS_CHILD");
            let progress = seg.open_array::<u64>("progress").unwrap();
            for i in 0..var("SHMDS_COUNT") {
                let name = format!("w{w}-{i}");
                create(&seg, &name, Plan::Words(4096 << (i % 5)))
                    .unwrap_or_else(|e| panic!("writer {w}: {name} at size {}: {e}", seg.size()));
                progress.store(w as usize, i + 1).unwrap();
            }
        }
        // Opened while the segment is small: open and verify every array the
        // writers publish, and keep reading old ones meanwhile.
        "grow-reader" => {
            let writers = var("SHMDS_WRITERS");
            let count = var("SHMDS_COUNT");
            let progress = seg.open_array::<u64>("progress").unwrap();
            progress.store(writers as usize, 1).unwrap();
            let mut seen = vec![0u64; writers as usize];
            let mut rng = Rng(0x00de_ad12);
            let mut size = seg.size();
            let mut sizes = 1;
            let start = Instant::now();
            while seen.iter().any(|&s| s < count) {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "reader: writers stalled at {seen:?}"
                );
                let mut idle = true;
                for w in 0..writers {
                    let published = progress.load(w as usize).unwrap();
                    while seen[w as usize] < published {
                        let name = format!("w{w}-{}", seen[w as usize]);
                        let info = seg
                            .entry(&name)
                            .unwrap()
                            .unwrap_or_else(|| panic!("reader: published {name} not found"));
                        verify(&seg, &info, true).unwrap_or_else(|e| panic!("reader: {e}"));
                        progress.fetch_add(writers as usize + 1, 1).unwrap();
                        seen[w as usize] += 1;
                        idle = false;
                    }
                }
                // The first and last word of a random earlier array.
                let w = rng.next() % writers;
                if seen[w as usize] > 0 {
                    let i = rng.next() % seen[w as usize];
                    let name = format!("w{w}-{i}");
                    let a = seg.open_array::<u64>(&name).unwrap();
                    let tag = tag_of(&name);
                    assert_eq!(a.get(0).unwrap(), word(tag, 0), "{name}");
                    assert_eq!(
                        a.get(a.len() - 1).unwrap(),
                        word(tag, a.len() as u64 - 1),
                        "{name}"
                    );
                }
                let now = seg.size();
                assert!(now >= size, "the segment shrank from {size} to {now}");
                if now != size {
                    sizes += 1;
                    size = now;
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            progress.store(writers as usize + 2, sizes).unwrap();
        }
        // A workload that reaches every pause point of PAUSE_POINTS from the
        // state `paused_segment` leaves: creates (splitting free blocks),
        // erases next to free blocks, a table that outgrows its chunks and
        // an array that needs the segment to grow.
        "pauser" => {
            for i in 0..400u64 {
                // 1 KiB to 64 KiB, and 4 MiB now and then.
                let len = if i % 50 == 6 {
                    512 << 10
                } else {
                    128 << (i % 7)
                };
                let name = format!("z{me}-{i}");
                create(&seg, &name, Plan::Words(len))
                    .unwrap_or_else(|e| panic!("pauser: {name}: {e}"));
                if i % 3 == 2 {
                    seg.erase(&format!("z{me}-{}", i - 1)).unwrap();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn churner(seg: &ShmName, seed: u64, millis: u64, budget: u64, max_bytes: u64) -> KillOnDrop {
    spawn(
        "churn",
        seg,
        &[
            ("SHMDS_SEED", seed.to_string()),
            ("SHMDS_MILLIS", millis.to_string()),
            ("SHMDS_BUDGET", budget.to_string()),
            ("SHMDS_MAX_BYTES", max_bytes.to_string()),
        ],
    )
}

/// Structures this process made, which every test checks at the end.
fn keep(seg: &Segment, n: u64) {
    for i in 0..n {
        let plan = match i % 4 {
            0 => Plan::Words(100 + 37 * i),
            1 => Plan::Queue(64 + i),
            2 => Plan::Map(64),
            _ => Plan::Bytes(1000 + i),
        };
        create(seg, &format!("keep-{i}"), plan).unwrap();
    }
}

/// What the next process does after others died: register (taking the
/// lock over from a dead holder and repairing the heap), then check that
/// the heap is sound, that every structure holds only what its name
/// allows (complete for ours, `keep-*`), that everything erased leaves the
/// heap free, and (`grow`) that a structure needing growth still works.
fn recover_and_check(seg: &Segment, first_chunk: u64, grow: bool, ctx: &str) {
    seg.create_array::<u64>("recovered", 4)
        .unwrap_or_else(|e| panic!("{ctx}: the first registration after the kills: {e}"))
        .set(3, 3)
        .unwrap();
    heap_sound(seg, ctx);
    let entries = seg.entries().unwrap();
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len(),
        entries.len(),
        "{ctx}: a name is in the table twice"
    );
    for e in &entries {
        if e.name == "recovered" {
            continue;
        }
        let complete = e.name.starts_with("keep-");
        verify(seg, e, complete).unwrap_or_else(|err| panic!("{ctx}: {err}"));
    }
    heap_sound(seg, &format!("{ctx}, verified"));
    erase_everything(seg);
    assert_all_free(seg, first_chunk, &format!("{ctx}, all erased"));
    let h = seg.heap().unwrap();
    // An array larger than the whole heap, if growing for it stays under
    // the maximum.
    let need = h.heap_bytes + (64 << 10);
    if grow && h.size + 2 * need <= h.max_size {
        let before = seg.size();
        let name = "after-recovery";
        create(seg, name, Plan::Words(need / 8)).unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            seg.size() > before,
            "{ctx}: no growth for an array larger than the segment"
        );
        verify(seg, &seg.entry(name).unwrap().unwrap(), true).unwrap();
        heap_sound(seg, &format!("{ctx}, grown after recovery"));
        seg.erase(name).unwrap();
        assert_all_free(seg, first_chunk, &format!("{ctx}, grown and erased"));
    }
}

// ---------------------------------------------------------------------------
// (a) Concurrent churn

#[test]
fn four_processes_churn_without_leaks_or_overlaps() {
    const SIZE: u64 = 4 << 20;
    let name = ShmName::new("hp-churn");
    let seg = Segment::options()
        .size(SIZE)
        .max_size(SIZE)
        .table_capacity(256)
        .create(name.as_str())
        .unwrap();
    keep(&seg, 8);
    let budget = seg.heap().unwrap().heap_bytes / 8;
    let mut children: Vec<KillOnDrop> = (0..4)
        .map(|i| churner(&name, seed() + i, millis(), budget, 24 << 10))
        .collect();
    for (i, c) in children.iter_mut().enumerate() {
        expect_success(c, &format!("churner {i}"));
    }
    let h = heap_sound(&seg, "after the churn");
    assert_eq!(h.size, SIZE);
    for e in seg.entries().unwrap() {
        verify(&seg, &e, true).unwrap_or_else(|err| panic!("after the churn: {err}"));
    }
    erase_everything(&seg);
    assert_all_free(&seg, 256, "after the churn, all erased");
}

// ---------------------------------------------------------------------------
// (b) SIGKILL storm

/// Churners killed at random moments, replaced and killed again; then the
/// next process recovers the segment.
#[test]
fn sigkill_storm_leaves_a_recoverable_heap() {
    let name = ShmName::new("hp-storm");
    let seg = Segment::options()
        .size(1 << 20)
        .max_size(64 << 20)
        .table_capacity(16)
        .create(name.as_str())
        .unwrap();
    keep(&seg, 8);
    let seed = seed();
    let mut rng = Rng(seed | 1);
    // Churners would run for a minute; each is killed long before.
    let spawn_one = |k: u64| churner(&name, seed + k, 60_000, 256 << 10, 16 << 10);
    let mut spawned = 0u64;
    let mut children: Vec<KillOnDrop> = (0..3)
        .map(|_| {
            spawned += 1;
            spawn_one(spawned)
        })
        .collect();
    let end = Instant::now() + Duration::from_millis(millis());
    let mut kills = 0;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10 + rng.next() % 80));
        let i = (rng.next() % children.len() as u64) as usize;
        if let Some(status) = children[i].0.try_wait().unwrap() {
            panic!("seed {seed}: a churner exited on its own before it was killed: {status}");
        }
        kill_and_reap(&mut children[i].0);
        kills += 1;
        spawned += 1;
        children[i] = spawn_one(spawned);
    }
    for c in &mut children {
        if let Some(status) = c.0.try_wait().unwrap() {
            panic!("seed {seed}: a churner exited on its own before it was killed: {status}");
        }
        kill_and_reap(&mut c.0);
    }
    assert!(kills >= 10, "only {kills} kills");
    recover_and_check(&seg, 16, true, &format!("seed {seed}, after {kills} kills"));
}

/// A segment whose table and heap have grown and have holes, for the
/// pause-point test.
#[cfg(feature = "fault-injection")]
fn paused_segment(name: &ShmName) -> Segment {
    let seg = Segment::options()
        .size(64 << 10)
        .max_size(64 << 20)
        .table_capacity(4)
        .create(name.as_str())
        .unwrap();
    for i in 0..24 {
        create(&seg, &format!("keep-{i}"), Plan::Words(200 + 300 * i)).unwrap();
    }
    for i in (0..24).step_by(2) {
        let name = format!("keep-{i}");
        verify(&seg, &seg.entry(&name).unwrap().unwrap(), true).unwrap();
        seg.erase(&name).unwrap();
    }
    heap_sound(&seg, "before the pauser");
    seg
}

/// At each pause point: a process killed there (holding the registration
/// lock), then a second one that takes over from it and is killed at the
/// same point in turn, while two churners wait for the lock; the churners
/// take it over and carry on, and the next process recovers the segment.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_at_every_heap_pause_point() {
    for &point in PAUSE_POINTS {
        let name = ShmName::new("hp-pause");
        let seg = paused_segment(&name);
        let mut waiting = Vec::new();
        for round in 0..2 {
            let pause = TempPath::new("hp-pause");
            let mut pauser = spawn(
                "pauser",
                &name,
                &[
                    ("SHMDS_PAUSE_AT", point.to_owned()),
                    ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
                ],
            );
            let start = Instant::now();
            while !pause.0.exists() {
                if let Some(status) = pauser.0.try_wait().unwrap() {
                    panic!(
                        "{point}: the pauser {} without reaching it (is the pause point \
                         still called {point:?}?)",
                        if status.success() {
                            "finished"
                        } else {
                            "failed"
                        }
                    );
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "{point}: the pauser neither reached it nor finished"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            if round == 1 {
                // These wait for the lock the paused process holds.
                for k in 0..2 {
                    waiting.push(churner(&name, seed() + k, 800, 128 << 10, 16 << 10));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            kill_and_reap(&mut pauser.0);
        }
        for (k, c) in waiting.iter_mut().enumerate() {
            expect_success(c, &format!("{point}: churner {k} after the kills"));
        }
        recover_and_check(&seg, 4, true, point);
    }
}

// ---------------------------------------------------------------------------
// (c) Many processes registering the same names

#[test]
fn racing_registrars_create_each_of_2000_names_once() {
    const NAMES: u64 = 2_000;
    const REGISTRARS: u64 = 4;
    let name = ShmName::new("hp-register");
    // The default table (64 entries): it grows while they race.
    let seg = Segment::create(name.as_str(), 8 << 20).unwrap();
    let creators = seg
        .create_array::<u64>("creators", REGISTRARS as usize)
        .unwrap();
    let mut children: Vec<KillOnDrop> = (0..REGISTRARS)
        .map(|i| {
            spawn(
                "register",
                &name,
                &[
                    ("SHMDS_CHILD", i.to_string()),
                    ("SHMDS_NAMES", NAMES.to_string()),
                ],
            )
        })
        .collect();
    for (i, c) in children.iter_mut().enumerate() {
        expect_success(c, &format!("registrar {i}"));
    }
    let per: Vec<u64> = creators.to_vec().unwrap();
    assert_eq!(
        per.iter().sum::<u64>(),
        NAMES,
        "creations reported per registrar: {per:?}"
    );
    for i in 0..NAMES {
        let a = seg.open_array::<u64>(&format!("r-{i}")).unwrap();
        assert_eq!(
            a.get(0).unwrap(),
            1,
            "r-{i} was created {} times",
            a.get(0).unwrap()
        );
        assert_eq!(
            a.get(1).unwrap(),
            REGISTRARS,
            "r-{i}: not every registrar reached it"
        );
    }
    let entries = seg.entries().unwrap();
    assert_eq!(entries.len() as u64, NAMES + 1);
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names.len() as u64,
        NAMES + 1,
        "a name is in the table twice"
    );
    assert!(seg.table_capacity() > NAMES);
    heap_sound(&seg, "after the registration race");
    drop(creators);
    erase_everything(&seg);
    assert_all_free(
        &seg,
        shmds::DEFAULT_TABLE_CAPACITY.into(),
        "registration race, all erased",
    );
}

// ---------------------------------------------------------------------------
// (d) Growth under load

#[test]
fn segment_grows_under_load_and_every_process_follows() {
    const WRITERS: u64 = 3;
    const COUNT: u64 = 20;
    const START: u64 = 256 << 10;
    let name = ShmName::new("hp-grow");
    let seg = Segment::options()
        .size(START)
        .max_size(64 << 20)
        .table_capacity(16)
        .create(name.as_str())
        .unwrap();
    // Per writer: how many it published; then the reader's flags.
    let progress = seg
        .create_array::<u64>("progress", WRITERS as usize + 3)
        .unwrap();
    let env = |child: u64| {
        vec![
            ("SHMDS_CHILD", child.to_string()),
            ("SHMDS_WRITERS", WRITERS.to_string()),
            ("SHMDS_COUNT", COUNT.to_string()),
        ]
    };
    let mut reader = spawn("grow-reader", &name, &env(0));
    let start = Instant::now();
    while progress.load(WRITERS as usize).unwrap() == 0 {
        if let Some(status) = reader.0.try_wait().unwrap() {
            panic!("the reader exited before it attached: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the reader never attached"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        seg.size(),
        START,
        "the reader attached to the small segment"
    );
    let mut writers: Vec<KillOnDrop> = (0..WRITERS)
        .map(|w| spawn("grow-writer", &name, &env(w)))
        .collect();
    for (w, c) in writers.iter_mut().enumerate() {
        expect_success(c, &format!("writer {w}"));
    }
    expect_success(&mut reader, "the reader");
    assert_eq!(
        progress.load(WRITERS as usize + 1).unwrap(),
        WRITERS * COUNT,
        "arrays the reader verified"
    );
    let sizes_seen = progress.load(WRITERS as usize + 2).unwrap();
    eprintln!(
        "segment grew from {START} to {} bytes; the reader saw {sizes_seen} sizes",
        seg.size()
    );
    assert!(seg.size() >= 16 * START, "size {}", seg.size());
    heap_sound(&seg, "grown under load");
    for e in seg.entries().unwrap() {
        if e.name != "progress" {
            verify(&seg, &e, true).unwrap_or_else(|err| panic!("grown under load: {err}"));
        }
    }
    drop(progress);
    erase_everything(&seg);
    assert_all_free(&seg, 16, "grown under load, all erased");
}
