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

/// Push all of `values` in a few calls (each a run).
fn push_all(q: &Model, mut values: &[u64]) {
    for _ in 0..3 {
        values = &values[q.try_push_run(values)..];
    }
    assert!(values.is_empty(), "{values:?} found no room");
}

/// Runs (`push_slice`/`pop_into` claiming several positions per call): a
/// producer pushes a run of two while another pushes one and a consumer
/// takes a run of up to three. Every element arrives exactly once, each
/// producer's in order, and a run taken is a FIFO stretch of the queue.
#[test]
fn runs_race() {
    crate::sync::model(|| {
        let q = Arc::new(Model::new(3));
        let q2 = q.clone();
        let consumer = loom::thread::spawn(move || q2.try_pop_run(3));
        let q3 = q.clone();
        let other = loom::thread::spawn(move || q3.try_push_run(&[10]));
        // A try_ push that meets another's claim not yet finished may
        // report "full" (it does not wait for a stalled process): push
        // what is left after the race.
        let mine = q.try_push_run(&[1, 2]);
        let theirs = other.join().unwrap();
        push_all(&q, &[1, 2][mine..]);
        push_all(&q, &[10][theirs..]);
        let taken = consumer.join().unwrap();
        let mut got = taken.clone();
        loop {
            let more = q.try_pop_run(3);
            if more.is_empty() {
                break;
            }
            got.extend(more);
        }
        let ones: Vec<u64> = got.iter().copied().filter(|&v| v < 10).collect();
        assert_eq!(ones, vec![1, 2], "per-producer FIFO: {got:?}");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&10), "{got:?}");
    });
}

/// A pusher of a run of two dies at every pause point of its push while
/// a survivor pops: nothing it did not publish is ever delivered, no
/// stale element appears, and the queue works afterwards (every position
/// it claimed is turned into a skip mark by whoever meets it).
#[test]
fn killed_run_pusher() {
    use crate::fault::crash;
    const POINTS: [&str; 3] = [
        "queue.push.slot_claimed",
        "queue.run_claimed",
        "queue.push.tail_moved",
    ];
    for point in POINTS {
        crate::sync::model(move || {
            crash::reset();
            let q = Arc::new(Model::new(2));
            // A lap already used: stale values sit in the payloads.
            assert_eq!(q.try_push_run(&[0xA1, 0xA2]), 2);
            assert_eq!(q.try_pop_run(2), vec![0xA1, 0xA2]);
            let q2 = q.clone();
            let pusher =
                loom::thread::spawn(move || crash::die_at(point, || q2.try_push_run(&[1, 2])));
            let mut got = q.try_pop_run(2);
            let pushed = pusher.join().unwrap();
            for _ in 0..3 {
                got.extend(q.try_pop_run(2));
            }
            let case = format!("{point}: {pushed:?} {got:x?}");
            match pushed {
                None => assert!(got.is_empty(), "a dead push delivered: {case}"),
                Some(n) => assert_eq!(got, [1, 2][..n], "{case}"),
            }
            // A run stops at a slot a dead claimant still holds; the next
            // call recovers it.
            push_all(&q, &[7, 8]);
            let mut after = q.try_pop_run(2);
            after.extend(q.try_pop_run(2));
            assert_eq!(after, vec![7, 8], "{case}");
        });
    }
}

/// A popper of a run of two dies at every pause point of its pop while a
/// survivor pops: an element is delivered at most once, and exactly once
/// unless the dead popper had moved `head` past it (its pop took it).
#[test]
fn killed_run_popper() {
    use crate::fault::crash;
    const POINTS: [&str; 3] = [
        "queue.pop.slot_claimed",
        "queue.run_claimed",
        "queue.pop.head_moved",
    ];
    for point in POINTS {
        crate::sync::model(move || {
            crash::reset();
            let q = Arc::new(Model::new(2));
            assert_eq!(q.try_push_run(&[1, 2]), 2);
            let q2 = q.clone();
            let popper = loom::thread::spawn(move || crash::die_at(point, || q2.try_pop_run(2)));
            let mut got = q.try_pop_run(2);
            let popped = popper.join().unwrap();
            for _ in 0..3 {
                got.extend(q.try_pop_run(2));
            }
            let case = format!("{point}: {popped:?} {got:x?}");
            let mut all = got.clone();
            all.extend(popped.clone().unwrap_or_default());
            all.sort();
            all.dedup();
            let mut seen = got.clone();
            seen.extend(popped.clone().unwrap_or_default());
            assert_eq!(all.len(), seen.len(), "duplicated: {case}");
            assert!(seen.iter().all(|v| [1, 2].contains(v)), "stale: {case}");
            if popped.is_some() || point != "queue.pop.head_moved" {
                assert_eq!(all, [1, 2], "lost: {case}");
            }
            // A run stops at a slot a dead claimant still holds; the next
            // call recovers it.
            push_all(&q, &[7, 8]);
            let mut after = q.try_pop_run(2);
            after.extend(q.try_pop_run(2));
            assert_eq!(after, vec![7, 8], "{case}");
        });
    }
}

/// A run never starts at a skip mark: a pusher dies holding position 0,
/// two elements are pushed after it, and a pop of a run of three frees
/// the skip mark and then delivers both (taking the run from the mark
/// would discard them).
#[test]
fn skip_mark_then_run() {
    use crate::fault::crash;
    crate::sync::model(|| {
        crash::reset();
        let q = Arc::new(Model::new(3));
        let q2 = q.clone();
        let dead = loom::thread::spawn(move || {
            crash::die_at("queue.push.slot_claimed", || q2.try_push_run(&[9]))
        });
        assert_eq!(dead.join().unwrap(), None);
        push_all(&q, &[1, 2]);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(q.try_pop_run(3));
        }
        assert_eq!(got, [1, 2]);
    });
}
