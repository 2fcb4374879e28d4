//! `shmds watch` and `shmds hz`: figures of a segment's structures over
//! time, read through a read-only mapping (nothing is written, nothing
//! waits): fill levels, rates from the running totals (a queue's pushes and
//! pops, a channel's cells, a topic's messages), primitives' holders and
//! waiters, attached processes. The live view is a terminal UI (ratatui);
//! `--once` prints the same figures as text or JSON.

use serde_json::{json, Value};
use shmds::{human_type, EntryInfo, Segment};
use std::time::{Duration, Instant};

/// One entry's figures at one moment.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    /// The entry's generation: another one under the same name is another
    /// structure (its totals are not comparable).
    pub generation: u64,
    pub kind: &'static str,
    pub type_name: String,
    /// Elements (messages) held, where that applies.
    pub fill: Option<u64>,
    pub capacity: u64,
    /// Running totals `(in, out)`, where the kind has them.
    pub totals: Option<(u64, u64)>,
    /// A primitive's state ("held by 123", "3 of 5 permits free"), or a
    /// map's probe bounds.
    pub state: Option<String>,
    /// A map's or set's largest and mean probe bound.
    pub probe: Option<(u64, f64)>,
    /// Why its figures could not be read (erased, damaged).
    pub error: Option<String>,
}

/// A segment's figures at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub rows: Vec<Row>,
    pub attached: Vec<shmds::Attacher>,
    /// The name no longer names this segment (removed, or replaced).
    pub removed: bool,
}

fn type_of(e: &EntryInfo) -> String {
    match (e.key_type.as_str(), e.elem_type.as_str()) {
        ("", v) => human_type(v),
        (k, "") => human_type(k),
        (k, v) => format!("{} -> {}", human_type(k), human_type(v)),
    }
}

/// Read the figures of `seg`'s entries (all, or those named in `only`).
pub fn sample(seg: &Segment, only: &[String]) -> Result<Sample, String> {
    let entries = seg.entries().map_err(|e| e.to_string())?;
    for name in only {
        if !entries.iter().any(|e| &e.name == name) {
            return Err(format!("segment {:?} has no entry {name:?}", seg.name()));
        }
    }
    let rows = entries
        .iter()
        .filter(|e| only.is_empty() || only.contains(&e.name))
        .map(|e| {
            let fill = seg.inspect(e);
            let totals = seg.totals(e);
            let probe = seg.probe_bounds(e).ok().flatten();
            let state = seg.primitive_status(e).ok().flatten().map(|s| s.summary);
            let state = state.or_else(|| {
                probe.map(|(max, mean)| format!("probe bound {max} max, {mean:.2} mean"))
            });
            let error = fill
                .as_ref()
                .err()
                .or(totals.as_ref().err())
                .map(|e| e.to_string());
            Row {
                name: e.name.clone(),
                generation: e.generation,
                kind: e.kind_name(),
                type_name: type_of(e),
                fill: fill.ok().flatten(),
                capacity: e.capacity,
                totals: totals.ok().flatten(),
                state,
                probe,
                error,
            }
        })
        .collect();
    let status = shmds::segment_status(seg.name()).ok();
    Ok(Sample {
        at: Instant::now(),
        rows,
        attached: status.map(|s| s.attachers).unwrap_or_default(),
        removed: !shmds::list_segments()
            .map(|names| names.iter().any(|n| n == seg.name()))
            .unwrap_or(true),
    })
}

/// Per-second rates of `row` since `prev` (the same entry, earlier).
pub fn rates(prev: &Sample, now: &Sample, row: &Row) -> Option<(f64, f64)> {
    let dt = now.at.duration_since(prev.at).as_secs_f64();
    let old = prev.rows.iter().find(|r| r.name == row.name)?;
    if old.generation != row.generation {
        return None;
    }
    let (before, after) = (old.totals?, row.totals?);
    // Totals only grow (modulo 2^64): a step back is not a rate.
    if after.0.wrapping_sub(before.0) > u64::MAX / 2
        || after.1.wrapping_sub(before.1) > u64::MAX / 2
    {
        return None;
    }
    (dt > 0.0).then(|| {
        (
            after.0.wrapping_sub(before.0) as f64 / dt,
            after.1.wrapping_sub(before.1) as f64 / dt,
        )
    })
}

/// What one rate counts, for labels: queue items, channel cells, topic
/// messages.
pub fn unit(kind: &str) -> &'static str {
    match kind {
        "channel" => "cells",
        "topic" => "msgs",
        _ => "items",
    }
}

/// A fill bar of `width` characters.
pub fn bar(fill: u64, capacity: u64, width: usize) -> String {
    let full = if capacity == 0 {
        0
    } else {
        ((fill.min(capacity) as f64 / capacity as f64) * width as f64).round() as usize
    };
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

/// A rate as people read it: 950, 12.3k, 4.56M.
pub fn human_rate(r: f64) -> String {
    match r {
        r if r >= 1e9 => format!("{:.2}G", r / 1e9),
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

/// The figures as JSON: one object per entry, rates per second.
pub fn to_json(seg: &Segment, prev: &Sample, now: &Sample, interval: f64) -> Value {
    let entries: Vec<Value> = now
        .rows
        .iter()
        .map(|r| {
            let rate = rates(prev, now, r);
            json!({
                "name": r.name,
                "kind": r.kind,
                "type_name": r.type_name,
                "len": r.fill,
                "capacity": r.capacity,
                "fill_ratio": r.fill.filter(|_| r.capacity > 0).map(|f| f as f64 / r.capacity as f64),
                "in_per_s": rate.map(|x| x.0),
                "out_per_s": rate.map(|x| x.1),
                "rate_unit": rate.map(|_| unit(r.kind)),
                "totals": r.totals.map(|(i, o)| json!({"in": i, "out": o})),
                "probe_bound_max": r.probe.map(|p| p.0),
                "probe_bound_mean": r.probe.map(|p| p.1),
                "state": r.state,
                "error": r.error,
            })
        })
        .collect();
    json!({
        "segment": seg.name(),
        "interval_s": interval,
        "removed": now.removed,
        "attached": now.attached.iter().filter(|a| a.alive).map(|a| a.pid).collect::<Vec<_>>(),
        "entries": entries,
    })
}

/// A row's fill: a bar and `n/capacity` for the kinds that hold elements,
/// a message count for channels and topics.
pub fn fill_text(r: &Row, width: usize) -> Option<String> {
    match r.fill {
        Some(f) if matches!(r.kind, "queue" | "stack" | "map" | "set") => {
            Some(format!("{} {f}/{}", bar(f, r.capacity, width), r.capacity))
        }
        Some(f) if matches!(r.kind, "channel" | "topic") => Some(format!("{f} msgs")),
        _ => None,
    }
}

/// A row's rates since `prev`: `X in, Y out items/s` (a topic: `X msgs/s`).
pub fn rate_text(prev: &Sample, now: &Sample, r: &Row) -> Option<String> {
    rates(prev, now, r).map(|(i, o)| match r.kind {
        "topic" => format!("{} {}/s", human_rate(i), unit(r.kind)),
        _ => format!(
            "{} in, {} out {}/s",
            human_rate(i),
            human_rate(o),
            unit(r.kind)
        ),
    })
}

/// A row's state column: why it cannot be read, or a primitive's state.
pub fn state_text(r: &Row) -> String {
    r.error
        .clone()
        .or_else(|| r.state.clone())
        .unwrap_or_default()
}

/// The figures as lines of text (`--once`).
pub fn to_lines(prev: &Sample, now: &Sample) -> Vec<[String; 6]> {
    now.rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.kind.to_owned(),
                r.type_name.clone(),
                fill_text(r, 10).unwrap_or_else(|| "-".into()),
                rate_text(prev, now, r).unwrap_or_else(|| "-".into()),
                state_text(r),
            ]
        })
        .collect()
}

fn print_table(rows: &[[String; 6]]) {
    let head = ["NAME", "KIND", "TYPE", "FILL", "RATE", "STATE"];
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (k, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if k == 5 {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    println!("{}", line(head));
    for row in rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
}

/// `shmds watch --once`: two samples `interval` apart, printed.
pub fn once(name: &str, only: &[String], interval: f64, as_json: bool) -> Result<(), String> {
    let seg = crate::inspect_options()
        .open(name)
        .map_err(|e| e.to_string())?;
    let first = sample(&seg, only)?;
    std::thread::sleep(Duration::from_secs_f64(interval));
    let second = sample(&seg, only)?;
    if as_json {
        println!("{}", to_json(&seg, &first, &second, interval));
    } else {
        let live = second.attached.iter().filter(|a| a.alive).count();
        println!(
            "segment {}: {} entries, {live} processes attached{}; rates over {interval} s",
            seg.name(),
            second.rows.len(),
            if second.removed { "; REMOVED" } else { "" }
        );
        print_table(&to_lines(&first, &second));
    }
    Ok(())
}

/// `shmds hz`: the rate of one entry over each window, `count` times (0:
/// until interrupted).
pub fn hz(name: &str, entry: &str, window: f64, count: u64, as_json: bool) -> Result<(), String> {
    let seg = crate::inspect_options()
        .open(name)
        .map_err(|e| e.to_string())?;
    let only = [entry.to_owned()];
    let mut prev = sample(&seg, &only)?;
    let kind = prev.rows[0].kind;
    if prev.rows[0].totals.is_none() {
        return Err(format!(
            "{entry:?} is a {kind}: hz measures queues (items), channels (cells) and topics \
             (messages)"
        ));
    }
    let mut done = 0;
    while count == 0 || done < count {
        std::thread::sleep(Duration::from_secs_f64(window));
        let now = sample(&seg, &only)?;
        let Some((i, o)) = rates(&prev, &now, &now.rows[0]) else {
            return Err(format!("{entry:?} has no figures now (erased?)"));
        };
        if as_json {
            println!(
                "{}",
                json!({"entry": entry, "kind": kind, "unit": unit(kind), "window_s": window,
                       "in_per_s": i, "out_per_s": o})
            );
        } else if kind == "topic" {
            println!("{entry}: {} {}/s", human_rate(i), unit(kind));
        } else {
            println!(
                "{entry}: {} in/s, {} out/s ({})",
                human_rate(i),
                human_rate(o),
                unit(kind)
            );
        }
        prev = now;
        done += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, generation: u64, totals: (u64, u64)) -> Sample {
        Sample {
            at,
            rows: vec![Row {
                name: "q".into(),
                generation,
                kind: "queue",
                type_name: "u64".into(),
                fill: Some(0),
                capacity: 4,
                totals: Some(totals),
                state: None,
                probe: None,
                error: None,
            }],
            attached: Vec::new(),
            removed: false,
        }
    }

    #[test]
    fn rates_only_between_samples_of_one_structure() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let (a, b) = (sample(t0, 2, (10, 4)), sample(t1, 2, (30, 14)));
        assert_eq!(rates(&a, &b, &b.rows[0]), Some((10.0, 5.0)));
        // Erased and made again under the same name: no rate.
        let c = sample(t1, 4, (30, 14));
        assert_eq!(rates(&a, &c, &c.rows[0]), None);
        // Totals that went back (another structure's, or damage): no rate.
        let d = sample(t1, 2, (5, 1));
        assert_eq!(rates(&a, &d, &d.rows[0]), None);
    }
}
