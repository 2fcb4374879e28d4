//! Sets shared by real processes: children inserting overlapping keys (each
//! key present once, and reported new to exactly one process), random
//! inserts and removes whose tallies must add up to the set's length, and
//! a process killed with SIGKILL mid-insert.

mod common;
use common::*;
use shmds::{Error, Segment};

const WORKERS: u64 = 4;
/// Keys each worker inserts in the overlap test; worker `c` takes
/// `c * SPAN / 2 .. c * SPAN / 2 + SPAN`, so every key but the outermost
/// ones is tried by two processes.
const SPAN: u64 = 2_000;
const OPS: u64 = 20_000;
const KEYS: u64 = 64;

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    let me: u64 = std::env::var("SHMDS_CHILD")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    match role.as_str() {
        "overlap" => {
            let set = seg.open_set::<u64>("s").unwrap();
            let news = seg.open_array::<u64>("news").unwrap();
            let start = me * SPAN / 2;
            // Half the workers go down their range, so that they meet the
            // others head on.
            let keys: Vec<u64> = if me % 2 == 0 {
                (start..start + SPAN).collect()
            } else {
                (start..start + SPAN).rev().collect()
            };
            let new = keys.into_iter().filter(|&k| set.insert(k).unwrap()).count();
            news.set(me as usize, new as u64).unwrap();
        }
        "churn" => {
            let set = seg.open_set::<u64>("s").unwrap();
            let tally = seg.open_array::<i64>("tally").unwrap();
            let mut rng = Rng(0x5e7 + me * 7919);
            let mut mine = 0i64;
            for _ in 0..OPS {
                let k = rng.next() % KEYS;
                match rng.next() % 3 {
                    0 => match set.insert(k) {
                        Ok(true) => mine += 1,
                        Ok(false) | Err(Error::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    1 => {
                        if set.remove(&k).unwrap() {
                            mine -= 1;
                        }
                    }
                    _ => {
                        set.contains(&k).unwrap();
                    }
                }
            }
            tally.set(me as usize, mine).unwrap();
        }
        "insert" => {
            let set = seg.open_set::<u64>("s").unwrap();
            let _ = set.insert(me);
        }
        other => panic!("unknown role {other}"),
    }
}

fn run_workers(name: &ShmName, role: &str) {
    let mut children: Vec<KillOnDrop> = (0..WORKERS)
        .map(|c| {
            KillOnDrop(spawn_self(
                "child_role",
                &role_env(role, name, &[("SHMDS_CHILD", c.to_string())]),
            ))
        })
        .collect();
    for c in &mut children {
        assert!(c.0.wait().unwrap().success(), "a worker failed");
    }
}

#[test]
fn processes_inserting_overlapping_keys_add_each_exactly_once() {
    let name = ShmName::new("set-overlap");
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    let total = (WORKERS + 1) * SPAN / 2;
    let set = seg.create_set::<u64>("s", total as usize).unwrap();
    let news = seg.create_array::<u64>("news", WORKERS as usize).unwrap();
    run_workers(&name, "overlap");
    let mut keys: Vec<u64> = set.iter().collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key appears twice");
    assert_eq!(keys, (0..total).collect::<Vec<u64>>(), "a key is missing");
    assert_eq!(set.len() as u64, total);
    let mut new = vec![0u64; WORKERS as usize];
    news.read(0, &mut new).unwrap();
    assert_eq!(
        new.iter().sum::<u64>(),
        total,
        "a key was reported new to two processes, or to none: {new:?}"
    );
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn processes_inserting_and_removing_keep_count() {
    let name = ShmName::new("set-churn");
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    // Fewer slots than keys: inserts also meet a full set.
    let set = seg.create_set::<u64>("s", (KEYS - 8) as usize).unwrap();
    let tally = seg.create_array::<i64>("tally", WORKERS as usize).unwrap();
    run_workers(&name, "churn");
    let mut mine = vec![0i64; WORKERS as usize];
    tally.read(0, &mut mine).unwrap();
    // Every successful insert and remove is one change of one key.
    let n = set.iter().count();
    assert_eq!(n as i64, mine.iter().sum::<i64>(), "{mine:?}");
    assert_eq!(set.len(), n);
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[cfg(feature = "fault-injection")]
#[test]
fn writer_killed_mid_insert_leaves_the_key_absent_and_the_set_usable() {
    use std::time::Duration;
    let name = ShmName::new("set-kill-insert");
    let seg = Segment::options()
        .size(1 << 20)
        .lock_timeout(Duration::from_secs(5))
        .create(name.as_str())
        .unwrap();
    let set = seg.create_set::<u64>("s", 8).unwrap();
    let pause = TempPath::new("setkill");
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &role_env(
            "insert",
            &name,
            &[
                ("SHMDS_CHILD", "5".to_owned()),
                ("SHMDS_PAUSE_AT", "map.insert.written".to_owned()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ),
    ));
    assert!(
        wait_for_file(&pause.0, Duration::from_secs(20)),
        "child never reached the pause point"
    );
    kill_and_reap(&mut child.0);
    // The dead writer holds key 5's home lock and a busy slot.
    assert!(!set.contains(&5).unwrap());
    assert!(set.insert(5).unwrap());
    assert!(!set.insert(5).unwrap());
    assert_eq!(set.len(), 1);
    for k in 100..107 {
        assert!(set.insert(k).unwrap());
    }
    assert_eq!(set.len(), 8);
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}
