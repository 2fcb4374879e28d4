//! `shmds`: list, inspect, check and remove shmds segments.

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use shmds::{Segment, SegmentOptions};
use std::process::ExitCode;
use std::time::Duration;

use shmds::human_type;

mod data;
mod remote;
mod snap;
mod tui;
mod value;
mod watch;

/// Inspect and manage shmds shared memory segments (in /dev/shm).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List shmds segments with their size, bytes used, entry count,
    /// live attached processes, whether the creator is alive, and flags
    /// (temporary, abandoned: no live process attached).
    ///
    /// With a Redis URL (`shmds ls redis://host:6379/0`): the remote
    /// segments on that server and their entry counts.
    Ls {
        /// A Redis URL, to list the remote segments there.
        url: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's header and its table of entries.
    ///
    /// With a Redis URL first (`shmds info redis://host:6379/0 jobs`): the
    /// remote segment's entries, their fill and the round trip.
    Info {
        /// Segment name (or a Redis URL, then the remote segment's name).
        name: String,
        /// The remote segment's name, after a Redis URL.
        remote: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Forward a local queue, stack or channel to a remote one on Redis
    /// (created with the same type and capacity if missing), or with
    /// --from-remote the other way, so local processes keep shared-memory speed while
    /// other machines consume. Runs until --count elements have passed, or
    /// forever.
    ///
    /// Example: `shmds bridge demo jobs redis://10.0.0.5:6379/0`.
    Bridge {
        /// Local segment name.
        segment: String,
        /// Entry name (a queue, a stack or a channel).
        entry: String,
        /// Redis URL.
        url: String,
        /// Remote segment name (default: the local one).
        #[arg(long)]
        remote_segment: Option<String>,
        /// Remote entry name (default: the local one).
        #[arg(long)]
        remote_entry: Option<String>,
        /// Forward remote → local (elements taken at least once, acknowledged
        /// once pushed locally).
        #[arg(long)]
        from_remote: bool,
        /// Stop after this many elements.
        #[arg(long)]
        count: Option<u64>,
        /// Elements per batch (1 to 1000).
        #[arg(long, default_value_t = 256)]
        batch: usize,
    },
    /// Remove segments, or (--abandoned) those no live process is attached to.
    Rm {
        /// Segment names (with --abandoned: remove only those of them that
        /// are abandoned).
        #[arg(required_unless_present = "abandoned")]
        names: Vec<String>,
        /// Remove even if it does not look like a shmds segment.
        #[arg(long, conflicts_with = "abandoned")]
        force: bool,
        /// Remove every abandoned segment (no live process attached; never
        /// one this shmds cannot read), and print the names removed.
        #[arg(long)]
        abandoned: bool,
    },
    /// Validate a segment completely; exit status 0 if sound, 1 if not.
    Check {
        /// Segment name.
        name: String,
        /// Print JSON: `{"name", "ok", "entries", "problems"}`.
        #[arg(long)]
        json: bool,
    },
    /// Print an array element, a map's value or whether a set holds a key,
    /// decoded by the entry's type. Exit status 1 if the key is absent.
    ///
    /// Example: `shmds get demo prices AAPL`, `shmds get demo ticks 3 --json`.
    Get {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// Array index, or map/set key (JSON, or the text of a string key).
        key: String,
        /// Print JSON (a string keeps its quotes).
        #[arg(long)]
        json: bool,
    },
    /// Set an array element or a map's value, or add a key to a set;
    /// values are JSON (records as objects), or text for string types.
    ///
    /// Example: `shmds set demo prices AAPL 190.25`,
    /// `shmds set demo ticks 0 '{"ts": 1, "price": 2.5}'`, `shmds set demo seen 42`.
    Set {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// Array index, or map/set key.
        key: String,
        /// The value (not for a set).
        value: Option<String>,
    },
    /// Push values onto a queue or a stack, in order. Exit status 1 if it
    /// is full (not every value was pushed).
    ///
    /// Example: `shmds push demo jobs 1 2 3`.
    Push {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// Values (JSON, or text for string types).
        #[arg(required = true)]
        values: Vec<String>,
        /// Wait up to this many seconds for room (default: do not wait).
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Pop values off a queue or a stack and print them, one per line.
    /// Exit status 1 if there was none.
    ///
    /// Example: `shmds pop demo jobs -n 10 --timeout 1`.
    Pop {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// How many at most.
        #[arg(short, default_value_t = 1)]
        n: usize,
        /// Wait up to this many seconds for the first (default: do not wait).
        #[arg(long)]
        timeout: Option<f64>,
        /// Print JSON values.
        #[arg(long)]
        json: bool,
    },
    /// Send a message into a channel, or publish it to a topic (the
    /// argument's bytes, or standard input's). Exit status 1 if a channel
    /// has no room.
    ///
    /// Example: `shmds send demo events 'hello'`, `date | shmds send demo events`.
    Send {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// The message (default: read standard input).
        message: Option<String>,
        /// Wait up to this many seconds for room (default: do not wait).
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Receive messages from a channel (taking them), or the next ones
    /// published to a topic, and print them. Exit status 1 if none came.
    ///
    /// Example: `shmds recv demo events -n 5 --timeout 2`.
    Recv {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// How many at most.
        #[arg(short, default_value_t = 1)]
        n: usize,
        /// Wait up to this many seconds for each (default: do not wait).
        #[arg(long)]
        timeout: Option<f64>,
        /// Print the bytes as hex.
        #[arg(long)]
        hex: bool,
        /// Print each message as JSON (its length and escaped bytes).
        #[arg(long)]
        json: bool,
    },
    /// Print a structure's contents decoded by its type, taking nothing:
    /// an array's elements, a queue's items (oldest first), a stack's (top
    /// first), a map's pairs, a set's keys, a channel's messages, a topic's
    /// newest messages.
    ///
    /// Example: `shmds dump demo prices --json`.
    Dump {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// Show at most this many items.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Watch a segment's structures live: fill levels, rates (a queue's
    /// pushes and pops, a channel's cells, a topic's messages) with their
    /// history, lock holders and waiters, attached processes. Reads through
    /// a read-only mapping: it writes nothing and never waits on the
    /// structures. `--once` prints the same figures as text (or `--json`)
    /// for scripts.
    ///
    /// Example: `shmds watch demo`, `shmds watch demo jobs --once --json`.
    Watch {
        /// Segment name.
        name: String,
        /// Only these entries (default: all).
        entries: Vec<String>,
        /// Print the figures once (rates over --interval) and exit.
        #[arg(long)]
        once: bool,
        /// With --once: print JSON.
        #[arg(long, requires = "once")]
        json: bool,
        /// Seconds between refreshes (with --once: the window of the rates).
        #[arg(long, default_value_t = 0.25)]
        interval: f64,
    },
    /// Print the rate of one queue (items), channel (cells) or topic
    /// (messages) over each window, like `iox2 service hz`.
    ///
    /// Example: `shmds hz demo jobs --window 0.5 --count 4`.
    Hz {
        /// Segment name.
        name: String,
        /// Entry name.
        entry: String,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 1.0)]
        window: f64,
        /// Stop after this many lines (default: run until interrupted).
        #[arg(long, default_value_t = 0)]
        count: u64,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent snapshot of a segment into a snapshot store (a
    /// directory, made if missing): 64 KiB chunks stored once by their
    /// BLAKE3 hash, and a manifest named by its root hash, which is printed.
    /// The segment's processes are paused while its bytes are copied.
    ///
    /// Example: `shmds snapshot demo /var/backups/shmds`.
    Snapshot {
        /// Segment name (or a durable segment's path).
        name: String,
        /// Store directory.
        store: String,
        /// Print JSON (id, sizes, new chunks and bytes, pause time).
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot as a new segment (a /dev/shm name, or a file path
    /// for a durable segment); every chunk is re-hashed on the way.
    ///
    /// Example: `shmds restore /var/backups/shmds 3fa4c2 demo-copy`.
    Restore {
        /// Store directory.
        store: String,
        /// Snapshot id, or a unique prefix of at least 4 hex digits.
        snapshot: String,
        /// Name of the new segment.
        new_name: String,
    },
    /// List the snapshots in a store: id, time, source, size and the bytes
    /// that no older snapshot shares.
    Snapshots {
        /// Store directory.
        store: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rehash a store's manifests and chunks (or one snapshot's) and report
    /// damage; exit status 1 if anything is damaged.
    Verify {
        /// Store directory.
        store: String,
        /// Only this snapshot.
        snapshot: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which entries differ between two snapshots (+ added, - removed,
    /// ~ changed, = unchanged).
    Diff {
        /// Store directory.
        store: String,
        /// The older snapshot.
        a: String,
        /// The newer snapshot.
        b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove one snapshot from a store (its chunks go with the next gc).
    Forget {
        /// Store directory.
        store: String,
        /// Snapshot id or prefix.
        snapshot: String,
    },
    /// Delete the chunks of a store that no snapshot uses.
    Gc {
        /// Store directory.
        store: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: `shmds completions bash > /etc/bash_completion.d/shmds`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

const SHM_DIR: &str = "/dev/shm";

pub(crate) fn inspect_options() -> SegmentOptions {
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

/// The JSON form of an attached process.
fn attacher_json(a: &shmds::Attacher) -> Value {
    json!({
        "pid": a.pid,
        "start_time": a.start_time,
        "handles": a.handles,
        "alive": a.alive,
    })
}

/// The lifetime fields of a segment's JSON row: whether it is temporary,
/// its live attached processes, its creator, whether it is abandoned.
fn lifetime_json(status: &shmds::SegmentStatus) -> Value {
    json!({
        "temporary": status.temporary,
        "attached": status.live_attachers(),
        "attachers": status.attachers.iter().map(attacher_json).collect::<Vec<_>>(),
        "overflow": status.overflow,
        "creator_alive": status.creator_alive,
        "abandoned": status.abandoned,
    })
}

/// Merge the object `extra` into the object `row`.
fn merged(mut row: Value, extra: Value) -> Value {
    if let (Some(row), Value::Object(extra)) = (row.as_object_mut(), extra) {
        row.extend(extra);
    }
    row
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
        .map(|name| {
            let opened = inspect_options().open(name);
            let status = shmds::segment_status(name);
            match (opened, status) {
                (Ok(seg), Ok(status)) => merged(
                    json!({
                        "name": name,
                        "size": seg.size(),
                        "used": seg.used(),
                        "entries": seg.entries().map(|e| e.len()).ok(),
                        "creator_pid": seg.creator_pid(),
                    }),
                    lifetime_json(&status),
                ),
                (Err(e), _) | (_, Err(e)) => json!({
                    "name": name,
                    "error": e.to_string(),
                    // Another format version (an older or newer shmds):
                    // nothing in it can be read, and it is never removed
                    // as abandoned.
                    "unknown": matches!(e, shmds::Error::Incompatible { .. }),
                }),
            }
        })
        .collect();
    if as_json {
        println!("{}", Value::Array(rows));
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<32} {:>10} {:>10} {:>7} {:>8} {:>7}  FLAGS",
        "NAME", "SIZE", "USED", "ENTRIES", "ATTACHED", "CREATOR"
    );
    for row in rows {
        let name = row["name"].as_str().unwrap_or_default();
        if let Some(err) = row["error"].as_str() {
            if row["unknown"].as_bool() == Some(true) {
                println!("{name:<32} unknown: {err}");
            } else {
                println!("{name:<32} error: {err}");
            }
            continue;
        }
        let mut flags = Vec::new();
        if row["temporary"].as_bool() == Some(true) {
            flags.push("temporary");
        }
        if row["abandoned"].as_bool() == Some(true) {
            flags.push("abandoned");
        }
        println!(
            "{:<32} {:>10} {:>10} {:>7} {:>8} {:>7}  {}",
            name,
            human(row["size"].as_u64().unwrap_or(0)),
            human(row["used"].as_u64().unwrap_or(0)),
            row["entries"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or("?".into()),
            row["attached"].as_u64().unwrap_or(0),
            if row["creator_alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "dead"
            },
            if flags.is_empty() {
                "-".to_owned()
            } else {
                flags.join(",")
            },
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
            let state = seg.primitive_status(e);
            json!({
                "name": e.name,
                "kind": e.kind_name(),
                "type": e.elem_type,
                "type_name": if e.elem_type.is_empty() { Value::Null } else { json!(human_type(&e.elem_type)) },
                "key_type": if e.key_type.is_empty() { Value::Null } else { json!(e.key_type) },
                "key_type_name": if e.key_type.is_empty() { Value::Null } else { json!(human_type(&e.key_type)) },
                "capacity": e.capacity,
                "bytes": e.size,
                "offset": e.offset,
                "fill": fill.as_ref().ok().copied().flatten(),
                "error": fill.err().map(|e| e.to_string()),
                "generation": e.generation,
                "creator_pid": e.creator_pid,
                "state": state_json(&state),
            })
        })
        .collect();
    // A read-only walk of every block header (it cannot take the
    // registration lock; a registration running meanwhile may show).
    let heap = seg.heap();
    let heap_json = match &heap {
        Ok(h) => json!({
            "size": h.size,
            "max_size": h.max_size,
            "heap_bytes": h.heap_bytes,
            "used_bytes": h.used_bytes,
            "free_bytes": h.free_bytes,
            "largest_free": h.largest_free,
            "used_blocks": h.used_blocks,
            "free_blocks": h.free_blocks,
            "fragmentation": h.fragmentation(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    if as_json {
        let doc = json!({
            "name": seg.name(),
            "size": seg.size(),
            "max_size": seg.max_size(),
            "used": seg.used(),
            "available": seg.available(),
            "heap": heap_json,
            "table_capacity": seg.table_capacity(),
            "creator_pid": seg.creator_pid(),
            "created_unix_ns": seg.created_unix_ns(),
            "format_version": shmds::layout::FORMAT_VERSION,
            "entries": rows,
        });
        let doc = match shmds::segment_status(seg.name()) {
            Ok(status) => merged(doc, lifetime_json(&status)),
            Err(_) => doc,
        };
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
    match &heap {
        Ok(h) => println!(
            "heap: {} used in {} blocks, {} free in {} blocks, largest free block {}, \
             fragmentation {:.0}%; grows up to {}",
            human(h.used_bytes),
            h.used_blocks,
            human(h.free_bytes),
            h.free_blocks,
            human(h.largest_free),
            h.fragmentation() * 100.0,
            human(h.max_size)
        ),
        Err(e) => println!("heap: damaged: {e}"),
    }
    print_lifetime(&seg);
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let ty = match (
                row["key_type"].as_str(),
                row["type"].as_str().unwrap_or_default(),
            ) {
                // A set: keys, no values.
                (Some(k), "") => human_type(k),
                (Some(k), v) => format!("{} -> {}", human_type(k), human_type(v)),
                (None, v) => human_type(v),
            };
            let capacity = row["capacity"].as_u64().unwrap_or(0);
            let fill = match (row["fill"].as_u64(), row["error"].as_str()) {
                // A coordination primitive: its state is listed below.
                _ if !row["state"].is_null() => "-".into(),
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
    print_states(&rows, width[0]);
    ExitCode::SUCCESS
}

/// The JSON form of a coordination primitive's state (`null` for a data
/// structure).
fn state_json(state: &shmds::Result<Option<shmds::PrimitiveStatus>>) -> Value {
    match state {
        Ok(None) => Value::Null,
        Ok(Some(s)) => json!({
            "kind": s.kind,
            "holder_pid": s.holder_pid,
            "holder_tid": s.holder_tid,
            "holder_alive": s.holder_alive,
            "waiters": s.waiters,
            "value": s.value,
            "owner_deaths": s.owner_deaths,
            "summary": s.summary,
        }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// One line per coordination primitive of `info`'s table: its name, kind
/// and state ("mutex  lock  held by pid 12 (thread 13), 2 waiting").
fn print_states(rows: &[Value], name_width: usize) {
    let states: Vec<(&str, &str, String)> = rows
        .iter()
        .filter(|row| !row["state"].is_null())
        .map(|row| {
            let state = &row["state"];
            let text = match state["error"].as_str() {
                Some(err) => format!("error: {err}"),
                None => state["summary"].as_str().unwrap_or_default().to_owned(),
            };
            (
                row["name"].as_str().unwrap_or_default(),
                row["kind"].as_str().unwrap_or_default(),
                text,
            )
        })
        .collect();
    if states.is_empty() {
        return;
    }
    let kind_width = states.iter().map(|s| s.1.len()).max().unwrap_or(0).max(4);
    println!("\n{:<name_width$}  {:<kind_width$}  STATE", "NAME", "KIND");
    for (name, kind, text) in states {
        println!("{name:<name_width$}  {kind:<kind_width$}  {text}");
    }
}

/// The lines of `info` about the segment's lifetime and attached processes.
fn print_lifetime(seg: &Segment) {
    let attachers = seg.attachers();
    let live =
        attachers.iter().filter(|a| a.alive).count() as u64 + u64::from(seg.attach_overflow());
    println!(
        "{}, creator {}; {live} process{} attached{}{}",
        if seg.is_temporary() {
            "temporary (removed when the last process detaches)"
        } else if seg.is_durable() {
            "durable (a file; sealed with checksums by the last close)"
        } else {
            "persistent"
        },
        if seg.creator_alive() { "alive" } else { "dead" },
        if live == 1 { "" } else { "es" },
        match seg.attach_overflow() {
            0 => String::new(),
            n => format!(" ({n} without a record)"),
        },
        if seg.is_abandoned() && !seg.is_durable() {
            "; abandoned (`shmds rm --abandoned` removes it)"
        } else {
            ""
        },
    );
    for a in &attachers {
        println!(
            "  pid {:<8} {} handle{}{}",
            a.pid,
            a.handles,
            if a.handles == 1 { "" } else { "s" },
            if a.alive { "" } else { " (dead)" }
        );
    }
}

/// `rm --abandoned`: every abandoned segment, or those of `names`; prints
/// the names removed.
fn rm_abandoned(names: &[String]) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    let mut fail = |e: shmds::Error| {
        eprintln!("shmds: {e}");
        status = ExitCode::FAILURE;
    };
    let mut removed = Vec::new();
    if names.is_empty() {
        match shmds::remove_abandoned() {
            Ok(names) => removed = names,
            Err(e) => fail(e),
        }
    }
    for name in names {
        match shmds::remove_if_abandoned(name) {
            Ok(true) => removed.push(name.clone()),
            Ok(false) => eprintln!("shmds: {name:?} has live processes attached; kept"),
            Err(e) => fail(e),
        }
    }
    for name in removed {
        println!("{name}");
    }
    status
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

fn check(name: &str, as_json: bool) -> ExitCode {
    let seg = match inspect_options().open(name) {
        Ok(s) => s,
        Err(e) => {
            if as_json {
                println!(
                    "{}",
                    json!({"name": name, "ok": false, "entries": null, "problems": [e.to_string()]})
                );
            } else {
                println!("{name}: FAILED: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let report = seg.check();
    if as_json {
        println!(
            "{}",
            json!({"name": name, "ok": report.is_ok(), "entries": report.entries,
                   "problems": report.problems})
        );
        return if report.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
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
        Command::Ls {
            url: Some(url),
            json,
        } => data::run(|| remote::ls(&url, json)),
        Command::Ls { url: None, json } => ls(json),
        Command::Info {
            name,
            remote: Some(seg),
            json,
        } if remote::is_url(&name) => data::run(|| remote::info(&name, &seg, json)),
        Command::Info {
            name, remote: None, ..
        } if remote::is_url(&name) => data::run(|| {
            Err(format!(
                "after {name} give the remote segment's name (`shmds ls {name}` lists them)"
            ))
        }),
        Command::Info { name, json, .. } => info(&name, json),
        Command::Bridge {
            segment,
            entry,
            url,
            remote_segment,
            remote_entry,
            from_remote,
            count,
            batch,
        } => data::run(|| {
            remote::bridge(remote::Bridge {
                segment: &segment,
                entry: &entry,
                url: &url,
                remote_segment: remote_segment.as_deref(),
                remote_entry: remote_entry.as_deref(),
                from_remote,
                count,
                batch,
            })
        }),
        Command::Rm {
            names,
            abandoned: true,
            ..
        } => rm_abandoned(&names),
        Command::Rm { names, force, .. } => rm(&names, force),
        Command::Check { name, json } => check(&name, json),
        Command::Get {
            name,
            entry,
            key,
            json,
        } => data::run(|| data::get(&name, &entry, &key, json)),
        Command::Set {
            name,
            entry,
            key,
            value,
        } => data::run(|| data::set(&name, &entry, &key, value.as_deref())),
        Command::Push {
            name,
            entry,
            values,
            timeout,
        } => data::run(|| data::push(&name, &entry, &values, timeout)),
        Command::Pop {
            name,
            entry,
            n,
            timeout,
            json,
        } => data::run(|| data::pop(&name, &entry, n, timeout, json)),
        Command::Send {
            name,
            entry,
            message,
            timeout,
        } => data::run(|| data::send(&name, &entry, message.as_deref(), timeout)),
        Command::Recv {
            name,
            entry,
            n,
            timeout,
            hex,
            json,
        } => data::run(|| data::recv(&name, &entry, n, timeout, hex, json)),
        Command::Dump {
            name,
            entry,
            limit,
            json,
        } => data::run(|| data::dump(&name, &entry, limit, json)),
        Command::Watch {
            name,
            entries,
            once,
            json,
            interval,
        } => {
            if !(interval.is_finite() && interval > 0.0 && interval <= 3600.0) {
                eprintln!("shmds: --interval must be a number of seconds above 0 and up to 3600");
                return ExitCode::from(2);
            }
            let done = if once {
                watch::once(&name, &entries, interval, json)
            } else {
                tui::run(&name, &entries, interval)
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shmds: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Hz {
            name,
            entry,
            window,
            count,
            json,
        } => {
            if !(window.is_finite() && window > 0.0 && window <= 3600.0) {
                eprintln!("shmds: --window must be a number of seconds above 0 and up to 3600");
                return ExitCode::from(2);
            }
            match watch::hz(&name, &entry, window, count, json) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shmds: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Snapshot { name, store, json } => {
            data::run(|| snap::snapshot(&name, &store, json))
        }
        Command::Restore {
            store,
            snapshot,
            new_name,
        } => data::run(|| snap::restore(&store, &snapshot, &new_name)),
        Command::Snapshots { store, json } => data::run(|| snap::list(&store, json)),
        Command::Verify {
            store,
            snapshot,
            json,
        } => data::run(|| snap::verify(&store, snapshot.as_deref(), json)),
        Command::Diff { store, a, b, json } => data::run(|| snap::diff(&store, &a, &b, json)),
        Command::Forget { store, snapshot } => data::run(|| snap::forget(&store, &snapshot)),
        Command::Gc { store } => data::run(|| snap::gc(&store)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shmds", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            ExitCode::SUCCESS
        }
    }
}
