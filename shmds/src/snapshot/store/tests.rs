//! Tests of the snapshot store.
use super::*;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("shmds-store-test-{}-{n}", std::process::id());
        let p = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn store() -> (TempDir, Store) {
    let t = TempDir::new();
    let s = Store::open(&t.0).unwrap();
    (t, s)
}

fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    (0..len).map(|_| next()).collect()
}

fn entry(name: &str, kind: &str, offset: u64, size: u64) -> SnapshotEntry {
    let (name, kind, type_descriptor) = (name.into(), kind.into(), "f64".into());
    let hash = [0; 32];
    SnapshotEntry {
        name,
        kind,
        type_descriptor,
        key_descriptor: None,
        offset,
        size,
        hash,
    }
}

fn meta(created_unix_ns: u64, entries: Vec<SnapshotEntry>) -> SnapshotMeta {
    let source = "seg one".into();
    SnapshotMeta {
        source,
        segment_format: 4,
        created_unix_ns,
        entries,
    }
}

fn damaged<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Damaged { .. }))
}

fn invalid<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

fn count_chunk_files(s: &Store) -> usize {
    let subs = fs::read_dir(s.path().join(CHUNKS_DIR)).unwrap();
    subs.map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn round_trip() {
    let (_t, s) = store();
    for (i, len) in [0, 1, CHUNK_SIZE, 3 * CHUNK_SIZE + 5]
        .into_iter()
        .enumerate()
    {
        let img = image(len, i as u64 + 1);
        let half = len as u64 / 2;
        let mut tail = entry("tail", "map", half, len as u64 - half);
        tail.key_descriptor = Some("u32".into());
        let entries = vec![entry("all", "array", 0, len as u64), tail];
        let info = s.write(&img, meta(i as u64, entries)).unwrap();
        assert_eq!((info.chunks, info.entries), (len.div_ceil(CHUNK_SIZE), 2));
        let (m, back) = s.read(&info.id).unwrap();
        assert!(back == img, "size {len}");
        assert_eq!(
            (m.id, m.source, m.segment_format, m.size),
            (info.id.clone(), "seg one".into(), 4, len as u64)
        );
        assert_eq!(m.entries[0].hash, *blake3::hash(&img).as_bytes());
        assert_eq!(
            m.entries[1].hash,
            *blake3::hash(&img[half as usize..]).as_bytes()
        );
        assert_eq!(m.entries[1].key_descriptor.as_deref(), Some("u32"));
        assert!(s.verify(Some(&info.id)).unwrap().is_ok());
    }
    // Repeated chunks are stored once and read back.
    let zeros = vec![0u8; 4 * CHUNK_SIZE + 3];
    let info = s.write(&zeros, meta(9, vec![])).unwrap();
    assert_eq!(
        (info.chunks, info.distinct_chunks, info.new_chunks),
        (5, 2, 2)
    );
    assert!(s.read(&info.id).unwrap().1 == zeros);
    assert!(invalid(&s.write(
        &zeros,
        meta(9, vec![entry("x", "array", 10, u64::MAX)])
    )));
    assert_eq!(Store::open(s.path()).unwrap().list().unwrap().len(), 5);
}

#[test]
fn same_image_twice_and_small_change() {
    let (_t, s) = store();
    // 12.5 MiB: hashed and written on two threads.
    let img = image(200 * CHUNK_SIZE, 7);
    let a = s.write(&img, meta(1, vec![])).unwrap();
    assert_eq!((a.new_chunks, a.new_bytes), (200, img.len() as u64));
    let b = s.write(&img, meta(1, vec![])).unwrap();
    assert_eq!((&b.id, b.new_chunks, b.new_bytes), (&a.id, 0, 0));
    let mut changed = img.clone();
    changed[5 * CHUNK_SIZE + 17] ^= 1;
    changed[150 * CHUNK_SIZE] ^= 0xff;
    let c = s.write(&changed, meta(2, vec![])).unwrap();
    assert_ne!(c.id, a.id);
    assert_eq!((c.new_chunks, c.new_bytes), (2, 2 * CHUNK_SIZE as u64));
    assert!(s.read(&c.id).unwrap().1 == changed);
    assert_eq!((s.list().unwrap().len(), count_chunk_files(&s)), (2, 202));
}

#[test]
fn list_order_and_new_bytes() {
    let (_t, s) = store();
    let first = image(4 * CHUNK_SIZE, 1);
    let mut second = first.clone();
    second[0] ^= 1;
    let mut third = second.clone();
    third.extend_from_slice(&[9; 10]);
    let c = s.write(&third, meta(30, vec![])).unwrap();
    let a = s.write(&first, meta(10, vec![])).unwrap();
    let b = s.write(&second, meta(20, vec![])).unwrap();
    let list = s.list().unwrap();
    let ids: Vec<&str> = list.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [&a.id, &b.id, &c.id]);
    let news: Vec<(usize, u64)> = list.iter().map(|i| (i.new_chunks, i.new_bytes)).collect();
    assert_eq!(
        news,
        [(4, 4 * CHUNK_SIZE as u64), (1, CHUNK_SIZE as u64), (1, 10)]
    );
    // The same created time: ordered by id.
    let mut d = meta(10, vec![]);
    d.source = "other".into();
    let d = s.write(&first, d).unwrap();
    let list = s.list().unwrap();
    let mut same = [&a.id, &d.id];
    same.sort();
    assert_eq!([&list[0].id, &list[1].id], same);
    assert_eq!(list[1].new_chunks, 0);
}

#[test]
fn resolve_prefixes() {
    let (_t, s) = store();
    let id = s.write(b"hello", meta(1, vec![])).unwrap().id;
    assert_eq!(s.resolve(&id).unwrap(), id);
    assert_eq!(s.resolve(&id[..4]).unwrap(), id);
    assert_eq!(s.resolve(&id[..9].to_ascii_uppercase()).unwrap(), id);
    assert!(invalid(&s.resolve("ab")) && invalid(&s.resolve("zzzz")));
    let other = if id.starts_with('0') { "1111" } else { "0000" };
    assert!(matches!(
        s.resolve(other),
        Err(Error::SnapshotNotFound { .. })
    ));
    let (x, y) = (
        format!("abcd{}", "0".repeat(60)),
        format!("abcd{}", "1".repeat(60)),
    );
    fs::write(s.manifest_path(&x), "").unwrap();
    fs::write(s.manifest_path(&y), "junk\n").unwrap();
    match s.resolve("abcd") {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains(&x) && msg.contains(&y), "{msg}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.resolve("abcd0").unwrap(), x);
    assert!(damaged(&s.manifest("abcd0")) && damaged(&s.read("abcd1")));
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn diff_entries() {
    let (_t, s) = store();
    let img = image(1000, 3);
    let mut keyed = entry("e", "map", 300, 10);
    let (ea, eb, ec) = (
        entry("a", "array", 0, 100),
        entry("b", "array", 100, 100),
        entry("c", "queue", 200, 100),
    );
    let a = s
        .write(&img, meta(1, vec![ea, eb.clone(), ec, keyed.clone()]))
        .unwrap();
    // "a" moves (same bytes), "b" changes, "c" goes, "d" comes, "e" gets a key.
    keyed.key_descriptor = Some("u64".into());
    let mut img2 = img.clone();
    img2[150] ^= 1;
    img2[500..600].copy_from_slice(&img[0..100]);
    let entries = vec![
        keyed,
        entry("d", "stack", 700, 10),
        eb,
        entry("a", "array", 500, 100),
    ];
    let b = s.write(&img2, meta(2, entries)).unwrap();
    let changes = s.diff(&a.id, &b.id).unwrap();
    let kinds: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| match c {
            EntryChange::Added(_) => (c.name(), "added"),
            EntryChange::Removed(_) => (c.name(), "removed"),
            EntryChange::Changed { .. } => (c.name(), "changed"),
            EntryChange::Unchanged(_) => (c.name(), "unchanged"),
        })
        .collect();
    let expected = [
        ("a", "unchanged"),
        ("b", "changed"),
        ("c", "removed"),
        ("d", "added"),
        ("e", "changed"),
    ];
    assert_eq!(kinds, expected);
    let EntryChange::Changed { before, after } = &changes[1] else {
        panic!()
    };
    assert_ne!(before.hash, after.hash);
    let same = s.diff(&a.id, &a.id).unwrap();
    assert!(same.iter().all(|c| matches!(c, EntryChange::Unchanged(_))));
}

fn fixture() -> (TempDir, Store, String) {
    let (t, s) = store();
    let id = s
        .write(&image(3 * CHUNK_SIZE + 5, 11), meta(1, vec![]))
        .unwrap()
        .id;
    (t, s, id)
}

#[test]
fn verify_and_read_detect_damaged_chunks() {
    for damage in ["flip", "truncate", "remove", "extend"] {
        let (_t, s, id) = fixture();
        assert!(s.verify(None).unwrap().is_ok());
        let victim = s.manifest(&id).unwrap().chunks[1];
        let path = s.chunk_path(&victim);
        let mut bytes = fs::read(&path).unwrap();
        match damage {
            "flip" => bytes[1000] ^= 4,
            "truncate" => bytes.truncate(100),
            "extend" => bytes.push(0),
            _ => fs::remove_file(&path).unwrap(),
        }
        if damage != "remove" {
            fs::write(&path, &bytes).unwrap();
        }
        let report = s.verify(None).unwrap();
        assert_eq!((report.snapshots, report.chunks), (1, 4));
        assert_eq!(report.problems.len(), 1, "{damage}: {:?}", report.problems);
        assert!(report.problems[0].contains(&hex(&victim)) && report.problems[0].contains(&id));
        match s.read(&id) {
            Err(Error::Damaged { what, detail }) => {
                assert!(what.contains(&hex(&victim)) && what.contains(&id), "{what}");
                assert!(
                    detail.contains("65536..131072") && detail.contains("shmds verify"),
                    "{detail}"
                );
            }
            other => panic!("{damage}: {:?}", other.map(|_| ())),
        }
        if damage != "flip" {
            // Writing the image again rewrites a chunk of the wrong length.
            s.write(&image(3 * CHUNK_SIZE + 5, 11), meta(1, vec![]))
                .unwrap();
            assert!(
                s.verify(None).unwrap().is_ok() && s.read(&id).is_ok(),
                "{damage}"
            );
        }
    }
}

#[test]
fn verify_detects_edited_manifest() {
    let (_t, s, id) = fixture();
    let path = s.manifest_path(&id);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("created 1\n", "created 2\n")).unwrap();
    let problems = s.verify(None).unwrap().problems;
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].contains(&id) && problems[0].contains("root"),
        "{problems:?}"
    );
    assert!(damaged(&s.manifest(&id)) && damaged(&s.read(&id)));
    assert!(s.list().unwrap().is_empty());
    // A good manifest under another id's name is damaged too.
    let other = s.write(b"x", meta(5, vec![])).unwrap().id;
    let fake = format!(
        "{}{}",
        &other[..63],
        if other.ends_with('0') { "1" } else { "0" }
    );
    fs::copy(s.manifest_path(&other), s.manifest_path(&fake)).unwrap();
    assert!(damaged(&s.manifest(&fake)));
    assert_eq!(s.verify(None).unwrap().problems.len(), 2);
}

#[test]
fn gc_removes_unused_chunks_only() {
    let (_t, s) = store();
    let a_img = image(3 * CHUNK_SIZE, 5);
    let mut b_img = a_img.clone();
    b_img[0] ^= 1;
    let a = s.write(&a_img, meta(1, vec![])).unwrap();
    let b = s.write(&b_img, meta(2, vec![])).unwrap();
    assert_eq!((a.new_chunks, b.new_chunks), (3, 1));
    s.remove(&a.id[..6]).unwrap();
    assert!(matches!(
        s.remove(&a.id),
        Err(Error::SnapshotNotFound { .. })
    ));
    let chunk = s.manifest(&b.id).unwrap().chunks[1];
    let strays = [
        s.chunk_path(&chunk).with_file_name(".tmp-1-1"),
        s.path().join(SNAPSHOTS_DIR).join(".tmp-2-2"),
    ];
    for stray in &strays {
        fs::write(stray, b"half").unwrap();
    }
    let r = s.gc().unwrap();
    assert_eq!(
        (r.chunks_removed, r.bytes_freed, r.chunks_kept),
        (1, CHUNK_SIZE as u64, 3)
    );
    assert!(strays.iter().all(|p| !p.exists()));
    assert!(s.read(&b.id).unwrap().1 == b_img);
    assert!(s.verify(None).unwrap().is_ok());
    assert_eq!(s.gc().unwrap().chunks_removed, 0);
    // A damaged manifest stops gc before it deletes anything.
    s.remove(&b.id).unwrap();
    fs::write(s.manifest_path(&b.id), "shmds-snapshot 1\ngarbage\n").unwrap();
    assert!(damaged(&s.gc()));
    assert_eq!(count_chunk_files(&s), 3);
    fs::remove_file(s.manifest_path(&b.id)).unwrap();
    assert_eq!(s.gc().unwrap().chunks_removed, 3);
    assert_eq!(count_chunk_files(&s), 0);
}

#[test]
fn refuses_foreign_directories() {
    let t = TempDir::new();
    fs::create_dir_all(&t.0).unwrap();
    drop(Store::open(&t.0).unwrap());
    assert_eq!(fs::read_to_string(t.0.join(MARKER_NAME)).unwrap(), MARKER);
    Store::open(&t.0).unwrap();
    fs::write(t.0.join(MARKER_NAME), "shmds-store 2\n").unwrap();
    match Store::open(&t.0) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("another version"), "{msg}"),
        other => panic!("{other:?}"),
    }
    fs::write(t.0.join(MARKER_NAME), "hello").unwrap();
    assert!(invalid(&Store::open(&t.0)));
    let u = TempDir::new();
    fs::create_dir_all(&u.0).unwrap();
    fs::write(u.0.join("notes.txt"), "mine").unwrap();
    match Store::open(&u.0) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("not empty"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(!u.0.join(MARKER_NAME).exists());
}

/// A valid manifest text: 2 chunks and 2 entries.
fn good_manifest() -> String {
    let mut e = entry("name", "map", 1, 65536);
    e.key_descriptor = Some("u8".into());
    let mut meta = meta(77, vec![e, entry("", "", 0, 0)]);
    meta.source = "src".into();
    let meta = render_meta(&meta, CHUNK_SIZE as u64 + 1);
    let chunks = [[0xab; 32], [2; 32]];
    let root = root_hash(meta.as_bytes(), &chunks);
    render_manifest(meta, &chunks, &root)
}

#[test]
fn bad_manifests_are_damaged_not_panics() {
    let path = Path::new("x.manifest");
    let good = good_manifest();
    let m = parse_manifest(good.as_bytes(), path).unwrap();
    assert_eq!(
        (m.size, m.chunks.len(), m.entries.len(), m.created_unix_ns),
        (65537, 2, 2, 77)
    );
    assert_eq!(m.entries[0].key_descriptor.as_deref(), Some("u8"));
    let swap = |from: &str, to: &str| good.replacen(from, to, 1);
    let chunk1 = format!("chunk {}\n", hex(&[0xab; 32]));
    let cases = [
        String::new(),
        "\n".into(),
        "garbage\n".into(),
        good.trim_end().into(),
        format!("{good}extra\n"),
        format!("{good}\n"),
        good.replace('\n', "\r\n"),
        good[..good.len() - 66].into(),
        swap("size 65537", "size 99999999999999999999999"),
        swap("size 65537", "size 18446744073709551615"),
        swap("size 65537", "size +65537"),
        swap("size 65537", "size 065537"),
        swap("size 65537", "size 1"),
        swap("chunk-size 65536", "chunk-size 1"),
        swap("segment-format 4", "segment-format 4294967296"),
        swap("shmds-snapshot 1", "shmds-snapshot 2"),
        swap("source 737263", "source 73726"),
        swap("source 737263", "source 7372GG"),
        swap("entry 1 65536", "entry 18446744073709551615 65536"),
        swap("entry 1 65536", "entry 1 65537"),
        swap("entry 1 65536", "entry 1"),
        swap(" 7538", " 7538 extra"),
        swap(" 7538", " --"),
        swap(&chunk1, ""),
        swap(&chunk1, &format!("{chunk1}{chunk1}")),
        swap(&chunk1, &chunk1.to_uppercase().replace("CHUNK", "chunk")),
        swap("root ", "root 00"),
    ];
    for case in &cases {
        let r = parse_manifest(case.as_bytes(), path);
        assert!(damaged(&r), "{case:?}: {r:?}");
    }
    assert!(damaged(&parse_manifest(
        b"shmds-snapshot 1\n\xff\xfe\n",
        path
    )));
    // Every one-byte change and every truncation is caught.
    for i in 0..good.len() {
        for c in [b'x', b'\n', b' ', b'0', b'9'] {
            let mut bytes = good.clone().into_bytes();
            if bytes[i] != c {
                bytes[i] = c;
                assert!(damaged(&parse_manifest(&bytes, path)), "byte {i} -> {c}");
            }
        }
        assert!(damaged(&parse_manifest(&good.as_bytes()[..i], path)));
    }
}

#[test]
fn untrusted_store_files() {
    let (_t, s) = store();
    // A well-formed manifest naming 1,000 missing chunks (62.5 MiB):
    // refused before anything that size is allocated.
    let meta = render_meta(&meta(1, vec![]), 1000 * CHUNK_SIZE as u64);
    let chunks = vec![[7; 32]; 1000];
    let root = root_hash(meta.as_bytes(), &chunks);
    let id = hex(&root);
    fs::write(s.manifest_path(&id), render_manifest(meta, &chunks, &root)).unwrap();
    assert_eq!(s.manifest(&id).unwrap().size, 1000 * CHUNK_SIZE as u64);
    match s.read(&id) {
        Err(Error::Damaged { what, detail }) => {
            assert!(
                what.contains(&hex(&[7; 32])) && detail.contains("missing"),
                "{detail}"
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let report = s.verify(None).unwrap();
    assert_eq!((report.chunks, report.problems.len()), (1, 1));
    // An oversized (sparse) manifest is damaged, and not read whole.
    let big = format!("{}e", "f".repeat(63));
    File::create(s.manifest_path(&big))
        .unwrap()
        .set_len(MAX_MANIFEST + 10)
        .unwrap();
    match s.manifest(&big) {
        Err(Error::Damaged { detail, .. }) => assert!(detail.contains("larger"), "{detail}"),
        other => panic!("{other:?}"),
    }
    // Unknown files in the chunks tree are left alone by gc.
    fs::remove_file(s.manifest_path(&big)).unwrap();
    fs::remove_file(s.manifest_path(&id)).unwrap();
    fs::write(s.path().join(CHUNKS_DIR).join("README"), "keep").unwrap();
    s.gc().unwrap();
    assert!(s.path().join(CHUNKS_DIR).join("README").exists());
}
