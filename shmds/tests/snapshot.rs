//! Snapshots: a quiet segment round trip (to /dev/shm and to a durable
//! file), dedup of unchanged chunks, diff; snapshots taken while other
//! processes push, rewrite map values and update a pair under a lock, each
//! restored and checked (every structure consistent, nothing torn, the lock
//! usable); damage found by verify and refused by restore.

mod common;
use common::*;
use shmds::snapshot::{EntryChange, Store};
use shmds::{Error, LockError, Segment};
use std::path::PathBuf;
use std::time::Duration;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = TempPath::new(tag).0.clone();
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Key = shmds::FixedStr<8>;

#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    let me: u64 = std::env::var("SHMDS_VALUE").unwrap().parse().unwrap();
    match role.as_str() {
        // Push (me << 32 | i) for i = 0, 1, ...; pop from time to time.
        "pusher" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            for i in 0u64.. {
                if !q.try_push(me << 32 | i).unwrap() {
                    let _ = q.try_pop().unwrap();
                }
            }
        }
        // Rewrite map values: [k, gen, !gen, k] for key "k{k}", a value a
        // torn write would break. Values are 32 bytes: the long-value path.
        "mapper" => {
            let m = seg.open_map::<Key, [u64; 4]>("m").unwrap();
            for gen in 0u64.. {
                let k = gen % 16;
                m.insert(format!("k{k}").parse().unwrap(), [k, gen, !gen, k])
                    .unwrap();
            }
        }
        // Under the lock: a[0] += 1, spin, a[1] += 1.
        "locker" => {
            let l = seg.open_lock("l").unwrap();
            let a = seg.open_array::<u64>("pair").unwrap();
            loop {
                let g = match l.lock() {
                    Ok(g) => g,
                    Err(LockError::OwnerDied(d)) => d.into_guard(),
                    Err(LockError::Failed(e)) => panic!("{e}"),
                };
                a.set(0, a.get(0).unwrap() + 1).unwrap();
                for _ in 0..200 {
                    std::hint::spin_loop();
                }
                a.set(1, a.get(1).unwrap() + 1).unwrap();
                drop(g);
            }
        }
        // Take a snapshot (pausing at "snapshot.paused" when asked).
        "snapshotter" => {
            let store = Store::open(std::env::var("SHMDS_STORE").unwrap()).unwrap();
            seg.snapshot(&store).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A snapshotting process killed while it holds the others stopped: its
/// watchdog continues them, and they go on pushing.
#[cfg(feature = "fault-injection")]
#[test]
fn a_killed_snapshotter_never_leaves_processes_stopped() {
    let dir = Dir::new("snap-kill");
    let src = ShmName::new("snap-kill");
    // This process must not be attached (it would be paused too): it
    // makes the queue, lets go, and watches through a read-only view.
    {
        let seg = Segment::create(src.as_str(), 1 << 20).unwrap();
        seg.create_queue::<u64>("q", 64).unwrap();
    }
    let mut pusher = KillOnDrop(spawn_self(
        "child_role",
        &role_env("pusher", &src, &[("SHMDS_VALUE", "1".to_owned())]),
    ));
    let pause = TempPath::new("snap-kill");
    let mut snapper = KillOnDrop(spawn_self(
        "child_role",
        &role_env(
            "snapshotter",
            &src,
            &[
                ("SHMDS_VALUE", "0".to_owned()),
                ("SHMDS_STORE", dir.0.join("store").display().to_string()),
                ("SHMDS_PAUSE_AT", "snapshot.paused".to_owned()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ),
    ));
    assert!(wait_for_file(&pause.0, Duration::from_secs(20)));
    let state = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .chars()
            .next()
            .unwrap()
    };
    assert_eq!(
        state(pusher.0.id()),
        'T',
        "the pusher is stopped for the copy"
    );
    kill_and_reap(&mut snapper.0);
    // The watchdog continues it, and it pushes again.
    let view = Segment::options()
        .read_only(true)
        .open(src.as_str())
        .unwrap();
    let info = view.entry("q").unwrap().unwrap();
    let pushed = || view.totals(&info).unwrap().unwrap().0;
    let mut moving = false;
    for _ in 0..2000 {
        if state(pusher.0.id()) != 'T' {
            let before = pushed();
            std::thread::sleep(Duration::from_millis(5));
            if pushed() != before {
                moving = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(moving, "the pusher stayed stopped");
    kill_and_reap(&mut pusher.0);
}

#[test]
fn a_quiet_segment_round_trips_and_dedups() {
    let dir = Dir::new("snap-quiet");
    let store = Store::open(dir.0.join("store")).unwrap();
    let src = ShmName::new("snap-src");
    let copy = ShmName::new("snap-copy");
    let seg = Segment::create(src.as_str(), 4 << 20).unwrap();
    let big = seg.create_array::<u64>("big", 200_000).unwrap();
    for i in 0..200_000 {
        big.set(i, i as u64 * 3).unwrap();
    }
    let q = seg.create_queue::<u32>("q", 64).unwrap();
    for i in 0..10 {
        q.push(i, None).unwrap();
    }
    let m = seg.create_map::<Key, f64>("m", 64).unwrap();
    m.insert("AAPL".parse().unwrap(), 190.5).unwrap();
    seg.create_lock("l").unwrap();

    let first = seg.snapshot(&store).unwrap();
    assert_eq!(first.paused_processes, 0);
    assert_eq!(first.new_chunks, first.distinct_chunks);
    // Unchanged: nothing new.
    let second = seg.snapshot(&store).unwrap();
    assert_eq!(second.new_chunks, 0, "{second:?}");
    // About 1 % changed: only those chunks are new.
    for i in (0..2000).step_by(7) {
        big.set(i, 0).unwrap();
    }
    let third = seg.snapshot(&store).unwrap();
    assert!(
        third.new_chunks >= 1 && third.new_chunks <= 3,
        "{} new chunks of {}",
        third.new_chunks,
        third.chunks
    );
    let changes = store.diff(&first.id, &third.id).unwrap();
    let changed: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            EntryChange::Changed { after, .. } => Some(after.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(changed, ["big"], "{changes:?}");
    assert_eq!(store.list().unwrap().len(), 3);

    // Restore the first into /dev/shm and into a durable file.
    let file = dir.0.join("restored.shmds");
    for target in [copy.as_str().to_owned(), file.to_str().unwrap().to_owned()] {
        let back = store.restore(&first.id[..12], &target).unwrap();
        assert!(back.check().is_ok(), "{:?}", back.check().problems);
        assert_eq!(back.is_durable(), target.contains('/'));
        let big = back.open_array::<u64>("big").unwrap();
        assert_eq!(big.get(7).unwrap(), 21);
        assert_eq!(big.get(199_999).unwrap(), 199_999 * 3);
        let q = back.open_queue::<u32>("q").unwrap();
        assert_eq!(q.len(), 10);
        assert_eq!(q.try_pop().unwrap(), Some(0));
        let m = back.open_map::<Key, f64>("m").unwrap();
        assert_eq!(m.get("AAPL").unwrap(), Some(190.5));
        drop(back.open_lock("l").unwrap().lock().unwrap());
        // The restored segment is a segment like any other.
        back.create_queue::<u8>("new", 4).unwrap();
    }
    assert!(matches!(
        store.restore(&first.id, copy.as_str()),
        Err(Error::SegmentExists { .. })
    ));
    // Gc keeps every chunk a snapshot uses.
    let gc = store.gc().unwrap();
    assert_eq!(gc.chunks_removed, 0);
    store.remove(&second.id).unwrap();
    store.remove(&first.id).unwrap();
    let gc = store.gc().unwrap();
    assert!(gc.chunks_removed >= 1, "{gc:?}");
    assert!(store.verify(None).unwrap().is_ok());
    drop(seg);
}

#[test]
fn damage_is_found_by_verify_and_refused_by_restore() {
    let dir = Dir::new("snap-damage");
    let store = Store::open(dir.0.join("store")).unwrap();
    let src = ShmName::new("snap-dsrc");
    let copy = ShmName::new("snap-dcopy");
    let seg = Segment::create(src.as_str(), 1 << 20).unwrap();
    let a = seg.create_array::<u64>("a", 10_000).unwrap();
    for i in 0..10_000 {
        a.set(i, i as u64 + 1).unwrap();
    }
    let snap = seg.snapshot(&store).unwrap();
    assert!(store.verify(Some(&snap.id)).unwrap().is_ok());
    // A manifest whose entries disagree with its image (a store written
    // wrongly): refused, naming the entry, and nothing is left behind.
    let (manifest, image) = store.read(&snap.id).unwrap();
    let mut entries = manifest.entries.clone();
    entries[0].type_descriptor = "<f".into();
    let lying = store
        .write(
            &image,
            shmds::snapshot::SnapshotMeta {
                source: manifest.source.clone(),
                segment_format: manifest.segment_format,
                created_unix_ns: manifest.created_unix_ns + 1,
                entries,
            },
        )
        .unwrap();
    match store.restore(&lying.id, copy.as_str()) {
        Err(Error::Damaged { detail, .. }) => assert!(detail.contains("\"a\""), "{detail}"),
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    assert!(!copy.path().exists());
    store.remove(&lying.id).unwrap();
    // Flip a byte of some chunk file.
    let chunk = walk(&dir.0.join("store").join("chunks"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&chunk, &bytes).unwrap();
    let report = store.verify(None).unwrap();
    assert!(!report.is_ok());
    assert!(matches!(
        store.restore(&snap.id, copy.as_str()),
        Err(Error::Damaged { .. })
    ));
    assert!(!copy.path().exists(), "a refused restore leaves no segment");
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Snapshots of a segment that four processes change all the time. Each
/// restores to a segment that checks clean, whose queue holds only real
/// elements in each pusher's order, whose map values are whole, and whose
/// lock is usable: the pair it guards is equal unless the lock was held at
/// the instant of the copy (then its next taker is told the owner died).
#[test]
fn snapshots_under_load_restore_consistent() {
    let dir = Dir::new("snap-load");
    let store = Store::open(dir.0.join("store")).unwrap();
    let src = ShmName::new("snap-load");
    let seg = Segment::create(src.as_str(), 4 << 20).unwrap();
    seg.create_queue::<u64>("q", 4096).unwrap();
    seg.create_map::<Key, [u64; 4]>("m", 64).unwrap();
    seg.create_lock("l").unwrap();
    seg.create_array::<u64>("pair", 2).unwrap();
    let mut kids = Vec::new();
    for (i, role) in ["pusher", "pusher", "mapper", "locker"].iter().enumerate() {
        kids.push(KillOnDrop(spawn_self(
            "child_role",
            &role_env(role, &src, &[("SHMDS_VALUE", (i + 1).to_string())]),
        )));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut owner_died = 0;
    for round in 0..12 {
        let snap = seg.snapshot(&store).unwrap();
        assert_eq!(snap.paused_processes, 4, "round {round}");
        let copy = ShmName::new("snap-load-copy");
        let back = store.restore(&snap.id, copy.as_str()).unwrap();
        let report = back.check();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        // Queue: real elements, each pusher's in increasing order.
        let q = back.open_queue::<u64>("q").unwrap();
        let mut last = [None::<u64>; 3];
        while let Some(v) = q.try_pop().unwrap() {
            let (who, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert!(
                who == 1 || who == 2,
                "round {round}: element {v:#x} was never pushed"
            );
            if let Some(prev) = last[who] {
                assert!(i > prev, "round {round}: pusher {who} out of order");
            }
            last[who] = Some(i);
        }
        // Map: every value whole.
        let m = back.open_map::<Key, [u64; 4]>("m").unwrap();
        for k in 0..16u64 {
            if let Some([a, gen, inv, b]) = m.get(format!("k{k}").as_str()).unwrap() {
                assert!(
                    a == k && b == k && inv == !gen && gen % 16 == k,
                    "round {round}: torn value for k{k}"
                );
            }
        }
        // Lock and pair.
        let l = back.open_lock("l").unwrap();
        let pair = back.open_array::<u64>("pair").unwrap();
        let (a, b) = (pair.get(0).unwrap(), pair.get(1).unwrap());
        match l.lock_timeout(Duration::from_secs(30)) {
            Ok(Some(_)) => assert_eq!(a, b, "round {round}: pair changed outside the lock"),
            Err(LockError::OwnerDied(_)) => {
                owner_died += 1;
                assert!(a == b || a == b + 1, "round {round}: pair {a}, {b}");
            }
            other => panic!("round {round}: lock: {:?}", other.map(|g| g.is_some())),
        }
        drop((q, m, l, pair, back));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The source kept running all along.
    assert!(seg.check().is_ok());
    eprintln!("{owner_died} of 12 snapshots caught the lock held");
    drop(kids);
}
