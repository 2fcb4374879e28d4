//! `Map` in one process: the API, capacity and slot reuse, types, threads,
//! and damaged map state.

mod common;
use common::{Rng, ShmName};
use shmds::{Error, FixedStr, Map, Segment};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::Duration;

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Quote {
        pub venue: u8,
        pub price: f64,
        pub size: u32,
    }
}

fn segment(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    (name, seg)
}

#[test]
fn insert_get_remove() {
    let (_n, seg) = segment("map-basic");
    let m = seg.create_map::<u64, u64>("m", 10).unwrap();
    assert_eq!(m.capacity(), 10);
    assert!(m.is_empty());
    assert_eq!(m.get(&1).unwrap(), None);
    assert_eq!(m.insert(1, 100).unwrap(), None);
    assert_eq!(m.insert(2, 200).unwrap(), None);
    assert_eq!(m.insert(1, 101).unwrap(), Some(100));
    assert_eq!(m.get(&1).unwrap(), Some(101));
    assert!(m.contains_key(&2).unwrap());
    assert!(!m.contains_key(&3).unwrap());
    assert_eq!(m.len(), 2);
    assert_eq!(m.remove(&1).unwrap(), Some(101));
    assert_eq!(m.remove(&1).unwrap(), None);
    assert_eq!(m.len(), 1);
    assert_eq!(m.get_or_insert(2, 7).unwrap(), 200);
    assert_eq!(m.get_or_insert(3, 7).unwrap(), 7);
    assert_eq!(m.get(&3).unwrap(), Some(7));
    assert_eq!(m.key_type(), "<Q");
    assert_eq!(m.value_type(), "<Q");
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn string_keys_and_record_values() {
    let (_n, seg) = segment("map-str");
    let m = seg.create_map::<FixedStr<16>, Quote>("quotes", 64).unwrap();
    let q = Quote {
        venue: 3,
        price: 189.5,
        size: 100,
    };
    let k = FixedStr::new("AAPL").unwrap();
    m.insert(k, q).unwrap();
    assert_eq!(m.get(&k).unwrap(), Some(q));
    // Trailing zero bytes make a different key.
    let k0 = FixedStr::from_bytes(b"AAPL\0").unwrap();
    assert_eq!(m.get(&k0).unwrap(), None);
    m.insert(k0, Quote { venue: 9, ..q }).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m.get(&k).unwrap().unwrap().venue, 3);
    // Another handle on the same map, through a second attachment.
    let seg2 = Segment::open(seg.name()).unwrap();
    let m2 = seg2.open_map::<FixedStr<16>, Quote>("quotes").unwrap();
    assert_eq!(m2.get(&k0).unwrap().unwrap().venue, 9);
    let info = seg2.entry("quotes").unwrap().unwrap();
    assert_eq!(info.key_type, "T{B:len:16s:bytes:}");
    assert_eq!(info.elem_type, "T{B:venue:7x<d:price:<I:size:4x}");
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn padded_keys_compare_by_their_data() {
    shmds::record! {
        #[derive(Debug, Clone, Copy, PartialEq)]
        struct Pair { a: u8, b: u32 }
    }
    let (_n, seg) = segment("map-padded");
    let m = seg.create_map::<Pair, u64>("m", 8).unwrap();
    // Whatever the padding bytes of these values hold, equal fields find
    // the same key.
    let k1 = Pair { a: 1, b: 2 };
    let k2 = std::hint::black_box(Pair { a: 1, b: 2 });
    m.insert(k1, 5).unwrap();
    assert_eq!(m.get(&k2).unwrap(), Some(5));
    assert_eq!(m.insert(k2, 6).unwrap(), Some(5));
    assert_eq!(m.len(), 1);
}

#[test]
fn full_map_and_slot_reuse() {
    let (_n, seg) = segment("map-full");
    let m = seg.create_map::<u64, u64>("m", 4).unwrap();
    for k in 0..4 {
        m.insert(k, k).unwrap();
    }
    let err = m.insert(9, 9).unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err}");
    // Updating a key of a full map is fine.
    assert_eq!(m.insert(2, 20).unwrap(), Some(2));
    assert!(matches!(m.fetch_add(&9, 1), Err(Error::Full { .. })));
    m.remove(&0).unwrap();
    m.insert(9, 9).unwrap();
    assert_eq!(m.len(), 4);
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn inserting_and_removing_forever_never_runs_out() {
    let (_n, seg) = segment("map-churn");
    let m = seg.create_map::<u64, u64>("m", 16).unwrap();
    for k in 0..200_000u64 {
        m.insert(k, k * 3).unwrap();
        if k >= 12 {
            assert_eq!(m.remove(&(k - 12)).unwrap(), Some((k - 12) * 3));
        }
    }
    assert_eq!(m.len(), 12);
    for k in 200_000 - 12..200_000 {
        assert_eq!(m.get(&k).unwrap(), Some(k * 3));
    }
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn random_operations_match_a_std_hashmap() {
    let (_n, seg) = segment("map-model");
    for capacity in [1u64, 2, 7, 64] {
        let m = seg
            .create_map::<u32, u64>(&format!("m{capacity}"), capacity as usize)
            .unwrap();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut rng = Rng(0x9e37_79b9 + capacity);
        for step in 0..20_000u64 {
            let key = (rng.next() % (capacity * 2)) as u32;
            match rng.next() % 5 {
                0 | 1 => {
                    let r = m.insert(key, step);
                    if model.len() as u64 == capacity && !model.contains_key(&key) {
                        assert!(matches!(r, Err(Error::Full { .. })));
                    } else {
                        assert_eq!(r.unwrap(), model.insert(key, step));
                    }
                }
                2 => assert_eq!(m.remove(&key).unwrap(), model.remove(&key)),
                3 => assert_eq!(m.get(&key).unwrap(), model.get(&key).copied()),
                _ => {
                    if model.len() as u64 == capacity && !model.contains_key(&key) {
                        assert!(m.fetch_add(&key, 2).is_err());
                    } else {
                        let old = model.entry(key).or_insert(0);
                        assert_eq!(m.fetch_add(&key, 2).unwrap(), *old);
                        *old += 2;
                    }
                }
            }
            assert_eq!(m.len(), model.len());
        }
        let mut seen: Vec<(u32, u64)> = m.iter().collect();
        seen.sort();
        let mut want: Vec<(u32, u64)> = model.into_iter().collect();
        want.sort();
        assert_eq!(seen, want);
        let report = seg.check();
        assert!(report.is_ok(), "capacity {capacity}: {:?}", report.problems);
    }
}

#[test]
fn iterate_and_clear() {
    let (_n, seg) = segment("map-iter");
    let m = seg.create_map::<u64, [u64; 3]>("m", 100).unwrap();
    for k in 0..60 {
        m.insert(k, [k, k + 1, k + 2]).unwrap();
    }
    let mut keys: Vec<u64> = m
        .iter()
        .map(|(k, v)| {
            assert_eq!(v, [k, k + 1, k + 2]);
            k
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..60).collect::<Vec<_>>());
    m.clear().unwrap();
    assert!(m.is_empty());
    assert_eq!(m.iter().count(), 0);
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn atomic_counters() {
    let (_n, seg) = segment("map-counters");
    let m = seg.create_map::<u32, i64>("m", 8).unwrap();
    assert_eq!(m.fetch_add(&1, 5).unwrap(), 0);
    assert_eq!(m.fetch_add(&1, -2).unwrap(), 5);
    assert_eq!(m.compare_exchange(&1, 3, 10).unwrap(), Ok(3));
    assert_eq!(m.compare_exchange(&1, 3, 11).unwrap(), Err(Some(10)));
    assert_eq!(m.compare_exchange(&2, 0, 1).unwrap(), Err(None));
    let u = seg.create_map::<u8, u8>("wrap", 2).unwrap();
    u.insert(0, 250).unwrap();
    assert_eq!(u.fetch_add(&0, 10).unwrap(), 250);
    assert_eq!(u.get(&0).unwrap(), Some(4));
}

#[test]
fn threads_count_exactly_and_never_tear_values() {
    let (_n, seg) = segment("map-threads");
    let counters = Arc::new(seg.create_map::<u64, u64>("c", 32).unwrap());
    let data = Arc::new(seg.create_map::<u64, [u64; 4]>("d", 24).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let counters = counters.clone();
            let data = data.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(t * 7919 + 1);
                let mut adds = 0u64;
                for _ in 0..20_000 {
                    let k = rng.next() % 32;
                    match rng.next() % 4 {
                        0 => {
                            counters.fetch_add(&(k % 16), 1).unwrap();
                            adds += 1;
                        }
                        1 => {
                            let r = rng.next();
                            match data.insert(k, [k, r, !r, k ^ r]) {
                                Ok(_) | Err(Error::Full { .. }) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        2 => {
                            data.remove(&k).unwrap();
                        }
                        _ => {
                            if let Some(v) = data.get(&k).unwrap() {
                                assert_eq!(v[0], k, "value of another key");
                                assert_eq!(v[2], !v[1], "torn value");
                                assert_eq!(v[3], k ^ v[1], "torn value");
                            }
                        }
                    }
                }
                adds
            })
        })
        .collect();
    let adds: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let total: u64 = counters.iter().map(|(_, v)| v).sum();
    assert_eq!(total, adds);
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn wrong_types_kinds_and_erased_maps() {
    let (_n, seg) = segment("map-types");
    let m = seg.create_map::<u64, f64>("m", 8).unwrap();
    m.insert(1, 1.5).unwrap();
    assert!(matches!(
        seg.open_map::<u32, f64>("m"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_map::<u64, u64>("m"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_queue::<f64>("m"),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        seg.create_map::<u64, f64>("m", 8),
        Err(Error::EntryExists { .. })
    ));
    assert_eq!(
        seg.open_or_create_map::<u64, f64>("m", 8)
            .unwrap()
            .get(&1)
            .unwrap(),
        Some(1.5)
    );
    assert!(matches!(
        seg.create_map::<[u8; 300], u8>("big", 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.create_map::<u8, u8>("zero", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(m.check().is_ok());
    seg.erase("m").unwrap();
    assert!(matches!(m.check(), Err(Error::Stale { .. })));
    assert!(matches!(m.get(&1), Err(Error::Stale { .. })));
    assert!(matches!(m.insert(1, 2.0), Err(Error::Stale { .. })));
}

fn poke(name: &ShmName, offset: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(name.path()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Damaged map state gives an error, never a hang, a panic or an access
/// outside the block.
#[test]
fn damaged_map_state() {
    let name = ShmName::new("map-damage");
    let seg = Segment::options()
        .size(1 << 20)
        .lock_timeout(Duration::from_millis(50))
        .create(name.as_str())
        .unwrap();
    let m: Map<u64, [u64; 2]> = seg.create_map("m", 4).unwrap();
    m.insert(1, [1, 1]).unwrap();
    let off = seg.entry("m").unwrap().unwrap().offset;
    let slot = |i: u64| off + 128 + i * (24 + 8 + 16);
    let home = m.home_slot(&1) as u64;

    // A home lock held by a live process (pid 1): writers time out with
    // Busy; readers never take the lock.
    poke(&name, slot(home) + 8, &1u64.to_ne_bytes());
    let err = m.insert(1, [2, 2]).unwrap_err();
    assert!(matches!(err, Error::Busy { pid: 1, .. }), "{err}");
    assert_eq!(m.get(&1).unwrap(), Some([1, 1]));
    poke(&name, slot(home) + 8, &0u64.to_ne_bytes());

    // A probe bound beyond the table. Lookups read the bound mirror in the
    // control bytes (after the 4 slots, 64-aligned), not the home word,
    // unless the mirror says 255.
    let ctrl = (off + 128 + 4 * 48).div_ceil(64) * 64;
    let mirror = ctrl + 2 * home + 1;
    poke(&name, slot(home) + 8, &(99u64 << 32).to_ne_bytes());
    assert_eq!(m.get(&1).unwrap(), Some([1, 1]));
    assert!(matches!(m.insert(1, [0, 0]), Err(Error::Corrupt { .. })));
    assert!(!seg.check().is_ok());
    poke(&name, mirror, &[255]);
    assert!(matches!(m.get(&1), Err(Error::Corrupt { .. })));
    poke(&name, mirror, &[0]);
    poke(&name, slot(home) + 8, &0u64.to_ne_bytes());
    assert!(seg.check().is_ok());

    // A tag byte that is not its key's: lookups miss the key (wrong, never
    // unsafe), and the deep check reports it.
    let tag_at = |i: u64| ctrl + 2 * i;
    let keyed = home; // the only key, inserted into an empty map
    let mut tag = [0u8; 1];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(name.path()).unwrap();
        f.seek(SeekFrom::Start(tag_at(keyed))).unwrap();
        f.read_exact(&mut tag).unwrap();
    }
    poke(&name, tag_at(keyed), &[tag[0].wrapping_add(1)]);
    assert_eq!(m.get(&1).unwrap(), None);
    assert!(!seg.check().is_ok());
    poke(&name, tag_at(keyed), &tag);
    assert_eq!(m.get(&1).unwrap(), Some([1, 1]));

    // A slot state that is no phase.
    let at = (0..4)
        .find(|&i| {
            m.iter().count() == 1 && {
                let s = slot(i);
                let mut f = std::fs::File::open(name.path()).unwrap();
                let mut b = [0u8; 8];
                use std::io::Read;
                f.seek(SeekFrom::Start(s)).unwrap();
                f.read_exact(&mut b).unwrap();
                u64::from_ne_bytes(b) & 3 == 1
            }
        })
        .unwrap();
    poke(&name, slot(at), &3u64.to_ne_bytes());
    assert!(matches!(m.get(&1), Err(Error::Corrupt { .. })));
    assert!(!seg.check().is_ok());

    // Its long value being rewritten by a live process (pid 1) for ever.
    let busy = 2u64 | 4 | (1 << 3);
    poke(&name, slot(at), &busy.to_ne_bytes());
    let err = m.get(&1).unwrap_err();
    assert!(matches!(err, Error::Busy { pid: 1, .. }), "{err}");
    // Iteration skips what it cannot read.
    assert_eq!(m.iter().count(), 0);

    // A header that disagrees with its entry.
    poke(&name, off + 8, &1000u64.to_ne_bytes());
    assert!(matches!(
        seg.open_map::<u64, [u64; 2]>("m"),
        Err(Error::Corrupt { .. })
    ));
    poke(&name, off + 8, &4u64.to_ne_bytes());
    poke(&name, off + 24, &8u64.to_ne_bytes());
    assert!(matches!(
        seg.open_map::<u64, [u64; 2]>("m"),
        Err(Error::Corrupt { .. })
    ));
}
