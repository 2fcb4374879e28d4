//! Real processes racing on one segment, and processes killed at known points.

mod common;
use common::*;
use shmds::{Error, Segment};
use std::time::{Duration, Instant};

const NAMES: u64 = 200;
const RACERS: usize = 4;

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg_name = std::env::var("SHMDS_SEGMENT").unwrap();
    match role.as_str() {
        "race" => {
            let me: u64 = std::env::var("SHMDS_CHILD").unwrap().parse().unwrap();
            let seg = Segment::options()
                .size(4 << 20)
                .table_capacity(256)
                .open_or_create(&seg_name)
                .unwrap();
            // Every racer walks the names in its own order.
            let mut order: Vec<u64> = (0..NAMES).collect();
            let mut x = me.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for i in order {
                let a = seg
                    .open_or_create_array::<u64>(&format!("name-{i}"), (i % 7 + 1) as usize)
                    .unwrap();
                assert_eq!(a.len(), (i % 7 + 1) as usize);
                a.fetch_add(0, 1).unwrap();
            }
        }
        "opener" => {
            let start = Instant::now();
            let seg = loop {
                match Segment::open(&seg_name) {
                    Ok(seg) => break seg,
                    Err(Error::SegmentNotFound { .. })
                        if start.elapsed() < Duration::from_secs(20) =>
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => panic!("opener failed: {e}"),
                }
            };
            let a = loop {
                match seg.open_array::<u32>("ready") {
                    Ok(a) => break a,
                    Err(Error::EntryNotFound { .. })
                        if start.elapsed() < Duration::from_secs(20) =>
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => panic!("opener failed: {e}"),
                }
            };
            a.fetch_add(0, 1).unwrap();
        }
        "creator" => {
            let seg = Segment::create(&seg_name, 1 << 20).unwrap();
            seg.create_array::<u32>("ready", 1).unwrap();
        }
        "registrar" => {
            let seg = Segment::open(&seg_name).unwrap();
            seg.create_array::<u64>("victim", 8).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn racing_processes_create_each_name_once() {
    let name = ShmName::new("race");
    let children: Vec<KillOnDrop> = (0..RACERS)
        .map(|i| {
            KillOnDrop(spawn_self(
                "child_role",
                &[
                    (ROLE, "race".into()),
                    ("SHMDS_SEGMENT", name.0.clone()),
                    ("SHMDS_CHILD", i.to_string()),
                ],
            ))
        })
        .collect();
    for mut c in children {
        assert!(c.0.wait().unwrap().success(), "a racer failed");
    }
    let seg = Segment::open(name.as_str()).unwrap();
    let entries = seg.entries().unwrap();
    assert_eq!(entries.len(), NAMES as usize);
    let mut names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), NAMES as usize, "a name exists twice");
    let report = seg.check();
    assert!(report.is_ok(), "{report:?}");
    let mut blocks: Vec<(u64, u64)> = entries
        .iter()
        .map(|e| (e.offset, e.offset + e.size))
        .collect();
    blocks.sort();
    for w in blocks.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks overlap: {w:?}");
    }
    assert!(blocks.last().unwrap().1 <= seg.size());
    // Every racer incremented the one and only array of each name.
    for i in 0..NAMES {
        let a = seg.open_array::<u64>(&format!("name-{i}")).unwrap();
        assert_eq!(a.get(0).unwrap(), RACERS as u64, "name-{i}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn openers_before_and_during_creation_succeed() {
    let name = ShmName::new("openrace");
    let pause = TempPath::new("openrace");
    let opener = || {
        KillOnDrop(spawn_self(
            "child_role",
            &[(ROLE, "opener".into()), ("SHMDS_SEGMENT", name.0.clone())],
        ))
    };
    let mut children: Vec<KillOnDrop> = (0..3).map(|_| opener()).collect();
    std::thread::sleep(Duration::from_millis(50));
    children.push(KillOnDrop(spawn_self(
        "child_role",
        &[
            (ROLE, "creator".into()),
            ("SHMDS_SEGMENT", name.0.clone()),
            ("SHMDS_PAUSE_AT", "segment.create.before_ready".into()),
            ("SHMDS_PAUSE_MS", "300".into()),
            ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
        ],
    )));
    assert!(wait_for_file(&pause.0, Duration::from_secs(20)));
    // The segment exists but is not initialised yet: more openers now.
    children.extend((0..2).map(|_| opener()));
    for mut c in children {
        assert!(
            c.0.wait().unwrap().success(),
            "an opener or the creator failed"
        );
    }
    let seg = Segment::open(name.as_str()).unwrap();
    assert_eq!(seg.open_array::<u32>("ready").unwrap().get(0).unwrap(), 5);
}

#[cfg(feature = "fault-injection")]
#[test]
fn creator_killed_half_way_is_reported() {
    for point in ["segment.create.initializing", "segment.create.before_ready"] {
        let name = ShmName::new("halfway");
        let pause = TempPath::new("halfway");
        let mut creator = KillOnDrop(spawn_self(
            "child_role",
            &[
                (ROLE, "creator".into()),
                ("SHMDS_SEGMENT", name.0.clone()),
                ("SHMDS_PAUSE_AT", point.into()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ));
        assert!(wait_for_file(&pause.0, Duration::from_secs(20)));
        kill_and_reap(&mut creator.0);
        let start = Instant::now();
        let err = Segment::open(name.as_str()).unwrap_err();
        assert!(matches!(err, Error::NotReady { .. }), "{point}: {err}");
        assert!(err.to_string().contains("died"), "{point}: {err}");
        // The bound is the open timeout (1 s); generous margin for a loaded machine.
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn registration_lock_is_recovered_from_a_dead_holder() {
    let name = ShmName::new("deadlock");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    seg.create_array::<u8>("before", 1).unwrap();
    for point in ["table.create.allocated", "table.create.half_written"] {
        let pause = TempPath::new("deadlock");
        let mut child = KillOnDrop(spawn_self(
            "child_role",
            &[
                (ROLE, "registrar".into()),
                ("SHMDS_SEGMENT", name.0.clone()),
                ("SHMDS_PAUSE_AT", point.into()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ));
        assert!(wait_for_file(&pause.0, Duration::from_secs(20)));
        kill_and_reap(&mut child.0);
        // The dead child holds the registration lock; we take it over.
        let after = format!("after-{point}");
        seg.create_array::<u8>(&after, 1).unwrap();
        assert!(seg.entry("victim").unwrap().is_none(), "{point}");
        assert!(seg.check().is_ok(), "{point}: {:?}", seg.check());
        seg.create_array::<u64>("victim", 8).unwrap();
        seg.erase("victim").unwrap();
    }
}
