use super::model::Model;
use crate::sync::model;
use loom::sync::Arc;
use loom::thread;

/// Two keys with the same home slot in a map of `capacity`.
fn colliding(m: &Model) -> (u64, u64) {
    let a = 1;
    let b = (2..1000).find(|&k| m.home(k) == m.home(a)).unwrap();
    (a, b)
}

#[test]
fn insert_insert_same_key() {
    model(|| {
        let m = Arc::new(Model::new(2, 8));
        let m2 = m.clone();
        let t = thread::spawn(move || m2.insert(5, &1u64.to_ne_bytes()).unwrap());
        let mine = m.insert(5, &2u64.to_ne_bytes()).unwrap();
        let theirs = t.join().unwrap();
        // Exactly one insert found the key absent.
        assert!(mine.is_none() != theirs.is_none());
        assert_eq!(m.census(5), (1, 1));
        assert!(m.get(5).is_some());
    });
}

#[test]
fn insert_remove_get() {
    model(|| {
        let m = Arc::new(Model::new(2, 8));
        m.insert(3, &7u64.to_ne_bytes()).unwrap();
        let reader = {
            let m = m.clone();
            thread::spawn(move || m.get(3))
        };
        let writer = {
            let m = m.clone();
            thread::spawn(move || m.insert(3, &8u64.to_ne_bytes()).unwrap())
        };
        let removed = m.remove(3);
        let seen = reader.join().unwrap();
        let replaced = writer.join().unwrap();
        // The reader sees 7, 8 or nothing, never anything else.
        if let Some(v) = seen {
            let v = u64::from_ne_bytes(v.try_into().unwrap());
            assert!(v == 7 || v == 8, "read {v}");
        }
        let (n, len) = m.census(3);
        assert!(removed);
        assert_eq!(n as u64, len);
        // Either the remove came last (absent) or the insert re-added it.
        assert_eq!(n == 1, replaced.is_none());
    });
}

#[test]
fn removed_slots_are_reused() {
    model(|| {
        // Capacity 1: the second key only fits in the slot the first frees.
        let m = Arc::new(Model::new(1, 8));
        m.insert(1, &1u64.to_ne_bytes()).unwrap();
        let reader = {
            let m = m.clone();
            thread::spawn(move || (m.get(1), m.get(2)))
        };
        let inserted = {
            let m = m.clone();
            thread::spawn(move || m.insert(2, &2u64.to_ne_bytes()))
        };
        assert!(m.remove(1));
        let (one, two) = reader.join().unwrap();
        let inserted = inserted.join().unwrap();
        if let Some(v) = one {
            assert_eq!(u64::from_ne_bytes(v.try_into().unwrap()), 1);
        }
        if let Some(v) = two {
            assert_eq!(u64::from_ne_bytes(v.try_into().unwrap()), 2);
        }
        match inserted {
            // It ran before the remove freed the slot: full.
            Err(()) => assert_eq!(m.census(2), (0, 0)),
            Ok(None) => assert_eq!(m.census(2), (1, 1)),
            Ok(Some(_)) => panic!("key 2 was never there"),
        }
        assert_eq!(m.census(1).0, 0);
    });
}

#[test]
fn colliding_keys_and_long_values() {
    model(|| {
        // 16-byte values take the busy path; two keys share a home.
        let m = Arc::new(Model::new(2, 16));
        let (a, b) = colliding(&m);
        let value = |x: u64| [x.to_ne_bytes(), x.to_ne_bytes()].concat();
        m.insert(a, &value(1)).unwrap();
        let reader = {
            let m = m.clone();
            thread::spawn(move || m.get(b))
        };
        let writer = {
            let m = m.clone();
            thread::spawn(move || m.insert(b, &value(2)).unwrap())
        };
        m.insert(a, &value(3)).unwrap();
        assert!(m.remove(a));
        if let Some(v) = reader.join().unwrap() {
            assert_eq!(v, value(2), "torn or foreign value");
        }
        assert!(writer.join().unwrap().is_none());
        assert_eq!(m.get(b), Some(value(2)));
        assert_eq!(m.get(a), None);
        assert_eq!(m.census(b), (1, 1));
    });
}

#[test]
fn set_add_add_same_key() {
    model(|| {
        // A set: values of 0 bytes.
        let m = Arc::new(Model::new(2, 0));
        let m2 = m.clone();
        let t = thread::spawn(move || m2.add(5).unwrap());
        let mine = m.add(5).unwrap();
        let theirs = t.join().unwrap();
        // Exactly one add found the key absent.
        assert!(mine != theirs);
        assert_eq!(m.census(5), (1, 1));
        assert_eq!(m.get(5), Some(vec![]));
    });
}

#[test]
fn set_add_remove_contains_in_one_slot() {
    model(|| {
        // Capacity 1: key 2 only fits in the slot that removing 1 frees.
        let m = Arc::new(Model::new(1, 0));
        assert!(m.add(1).unwrap());
        let reader = {
            let m = m.clone();
            thread::spawn(move || (m.get(1).is_some(), m.get(2).is_some()))
        };
        let added = {
            let m = m.clone();
            thread::spawn(move || m.add(2))
        };
        assert!(m.remove(1));
        let (_, two) = reader.join().unwrap();
        let added = added.join().unwrap();
        match added {
            // It ran before the remove freed the slot: full.
            Err(()) => assert_eq!(m.census(2), (0, 0)),
            Ok(new) => {
                assert!(new, "key 2 was never there");
                assert_eq!(m.census(2), (1, 1));
            }
        }
        // Key 2 is seen only if it was added.
        assert!(!two || added == Ok(true));
        assert_eq!(m.census(1).0, 0);
    });
}
