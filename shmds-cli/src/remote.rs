//! The commands on remote segments: `shmds ls redis://…`, `shmds info
//! redis://… NAME` and `shmds bridge`, which forwards a local queue or
//! stack to a remote one (or back) so local processes keep shared-memory
//! speed while other machines consume.

use crate::data::{Outcome, Result};
use serde_json::{json, Value};
use shmds::remote;
use std::time::{Duration, Instant};

/// Whether `s` is a Redis URL rather than a segment name.
pub fn is_url(s: &str) -> bool {
    s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("redis+unix://")
}

fn err(e: shmds::Error) -> String {
    e.to_string()
}

/// `shmds ls URL`: the remote segments on the server.
pub fn ls(url: &str, as_json: bool) -> Result<Outcome> {
    let names = remote::list_segments(url).map_err(err)?;
    let mut rows = Vec::new();
    for name in &names {
        let seg = remote::Segment::connect(url, name).map_err(err)?;
        let entries = seg.entries().map_err(err)?;
        rows.push(json!({"name": name, "entries": entries.len()}));
    }
    if as_json {
        println!("{}", Value::Array(rows));
        return Ok(Outcome::Done);
    }
    println!("{:<40} {:>7}", "NAME", "ENTRIES");
    for row in rows {
        println!(
            "{:<40} {:>7}",
            row["name"].as_str().unwrap_or_default(),
            row["entries"]
        );
    }
    Ok(Outcome::Done)
}

/// `shmds info URL NAME`: the entries of a remote segment with their fill.
pub fn info(url: &str, name: &str, as_json: bool) -> Result<Outcome> {
    if !remote::list_segments(url)
        .map_err(err)?
        .iter()
        .any(|n| n == name)
    {
        return Err(format!(
            "no remote segment {name:?} at {url} (list them with `shmds ls {url}`)"
        ));
    }
    let seg = remote::Segment::connect(url, name).map_err(err)?;
    let latency = seg.ping().map_err(err)?;
    let mut rows = Vec::new();
    for e in seg.entries().map_err(err)? {
        let (fill, in_flight) = match e.kind {
            "queue" => {
                let q = seg.open_queue_raw(&e.name).map_err(err)?;
                (
                    Some(q.len().map_err(err)?),
                    Some(q.in_flight().map_err(err)?),
                )
            }
            "stack" => {
                let q = seg.open_stack_raw(&e.name).map_err(err)?;
                (
                    Some(q.len().map_err(err)?),
                    Some(q.in_flight().map_err(err)?),
                )
            }
            "map" => (
                Some(seg.open_map_raw(&e.name).map_err(err)?.len().map_err(err)?),
                None,
            ),
            _ => (None, None),
        };
        rows.push(json!({
            "name": e.name,
            "kind": e.kind,
            "type": e.elem_type,
            "key_type": e.key_type,
            "capacity": e.capacity,
            "fill": fill,
            "in_flight": in_flight,
        }));
    }
    if as_json {
        let out = json!({
            "name": name,
            "url": seg.url(),
            "format": remote::FORMAT,
            "round_trip_us": latency.as_micros() as u64,
            "entries": rows,
        });
        println!("{out}");
        return Ok(Outcome::Done);
    }
    println!(
        "remote segment {name:?} at {} ({})",
        seg.url(),
        remote::FORMAT
    );
    println!("round trip: {} us", latency.as_micros());
    println!(
        "{:<24} {:<6} {:<28} {:>10} {:>10}",
        "NAME", "KIND", "TYPE", "CAPACITY", "FILL"
    );
    for r in rows {
        let ty = match r["key_type"].as_str() {
            Some(k) if !k.is_empty() => format!(
                "{} -> {}",
                shmds::human_type(k),
                shmds::human_type(r["type"].as_str().unwrap_or_default())
            ),
            _ => shmds::human_type(r["type"].as_str().unwrap_or_default()),
        };
        let fill = match (r["fill"].as_u64(), r["in_flight"].as_u64()) {
            (Some(f), Some(i)) if i > 0 => format!("{f} (+{i} taken)"),
            (Some(f), _) => f.to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<24} {:<6} {:<28} {:>10} {:>10}",
            r["name"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            ty,
            r["capacity"],
            fill
        );
    }
    Ok(Outcome::Done)
}

/// What `shmds bridge` was asked to do.
pub struct Bridge<'a> {
    pub segment: &'a str,
    pub entry: &'a str,
    pub url: &'a str,
    /// The remote segment name (default: the local one).
    pub remote_segment: Option<&'a str>,
    /// The remote entry name (default: the local one).
    pub remote_entry: Option<&'a str>,
    /// Forward remote → local instead.
    pub from_remote: bool,
    /// Stop after this many elements.
    pub count: Option<u64>,
    /// Elements per batch.
    pub batch: usize,
}

/// One end of a bridge, local or remote.
enum End {
    Local(shmds::RawQueue),
    LocalStack(shmds::RawStack),
    Remote(remote::RawQueue),
}

/// `shmds bridge`: forward elements from one end to the other until
/// `count` (or forever). Local → remote: a batch popped locally is pushed
/// remotely, retried while the server is unavailable (a retry after a lost
/// reply may deliver a batch twice; a bridge killed loses at most the one
/// batch in its hands). Remote → local: elements are taken at least once
/// and acknowledged only once pushed locally.
pub fn bridge(b: Bridge<'_>) -> Result<Outcome> {
    let local = shmds::Segment::open(b.segment).map_err(err)?;
    let info = local
        .entries()
        .map_err(err)?
        .into_iter()
        .find(|e| e.name == b.entry)
        .ok_or_else(|| format!("no entry {:?} in segment {:?}", b.entry, b.segment))?;
    let (local_end, kind) = match info.kind_name() {
        "queue" => (
            End::Local(local.open_queue_raw(b.entry).map_err(err)?),
            "queue",
        ),
        "stack" => (
            End::LocalStack(local.open_stack_raw(b.entry).map_err(err)?),
            "stack",
        ),
        "channel" => return bridge_channel(&b, &local),
        other => {
            return Err(format!(
                "{:?} is a {other}: a bridge forwards queues, stacks and channels",
                b.entry
            ))
        }
    };
    let remote_seg =
        remote::Segment::connect(b.url, b.remote_segment.unwrap_or(b.segment)).map_err(err)?;
    let remote_name = b.remote_entry.unwrap_or(b.entry);
    let capacity = info.capacity as usize;
    let remote_end = End::Remote(
        match kind {
            "queue" => remote_seg.open_or_create_queue_raw(remote_name, &info.elem_type, capacity),
            _ => remote_seg.open_or_create_stack_raw(remote_name, &info.elem_type, capacity),
        }
        .map_err(err)?,
    );
    let size = info.elem_size as usize;
    let batch = b.batch.clamp(1, 1000);
    let mut moved = 0u64;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let wait = Some(Duration::from_millis(200));
    let left = |moved: u64| {
        b.count
            .map_or(batch, |c| (c - moved).min(batch as u64) as usize)
    };
    while b.count.is_none_or(|c| moved < c) {
        let n = left(moved);
        if b.from_remote {
            let End::Remote(r) = &remote_end else {
                unreachable!()
            };
            let d = match r.take_bytes(wait) {
                Ok(d) => d,
                Err(shmds::Error::Timeout { .. }) => continue,
                Err(e @ shmds::Error::Unavailable { .. }) => {
                    eprintln!("shmds bridge: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => return Err(err(e)),
            };
            push_local(&local_end, d.value())?;
            // If the ack is lost the element comes back after the lease:
            // at least once.
            let _ = d.ack();
            moved += 1;
        } else {
            let got = pop_local(&local_end, n, size)?;
            if got.is_empty() {
                continue;
            }
            let End::Remote(r) = &remote_end else {
                unreachable!()
            };
            let mut sent = 0;
            while sent < got.len() {
                match r.push_bytes(&got[sent..], wait) {
                    Ok(k) => sent += k * size,
                    Err(e @ shmds::Error::Unavailable { .. }) => {
                        eprintln!("shmds bridge: {e}; retrying");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            moved += (got.len() / size) as u64;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let rate = moved as f64 / started.elapsed().as_secs_f64();
            eprintln!("shmds bridge: {moved} elements forwarded ({rate:.0}/s)");
        }
    }
    let rate = moved as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!("forwarded {moved} elements ({rate:.0}/s)");
    Ok(Outcome::Done)
}

/// `shmds bridge` for a channel: messages from a local channel to a
/// remote one of the same capacity in messages (created with the local
/// largest message), or back. Local → remote: a message received locally
/// is sent remotely, retried while the server is unavailable. Remote →
/// local: taken at least once, acknowledged once sent locally.
fn bridge_channel(b: &Bridge<'_>, local: &shmds::Segment) -> Result<Outcome> {
    let channel = local.open_channel(b.entry).map_err(err)?;
    let remote_seg =
        remote::Segment::connect(b.url, b.remote_segment.unwrap_or(b.segment)).map_err(err)?;
    let remote_name = b.remote_entry.unwrap_or(b.entry);
    let max = channel.max_message() as usize;
    let remote_ch = remote_seg
        .open_or_create_channel(remote_name, 1 << 16, max)
        .map_err(err)?;
    let slice = Duration::from_millis(200);
    let started = Instant::now();
    let mut moved = 0u64;
    let retry = |e: shmds::Error| -> Result<()> {
        match e {
            shmds::Error::Unavailable { .. } => {
                eprintln!("shmds bridge: {e}; retrying");
                std::thread::sleep(slice);
                Ok(())
            }
            e => Err(err(e)),
        }
    };
    if b.from_remote {
        let mut tx = channel.sender().map_err(err)?;
        while b.count.is_none_or(|c| moved < c) {
            let d = match remote_ch.take(Some(slice)) {
                Ok(d) => d,
                Err(shmds::Error::Timeout { .. }) => continue,
                Err(e) => {
                    retry(e)?;
                    continue;
                }
            };
            tx.send(d.message()).map_err(err)?;
            let _ = d.ack(); // lost: the message comes back after the lease
            moved += 1;
        }
    } else {
        let mut rx = channel.receiver().map_err(err)?;
        let mut buf = Vec::new();
        while b.count.is_none_or(|c| moved < c) {
            match rx.recv_timeout(&mut buf, slice) {
                Ok(_) => {}
                Err(shmds::Error::Timeout { .. }) => continue,
                Err(e) => return Err(err(e)),
            }
            loop {
                match remote_ch.send(&buf, Some(slice)) {
                    Ok(()) => break,
                    Err(shmds::Error::Timeout { .. }) => {}
                    Err(e) => retry(e)?,
                }
            }
            moved += 1;
        }
    }
    let rate = moved as f64 / started.elapsed().as_secs_f64().max(1e-9);
    println!("forwarded {moved} messages ({rate:.0}/s)");
    Ok(Outcome::Done)
}

fn pop_local(end: &End, n: usize, size: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n * size];
    let wait = Some(Duration::from_millis(200));
    let got = match end {
        End::Local(q) => q.pop_into(&mut buf, wait, None),
        End::LocalStack(s) => s.pop_into(&mut buf, wait, None),
        End::Remote(_) => unreachable!(),
    };
    match got {
        Ok(k) => {
            buf.truncate(k * size);
            Ok(buf)
        }
        Err(shmds::Error::Timeout { .. }) => Ok(Vec::new()),
        Err(e) => Err(err(e)),
    }
}

fn push_local(end: &End, bytes: &[u8]) -> Result<()> {
    let r = match end {
        End::Local(q) => q.push_slice(bytes, None, None),
        End::LocalStack(s) => s.push_slice(bytes, None, None),
        End::Remote(_) => unreachable!(),
    };
    r.map(|_| ()).map_err(err)
}
