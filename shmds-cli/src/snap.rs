//! The snapshot commands: `snapshot`, `restore`, `snapshots`, `verify`,
//! `diff` and `gc`, over a content-addressed store directory
//! (`shmds::snapshot::Store`).
//!
//! Exit status: 0 when done (for `verify`: nothing damaged); 1 when
//! `verify` found damage; 2 for an error.

use crate::data::{Outcome, Result};
use serde_json::{json, Value};
use shmds::snapshot::{EntryChange, SnapshotEntry, SnapshotInfo, Store};

fn store(dir: &str) -> Result<Store> {
    Store::open(dir).map_err(|e| e.to_string())
}

fn when(ns: u64) -> String {
    // Seconds since the epoch, UTC, as YYYY-MM-DD HH:MM:SS.
    let secs = (ns / 1_000_000_000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
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
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn info_json(s: &SnapshotInfo) -> Value {
    json!({
        "id": s.id, "source": s.source, "created_unix_ns": s.created_unix_ns,
        "size": s.size, "entries": s.entries, "chunks": s.chunks,
        "distinct_chunks": s.distinct_chunks, "new_chunks": s.new_chunks,
        "new_bytes": s.new_bytes,
    })
}

/// `shmds snapshot NAME STORE`.
pub fn snapshot(name: &str, dir: &str, json: bool) -> Result<Outcome> {
    let seg = crate::inspect_options()
        .open(name)
        .map_err(|e| e.to_string())?;
    let store = store(dir)?;
    let started = std::time::Instant::now();
    let taken = seg.snapshot(&store).map_err(|e| e.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let mut v = info_json(&taken.info);
        v["paused_processes"] = json!(taken.paused_processes);
        v["paused_us"] = json!(taken.paused_for.as_micros() as u64);
        v["seconds"] = json!(seconds);
        println!("{v}");
    } else {
        println!("{}", taken.id);
        eprintln!(
            "{name}: {} in {} chunks, {} new ({}); {} processes paused for {:.1} ms; {:.2} s",
            crate::human(taken.size),
            taken.chunks,
            taken.new_chunks,
            crate::human(taken.new_bytes),
            taken.paused_processes,
            taken.paused_for.as_secs_f64() * 1e3,
            seconds
        );
    }
    Ok(Outcome::Done)
}

/// `shmds restore STORE SNAPSHOT NEWNAME`.
pub fn restore(dir: &str, id: &str, new_name: &str) -> Result<Outcome> {
    let store = store(dir)?;
    let seg = store.restore(id, new_name).map_err(|e| e.to_string())?;
    let report = seg.check();
    if !report.is_ok() {
        return Err(format!(
            "restored {new_name} but it does not check clean: {}",
            report.problems.join("; ")
        ));
    }
    eprintln!(
        "restored {} as {new_name} ({} entries)",
        store.resolve(id).unwrap_or_else(|_| id.to_owned()),
        report.entries
    );
    Ok(Outcome::Done)
}

/// `shmds snapshots STORE`.
pub fn list(dir: &str, json: bool) -> Result<Outcome> {
    let store = store(dir)?;
    let all = store.list().map_err(|e| e.to_string())?;
    if json {
        println!("{}", Value::Array(all.iter().map(info_json).collect()));
        return Ok(Outcome::Done);
    }
    println!(
        "{:<16} {:<19} {:<24} {:>10} {:>10} {:>8}",
        "ID", "TAKEN (UTC)", "SOURCE", "SIZE", "NEW", "ENTRIES"
    );
    for s in &all {
        println!(
            "{:<16} {:<19} {:<24} {:>10} {:>10} {:>8}",
            &s.id[..16.min(s.id.len())],
            when(s.created_unix_ns),
            s.source,
            crate::human(s.size),
            crate::human(s.new_bytes),
            s.entries
        );
    }
    Ok(Outcome::Done)
}

/// `shmds verify STORE [SNAPSHOT]`.
pub fn verify(dir: &str, id: Option<&str>, json: bool) -> Result<Outcome> {
    let store = store(dir)?;
    let report = store.verify(id).map_err(|e| e.to_string())?;
    if json {
        println!(
            "{}",
            json!({"ok": report.is_ok(), "snapshots": report.snapshots, "chunks": report.chunks,
                   "bytes": report.bytes, "problems": report.problems})
        );
    } else if report.is_ok() {
        println!(
            "{dir}: ok ({} snapshots, {} chunks, {} rehashed)",
            report.snapshots,
            report.chunks,
            crate::human(report.bytes)
        );
    } else {
        println!("{dir}: DAMAGED ({} problems)", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    Ok(if report.is_ok() {
        Outcome::Done
    } else {
        Outcome::Miss(format!("{} problems in {dir}", report.problems.len()))
    })
}

fn entry_json(e: &SnapshotEntry) -> Value {
    json!({"name": e.name, "kind": e.kind, "type": e.type_descriptor,
           "key_type": e.key_descriptor, "size": e.size})
}

/// `shmds diff STORE A B`.
pub fn diff(dir: &str, a: &str, b: &str, json: bool) -> Result<Outcome> {
    let store = store(dir)?;
    let changes = store.diff(a, b).map_err(|e| e.to_string())?;
    if json {
        let rows: Vec<Value> = changes
            .iter()
            .map(|c| match c {
                EntryChange::Added(e) => json!({"change": "added", "entry": entry_json(e)}),
                EntryChange::Removed(e) => json!({"change": "removed", "entry": entry_json(e)}),
                EntryChange::Changed { before, after } => json!({"change": "changed",
                    "before": entry_json(before), "after": entry_json(after)}),
                EntryChange::Unchanged(e) => json!({"change": "unchanged", "entry": entry_json(e)}),
            })
            .collect();
        println!("{}", Value::Array(rows));
        return Ok(Outcome::Done);
    }
    for c in &changes {
        let (mark, e, note) = match c {
            EntryChange::Added(e) => ("+", e, String::new()),
            EntryChange::Removed(e) => ("-", e, String::new()),
            EntryChange::Changed { before, after } => {
                let note = if before.kind != after.kind
                    || before.type_descriptor != after.type_descriptor
                    || before.key_descriptor != after.key_descriptor
                {
                    format!(" (was {} of {})", before.kind, before.type_descriptor)
                } else {
                    " (contents)".to_owned()
                };
                ("~", after, note)
            }
            EntryChange::Unchanged(e) => ("=", e, String::new()),
        };
        println!(
            "{mark} {:<24} {:<10} {}{note}",
            e.name,
            e.kind,
            shmds::human_type(&e.type_descriptor)
        );
    }
    Ok(Outcome::Done)
}

/// `shmds gc STORE`.
pub fn gc(dir: &str) -> Result<Outcome> {
    let store = store(dir)?;
    let report = store.gc().map_err(|e| e.to_string())?;
    println!(
        "{dir}: removed {} chunks ({}), kept {}",
        report.chunks_removed,
        crate::human(report.bytes_freed),
        report.chunks_kept
    );
    Ok(Outcome::Done)
}

/// `shmds forget STORE SNAPSHOT`: remove a snapshot's manifest (its chunks
/// go with the next `gc`).
pub fn forget(dir: &str, id: &str) -> Result<Outcome> {
    let store = store(dir)?;
    let full = store.resolve(id).map_err(|e| e.to_string())?;
    store.remove(&full).map_err(|e| e.to_string())?;
    eprintln!("forgot {full} (run `shmds gc {dir}` to free its chunks)");
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil() {
        assert_eq!(super::when(0), "1970-01-01 00:00:00");
        assert_eq!(
            super::when(1_764_633_600_000_000_000 + 3_723_000_000_000),
            "2025-12-02 01:02:03"
        );
    }
}
