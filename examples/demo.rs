//! The shmds demo: two processes share arrays in one named segment.
//!
//! The parent creates the segment and two arrays, starts a second process
//! (this same program, with `child`), both write and read, and at the end
//! `shmds info` prints the segment's table.
//!
//! Run with `make demo` (or `cargo run --example demo`).

use shmds::Segment;
use std::process::Command;

const ROUNDS: u64 = 100_000;

fn child(name: &str) -> shmds::Result<()> {
    let seg = Segment::open(name)?;
    let readings = seg.open_array::<f64>("readings")?;
    let counters = seg.open_array::<u64>("counters")?;
    println!(
        "[child  {}] attached to {name:?}; readings = {:?}",
        std::process::id(),
        readings.to_vec()?
    );
    // Typed entries: asking for the wrong element type is refused.
    if let Err(e) = seg.open_array::<u32>("readings") {
        println!("[child  {}] as expected, {e}", std::process::id());
    }
    for i in 0..readings.len() {
        readings.set(i, readings.get(i)? * 10.0)?;
    }
    for _ in 0..ROUNDS {
        counters.fetch_add(0, 1)?;
    }
    counters.store(1, std::process::id() as u64)?;
    Ok(())
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

fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("shmds-demo-{}", std::process::id());
    let seg = Segment::create(&name, 1 << 20)?;
    let _cleanup = RemoveOnDrop(name.clone());
    let readings = seg.create_array::<f64>("readings", 5)?;
    readings.write(0, &[20.5, 21.0, 19.75, 22.25, 20.0])?;
    let counters = seg.create_array::<u64>("counters", 2)?;
    println!(
        "[parent {}] created {name:?} with arrays 'readings' (f64 x5) and 'counters' (u64 x2)",
        std::process::id()
    );

    let mut child = Command::new(std::env::current_exe()?)
        .args(["child", &name])
        .spawn()?;
    for _ in 0..ROUNDS {
        counters.fetch_add(0, 1)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    println!(
        "[parent {}] child {} is done; readings now {:?}",
        std::process::id(),
        counters.load(1)?,
        readings.to_vec()?
    );
    let total = counters.load(0)?;
    println!(
        "[parent {}] counter = {total} (2 processes x {ROUNDS} atomic increments)",
        std::process::id()
    );
    if total != 2 * ROUNDS {
        return Err("lost increments".into());
    }
    println!("\n$ shmds info {name}");
    let status = shmds_command().args(["info", &name]).status()?;
    if !status.success() {
        return Err("shmds info failed".into());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2]).map_err(|e| e.into())
    } else {
        parent()
    };
    if let Err(e) = result {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
