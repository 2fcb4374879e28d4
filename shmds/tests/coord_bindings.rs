//! The coordination primitives' behaviours that the Python bindings rely
//! on (`threading`'s promises), checked in one process with threads:
//! `notify(n)` ends at most `n` waits and only waits already in progress;
//! a failed `try_acquire` of a semaphore adds no permit; a barrier's first
//! generation releases its waiters; the waits of the `await` forms take
//! nothing.

mod common;
use common::*;
use shmds::Segment;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(60);

fn until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LONG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn notify_ends_at_most_n_waits_of_those_in_progress() {
    let name = ShmName::new("notify");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let cond = seg.create_condition("c").unwrap();
    let woke = AtomicU32::new(0);
    let again = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let g = cond.lock().unwrap();
                std::mem::forget(g);
                assert!(cond.wait_held(Some(LONG), None).unwrap().0);
                woke.fetch_add(1, Ordering::SeqCst);
                // Waits again at once: the picks still owed to the others
                // are not for this wait.
                let notified = cond.wait_held(Some(LONG), None).unwrap().0;
                again.fetch_add(1, Ordering::SeqCst);
                cond.unlock().unwrap();
                assert!(notified);
            });
        }
        until("4 waiters", || cond.waiters() == 4);
        cond.notify(2);
        until("2 woken", || woke.load(Ordering::SeqCst) == 2);
        until("4 waiters again", || cond.waiters() == 4);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(woke.load(Ordering::SeqCst), 2);
        assert_eq!(again.load(Ordering::SeqCst), 0);
        while again.load(Ordering::SeqCst) < 4 {
            cond.notify_all();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    assert_eq!(cond.waiters(), 0);
    // A timed-out wait gives its count back: a notify with nobody waiting
    // leaves nothing for the next wait.
    let g = cond.lock().unwrap();
    std::mem::forget(g);
    assert!(
        !cond
            .wait_held(Some(Duration::from_millis(10)), None)
            .unwrap()
            .0
    );
    cond.notify(1);
    assert!(
        !cond
            .wait_held(Some(Duration::from_millis(50)), None)
            .unwrap()
            .0
    );
    cond.unlock().unwrap();
}

#[test]
fn a_failed_try_acquire_adds_no_permit() {
    let name = ShmName::new("sem");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let sem = seg.create_semaphore("s", 1).unwrap();
    let permit = sem.try_acquire().unwrap().unwrap();
    assert!(sem.try_acquire().unwrap().is_none());
    assert_eq!(sem.value(), 0);
    drop(permit);
    assert_eq!(sem.value(), 1);
    assert!(sem.wait_available(Some(Duration::ZERO), None).unwrap());
    assert_eq!(sem.value(), 1, "a wait takes nothing");
}

#[test]
fn a_barrier_releases_its_first_generation_and_later_ones() {
    let name = ShmName::new("barrier");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let barrier = seg.create_barrier("b", 3).unwrap();
    std::thread::scope(|s| {
        let parties: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    (0..3)
                        .map(|_| barrier.wait_timeout(LONG).unwrap().index())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut rounds = vec![Vec::new(); 3];
        for p in parties {
            for (r, index) in p.join().unwrap().into_iter().enumerate() {
                rounds[r].push(index);
            }
        }
        for mut r in rounds {
            r.sort();
            assert_eq!(r, [0, 1, 2]);
        }
    });
    // A reset breaks the waiters of the generation it leaves, and only those.
    std::thread::scope(|s| {
        let waiter = s.spawn(|| barrier.wait_timeout(LONG));
        until("a waiter", || barrier.n_waiting() == 1);
        barrier.reset();
        assert!(matches!(
            waiter.join().unwrap(),
            Err(shmds::Error::BrokenBarrier { .. })
        ));
    });
    assert!(!barrier.is_broken());
}

#[test]
fn waits_for_a_lock_take_nothing() {
    let name = ShmName::new("lockwait");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let lock = seg.create_lock("l").unwrap();
    let rw = seg.create_rwlock("rw", 4).unwrap();
    assert!(lock.wait_unlocked(Some(Duration::ZERO), None).unwrap());
    assert!(!lock.is_locked());
    let g = lock.lock().unwrap();
    assert!(!lock
        .wait_unlocked(Some(Duration::from_millis(10)), None)
        .unwrap());
    std::thread::scope(|s| {
        let w = s.spawn(|| lock.wait_unlocked(Some(LONG), None).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        assert!(w.join().unwrap());
    });
    let r = rw.read().unwrap();
    assert!(rw.wait_readable(Some(Duration::ZERO), None).unwrap());
    assert!(!rw
        .wait_writable(Some(Duration::from_millis(10)), None)
        .unwrap());
    drop(r);
    assert!(rw.wait_writable(Some(Duration::ZERO), None).unwrap());
    let w = rw.write().unwrap();
    assert!(!rw
        .wait_readable(Some(Duration::from_millis(10)), None)
        .unwrap());
    drop(w);
    assert_eq!((rw.readers(), rw.writer()), (0, None));
}
