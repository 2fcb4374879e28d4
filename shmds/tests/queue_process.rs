//! Queues and stacks shared by real processes: a stress run with several
//! producer and consumer processes, blocking across processes, and processes
//! killed with SIGKILL in the middle of push and pop.

mod common;
use common::*;
use shmds::{Error, Segment};
use std::time::{Duration, Instant};

const PRODUCERS: u64 = 3;
const CONSUMERS: u64 = 3;
const PER_PRODUCER: u64 = 350_000;
const TOTAL: u64 = PRODUCERS * PER_PRODUCER;

fn env(role: &str, seg: &ShmName, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> =
        vec![(ROLE, role.into()), ("SHMDS_SEGMENT", seg.0.clone())];
    for (k, val) in extra {
        v.push((Box::leak(k.to_string().into_boxed_str()), val.clone()));
    }
    v
}

fn var(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    match role.as_str() {
        "producer" => {
            let p = var("SHMDS_CHILD");
            let q = seg.open_queue::<u64>("q").unwrap();
            let items: Vec<u64> = (0..PER_PRODUCER).map(|i| (p << 32) | i).collect();
            if p == 0 {
                // One producer pushes in batches.
                for chunk in items.chunks(100) {
                    assert_eq!(q.push_slice(chunk, None).unwrap(), chunk.len());
                }
            } else {
                for v in items {
                    q.push(v, None).unwrap();
                }
            }
        }
        "consumer" => {
            let c = var("SHMDS_CHILD");
            let q = seg.open_queue::<u64>("q").unwrap();
            let marks = seg.open_array::<u8>("marks").unwrap();
            let done = seg.open_array::<u64>("done").unwrap();
            let mut last = [None::<u64>; PRODUCERS as usize];
            let mut buf = vec![0u64; 64];
            loop {
                let n = if c == 0 {
                    match q.pop_into(&mut buf, Some(Duration::from_millis(200))) {
                        Ok(n) => n,
                        Err(Error::Timeout { .. }) => 0,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    match q.pop(Some(Duration::from_millis(200))) {
                        Ok(v) => {
                            buf[0] = v;
                            1
                        }
                        Err(Error::Timeout { .. }) => 0,
                        Err(e) => panic!("{e}"),
                    }
                };
                for &v in &buf[..n] {
                    let (p, i) = (v >> 32, v & 0xffff_ffff);
                    assert!(p < PRODUCERS && i < PER_PRODUCER, "foreign value {v:#x}");
                    // Per-producer FIFO: this consumer sees each producer's items in order.
                    if let Some(prev) = last[p as usize] {
                        assert!(i > prev, "producer {p}: {i} after {prev}");
                    }
                    last[p as usize] = Some(i);
                    marks.fetch_add((p * PER_PRODUCER + i) as usize, 1).unwrap();
                }
                if n > 0 {
                    done.fetch_add(0, n as u64).unwrap();
                } else if done.load(0).unwrap() >= TOTAL {
                    break;
                }
            }
        }
        "push" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            q.push(var("SHMDS_VALUE"), None).unwrap();
        }
        "pop" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let out = seg.open_array::<u64>("out").unwrap();
            let v = q.pop(None).unwrap();
            out.store(0, v).unwrap();
            out.store(1, 1).unwrap();
        }
        "try-push" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let _ = q.try_push(var("SHMDS_VALUE"));
        }
        "try-pop" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let _ = q.try_pop();
        }
        "push-run" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            let v = var("SHMDS_VALUE");
            q.push_slice(&[v, v + 1, v + 2], None).unwrap();
        }
        "pop-run" => {
            let q = seg.open_queue::<u64>("q").unwrap();
            q.pop_into(&mut [0; 3], None).unwrap();
        }
        "stack-push-run" => {
            let s = seg.open_stack::<u64>("s").unwrap();
            let v = var("SHMDS_VALUE");
            s.push_slice(&[v, v + 1, v + 2], None).unwrap();
        }
        "stack-pop-run" => {
            let s = seg.open_stack::<u64>("s").unwrap();
            s.pop_into(&mut [0; 3], None).unwrap();
        }
        "stack-push" => {
            let s = seg.open_stack::<u64>("s").unwrap();
            s.push(var("SHMDS_VALUE"), None).unwrap();
        }
        "stack-pop" => {
            let s = seg.open_stack::<u64>("s").unwrap();
            s.pop(None).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn producers_and_consumers_in_separate_processes() {
    let name = ShmName::new("qstress");
    let seg = Segment::create(name.as_str(), 16 << 20).unwrap();
    seg.create_queue::<u64>("q", 1024).unwrap();
    let marks = seg.create_array::<u8>("marks", TOTAL as usize).unwrap();
    seg.create_array::<u64>("done", 1).unwrap();
    let start = Instant::now();
    let mut children: Vec<KillOnDrop> = Vec::new();
    for c in 0..CONSUMERS {
        children.push(KillOnDrop(spawn_self(
            "child_role",
            &env("consumer", &name, &[("SHMDS_CHILD", c.to_string())]),
        )));
    }
    for p in 0..PRODUCERS {
        children.push(KillOnDrop(spawn_self(
            "child_role",
            &env("producer", &name, &[("SHMDS_CHILD", p.to_string())]),
        )));
    }
    for mut c in children {
        assert!(
            c.0.wait().unwrap().success(),
            "a producer or consumer failed"
        );
    }
    eprintln!(
        "{TOTAL} items through 3+3 processes in {:?}",
        start.elapsed()
    );
    let all = marks.to_vec().unwrap();
    let missing = all.iter().filter(|&&m| m == 0).count();
    let doubled = all.iter().filter(|&&m| m > 1).count();
    assert_eq!((missing, doubled), (0, 0), "every item exactly once");
    assert!(seg.open_queue::<u64>("q").unwrap().is_empty());
}

#[test]
fn blocked_pop_wakes_on_push_from_another_process() {
    let name = ShmName::new("qwake");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let out = seg.create_array::<u64>("out", 2).unwrap();
    let mut child = KillOnDrop(spawn_self("child_role", &env("pop", &name, &[])));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(out.load(1).unwrap(), 0, "the child is still blocked");
    q.push(77, None).unwrap();
    assert!(child.0.wait().unwrap().success());
    assert_eq!(out.load(0).unwrap(), 77);
}

/// Start a child that pauses at `point` doing `role`, then kill it there.
#[cfg(feature = "fault-injection")]
fn kill_at(name: &ShmName, role: &str, point: &str, value: u64) {
    assert!(
        kill_at_or_finish(name, role, point, value),
        "{role} child finished without reaching {point}"
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn producer_killed_mid_push_does_not_wedge_the_queue() {
    for point in ["queue.push.slot_claimed", "queue.push.tail_moved"] {
        let name = ShmName::new("qdeadpush");
        let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
        let q = seg.create_queue::<u64>("q", 2).unwrap();
        assert!(q.try_push(1).unwrap());
        kill_at(&name, "push", point, 111);
        // Survivors carry on: the dead push is skipped (its slot is freed
        // when a consumer passes it), nothing else is lost.
        assert_eq!(q.pop(Some(Duration::from_secs(10))).unwrap(), 1, "{point}");
        q.push(2, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(q.pop(Some(Duration::from_secs(10))).unwrap(), 2, "{point}");
        assert!(matches!(q.try_pop(), Ok(None)), "{point}");
        for round in 0..10 {
            assert!(q.try_push(round).unwrap());
            assert_eq!(q.try_pop().unwrap(), Some(round));
        }
        assert!(seg.check().is_ok(), "{point}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn consumer_killed_mid_pop_does_not_wedge_the_queue() {
    // Killed before moving head: the element goes back and is delivered.
    let name = ShmName::new("qdeadpop1");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 2).unwrap();
    seg.create_array::<u64>("out", 2).unwrap();
    assert!(q.try_push(5).unwrap());
    kill_at(&name, "pop", "queue.pop.slot_claimed", 0);
    assert_eq!(
        q.pop(Some(Duration::from_secs(10))).unwrap(),
        5,
        "restored, not lost"
    );

    // Killed after moving head: that element is lost, the queue goes on, and
    // its slot is reused (even by a plain try_push) once the ring wraps.
    let name = ShmName::new("qdeadpop2");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 2).unwrap();
    seg.create_array::<u64>("out", 2).unwrap();
    assert!(q.try_push(5).unwrap());
    assert!(q.try_push(6).unwrap());
    kill_at(&name, "pop", "queue.pop.head_moved", 0);
    assert_eq!(q.try_pop().unwrap(), Some(6));
    for round in 0..10 {
        assert!(q.try_push(round).unwrap());
        assert!(q.try_push(round + 100).unwrap());
        assert_eq!(q.try_pop().unwrap(), Some(round));
        assert_eq!(q.try_pop().unwrap(), Some(round + 100));
    }
    assert!(seg.check().is_ok());
}

#[cfg(feature = "fault-injection")]
#[test]
fn sleeping_consumer_survives_a_producer_killed_mid_push() {
    let name = ShmName::new("qdeadwake");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let out = seg.create_array::<u64>("out", 2).unwrap();
    // The consumer sleeps on slot 0 ...
    let mut consumer = KillOnDrop(spawn_self("child_role", &env("pop", &name, &[])));
    std::thread::sleep(Duration::from_millis(100));
    // ... a producer claims slot 0 and dies before publishing ...
    kill_at(&name, "push", "queue.push.tail_moved", 111);
    // ... and a later push (to slot 1) still reaches the sleeping consumer.
    q.push(333, None).unwrap();
    let start = Instant::now();
    while out.load(1).unwrap() == 0 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(consumer.0.wait().unwrap().success());
    assert_eq!(out.load(0).unwrap(), 333);
}

#[cfg(feature = "fault-injection")]
#[test]
fn stack_survives_killed_processes() {
    let name = ShmName::new("sdead");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let s = seg.create_stack::<u64>("s", 3).unwrap();
    // Killed holding the claim, before and after writing its element: the
    // next call takes the claim back; the element never shows up.
    for point in ["stack.push.claimed", "stack.push.written"] {
        kill_at(&name, "stack-push", point, 1);
        assert_eq!(s.len(), 0, "{point}");
    }
    assert!(s.try_push(10).unwrap());
    // Killed holding the claim while popping: the element is still there.
    for point in ["stack.pop.claimed", "stack.pop.read"] {
        kill_at(&name, "stack-pop", point, 0);
        assert_eq!(s.len(), 1, "{point}");
    }
    // Nothing leaked: all three slots are usable.
    assert!(s.try_push(20).unwrap());
    assert!(s.try_push(30).unwrap());
    assert!(matches!(s.try_push(40), Ok(false)));
    assert_eq!(s.try_pop().unwrap(), Some(30));
    assert_eq!(s.try_pop().unwrap(), Some(20));
    assert_eq!(s.try_pop().unwrap(), Some(10));
    assert!(matches!(s.try_pop(), Ok(None)));
    assert!(seg.check().is_ok());
}

/// A process killed holding a run of queue positions (`push_slice`,
/// `pop_into` claim several per call): every position is recovered as a
/// single claim. A dead push run's elements never show up; a dead pop run
/// that had not moved `head` gives all of its elements back; after it
/// moved `head` they are lost, and nothing else is.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_runs_do_not_wedge_the_queue() {
    for point in ["queue.run_claimed", "queue.push.tail_moved"] {
        let name = ShmName::new("qrunpush");
        let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
        let q = seg.create_queue::<u64>("q", 4).unwrap();
        assert!(q.try_push(1).unwrap());
        kill_at(&name, "push-run", point, 100);
        let mut got = Vec::new();
        let mut out = [0u64; 4];
        for _ in 0..6 {
            let n = q.try_pop_into(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, [1], "{point}: the dead run delivered");
        for round in 0..5u64 {
            assert_eq!(
                q.push_slice(&[round, round + 10, round + 20], None)
                    .unwrap(),
                3
            );
            assert_eq!(q.pop_into(&mut out, None).unwrap(), 3, "{point}");
            assert_eq!(&out[..3], &[round, round + 10, round + 20], "{point}");
        }
        assert!(seg.check().is_ok(), "{point}");
    }
    for (point, lost) in [("queue.run_claimed", false), ("queue.pop.head_moved", true)] {
        let name = ShmName::new("qrunpop");
        let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
        let q = seg.create_queue::<u64>("q", 4).unwrap();
        assert_eq!(q.push_slice(&[7, 8, 9, 10], None).unwrap(), 4);
        kill_at(&name, "pop-run", point, 0);
        let mut got = Vec::new();
        let mut out = [0u64; 4];
        for _ in 0..6 {
            let n = q.try_pop_into(&mut out).unwrap();
            got.extend_from_slice(&out[..n]);
        }
        let expected: &[u64] = if lost { &[10] } else { &[7, 8, 9, 10] };
        assert_eq!(got, expected, "{point}");
        assert_eq!(q.push_slice(&[1, 2, 3, 4], None).unwrap(), 4, "{point}");
        assert_eq!(q.pop_into(&mut out, None).unwrap(), 4, "{point}");
        assert_eq!(out, [1, 2, 3, 4], "{point}");
        assert!(seg.check().is_ok(), "{point}");
    }
}

/// The same for the stack's one-claim runs: a dead push run is not counted,
/// a dead pop run's elements stay, and no capacity is lost.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_stack_runs_leave_it_whole() {
    let name = ShmName::new("srun");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let s = seg.create_stack::<u64>("s", 4).unwrap();
    assert!(s.try_push(1).unwrap());
    kill_at(&name, "stack-push-run", "stack.push.written", 100);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s.push_slice(&[2, 3, 4], None).unwrap(),
        3,
        "all 4 slots usable"
    );
    kill_at(&name, "stack-pop-run", "stack.pop.read", 0);
    let mut out = [0u64; 4];
    assert_eq!(s.pop_into(&mut out, None).unwrap(), 4);
    assert_eq!(
        out,
        [4, 3, 2, 1],
        "the dead pop run's elements stayed, in order"
    );
    assert!(seg.check().is_ok());
}

/// Run `role` in a child that pauses at `point`; kill it there. A child that
/// finishes without reaching the point (say, a pop of an empty queue) is
/// just reaped. Returns whether it was killed at the point.
#[cfg(feature = "fault-injection")]
fn kill_at_or_finish(name: &ShmName, role: &str, point: &str, value: u64) -> bool {
    let pause = TempPath::new("qpair");
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &env(
            role,
            name,
            &[
                ("SHMDS_VALUE", value.to_string()),
                ("SHMDS_PAUSE_AT", point.into()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ),
    ));
    let start = Instant::now();
    loop {
        if pause.0.exists() {
            kill_and_reap(&mut child.0);
            return true;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{role} child failed before {point}");
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{role} child neither reached {point} nor finished"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Two processes killed one after the other, at every pair of pause points
/// of push and pop, on queues of capacity 1 and 2 whose slots hold stale
/// elements of an earlier lap. The survivors never see an element that was
/// not pushed or was already popped (the stale-element bug: a consumer killed
/// right after claiming a skip mark made it look like a real element), lose
/// at most the element of a pop killed after moving head, and the queue goes
/// on working.
#[cfg(feature = "fault-injection")]
#[test]
fn every_pair_of_kills_leaves_a_working_queue() {
    const POINTS: [(&str, &str); 4] = [
        ("try-push", "queue.push.slot_claimed"),
        ("try-push", "queue.push.tail_moved"),
        ("try-pop", "queue.pop.slot_claimed"),
        ("try-pop", "queue.pop.head_moved"),
    ];
    const STALE: u64 = 0xA0;
    const COMMITTED: u64 = 0xC1;
    let mut cases = 0;
    for capacity in [1u64, 2] {
        for committed in [false, true] {
            for first in POINTS {
                for second in POINTS {
                    let name = ShmName::new("qpair");
                    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
                    let q = seg.create_queue::<u64>("q", capacity as usize).unwrap();
                    // A lap of stale payloads in every slot.
                    for i in 0..capacity {
                        assert!(q.try_push(STALE + i).unwrap());
                    }
                    for _ in 0..capacity {
                        q.try_pop().unwrap();
                    }
                    if committed {
                        assert!(q.try_push(COMMITTED).unwrap());
                    }
                    let mut lossy_pops = 0;
                    for (k, (role, point)) in [first, second].into_iter().enumerate() {
                        let killed = kill_at_or_finish(&name, role, point, 0xB1 + k as u64);
                        if killed && point == "queue.pop.head_moved" {
                            lossy_pops += 1;
                        }
                    }
                    let case = format!(
                        "capacity {capacity}, committed {committed}, {first:?} then {second:?}"
                    );
                    // Drain. try_pop takes over dead claims after one liveness check.
                    let mut got = Vec::new();
                    let mut empties = 0;
                    while empties < 3 {
                        match q.try_pop() {
                            Ok(Some(v)) => got.push(v),
                            Ok(None) => empties += 1,
                            Err(e) => panic!("{case}: {e}"),
                        }
                        assert!(got.len() <= 4, "{case}: endless elements {got:x?}");
                    }
                    let expected: Vec<u64> = if committed { vec![COMMITTED] } else { vec![] };
                    if got != expected {
                        assert!(
                            got.is_empty() && committed && lossy_pops > 0,
                            "{case}: drained {got:x?}, expected {expected:x?}"
                        );
                    }
                    for round in 0..(2 * capacity + 1) {
                        q.push(round, Some(Duration::from_secs(10)))
                            .unwrap_or_else(|e| panic!("{case}: push {e}"));
                        assert_eq!(
                            q.pop(Some(Duration::from_secs(10)))
                                .unwrap_or_else(|e| panic!("{case}: pop {e}")),
                            round,
                            "{case}"
                        );
                    }
                    assert!(q.is_empty(), "{case}");
                    let report = seg.check();
                    assert!(report.is_ok(), "{case}: {:?}", report.problems);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 64);
}

/// A producer process whose leader thread exited (as after `pthread_exit`
/// in a C `main`) while a worker thread pushes is alive: the consumer
/// must never take over its claims, so every item arrives, in order. (When
/// liveness looked at the leader only, consumers waiting on the worker's
/// claims took them over and items were lost.)
#[test]
fn producer_whose_leader_thread_exited_loses_nothing() {
    const ITEMS: u64 = 50_000;
    let name = ShmName::new("qleader");
    let seg = Segment::create(name.as_str(), 1 << 20).unwrap();
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let segment = name.0.clone();
    // SAFETY: the child runs Rust code on a new thread right after fork;
    // glibc keeps malloc usable in a forked child, and the child never
    // returns into the test harness (it ends with _exit).
    let child = unsafe { libc::fork() };
    if child == 0 {
        std::thread::spawn(move || {
            let pushed = (|| -> shmds::Result<()> {
                let seg = Segment::open(&segment)?;
                let q = seg.open_queue::<u64>("q")?;
                for i in 0..ITEMS {
                    q.push(i, Some(Duration::from_secs(30)))?;
                }
                Ok(())
            })();
            // SAFETY: ends the whole child process from this thread.
            unsafe { libc::_exit(if pushed.is_ok() { 0 } else { 1 }) }
        });
        // SAFETY: the exit system call ends only the leader thread (as
        // pthread_exit does, without unwinding through Rust frames).
        unsafe {
            libc::syscall(libc::SYS_exit, 0);
            libc::_exit(3)
        }
    }
    assert!(child > 0, "fork failed");
    /// Kills the forked producer if the test fails before reaping it.
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            if self.0 > 0 {
                // SAFETY: signalling and reaping our own child.
                unsafe {
                    libc::kill(self.0, libc::SIGKILL);
                    libc::waitpid(self.0, std::ptr::null_mut(), 0);
                }
            }
        }
    }
    let mut reap = Reap(child);
    for expected in 0..ITEMS {
        let got = q
            .pop(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("item {expected}: {e}"));
        assert_eq!(got, expected, "lost or reordered items");
    }
    let mut status = 0;
    // SAFETY: reaping the child we forked.
    while unsafe { libc::waitpid(child, &mut status, 0) } != child {}
    reap.0 = 0;
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert!(q.is_empty());
}
