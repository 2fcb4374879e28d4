//! Durable segments (a file path as the name): the same structures in a
//! regular file; sealed with checksums by the last close and checked at the
//! next open (damage on disk is refused); writers SIGKILLed mid-stream lose
//! no acknowledged item; and claims stamped in an earlier boot are revoked
//! by the first opener of a new one even when their pid is alive now.

mod common;
use common::*;
use shmds::{Error, Segment};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

/// A unique directory for durable segments, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let t = TempPath::new(tag);
        let p = t.0.clone();
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&var("SHMDS_SEGMENT")).unwrap();
    match role.as_str() {
        // Push 0, 1, 2, ... and count each acknowledged push; flush now and
        // then. Runs until killed.
        "writer" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let acked = seg.open_array::<u64>("acked").unwrap();
            for i in 0.. {
                q.push(i, None).unwrap();
                acked.set(0, i + 1).unwrap();
                if i % 64 == 0 {
                    seg.flush().unwrap();
                }
            }
        }
        // Take the lock and keep it, then pause (for good) inside a push
        // that has claimed its slot: alive, holding two claims.
        "holder" => {
            let lock = seg.open_lock("l").unwrap();
            std::mem::forget(lock.lock().unwrap());
            let q = seg.open_queue::<u64>("q").unwrap();
            q.push(99, None).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_durable_segment_is_a_file_that_outlives_its_processes() {
    let dir = Dir::new("durable-basic");
    let path = dir.file("state.shmds");
    {
        let seg = Segment::create(&path, 1 << 20).unwrap();
        assert!(seg.is_durable());
        assert_eq!(seg.name(), path);
        seg.create_array::<u64>("totals", 4)
            .unwrap()
            .set(2, 42)
            .unwrap();
        let q = seg.create_queue::<u32>("jobs", 16).unwrap();
        q.push(7, None).unwrap();
        seg.create_map::<shmds::FixedStr<8>, f64>("px", 64)
            .unwrap()
            .insert("AAPL".parse().unwrap(), 1.5)
            .unwrap();
        seg.flush().unwrap();
    }
    assert!(std::path::Path::new(&path).is_file());
    assert!(!shmds::list_segments()
        .unwrap()
        .iter()
        .any(|n| n.contains("state.shmds")));
    // Sealed by the last close; checked and reopened.
    let seg = Segment::open(&path).unwrap();
    assert_eq!(seg.open_array::<u64>("totals").unwrap().get(2).unwrap(), 42);
    assert_eq!(
        seg.open_queue::<u32>("jobs").unwrap().try_pop().unwrap(),
        Some(7)
    );
    let px = seg
        .open_map::<shmds::FixedStr<8>, f64>("px")
        .unwrap()
        .get("AAPL")
        .unwrap();
    assert_eq!(px, Some(1.5));
    assert!(seg.check().is_ok(), "{:?}", seg.check());
    // A second opener while the first is open: no seal in between.
    let again = Segment::open(&path).unwrap();
    drop(again);
    assert!(seg.check().is_ok());
    drop(seg);
    Segment::remove(&path).unwrap();
    assert!(!std::path::Path::new(&path).exists());
    // A missing directory says so.
    match Segment::create(&dir.file("no/such/dir.shmds"), 1 << 20) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("directory"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn damage_on_disk_is_refused_at_open() {
    let dir = Dir::new("durable-damage");
    let path = dir.file("d.shmds");
    let heap_byte;
    {
        let seg = Segment::create(&path, 1 << 20).unwrap();
        let a = seg.create_array::<u64>("a", 1000).unwrap();
        for i in 0..1000 {
            a.set(i, i as u64).unwrap();
        }
        heap_byte = seg.entry("a").unwrap().unwrap().offset + 800;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let flip = |at: u64| {
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at).unwrap();
        b[0] ^= 0x40;
        file.write_all_at(&b, at).unwrap();
    };
    // One bit of an element, with the file sealed: refused, naming the chunk.
    flip(heap_byte);
    match Segment::open(&path) {
        Err(Error::Damaged { detail, .. }) => {
            assert!(detail.contains("1 of its"), "{detail}");
        }
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    // The refused open left the file as it was: still refused.
    assert!(matches!(Segment::open(&path), Err(Error::Damaged { .. })));
    flip(heap_byte);
    drop(Segment::open(&path).unwrap());
    // A byte of the header's fixed line (the seed): refused whether sealed or not.
    flip(56);
    match Segment::open(&path) {
        Err(Error::Damaged { detail, .. }) => assert!(detail.contains("header"), "{detail}"),
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
    flip(56);
    // A trailer cut short.
    let len = file.metadata().unwrap().len();
    file.set_len(len - 10).unwrap();
    match Segment::open(&path) {
        Err(Error::Damaged { detail, .. }) => assert!(detail.contains("trailer"), "{detail}"),
        other => panic!("expected Damaged, got {:?}", other.map(|_| ())),
    }
}

/// A writer SIGKILLed at a random moment: the reopened segment checks
/// clean and holds every push the writer saw acknowledged, in order.
#[test]
fn killed_writers_lose_no_acknowledged_item() {
    let dir = Dir::new("durable-kill");
    let path = dir.file("k.shmds");
    let mut rng = Rng(0x5eed ^ std::process::id() as u64);
    {
        let seg = Segment::create(&path, 8 << 20).unwrap();
        seg.create_queue::<u64>("q", 1 << 18).unwrap();
        seg.create_array::<u64>("acked", 1).unwrap();
    }
    let mut next = 0u64;
    for round in 0..4 {
        let env = vec![(ROLE, "writer".to_owned()), ("SHMDS_SEGMENT", path.clone())];
        let mut child = KillOnDrop(spawn_self("child_role", &env));
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 60));
        kill_and_reap(&mut child.0);
        let seg = Segment::open(&path).unwrap();
        let report = seg.check();
        assert!(report.is_ok(), "round {round}: {:?}", report.problems);
        let acked = seg.open_array::<u64>("acked").unwrap().get(0).unwrap();
        let q = seg.open_queue::<u64>("q").unwrap();
        let mut got = Vec::new();
        while let Some(v) = q.try_pop().unwrap() {
            got.push(v);
        }
        // The writer restarts at 0 each round.
        assert!(
            got.len() as u64 >= acked,
            "round {round}: {} < {acked}",
            got.len()
        );
        for (i, v) in got.iter().take(acked as usize).enumerate() {
            assert_eq!(*v, i as u64, "round {round}");
        }
        next += acked;
        seg.open_array::<u64>("acked").unwrap().set(0, 0).unwrap();
    }
    assert!(next > 0, "the writers never pushed");
}

/// Claims stamped in another boot are revoked by the first opener of this
/// one, even when a process with the stamped pid runs now: a live child
/// holds a lock and a queue slot claim, the file's boot id is made another
/// boot's, and the next opener takes the lock over at once (told the owner
/// died) and the queue goes on.
#[cfg(feature = "fault-injection")]
#[test]
fn another_boots_claims_are_revoked_even_if_their_pid_runs() {
    let dir = Dir::new("durable-boot");
    let path = dir.file("b.shmds");
    {
        let seg = Segment::create(&path, 1 << 20).unwrap();
        seg.create_lock("l").unwrap();
        let q = seg.create_queue::<u64>("q", 8).unwrap();
        q.push(1, None).unwrap();
    }
    let pause = TempPath::new("durable-boot");
    let env = vec![
        (ROLE, "holder".to_owned()),
        ("SHMDS_SEGMENT", path.clone()),
        ("SHMDS_PAUSE_AT", "queue.push.slot_claimed".to_owned()),
        ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
    ];
    let mut child = KillOnDrop(spawn_self("child_role", &env));
    assert!(wait_for_file(&pause.0, Duration::from_secs(20)));
    let child_pid = child.0.id();
    // Another boot wrote this file: its boot id is not ours.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xa5; 16], 712).unwrap();
    let seg = Segment::open(&path).unwrap();
    let lock = seg.open_lock("l").unwrap();
    // Without the revocation this would wait for the live child.
    match lock.lock_timeout(Duration::from_secs(30)) {
        Err(shmds::LockError::OwnerDied(d)) => assert_ne!(d.pid(), child_pid),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    let q = seg.open_queue::<u64>("q").unwrap();
    assert_eq!(q.try_pop().unwrap(), Some(1));
    assert_eq!(q.try_pop().unwrap(), None, "the claimed slot is skipped");
    q.push(2, None).unwrap();
    assert_eq!(q.try_pop().unwrap(), Some(2));
    kill_and_reap(&mut child.0);
    drop((lock, q, seg));
}
