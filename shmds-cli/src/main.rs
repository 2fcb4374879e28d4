//! `shmds`: list, inspect, check and remove shmds segments.

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use shmds::{Segment, SegmentOptions};
use std::process::ExitCode;
use std::time::Duration;

/// Inspect and manage shmds shared memory segments (in /dev/shm).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List shmds segments with their size, bytes used and entry count.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's header and its table of entries.
    Info {
        /// Segment name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a segment.
    Rm {
        /// Segment names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even if it does not look like a shmds segment.
        #[arg(long)]
        force: bool,
    },
    /// Validate a segment completely; exit status 0 if sound, 1 if not.
    Check {
        /// Segment name.
        name: String,
    },
}

const SHM_DIR: &str = "/dev/shm";

fn inspect_options() -> SegmentOptions {
    Segment::options()
        .read_only(true)
        .open_timeout(Duration::from_millis(100))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn ls(as_json: bool) -> ExitCode {
    let names = match shmds::list_segments() {
        Ok(names) => names,
        Err(e) => {
            eprintln!("shmds: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows: Vec<Value> = names
        .iter()
        .map(|name| match inspect_options().open(name) {
            Ok(seg) => json!({
                "name": name,
                "size": seg.size(),
                "used": seg.used(),
                "entries": seg.entries().map(|e| e.len()).ok(),
                "creator_pid": seg.creator_pid(),
            }),
            Err(e) => json!({ "name": name, "error": e.to_string() }),
        })
        .collect();
    if as_json {
        println!("{}", Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<32} {:>10} {:>10} {:>7}",
        "NAME", "SIZE", "USED", "ENTRIES"
    );
    for row in rows {
        let name = row["name"].as_str().unwrap_or_default();
        if let Some(err) = row["error"].as_str() {
            println!("{name:<32} error: {err}");
            continue;
        }
        println!(
            "{:<32} {:>10} {:>10} {:>7}",
            name,
            human(row["size"].as_u64().unwrap_or(0)),
            human(row["used"].as_u64().unwrap_or(0)),
            row["entries"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or("?".into()),
        );
    }
    ExitCode::SUCCESS
}

fn info(name: &str, as_json: bool) -> ExitCode {
    let seg = match inspect_options().open(name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shmds: {e}");
            return ExitCode::FAILURE;
        }
    };
    let entries = match seg.entries() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shmds: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let fill = seg.inspect(e);
            json!({
                "name": e.name,
                "kind": e.kind_name(),
                "type": e.elem_type,
                "key_type": if e.key_type.is_empty() { Value::Null } else { json!(e.key_type) },
                "capacity": e.capacity,
                "bytes": e.size,
                "offset": e.offset,
                "fill": fill.as_ref().ok().copied().flatten(),
                "error": fill.err().map(|e| e.to_string()),
                "generation": e.generation,
                "creator_pid": e.creator_pid,
            })
        })
        .collect();
    if as_json {
        let doc = json!({
            "name": seg.name(),
            "size": seg.size(),
            "used": seg.used(),
            "available": seg.available(),
            "table_capacity": seg.table_capacity(),
            "creator_pid": seg.creator_pid(),
            "created_unix_ns": seg.created_unix_ns(),
            "format_version": shmds::layout::FORMAT_VERSION,
            "entries": rows,
        });
        println!("{doc}");
        return ExitCode::SUCCESS;
    }
    println!(
        "segment {}: {} total, {} used, {} free; table {}/{} entries; created by pid {}",
        seg.name(),
        human(seg.size()),
        human(seg.used()),
        human(seg.available()),
        entries.len(),
        seg.table_capacity(),
        seg.creator_pid()
    );
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let ty = match row["key_type"].as_str() {
                Some(k) => format!("{k} -> {}", row["type"].as_str().unwrap_or_default()),
                None => row["type"].as_str().unwrap_or_default().to_owned(),
            };
            let capacity = row["capacity"].as_u64().unwrap_or(0);
            let fill = match (row["fill"].as_u64(), row["error"].as_str()) {
                (_, Some(err)) => format!("error: {err}"),
                // Channels and topics hold messages of any size in a
                // capacity given in bytes: a count, not a ratio.
                (Some(n), None) if matches!(row["kind"].as_str(), Some("channel" | "topic")) => {
                    format!("{n} msg{}", if n == 1 { "" } else { "s" })
                }
                (Some(n), None) => format!("{n}/{capacity}"),
                (None, None) => "-".into(),
            };
            [
                row["name"].as_str().unwrap_or_default().to_owned(),
                row["kind"].as_str().unwrap_or_default().to_owned(),
                ty,
                capacity.to_string(),
                human(row["bytes"].as_u64().unwrap_or(0)),
                fill,
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "TYPE", "CAPACITY", "BYTES", "FILL"].map(String::from);
    let mut width = header.clone().map(|h| h.len());
    for r in &table {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&table) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {:>w5$}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
            w5 = width[5]
        );
    }
    ExitCode::SUCCESS
}

fn rm(names: &[String], force: bool) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for name in names {
        let bare = match shmds::validate_segment_name(name) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("shmds: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        if !force
            && std::path::Path::new(SHM_DIR).join(bare).exists()
            && !shmds::is_shmds_segment(bare)
        {
            eprintln!("shmds: {name:?} is not a shmds segment; use --force to remove it anyway");
            status = ExitCode::FAILURE;
            continue;
        }
        if let Err(e) = Segment::remove(name) {
            eprintln!("shmds: {e}");
            status = ExitCode::FAILURE;
        }
    }
    status
}

fn check(name: &str) -> ExitCode {
    let seg = match inspect_options().open(name) {
        Ok(s) => s,
        Err(e) => {
            println!("{name}: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = seg.check();
    if report.is_ok() {
        println!("{name}: ok ({} entries)", report.entries);
        ExitCode::SUCCESS
    } else {
        println!("{name}: FAILED ({} problems)", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ls { json } => ls(json),
        Command::Info { name, json } => info(&name, json),
        Command::Rm { names, force } => rm(&names, force),
        Command::Check { name } => check(&name),
    }
}
