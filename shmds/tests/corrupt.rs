//! Shared memory is untrusted input: every kind of damage gives a clear
//! error, never a panic, a hang or an out-of-bounds access.

mod common;
use common::ShmName;
use proptest::prelude::*;
use shmds::{Error, Segment};
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

const ENTRY_SIZE: u64 = 320;

/// Where the table entry of `entry` is in the segment file.
fn entry_at(name: &ShmName, entry: &str) -> u64 {
    let seg = quick().read_only(true).open(name.as_str()).unwrap();
    let index = seg.entry(entry).unwrap().unwrap().index;
    shmds::layout::TABLE_OFFSET + index * ENTRY_SIZE
}

/// The first entry of chunk 0 a new entry `entry` would take (its hash's
/// position; the sample's few entries do not collide with the names used).
fn free_entry_for(entry: &str) -> u64 {
    let index = shmds::layout::name_hash(entry.as_bytes()) as u64 % 64;
    shmds::layout::TABLE_OFFSET + index * ENTRY_SIZE
}

fn poke(name: &ShmName, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(name.path()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn quick() -> shmds::SegmentOptions {
    Segment::options().open_timeout(Duration::from_millis(20))
}

/// A segment with two arrays, `a` (u64 x 16) and `b` (u8 x 8); with
/// `structures`, also a queue `q` and a stack `s` holding an element each.
fn sample_with(tag: &str, structures: bool) -> ShmName {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 1 << 16).unwrap();
    seg.create_array::<u64>("a", 16).unwrap();
    seg.create_array::<u8>("b", 8).unwrap();
    if structures {
        seg.create_queue::<u64>("q", 4)
            .unwrap()
            .try_push(7)
            .unwrap();
        seg.create_stack::<u64>("s", 4)
            .unwrap()
            .try_push(7)
            .unwrap();
        let m = seg.create_map::<u64, [u64; 2]>("m", 4).unwrap();
        m.insert(1, [1, 1]).unwrap();
        m.insert(2, [2, 2]).unwrap();
    }
    name
}

fn sample(tag: &str) -> ShmName {
    sample_with(tag, false)
}

fn open_err(name: &ShmName) -> Error {
    quick().open(name.as_str()).unwrap_err()
}

#[test]
fn not_a_shmds_segment() {
    let name = ShmName::new("foreign");
    std::fs::write(name.path(), b"hello, I am somebody else's shared memory").unwrap();
    let err = open_err(&name);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not a shmds segment"));
}

#[test]
fn empty_file_is_not_ready() {
    let name = ShmName::new("empty");
    std::fs::write(name.path(), b"").unwrap();
    let err = open_err(&name);
    assert!(matches!(err, Error::NotReady { .. }), "{err}");
}

#[test]
fn older_format_version_is_refused_clearly() {
    let name = sample("oldversion");
    poke(&name, 8, &1u32.to_ne_bytes());
    let err = open_err(&name);
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("format version 1") && text.contains("older"),
        "{text}"
    );
}

#[test]
fn newer_format_version() {
    let name = sample("version");
    poke(&name, 8, &99u32.to_ne_bytes());
    let err = open_err(&name);
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn other_layout_fingerprint() {
    let name = sample("fingerprint");
    poke(&name, 16, &0x1234u64.to_ne_bytes());
    let err = open_err(&name);
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    assert!(err.to_string().contains("fingerprint"), "{err}");
}

#[test]
fn truncated_segment() {
    let name = sample("truncated");
    let f = OpenOptions::new().write(true).open(name.path()).unwrap();
    f.set_len(8192).unwrap();
    let err = open_err(&name);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn header_fields_out_of_range() {
    let cases: [(u64, Vec<u8>, &str); 6] = [
        (24, (1u64 << 60).to_ne_bytes().to_vec(), "maximum size"),
        (40, u32::MAX.to_ne_bytes().to_vec(), "table capacity"),
        (48, (1u64 << 20).to_ne_bytes().to_vec(), "heap"),
        (48, 100u64.to_ne_bytes().to_vec(), "heap offset"),
        (80, u64::MAX.to_ne_bytes().to_vec(), "its size"),
        (64, 7u32.to_ne_bytes().to_vec(), "state"),
    ];
    for (offset, bytes, what) in cases {
        let name = sample("header");
        poke(&name, offset, &bytes);
        let err = open_err(&name);
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "offset {offset}: {err}"
        );
        assert!(err.to_string().contains(what), "offset {offset}: {err}");
    }
}

#[test]
fn entry_block_outside_segment() {
    for (field, value) in [
        (32u64, 1u64 << 16),
        (32, 1 << 40),
        (40, u64::MAX - 32),
        (32, 3),
    ] {
        let name = sample("block");
        poke(&name, entry_at(&name, "a") + field, &value.to_ne_bytes());
        let seg = quick().open(name.as_str()).unwrap();
        let err = seg.open_array::<u64>("a").unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { .. }),
            "{field}={value}: {err}"
        );
        assert!(!seg.check().is_ok());
    }
}

#[test]
fn overlapping_blocks() {
    let name = sample("overlap");
    let seg = quick().open(name.as_str()).unwrap();
    let a = seg.entry("a").unwrap().unwrap();
    // Point b's block into a's.
    poke(&name, entry_at(&name, "b") + 32, &a.offset.to_ne_bytes());
    let report = seg.check();
    assert!(
        report.problems.iter().any(|p| p.contains("overlap")),
        "{report:?}"
    );
}

#[test]
fn capacity_byte_size_overflows() {
    let name = sample("capacity");
    poke(
        &name,
        entry_at(&name, "a") + 24,
        &(u64::MAX / 2).to_ne_bytes(),
    );
    let seg = quick().open(name.as_str()).unwrap();
    let err = seg.open_array::<u64>("a").unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // And the array header itself claiming a huge length:
    let name = sample("capacity2");
    let seg = quick().open(name.as_str()).unwrap();
    let a = seg.entry("a").unwrap().unwrap();
    poke(&name, a.offset + 8, &(u64::MAX / 2).to_ne_bytes());
    poke(
        &name,
        entry_at(&name, "a") + 24,
        &(u64::MAX / 2).to_ne_bytes(),
    );
    assert!(matches!(
        seg.open_array::<u64>("a"),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn bad_names_and_types() {
    // Name not NUL-terminated.
    let name = sample("name-nul");
    poke(&name, entry_at(&name, "a") + 64, &[b'x'; 64]);
    let seg = quick().open(name.as_str()).unwrap();
    let err = seg.entries().unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    assert!(!seg.check().is_ok());
    // Name not UTF-8.
    let name = sample("name-utf8");
    poke(&name, entry_at(&name, "a") + 64, &[0xff, 0xfe, 0]);
    let seg = quick().open(name.as_str()).unwrap();
    let err = seg.entries().unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    // Element type that does not parse, or does not match the element size.
    for bad in [&b"<Z\0"[..], b"<I\0"] {
        let name = sample("type");
        poke(&name, entry_at(&name, "a") + 192, bad);
        let seg = quick().open(name.as_str()).unwrap();
        let report = seg.check();
        assert!(!report.is_ok(), "{bad:?}");
        assert!(matches!(
            seg.open_array::<u64>("a"),
            Err(Error::TypeMismatch { .. })
        ));
    }
}

#[test]
fn unknown_kind() {
    let name = sample("kind");
    poke(&name, entry_at(&name, "a") + 12, &77u32.to_ne_bytes());
    let seg = quick().open(name.as_str()).unwrap();
    let err = seg.open_array::<u64>("a").unwrap_err();
    assert!(
        matches!(
            err,
            Error::KindMismatch {
                found: "unknown",
                ..
            }
        ),
        "{err}"
    );
    let report = seg.check();
    assert!(
        report.problems.iter().any(|p| p.contains("unknown kind")),
        "{report:?}"
    );
}

#[test]
fn entry_stuck_mid_write_is_skipped() {
    // Odd generation: a writer died mid-change. Readers skip it, and the
    // next registration (after taking over the lock) is unaffected.
    let name = sample("odd-gen");
    poke(&name, entry_at(&name, "a"), &3u64.to_ne_bytes());
    let seg = quick().open(name.as_str()).unwrap();
    assert!(seg.entry("a").unwrap().is_none());
    assert_eq!(seg.entries().unwrap().len(), 1);
    seg.create_array::<u8>("c", 1).unwrap();
}

/// Generation words near the top of the u64 range (a peer can write any
/// value) wrap instead of overflowing: registering, erasing and repairing
/// never panic (debug builds check arithmetic overflow).
#[test]
fn generations_near_the_top_wrap() {
    let name = sample("gen-wrap");
    let a_at = entry_at(&name, "a");
    let taken = [a_at, entry_at(&name, "b")];
    assert!(!taken.contains(&free_entry_for("c")) && !taken.contains(&free_entry_for("d")));
    let seg = quick()
        .lock_timeout(Duration::from_millis(20))
        .open(name.as_str())
        .unwrap();
    // Entry 0 ("a") is live: an even generation 2^64 - 2, then erase it.
    poke(&name, a_at, &(u64::MAX - 1).to_ne_bytes());
    assert!(seg.entry("a").unwrap().is_some());
    seg.erase("a").unwrap();
    assert!(seg.entry("a").unwrap().is_none());
    // The entry "c" will take is free with generation 2^64 - 2.
    poke(&name, free_entry_for("c"), &(u64::MAX - 1).to_ne_bytes());
    seg.create_array::<u8>("c", 1).unwrap();
    assert!(seg.entry("c").unwrap().is_some());
    // A half-written entry (odd generation 2^64 - 1) left by a dead lock
    // holder is repaired when the lock is taken over.
    let odd = (0..64)
        .map(|i| shmds::layout::TABLE_OFFSET + i * ENTRY_SIZE)
        .find(|at| !taken.contains(at) && *at != free_entry_for("c") && *at != free_entry_for("d"))
        .unwrap();
    poke(&name, odd, &u64::MAX.to_ne_bytes());
    poke(&name, 72, &0x7fff_fff0u32.to_ne_bytes()); // lock held by a dead pid
    seg.create_array::<u8>("d", 1).unwrap();
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

fn pristine() -> &'static (Vec<u8>, u64) {
    static BYTES: std::sync::OnceLock<(Vec<u8>, u64)> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let name = sample_with("pristine", true);
        let mut bytes = Vec::new();
        std::fs::File::open(name.path())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        // Header, table and the heap's first blocks (the structures).
        let heap = u64::from_ne_bytes(bytes[48..56].try_into().unwrap());
        (bytes, heap + 4096)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    /// Random damage to the header, table and block headers: open, check,
    /// list and use never panic.
    #[test]
    fn random_damage_never_panics(flips in proptest::collection::vec((0usize..1, any::<u64>(), any::<u8>()), 1..12)) {
        let (bytes, span) = pristine();
        let mut bytes = bytes.clone();
        for (_, at, value) in flips {
            // Bias towards the interesting bytes: the header and the entries.
            let at = (at % if at % 3 == 0 { *span } else { 1024 }) as usize;
            bytes[at] = value;
        }
        let name = ShmName::new("fuzz");
        std::fs::write(name.path(), &bytes).unwrap();
        // A flipped lock word may name a live process (pid 1, say): registration
        // then waits for the lock timeout and fails, which must be short here.
        let opts = Segment::options()
            .open_timeout(Duration::from_millis(1))
            .lock_timeout(Duration::from_millis(20));
        if let Ok(seg) = opts.open(name.as_str()) {
            let _ = seg.check();
            let _ = seg.entries();
            if let Ok(a) = seg.open_array::<u64>("a") {
                for i in 0..a.len().min(32) {
                    let _ = a.get(i);
                    let _ = a.set(i, 1);
                }
            }
            if let Ok(q) = seg.open_queue::<u64>("q") {
                let _ = (q.len(), q.is_empty(), q.capacity());
                let _ = q.try_pop();
                let _ = q.try_push(3);
            }
            if let Ok(s) = seg.open_stack::<u64>("s") {
                let _ = (s.len(), s.is_empty(), s.capacity());
                let _ = s.try_pop();
                let _ = s.try_push(3);
            }
            if let Ok(m) = seg.open_map::<u64, [u64; 2]>("m") {
                let _ = (m.len(), m.get(&1), m.get(&3), m.iter().count());
                let _ = m.insert(3, [3, 3]);
                let _ = m.remove(&2);
            }
            let _ = seg.create_array::<u8>("new", 4);
            let _ = seg.erase("b");
        }
    }
}

/// Damaged queue and stack state: an error (or a clean empty/full answer),
/// never a hang, a panic or an access outside the block.
#[test]
fn damaged_queue_and_stack_state() {
    let name = ShmName::new("qs-damage");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 3).unwrap();
    let s = seg.create_stack::<u64>("s", 3).unwrap();
    assert!(q.try_push(1).unwrap());
    assert!(s.try_push(1).unwrap());
    let qo = seg.entry("q").unwrap().unwrap().offset;
    let so = seg.entry("s").unwrap().unwrap().offset;

    // head/tail indices past the capacity (3, inside one_lap = 4).
    poke(&name, qo + 128, &3u64.to_ne_bytes());
    assert!(matches!(q.try_pop(), Err(Error::Corrupt { .. })));
    poke(&name, qo + 64, &3u64.to_ne_bytes());
    assert!(matches!(q.try_push(2), Err(Error::Corrupt { .. })));
    poke(&name, qo + 128, &0u64.to_ne_bytes());
    poke(&name, qo + 64, &1u64.to_ne_bytes());
    // A slot state from another lap.
    poke(&name, qo + 192, &((77u64 << 24) | 2).to_ne_bytes());
    assert!(matches!(q.try_pop(), Err(Error::Corrupt { .. })));
    // A queue header that disagrees with its entry.
    poke(&name, qo + 16, &64u64.to_ne_bytes());
    assert!(matches!(
        seg.open_queue::<u64>("q"),
        Err(Error::Corrupt { .. })
    ));

    // Stack words that are no state: a count beyond the capacity, phase 3.
    let bad_stack = |word: u64| {
        poke(&name, so + 64, &word.to_ne_bytes());
        assert!(
            matches!(s.try_pop(), Err(Error::Corrupt { .. })),
            "{word:#x}"
        );
        assert!(
            matches!(s.try_push(5), Err(Error::Corrupt { .. })),
            "{word:#x}"
        );
        let report = seg.check();
        assert!(
            report.problems.iter().any(|p| p.contains("stack word")),
            "{word:#x}: {report:?}"
        );
    };
    bad_stack(999);
    bad_stack(3 << 46);
    poke(&name, so + 64, &0u64.to_ne_bytes());
    assert!(s.try_push(5).unwrap());
}

#[test]
fn queue_claim_held_by_a_live_process_times_out() {
    let name = ShmName::new("qclaim-live");
    let seg = Segment::options()
        .size(1 << 20)
        .lock_timeout(Duration::from_millis(50))
        .create(name.as_str())
        .unwrap();
    let q = seg.create_queue::<u64>("q", 2).unwrap();
    let qo = seg.entry("q").unwrap().unwrap().offset;
    // Slot 0 claimed for writing (phase 1) by pid 1, which never finishes.
    poke(&name, qo + 192, &(1u64 | (1 << 2)).to_ne_bytes());
    // A try_ call never waits for a claimant: the position is taken, so
    // the queue reports full (and a consumer, empty).
    assert!(!q.try_push(1).unwrap());
    assert_eq!(q.try_pop().unwrap(), None);
    // A blocking call waits for it up to the lock timeout.
    let err = q.push(1, None).unwrap_err();
    assert!(matches!(err, Error::Busy { pid: 1, .. }), "{err}");
}

#[test]
fn lock_held_by_a_live_process_times_out() {
    let name = sample("lock-live");
    // Pid 1 is always alive.
    poke(&name, 72, &1u32.to_ne_bytes());
    let seg = quick()
        .lock_timeout(Duration::from_millis(50))
        .open(name.as_str())
        .unwrap();
    let err = seg.create_array::<u8>("x", 1).unwrap_err();
    assert!(matches!(err, Error::LockBusy { pid: 1, .. }), "{err}");
    assert!(matches!(seg.erase("a"), Err(Error::LockBusy { .. })));
    // Reads never take the lock.
    assert_eq!(seg.entries().unwrap().len(), 2);
    assert!(seg.open_array::<u64>("a").is_ok());
}

/// Run `f` on a thread; fail (instead of hanging the test run) if it takes
/// longer than a few seconds.
fn within_seconds<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{what} hangs"))
}

/// /dev/shm is world-writable: a FIFO, a symbolic link or a directory under
/// a segment's name is refused at once, never waited on.
#[test]
fn special_files_named_like_segments() {
    let fifo = ShmName::new("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(fifo.path())
        .status()
        .unwrap()
        .success());
    let target = sample("linktarget");
    let link = ShmName::new("symlink");
    std::os::unix::fs::symlink(target.path(), link.path()).unwrap();
    let dir = ShmName::new("dir");
    std::fs::create_dir(dir.path()).unwrap();
    for (name, what) in [(&fifo, "a FIFO"), (&link, "a symbolic link"), (&dir, "")] {
        let n = name.0.clone();
        for read_only in [false, true] {
            let n2 = n.clone();
            let err = within_seconds("open", move || {
                quick().read_only(read_only).open(&n2).unwrap_err()
            });
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(what), "{err}");
        }
        let n2 = n.clone();
        assert!(!within_seconds("is_shmds_segment", move || {
            shmds::is_shmds_segment(&n2)
        }));
        let listed = within_seconds("list_segments", shmds::list_segments).unwrap();
        assert!(!listed.contains(&n), "{n} listed");
    }
    let _ = std::fs::remove_dir(dir.path());
    let _ = std::fs::remove_file(link.path());
    assert!(shmds::is_shmds_segment(&target.0));
}
