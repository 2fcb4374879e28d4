//! The shmds Channel side of issue 13's Performance goals, in the same
//! shape as the peers in `iox.rs` / `memcpy.rs`.
//!
//! Each function is ONE run (`run` = 0..settings.runs); `main` alternates
//! the runs of a peer and of its shmds variants (iceoryx2 run 0, shmds
//! poll run 0, shmds block run 0, iceoryx2 run 1, ...) so that all see the
//! same load on this shared machine. Every run has its own segment
//! ([`BenchSegment`], removed at the end of the run, also when it panics)
//! and its own child processes, started together after all set-up by
//! `harness::start_all` (pinned as the peers are: `pin_throughput()` /
//! `pin_latency()`).
//!
//! Two ways of waiting, each its own row ([`Waiting`]):
//! - **poll**: the `try_` calls (`try_send`, `try_reserve`,
//!   `try_recv_ref`), waiting between empty/full polls with
//!   `harness::Poll` exactly as the iceoryx2 peers do (spin 128 empty polls
//!   then `sched_yield` per poll in the throughput loops, 65,536 in the
//!   ping-pong loops): the like-for-like comparison;
//! - **block**: the blocking calls users make (`send`, `reserve`,
//!   `recv_ref`), which wait inside shmds (spin 255 hints, 8 `sched_yield`s,
//!   then a futex sleep that the other side wakes).
//!
//! Messages carry a sequence number (little-endian u64 in bytes 0..8),
//! checked by every consumer; mistakes are counted and reported (expected
//! 0). The figures:
//! - [`spsc_throughput`]: SPSC, 1 -> 1, 64-byte messages (`send` of a
//!   64-byte array built per message, as iceoryx2's `write_payload` copies
//!   a `Msg64` into its loaned sample; `recv_ref`, read in place), ring of
//!   `iox_buffer` x 64 B (a 64-byte message is exactly one 64-byte cell;
//!   the per-cell control records are outside the data capacity), so the
//!   ring holds as many messages as iceoryx2's subscriber buffer.
//! - [`mpmc_throughput`]: MPMC, 2 producer + 2 consumer processes, same
//!   messages and ring size; consumers stop at `Disconnected`.
//! - [`latency`]: ping-pong over two SPSC channels.
//! - [`reserve_commit_bandwidth`]: 4 MiB messages, `reserve` + one memcpy
//!   in, `recv_ref` + one memcpy out.

use crate::harness::{self, now_ns, percentile_sorted, Poll, Proc};
use crate::memcpy;
use crate::Settings;
use shmds::{ChannelOptions, Error, Receiver, Segment, Sender};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A segment of one benchmark run, named after the orchestrator's pid and
/// removed from /dev/shm when dropped (also when a run panics).
pub struct BenchSegment {
    pub name: String,
    pub seg: shmds::Segment,
}

impl BenchSegment {
    pub fn create(tag: &str, size: u64) -> BenchSegment {
        let name = format!("shmds-chbench-{tag}-{}", std::process::id());
        let _ = shmds::Segment::remove(&name);
        let seg = shmds::Segment::create(&name, size).expect("create bench segment");
        BenchSegment { name, seg }
    }
}

impl Drop for BenchSegment {
    fn drop(&mut self) {
        let _ = shmds::Segment::remove(&self.name);
    }
}

/// How the shmds side waits (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// `try_` calls polled with `harness::Poll`, as the peers poll.
    Poll,
    /// The blocking calls (shmds' own spin, yield, futex).
    Block,
}

impl Waiting {
    pub const BOTH: [Waiting; 2] = [Waiting::Poll, Waiting::Block];

    pub fn arg(self) -> &'static str {
        match self {
            Waiting::Poll => "poll",
            Waiting::Block => "block",
        }
    }

    fn parse(s: &str) -> Res<Waiting> {
        match s {
            "poll" => Ok(Waiting::Poll),
            "block" => Ok(Waiting::Block),
            other => Err(format!("waiting mode {other}: expected poll or block").into()),
        }
    }

    /// How a row names its calls.
    pub fn describe(self, send: &str, recv: &str) -> String {
        match self {
            Waiting::Poll => {
                format!("try_{send} / try_{recv} polled (harness::Poll, as the peers poll)")
            }
            Waiting::Block => {
                format!("blocking {send} / {recv} (shmds waits: spin, yield, then futex)")
            }
        }
    }
}

/// One throughput run.
pub struct Throughput {
    pub rate: f64,
    /// Sequence mistakes seen by the consumers (wrong, missing, duplicated
    /// or out-of-order messages; expected 0).
    pub errors: u64,
}

const MSG: usize = 64;

fn message(seq: u64, producer: u8) -> [u8; MSG] {
    let mut m = [seq as u8; MSG];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8] = producer;
    m
}

fn seq_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().expect("8 bytes"))
}

// ------------------------------------------------------------ orchestrator

// SPSC 1 -> 1, 64-byte messages: rate = received / (consumer end - t0).
// Goal: >= 1.5x iceoryx2's rate in the same run and >= 30 M messages/s.
pub fn spsc_throughput(settings: &Settings, run: usize, waiting: Waiting) -> Throughput {
    let bs = BenchSegment::create(&format!("spsc-{run}-{}", waiting.arg()), 4 << 20);
    let capacity = settings.iox_buffer as u64 * MSG as u64;
    bs.seg
        .create_channel(
            "c",
            ChannelOptions::new(capacity)
                .spsc(true)
                .max_message(MSG as u64),
        )
        .expect("create SPSC channel");
    let args = vec![
        bs.name.clone(),
        settings.messages.to_string(),
        waiting.arg().to_string(),
    ];
    let mut procs = vec![
        Proc::spawn("shmds-spsc-consumer", &args),
        Proc::spawn("shmds-spsc-producer", &args),
    ];
    let t0 = harness::start_all(&mut procs, harness::pin_throughput());
    let producer = procs.pop().unwrap();
    let c = procs.pop().unwrap().finish();
    producer.finish();
    let secs = (c.u64("end_ns") - t0) as f64 / 1e9;
    Throughput {
        rate: c.u64("received") as f64 / secs,
        errors: c.u64("errors"),
    }
}

// MPMC, 2 producers + 2 consumers (four processes), 64 B. Each producer
// sends settings.messages / 2 messages tagged (producer, seq); consumers
// stop when the channel reports Disconnected (both producers detached and
// the ring drained). Each consumer checks per-producer FIFO order; the
// orchestrator checks that the consumers together got every message of
// each producer exactly once (counts and sums of sequence numbers). rate =
// sum(received) / (latest consumer end - t0), where a consumer's end is
// the clock read at its first empty poll after its last message (so the
// time a try call takes to notice the disconnection, up to 20 ms, is not
// counted). Goal: >= 10 M messages/s. (No peer: iceoryx2
// publish-subscribe delivers every sample to every subscriber.)
pub fn mpmc_throughput(settings: &Settings, run: usize, waiting: Waiting) -> Throughput {
    let bs = BenchSegment::create(&format!("mpmc-{run}-{}", waiting.arg()), 4 << 20);
    let capacity = settings.iox_buffer as u64 * MSG as u64;
    bs.seg
        .create_channel(
            "c",
            ChannelOptions::new(capacity)
                .spsc(false)
                .max_message(MSG as u64),
        )
        .expect("create MPMC channel");
    let per = settings.messages / 2;
    let consumer_args = vec![bs.name.clone(), waiting.arg().to_string()];
    let producer_args = |id: u8| {
        vec![
            bs.name.clone(),
            waiting.arg().to_string(),
            per.to_string(),
            id.to_string(),
        ]
    };
    let mut procs = vec![
        Proc::spawn("shmds-mpmc-consumer", &consumer_args),
        Proc::spawn("shmds-mpmc-consumer", &consumer_args),
        Proc::spawn("shmds-mpmc-producer", &producer_args(0)),
        Proc::spawn("shmds-mpmc-producer", &producer_args(1)),
    ];
    let t0 = harness::start_all(&mut procs, harness::pin_throughput());
    let reports: Vec<_> = procs.into_iter().map(Proc::finish).collect();
    let consumers = &reports[..2];
    let end = consumers.iter().map(|c| c.u64("end_ns")).max().unwrap();
    let received: u64 = consumers.iter().map(|c| c.u64("received")).sum();
    let mut errors: u64 = consumers.iter().map(|c| c.u64("disorder")).sum();
    let want_sum = per * per.saturating_sub(1) / 2;
    for p in 0..2 {
        let count: u64 = consumers.iter().map(|c| c.u64(&format!("count{p}"))).sum();
        let sum: u64 = consumers.iter().map(|c| c.u64(&format!("sum{p}"))).sum();
        if count != per || sum != want_sum {
            eprintln!(
                "  MPMC run {run}: producer {p}: {count} messages received (sent {per}), \
                 sequence sum {sum} (expected {want_sum})"
            );
            errors += count.abs_diff(per).max(1);
        }
    }
    let secs = (end - t0) as f64 / 1e9;
    Throughput {
        rate: received as f64 / secs,
        errors,
    }
}

// Ping-pong over two SPSC channels ("ping", "pong"): settings.warmup +
// settings.rounds round trips, timed per round trip with Instant; one-way
// = round trip / 2; median_ns and p99_ns per run. Goal: median <=
// iceoryx2's in the same run.
pub fn latency(settings: &Settings, run: usize, waiting: Waiting) -> (f64, f64) {
    let bs = BenchSegment::create(&format!("lat-{run}-{}", waiting.arg()), 1 << 20);
    for name in ["ping", "pong"] {
        bs.seg
            .create_channel(
                name,
                ChannelOptions::new(64 * MSG as u64)
                    .spsc(true)
                    .max_message(MSG as u64),
            )
            .expect("create ping-pong channel");
    }
    let args = vec![
        bs.name.clone(),
        settings.rounds.to_string(),
        settings.warmup.to_string(),
        waiting.arg().to_string(),
    ];
    let mut procs = vec![
        Proc::spawn("shmds-ping", &args),
        Proc::spawn("shmds-pong", &args),
    ];
    harness::start_all(&mut procs, harness::pin_latency());
    let ponger = procs.pop().unwrap();
    let r = procs.pop().unwrap().finish();
    ponger.finish();
    (r.f64("median_ns"), r.f64("p99_ns"))
}

/// 4 MiB messages held by the ring of the bandwidth figure.
pub const BIG_SLOTS: u64 = 4;

// 4 MiB messages via reserve/commit: an SPSC channel of 4 x 4 MiB
// (max_message 4 MiB; 4 MiB is a whole number of cells, so no padding
// frame is ever needed). Producer: reserve(4 MiB), one memcpy from a
// prepared 4 MiB source, the sequence number written over the first 8
// bytes, commit. Consumer: recv_ref, one memcpy out into a 4 MiB buffer,
// the sequence checked in the copy, the guard dropped. One untimed lap (4
// messages) before READY, so the ring's pages are mapped in both
// processes, as memcpy.rs writes its buffers before timing. GB/s =
// messages * 4 MiB / (consumer end - t0). Goal: >= 50 % of the warm
// memcpy figure of the same run.
pub fn reserve_commit_bandwidth(settings: &Settings, run: usize, waiting: Waiting) -> f64 {
    let size = memcpy::SIZE as u64;
    let bs = BenchSegment::create(&format!("4mib-{run}-{}", waiting.arg()), 32 << 20);
    bs.seg
        .create_channel(
            "big",
            ChannelOptions::new(BIG_SLOTS * size)
                .spsc(true)
                .max_message(size),
        )
        .expect("create 4 MiB channel");
    let args = vec![
        bs.name.clone(),
        settings.big_messages.to_string(),
        waiting.arg().to_string(),
    ];
    let mut procs = vec![
        Proc::spawn("shmds-4mib-consumer", &args),
        Proc::spawn("shmds-4mib-producer", &args),
    ];
    let t0 = harness::start_all(&mut procs, harness::pin_throughput());
    let producer = procs.pop().unwrap();
    let c = procs.pop().unwrap().finish();
    producer.finish();
    let errors = c.u64("errors");
    assert_eq!(errors, 0, "4 MiB run {run}: {errors} sequence mistakes");
    let secs = (c.u64("end_ns") - t0) as f64 / 1e9;
    c.u64("received") as f64 * size as f64 / secs / 1e9
}

// ------------------------------------------------------------ children

/// A poll loop that has seen no progress for 30 s gives up (the peers' rule).
struct Stall {
    idle: u32,
    seen: u64,
    since: Instant,
}

impl Stall {
    fn new() -> Stall {
        Stall {
            idle: 0,
            seen: 0,
            since: Instant::now(),
        }
    }

    fn idle(&mut self, progress: u64, what: &str) -> Res<()> {
        self.idle = self.idle.wrapping_add(1);
        if self.idle.is_multiple_of(1 << 20) {
            if progress != self.seen {
                (self.seen, self.since) = (progress, Instant::now());
            } else if self.since.elapsed() > Duration::from_secs(30) {
                return Err(format!("{what}: stalled at {progress}").into());
            }
        }
        Ok(())
    }
}

/// Send one message, waiting as `waiting` says.
fn send(
    tx: &mut Sender,
    msg: &[u8],
    waiting: Waiting,
    poll: &mut Poll,
    stall: &mut Stall,
    progress: u64,
) -> Res<()> {
    match waiting {
        Waiting::Block => tx.send(msg)?,
        Waiting::Poll => loop {
            match tx.try_send(msg) {
                Ok(()) => {
                    poll.reset();
                    break;
                }
                Err(Error::Full { .. }) => {
                    poll.idle();
                    stall.idle(progress, "send")?;
                }
                Err(e) => return Err(e.into()),
            }
        },
    }
    Ok(())
}

/// Receive one message and hand it to `read` in place, waiting as
/// `waiting` says.
fn recv<R>(
    rx: &mut Receiver,
    waiting: Waiting,
    poll: &mut Poll,
    stall: &mut Stall,
    progress: u64,
    read: impl FnOnce(&[u8]) -> R,
) -> Res<R> {
    match waiting {
        Waiting::Block => Ok(read(&rx.recv_ref()?)),
        Waiting::Poll => loop {
            match rx.try_recv_ref() {
                Ok(m) => {
                    poll.reset();
                    return Ok(read(&m));
                }
                Err(Error::Empty { .. }) => {
                    poll.idle();
                    stall.idle(progress, "receive")?;
                }
                Err(e) => return Err(e.into()),
            }
        },
    }
}

/// Child roles `shmds-*` (see the orchestrator functions above for each).
pub fn child(role: &str, args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match role {
        "shmds-spsc-producer" | "shmds-spsc-consumer" => {
            let (seg, n, waiting) = (&args[0], args[1].parse::<u64>()?, Waiting::parse(&args[2])?);
            let seg = Segment::open(seg)?;
            let ch = seg.open_channel("c")?;
            let (mut poll, mut stall) = (Poll::throughput(), Stall::new());
            if role == "shmds-spsc-producer" {
                let mut tx = ch.sender()?;
                harness::ready();
                harness::wait_go();
                for i in 0..n {
                    send(&mut tx, &message(i, 0), waiting, &mut poll, &mut stall, i)?;
                }
                let end = now_ns();
                drop(tx);
                harness::done(&[("end_ns", end.to_string())]);
            } else {
                let mut rx = ch.receiver()?;
                harness::ready();
                harness::wait_go();
                let (mut received, mut errors, mut check) = (0u64, 0u64, 0u8);
                while received < n {
                    let (seq, last) =
                        recv(&mut rx, waiting, &mut poll, &mut stall, received, |m| {
                            (
                                if m.len() == MSG { seq_of(m) } else { u64::MAX },
                                m[MSG - 1],
                            )
                        })?;
                    errors += u64::from(seq != received);
                    check ^= last;
                    received += 1;
                }
                let end = now_ns();
                std::hint::black_box(check);
                harness::done(&[
                    ("end_ns", end.to_string()),
                    ("received", received.to_string()),
                    ("errors", errors.to_string()),
                ]);
            }
        }
        "shmds-mpmc-producer" => {
            let (seg, waiting) = (&args[0], Waiting::parse(&args[1])?);
            let (n, id) = (args[2].parse::<u64>()?, args[3].parse::<u8>()?);
            let seg = Segment::open(seg)?;
            let mut tx = seg.open_channel("c")?.sender()?;
            let (mut poll, mut stall) = (Poll::throughput(), Stall::new());
            harness::ready();
            harness::wait_go();
            for i in 0..n {
                send(&mut tx, &message(i, id), waiting, &mut poll, &mut stall, i)?;
            }
            let end = now_ns();
            drop(tx); // detach: consumers see Disconnected once it is drained
            harness::done(&[("end_ns", end.to_string())]);
        }
        "shmds-mpmc-consumer" => {
            let (seg, waiting) = (&args[0], Waiting::parse(&args[1])?);
            let seg = Segment::open(seg)?;
            let mut rx = seg.open_channel("c")?.receiver()?;
            let mut poll = Poll::throughput();
            harness::ready();
            harness::wait_go();
            let mut next = [0u64; 2]; // per producer: the least acceptable seq
            let (mut count, mut sum) = ([0u64; 2], [0u64; 2]);
            let (mut received, mut disorder, mut bad) = (0u64, 0u64, 0u64);
            let mut end = now_ns();
            let mut fresh = false; // a message arrived since `end` was read
                                   // One message in place: per-producer FIFO check and tallies.
            let mut take = |m: &[u8], received: &mut u64| {
                *received += 1;
                let p = if m.len() == MSG { m[8] as usize } else { 2 };
                if p >= 2 {
                    bad += 1;
                    return;
                }
                let seq = seq_of(m);
                if seq < next[p] {
                    disorder += 1;
                }
                next[p] = seq + 1;
                count[p] += 1;
                sum[p] += seq;
            };
            let mut idle = 0u32;
            let since = Instant::now();
            loop {
                // Both modes try first; an empty ring is the moment to read
                // the clock (the consumer's end, if no message follows).
                match rx.try_recv_ref() {
                    Ok(m) => {
                        poll.reset();
                        take(&m, &mut received);
                        fresh = true;
                        continue;
                    }
                    Err(Error::Empty { .. }) => {}
                    Err(Error::Disconnected { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
                if fresh {
                    (end, fresh) = (now_ns(), false);
                }
                match waiting {
                    Waiting::Poll => {
                        poll.idle();
                        idle = idle.wrapping_add(1);
                        if idle.is_multiple_of(1 << 24)
                            && since.elapsed() > Duration::from_secs(120)
                        {
                            return Err(format!("stalled after {received} messages").into());
                        }
                    }
                    Waiting::Block => match rx.recv_ref() {
                        Ok(m) => {
                            take(&m, &mut received);
                            fresh = true;
                        }
                        Err(Error::Disconnected { .. }) => break,
                        Err(e) => return Err(e.into()),
                    },
                }
            }
            if fresh {
                end = now_ns();
            }
            harness::done(&[
                ("end_ns", end.to_string()),
                ("received", received.to_string()),
                ("disorder", (disorder + bad).to_string()),
                ("count0", count[0].to_string()),
                ("count1", count[1].to_string()),
                ("sum0", sum[0].to_string()),
                ("sum1", sum[1].to_string()),
            ]);
        }
        "shmds-ping" | "shmds-pong" => {
            let seg = Segment::open(&args[0])?;
            let (rounds, warmup) = (args[1].parse::<u64>()?, args[2].parse::<u64>()?);
            let waiting = Waiting::parse(&args[3])?;
            let (to, from) = if role == "shmds-ping" {
                ("ping", "pong")
            } else {
                ("pong", "ping")
            };
            let mut tx = seg.open_channel(to)?.sender()?;
            let mut rx = seg.open_channel(from)?.receiver()?;
            let mut stall = Stall::new();
            harness::ready();
            harness::wait_go();
            if role == "shmds-ping" {
                let mut rtt = Vec::with_capacity(rounds as usize);
                for i in 0..warmup + rounds {
                    let t = Instant::now();
                    let mut poll = Poll::latency();
                    send(&mut tx, &message(i, 0), waiting, &mut poll, &mut stall, i)?;
                    let mut poll = Poll::latency();
                    let echoed = recv(&mut rx, waiting, &mut poll, &mut stall, i, seq_of)?;
                    let dt = t.elapsed();
                    if echoed != i {
                        return Err(format!("ping {i} answered with {echoed}").into());
                    }
                    if i >= warmup {
                        rtt.push(dt.as_nanos() as u64);
                    }
                }
                rtt.sort_unstable();
                let one_way = |ns: u64| format!("{:.1}", ns as f64 / 2.0);
                harness::done(&[
                    ("median_ns", one_way(percentile_sorted(&rtt, 50.0))),
                    ("p99_ns", one_way(percentile_sorted(&rtt, 99.0))),
                ]);
            } else {
                for i in 0..warmup + rounds {
                    let mut poll = Poll::latency();
                    let seq = recv(&mut rx, waiting, &mut poll, &mut stall, i, seq_of)?;
                    let mut poll = Poll::latency();
                    send(&mut tx, &message(seq, 1), waiting, &mut poll, &mut stall, i)?;
                }
                harness::done(&[]);
            }
        }
        "shmds-4mib-producer" => {
            let seg = Segment::open(&args[0])?;
            let (n, waiting) = (args[1].parse::<u64>()?, Waiting::parse(&args[2])?);
            let mut tx = seg.open_channel("big")?.sender()?;
            let src: Vec<u8> = (0..memcpy::SIZE).map(|j| j as u8).collect();
            // Untimed lap: fills the ring once (maps its pages here).
            for i in 0..BIG_SLOTS {
                let mut r = tx.reserve(memcpy::SIZE)?;
                memcpy::copy(&mut r, &src);
                r[..8].copy_from_slice(&i.to_le_bytes());
                r.commit();
            }
            let (mut poll, mut stall) = (Poll::throughput(), Stall::new());
            harness::ready();
            harness::wait_go();
            for i in BIG_SLOTS..BIG_SLOTS + n {
                let mut r = match waiting {
                    Waiting::Block => tx.reserve(memcpy::SIZE)?,
                    Waiting::Poll => loop {
                        match tx.try_reserve(memcpy::SIZE) {
                            Ok(r) => break r,
                            Err(Error::Full { .. }) => {
                                poll.idle();
                                stall.idle(i, "reserve")?;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    },
                };
                poll.reset();
                memcpy::copy(&mut r, &src);
                r[..8].copy_from_slice(&i.to_le_bytes());
                r.commit();
            }
            drop(tx);
            harness::done(&[]);
        }
        "shmds-4mib-consumer" => {
            let seg = Segment::open(&args[0])?;
            let (n, waiting) = (args[1].parse::<u64>()?, Waiting::parse(&args[2])?);
            let mut rx = seg.open_channel("big")?.receiver()?;
            let mut dst = vec![0u8; memcpy::SIZE];
            // The untimed lap (maps the ring's pages here).
            for _ in 0..BIG_SLOTS {
                memcpy::copy(&mut dst, &rx.recv_ref()?);
            }
            let (mut poll, mut stall) = (Poll::throughput(), Stall::new());
            harness::ready();
            harness::wait_go();
            let mut errors = 0u64;
            for i in BIG_SLOTS..BIG_SLOTS + n {
                let copied = recv(&mut rx, waiting, &mut poll, &mut stall, i, |m| {
                    if m.len() == dst.len() {
                        memcpy::copy(&mut dst, m);
                        true
                    } else {
                        false
                    }
                })?;
                errors += u64::from(!copied || seq_of(&dst) != i);
            }
            let end = now_ns();
            std::hint::black_box(&dst);
            harness::done(&[
                ("end_ns", end.to_string()),
                ("received", n.to_string()),
                ("errors", errors.to_string()),
            ]);
        }
        other => return Err(format!("unknown shmds role {other}").into()),
    }
    Ok(())
}
