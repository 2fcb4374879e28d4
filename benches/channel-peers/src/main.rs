//! Issue 13's Channel benchmarks: the shmds Channel and its peers in one
//! binary, so both sides are measured in one run.
//!
//! Figures (each a Markdown table row; machine and date above the table);
//! every shmds figure has two rows, `poll` (the `try_` calls polled with
//! `harness::Poll`, as the peers poll) and `block` (the blocking calls), see
//! `shmds_channel.rs`:
//! - 1 -> 1 throughput of 64-byte messages between two processes:
//!   iceoryx2 publish-subscribe (`iox.rs`) | shmds Channel SPSC
//! - 2 producers + 2 consumers, 64 B, four processes: shmds Channel MPMC
//!   (no peer: iceoryx2 has no MPMC pattern)
//! - one-way latency, ping-pong / 2, median and p99: iceoryx2 | shmds
//!   Channel SPSC
//! - 4 MiB messages: memcpy bandwidth in one process (`memcpy.rs`) | shmds
//!   Channel reserve/commit between two processes
//!
//! Run: `make bench-channel`, or
//! `cargo run --release --manifest-path benches/channel-peers/Cargo.toml -- [FILTER...]`
//! where FILTER words (`throughput`, `mpmc`, `latency`, `memcpy`) select
//! figures. Sizes, from the environment:
//! `CHANNEL_BENCH_MESSAGES` (64 B messages per throughput run, 5,000,000),
//! `CHANNEL_BENCH_ROUNDS` (measured round trips per latency run, 200,000;
//! plus 10,000 untimed), `CHANNEL_BENCH_RUNS` (runs per figure, 5),
//! `CHANNEL_BENCH_IOX_BUFFER` (iceoryx2 subscriber buffer, samples, 1024;
//! the shmds 64 B rings hold as many messages),
//! `CHANNEL_BENCH_BIG_MESSAGES` (4 MiB messages per shmds bandwidth run, 400),
//! `CHANNEL_BENCH_SPINS` / `CHANNEL_BENCH_LATENCY_SPINS` (empty polls spun
//! before yielding in throughput / latency loops, 128 / 65,536; see
//! `harness::Poll`), `CHANNEL_BENCH_PIN` (`latency`, the default: the
//! ping-pong sides are pinned to CPUs 0 and 1; `all`; `none`; see
//! `harness::pin_latency`).

mod harness;
mod iox;
mod memcpy;
mod shmds_channel;

use harness::{median, min_max};
use shmds_channel::Waiting;

/// Sizes of a run (from the environment, see the top of this file).
#[derive(Debug, Clone)]
pub struct Settings {
    pub messages: u64,
    pub rounds: u64,
    pub warmup: u64,
    pub runs: usize,
    pub iox_buffer: usize,
    pub big_messages: u64,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    match std::env::var(key) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v}: not a number")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            messages: env_or("CHANNEL_BENCH_MESSAGES", 5_000_000),
            rounds: env_or("CHANNEL_BENCH_ROUNDS", 200_000),
            warmup: 10_000,
            runs: env_or("CHANNEL_BENCH_RUNS", 5),
            iox_buffer: env_or("CHANNEL_BENCH_IOX_BUFFER", 1024),
            big_messages: env_or("CHANNEL_BENCH_BIG_MESSAGES", 400),
        }
    }
}

struct Row {
    figure: &'static str,
    implementation: String,
    value: String,
    range: String,
    notes: String,
}

fn rate_row(figure: &'static str, implementation: String, rates: &[f64], notes: String) -> Row {
    let (lo, hi) = min_max(rates);
    Row {
        figure,
        implementation,
        value: format!("{:.2} M msg/s", median(rates) / 1e6),
        range: format!("{:.2}–{:.2}", lo / 1e6, hi / 1e6),
        notes,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let role = args.get(1).expect("--child ROLE").clone();
        let rest = &args[2..];
        iceoryx2::prelude::set_log_level_from_env_or(iceoryx2::prelude::LogLevel::Error);
        let result = if role.starts_with("iox-") {
            // SAFETY: getppid has no preconditions. The orchestrator spawned
            // this child directly, so it is the parent; its pid names the
            // run's iceoryx2 files.
            let owner_pid = unsafe { libc::getppid() } as u32;
            iox::child(&role, rest, &iox::IoxFiles { owner_pid })
        } else {
            shmds_channel::child(&role, rest)
        };
        if let Err(e) = result {
            eprintln!("child {role}: {e}");
            std::process::exit(1);
        }
        return;
    }

    let want = |word: &str| args.is_empty() || args.iter().any(|a| word.contains(a.as_str()));
    let s = Settings::from_env();
    iceoryx2::prelude::set_log_level_from_env_or(iceoryx2::prelude::LogLevel::Error);
    let files = iox::IoxFiles {
        owner_pid: std::process::id(),
    };
    // Removes this run's iceoryx2 files also when a figure panics (after its
    // children were killed); a run killed by a signal is cleaned up by the
    // next run (remove_stale).
    struct Cleanup(iox::IoxFiles);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.0.remove();
        }
    }
    let _cleanup = Cleanup(files.clone());
    for f in iox::IoxFiles::remove_stale() {
        eprintln!("removed a leftover of an earlier (killed) run: {f}");
    }
    eprintln!(
        "# channel peers: {s:?}; spins before yield: throughput {}, latency {}; pinned: {}",
        harness::Poll::throughput_spins(),
        harness::Poll::latency_spins(),
        harness::pin_mode()
    );

    let mut rows = Vec::new();
    // Each figure alternates the runs of the peer and of its shmds variants
    // (peer run 0, shmds poll run 0, shmds block run 0, peer run 1, ...), so
    // that all see the same load on a shared machine; medians and ranges are
    // over the runs.
    let pinned = |pin: bool| {
        if pin {
            "pinned (child i on CPU i mod CPUs)"
        } else {
            "not pinned"
        }
    };

    // --- 1 -> 1 throughput, 64 B
    if want("throughput spsc") {
        let fig = "1 → 1 throughput, 64 B messages, 2 processes";
        eprintln!(
            "1 -> 1 throughput, {} messages x {} runs ...",
            s.messages, s.runs
        );
        let mut iox_rates = Vec::new();
        let mut shmds_rates = [Vec::new(), Vec::new()];
        let mut shmds_errors = [0u64; 2];
        let (mut dropped, mut undelivered) = (0, 0);
        for run in 0..s.runs {
            let t = iox::throughput(&files, run, s.messages, s.iox_buffer);
            files.remove();
            let t = t.expect("iceoryx2 throughput");
            eprintln!(
                "  run {run}: iceoryx2 {:.3} M msg/s (lost {}, re-sent {})",
                t.rate / 1e6,
                t.dropped,
                t.undelivered
            );
            iox_rates.push(t.rate);
            dropped += t.dropped;
            undelivered += t.undelivered;
            for (k, w) in Waiting::BOTH.into_iter().enumerate() {
                let t = shmds_channel::spsc_throughput(&s, run, w);
                eprintln!(
                    "  run {run}: shmds SPSC {} {:.3} M msg/s (sequence errors {})",
                    w.arg(),
                    t.rate / 1e6,
                    t.errors
                );
                shmds_rates[k].push(t.rate);
                shmds_errors[k] += t.errors;
            }
        }
        rows.push(rate_row(
            fig,
            format!(
                "iceoryx2 {} publish-subscribe (ipc; loan_uninit + write_payload + send; \
                 subscriber buffer {} samples, no safe overflow, RetryUntilDelivered)",
                env!("IOX2_VERSION"),
                s.iox_buffer
            ),
            &iox_rates,
            format!(
                "{} msgs per run; lost (sequence gaps) {dropped}; sends that reached no \
                 subscriber (re-sent) {undelivered}; subscriber polls (spin {}, then yield); \
                 {}",
                s.messages,
                harness::Poll::throughput_spins(),
                pinned(harness::pin_throughput())
            ),
        ));
        for (k, w) in Waiting::BOTH.into_iter().enumerate() {
            let ratio = median(&shmds_rates[k]) / median(&iox_rates);
            rows.push(rate_row(
                fig,
                format!(
                    "shmds Channel SPSC, {} (ring {} × 64 B)",
                    w.describe("send", "recv_ref"),
                    s.iox_buffer
                ),
                &shmds_rates[k],
                format!(
                    "**{ratio:.2}× iceoryx2** (goal ≥ 1.5× and ≥ 30 M msg/s); sequence errors {}; {}",
                    shmds_errors[k],
                    pinned(harness::pin_throughput())
                ),
            ));
        }
    }

    // --- MPMC 2 + 2, 64 B (no peer)
    if want("throughput mpmc") {
        let fig = "2 producers + 2 consumers, 64 B, 4 processes";
        eprintln!(
            "2 -> 2 throughput, {} messages x {} runs ...",
            s.messages / 2 * 2,
            s.runs
        );
        let mut rates = [Vec::new(), Vec::new()];
        let mut errors = [0u64; 2];
        for run in 0..s.runs {
            for (k, w) in Waiting::BOTH.into_iter().enumerate() {
                let t = shmds_channel::mpmc_throughput(&s, run, w);
                eprintln!(
                    "  run {run}: shmds MPMC {} {:.3} M msg/s (sequence errors {})",
                    w.arg(),
                    t.rate / 1e6,
                    t.errors
                );
                rates[k].push(t.rate);
                errors[k] += t.errors;
            }
        }
        for (k, w) in Waiting::BOTH.into_iter().enumerate() {
            rows.push(rate_row(
                fig,
                format!(
                    "shmds Channel MPMC, {} (ring {} × 64 B)",
                    w.describe("send", "recv_ref"),
                    s.iox_buffer
                ),
                &rates[k],
                format!(
                    "goal ≥ 10 M msg/s; no peer (iceoryx2 pub/sub is broadcast, not MPMC); \
                     {} msgs per run; sequence errors {}; {}",
                    s.messages / 2 * 2,
                    errors[k],
                    pinned(harness::pin_throughput())
                ),
            ));
        }
    }

    // --- ping-pong latency
    if want("latency") {
        let fig = "one-way latency (ping-pong / 2), 64 B, 2 processes";
        eprintln!("ping-pong, {} round trips x {} runs ...", s.rounds, s.runs);
        let mut iox_lat = Vec::new();
        let mut shmds_lat = [Vec::new(), Vec::new()];
        for run in 0..s.runs {
            let l = iox::latency(&files, run, s.rounds, s.warmup);
            files.remove();
            let l = l.expect("iceoryx2 latency");
            eprintln!(
                "  run {run}: iceoryx2 one-way median {:.0} ns, p99 {:.0} ns",
                l.0, l.1
            );
            iox_lat.push(l);
            for (k, w) in Waiting::BOTH.into_iter().enumerate() {
                let l = shmds_channel::latency(&s, run, w);
                eprintln!(
                    "  run {run}: shmds {} one-way median {:.0} ns, p99 {:.0} ns",
                    w.arg(),
                    l.0,
                    l.1
                );
                shmds_lat[k].push(l);
            }
        }
        let row = |implementation: String, v: &[(f64, f64)], notes: String| {
            let (m, p): (Vec<f64>, Vec<f64>) = v.iter().copied().unzip();
            let ((lo, hi), (plo, phi)) = (min_max(&m), min_max(&p));
            Row {
                figure: fig,
                implementation,
                value: format!("median {:.0} ns, p99 {:.0} ns", median(&m), median(&p)),
                range: format!("median {lo:.0}–{hi:.0}; p99 {plo:.0}–{phi:.0}"),
                notes,
            }
        };
        let iox_median = median(&iox_lat.iter().map(|l| l.0).collect::<Vec<_>>());
        rows.push(row(
            format!(
                "iceoryx2 {} publish-subscribe, two services (buffer 1), next sample loaned ahead",
                env!("IOX2_VERSION")
            ),
            &iox_lat,
            format!(
                "{} timed round trips per run (+{} untimed); both sides poll (spin {}, then \
                 yield); {}",
                s.rounds,
                s.warmup,
                harness::Poll::latency_spins(),
                pinned(harness::pin_latency())
            ),
        ));
        let iox_p99 = median(&iox_lat.iter().map(|l| l.1).collect::<Vec<_>>());
        for (k, w) in Waiting::BOTH.into_iter().enumerate() {
            let m = median(&shmds_lat[k].iter().map(|l| l.0).collect::<Vec<_>>());
            let p = median(&shmds_lat[k].iter().map(|l| l.1).collect::<Vec<_>>());
            rows.push(row(
                format!(
                    "shmds Channel SPSC, two channels, {}",
                    w.describe("send", "recv_ref")
                ),
                &shmds_lat[k],
                format!(
                    "**median {:.2}× iceoryx2's** (goal ≤ 1.0), p99 {:.2}×; {}",
                    m / iox_median,
                    p / iox_p99,
                    pinned(harness::pin_latency())
                ),
            ));
        }
    }

    // --- 4 MiB: memcpy reference
    if want("memcpy bandwidth 4mib") {
        let fig = "4 MiB messages, bandwidth";
        eprintln!("4 MiB: memcpy and reserve/commit, {} runs ...", s.runs);
        let (mut warm, mut cold) = (Vec::new(), Vec::new());
        let mut shmds_bw = [Vec::new(), Vec::new()];
        for run in 0..s.runs {
            // Two samples of 100 copies (warm) and one of 64 (cold) per run.
            warm.extend(memcpy::bandwidth(1, 100, 2));
            cold.extend(memcpy::bandwidth(32, 64, 1));
            for (k, w) in Waiting::BOTH.into_iter().enumerate() {
                let v = shmds_channel::reserve_commit_bandwidth(&s, run, w);
                eprintln!("  run {run}: shmds reserve/commit {} {v:.2} GB/s", w.arg());
                shmds_bw[k].push(v);
            }
        }
        eprintln!("  memcpy warm {warm:.2?}\n  memcpy cold {cold:.2?}");
        let gb = |v: &[f64]| {
            let (lo, hi) = min_max(v);
            (format!("{:.2} GB/s", median(v)), format!("{lo:.2}–{hi:.2}"))
        };
        let (value, range) = gb(&warm);
        rows.push(Row {
            figure: fig,
            implementation: "memcpy (glibc), one process, same 4 MiB src → dst \
                             (warm: 8 MiB in LLC) — the goal's reference"
                .into(),
            value,
            range,
            notes: format!("{} samples of 100 copies", warm.len()),
        });
        let (value, range) = gb(&cold);
        rows.push(Row {
            figure: fig,
            implementation: "memcpy (glibc), one process, 4 MiB copies over 32 + 32 \
                             buffers (256 MiB: from/to DRAM) — context"
                .into(),
            value,
            range,
            notes: format!("{} samples of 64 copies", cold.len()),
        });
        for (k, w) in Waiting::BOTH.into_iter().enumerate() {
            let (value, range) = gb(&shmds_bw[k]);
            rows.push(Row {
                figure: fig,
                implementation: format!(
                    "shmds Channel SPSC, 2 processes, ring {} × 4 MiB: reserve + memcpy in + \
                     commit; recv_ref + memcpy out; {}",
                    shmds_channel::BIG_SLOTS,
                    w.describe("reserve", "recv_ref")
                ),
                value,
                range,
                notes: format!(
                    "**{:.0} % of warm memcpy** (goal ≥ 50 %); {} msgs per run (+{} untimed); {}",
                    100.0 * median(&shmds_bw[k]) / median(&warm),
                    s.big_messages,
                    shmds_channel::BIG_SLOTS,
                    pinned(harness::pin_throughput())
                ),
            });
        }
    }

    let leftovers = files.remove();
    if !leftovers.is_empty() {
        eprintln!("removed: {leftovers:?}");
    }

    println!();
    println!("{}", machine_line());
    println!();
    println!("| figure | implementation | median of runs | range | notes |");
    println!("|---|---|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.figure, r.implementation, r.value, r.range, r.notes
        );
    }
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    let kernel = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| {
                std::ffi::CStr::from_ptr(f.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            };
            format!("{} {} {}", s(&u.sysname), s(&u.release), s(&u.machine))
        } else {
            "unknown kernel".into()
        }
    };
    format!(
        "Machine: {cpu}, {cores} CPUs, {kernel}; {}; iceoryx2 {}; release build; {} UTC",
        env!("RUSTC_VERSION"),
        env!("IOX2_VERSION"),
        utc_now()
    )
}

/// `YYYY-MM-DD HH:MM` in UTC, without a date crate.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}
