//! Shutdown, waking waiters on purpose, readiness waits and tasks
//! (`task_done`/`join`) of queues and stacks, with threads of one process.
//! (Python's tests run the same across real processes.)
//!
//! No test asserts a duration: a wait that is not woken as it should be
//! runs into a long timeout and the test fails on the result it returns.

mod common;
use common::*;
use shmds::{Error, RawQueue, RawStack, Segment};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Long enough that only a missed wake-up runs into it.
const LONG: Option<Duration> = Some(Duration::from_secs(60));

fn segment(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = Segment::create(name.as_str(), 8 << 20).unwrap();
    (name, seg)
}

/// A polling pop's result in the shape of a waiting one's: an empty
/// structure is `Error::Empty`.
fn polled(r: shmds::Result<Option<u64>>) -> shmds::Result<u64> {
    r?.ok_or_else(|| Error::Empty {
        name: "polled".into(),
    })
}

fn is_shut_down<T: std::fmt::Debug>(r: shmds::Result<T>) -> bool {
    matches!(r, Err(Error::ShutDown { .. }))
}

#[test]
fn queue_shutdown_refuses_pushes_and_drains_pops() {
    let (_n, seg) = segment("sd-q");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    for v in 1..=3 {
        assert!(q.try_push(v).unwrap());
    }
    assert!(!q.is_shutdown());
    assert_eq!(q.shutdown(false).unwrap(), 0);
    assert!(q.is_shutdown());
    assert!(is_shut_down(q.try_push(9)));
    assert!(is_shut_down(q.push(9, LONG)));
    assert!(is_shut_down(q.push_slice(&[9, 9], LONG)));
    let other = seg.open_queue::<u64>("q").unwrap();
    assert!(other.is_shutdown(), "the flag is in the segment");
    assert_eq!(other.try_pop().unwrap(), Some(1));
    assert_eq!(q.pop(LONG).unwrap(), 2);
    let mut out = [0u64; 4];
    assert_eq!(q.pop_into(&mut out, LONG).unwrap(), 1);
    assert_eq!(out[0], 3);
    // Empty and shut down: every pop fails at once, blocking or not.
    assert!(is_shut_down(q.try_pop()));
    assert!(is_shut_down(q.pop(LONG)));
    assert!(is_shut_down(q.pop(None)));
    assert!(is_shut_down(q.try_pop_into(&mut out)));
    assert_eq!(q.shutdown(true).unwrap(), 0, "twice is harmless");
    let msg = q.try_push(1).unwrap_err().to_string();
    assert!(msg.contains("\"q\" was shut down"), "{msg}");
}

#[test]
fn immediate_shutdown_discards_what_is_left() {
    let (_n, seg) = segment("sd-imm");
    let q = seg.create_queue::<u64>("q", 8).unwrap();
    q.push_slice(&[1, 2, 3, 4, 5], None).unwrap();
    assert_eq!(q.shutdown(true).unwrap(), 5);
    assert!(q.is_empty());
    assert!(is_shut_down(q.try_pop()));
    let s = seg.create_stack::<u64>("s", 8).unwrap();
    s.push_slice(&[1, 2, 3], None).unwrap();
    assert_eq!(s.shutdown(true).unwrap(), 3);
    assert!(is_shut_down(s.try_pop()));
    assert!(is_shut_down(s.try_push(1)));
}

#[test]
fn stack_shutdown_refuses_pushes_and_drains_pops() {
    let (_n, seg) = segment("sd-s");
    let s = seg.create_stack::<u64>("s", 4).unwrap();
    s.push_slice(&[1, 2], None).unwrap();
    s.shutdown(false).unwrap();
    assert!(s.is_shutdown());
    assert!(is_shut_down(s.try_push(3)));
    assert!(is_shut_down(s.push(3, LONG)));
    assert_eq!(s.try_pop().unwrap(), Some(2));
    assert_eq!(s.pop(LONG).unwrap(), 1);
    assert!(is_shut_down(s.try_pop()));
    assert!(is_shut_down(s.pop(None)));
    // The nodes refused pushes took came back: the lists are intact.
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

#[test]
fn shutdown_wakes_blocked_pops_and_pushes() {
    let (_n, seg) = segment("sd-wake");
    let empty = Arc::new(seg.create_queue::<u64>("empty", 2).unwrap());
    let full = Arc::new(seg.create_queue::<u64>("full", 1).unwrap());
    assert!(full.try_push(1).unwrap());
    let stack = Arc::new(seg.create_stack::<u64>("stack", 1).unwrap());
    let (e, f, s) = (empty.clone(), full.clone(), stack.clone());
    let waiters = vec![
        std::thread::spawn(move || is_shut_down(e.pop(None))),
        std::thread::spawn(move || is_shut_down(f.push(2, None))),
        std::thread::spawn(move || is_shut_down(s.pop(None))),
    ];
    std::thread::sleep(Duration::from_millis(50)); // let them fall asleep
    empty.shutdown(false).unwrap();
    full.shutdown(false).unwrap();
    stack.shutdown(false).unwrap();
    for w in waiters {
        assert!(w.join().unwrap(), "a waiter did not see the shutdown");
    }
    assert_eq!(
        full.try_pop().unwrap(),
        Some(1),
        "the element put before stays"
    );
}

type Push = Arc<dyn Fn(u64) -> shmds::Result<()> + Send + Sync>;
type Pop = Arc<dyn Fn() -> shmds::Result<u64> + Send + Sync>;

/// Producers push until refused while the main thread shuts down; a
/// consumer pops (blocking, or polling with `try_pop`) until told "shut
/// down". Every push that succeeded is delivered exactly once: none lands
/// after the consumer left.
fn no_element_outlives_shutdown(kind: &str, polling: bool) {
    for round in 0..20u64 {
        let (_n, seg) = segment("sd-race");
        let (push, pop, shut): (Push, Pop, Box<dyn Fn()>) = if kind == "queue" {
            let q = Arc::new(seg.create_queue::<u64>("q", 64).unwrap());
            let (a, b, c) = (q.clone(), q.clone(), q);
            (
                Arc::new(move |v| a.push(v, LONG)),
                Arc::new(move || {
                    if polling {
                        polled(b.try_pop())
                    } else {
                        b.pop(LONG)
                    }
                }),
                Box::new(move || {
                    c.shutdown(false).unwrap();
                }),
            )
        } else {
            let s = Arc::new(seg.create_stack::<u64>("s", 64).unwrap());
            let (a, b, c) = (s.clone(), s.clone(), s);
            (
                Arc::new(move |v| a.push(v, LONG)),
                Arc::new(move || {
                    if polling {
                        polled(b.try_pop())
                    } else {
                        b.pop(LONG)
                    }
                }),
                Box::new(move || {
                    c.shutdown(false).unwrap();
                }),
            )
        };
        let pushed = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let (push, pushed) = (push.clone(), pushed.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        match push(p << 32 | i) {
                            Ok(()) => pushed.fetch_add(1, Ordering::SeqCst),
                            Err(Error::ShutDown { .. }) => return,
                            Err(e) => panic!("push: {e}"),
                        };
                    }
                })
            })
            .collect();
        let consumer = std::thread::spawn(move || {
            let mut got = std::collections::HashSet::new();
            loop {
                match pop() {
                    Ok(v) => assert!(got.insert(v), "{v:#x} delivered twice"),
                    Err(Error::Empty { .. }) => std::thread::yield_now(),
                    Err(Error::ShutDown { .. }) => return got.len() as u64,
                    Err(e) => panic!("pop: {e}"),
                }
            }
        });
        std::thread::sleep(Duration::from_millis(2 + round % 5));
        shut();
        for p in producers {
            p.join().unwrap();
        }
        let got = consumer.join().unwrap();
        assert_eq!(
            got,
            pushed.load(Ordering::SeqCst),
            "{kind} (polling: {polling}), round {round}: pushes that succeeded vs elements delivered"
        );
    }
}

#[test]
fn no_queue_element_outlives_shutdown() {
    no_element_outlives_shutdown("queue", false);
    no_element_outlives_shutdown("queue", true);
}

#[test]
fn no_stack_element_outlives_shutdown() {
    no_element_outlives_shutdown("stack", false);
    no_element_outlives_shutdown("stack", true);
}

fn interrupted<T: std::fmt::Debug>(r: shmds::Result<T>) -> bool {
    matches!(r, Err(Error::Interrupted { .. }))
}

type Waiting = Box<dyn FnOnce(&mut dyn FnMut() -> bool) -> bool + Send>;

/// An interrupt flag plus `wake_waiters` (what a binding does to cancel a
/// wait from another thread) ends every kind of blocking call.
#[test]
fn wake_waiters_lets_an_interrupt_flag_end_every_kind_of_wait() {
    let (_n, seg) = segment("sd-int");
    let q = Arc::new(seg.create_queue_raw("q", "<Q", 1).unwrap());
    let s = Arc::new(seg.create_stack_raw("s", "<Q", 1).unwrap());
    let (q1, q2, q3, q4, s1, s2) = (
        q.clone(),
        q.clone(),
        q.clone(),
        q.clone(),
        s.clone(),
        s.clone(),
    );
    let cases: Vec<(&str, bool, Waiting)> = vec![
        (
            "queue pop",
            true,
            Box::new(move |i| interrupted(q1.pop_into(&mut [0; 8], LONG, Some(i)))),
        ),
        (
            "queue wait_not_empty",
            true,
            Box::new(move |i| interrupted(q2.wait_not_empty(LONG, Some(i)))),
        ),
        (
            "queue join",
            true,
            Box::new(move |i| {
                q3.try_push(&[1; 8]).unwrap(); // not empty: join waits
                let r = interrupted(q3.join(LONG, Some(i)));
                q3.try_pop(&mut [0; 8]).unwrap();
                r
            }),
        ),
        (
            "queue push",
            true,
            Box::new(move |i| {
                q4.try_push(&[1; 8]).unwrap(); // full now
                let r = interrupted(q4.push_slice(&[2; 8], LONG, Some(i)));
                q4.try_pop(&mut [0; 8]).unwrap();
                r
            }),
        ),
        (
            "stack pop",
            false,
            Box::new(move |i| interrupted(s1.pop_into(&mut [0; 8], LONG, Some(i)))),
        ),
        (
            "stack wait_not_full",
            false,
            Box::new(move |i| {
                s2.try_push(&[1; 8]).unwrap();
                let r = interrupted(s2.wait_not_full(LONG, Some(i)));
                s2.try_pop(&mut [0; 8]).unwrap();
                r
            }),
        ),
    ];
    for (what, on_queue, wait) in cases {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = flag.clone();
        let waiter = std::thread::spawn(move || wait(&mut || seen.load(Ordering::SeqCst)));
        std::thread::sleep(Duration::from_millis(30)); // let it fall asleep
        flag.store(true, Ordering::SeqCst);
        if on_queue {
            q.wake_waiters();
        } else {
            s.wake_waiters();
        }
        assert!(waiter.join().unwrap(), "{what}: not interrupted");
    }
}

#[test]
fn waits_for_readiness_do_not_take_anything() {
    let (_n, seg) = segment("sd-ready");
    let q = seg.create_queue_raw("q", "<Q", 1).unwrap();
    let s = seg.create_stack_raw("s", "<Q", 1).unwrap();
    let short = Some(Duration::from_millis(5));
    fn check<R>(
        push: impl Fn(&R) -> shmds::Result<bool>,
        pop: impl Fn(&R) -> shmds::Result<bool>,
        not_empty: impl Fn(&R, Option<Duration>) -> shmds::Result<bool>,
        not_full: impl Fn(&R, Option<Duration>) -> shmds::Result<bool>,
        r: &R,
        short: Option<Duration>,
    ) {
        assert!(!not_empty(r, short).unwrap(), "empty: times out");
        assert!(not_full(r, short).unwrap());
        assert!(push(r).unwrap());
        assert!(not_empty(r, short).unwrap());
        assert!(not_empty(r, short).unwrap(), "and nothing was taken");
        assert!(!not_full(r, short).unwrap(), "full: times out");
        assert!(pop(r).unwrap());
    }
    check(
        |q: &RawQueue| q.try_push(&[1; 8]),
        |q| q.try_pop(&mut [0; 8]),
        |q, t| q.wait_not_empty(t, None),
        |q, t| q.wait_not_full(t, None),
        &q,
        short,
    );
    check(
        |s: &RawStack| s.try_push(&[1; 8]),
        |s| s.try_pop(&mut [0; 8]),
        |s, t| s.wait_not_empty(t, None),
        |s, t| s.wait_not_full(t, None),
        &s,
        short,
    );
    // A thread waiting for an element wakes when one is pushed.
    let q = Arc::new(q);
    let q2 = q.clone();
    let waiter = std::thread::spawn(move || q2.wait_not_empty(LONG, None));
    std::thread::sleep(Duration::from_millis(30));
    q.try_push(&[7; 8]).unwrap();
    assert!(waiter.join().unwrap().unwrap());
    // Shut down: a wait returns at once (the next call reports it).
    q.shutdown(false).unwrap();
    assert!(q.wait_not_full(LONG, None).unwrap());
    assert!(is_shut_down(q.try_push(&[1; 8])));
    s.shutdown(false).unwrap();
    assert!(s.wait_not_empty(LONG, None).unwrap());
}

#[test]
fn tasks_count_counting_pops_until_done() {
    let (_n, seg) = segment("sd-tasks");
    let q = Arc::new(seg.create_queue_raw("q", "<Q", 8).unwrap());
    let short = Some(Duration::from_millis(5));
    assert!(q.join(short, None).unwrap(), "empty, nothing taken");
    q.try_push_slice(&[0u8; 24]).unwrap();
    assert!(!q.join(short, None).unwrap(), "not empty");
    let mut two = [0u8; 16];
    assert_eq!(q.try_pop_tasks_into(&mut two).unwrap(), 2);
    assert_eq!(q.unfinished_tasks(), 2);
    let mut one = [0u8; 8];
    assert!(q.try_pop(&mut one).unwrap()); // a pop that does not count
    assert_eq!(q.unfinished_tasks(), 2);
    assert!(!q.join(short, None).unwrap(), "two tasks unfinished");
    q.task_done().unwrap();
    // A joiner in another thread wakes when the last task is done.
    let q2 = q.clone();
    let joiner = std::thread::spawn(move || q2.join(LONG, None));
    std::thread::sleep(Duration::from_millis(30));
    q.task_done().unwrap();
    assert!(joiner.join().unwrap().unwrap());
    let err = q.task_done().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("more times than"), "{err}");
    // Blocking counting pops count too, and a handle of another process's
    // view (another open) shares the counter.
    q.try_push(&[5; 8]).unwrap();
    let other = seg.open_queue_raw("q").unwrap();
    assert_eq!(other.pop_tasks_into(&mut one, LONG, None).unwrap(), 1);
    assert_eq!(q.unfinished_tasks(), 1);
    q.task_done().unwrap();
    assert!(q.join(short, None).unwrap());
}

#[test]
fn immediate_shutdown_releases_join() {
    let (_n, seg) = segment("sd-join");
    let q = Arc::new(seg.create_queue_raw("q", "<Q", 8).unwrap());
    q.try_push_slice(&[0u8; 32]).unwrap();
    let q2 = q.clone();
    let joiner = std::thread::spawn(move || q2.join(LONG, None));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(q.shutdown(true).unwrap(), 4);
    assert!(joiner.join().unwrap().unwrap());
}

/// The body of the child processes below; does nothing as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    match role.as_str() {
        // Push 42 and report how it went in out[0]: 1 pushed, 2 shut down.
        "push" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let out = seg.open_array::<u64>("out").unwrap();
            let code = match q.push(42, LONG) {
                Ok(()) => 1,
                Err(Error::ShutDown { .. }) => 2,
                Err(e) => panic!("push: {e}"),
            };
            out.store(0, code).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// A child pushes and pauses for a while at `point`; meanwhile this
/// process shuts the queue down and pops without waiting. Returns what the
/// pop got and how the child's push ended.
#[cfg(feature = "fault-injection")]
fn shutdown_while_a_push_is_paused_at(point: &str) -> (shmds::Result<u64>, u64) {
    let name = ShmName::new("sd-pause");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let out = seg.create_array::<u64>("out", 1).unwrap();
    let pause = TempPath::new("sd-pause");
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &[
            (ROLE, "push".into()),
            ("SHMDS_SEGMENT", name.0.clone()),
            ("SHMDS_PAUSE_AT", point.into()),
            ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ("SHMDS_PAUSE_MS", "300".into()),
        ],
    ));
    assert!(
        wait_for_file(&pause.0, Duration::from_secs(20)),
        "the child did not reach {point}"
    );
    q.shutdown(false).unwrap();
    let got = polled(q.try_pop());
    assert!(child.0.wait().unwrap().success());
    let pushed = out.load(0).unwrap();
    // Whatever happened, nothing is left behind after "shut down".
    if got.is_err() {
        assert!(is_shut_down(q.try_pop()), "{point}: an element landed late");
    }
    (got, pushed)
}

/// Paused after its claim, before reading the flag: the push sees the
/// shutdown, leaves a skip mark and fails; the pop passes the mark.
#[cfg(feature = "fault-injection")]
#[test]
fn a_push_that_claimed_before_the_shutdown_but_reads_it_after_fails() {
    let (got, pushed) = shutdown_while_a_push_is_paused_at("queue.push.tail_moved");
    assert!(matches!(got, Err(Error::ShutDown { .. })), "{got:?}");
    assert_eq!(pushed, 2, "the push reports the shutdown");
}

/// Paused after reading the flag clear, before publishing: the push counts
/// as made before the shutdown, so the pop waits for it (its last look)
/// instead of reporting "shut down" and leaving the element behind.
#[cfg(feature = "fault-injection")]
#[test]
fn a_pop_waits_for_a_push_that_read_the_flag_before_the_shutdown() {
    let (got, pushed) = shutdown_while_a_push_is_paused_at("queue.push.shutdown_read");
    assert_eq!(got.unwrap(), 42);
    assert_eq!(pushed, 1);
}
