//! Channels and topics shared by real processes: a multi-process stress
//! run with messages of random sizes and checksums, processes killed with
//! SIGKILL at every pause point of send and receive, and a random-kill
//! storm of at least 1,000 kills with exact accounting.

mod common;
use common::*;
use shmds::{ChannelOptions, Error, Segment, TopicOptions};
use std::time::{Duration, Instant};

fn var(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

fn env(role: &str, seg: &ShmName, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> =
        vec![(ROLE, role.into()), ("SHMDS_SEGMENT", seg.0.clone())];
    v.extend(extra.iter().cloned());
    v
}

/// The bytes of message `id` of `len` bytes: the id, then a pattern.
fn message(id: u64, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|i| (id as usize + i * 7) as u8).collect();
    if len >= 8 {
        m[..8].copy_from_slice(&id.to_le_bytes());
    }
    m
}

fn length_of(id: u64, max: usize) -> usize {
    let mut r = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let n = r.next() as usize % (max + 1);
    n.max(8)
}

/// Check a received message and return its id.
fn parse(buf: &[u8], max: usize) -> u64 {
    assert!(buf.len() >= 8, "message of {} bytes", buf.len());
    let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
    assert_eq!(
        buf.len(),
        length_of(id, max),
        "message {id:#x}: wrong length"
    );
    assert_eq!(
        buf,
        &message(id, buf.len())[..],
        "message {id:#x}: wrong bytes"
    );
    id
}

const MAX: usize = 700;
const STRESS_PER_PRODUCER: u64 = 500_000;
const SEQ_LIMIT: u64 = 1 << 20;

/// The body of every child process; does nothing when run as a normal test.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let seg = Segment::open(&std::env::var("SHMDS_SEGMENT").unwrap()).unwrap();
    let ch = seg.open_channel("c").unwrap();
    match role.as_str() {
        "producer" => {
            let p = var("SHMDS_CHILD");
            let n = var("SHMDS_COUNT");
            let mut tx = ch.sender().unwrap();
            for i in 0..n {
                let id = p << 40 | i;
                let msg = message(id, length_of(id, MAX));
                if i % 2 == 0 {
                    tx.send(&msg).unwrap();
                } else {
                    let mut r = tx.reserve(msg.len()).unwrap();
                    r.copy_from_slice(&msg);
                    r.commit();
                }
            }
        }
        "consumer" => {
            let marks = seg.open_array::<u8>("marks").unwrap();
            let mut rx = ch.receiver().unwrap();
            let mut last = [None::<u64>; 4];
            let mut buf = Vec::new();
            loop {
                let id = match rx.recv_timeout(&mut buf, Duration::from_secs(30)) {
                    Ok(_) => parse(&buf, MAX),
                    Err(Error::Disconnected { .. }) => break,
                    Err(e) => panic!("{e}"),
                };
                let (p, i) = (id >> 40, id & 0xff_ffff_ffff);
                if let Some(prev) = last[p as usize] {
                    assert!(i > prev, "producer {p}: {i} after {prev}");
                }
                last[p as usize] = Some(i);
                let at = p * STRESS_PER_PRODUCER + i;
                let before = marks.fetch_add(at as usize, 1).unwrap();
                assert_eq!(before, 0, "message {id:#x} delivered twice");
            }
        }
        // Storm children: a producer resumes from its intent counter; a
        // consumer marks what it got.
        "storm-producer" => {
            let p = var("SHMDS_CHILD");
            let intent = seg.open_array::<u64>("intent").unwrap();
            let mut tx = ch.sender().unwrap();
            loop {
                let i = intent.fetch_add(p as usize, 1).unwrap();
                if i >= SEQ_LIMIT {
                    return;
                }
                let id = p << 40 | i;
                let msg = message(id, length_of(id, MAX));
                // Every consumer may be dead for a moment (Disconnected):
                // try again until one is back.
                loop {
                    let sent = if i % 3 == 0 {
                        tx.reserve(msg.len()).map(|mut r| {
                            r.copy_from_slice(&msg);
                            r.commit();
                        })
                    } else {
                        tx.send(&msg)
                    };
                    match sent {
                        Ok(()) => break,
                        Err(Error::Disconnected { .. }) => {
                            std::thread::sleep(Duration::from_millis(1))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
        "storm-consumer" => {
            let marks = seg.open_array::<u8>("marks").unwrap();
            let mut rx = ch.receiver().unwrap();
            loop {
                let m = match rx.recv_ref() {
                    Ok(m) => m,
                    Err(Error::Disconnected { .. }) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                };
                let id = parse(&m, MAX);
                drop(m);
                let (p, i) = (id >> 40, id & 0xff_ffff_ffff);
                marks.fetch_add((p * SEQ_LIMIT + i) as usize, 1).unwrap();
            }
        }
        "pause" => {
            // Reach the pause point named by SHMDS_PAUSE_AT in a send or a
            // receive (the parent kills us there).
            if std::env::var("SHMDS_SIDE").unwrap() == "send" {
                let mut tx = ch.sender().unwrap();
                tx.send(&message(99, length_of(99, 100))).unwrap();
            } else {
                let mut rx = ch.receiver().unwrap();
                let mut buf = Vec::new();
                rx.recv(&mut buf).unwrap();
            }
        }
        "subscriber" => {
            let topic = seg.open_topic("t").unwrap();
            let got = seg.open_array::<u64>("got").unwrap();
            let k = var("SHMDS_CHILD");
            let mut sub = topic.subscribe_from_oldest();
            let mut buf = Vec::new();
            let mut n = 0;
            loop {
                match sub.recv_timeout(&mut buf, Duration::from_secs(30)) {
                    Ok(_) => {
                        let id = parse(&buf, MAX);
                        if id == u64::MAX >> 8 {
                            break;
                        }
                        n += 1;
                    }
                    Err(Error::Lagged { missed, .. }) => n += missed,
                    Err(e) => panic!("{e}"),
                }
            }
            got.set(k as usize, n).unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Two producer and two consumer processes move 1,000,000 messages of random
/// sizes (0..700 bytes, CRC32C on): each arrives exactly once, whole, in
/// per-producer order.
#[test]
fn processes_move_messages_exactly_once() {
    let name = ShmName::new("ch-stress");
    let seg = Segment::create(name.as_str(), 16 << 20).unwrap();
    seg.create_channel(
        "c",
        ChannelOptions::new(256 << 10)
            .max_message(MAX as u64)
            .checksum(true),
    )
    .unwrap();
    let marks = seg
        .create_array::<u8>("marks", 2 * STRESS_PER_PRODUCER as usize)
        .unwrap();
    let consumers: Vec<_> = (0..2)
        .map(|c| {
            KillOnDrop(spawn_self(
                "child_role",
                &env("consumer", &name, &[("SHMDS_CHILD", c.to_string())]),
            ))
        })
        .collect();
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            KillOnDrop(spawn_self(
                "child_role",
                &env(
                    "producer",
                    &name,
                    &[
                        ("SHMDS_CHILD", p.to_string()),
                        ("SHMDS_COUNT", STRESS_PER_PRODUCER.to_string()),
                    ],
                ),
            ))
        })
        .collect();
    for mut p in producers {
        assert!(p.0.wait().unwrap().success(), "a producer failed");
    }
    for mut c in consumers {
        assert!(c.0.wait().unwrap().success(), "a consumer failed");
    }
    let mut counts = vec![0u8; (2 * STRESS_PER_PRODUCER) as usize];
    marks.read(0, &mut counts).unwrap();
    let missing = counts.iter().filter(|&&c| c == 0).count();
    assert_eq!(missing, 0, "{missing} messages lost");
    assert!(counts.iter().all(|&c| c == 1));
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

/// Run a child that sends (`side` "send") or receives on channel "c" of
/// segment `name` and SIGKILL it at pause point `point`.
#[cfg(feature = "fault-injection")]
fn kill_child_at(name: &ShmName, side: &str, point: &str) {
    let pause = TempPath::new("ch-pause");
    let mut child = KillOnDrop(spawn_self(
        "child_role",
        &env(
            "pause",
            name,
            &[
                ("SHMDS_SIDE", side.into()),
                ("SHMDS_PAUSE_AT", point.into()),
                ("SHMDS_PAUSE_FILE", pause.0.display().to_string()),
            ],
        ),
    ));
    assert!(
        wait_for_file(&pause.0, Duration::from_secs(20)),
        "{point}: the child never paused"
    );
    kill_and_reap(&mut child.0);
}

/// A process killed at every pause point of send and receive, MPMC and
/// SPSC: the channel never wedges, and what is lost or delivered again is
/// what FORMAT.md says.
#[cfg(feature = "fault-injection")]
#[test]
fn killed_at_every_step_the_channel_goes_on() {
    let points = [
        ("send", "channel.send.claimed", false),
        ("send", "channel.send.tail_moved", false),
        ("send", "channel.send.written", false),
        ("recv", "channel.recv.claimed", false),
        ("recv", "channel.recv.head_moved", false),
        ("recv", "channel.recv.read", false),
        ("send", "channel.spsc.written", true),
        ("recv", "channel.spsc.read", true),
    ];
    for (side, point, spsc) in points {
        let name = ShmName::new("ch-kill");
        let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
        let ch = seg
            .create_channel("c", ChannelOptions::new(4096).spsc(spsc))
            .unwrap();
        if side == "recv" {
            let mut tx = ch.sender().unwrap();
            tx.send(&message(1, length_of(1, 100))).unwrap();
            // The sender stays attached as far as the channel is concerned
            // only while `tx` lives; drop it so that the child can attach
            // to an SPSC channel's receiving side freely.
        }
        kill_child_at(&name, side, point);
        // The dead process's attachment does not count, and its claim is
        // taken over: the channel carries messages again.
        let mut rx = ch.receiver().unwrap();
        let mut tx = ch.sender().unwrap();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        tx.send_timeout(&message(2, length_of(2, 100)), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{point}: send after the kill: {e}"));
        loop {
            match rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
                Ok(_) => {
                    let id = parse(&buf, 100);
                    got.push(id);
                    if id == 2 {
                        break;
                    }
                }
                Err(e) => panic!("{point}: {e} (got {got:?})"),
            }
        }
        match point {
            // Died before its message was visible, or with it half written.
            "channel.send.claimed"
            | "channel.send.tail_moved"
            | "channel.send.written"
            | "channel.spsc.written" => assert_eq!(got, vec![2], "{point}"),
            // Died before moving head: the message goes to the next receiver.
            "channel.recv.claimed" | "channel.spsc.read" => {
                assert_eq!(got, vec![1, 2], "{point}")
            }
            // Died after taking it: that message is lost.
            _ => assert_eq!(got, vec![2], "{point}"),
        }
        assert!(seg.check().is_ok(), "{point}: {:?}", seg.check().problems);
    }
}

/// A receiver killed after it moved `head` but before it freed a message of
/// several cells (or while it freed it) leaves the frame's first cell
/// claimed and some inner cells unfreed. A sender that comes round to those
/// cells a lap later (here, a frame starting on the dead one's first cell,
/// so it meets an unfreed inner cell before the claim) must find the dead
/// claimant and free its frame, not wait for room forever in an empty ring.
#[cfg(feature = "fault-injection")]
#[test]
fn a_dead_receivers_frame_is_freed_a_lap_later() {
    // Messages of 2 cells (killed before freeing) and 3 cells (killed
    // after freeing one inner cell).
    for (point, len) in [("channel.recv.read", 100), ("channel.free.inner", 150)] {
        dead_receivers_frame(point, len);
    }
}

#[cfg(feature = "fault-injection")]
fn dead_receivers_frame(point: &str, len: usize) {
    let name = ShmName::new("ch-lap");
    let seg = Segment::create(name.as_str(), 4 << 20).unwrap();
    // 64 cells.
    let ch = seg.create_channel("c", ChannelOptions::new(4096)).unwrap();
    let pad = |id: u64| message(id, len);
    {
        let mut tx = ch.sender().unwrap();
        tx.send(&pad(1)).unwrap();
    }
    kill_child_at(&name, "recv", point);
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    let mut buf = Vec::new();
    // Laps of same-size messages: the second lap's first frame starts on
    // the dead receiver's claimed cell.
    for id in 2..100u64 {
        tx.send_timeout(&pad(id), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{point}: send {id}: {e}; {}", ch.describe()));
        rx.recv_timeout(&mut buf, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{point}: recv {id}: {e}; {}", ch.describe()));
        assert_eq!(buf, pad(id));
    }
    assert!(seg.check().is_ok(), "{point}: {:?}", seg.check().problems);
}

/// A storm of SIGKILLs on two producer and two consumer processes (at
/// least 1,000 kills; `SHMDS_STORM_KILLS` for more): no message is ever
/// delivered twice, at most one message is lost per kill (the one a
/// killed process was sending or reading), every message a producer
/// finished sending before the end is delivered, and the channel never
/// wedges.
#[test]
fn random_kill_storm() {
    let kills_wanted: u64 = std::env::var("SHMDS_STORM_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let name = ShmName::new("ch-storm");
    let seg = Segment::create(name.as_str(), 16 << 20).unwrap();
    let ch = seg
        .create_channel("c", ChannelOptions::new(32 << 10).max_message(MAX as u64))
        .unwrap();
    let intent = seg.create_array::<u64>("intent", 2).unwrap();
    let marks = seg
        .create_array::<u8>("marks", 2 * SEQ_LIMIT as usize)
        .unwrap();
    let roles = [
        "storm-producer",
        "storm-producer",
        "storm-consumer",
        "storm-consumer",
    ];
    let spawn = |k: usize| {
        KillOnDrop(spawn_self(
            "child_role",
            &env(roles[k], &name, &[("SHMDS_CHILD", (k % 2).to_string())]),
        ))
    };
    let mut children: Vec<KillOnDrop> = (0..4).map(spawn).collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut kills = 0u64;
    let start = Instant::now();
    while kills < kills_wanted {
        std::thread::sleep(Duration::from_micros(500 + rng.next() % 4000));
        let k = (rng.next() % 4) as usize;
        if let Some(status) = children[k].0.try_wait().unwrap() {
            panic!("storm child {k} ({}) exited on its own: {status}", roles[k]);
        }
        kill_and_reap(&mut children[k].0);
        kills += 1;
        children[k] = spawn(k);
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the storm took too long ({kills} kills)"
        );
    }
    // Stop the producers, then let the consumers drain.
    for child in children.iter_mut().take(2) {
        kill_and_reap(&mut child.0);
        kills += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ch.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the channel does not drain: wedged"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A moment for a consumer to record its last message.
    std::thread::sleep(Duration::from_millis(200));
    for child in children.iter_mut().skip(2) {
        kill_and_reap(&mut child.0);
    }
    let mut sent = [0u64; 2];
    intent.read(0, &mut sent).unwrap();
    let mut lost = 0u64;
    let mut delivered = 0u64;
    for (p, &n) in sent.iter().enumerate() {
        let mut counts = vec![0u8; n as usize];
        marks.read(p * SEQ_LIMIT as usize, &mut counts).unwrap();
        for (i, &c) in counts.iter().enumerate() {
            assert!(c <= 1, "message {p}/{i} delivered {c} times");
            if c == 0 {
                lost += 1;
            }
            delivered += c as u64;
        }
    }
    eprintln!("storm: {kills} kills, {delivered} messages delivered, {lost} lost");
    assert!(delivered > 0);
    assert!(lost <= kills + 4, "{lost} messages lost in {kills} kills");
    // Still works.
    let before = ch.describe();
    eprintln!("storm: after the drain: {before}");
    let mut tx = ch.sender().unwrap();
    let mut rx = ch.receiver().unwrap();
    if let Err(e) = tx.send_timeout(&message(5, length_of(5, MAX)), Duration::from_secs(10)) {
        panic!(
            "no room after the storm ({e}); before the send: {before}; now: {}",
            ch.describe()
        );
    }
    let mut buf = Vec::new();
    if let Err(e) = rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
        panic!(
            "no message after the storm ({e}); before the send: {before}; now: {}",
            ch.describe()
        );
    }
    assert_eq!(parse(&buf, MAX), 5);
    assert!(seg.check().is_ok(), "{:?}", seg.check().problems);
}

/// Three subscriber processes see every message a publisher process... the
/// publisher here is this process; each subscriber counts what it received
/// plus what it was told it missed, which must add up to what was published.
#[test]
fn subscriber_processes_account_for_every_message() {
    let name = ShmName::new("topic-procs");
    let seg = Segment::create(name.as_str(), 8 << 20).unwrap();
    let topic = seg
        .create_topic(
            "t",
            TopicOptions::new(64 << 10)
                .max_message(MAX as u64)
                .checksum(true),
        )
        .unwrap();
    seg.create_channel("c", ChannelOptions::new(64)).unwrap();
    let got = seg.create_array::<u64>("got", 3).unwrap();
    let subs: Vec<_> = (0..3)
        .map(|k| {
            KillOnDrop(spawn_self(
                "child_role",
                &env("subscriber", &name, &[("SHMDS_CHILD", k.to_string())]),
            ))
        })
        .collect();
    // Give the subscribers a moment to start (those that start late count
    // the messages they missed through Lagged).
    std::thread::sleep(Duration::from_millis(200));
    let n = 100_000u64;
    for i in 0..n {
        topic.publish(&message(i, length_of(i, MAX))).unwrap();
    }
    let end = u64::MAX >> 8;
    topic.publish(&message(end, length_of(end, MAX))).unwrap();
    for mut s in subs {
        assert!(s.0.wait().unwrap().success(), "a subscriber failed");
    }
    for k in 0..3 {
        assert_eq!(got.get(k).unwrap(), n, "subscriber {k}");
    }
}
