//! Queue and Stack behaviour within one process (threads).

mod common;
use common::ShmName;
use shmds::{Error, Segment};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn segment(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 8 << 20).unwrap();
    (name, seg)
}

#[test]
fn queue_fifo_full_empty() {
    let (_n, seg) = segment("q-basic");
    let q = seg.create_queue::<u64>("q", 3).unwrap();
    assert_eq!(q.capacity(), 3, "capacity is exact, not rounded");
    assert!(q.is_empty());
    assert!(matches!(q.try_pop(), Ok(None)));
    for v in 1..=3 {
        assert!(q.try_push(v).unwrap());
    }
    assert!(q.is_full());
    assert_eq!(q.len(), 3);
    assert!(matches!(q.try_push(4), Ok(false)));
    assert_eq!(q.try_pop().unwrap(), Some(1));
    assert!(q.try_push(4).unwrap());
    assert_eq!(
        (0..3)
            .map(|_| q.try_pop().unwrap().unwrap())
            .collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert!(matches!(q.try_pop(), Ok(None)));
}

#[test]
fn queue_wraps_around_many_laps() {
    for cap in [1u64, 2, 3, 5, 8, 13] {
        let (_n, seg) = segment("q-wrap");
        let q = seg.create_queue::<u32>("q", cap as usize).unwrap();
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for round in 0..200u32 {
            let burst = (round % cap as u32) + 1;
            for _ in 0..burst {
                assert!(q.try_push(next_in).unwrap());
                next_in += 1;
            }
            assert_eq!(q.len() as u32, burst);
            for _ in 0..burst {
                assert_eq!(q.try_pop().unwrap(), Some(next_out));
                next_out += 1;
            }
        }
        assert!(q.is_empty());
    }
}

#[test]
fn queue_capacity_and_types() {
    let (_n, seg) = segment("q-types");
    assert!(matches!(
        seg.create_queue::<u8>("zero", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.create_queue::<u8>("huge", usize::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.create_queue::<u64>("big", 1 << 30),
        Err(Error::OutOfSpace { .. })
    ));
    seg.create_queue::<f64>("prices", 4).unwrap();
    assert!(matches!(
        seg.open_queue::<u64>("prices"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_stack::<f64>("prices"),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        seg.open_array::<f64>("prices"),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        seg.open_or_create_queue::<f64>("prices", 99),
        Err(Error::ShapeMismatch { .. })
    ));
    let q = seg.open_or_create_queue::<f64>("prices", 4).unwrap();
    assert_eq!(q.capacity(), 4);
    assert_eq!(q.type_descriptor(), "<d");
    let report = seg.check();
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn queue_timeouts() {
    let (_n, seg) = segment("q-timeout");
    let q = seg.create_queue::<u64>("q", 1).unwrap();
    let start = Instant::now();
    assert!(matches!(
        q.pop(Some(Duration::from_millis(30))),
        Err(Error::Timeout { .. })
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));
    q.push(1, Some(Duration::ZERO)).unwrap();
    assert!(matches!(
        q.push(2, Some(Duration::from_millis(30))),
        Err(Error::Timeout { .. })
    ));
    assert_eq!(
        q.push_slice(&[5, 6], Some(Duration::from_millis(10)))
            .unwrap(),
        0
    );
    let mut out = [0u64; 4];
    assert_eq!(
        q.pop_into(&mut out, Some(Duration::from_millis(10)))
            .unwrap(),
        1
    );
    assert!(matches!(
        q.pop_into(&mut out, Some(Duration::from_millis(10))),
        Err(Error::Timeout { .. })
    ));
}

#[test]
fn queue_blocking_wakes_across_threads() {
    let (_n, seg) = segment("q-block");
    let q = Arc::new(seg.create_queue::<u64>("q", 2).unwrap());
    let q2 = q.clone();
    let popper = std::thread::spawn(move || q2.pop(None).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    q.push(42, None).unwrap();
    assert_eq!(popper.join().unwrap(), 42);
    // And the other way: a blocked pusher is woken by a pop.
    q.push(1, None).unwrap();
    q.push(2, None).unwrap();
    let q3 = q.clone();
    let pusher = std::thread::spawn(move || q3.push(3, None).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q.pop(None).unwrap(), 1);
    pusher.join().unwrap();
    assert_eq!(q.try_pop().unwrap(), Some(2));
    assert_eq!(q.try_pop().unwrap(), Some(3));
}

#[test]
fn queue_batches() {
    let (_n, seg) = segment("q-batch");
    let q = seg.create_queue::<u32>("q", 10).unwrap();
    let items: Vec<u32> = (0..25).collect();
    assert_eq!(q.try_push_slice(&items).unwrap(), 10);
    let mut out = vec![0u32; 4];
    assert_eq!(q.try_pop_into(&mut out).unwrap(), 4);
    assert_eq!(out, [0, 1, 2, 3]);
    let mut rest = vec![0u32; 100];
    assert_eq!(q.pop_into(&mut rest, None).unwrap(), 6);
    assert_eq!(&rest[..6], &[4, 5, 6, 7, 8, 9]);
    // A blocking batch push larger than the capacity, drained by a thread.
    let q = Arc::new(q);
    let q2 = q.clone();
    let drain = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u32; 7];
        while got.len() < 25 {
            let n = q2
                .pop_into(&mut buf, Some(Duration::from_secs(10)))
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    assert_eq!(q.push_slice(&items, None).unwrap(), 25);
    assert_eq!(drain.join().unwrap(), items);
}

#[test]
fn queue_mpmc_threads() {
    const PER: u64 = 20_000;
    let (_n, seg) = segment("q-mpmc");
    let q = Arc::new(seg.create_queue::<u64>("q", 64).unwrap());
    let received: Vec<Vec<u64>> = std::thread::scope(|s| {
        for p in 0..3u64 {
            let q = q.clone();
            s.spawn(move || {
                for i in 0..PER {
                    q.push((p << 32) | i, None).unwrap();
                }
            });
        }
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                s.spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = q.pop(Some(Duration::from_millis(500))) {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        consumers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = Vec::new();
    for got in &received {
        // Per-producer FIFO: each consumer sees every producer's items in order.
        for p in 0..3u64 {
            let mine: Vec<u64> = got.iter().copied().filter(|v| v >> 32 == p).collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "producer {p} out of order"
            );
        }
        all.extend(got);
    }
    all.sort();
    let expected: Vec<u64> = (0..3u64)
        .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
        .collect();
    assert_eq!(all, expected, "every item exactly once");
}

#[test]
fn stale_handles() {
    let (_n, seg) = segment("stale");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let s = seg.create_stack::<u64>("s", 4).unwrap();
    assert!(q.try_push(1).unwrap());
    assert!(s.try_push(1).unwrap());
    assert!(q.check().is_ok() && s.check().is_ok());
    seg.erase("q").unwrap();
    seg.erase("s").unwrap();
    assert!(matches!(q.check(), Err(Error::Stale { .. })));
    assert!(matches!(s.check(), Err(Error::Stale { .. })));
    let raw = seg.create_queue_raw("rq", "<Q", 4).unwrap();
    seg.erase("rq").unwrap();
    assert!(matches!(raw.check(), Err(Error::Stale { .. })));
    assert!(matches!(q.try_push(2), Err(Error::Stale { .. })));
    assert!(matches!(q.try_pop(), Err(Error::Stale { .. })));
    assert!(matches!(q.pop(None), Err(Error::Stale { .. })));
    assert!(matches!(s.try_push(2), Err(Error::Stale { .. })));
    assert!(matches!(s.pop(None), Err(Error::Stale { .. })));
    let q2 = seg.create_queue::<u64>("q", 4).unwrap();
    assert!(q2.is_empty());
    assert!(matches!(q.try_pop(), Err(Error::Stale { .. })));
}

#[test]
fn stack_lifo_full_empty() {
    let (_n, seg) = segment("s-basic");
    let s = seg.create_stack::<i32>("s", 3).unwrap();
    assert!(s.is_empty());
    assert!(matches!(s.try_pop(), Ok(None)));
    for v in [1, 2, 3] {
        assert!(s.try_push(v).unwrap());
    }
    assert_eq!(s.len(), 3);
    assert!(matches!(s.try_push(4), Ok(false)));
    assert_eq!(s.try_pop().unwrap(), Some(3));
    assert!(s.try_push(5).unwrap());
    let mut out = [0; 8];
    assert_eq!(s.try_pop_into(&mut out).unwrap(), 3);
    assert_eq!(&out[..3], &[5, 2, 1]);
    assert_eq!(s.try_push_slice(&[7, 8, 9, 10]).unwrap(), 3);
    assert_eq!(s.len(), 3);
    assert!(seg.check().is_ok());
    assert!(matches!(
        seg.create_stack::<u8>("zero", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        seg.open_stack::<u32>("s"),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn stack_blocking_and_timeouts() {
    let (_n, seg) = segment("s-block");
    let s = Arc::new(seg.create_stack::<u64>("s", 1).unwrap());
    assert!(matches!(
        s.pop(Some(Duration::from_millis(20))),
        Err(Error::Timeout { .. })
    ));
    let s2 = s.clone();
    let popper = std::thread::spawn(move || s2.pop(None).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    s.push(9, None).unwrap();
    assert_eq!(popper.join().unwrap(), 9);
    s.push(1, None).unwrap();
    assert!(matches!(
        s.push(2, Some(Duration::from_millis(20))),
        Err(Error::Timeout { .. })
    ));
    let s3 = s.clone();
    let pusher = std::thread::spawn(move || s3.push(2, None).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(s.pop(None).unwrap(), 1);
    pusher.join().unwrap();
    assert_eq!(s.pop(None).unwrap(), 2);
    let mut out = [0u64; 3];
    s.push_slice(&[4, 5], Some(Duration::from_millis(20)))
        .unwrap();
    assert_eq!(s.pop_into(&mut out, None).unwrap(), 1);
}

#[test]
fn stack_threads_no_loss() {
    const PER: u64 = 20_000;
    let (_n, seg) = segment("s-threads");
    let s = Arc::new(seg.create_stack::<u64>("s", 16).unwrap());
    let popped: Vec<Vec<u64>> = std::thread::scope(|sc| {
        for p in 0..2u64 {
            let s = s.clone();
            sc.spawn(move || {
                for i in 0..PER {
                    s.push((p << 32) | i, None).unwrap();
                }
            });
        }
        let poppers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                sc.spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = s.pop(Some(Duration::from_millis(500))) {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        poppers.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = popped.into_iter().flatten().collect();
    all.sort();
    let expected: Vec<u64> = (0..2u64)
        .flat_map(|p| (0..PER).map(move |i| (p << 32) | i))
        .collect();
    assert_eq!(all, expected);
    assert!(seg.check().is_ok());
}

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Order { id: u64, price: f64, qty: u32 }
}

#[test]
fn records_through_queue_and_stack() {
    let (_n, seg) = segment("records");
    let q = seg.create_queue::<Order>("orders", 4).unwrap();
    let o = Order {
        id: 1,
        price: 2.5,
        qty: 3,
    };
    assert!(q.try_push(o).unwrap());
    assert_eq!(q.try_pop().unwrap(), Some(o));
    let s = seg.create_stack::<[u8; 13]>("names", 2).unwrap();
    assert!(s.try_push(*b"hello, world!").unwrap());
    assert_eq!(s.try_pop().unwrap(), Some(*b"hello, world!"));
    assert_eq!(s.type_descriptor(), "13s");
}

/// Every handle is `Clone`: a clone is another handle to the same structure,
/// usable after the original is dropped (and from another thread).
#[test]
fn handles_are_clone() {
    let (_n, seg) = segment("clone");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let s = seg.create_stack::<u32>("s", 4).unwrap();
    let a = seg.create_array::<i64>("a", 2).unwrap();
    let m = seg.create_map::<u64, f64>("m", 8).unwrap();
    let set = seg.create_set::<u16>("set", 8).unwrap();
    let lock = seg.create_lock("lock").unwrap();
    let rw = seg.create_rwlock("rw", 2).unwrap();
    let sem = seg.create_semaphore("sem", 1).unwrap();
    let ev = seg.create_event("ev").unwrap();
    let (q2, s2, a2, m2, set2) = (q.clone(), s.clone(), a.clone(), m.clone(), set.clone());
    let (lock2, rw2, sem2, ev2) = (lock.clone(), rw.clone(), sem.clone(), ev.clone());
    q.try_push(7).unwrap();
    s.try_push(8).unwrap();
    a.set(1, -3).unwrap();
    m.insert(1, 2.5).unwrap();
    set.insert(9).unwrap();
    drop((q, s, a, m, set));
    let seen = std::thread::spawn(move || {
        (
            q2.try_pop().unwrap(),
            s2.try_pop().unwrap(),
            a2.get(1).unwrap(),
            m2.get(&1).unwrap(),
            set2.contains(&9).unwrap(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(seen, (Some(7), Some(8), -3, Some(2.5), true));
    {
        let _held = lock.lock().unwrap();
        assert!(
            lock2.try_lock().unwrap().is_none(),
            "the clone is the same lock"
        );
    }
    {
        let _r = rw.read().unwrap();
        let _r2 = rw2.read().unwrap();
        assert!(rw2.try_write().unwrap().is_none());
    }
    let _p = sem.acquire().unwrap();
    assert!(sem2.try_acquire().unwrap().is_none());
    ev2.set();
    assert!(ev.is_set());
}

/// `peek` copies without taking: a queue oldest first, a stack top first,
/// and never a torn element while other threads push and pop.
#[test]
fn peek_takes_nothing_and_never_tears() {
    let (_n, seg) = segment("peek");
    let q = seg.create_queue_raw("q", "(2)<Q", 8).unwrap();
    let s = seg.create_stack_raw("s", "(2)<Q", 8).unwrap();
    let pair = |x: u64| [x.to_le_bytes(), x.to_le_bytes()].concat();
    for x in 1..=3 {
        assert!(q.try_push(&pair(x)).unwrap());
        assert!(s.try_push(&pair(x)).unwrap());
    }
    assert_eq!(q.peek(10), vec![pair(1), pair(2), pair(3)]);
    assert_eq!(q.peek(2), vec![pair(1), pair(2)]);
    assert_eq!(s.peek(10), vec![pair(3), pair(2), pair(1)]);
    assert_eq!((q.len(), s.len()), (3, 3), "nothing was taken");
    let mut out = vec![0u8; 16];
    assert!(q.try_pop(&mut out).unwrap());
    assert_eq!(q.peek(10), vec![pair(2), pair(3)]);

    // Churn: every element is a pair of equal words; a peek must never
    // return one whose halves differ (a copy torn by a concurrent reuse).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (q, s) = (Arc::new(q), Arc::new(s));
    let churn = {
        let (q, s, stop) = (q.clone(), s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut x = 10u64;
            let mut out = vec![0u8; 16];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                x += 1;
                let _ = q.try_push(&pair(x));
                let _ = s.try_push(&pair(x));
                if x % 3 != 0 {
                    let _ = q.try_pop(&mut out);
                    let _ = s.try_pop(&mut out);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_millis(300);
    let mut seen = 0;
    while Instant::now() < deadline {
        for item in q.peek(8).iter().chain(s.peek(8).iter()) {
            assert_eq!(item[..8], item[8..], "a torn element: {item:?}");
            seen += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    assert!(seen > 0);
}
