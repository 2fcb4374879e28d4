//! Channel and topic across processes (not a test; `cargo bench -p shmds
//! --bench channel`). Prints one Markdown table row per figure. The peers
//! (iceoryx2, memcpy) are measured by `benches/channel-peers` in the same
//! session; compare ratios within one run.
//!
//! The binary re-runs itself as the child process (`SHMDS_BENCH_CHILD`).

use shmds::{ChannelOptions, Segment, TopicOptions};
use std::process::Command;
use std::time::{Duration, Instant};

const N: u64 = 5_000_000;
const BIG: usize = 4 << 20;
const BIG_N: u64 = 400;

fn child(kind: &str, seg: &str, arg: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env("SHMDS_BENCH_CHILD", kind)
        .env("SHMDS_BENCH_SEG", seg)
        .env("SHMDS_BENCH_ARG", arg.to_string())
        .spawn()
        .unwrap()
}

fn run_child(kind: &str) {
    let seg = Segment::open(&std::env::var("SHMDS_BENCH_SEG").unwrap()).unwrap();
    let arg: u64 = std::env::var("SHMDS_BENCH_ARG").unwrap().parse().unwrap();
    match kind {
        "send64" => {
            let mut tx = seg.open_channel("c").unwrap().sender().unwrap();
            let msg = [7u8; 64];
            for _ in 0..arg {
                tx.send(&msg).unwrap();
            }
        }
        "sendbig" => {
            let mut tx = seg.open_channel("big").unwrap().sender().unwrap();
            let src = vec![3u8; BIG];
            for _ in 0..arg {
                let mut r = tx.reserve(BIG).unwrap();
                r.copy_from_slice(&src);
                r.commit();
            }
        }
        "echo" => {
            let ping = seg.open_channel("ping").unwrap();
            let pong = seg.open_channel("pong").unwrap();
            let mut rx = ping.receiver().unwrap();
            let mut tx = pong.sender().unwrap();
            for _ in 0..arg {
                let m = rx.recv_ref().unwrap();
                tx.send(&m).unwrap();
            }
        }
        _ => panic!("unknown child {kind}"),
    }
}

fn main() {
    if let Ok(kind) = std::env::var("SHMDS_BENCH_CHILD") {
        run_child(&kind);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let name = format!("shmds-bench-channel-{}", std::process::id());
    let seg = Segment::create(&name, 96 << 20).unwrap();
    println!("| figure | shmds |\n|---|---:|");

    // SHMDS_BENCH_ONLY=spsc (or mpmc) runs the 1->1 throughput rows only.
    let only = std::env::var("SHMDS_BENCH_ONLY").ok();
    for (label, spsc, producers, consumers) in [
        ("SPSC 1→1, 64 B, processes", true, 1u64, 1u64),
        ("MPMC 1→1, 64 B, processes", false, 1, 1),
        ("MPMC 2→2, 64 B, processes", false, 2, 2),
    ] {
        match only.as_deref() {
            Some("spsc") if !spsc || producers > 1 => continue,
            Some("mpmc") if spsc || producers > 1 => continue,
            _ => {}
        }
        let _ = seg.erase("c");
        let ch = seg
            .create_channel("c", ChannelOptions::new(1 << 20).spsc(spsc))
            .unwrap();
        let per = N / producers;
        // Receivers: this process (1) or this process plus threads.
        let start = Instant::now();
        let mut kids: Vec<_> = (0..producers)
            .map(|_| child("send64", &name, per))
            .collect();
        let total = per * producers;
        // Each consumer stops at an empty message, sent once the producers
        // are done.
        std::thread::scope(|s| {
            for _ in 0..consumers {
                let mut rx = ch.receiver().unwrap();
                s.spawn(move || loop {
                    // The producers may all be gone before the stop message
                    // is sent: Disconnected ends the run too.
                    let Ok(m) = rx.recv_ref() else { break };
                    if m.is_empty() {
                        break;
                    }
                    std::hint::black_box(m[0]);
                });
            }
            s.spawn(|| {
                for k in &mut kids {
                    k.wait().unwrap();
                }
                let mut tx = ch.sender().unwrap();
                for _ in 0..consumers {
                    tx.send(&[]).unwrap();
                }
            });
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| {label} (consumers: {}) | {:.1} M msg/s |",
            if consumers == 1 {
                "this process"
            } else {
                "2 threads of this process"
            },
            total as f64 / secs / 1e6
        );
    }

    if only.is_some() {
        drop(seg);
        Segment::remove(&name).unwrap();
        return;
    }
    // Ping-pong latency.
    let ping = seg
        .create_channel("ping", ChannelOptions::new(4096).spsc(true))
        .unwrap();
    let pong = seg
        .create_channel("pong", ChannelOptions::new(4096).spsc(true))
        .unwrap();
    let rounds = 200_000u64;
    let mut tx = ping.sender().unwrap();
    let mut rx = pong.receiver().unwrap();
    let mut kid = child("echo", &name, rounds);
    let mut samples = Vec::with_capacity(rounds as usize);
    let msg = [1u8; 64];
    for _ in 0..rounds {
        let t = Instant::now();
        tx.send(&msg).unwrap();
        drop(rx.recv_ref().unwrap());
        samples.push(t.elapsed().as_nanos() as u64);
    }
    kid.wait().unwrap();
    samples.sort_unstable();
    println!(
        "| one-way latency (ping-pong / 2), 64 B, SPSC, processes | median {} ns, p99 {} ns |",
        samples[samples.len() / 2] / 2,
        samples[samples.len() * 99 / 100] / 2
    );

    // 4 MiB messages through reserve/commit, against memcpy in one process.
    let big = seg
        .create_channel("big", ChannelOptions::new(3 * BIG as u64).spsc(true))
        .unwrap();
    let mut rx = big.receiver().unwrap();
    let start = Instant::now();
    let mut kid = child("sendbig", &name, BIG_N);
    let mut sink = vec![0u8; BIG];
    for _ in 0..BIG_N {
        let m = rx.recv_ref().unwrap();
        sink.copy_from_slice(&m);
    }
    let secs = start.elapsed().as_secs_f64();
    kid.wait().unwrap();
    let src = vec![5u8; BIG];
    let mut dst = vec![0u8; BIG];
    let t = Instant::now();
    for _ in 0..BIG_N {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
    }
    let memcpy = (BIG_N as f64 * BIG as f64) / t.elapsed().as_secs_f64() / 1e9;
    let channel = (BIG_N as f64 * BIG as f64) / secs / 1e9;
    println!(
        "| 4 MiB messages, reserve/commit + copy out, processes | {channel:.2} GB/s ({:.0} % of memcpy's {memcpy:.2} GB/s in this run) |",
        100.0 * channel / memcpy
    );

    // Topic fan-out.
    for subs in [1usize, 4] {
        let _ = seg.erase("t");
        let topic = seg.create_topic("t", TopicOptions::new(1 << 20)).unwrap();
        let n = 2_000_000u64;
        let rates: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..subs)
                .map(|_| {
                    let mut sub = topic.subscribe();
                    s.spawn(move || {
                        let mut buf = Vec::new();
                        let t = Instant::now();
                        let mut got = 0u64;
                        while got < n {
                            match sub.recv_timeout(&mut buf, Duration::from_secs(2)) {
                                Ok(_) => got += 1,
                                Err(shmds::Error::Lagged { missed, .. }) => got += missed,
                                Err(_) => break,
                            }
                        }
                        got as f64 / t.elapsed().as_secs_f64()
                    })
                })
                .collect();
            let msg = [9u8; 64];
            for _ in 0..n {
                topic.publish(&msg).unwrap();
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mean = rates.iter().sum::<f64>() / rates.len() as f64;
        println!(
            "| topic, 64 B, {subs} subscriber thread(s), per subscriber | {:.1} M msg/s |",
            mean / 1e6
        );
    }
    drop(seg);
    Segment::remove(&name).unwrap();
}
