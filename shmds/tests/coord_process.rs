//! The coordination primitives between real processes: mutual exclusion
//! across processes, holders killed with SIGKILL at pause points and in the
//! middle of their critical section (the next taker is told, nothing
//! wedges), a random kill storm with a counter incremented non-atomically
//! under a lock (no double ownership), dead readers, dead once runners and
//! dead barrier parties.
//!
//! `SHMDS_COORD_MILLIS` sets how long the kill storm runs (default 3,000).

mod common;
use common::*;
use shmds::{Error, LockError, Segment};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

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

fn expect_exit(child: &mut KillOnDrop, code: i32, what: &str) {
    let status = child.0.wait().unwrap();
    if let Some(sig) = status.signal() {
        panic!("{what} was killed by signal {sig}");
    }
    assert_eq!(status.code(), Some(code), "{what}: {status}");
}

/// Slots of the "n" array: the counter, the pid inside the critical
/// section, violations seen, then one "done" count per storm child.
const COUNTER: usize = 0;
const INSIDE: usize = 1;
const VIOLATIONS: usize = 2;
const DONE: usize = 3;

/// One critical section: check nobody else is inside, take the counter a
/// step up non-atomically (read, pause, write), leave.
fn critical_section(n: &shmds::Array<u64>, me: u64, took_from_dead: bool) {
    let inside = n.get(INSIDE).unwrap();
    if inside != 0 && !took_from_dead {
        n.set(VIOLATIONS, n.get(VIOLATIONS).unwrap() + 1).unwrap();
    }
    n.set(INSIDE, me).unwrap();
    let v = n.get(COUNTER).unwrap();
    for _ in 0..50 {
        std::hint::spin_loop();
    }
    n.set(COUNTER, v + 1).unwrap();
    n.set(INSIDE, 0).unwrap();
}

#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    let me = std::process::id() as u64;
    let marker = || {
        if let Ok(path) = std::env::var("SHMDS_MARKER") {
            std::fs::write(path, "ready").unwrap();
        }
    };
    let forever = || loop {
        std::thread::sleep(Duration::from_secs(3600));
    };
    match role.as_str() {
        // Increment the counter under the lock SHMDS_N times.
        "count" => {
            let lock = seg.open_lock("lock").unwrap();
            let n = seg.open_array::<u64>("n").unwrap();
            for _ in 0..var("SHMDS_N") {
                let _g = lock.lock().unwrap();
                critical_section(&n, me, false);
            }
        }
        // Take the lock (pausing at SHMDS_PAUSE_AT if set) and hold it.
        "hold" => {
            let lock = seg.open_lock("lock").unwrap();
            let g = lock.lock().unwrap();
            marker();
            forever();
            drop(g);
        }
        "read-hold" => {
            let rw = seg.open_rwlock("rw").unwrap();
            let g = rw.read().unwrap();
            marker();
            forever();
            drop(g);
        }
        "write-hold" => {
            let rw = seg.open_rwlock("rw").unwrap();
            let g = rw.write().unwrap();
            marker();
            forever();
            drop(g);
        }
        "once-run" => {
            let once = seg.open_once("once").unwrap();
            once.call_once(|| {
                marker();
                forever();
            })
            .unwrap();
        }
        // Wait at the barrier; exit 3 if it broke, 0 if it passed.
        "barrier" => {
            let b = seg.open_barrier("b").unwrap();
            match b.wait_timeout(Duration::from_secs(20)) {
                Ok(_) => {}
                Err(Error::BrokenBarrier { .. }) => std::process::exit(3),
                Err(e) => panic!("{e}"),
            }
        }
        // The kill storm: critical sections until killed, counting each
        // finished one in slot DONE + SHMDS_INDEX.
        "storm" => {
            let lock = seg.open_lock("lock").unwrap();
            let n = seg.open_array::<u64>("n").unwrap();
            let done = DONE + var("SHMDS_INDEX") as usize;
            loop {
                let (g, died) = match lock.lock() {
                    Ok(g) => (g, false),
                    Err(LockError::OwnerDied(d)) => (d.into_guard(), true),
                    Err(LockError::Failed(e)) => panic!("{e}"),
                };
                critical_section(&n, me, died);
                drop(g);
                n.set(done, n.get(done).unwrap() + 1).unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn setup(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    seg.create_lock("lock").unwrap();
    seg.create_array::<u64>("n", DONE + 4096).unwrap();
    (name, seg)
}

#[test]
fn a_lock_excludes_processes() {
    let (name, seg) = setup("coord-count");
    let n = 2_000u64;
    let mut kids: Vec<_> = (0..4)
        .map(|_| spawn("count", &name, &[("SHMDS_N", n.to_string())]))
        .collect();
    for (i, k) in kids.iter_mut().enumerate() {
        expect_exit(k, 0, &format!("counter {i}"));
    }
    let arr = seg.open_array::<u64>("n").unwrap();
    assert_eq!(arr.get(COUNTER).unwrap(), 4 * n);
    assert_eq!(arr.get(VIOLATIONS).unwrap(), 0);
    assert!(!seg.open_lock("lock").unwrap().is_locked());
}

/// Kill a child holding the lock (at a pause point inside `lock()` or in
/// its critical section); the next taker gets it and is told.
fn holder_killed(pause_at: Option<&str>) {
    let (name, seg) = setup("coord-hold");
    let marker = TempPath::new("coord-hold");
    let mut env = vec![("SHMDS_MARKER", marker.0.display().to_string())];
    if let Some(point) = pause_at {
        env = vec![
            ("SHMDS_PAUSE_AT", point.to_owned()),
            ("SHMDS_PAUSE_FILE", marker.0.display().to_string()),
        ];
    }
    let mut child = spawn("hold", &name, &env);
    assert!(
        wait_for_file(&marker.0, Duration::from_secs(20)),
        "holder never got the lock"
    );
    let pid = child.0.id();
    let lock = seg.open_lock("lock").unwrap();
    assert_eq!(lock.holder().map(|h| h.0), Some(pid));
    assert!(
        lock.try_lock().unwrap().is_none(),
        "a live holder keeps its lock"
    );
    kill_and_reap(&mut child.0);
    let report = seg.check();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("process {pid}"))),
        "{report:?}"
    );
    let start = Instant::now();
    match lock.lock() {
        Err(LockError::OwnerDied(d)) => assert_eq!(d.pid(), pid),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(lock.owner_deaths(), 1);
    assert!(seg.check().is_ok());
}

#[test]
fn a_holder_killed_in_its_critical_section_is_reported() {
    holder_killed(None);
}

#[test]
fn a_holder_killed_between_taking_and_recording_is_reported() {
    holder_killed(Some("coord.lock.taken"));
}

#[test]
fn dead_readers_and_writers_of_an_rwlock() {
    let name = ShmName::new("coord-rw");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let rw = seg.create_rwlock("rw", 4).unwrap();
    for (role, pause) in [
        ("read-hold", None),
        ("read-hold", Some("coord.rwlock.counted")),
        ("write-hold", None),
    ] {
        let marker = TempPath::new("coord-rw");
        let env = match pause {
            None => vec![("SHMDS_MARKER", marker.0.display().to_string())],
            Some(p) => vec![
                ("SHMDS_PAUSE_AT", p.to_owned()),
                ("SHMDS_PAUSE_FILE", marker.0.display().to_string()),
            ],
        };
        let mut child = spawn(role, &name, &env);
        assert!(
            wait_for_file(&marker.0, Duration::from_secs(20)),
            "{role} never got there"
        );
        let pid = child.0.id();
        kill_and_reap(&mut child.0);
        if role == "write-hold" {
            match rw.read() {
                Err(LockError::OwnerDied(d)) => assert_eq!(d.pid(), pid),
                other => panic!("expected OwnerDied, got {other:?}"),
            }
            let _w = rw.write_timeout(Duration::from_secs(5)).unwrap().unwrap();
        } else {
            let w = rw.write_timeout(Duration::from_secs(5)).unwrap();
            assert!(w.is_some(), "a dead reader blocks the writer");
            assert_eq!(rw.readers(), 0);
        }
    }
    assert!(
        rw.status().summary.contains("dead readers"),
        "{}",
        rw.status().summary
    );
    assert!(seg.check().is_ok(), "{:?}", seg.check());
}

#[test]
fn a_once_whose_runner_dies_runs_again() {
    let name = ShmName::new("coord-once");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let once = seg.create_once("once").unwrap();
    for pause in [None, Some("coord.once.claimed")] {
        let marker = TempPath::new("coord-once");
        let env = match pause {
            None => vec![("SHMDS_MARKER", marker.0.display().to_string())],
            Some(p) => vec![
                ("SHMDS_PAUSE_AT", p.to_owned()),
                ("SHMDS_PAUSE_FILE", marker.0.display().to_string()),
            ],
        };
        let mut child = spawn("once-run", &name, &env);
        assert!(wait_for_file(&marker.0, Duration::from_secs(20)));
        assert!(!once.is_done());
        assert!(once.status().summary.starts_with("running in pid"));
        kill_and_reap(&mut child.0);
    }
    let start = Instant::now();
    assert!(
        once.call_once(|| {}).unwrap(),
        "the survivor runs the initialiser"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(once.is_done());
    // The first child started a run; the second died before counting its
    // own (at the pause point); ours is the second counted.
    assert_eq!(once.attempts(), 2);
}

#[test]
fn a_barrier_party_killed_while_waiting_breaks_the_barrier() {
    let name = ShmName::new("coord-bar");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let b = seg.create_barrier("b", 3).unwrap();
    let mut first = spawn("barrier", &name, &[]);
    let mut second = spawn("barrier", &name, &[]);
    let start = Instant::now();
    while b.n_waiting() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "parties never arrived"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Both arrived and recorded themselves; one dies.
    std::thread::sleep(Duration::from_millis(50));
    kill_and_reap(&mut second.0);
    expect_exit(&mut first, 3, "the surviving party");
    assert!(b.is_broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier { .. })));
    b.reset();
    // Three live parties pass.
    let mut kids = vec![spawn("barrier", &name, &[]), spawn("barrier", &name, &[])];
    b.wait_timeout(Duration::from_secs(20)).unwrap();
    for k in &mut kids {
        expect_exit(k, 0, "party");
    }
}

#[test]
fn a_kill_storm_never_gives_the_lock_to_two_processes() {
    let millis = std::env::var("SHMDS_COORD_MILLIS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000u64);
    let (name, seg) = setup("coord-storm");
    let arr = seg.open_array::<u64>("n").unwrap();
    let mut rng = Rng(0x5eed_c00d);
    let mut next = 0u64;
    let start_one = |next: &mut u64| {
        let k = spawn("storm", &name, &[("SHMDS_INDEX", next.to_string())]);
        *next += 1;
        k
    };
    let mut kids: Vec<KillOnDrop> = (0..3).map(|_| start_one(&mut next)).collect();
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut kills = 0u64;
    while Instant::now() < deadline && next < 4000 {
        std::thread::sleep(Duration::from_millis(1 + rng.next() % 8));
        let i = (rng.next() % kids.len() as u64) as usize;
        kill_and_reap(&mut kids[i].0);
        kills += 1;
        kids[i] = start_one(&mut next);
    }
    // Let the last ones work a little, then stop them all.
    std::thread::sleep(Duration::from_millis(100));
    for k in &mut kids {
        kill_and_reap(&mut k.0);
    }
    let lock = seg.open_lock("lock").unwrap();
    let g = lock
        .lock_timeout(Duration::from_secs(5))
        .or_else(|e| e.recover().map(Some))
        .unwrap()
        .expect("the lock is free again after the storm (no wedge)");
    let done: u64 = (0..next).map(|i| arr.get(DONE + i as usize).unwrap()).sum();
    let count = arr.get(COUNTER).unwrap();
    assert_eq!(
        arr.get(VIOLATIONS).unwrap(),
        0,
        "two processes were inside at once"
    );
    // Every finished section counted; at most one unrecorded per kill.
    assert!(
        count >= done && count <= done + kills,
        "count {count}, done {done}, kills {kills}"
    );
    assert!(
        done > kills,
        "the storm made progress: {done} sections, {kills} kills"
    );
    eprintln!(
        "kill storm: {kills} kills, {done} sections finished, {} owner deaths reported",
        lock.owner_deaths()
    );
    drop(g);
}
