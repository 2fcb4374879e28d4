//! Segment, table and array behaviour within one process.

mod common;
use common::ShmName;
use shmds::{Error, Segment};
use std::os::unix::fs::PermissionsExt;

#[test]
fn create_open_remove() {
    let name = ShmName::new("basic");
    let seg = Segment::create(name.as_str(), 100_000).unwrap();
    assert_eq!(seg.size(), 102_400, "rounded up to a page");
    assert_eq!(seg.name(), name.as_str());
    assert!(seg.used() < seg.size());
    assert!(matches!(
        Segment::create(name.as_str(), 4096 * 8),
        Err(Error::SegmentExists { .. })
    ));
    let again = Segment::open(&format!("/{}", name.as_str())).unwrap();
    assert_eq!(again.size(), seg.size());
    assert_eq!(again.seed(), seg.seed());
    // Segments grow: open_or_create with another size opens it (any size
    // up to its maximum); another stated maximum is refused.
    assert!(Segment::open_or_create(name.as_str(), 1 << 20).is_ok());
    assert!(matches!(
        Segment::options()
            .max_size(1 << 30)
            .open_or_create(name.as_str()),
        Err(Error::ShapeMismatch {
            what: "maximum size",
            ..
        })
    ));
    let oc = Segment::options().open_or_create(name.as_str()).unwrap();
    assert_eq!(oc.size(), seg.size());
    Segment::remove(name.as_str()).unwrap();
    assert!(matches!(
        Segment::open(name.as_str()),
        Err(Error::SegmentNotFound { .. })
    ));
    // The mapping outlives the name.
    let a = seg.create_array::<u8>("still-mapped", 4).unwrap();
    a.set(0, 1).unwrap();
    assert!(matches!(
        Segment::remove(name.as_str()),
        Err(Error::SegmentNotFound { .. })
    ));
}

#[test]
fn open_missing_segment() {
    let err = Segment::open("shmds-test-surely-missing-segment").unwrap_err();
    assert!(matches!(err, Error::SegmentNotFound { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"));
}

#[test]
fn names_are_validated() {
    for bad in [
        "",
        "/",
        "..",
        ".",
        "sp ace",
        "tab\t",
        "é",
        &"x".repeat(256),
        "dir/",
    ] {
        let err = Segment::create(bad, 1 << 16).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    // A '/' past the start makes a durable segment's file path.
    let err = Segment::create("no-such-dir-here/b", 1 << 16).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let seg_name = ShmName::new("names");
    let seg = Segment::create(seg_name.as_str(), 1 << 16).unwrap();
    for bad in ["", &"n".repeat(64), "new\nline"] {
        let err = seg.create_array::<u8>(bad, 1).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    seg.create_array::<u8>(&"n".repeat(63), 1).unwrap();
    seg.create_array::<u8>("prix-é-✓", 1).unwrap();
    assert!(seg.open_array::<u8>("prix-é-✓").is_ok());
}

#[test]
fn mode_is_applied_despite_umask() {
    let name = ShmName::new("mode");
    Segment::options()
        .mode(0o644)
        .create(name.as_str())
        .unwrap();
    let mode = std::fs::metadata(name.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let name2 = ShmName::new("mode-default");
    Segment::create(name2.as_str(), 1 << 16).unwrap();
    let mode = std::fs::metadata(name2.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sizes_are_checked() {
    let name = ShmName::new("sizes");
    let err = Segment::create(name.as_str(), 100).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(
        !name.path().exists(),
        "a refused create leaves nothing behind"
    );
    let err = Segment::options()
        .table_capacity(0)
        .size(1 << 20)
        .create(name.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = Segment::create(name.as_str(), u64::MAX).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn full_dev_shm_is_an_error_not_sigbus() {
    // More than this machine's /dev/shm can hold: the reservation fails up
    // front instead of a SIGBUS on first touch.
    let name = ShmName::new("nospace");
    let err = Segment::create(name.as_str(), 1 << 45).unwrap_err();
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("/dev/shm is full"));
    assert!(!name.path().exists(), "the failed segment was removed");
}

#[test]
fn read_only_segments_refuse_writes() {
    let name = ShmName::new("ro");
    let seg = Segment::create(name.as_str(), 1 << 16).unwrap();
    seg.create_array::<u32>("a", 4).unwrap();
    let ro = Segment::options()
        .read_only(true)
        .open(name.as_str())
        .unwrap();
    assert_eq!(ro.entries().unwrap().len(), 1);
    assert!(ro.check().is_ok());
    assert!(matches!(
        ro.open_array::<u32>("a"),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(
        ro.create_array::<u32>("b", 1),
        Err(Error::PermissionDenied { .. })
    ));
    assert!(matches!(ro.erase("a"), Err(Error::PermissionDenied { .. })));
}

#[test]
fn table_entries_and_types() {
    let name = ShmName::new("table");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    seg.create_array::<f64>("prices", 10).unwrap();
    seg.create_array::<u32>("ids", 3).unwrap();
    assert!(matches!(
        seg.create_array::<f64>("prices", 10),
        Err(Error::EntryExists { .. })
    ));
    let err = seg.open_array::<u32>("prices").unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("<d"), "{err}");
    assert!(matches!(
        seg.open_array::<f64>("nope"),
        Err(Error::EntryNotFound { .. })
    ));
    let entries = seg.entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].name, "prices");
    assert_eq!(entries[0].kind_name(), "array");
    assert_eq!(entries[0].elem_type, "<d");
    assert_eq!(entries[0].capacity, 10);
    assert_eq!(entries[0].offset % 64, 0);
    assert_eq!(entries[1].offset % 64, 0);
    assert!(entries[0].offset + entries[0].size <= entries[1].offset);
    assert_eq!(entries[0].creator_pid, std::process::id());
    // open_or_create with another length is refused (see
    // open_or_create_with_another_shape_is_refused); with its own, it opens.
    assert!(seg.open_or_create_array::<f64>("prices", 99).is_err());
    let again = seg.open_or_create_array::<f64>("prices", 10).unwrap();
    assert_eq!(again.len(), 10);
    assert!(seg.check().is_ok());
}

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Tick {
        pub ts: u64,
        pub price: f64,
        pub size: u32,
    }
}

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Other {
        pub ts: u64,
        pub price: f64,
        pub qty: u32,
    }
}

#[test]
fn records_are_typed() {
    let name = ShmName::new("records");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let ticks = seg.create_array::<Tick>("ticks", 4).unwrap();
    let t = Tick {
        ts: 7,
        price: 1.25,
        size: 100,
    };
    ticks.set(1, t).unwrap();
    assert_eq!(seg.open_array::<Tick>("ticks").unwrap().get(1).unwrap(), t);
    assert_eq!(ticks.type_descriptor(), "T{<Q:ts:<d:price:<I:size:4x}");
    // Same size, different field name: refused.
    assert!(matches!(
        seg.open_array::<Other>("ticks"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_array::<[u8; 24]>("ticks"),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn erase_makes_handles_stale() {
    let name = ShmName::new("erase");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let a = seg.create_array::<u64>("a", 4).unwrap();
    a.set(0, 5).unwrap();
    seg.erase("a").unwrap();
    assert!(matches!(a.get(0), Err(Error::Stale { .. })));
    assert!(matches!(a.set(0, 1), Err(Error::Stale { .. })));
    assert!(matches!(a.fetch_add(0, 1), Err(Error::Stale { .. })));
    assert!(matches!(seg.erase("a"), Err(Error::EntryNotFound { .. })));
    // The name can be created again, and gets fresh (zeroed) memory.
    let b = seg.create_array::<u64>("a", 4).unwrap();
    assert_eq!(b.get(0).unwrap(), 0);
    assert!(matches!(a.get(0), Err(Error::Stale { .. })));
    assert_eq!(seg.entries().unwrap().len(), 1);
}

#[test]
fn table_grows_and_out_of_space() {
    let name = ShmName::new("full");
    let seg = Segment::options()
        .table_capacity(2)
        .size(1 << 16)
        .max_size(1 << 16)
        .create(name.as_str())
        .unwrap();
    seg.create_array::<u8>("a", 1).unwrap();
    seg.create_array::<u8>("b", 1).unwrap();
    // A third name grows the table by a chunk of twice the size.
    seg.create_array::<u8>("c", 1).unwrap();
    assert_eq!(seg.table_capacity(), 2 + 4);
    seg.erase("a").unwrap();
    let heap = seg.heap().unwrap();
    // The biggest array that fits: block header and array header aside.
    let fit = heap.largest_free - 64 - 64;
    let err = seg
        .create_array::<u8>("big", (fit + 4096) as usize)
        .unwrap_err();
    match err {
        Error::OutOfSpace {
            requested,
            available,
        } => {
            assert!(requested > available, "{requested} > {available}");
            assert_eq!(available, heap.largest_free);
        }
        other => panic!("{other}"),
    }
    // Overflowing byte sizes are refused before allocating.
    let err = seg.create_array::<u64>("big", usize::MAX / 4).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // What fits, fits exactly.
    let d = seg.create_array::<u8>("d", fit as usize).unwrap();
    d.set(fit as usize - 1, 9).unwrap();
    let after = seg.heap().unwrap();
    assert_eq!(after.largest_free, heap.free_bytes - heap.largest_free);
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn array_operations() {
    let name = ShmName::new("array");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let a = seg.create_array::<i32>("a", 10).unwrap();
    assert_eq!(a.len(), 10);
    assert!(!a.is_empty());
    assert_eq!(a.to_vec().unwrap(), vec![0; 10]);
    a.write(2, &[1, 2, 3]).unwrap();
    let mut out = [0; 4];
    a.read(1, &mut out).unwrap();
    assert_eq!(out, [0, 1, 2, 3]);
    assert!(matches!(
        a.get(10),
        Err(Error::IndexOutOfBounds { index: 10, len: 10 })
    ));
    assert!(matches!(
        a.set(usize::MAX, 1),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        a.write(8, &[1, 2, 3]),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert!(matches!(
        a.read(usize::MAX, &mut out),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert_eq!(a.fetch_add(0, -5).unwrap(), 0);
    assert_eq!(a.load(0).unwrap(), -5);
    assert_eq!(a.compare_exchange(0, -5, 7).unwrap(), Ok(-5));
    assert_eq!(a.compare_exchange(0, -5, 8).unwrap(), Err(7));
    a.store(9, 42).unwrap();
    assert_eq!(a.get(9).unwrap(), 42);
    let empty = seg.create_array::<u8>("empty", 0).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.to_vec().unwrap(), Vec::<u8>::new());
    let f = seg.create_array::<[f32; 3]>("vec3", 2).unwrap();
    f.set(1, [1.0, 2.0, 3.0]).unwrap();
    assert_eq!(f.type_descriptor(), "(3)<f");
    // Threads sharing one handle see atomic increments add up.
    let counter = std::sync::Arc::new(seg.create_array::<u64>("ctr", 1).unwrap());
    std::thread::scope(|s| {
        for _ in 0..4 {
            let c = counter.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    c.fetch_add(0, 1).unwrap();
                }
            });
        }
    });
    assert_eq!(counter.load(0).unwrap(), 40_000);
}

/// Opening an existing structure while stating another shape is an error
/// naming both shapes; opening without stating one stays lenient.
#[test]
fn open_or_create_with_another_shape_is_refused() {
    use shmds::Error;
    let name = ShmName::new("shape");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    seg.create_array::<u32>("a", 4).unwrap();
    seg.create_queue::<u64>("q", 4).unwrap();
    seg.create_stack::<u64>("s", 4).unwrap();
    seg.create_map::<u64, u64>("m", 4).unwrap();
    let shape = |e: Error| match e {
        Error::ShapeMismatch {
            what,
            expected,
            found,
            ..
        } => (what, expected, found),
        other => panic!("expected a shape mismatch, got {other}"),
    };
    let err = seg.open_or_create_array::<u32>("a", 400).unwrap_err();
    assert!(
        err.to_string().contains("400") && err.to_string().contains('4'),
        "{err}"
    );
    assert_eq!(shape(err), ("length", 400, 4));
    assert_eq!(
        shape(seg.open_or_create_array_raw("a", "<I", 2).unwrap_err()),
        ("length", 2, 4)
    );
    assert_eq!(
        shape(seg.open_or_create_queue::<u64>("q", 8).unwrap_err()),
        ("capacity", 8, 4)
    );
    assert_eq!(
        shape(seg.open_or_create_queue_raw("q", "<Q", 8).unwrap_err()),
        ("capacity", 8, 4)
    );
    assert_eq!(
        shape(seg.open_or_create_stack::<u64>("s", 2).unwrap_err()),
        ("capacity", 2, 4)
    );
    assert_eq!(
        shape(seg.open_or_create_map::<u64, u64>("m", 99).unwrap_err()),
        ("capacity", 99, 4)
    );
    // The same shape opens; no stated shape opens whatever is there.
    assert_eq!(seg.open_or_create_array::<u32>("a", 4).unwrap().len(), 4);
    assert_eq!(
        seg.open_or_create_queue::<u64>("q", 4).unwrap().capacity(),
        4
    );
    assert_eq!(seg.open_array::<u32>("a").unwrap().len(), 4);
    assert_eq!(seg.open_queue::<u64>("q").unwrap().capacity(), 4);

    // Segments: a stated size must fit the maximum size, a stated maximum
    // size or table capacity must match.
    assert!(Segment::open_or_create(name.as_str(), 2 << 20).is_ok());
    assert_eq!(
        shape(Segment::open_or_create(name.as_str(), 8 << 30).unwrap_err()),
        ("size", 8 << 30, 4 << 30)
    );
    assert!(Segment::open_or_create(name.as_str(), (1 << 20) - 100).is_ok());
    assert_eq!(
        shape(
            Segment::options()
                .table_capacity(8)
                .open_or_create(name.as_str())
                .unwrap_err()
        ),
        ("table capacity", 8, 64)
    );
    assert!(Segment::options().open_or_create(name.as_str()).is_ok());
    assert!(Segment::open(name.as_str()).is_ok());
}

#[test]
fn asking_for_a_temporary_segment_that_is_persistent_is_refused() {
    let name = ShmName::new("temp-shape");
    let _seg = Segment::create(name.as_str(), 1 << 16).unwrap();
    let err = Segment::options()
        .temporary(true)
        .open_or_create(name.as_str())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("persistent"), "{err}");
    // Without asking, it opens.
    assert!(Segment::options().open_or_create(name.as_str()).is_ok());
}
