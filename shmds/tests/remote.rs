//! Remote segments on real `redis-server`s this test starts: the same
//! operations run on a local segment and on a remote one must give the same
//! results (one suite, two backends); typing and staleness as locally;
//! blocking calls; locks with leases; `Unavailable` when the server is gone;
//! acknowledged pushes surviving a server SIGKILL (AOF on); a consumer
//! SIGKILLed while holding taken elements loses none of them; failure
//! injection.
#![cfg(feature = "remote")]

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{kill_and_reap, spawn_self, wait_for_file, KillOnDrop, Rng, ShmName, TempPath, ROLE};
use redis_server::RedisServer;
use shmds::remote::{self, Options};
use shmds::{Error, FixedStr, LockError};
use std::time::{Duration, Instant};

fn connect(server: &RedisServer, name: &str) -> remote::Segment {
    remote::Segment::connect(&server.url(), name).expect("connect")
}

fn quick() -> Options {
    Options {
        timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        lease: Duration::from_millis(300),
        ..Options::default()
    }
}

/// Random pushes and pops on a local and a remote queue and stack of the
/// same capacity: every result must be the same.
#[test]
fn queue_and_stack_match_local() {
    let server = RedisServer::start();
    let seg = connect(&server, "conf-ring");
    let shm = ShmName::new("remote-ring");
    let local = shmds::Segment::create(shm.as_str(), 1 << 20).unwrap();
    let (lq, rq) = (
        local.create_queue::<u64>("q", 7).unwrap(),
        seg.create_queue::<u64>("q", 7).unwrap(),
    );
    let (ls, rs) = (
        local.create_stack::<u64>("s", 5).unwrap(),
        seg.create_stack::<u64>("s", 5).unwrap(),
    );
    let mut rng = Rng(0x5eed);
    for step in 0..600u64 {
        let r = rng.next();
        let which = r % 2 == 0;
        let v = step * 3 + 1;
        macro_rules! both {
            ($l:expr, $r:expr) => {
                match (r >> 8) % 5 {
                    0 | 1 => assert_eq!(
                        $l.try_push(v).unwrap(),
                        $r.try_push(v).unwrap(),
                        "step {step}"
                    ),
                    2 => assert_eq!($l.try_pop().unwrap(), $r.try_pop().unwrap(), "step {step}"),
                    3 => {
                        let vals = [v, v + 1, v + 2];
                        assert_eq!(
                            $l.try_push_slice(&vals).unwrap(),
                            $r.try_push_slice(&vals).unwrap()
                        );
                    }
                    _ => {
                        let (mut a, mut b) = ([0u64; 4], [0u64; 4]);
                        let n = $l.try_pop_into(&mut a).unwrap();
                        assert_eq!(n, $r.try_pop_into(&mut b).unwrap(), "step {step}");
                        assert_eq!(a[..n], b[..n]);
                    }
                }
                assert_eq!($l.len(), $r.len().unwrap());
                assert_eq!($l.is_full(), $r.is_full().unwrap());
            };
        }
        if which {
            both!(lq, rq);
        } else {
            both!(ls, rs);
        }
    }
    assert_eq!(rq.capacity(), 7);
    assert_eq!(rq.type_descriptor(), lq.type_descriptor());
    drop(local);
    shmds::Segment::remove(shm.as_str()).unwrap();
}

#[test]
fn map_matches_local() {
    let server = RedisServer::start();
    let seg = connect(&server, "conf-map");
    let shm = ShmName::new("remote-map");
    let local = shmds::Segment::create(shm.as_str(), 1 << 20).unwrap();
    let lm = local.create_map::<FixedStr<8>, i64>("m", 12).unwrap();
    let rm = seg.create_map::<FixedStr<8>, i64>("m", 12).unwrap();
    let mut rng = Rng(77);
    for step in 0..800 {
        let r = rng.next();
        let key = FixedStr::<8>::new(&format!("k{}", r % 17)).unwrap();
        let v = (r >> 20) as i64 % 1000 - 500;
        match (r >> 8) % 7 {
            0 | 1 => {
                let (a, b) = (lm.insert(key, v), rm.insert(key, v));
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "step {step}"),
                    (Err(Error::Full { .. }), Err(Error::Full { .. })) => {}
                    other => panic!("step {step}: {other:?}"),
                }
            }
            2 => assert_eq!(lm.get(&key).unwrap(), rm.get(&key).unwrap()),
            3 => assert_eq!(lm.remove(&key).unwrap(), rm.remove(&key).unwrap()),
            4 => match (lm.fetch_add(&key, v), rm.fetch_add(&key, v)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "step {step}"),
                (Err(Error::Full { .. }), Err(Error::Full { .. })) => {}
                other => panic!("step {step}: {other:?}"),
            },
            5 => {
                let cur = lm.get(&key).unwrap().unwrap_or(0);
                let cur = if r % 3 == 0 { cur + 1 } else { cur };
                assert_eq!(
                    lm.compare_exchange(&key, cur, v).unwrap(),
                    rm.compare_exchange(&key, cur, v).unwrap()
                );
            }
            _ => assert_eq!(
                lm.contains_key("k3").unwrap(),
                rm.contains_key("k3").unwrap()
            ),
        }
        assert_eq!(lm.len(), rm.len().unwrap());
    }
    let mut a: Vec<_> = lm.iter().collect();
    let mut b = rm.to_vec().unwrap();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Wrapping arithmetic on the value's bytes, as locally.
    let n = seg.create_map::<u8, u64>("wrap", 2).unwrap();
    n.insert(1, u64::MAX).unwrap();
    assert_eq!(n.fetch_add(&1, 2).unwrap(), u64::MAX);
    assert_eq!(n.get(&1).unwrap(), Some(1));
    let s = seg.create_map::<u8, i16>("neg", 2).unwrap();
    s.fetch_add(&0, -300).unwrap();
    assert_eq!(s.fetch_add(&0, 7).unwrap(), -300);
    assert_eq!(s.get(&0).unwrap(), Some(-293));
    drop(local);
}

#[test]
fn array_matches_local() {
    let server = RedisServer::start();
    let seg = connect(&server, "conf-array");
    let a = seg.create_array::<u32>("a", 10).unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![0; 10]);
    a.write(2, &[5, 6, 7]).unwrap();
    a.set(9, 99).unwrap();
    let mut out = [0u32; 4];
    a.read(1, &mut out).unwrap();
    assert_eq!(out, [0, 5, 6, 7]);
    assert_eq!(a.get(9).unwrap(), 99);
    assert!(matches!(
        a.get(10),
        Err(Error::IndexOutOfBounds { index: 10, len: 10 })
    ));
    assert!(matches!(
        a.write(8, &[1, 2, 3]),
        Err(Error::IndexOutOfBounds { .. })
    ));
    assert_eq!(a.fetch_add(9, u32::MAX).unwrap(), 99);
    assert_eq!(a.load(9).unwrap(), 98);
    assert_eq!(a.compare_exchange(9, 98, 1).unwrap(), Ok(98));
    assert_eq!(a.compare_exchange(9, 98, 2).unwrap(), Err(1));
    // Concurrent fetch_adds from threads all count.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let a = a.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    a.fetch_add(0, 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(a.get(0).unwrap(), 800);
    // Records keep their bytes exactly.
    shmds::record! {
        #[derive(Debug, Clone, Copy, PartialEq)]
        struct Tick { ts: u64, price: f64, size: i32, side: u8 }
    }
    let t = seg.create_array::<Tick>("ticks", 3).unwrap();
    let tick = Tick {
        ts: 1,
        price: -2.5,
        size: 7,
        side: 1,
    };
    t.set(1, tick).unwrap();
    assert_eq!(t.get(1).unwrap(), tick);
}

#[test]
fn typing_and_staleness_as_locally() {
    let server = RedisServer::start();
    let seg = connect(&server, "typing");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    assert!(matches!(
        seg.create_queue::<u64>("q", 4),
        Err(Error::EntryExists { .. })
    ));
    assert!(matches!(
        seg.open_queue::<u32>("q"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        seg.open_stack::<u64>("q"),
        Err(Error::KindMismatch {
            expected: "stack",
            found: "queue",
            ..
        })
    ));
    assert!(matches!(
        seg.open_or_create_queue::<u64>("q", 5),
        Err(Error::ShapeMismatch {
            what: "capacity",
            expected: 5,
            found: 4,
            ..
        })
    ));
    assert!(matches!(
        seg.open_queue::<u64>("nope"),
        Err(Error::EntryNotFound { .. })
    ));
    assert!(matches!(
        seg.create_queue::<u64>("", 4),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        remote::Segment::connect(&server.url(), "a{b}"),
        Err(Error::InvalidName { .. })
    ));
    let same = seg.open_or_create_queue::<u64>("q", 4).unwrap();
    assert!(q.try_push(1).unwrap());
    assert_eq!(same.try_pop().unwrap(), Some(1));

    let infos = seg.entries().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!((infos[0].kind, infos[0].capacity), ("queue", 4));
    assert_eq!(infos[0].elem_type, q.type_descriptor());

    seg.erase("q").unwrap();
    assert!(matches!(q.try_push(1), Err(Error::Stale { .. })));
    let again = seg.create_queue::<u64>("q", 4).unwrap();
    assert!(
        matches!(q.try_pop(), Err(Error::Stale { .. })),
        "a re-created entry is another one"
    );
    assert!(again.try_push(2).unwrap());
    assert!(matches!(
        seg.erase("nope"),
        Err(Error::EntryNotFound { .. })
    ));

    // Another process's segment of another remote format is refused.
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("HSET")
        .arg("shmds:{old}:seg")
        .arg("format")
        .arg("shmds-remote-0")
        .query::<()>(&mut con)
        .unwrap();
    let err = remote::Segment::connect(&server.url(), "old").unwrap_err();
    assert!(matches!(err, Error::Incompatible { .. }), "{err}");
    // A record someone rewrote is refused, not trusted.
    redis::cmd("HSET")
        .arg("shmds:{typing}:meta")
        .arg("bad")
        .arg("1|queue|x|4|<Q|")
        .query::<()>(&mut con)
        .unwrap();
    assert!(matches!(
        seg.open_queue::<u64>("bad"),
        Err(Error::Corrupt { .. })
    ));
    redis::cmd("HSET")
        .arg("shmds:{typing}:meta")
        .arg("bad")
        .arg("1|array|9|999999999999|<Q|")
        .query::<()>(&mut con)
        .unwrap();
    assert!(matches!(
        seg.open_array::<u64>("bad"),
        Err(Error::Corrupt { .. })
    ));
    assert!(remote::Segment::remove(&server.url(), "typing").unwrap());
    assert!(seg.entries().unwrap().is_empty());
}

#[test]
fn blocking_calls_wait_on_the_server() {
    let server = RedisServer::start();
    let seg = connect(&server, "blocking");
    let q = seg.create_queue::<u32>("q", 2).unwrap();
    let start = Instant::now();
    assert!(matches!(
        q.pop(Some(Duration::from_millis(50))),
        Err(Error::Timeout { .. })
    ));
    assert!(start.elapsed() >= Duration::from_millis(50));
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..50 {
                q.push(i, None).unwrap();
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 50 {
        got.push(q.pop(Some(Duration::from_secs(10))).unwrap());
    }
    producer.join().unwrap();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    q.push_slice(&[1, 2], None).unwrap();
    assert_eq!(
        q.push_slice(&[3], Some(Duration::from_millis(30))).unwrap(),
        0
    );
    let mut out = [0; 8];
    assert_eq!(q.pop_into(&mut out, None).unwrap(), 2);
}

#[test]
fn locks_exclude_and_report_lapsed_holders() {
    let server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "locks", quick()).unwrap();
    let lock = seg.create_lock("l").unwrap();
    let counter = seg.create_array::<u64>("n", 1).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (lock, counter) = (lock.clone(), counter.clone());
            std::thread::spawn(move || {
                for _ in 0..40 {
                    let g = lock.lock().unwrap();
                    let v = counter.get(0).unwrap(); // read-modify-write under the lock
                    counter.set(0, v + 1).unwrap();
                    g.unlock().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.get(0).unwrap(), 120);

    let g = lock.lock().unwrap();
    assert_eq!(lock.holder().unwrap(), Some(std::process::id()));
    assert!(lock.try_lock().unwrap().is_none());
    g.extend().unwrap();
    std::mem::forget(g); // a holder that never unlocks: its lease runs out
    match lock.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(died)) => {
            let g = died.into_guard();
            g.unlock().unwrap();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // A holder that overran its lease and was taken over is told so.
    let g = lock.lock().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let other = lock.lock_timeout(Duration::from_secs(5));
    assert!(matches!(other, Err(LockError::OwnerDied(_))));
    assert!(matches!(g.unlock(), Err(Error::NotOwner { .. })));
}

#[test]
fn unavailable_when_the_server_is_gone_and_back_after() {
    let mut server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "gone", quick()).unwrap();
    let q = seg.create_queue::<u64>("q", 100).unwrap();
    assert!(q.try_push(1).unwrap());
    server.kill();
    let start = Instant::now();
    let err = q.try_push(2).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10), "gave up in time");
    assert!(matches!(
        q.pop(Some(Duration::from_secs(5))),
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        remote::Segment::connect_with(&server.url(), "other", quick()),
        Err(Error::Unavailable { .. })
    ));
    server.restart();
    // The client reconnects by itself; the AOF kept the acknowledged push.
    assert_eq!(q.len().unwrap(), 1);
    assert_eq!(q.try_pop().unwrap(), Some(1));
}

/// A pusher thread pushes numbered elements while the server is SIGKILLed
/// and restarted: every push that returned Ok is there afterwards, in order.
#[test]
fn acknowledged_pushes_survive_a_server_kill() {
    let mut server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "aof", quick()).unwrap();
    let q = seg.create_queue::<u64>("q", 1_000_000).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut acked, mut unknown, mut i) = (Vec::new(), Vec::new(), 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match q.try_push(i) {
                    Ok(true) => acked.push(i),
                    Ok(false) => panic!("full"),
                    Err(Error::Unavailable { .. }) => {
                        unknown.push(i);
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{e}"),
                }
                i += 1;
            }
            (acked, unknown)
        })
    };
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        server.restart(); // SIGKILL, then start again on the same AOF
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, unknown) = pusher.join().unwrap();
    assert!(
        acked.len() > 10 && !unknown.is_empty(),
        "{} acked, {} unknown",
        acked.len(),
        unknown.len()
    );
    let mut held = Vec::new();
    let mut buf = [0u64; 512];
    loop {
        let n = q.try_pop_into(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        held.extend_from_slice(&buf[..n]);
    }
    // Every acknowledged push is there, in order; the rest are pushes whose
    // reply was lost (they may or may not have happened).
    let extra: Vec<u64> = held
        .iter()
        .copied()
        .filter(|v| acked.binary_search(v).is_err())
        .collect();
    let kept: Vec<u64> = held
        .iter()
        .copied()
        .filter(|v| acked.binary_search(v).is_ok())
        .collect();
    assert_eq!(kept, acked);
    assert!(extra.iter().all(|v| unknown.contains(v)), "{extra:?}");
    assert!(held.windows(2).all(|w| w[0] < w[1]));
}

/// A consumer process takes elements at least once and is SIGKILLed while
/// holding some: after its lease, another consumer gets them all.
#[test]
fn a_killed_consumer_loses_nothing() {
    if std::env::var(ROLE).as_deref() == Ok("consumer") {
        let url = std::env::var("SHMDS_URL").unwrap();
        let marker = std::env::var("SHMDS_MARKER").unwrap();
        let seg = remote::Segment::connect_with(&url, "reliable", quick()).unwrap();
        let q = seg.open_queue::<u64>("q").unwrap();
        let mut held = Vec::new();
        for i in 0..10 {
            let d = q.take(None).unwrap();
            if i % 2 == 0 {
                assert!(d.ack().unwrap());
            } else {
                held.push(d); // taken, not acknowledged
            }
        }
        std::fs::write(&marker, b"").unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "reliable", quick()).unwrap();
    let q = seg.create_queue::<u64>("q", 100).unwrap();
    q.push_slice(&(0..30).collect::<Vec<_>>(), None).unwrap();
    let marker = TempPath::new("remote-consumer");
    let mut child = KillOnDrop(spawn_self(
        "a_killed_consumer_loses_nothing",
        &[
            (ROLE, "consumer".into()),
            ("SHMDS_URL", server.url()),
            ("SHMDS_MARKER", marker.0.display().to_string()),
        ],
    ));
    assert!(
        wait_for_file(&marker.0, Duration::from_secs(20)),
        "consumer did not get going"
    );
    kill_and_reap(&mut child.0);
    assert_eq!(
        q.in_flight().unwrap(),
        5,
        "the dead consumer's 5 unacknowledged elements"
    );
    assert!(!q.is_full().unwrap() && q.len().unwrap() == 20);
    std::thread::sleep(Duration::from_millis(400)); // its lease runs out
    let mut got = Vec::new();
    while let Some(d) = q.try_take().unwrap() {
        got.push(*d.value());
        assert!(d.ack().unwrap());
    }
    got.sort();
    let want: Vec<u64> = (1..10).step_by(2).chain(10..30).collect();
    assert_eq!(got, want, "the 5 it held and the 20 it never took");
    assert_eq!(q.in_flight().unwrap(), 0);
    assert_eq!(q.recover().unwrap(), 0);

    // A lease that ran out in this process: the ack says so.
    let s = seg.create_stack::<u64>("s", 4).unwrap();
    s.push_slice(&[1, 2, 3], None).unwrap();
    let d = s.take(None).unwrap();
    assert_eq!(*d.value(), 3, "a stack takes its top");
    std::thread::sleep(Duration::from_millis(400));
    let other = seg.open_stack::<u64>("s").unwrap(); // another consumer
    assert_eq!(other.recover().unwrap(), 1);
    assert_eq!(other.try_pop().unwrap(), Some(3), "back on top");
    assert!(!d.ack().unwrap());
}

#[test]
fn injected_faults() {
    let server = RedisServer::start();
    let seg = connect(&server, "faults");
    let q = seg.create_queue::<u32>("q", 1000).unwrap();
    seg.faults().make_unavailable();
    let err = q.try_push(1).unwrap_err();
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.to_string().contains("injected"),
        "{err}"
    );
    seg.faults().clear();
    assert!(q.try_push(1).unwrap());

    // Lost replies: the call ran; at-least-once code must cope.
    seg.faults().lose_replies(1.0, 1);
    assert!(matches!(q.try_push(2), Err(Error::Unavailable { .. })));
    seg.faults().clear();
    assert_eq!(
        q.len().unwrap(),
        2,
        "the push whose reply was lost happened"
    );

    seg.faults().flaky(0.5, 42);
    let (mut ok, mut failed) = (0, 0);
    for i in 0..200 {
        match q.try_push(i) {
            Ok(true) => ok += 1,
            Err(Error::Unavailable { .. }) => failed += 1,
            other => panic!("{other:?}"),
        }
    }
    seg.faults().clear();
    assert!(ok > 50 && failed > 50, "{ok} ok, {failed} failed");
    assert_eq!(
        q.len().unwrap(),
        2 + ok,
        "a call failed before sending never ran"
    );
    assert_eq!(seg.faults().injected(), 2 + failed as u64);

    seg.faults().delay(Duration::from_millis(30));
    let start = Instant::now();
    q.len().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn an_operation_never_trusts_rewritten_data() {
    let server = RedisServer::start();
    let seg = connect(&server, "hostile");
    let q = seg.create_queue::<u64>("q", 4).unwrap();
    let a = seg.create_array::<u64>("a", 4).unwrap();
    let m = seg.create_map::<u32, u64>("m", 4).unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    // A fresh server: the three entries are generations 1, 2 and 3.
    let set = |cmd: &str, key: &str, value: &str, con: &mut redis::Connection| {
        let _: () = redis::cmd("DEL").arg(key).query(con).unwrap();
        let _: () = redis::cmd(cmd).arg(key).arg(value).query(con).unwrap();
    };
    set("RPUSH", "shmds:{hostile}:d:1:q", "short", &mut con);
    set("SET", "shmds:{hostile}:d:2:a", "xy", &mut con);
    set("SET", "shmds:{hostile}:d:3:m", "not a hash", &mut con);
    assert!(matches!(q.try_pop(), Err(Error::Corrupt { .. })));
    assert!(matches!(a.get(2), Err(Error::Corrupt { .. })));
    assert!(matches!(a.fetch_add(0, 1), Err(Error::Corrupt { .. })));
    assert!(matches!(m.insert(1, 1), Err(Error::Corrupt { .. })));
}

/// On a 3-node cluster: every key of a segment is in the hash slot of its
/// `{name}` tag, segments spread over the nodes, and the structures behave
/// as on one server (scripts, blocking calls, erase and remove).
#[test]
fn cluster_keeps_a_segment_in_one_slot() {
    let cluster = redis_server::RedisCluster::start();
    let url = cluster.url();
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..12 {
        let name = format!("cl-{i}");
        let seg = remote::Segment::connect(&url, &name).unwrap();
        let q = seg.create_queue::<u64>("q", 8).unwrap();
        let m = seg.create_map::<u32, u64>("m", 8).unwrap();
        let a = seg.create_array::<u16>("a", 4).unwrap();
        let l = seg.create_lock("l").unwrap();
        q.push_slice(&[1, 2, 3], None).unwrap();
        assert_eq!(m.fetch_add(&7, 5).unwrap(), 0);
        a.set(3, 9).unwrap();
        let d = q.take(None).unwrap();
        assert!(d.ack().unwrap());
        drop(l.lock().unwrap());
        let consumer = q.clone();
        let t = std::thread::spawn(move || consumer.pop(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(t.join().unwrap(), 2);
        assert_eq!(
            (m.get(&7).unwrap(), a.get(3).unwrap(), q.len().unwrap()),
            (Some(5), 9, 1)
        );
        // Which node holds the segment, and that all its keys are there.
        let mut holder = None;
        for node in &cluster.nodes {
            let mut con = redis::Client::open(node.url())
                .unwrap()
                .get_connection()
                .unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("shmds:{{{name}}}:*"))
                .query(&mut con)
                .unwrap();
            if !keys.is_empty() {
                assert!(holder.is_none(), "segment {name} is on two nodes");
                assert!(keys.len() >= 5, "{keys:?}");
                let slots: std::collections::BTreeSet<i64> = keys
                    .iter()
                    .map(|k| {
                        redis::cmd("CLUSTER")
                            .arg("KEYSLOT")
                            .arg(k)
                            .query(&mut con)
                            .unwrap()
                    })
                    .collect();
                assert_eq!(slots.len(), 1, "{keys:?} in slots {slots:?}");
                holder = Some(node.port);
            }
        }
        let holder = holder.expect("the segment's keys are somewhere");
        owners.insert(holder);
        // One node made unavailable by injection: its segments fail, the
        // others go on.
        if i == 0 {
            let faults = remote::node_faults(&format!("127.0.0.1:{holder}"));
            faults.make_unavailable();
            assert!(matches!(q.len(), Err(Error::Unavailable { .. })));
            let other = (1..40)
                .filter_map(|k| remote::Segment::connect(&url, &format!("cl-other-{k}")).ok())
                .find(|s| s.create_queue::<u8>("q", 1).is_ok())
                .expect("a segment on another node");
            assert!(other.open_queue::<u8>("q").unwrap().try_push(1).unwrap());
            assert!(remote::Segment::remove(&url, other.name()).unwrap());
            faults.clear();
            assert_eq!(q.len().unwrap(), 1);
        }
        assert!(remote::Segment::remove(&url, &name).unwrap());
        assert!(seg.entries().unwrap().is_empty());
    }
    assert!(owners.len() >= 2, "12 segments all on one node: {owners:?}");
}

/// The coherent read cache: a hot read costs no round trip (it even works
/// while the server is made unavailable), a write by another client drops
/// the cached copy once its invalidation arrives, this handle's own writes
/// are read back at once, and nothing is served past `max_age`.
#[test]
fn coherent_read_cache() {
    let server = RedisServer::start();
    let cached = remote::Segment::connect_with(
        &server.url(),
        "cache",
        Options {
            cache: Some(Duration::from_secs(600)),
            ..Options::default()
        },
    )
    .unwrap();
    let plain = connect(&server, "cache");
    let start = Instant::now();
    while !cached.cache_is_live() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the cache listener never came up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let m = cached.create_map::<u32, u64>("m", 16).unwrap();
    let a = cached.create_array::<u32>("a", 4).unwrap();
    m.insert(1, 10).unwrap();
    a.set(2, 7).unwrap();
    assert_eq!((m.get(&1).unwrap(), a.get(2).unwrap()), (Some(10), 7));
    assert_eq!(m.get(&2).unwrap(), None);

    // Hits need no server.
    cached.faults().make_unavailable();
    assert_eq!(
        (m.get(&1).unwrap(), a.get(2).unwrap(), m.get(&2).unwrap()),
        (Some(10), 7, None)
    );
    assert!(
        matches!(m.get(&3), Err(Error::Unavailable { .. })),
        "a miss asks the server"
    );
    cached.faults().clear();

    // A write elsewhere: the cached copy goes as its invalidation arrives.
    let (pm, pa) = (
        plain.open_map::<u32, u64>("m").unwrap(),
        plain.open_array::<u32>("a").unwrap(),
    );
    pm.insert(1, 11).unwrap();
    pa.set(2, 8).unwrap();
    pm.insert(2, 20).unwrap();
    let start = Instant::now();
    while (m.get(&1).unwrap(), a.get(2).unwrap(), m.get(&2).unwrap()) != (Some(11), 8, Some(20)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "invalidations never arrived"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Writes through scripts (fetch_add) invalidate too; own writes at once.
    pm.fetch_add(&1, 1).unwrap();
    let start = Instant::now();
    while m.get(&1).unwrap() != Some(12) {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    m.insert(1, 13).unwrap();
    assert_eq!(m.get(&1).unwrap(), Some(13), "read your own write");
    a.write(0, &[1, 2]).unwrap();
    let mut out = [0u32; 4];
    a.read(0, &mut out).unwrap();
    assert_eq!(out, [1, 2, 8, 0]);

    // max_age bounds staleness even without an invalidation: a segment
    // with a tiny max_age re-reads.
    let short = remote::Segment::connect_with(
        &server.url(),
        "cache",
        Options {
            cache: Some(Duration::from_millis(1)),
            ..Options::default()
        },
    )
    .unwrap();
    let sm = short.open_map::<u32, u64>("m").unwrap();
    assert_eq!(sm.get(&1).unwrap(), Some(13));
    short.faults().make_unavailable();
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        matches!(sm.get(&1), Err(Error::Unavailable { .. })),
        "an old value is not served"
    );
}

#[test]
fn channel_on_a_stream() {
    let server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "chan", quick()).unwrap();
    let ch = seg.create_channel("events", 3, 16).unwrap();
    for m in [&b"a"[..], b"", b"0123456789abcdef"] {
        ch.try_send(m).unwrap();
    }
    assert!(matches!(ch.try_send(b"x"), Err(Error::Full { .. })));
    assert!(matches!(
        ch.send(b"x", Some(Duration::from_millis(20))),
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        ch.try_send(&[0; 17]),
        Err(Error::MessageTooLarge {
            len: 17,
            max: 16,
            ..
        })
    ));
    assert_eq!(ch.len().unwrap(), 3);
    assert_eq!(ch.recv(None).unwrap(), b"a");
    assert_eq!(ch.try_recv().unwrap().unwrap(), b"");
    assert_eq!(ch.try_recv().unwrap().unwrap(), b"0123456789abcdef");
    assert_eq!(ch.try_recv().unwrap(), None);
    assert!(matches!(
        ch.recv(Some(Duration::from_millis(20))),
        Err(Error::Timeout { .. })
    ));
    // A blocked receiver is woken by a send from another thread.
    let sender = ch.clone();
    let t = std::thread::spawn(move || {
        for i in 0..20u8 {
            sender.send(&[i; 5], None).unwrap();
        }
    });
    for i in 0..20u8 {
        assert_eq!(ch.recv(Some(Duration::from_secs(10))).unwrap(), [i; 5]);
    }
    t.join().unwrap();
    assert!(matches!(
        seg.open_queue::<u8>("events"),
        Err(Error::KindMismatch { .. })
    ));

    // At least once: a consumer that takes and never acknowledges (as if it
    // died) has its messages taken by another once the lease ran out.
    let other_seg = remote::Segment::connect_with(&server.url(), "chan", quick()).unwrap();
    let dead = other_seg.open_channel("events").unwrap();
    ch.try_send(b"m1").unwrap();
    ch.try_send(b"m2").unwrap();
    let lost = dead.try_take().unwrap().unwrap();
    assert_eq!(lost.message(), b"m1");
    drop(lost);
    assert_eq!(
        ch.len().unwrap(),
        2,
        "a taken message is held until acknowledged"
    );
    let d = ch.try_take().unwrap().unwrap();
    assert_eq!(d.message(), b"m2", "m1 is still within its lease");
    assert!(d.ack().unwrap());
    std::thread::sleep(Duration::from_millis(400));
    let again = ch.take(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(again.message(), b"m1", "redelivered after the lease");
    assert!(again.ack().unwrap());
    assert_eq!(ch.len().unwrap(), 0);
    seg.erase("events").unwrap();
    assert!(matches!(ch.try_send(b"x"), Err(Error::Stale { .. })));
}

#[test]
fn topic_on_a_stream() {
    let server = RedisServer::start();
    let seg = connect(&server, "topic");
    let t = seg.create_topic("ticks", 3, 64).unwrap();
    let mut early = t.subscribe().unwrap();
    let mut keeping_up = t.subscribe().unwrap();
    assert_eq!(t.publish(b"t0").unwrap(), 0);
    assert_eq!(keeping_up.try_recv().unwrap().unwrap(), b"t0");
    for i in 1..5u8 {
        assert_eq!(t.publish(&[b't', b'0' + i]).unwrap(), i as u64);
    }
    assert_eq!(t.published().unwrap(), 5);
    // `early` read nothing: 0 and 1 were trimmed (capacity 3).
    assert!(matches!(
        early.try_recv(),
        Err(Error::Lagged { missed: 2, .. })
    ));
    for want in [b"t2", b"t3", b"t4"] {
        assert_eq!(early.try_recv().unwrap().unwrap(), want);
    }
    assert_eq!(early.try_recv().unwrap(), None);
    // `keeping_up` read t0 and lost t1 only.
    assert!(matches!(
        keeping_up.try_recv(),
        Err(Error::Lagged { missed: 1, .. })
    ));
    assert_eq!(keeping_up.try_recv().unwrap().unwrap(), b"t2");
    let mut oldest = t.subscribe_from_oldest().unwrap();
    assert_eq!(oldest.try_recv().unwrap().unwrap(), b"t2");
    // Blocking receive, woken by a publisher.
    let publisher = t.clone();
    let th = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        publisher.publish(b"late").unwrap();
    });
    assert_eq!(early.recv(Some(Duration::from_secs(10))).unwrap(), b"late");
    th.join().unwrap();
    assert!(matches!(
        t.publish(&[0; 65]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        early.recv(Some(Duration::from_millis(30))),
        Err(Error::Timeout { .. })
    ));
}

/// Another client rewrites the segment's keys at random (records, data of
/// the wrong Redis type or size, deleted keys, junk in pending lists and
/// streams) while every kind of operation runs: calls may fail, with
/// `Corrupt`, `Stale` or another error, but never panic, hang or misread
/// a wrong-sized value as an element.
#[test]
fn hostile_rewrites_never_panic() {
    let server = RedisServer::start();
    let seg = remote::Segment::connect_with(&server.url(), "fuzz", quick()).unwrap();
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut rng = Rng(0xfeed);
    let mut corrupt = 0u32;
    let junk: [&[u8]; 6] = [
        b"",
        b"x",
        b"12345678",
        b"123456789",
        b"1|queue|x|4|<Q|",
        b"1|map|99|3|<Q|<I",
    ];
    for round in 0..300u64 {
        // Make sure the structures exist (again), whatever happened to them.
        let q = seg.open_or_create_queue::<u64>("q", 8);
        let m = seg.open_or_create_map::<u32, u64>("m", 8);
        let a = seg.open_or_create_array::<u64>("a", 4);
        let c = seg.open_or_create_channel("c", 4, 16);
        let t = seg.open_or_create_topic("t", 4, 16);
        let l = seg.open_or_create_lock("l");
        // Rewrite a random key.
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("shmds:{fuzz}:*")
            .query(&mut con)
            .unwrap();
        if !keys.is_empty() {
            let key = &keys[(rng.next() % keys.len() as u64) as usize];
            let j = junk[(rng.next() % junk.len() as u64) as usize];
            let cmd = match rng.next() % 7 {
                0 => redis::cmd("DEL").arg(key).clone(),
                1 => redis::cmd("SET").arg(key).arg(j).clone(),
                2 => redis::cmd("RPUSH").arg(key).arg(j).clone(),
                3 => redis::cmd("HSET").arg(key).arg(j).arg(j).clone(),
                4 => redis::cmd("HSET")
                    .arg("shmds:{fuzz}:meta")
                    .arg(["q", "m", "a", "c", "t", "l"][(rng.next() % 6) as usize])
                    .arg(j)
                    .clone(),
                5 => redis::cmd("XADD").arg(key).arg("*").arg("m").arg(j).clone(),
                _ => redis::cmd("SETRANGE")
                    .arg(key)
                    .arg(rng.next() % 40)
                    .arg(j)
                    .clone(),
            };
            let _ = cmd.query::<redis::Value>(&mut con);
        }
        // Every kind of call; only the absence of panics is checked.
        if let Ok(q) = &q {
            let _ = q.try_push(round);
            corrupt += matches!(q.try_pop(), Err(Error::Corrupt { .. })) as u32;
            let _ = q.try_take().map(|d| d.map(|d| d.ack()));
            let _ = (q.len(), q.is_full(), q.recover());
        }
        if let Ok(m) = &m {
            let _ = (
                m.insert(1, round),
                m.get(&1),
                m.fetch_add(&2, 1),
                m.to_vec(),
                m.len(),
            );
            let _ = m.compare_exchange(&1, round, 0);
        }
        if let Ok(a) = &a {
            let _ = (a.set(1, round), a.fetch_add(0, 1), a.to_vec());
            corrupt += matches!(a.get(3), Err(Error::Corrupt { .. })) as u32;
            let _ = a.compare_exchange(2, 0, 1);
        }
        if let Ok(c) = &c {
            let _ = c.try_send(b"hello");
            let _ = c.try_recv();
            let _ = c.try_take().map(|d| d.map(|d| d.ack()));
        }
        if let Ok(t) = &t {
            let _ = t.publish(b"tick");
            if let Ok(mut s) = t.subscribe_from_oldest() {
                let _ = s.try_recv();
                let _ = s.try_recv();
            }
        }
        if let Ok(l) = &l {
            if let Ok(Some(g)) = l.try_lock() {
                let _ = g.unlock();
            }
        }
        let _ = seg.entries();
        if round % 50 == 49 {
            // Start over now and then, so later rounds see fresh structures too.
            let _ = remote::Segment::remove(&server.url(), "fuzz");
        }
    }
    assert!(corrupt > 0, "the rewrites never reached a structure's data");
}
