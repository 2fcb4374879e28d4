//! The run-time typed structures (`RawQueue`, `RawStack`, `RawMap`) that the
//! Python and C bindings use: byte-level API, interop with the typed
//! structures on the same entry, argument checks and interruptible waits.

mod common;
use common::ShmName;
use shmds::{Error, FixedStr, Segment};
use std::time::{Duration, Instant};

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Tick {
        pub venue: u8,
        pub seq: u64,
    }
}

fn segment(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    (name, seg)
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

fn packed(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

#[test]
fn raw_queue_and_typed_queue_share_one_entry() {
    let (_n, seg) = segment("raw-queue");
    let raw = seg.create_queue_raw("q", "<Q", 4).unwrap();
    assert_eq!(raw.elem_size(), 8);
    assert_eq!(raw.type_descriptor(), "<Q");
    assert_eq!(raw.try_push_slice(&packed(&[1, 2, 3, 4, 5])).unwrap(), 4);
    assert!(raw.is_full());
    assert!(!raw.try_push(&packed(&[9])).unwrap(), "full");

    let typed = seg.open_queue::<u64>("q").unwrap();
    assert_eq!(typed.try_pop().unwrap(), Some(1));
    assert!(typed.try_push(6).unwrap());

    let mut out = vec![0u8; 8 * 8];
    assert_eq!(raw.try_pop_into(&mut out).unwrap(), 4);
    assert_eq!(u64s(&out[..32]), [2, 3, 4, 6]);
    assert!(!raw.try_pop(&mut out[..8]).unwrap(), "empty");

    // Opening by name needs no type; the wrong type or kind is refused.
    let again = seg.open_queue_raw("q").unwrap();
    assert_eq!(again.type_descriptor(), "<Q");
    assert!(matches!(
        seg.open_or_create_queue_raw("q", "<i", 4),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_stack_raw("q"),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        seg.open_queue_raw("nope"),
        Err(Error::EntryNotFound { .. })
    ));
}

#[test]
fn raw_calls_check_byte_lengths() {
    let (_n, seg) = segment("raw-lengths");
    let q = seg.create_queue_raw("q", "<Q", 4).unwrap();
    assert!(matches!(
        q.try_push(&[1, 2, 3]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        q.try_push_slice(&[0; 12]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        q.pop_into(&mut [0; 7], None, None),
        Err(Error::InvalidArgument(_))
    ));
    let s = seg.create_stack_raw("s", "<i", 4).unwrap();
    assert!(matches!(
        s.try_push(&[0; 8]),
        Err(Error::InvalidArgument(_))
    ));
    let m = seg.create_map_raw("m", "<Q", "<d", 4).unwrap();
    assert!(matches!(
        m.insert(&[0; 4], &[0; 8], None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        m.insert(&[0; 8], &[0; 4], None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        m.get(&[0; 8], &mut [0; 9]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.create_queue_raw("bad", "<Z", 4),
        Err(Error::InvalidType { .. })
    ));
}

#[test]
fn blocking_raw_pop_times_out_and_can_be_interrupted() {
    let (_n, seg) = segment("raw-interrupt");
    let q = seg.create_queue_raw("q", "<Q", 4).unwrap();
    let mut out = [0u8; 8];
    let t = Instant::now();
    assert!(matches!(
        q.pop_into(&mut out, Some(Duration::from_millis(30)), None),
        Err(Error::Timeout { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(30));

    // An interrupt check that says "stop" on its third call ends a wait
    // that would otherwise last forever.
    let mut calls = 0;
    let mut stop = || {
        calls += 1;
        calls >= 3
    };
    let t = Instant::now();
    let r = q.pop_into(&mut out, None, Some(&mut stop));
    assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(calls, 3);

    let s = seg.create_stack_raw("s", "<Q", 1).unwrap();
    assert!(s.try_push(&packed(&[1])).unwrap());
    let mut calls = 0;
    let mut stop = || {
        calls += 1;
        true
    };
    let r = s.push_slice(&packed(&[2]), None, Some(&mut stop));
    assert!(matches!(r, Err(Error::Interrupted { .. })), "{r:?}");

    // A blocked raw pop wakes when a typed push arrives from another thread.
    let typed = seg.open_queue::<u64>("q").unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            typed.push(42, None).unwrap();
        });
        let mut out = [0u8; 16];
        assert_eq!(
            q.pop_into(&mut out, Some(Duration::from_secs(10)), None)
                .unwrap(),
            1
        );
        assert_eq!(u64s(&out[..8]), [42]);
    });
}

#[test]
fn raw_stack_and_typed_stack_share_one_entry() {
    let (_n, seg) = segment("raw-stack");
    let raw = seg.create_stack_raw("s", "<Q", 3).unwrap();
    assert_eq!(raw.try_push_slice(&packed(&[1, 2, 3, 4])).unwrap(), 3);
    assert!(raw.is_full());
    let typed = seg.open_stack::<u64>("s").unwrap();
    assert_eq!(typed.try_pop().unwrap(), Some(3));
    assert!(!raw.is_full());
    let mut out = vec![0u8; 24];
    assert_eq!(raw.pop_into(&mut out, None, None).unwrap(), 2);
    assert_eq!(u64s(&out[..16]), [2, 1]);
    assert!(raw.is_empty());
    assert!(matches!(
        raw.pop_into(&mut out, Some(Duration::from_millis(5)), None),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(seg.open_stack_raw("s").unwrap().capacity(), 3);
}

#[test]
fn raw_map_matches_the_typed_map_byte_for_byte() {
    let (_n, seg) = segment("raw-map");
    let typed = seg.create_map::<FixedStr<8>, f64>("prices", 16).unwrap();
    typed.insert(FixedStr::new("AAPL").unwrap(), 189.5).unwrap();
    let raw = seg.open_map_raw("prices").unwrap();
    assert_eq!(raw.key_type(), "T{B:len:8s:bytes:}");
    assert_eq!(raw.value_type(), "<d");
    assert_eq!((raw.key_size(), raw.value_size()), (9, 8));

    let key = |s: &str| {
        let mut k = vec![0u8; 9];
        k[0] = s.len() as u8;
        k[1..1 + s.len()].copy_from_slice(s.as_bytes());
        k
    };
    let mut v = [0u8; 8];
    assert!(raw.get(&key("AAPL"), &mut v).unwrap());
    assert_eq!(f64::from_ne_bytes(v), 189.5);
    assert!(!raw.get(&key("MSFT"), &mut v).unwrap());

    let mut old = [0u8; 8];
    assert!(raw
        .insert(&key("AAPL"), &190.0f64.to_ne_bytes(), Some(&mut old))
        .unwrap());
    assert_eq!(f64::from_ne_bytes(old), 189.5);
    assert!(!raw
        .insert(&key("MSFT"), &410.0f64.to_ne_bytes(), None)
        .unwrap());
    assert_eq!(
        typed.get(&FixedStr::new("MSFT").unwrap()).unwrap(),
        Some(410.0)
    );
    assert_eq!(
        typed.get(&FixedStr::new("AAPL").unwrap()).unwrap(),
        Some(190.0)
    );

    let mut out = [0u8; 8];
    assert!(raw
        .get_or_insert(&key("AAPL"), &1.0f64.to_ne_bytes(), &mut out)
        .unwrap());
    assert_eq!(f64::from_ne_bytes(out), 190.0);
    assert!(!raw
        .get_or_insert(&key("IBM"), &1.0f64.to_ne_bytes(), &mut out)
        .unwrap());
    assert_eq!(f64::from_ne_bytes(out), 1.0);

    let mut pairs: Vec<_> = raw.iter().map(|(k, _)| k[0]).collect();
    pairs.sort();
    assert_eq!(pairs, [3, 4, 4]);
    assert!(raw.remove(&key("IBM"), Some(&mut old)).unwrap());
    assert!(!raw.remove(&key("IBM"), None).unwrap());
    assert_eq!(raw.len(), 2);
    raw.clear().unwrap();
    assert!(typed.is_empty());
}

#[test]
fn raw_map_keys_compare_by_data_not_padding() {
    let (_n, seg) = segment("raw-map-pad");
    let typed = seg.create_map::<Tick, u32>("ticks", 8).unwrap();
    typed.insert(Tick { venue: 3, seq: 99 }, 7).unwrap();
    let raw = seg.open_map_raw("ticks").unwrap();
    assert_eq!(raw.key_size(), 16);
    // The same key with garbage in its 7 padding bytes.
    let mut key = [0xAAu8; 16];
    key[0] = 3;
    key[8..].copy_from_slice(&99u64.to_ne_bytes());
    let mut v = [0u8; 4];
    assert!(raw.get(&key, &mut v).unwrap());
    assert_eq!(u32::from_ne_bytes(v), 7);
    raw.insert(&key, &8u32.to_ne_bytes(), None).unwrap();
    assert_eq!(typed.len(), 1);
    assert_eq!(typed.get(&Tick { venue: 3, seq: 99 }).unwrap(), Some(8));
}

#[test]
fn raw_map_integer_atomics_wrap_at_the_value_width() {
    let (_n, seg) = segment("raw-map-int");
    let raw = seg.create_map_raw("m", "<Q", "<i", 8).unwrap();
    let k = 5u64.to_ne_bytes();
    // An absent key counts as 0; -1 is passed as its two's complement.
    assert_eq!(raw.fetch_add(&k, u64::MAX).unwrap(), 0);
    let typed = seg.open_map::<u64, i32>("m").unwrap();
    assert_eq!(typed.get(&5).unwrap(), Some(-1));
    assert_eq!(raw.fetch_add(&k, 2).unwrap(), 0xffff_ffff);
    assert_eq!(typed.get(&5).unwrap(), Some(1));
    assert_eq!(typed.fetch_add(&5, -3).unwrap(), 1);
    assert_eq!(
        raw.compare_exchange(&k, 0xffff_fffe, 10).unwrap(),
        Ok(0xffff_fffe)
    );
    assert_eq!(raw.compare_exchange(&k, 0, 11).unwrap(), Err(Some(10)));
    assert_eq!(
        raw.compare_exchange(&6u64.to_ne_bytes(), 0, 1).unwrap(),
        Err(None)
    );
    assert_eq!(typed.compare_exchange(&5, 10, -7).unwrap(), Ok(10));
    assert_eq!(typed.get(&5).unwrap(), Some(-7));

    for (name, value_type) in [("long", "16s"), ("float", "<d"), ("bytes", "4s")] {
        let m = seg.create_map_raw(name, "<Q", value_type, 8).unwrap();
        assert!(
            matches!(m.fetch_add(&k, 1), Err(Error::InvalidArgument(_))),
            "{value_type}"
        );
        assert!(matches!(
            m.compare_exchange(&k, 0, 1),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn raw_array_integer_atomics() {
    let (_n, seg) = segment("raw-array-int");
    let a = seg.create_array_raw("counts", "<h", 4).unwrap();
    assert_eq!(a.fetch_add(1, 5).unwrap(), 0);
    assert_eq!(a.fetch_add(1, u64::MAX).unwrap(), 5); // -1
    let typed = seg.open_array::<i16>("counts").unwrap();
    assert_eq!(typed.get(1).unwrap(), 4);
    assert_eq!(a.fetch_add(2, 0x1_0000 - 1).unwrap(), 0); // wraps at 16 bits
    assert_eq!(typed.get(2).unwrap(), -1);
    assert_eq!(a.compare_exchange(2, 0xffff, 7).unwrap(), Ok(0xffff));
    assert_eq!(a.compare_exchange(2, 0, 8).unwrap(), Err(7));
    assert!(matches!(
        a.fetch_add(4, 1),
        Err(Error::IndexOutOfBounds { .. })
    ));
    let f = seg.create_array_raw("floats", "<d", 4).unwrap();
    assert!(matches!(f.fetch_add(0, 1), Err(Error::InvalidArgument(_))));
    // Threads adding at once: no increment is lost.
    let wide = seg.create_array_raw("wide", "<Q", 1).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    wide.fetch_add(0, 1).unwrap();
                }
            });
        }
    });
    assert_eq!(wide.fetch_add(0, 0).unwrap(), 40_000);
}
