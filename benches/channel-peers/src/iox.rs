//! iceoryx2 peers (the Rust crate, `ipc::Service`, zero-copy loan API).
//!
//! - **Throughput**: one publisher process -> one subscriber process, 64-byte
//!   messages (`Msg64`: a sequence number and 56 bytes of body). No message
//!   may be lost: the service is created with `enable_safe_overflow(false)`
//!   (a full subscriber buffer never overwrites) and the publisher uses
//!   `BackpressureStrategy::RetryUntilDelivered`, so `send` waits inside
//!   iceoryx2 while the subscriber's buffer is full. The subscriber checks
//!   every sequence number and counts gaps as lost messages (reported;
//!   expected 0). A send that reached no subscriber is sent again and
//!   counted (reported; expected 0 since the set-up waits for a connection
//!   sample, see [`CONNECT`]).
//! - **Latency**: ping-pong over two services (`ping`, `pong`); one-way
//!   latency = round trip / 2. The next sample is loaned before waiting for
//!   the answer (as iceoryx2's own benchmark does), so a loan is never on the
//!   critical path.
//!
//! Waiting: both sides poll `subscriber.receive()`, spinning
//! (`core::hint::spin_loop()`) for the first empty polls in a row (128 in
//! the throughput loop, 65,536 in the ping-pong loops) and then calling
//! `sched_yield` per empty poll (`harness::Poll`, which says why). A
//! publisher whose subscriber buffer is full waits in iceoryx2's own
//! `RetryUntilDelivered` loop (`AdaptiveWait`: `sched_yield` for the first
//! 10,000 checks, then 100 µs and later 10 ms sleeps). No futex or other
//! blocking wait is involved.
//!
//! Files: every run uses its own iceoryx2 config, root path
//! `/tmp/shmds-bench-iox2-<pid>/` (instead of `/tmp/iceoryx2/`) and file
//! prefix `iox2_shmdsbench_<pid>_` (so its `/dev/shm` files are
//! recognisable), and removes both at the end; leftovers of runs whose
//! process is gone (killed) are removed at start-up.

use crate::harness::{self, now_ns, percentile_sorted, Proc};
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;
use std::error::Error;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error>>;

/// The 64-byte message of the throughput and latency benchmarks.
#[derive(Debug, Clone, Copy, ZeroCopySend)]
#[repr(C)]
pub struct Msg64 {
    pub seq: u64,
    pub body: [u8; 56],
}

const _: () = assert!(std::mem::size_of::<Msg64>() == 64);

/// Sequence number of the throughput run's connection sample, sent by the
/// publisher and awaited by the subscriber before either reports READY.
/// Without it, a subscriber that starts polling late (descheduled on this
/// busy machine) has not yet opened its end of the connection when the
/// publisher fills the buffer, and iceoryx2 0.10 then drops samples even
/// with `RetryUntilDelivered` (`blocking_send` gives up with
/// `NoConnectedReceiverAndBufferIsFull` and `send` returns 0 recipients):
/// seen once, 405 samples lost in 5 runs of 5 M.
const CONNECT: u64 = u64::MAX;

const ROOT_DIR_PREFIX: &str = "/tmp/shmds-bench-iox2-";
const FILE_PREFIX: &str = "iox2_shmdsbench_";

/// The iceoryx2 files of one run (named after the orchestrator's pid).
#[derive(Clone, Debug)]
pub struct IoxFiles {
    pub owner_pid: u32,
}

impl IoxFiles {
    pub fn root(&self) -> String {
        format!("{ROOT_DIR_PREFIX}{}/", self.owner_pid)
    }

    pub fn prefix(&self) -> String {
        format!("{FILE_PREFIX}{}_", self.owner_pid)
    }

    pub fn config(&self) -> Res<Config> {
        let mut config = Config::default();
        config
            .global
            .set_root_path(&Path::new(self.root().as_bytes())?);
        config.global.prefix = FileName::new(self.prefix().as_bytes())?;
        Ok(config)
    }

    /// Remove this run's root directory and `/dev/shm` files. Called after
    /// every iceoryx2 handle of the run is dropped and every child exited.
    /// Returns what had to be removed (iceoryx2 removes its service and node
    /// files itself when the last handle goes; directories and the node
    /// management segment stay behind).
    pub fn remove(&self) -> Vec<String> {
        let mut removed = Vec::new();
        let root = self.root();
        if std::path::Path::new(&root).exists() {
            let _ = std::fs::remove_dir_all(&root);
            removed.push(root);
        }
        let prefix = self.prefix();
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) && std::fs::remove_file(e.path()).is_ok() {
                    removed.push(format!("/dev/shm/{name}"));
                }
            }
        }
        removed
    }

    /// Leftovers of earlier runs whose orchestrator is gone (killed).
    pub fn remove_stale() -> Vec<String> {
        let mut removed = Vec::new();
        let mut pids = std::collections::BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir("/tmp") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(&ROOT_DIR_PREFIX["/tmp/".len()..]) {
                    pids.extend(pid.parse::<u32>());
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(rest) = name.strip_prefix(FILE_PREFIX) {
                    pids.extend(rest.split('_').next().and_then(|p| p.parse::<u32>().ok()));
                }
            }
        }
        for pid in pids {
            // SAFETY: kill with signal 0 only checks whether the pid exists.
            let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive && pid != std::process::id() {
                removed.extend(IoxFiles { owner_pid: pid }.remove());
            }
        }
        removed
    }
}

fn node(files: &IoxFiles) -> Res<Node<ipc::Service>> {
    Ok(NodeBuilder::new()
        .config(&files.config()?)
        // Ctrl-C must stop the busy-polling children (the default mode
        // turns SIGINT/SIGTERM into a flag that only node.wait() reads).
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<ipc::Service>()?)
}

/// The service of one direction. Created by the orchestrator (which keeps
/// it alive for the run), opened by the children with the same settings.
fn service(
    node: &Node<ipc::Service>,
    name: &str,
    buffer: usize,
    create: bool,
) -> Res<PubSub<ipc::Service, Msg64, ()>> {
    let b = node
        .service_builder(&ServiceName::new(name)?)
        .publish_subscribe::<Msg64>()
        .enable_safe_overflow(false) // a full buffer never drops a sample
        .subscriber_max_buffer_size(buffer)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1);
    Ok(if create { b.create()? } else { b.open()? })
}

/// Publisher side: wait until the one subscriber is registered, then
/// connect to it, so that no message of the run can go nowhere.
fn connected_publisher(
    svc: &PubSub<ipc::Service, Msg64, ()>,
) -> Res<iceoryx2::port::publisher::Publisher<ipc::Service, Msg64, ()>> {
    let publisher = svc
        .publisher_builder()
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.dynamic_config().number_of_subscribers() < 1 {
        if Instant::now() > deadline {
            return Err("no subscriber connected within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    publisher.update_connections()?;
    Ok(publisher)
}

// ------------------------------------------------------------ orchestrator

/// One throughput run: messages/s at the subscriber, sequence gaps seen by
/// the subscriber (dropped messages), sends that reached no subscriber.
pub struct Throughput {
    pub rate: f64,
    pub dropped: u64,
    pub undelivered: u64,
}

/// One run of the 1 -> 1 throughput (fresh service and processes).
pub fn throughput(files: &IoxFiles, run: usize, n: u64, buffer: usize) -> Res<Throughput> {
    let name = format!("shmds-bench/iox2/tput/{run}");
    let node = node(files)?;
    let _svc = service(&node, &name, buffer, true)?;
    let args = vec![name.clone(), n.to_string(), buffer.to_string()];
    // Both set up together: the publisher waits for the subscriber to
    // register, the subscriber for the publisher's connection sample.
    let mut procs = vec![Proc::spawn("iox-sub", &args), Proc::spawn("iox-pub", &args)];
    let t0 = harness::start_all(&mut procs, harness::pin_throughput());
    let publ = procs.pop().unwrap();
    let sub = procs.pop().unwrap().finish();
    let p = publ.finish();
    let secs = (sub.u64("end_ns") - t0) as f64 / 1e9;
    Ok(Throughput {
        rate: sub.u64("received") as f64 / secs,
        dropped: sub.u64("gaps"),
        undelivered: p.u64("undelivered"),
    })
}

/// One ping-pong run: one-way (round trip / 2) median and p99, ns.
pub fn latency(files: &IoxFiles, run: usize, rounds: u64, warmup: u64) -> Res<(f64, f64)> {
    let ping = format!("shmds-bench/iox2/ping/{run}");
    let pong = format!("shmds-bench/iox2/pong/{run}");
    let node = node(files)?;
    let _a = service(&node, &ping, 1, true)?;
    let _b = service(&node, &pong, 1, true)?;
    let args = vec![ping, pong, rounds.to_string(), warmup.to_string()];
    let mut procs = vec![
        Proc::spawn("iox-ping", &args),
        Proc::spawn("iox-pong", &args),
    ];
    harness::start_all(&mut procs, harness::pin_latency());
    let ponger = procs.pop().unwrap();
    let r = procs.pop().unwrap().finish();
    ponger.finish();
    Ok((r.f64("median_ns"), r.f64("p99_ns")))
}

// ------------------------------------------------------------ children

pub fn child(role: &str, args: &[String], files: &IoxFiles) -> Res<()> {
    let node = node(files)?;
    match role {
        "iox-sub" => {
            let (name, n, buffer) = (&args[0], args[1].parse::<u64>()?, args[2].parse()?);
            let svc = service(&node, name, buffer, false)?;
            let sub = svc.subscriber_builder().buffer_size(buffer).create()?;
            // Set-up ends when the publisher's connection sample has arrived:
            // then both ends of the connection exist (see CONNECT).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match sub.receive()? {
                    Some(s) if s.seq == CONNECT => break,
                    Some(s) => return Err(format!("unexpected seq {} before GO", s.seq).into()),
                    None if Instant::now() > deadline => {
                        return Err("no connection sample within 10 s".into())
                    }
                    None => std::thread::sleep(Duration::from_micros(100)),
                }
            }
            harness::ready();
            harness::wait_go();
            let (mut received, mut gaps, mut expected, mut check) = (0u64, 0u64, 0u64, 0u8);
            let (mut idle, mut seen) = (0u32, 0u64);
            let mut last_progress = Instant::now();
            let mut poll = harness::Poll::throughput();
            while expected < n {
                match sub.receive()? {
                    Some(sample) => {
                        poll.reset();
                        let m: &Msg64 = &sample; // in place, in shared memory
                        if m.seq != expected {
                            gaps += m.seq.saturating_sub(expected);
                        }
                        expected = m.seq + 1;
                        check ^= m.body[55];
                        received += 1;
                    } // dropping the sample returns it to the publisher
                    None => {
                        poll.idle();
                        idle = idle.wrapping_add(1);
                        if idle % (1 << 20) == 0 {
                            if received != seen {
                                (seen, last_progress) = (received, Instant::now());
                            } else if last_progress.elapsed() > Duration::from_secs(30) {
                                return Err(format!("stalled at {expected}/{n}").into());
                            }
                        }
                    }
                }
            }
            let end = now_ns();
            std::hint::black_box(check);
            harness::done(&[
                ("end_ns", end.to_string()),
                ("received", received.to_string()),
                ("gaps", gaps.to_string()),
            ]);
        }
        "iox-pub" => {
            let (name, n, buffer) = (&args[0], args[1].parse::<u64>()?, args[2].parse()?);
            let svc = service(&node, name, buffer, false)?;
            let publisher = connected_publisher(&svc)?;
            let connect = publisher.loan_uninit()?.write_payload(Msg64 {
                seq: CONNECT,
                body: [0; 56],
            });
            if connect.send()? != 1 {
                return Err("the connection sample reached no subscriber".into());
            }
            harness::ready();
            harness::wait_go();
            // A send that reached no subscriber (0 recipients) is sent again,
            // and counted: with the set-up above this should not happen.
            let (mut undelivered, mut poll) = (0u64, harness::Poll::throughput());
            for i in 0..n {
                loop {
                    let sample = publisher.loan_uninit()?;
                    let sample = sample.write_payload(Msg64 {
                        seq: i,
                        body: [i as u8; 56],
                    });
                    if sample.send()? > 0 {
                        break;
                    }
                    undelivered += 1;
                    poll.idle();
                }
                poll.reset();
            }
            let end = now_ns();
            harness::done(&[
                ("end_ns", end.to_string()),
                ("undelivered", undelivered.to_string()),
            ]);
        }
        "iox-ping" => {
            let (ping, pong) = (&args[0], &args[1]);
            let (rounds, warmup) = (args[2].parse::<u64>()?, args[3].parse::<u64>()?);
            let to = service(&node, ping, 1, false)?;
            let from = service(&node, pong, 1, false)?;
            let sub = from.subscriber_builder().buffer_size(1).create()?;
            let publisher = connected_publisher(&to)?;
            harness::ready();
            harness::wait_go();
            let mut rtt = Vec::with_capacity(rounds as usize);
            let mut next = publisher.loan_uninit()?;
            for i in 0..warmup + rounds {
                let t = Instant::now();
                let sent = next
                    .write_payload(Msg64 {
                        seq: i,
                        body: [0; 56],
                    })
                    .send()?;
                if sent != 1 {
                    return Err(format!("ping {i} reached {sent} subscribers").into());
                }
                next = publisher.loan_uninit()?; // off the critical path
                let mut poll = harness::Poll::latency();
                let echoed = loop {
                    if let Some(s) = sub.receive()? {
                        break s.seq;
                    }
                    poll.idle();
                };
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
        }
        "iox-pong" => {
            let (ping, pong) = (&args[0], &args[1]);
            let total = args[2].parse::<u64>()? + args[3].parse::<u64>()?;
            let from = service(&node, ping, 1, false)?;
            let to = service(&node, pong, 1, false)?;
            let sub = from.subscriber_builder().buffer_size(1).create()?;
            let publisher = connected_publisher(&to)?;
            harness::ready();
            harness::wait_go();
            let mut next = publisher.loan_uninit()?;
            for _ in 0..total {
                let mut poll = harness::Poll::latency();
                let seq = loop {
                    if let Some(s) = sub.receive()? {
                        break s.seq;
                    }
                    poll.idle();
                };
                if next.write_payload(Msg64 { seq, body: [0; 56] }).send()? != 1 {
                    return Err(format!("pong {seq} reached no subscriber").into());
                }
                next = publisher.loan_uninit()?;
            }
            harness::done(&[]);
        }
        other => return Err(format!("unknown iceoryx2 role {other}").into()),
    }
    Ok(())
}
