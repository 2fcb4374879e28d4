//! Maps shared by real processes: a random-operation stress run across
//! several processes, and processes killed with SIGKILL mid-insert,
//! mid-update and mid-remove.

mod common;
use common::*;
use shmds::{Error, Segment};
use std::time::Duration;

const WORKERS: u64 = 4;
const OPS: u64 = 40_000;
const KEYS: u64 = 48;

/// Values of the data map: the key, a random word and two checks.
fn value_of(key: u64, r: u64) -> [u64; 4] {
    [key, r, !r, key.rotate_left(7) ^ r]
}

fn sound(key: u64, v: &[u64; 4]) -> bool {
    *v == value_of(key, v[1])
}

fn env(role: &str, seg: &ShmName, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut v = vec![(ROLE, role.to_owned()), ("SHMDS_SEGMENT", seg.0.clone())];
    v.extend_from_slice(extra);
    v
}

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    let key: u64 = std::env::var("SHMDS_KEY")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    match role.as_str() {
        "worker" => {
            let me: u64 = std::env::var("SHMDS_CHILD").unwrap().parse().unwrap();
            let counters = seg.open_map::<u64, u64>("counters").unwrap();
            let data = seg.open_map::<u64, [u64; 4]>("data").unwrap();
            let adds = seg.open_array::<u64>("adds").unwrap();
            let mut rng = Rng(0x5eed + me * 104_729);
            let mut mine = 0;
            for _ in 0..OPS {
                let k = rng.next() % KEYS;
                match rng.next() % 6 {
                    0 | 1 => {
                        counters.fetch_add(&(k % 16), 1).unwrap();
                        mine += 1;
                    }
                    2 => match data.insert(k, value_of(k, rng.next())) {
                        Ok(Some(old)) => assert!(sound(k, &old), "torn {old:?}"),
                        Ok(None) | Err(Error::Full { .. }) => {}
                        Err(e) => panic!("{e}"),
                    },
                    3 => {
                        if let Some(old) = data.remove(&k).unwrap() {
                            assert!(sound(k, &old), "torn {old:?}");
                        }
                    }
                    _ => {
                        if let Some(v) = data.get(&k).unwrap() {
                            assert!(sound(k, &v), "torn or foreign {v:?} for {k}");
                        }
                    }
                }
            }
            adds.set(me as usize, mine).unwrap();
        }
        "insert" => {
            let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
            let _ = m.insert(key, value_of(key, 2));
        }
        "remove" => {
            let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
            let _ = m.remove(&key);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn processes_share_a_map_without_losing_counts_or_tearing_values() {
    let name = ShmName::new("map-stress");
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    let counters = seg.create_map::<u64, u64>("counters", 16).unwrap();
    // Fewer slots than keys: inserts also meet a full map.
    let data = seg.create_map::<u64, [u64; 4]>("data", 40).unwrap();
    let adds = seg.create_array::<u64>("adds", WORKERS as usize).unwrap();
    let mut children: Vec<KillOnDrop> = (0..WORKERS)
        .map(|c| {
            KillOnDrop(spawn_self(
                "child_role",
                &env("worker", &name, &[("SHMDS_CHILD", c.to_string())]),
            ))
        })
        .collect();
    for c in &mut children {
        assert!(c.0.wait().unwrap().success(), "a worker failed");
    }
    let mut want = vec![0u64; WORKERS as usize];
    adds.read(0, &mut want).unwrap();
    // About a third of all operations are increments.
    assert!(want.iter().all(|&n| n > OPS / 4), "{want:?}");
    let total: u64 = counters.iter().map(|(_, v)| v).sum();
    assert_eq!(
        total,
        want.iter().sum::<u64>(),
        "increments lost or doubled"
    );
    let mut keys = Vec::new();
    for (k, v) in data.iter() {
        assert!(sound(k, &v), "torn value {v:?}");
        keys.push(k);
    }
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key appears twice");
    assert_eq!(data.len(), n);
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Run `role` on `key` in a child that pauses at `point`; kill it there.
fn kill_at(name: &ShmName, role: &str, key: u64, point: &str) {
    let pause = TempPath::new("mapkill");
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &env(
            role,
            name,
            &[
                ("SHMDS_KEY", key.to_string()),
                ("SHMDS_PAUSE_AT", point.to_owned()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ),
    ));
    assert!(
        wait_for_file(&pause.0, Duration::from_secs(20)),
        "child never reached {point}"
    );
    kill_and_reap(&mut child.0);
}

fn map_segment(tag: &str, capacity: u64) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::options()
        .size(1 << 20)
        .lock_timeout(Duration::from_secs(5))
        .create(name.as_str())
        .unwrap();
    seg.create_map::<u64, [u64; 4]>("m", capacity as usize)
        .unwrap();
    (name, seg)
}

#[test]
fn writer_killed_mid_insert_leaves_the_key_absent_and_the_map_usable() {
    let (name, seg) = map_segment("map-kill-insert", 8);
    kill_at(&name, "insert", 5, "map.insert.written");
    let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
    // The dead writer holds key 5's home lock and a busy slot.
    assert_eq!(m.get(&5).unwrap(), None);
    assert_eq!(m.insert(5, value_of(5, 9)).unwrap(), None);
    assert_eq!(m.get(&5).unwrap(), Some(value_of(5, 9)));
    assert_eq!(m.len(), 1);
    // Every slot is usable again.
    for k in 100..107 {
        m.insert(k, value_of(k, 1)).unwrap();
    }
    assert_eq!(m.len(), 8);
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn writer_killed_mid_update_removes_the_key_rather_than_tear_it() {
    let (name, seg) = map_segment("map-kill-update", 8);
    let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
    m.insert(5, value_of(5, 1)).unwrap();
    m.insert(6, value_of(6, 1)).unwrap();
    kill_at(&name, "insert", 5, "map.update.written");
    // A reader meets the dead writer's busy slot, sees it is dead and frees it.
    assert_eq!(m.get(&5).unwrap(), None);
    assert_eq!(m.get(&6).unwrap(), Some(value_of(6, 1)));
    assert_eq!(m.len(), 1);
    m.insert(5, value_of(5, 3)).unwrap();
    assert_eq!(m.get(&5).unwrap(), Some(value_of(5, 3)));
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn writer_killed_mid_remove_leaves_the_key_removed() {
    let (name, seg) = map_segment("map-kill-remove", 8);
    let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
    m.insert(5, value_of(5, 1)).unwrap();
    kill_at(&name, "remove", 5, "map.remove.freed");
    assert_eq!(m.get(&5).unwrap(), None);
    // The home lock is taken over from the dead process.
    m.insert(5, value_of(5, 2)).unwrap();
    assert_eq!(m.remove(&5).unwrap(), Some(value_of(5, 2)));
    // It died between freeing the slot and counting: the count is one high,
    // and the deep check says so.
    assert_eq!(m.len(), 1);
    let report = seg.check();
    assert!(
        report.problems.iter().any(|p| p.contains("length counter")),
        "{:?}",
        report.problems
    );
}

#[test]
fn full_map_frees_a_slot_left_busy_by_a_dead_writer() {
    let (name, seg) = map_segment("map-kill-full", 2);
    let m = seg.open_map::<u64, [u64; 4]>("m").unwrap();
    // Two keys with different homes.
    let a = 1;
    let b = (2..1000)
        .find(|k| m.home_slot(k) != m.home_slot(&a))
        .unwrap();
    kill_at(&name, "insert", a, "map.insert.written");
    m.insert(b, value_of(b, 1)).unwrap();
    // The only other slot is busy with the dead writer's key: an insert of a
    // third key with b's home finds no free slot, frees it, and succeeds.
    let c = (b + 1..10_000)
        .find(|k| m.home_slot(k) == m.home_slot(&b))
        .unwrap();
    m.insert(c, value_of(c, 1)).unwrap();
    assert_eq!(m.len(), 2);
    assert!(matches!(
        m.insert(a, value_of(a, 1)),
        Err(Error::Full { .. })
    ));
    let report = seg.check();
    assert!(report.is_ok(), "{:?}", report.problems);
}
