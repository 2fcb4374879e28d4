//! The shmds demo: a Rust producer, a Python consumer and a C reader share
//! one segment (an array, a queue and a map) at the same time; then
//! `shmds info` prints the segment's table with fill levels.
//!
//! Run with `make demo`. By hand: `cargo run --example demo` with
//! `SHMDS_PYTHON` naming a Python that has the `shmds` package installed and
//! `SHMDS_C_READER` naming the compiled examples/c/demo_reader.c (without
//! it, the demo runs without the C reader).

use shmds::{FixedStr, Segment};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: u64 = 1_000_000;

fn pid() -> u32 {
    std::process::id()
}

/// Find the `shmds` command: $SHMDS_CLI, next to this example, or on PATH.
fn shmds_command() -> Command {
    if let Ok(path) = std::env::var("SHMDS_CLI") {
        return Command::new(path);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(|d| d.to_owned()))
    {
        let candidate = dir.join("shmds");
        if candidate.exists() {
            return Command::new(candidate);
        }
    }
    Command::new("shmds")
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = Segment::remove(&self.0);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("shmds-demo-{}", pid());
    let seg = Segment::create(&name, 4 << 20)?;
    let _cleanup = RemoveOnDrop(name.clone());
    let readings = seg.create_array::<f64>("readings", 5)?;
    readings.write(0, &[20.5, 21.0, 19.75, 22.25, 20.0])?;
    let jobs = seg.create_queue::<u64>("jobs", 4096)?;
    let tally = seg.create_map::<FixedStr<16>, u64>("tally", 64)?;
    println!("[rust   {}] created segment {name:?}: array 'readings' (f64 x5), queue 'jobs' (u64, 4096), map 'tally' (str -> u64)", pid());

    let python = std::env::var("SHMDS_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo_consumer.py");
    let mut consumer = Command::new(&python)
        .args([script, &name, &JOBS.to_string()])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {python}: {e} (set SHMDS_PYTHON)"))?;

    let mut reader = match std::env::var("SHMDS_C_READER") {
        Ok(path) => Some(
            Command::new(&path)
                .arg(&name)
                .stdin(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {path}: {e}"))?,
        ),
        Err(_) => None,
    };
    // Give both a moment to attach, so the C reader sees the work happen.
    std::thread::sleep(Duration::from_millis(300));

    // Produce while the Python process consumes.
    let start = Instant::now();
    let batch: Vec<u64> = (0..1024).collect();
    let mut sent = 0;
    while sent < JOBS {
        let n = (JOBS - sent).min(1024) as usize;
        let chunk: Vec<u64> = batch[..n].iter().map(|i| sent + i).collect();
        sent += jobs.push_slice(&chunk, Some(Duration::from_secs(30)))? as u64;
        tally.fetch_add(&FixedStr::new("rust pushed")?, n as u64)?;
    }
    println!(
        "[rust   {}] pushed {JOBS} jobs in {:.2?}; the consumer takes them as they come",
        pid(),
        start.elapsed()
    );
    let status = consumer.wait()?;
    if !status.success() {
        return Err(format!("the Python consumer failed: {status}").into());
    }
    if let Some(reader) = reader.as_mut() {
        let status = reader.wait()?;
        if !status.success() {
            return Err(format!("the C reader failed: {status}").into());
        }
    }
    let popped = tally.get(&FixedStr::new("python popped")?)?.unwrap_or(0);
    let sum = tally.get(&FixedStr::new("python sum")?)?.unwrap_or(0);
    let expected = JOBS * (JOBS - 1) / 2;
    println!(
        "[rust   {}] the map says Python popped {popped} jobs summing to {sum} (expected {expected}); readings now {:?}",
        pid(),
        readings.to_vec()?
    );
    if popped != JOBS || sum != expected {
        return Err("the consumer's tally does not match what was pushed".into());
    }
    println!("\n$ shmds info {name}");
    let status = shmds_command().args(["info", &name]).status()?;
    if !status.success() {
        return Err("shmds info failed".into());
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
