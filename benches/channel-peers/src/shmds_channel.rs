//! PLACEHOLDERS for the shmds Channel side of issue 13's Performance goals.
//!
//! Not implemented: the Channel API has not landed yet. Each function below
//! is one figure of the table, in the same shape as its peer in `iox.rs` /
//! `memcpy.rs`, and returns `None` ("not measured") until it is filled in.
//! The harness (`harness.rs`) already gives what they need: `Proc::spawn`
//! re-executes this binary as a child with a role and arguments,
//! `harness::start_all(&mut procs, harness::pin_throughput())` (or
//! `pin_latency()` for ping-pong, as the peers do) starts every child of a
//! run together after all set-up and returns `t0`, and a child reports
//! `end_ns` etc. with `harness::done`. Child roles named `shmds-*` are routed to [`child`].
//!
//! Each function is ONE run (`run` = 0..settings.runs); `main` alternates
//! the runs of a peer and of its shmds variant (iceoryx2 run 0, shmds run 0,
//! iceoryx2 run 1, ...) so that both see the same load on this shared
//! machine. Use the same conditions as the peers (same message size and
//! count; poll the `try_` calls and wait between empty polls with
//! `harness::Poll`, as the peers do, or state what else), and put each
//! segment in a [`BenchSegment`] so that it is removed at the end of the
//! run.

#![allow(dead_code)] // until the Channel variants below are filled in

use crate::Settings;

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

// TODO(issue 13, shmds Channel SPSC 1 -> 1, 64-byte messages, messages/s):
// orchestrator creates a BenchSegment and an SPSC channel (capacity in bytes
// comparable to the iceoryx2 buffer: settings.iox_buffer messages of 64 B
// plus framing), spawns "shmds-spsc-consumer" then "shmds-spsc-producer"
// with (segment, channel, settings.messages); producer `send`s (or
// reserve/commit) 64-byte messages carrying a sequence number, the consumer
// receives every one (`recv_ref`, checking the sequence), reports end_ns and
// received; rate = received / (end_ns - t0). Goal: >= 1.5x iceoryx2's
// rate in the same run and >= 30 M messages/s.
pub fn spsc_throughput(_settings: &Settings, _run: usize) -> Option<f64> {
    None
}

// TODO(issue 13, shmds Channel MPMC, 2 producers + 2 consumers, 64 B):
// four child processes on one MPMC channel ("shmds-mpmc-producer" x2, each
// sending settings.messages / 2 messages tagged (producer, seq);
// "shmds-mpmc-consumer" x2). Consumers stop when the channel reports
// Disconnected after both producers detached and it is drained (or on a
// shared total); check per-producer FIFO order in each consumer; rate =
// sum(received) / (latest consumer end_ns - t0). Goal: >= 10 M messages/s.
// (iceoryx2 has no MPMC equivalent: publish-subscribe delivers every sample
// to every subscriber, so this row has no peer.)
pub fn mpmc_throughput(_settings: &Settings, _run: usize) -> Option<f64> {
    None
}

// TODO(issue 13, shmds Channel ping-pong latency, 64 B):
// two SPSC channels ("ping", "pong"), children "shmds-ping" / "shmds-pong"
// as in iox.rs: settings.warmup + settings.rounds round trips, timed per
// round trip with Instant; one-way = round trip / 2; report median_ns and
// p99_ns per run. Goal: median <= iceoryx2's in the same run.
pub fn latency(_settings: &Settings, _run: usize) -> Option<(f64, f64)> {
    None
}

// TODO(issue 13, shmds Channel 4 MiB messages via reserve/commit, GB/s):
// an SPSC channel of a few 4 MiB messages (e.g. capacity 4 x 4 MiB plus
// framing, max_message = 4 MiB); producer child: `reserve(4 MiB)`, fill it
// with one memcpy from a prepared 4 MiB source (the bytes must come from
// somewhere), `commit`; consumer child: `recv_ref`, read the message in place
// (e.g. memcpy it out into a 4 MiB buffer, or checksum it: say which), drop
// the guard. GB/s = messages * 4 MiB / (consumer end_ns - t0). Goal: >= 50 %
// of the warm memcpy figure (memcpy.rs) of the same run.
pub fn reserve_commit_bandwidth(_settings: &Settings, _run: usize) -> Option<f64> {
    None
}

/// Child roles `shmds-*` (see the TODOs above for each).
pub fn child(role: &str, _args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match role {
        "shmds-spsc-producer"
        | "shmds-spsc-consumer"
        | "shmds-mpmc-producer"
        | "shmds-mpmc-consumer"
        | "shmds-ping"
        | "shmds-pong"
        | "shmds-4mib-producer"
        | "shmds-4mib-consumer" => {
            Err(format!("{role}: the shmds Channel API has not landed yet (issue 13)").into())
        }
        other => Err(format!("unknown shmds role {other}").into()),
    }
}
