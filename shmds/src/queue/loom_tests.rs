use super::model::Model;
use loom::sync::Arc;
use loom::thread;

/// Two producers and a consumer racing, without spin loops (which make
/// loom's state space explode): every element arrives exactly once and
/// each producer's elements in order. (The consumer is a spawned thread:
/// see `sync::tests` for why models are shaped so.) Three threads make a
/// large space: preemption bound 1 here; `producers_race` covers the
/// producer/producer races at bound 3.
#[test]
fn two_producers_one_consumer() {
    crate::sync::model_limited(1, None, || {
        let q = Arc::new(Model::new(3));
        let q2 = q.clone();
        let consumer = loom::thread::spawn(move || [q2.try_pop(), q2.try_pop()]);
        let q3 = q.clone();
        let other = loom::thread::spawn(move || assert!(q3.try_push(10)));
        assert!(q.try_push(1));
        assert!(q.try_push(2));
        other.join().unwrap();
        let mut got: Vec<u64> = consumer.join().unwrap().into_iter().flatten().collect();
        while let Some(v) = q.try_pop() {
            got.push(v);
        }
        let mine: Vec<u64> = got.iter().copied().filter(|&v| v < 10).collect();
        assert_eq!(mine, vec![1, 2], "per-producer FIFO");
        assert_eq!(got.len(), 3);
        assert!(got.contains(&10));
    });
}

/// Two producers race for the same slots, then the main thread drains:
/// one element per position, each producer's in order.
#[test]
fn producers_race() {
    crate::sync::model(|| {
        let q = Arc::new(Model::new(2));
        let q2 = q.clone();
        let other = loom::thread::spawn(move || q2.try_push(10));
        let first = q.try_push(1);
        let second = q.try_push(2);
        let theirs = other.join().unwrap();
        assert!(first, "capacity 2 holds the first push");
        assert_eq!(
            second as u32 + theirs as u32,
            1,
            "exactly one of the other two fits"
        );
        let mut got = Vec::new();
        while let Some(v) = q.try_pop() {
            got.push(v);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            got.iter()
                .filter(|&&v| v < 10)
                .copied()
                .collect::<Vec<_>>()
                .first(),
            Some(&1)
        );
    });
}

/// Capacity 1, with wrap-around: a producer and two consumers.
#[test]
fn wrap_around_capacity_one() {
    crate::sync::model(|| {
        let q = Arc::new(Model::new(1));
        assert_eq!(q.capacity(), 1);
        let q2 = q.clone();
        let producer = loom::thread::spawn(move || {
            for v in 1..=3u64 {
                while !q2.try_push(v) {
                    thread::yield_now();
                }
            }
        });
        let q3 = q.clone();
        let consumer = loom::thread::spawn(move || {
            let mut got = Vec::new();
            for _ in 0..3 {
                if let Some(v) = q3.try_pop() {
                    got.push(v);
                }
            }
            got
        });
        let theirs = consumer.join().unwrap();
        let mut mine = Vec::new();
        while theirs.len() + mine.len() < 3 {
            match q.try_pop() {
                Some(v) => mine.push(v),
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<u64> = theirs.iter().chain(mine.iter()).copied().collect();
        // FIFO: the consumer thread's elements are increasing, and ours too.
        assert!(theirs.windows(2).all(|w| w[0] < w[1]));
        all.sort();
        assert_eq!(all, vec![1, 2, 3]);
    });
}

/// A pusher and a popper die at every pair of their pause points, on a
/// capacity-1 queue whose slot holds the previous lap's (consumed)
/// element; loom interleaves each death with the other process's steps.
/// Whatever happens: no stale or duplicated element is ever delivered, a
/// completed push is delivered unless a popper died after taking it, and
/// the queue works afterwards. (With the skip bit left out of a popper's
/// claim, the popper that dies holding a skip mark makes the survivor
/// deliver the stale 0xA1.)
#[test]
fn killed_pusher_and_popper() {
    use crate::fault::crash;
    const PUSH: [&str; 2] = ["queue.push.slot_claimed", "queue.push.tail_moved"];
    const POP: [&str; 2] = ["queue.pop.slot_claimed", "queue.pop.head_moved"];
    for push_point in PUSH {
        for pop_point in POP {
            crate::sync::model(move || {
                crash::reset();
                let q = Arc::new(Model::new(1));
                assert!(q.try_push(0xA1));
                assert_eq!(q.try_pop(), Some(0xA1));
                let q2 = q.clone();
                let pusher =
                    loom::thread::spawn(move || crash::die_at(push_point, || q2.try_push(0xB2)));
                let q3 = q.clone();
                let popper = loom::thread::spawn(move || crash::die_at(pop_point, || q3.try_pop()));
                // A survivor pops while they work (and die).
                let mut got: Vec<u64> = q.try_pop().into_iter().collect();
                let pushed = pusher.join().unwrap();
                let popped = popper.join().unwrap();
                for _ in 0..3 {
                    got.extend(q.try_pop());
                }
                got.extend(popped.flatten());
                let case = format!("{push_point} / {pop_point}: {pushed:?} {popped:?} {got:x?}");
                assert!(
                    got.iter().all(|&v| v == 0xB2),
                    "stale or foreign element: {case}"
                );
                assert!(got.len() <= 1, "duplicated: {case}");
                if pushed != Some(true) {
                    assert!(got.is_empty(), "a dead push delivered: {case}");
                } else if popped.is_some() || pop_point != "queue.pop.head_moved" {
                    // The push completed and no popper died holding it.
                    assert_eq!(got, [0xB2], "lost: {case}");
                }
                assert!(q.try_push(7), "{case}");
                assert_eq!(q.try_pop(), Some(7), "{case}");
            });
        }
    }
}

/// Full and empty are reported, never a lost or duplicated element.
#[test]
fn full_and_empty() {
    crate::sync::model(|| {
        let q = Arc::new(Model::new(1));
        assert!(q.try_push(7));
        let q2 = q.clone();
        let t = loom::thread::spawn(move || q2.try_push(8));
        let a = q.try_pop();
        let pushed = t.join().unwrap();
        assert_eq!(a, Some(7));
        let b = q.try_pop();
        assert_eq!(b.is_some(), pushed);
        if let Some(b) = b {
            assert_eq!(b, 8);
        }
        assert_eq!(q.try_pop(), None);
    });
}
