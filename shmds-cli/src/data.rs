//! The scripting commands: `get`, `set`, `push`, `pop`, `send`, `recv` and
//! `dump`, values printed and parsed by the entry's type (see `value`).
//!
//! Exit status: 0 when the command did what it says; 1 for a miss a script
//! tests for (an empty queue, a full one, an absent key, a timeout); 2 for
//! an error (no such segment or entry, a value that does not fit the type,
//! the wrong kind of structure).

use crate::value::{decode, encode, escaped, parse_arg};
use serde_json::{json, Value};
use shmds::{EntryInfo, Error, Segment, TypeShape};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// The outcome of a command: done, a miss (exit 1), or an error (exit 2).
pub enum Outcome {
    Done,
    Miss(String),
}

pub type Result<T> = std::result::Result<T, String>;

/// Run a command body and turn its outcome into an exit status.
pub fn run(body: impl FnOnce() -> Result<Outcome>) -> ExitCode {
    match body() {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Miss(why)) => {
            eprintln!("shmds: {why}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("shmds: {e}");
            ExitCode::from(2)
        }
    }
}

fn err(e: Error) -> String {
    e.to_string()
}

/// Open segment `name` for reading and writing (attaching this process).
pub fn open(name: &str) -> Result<Segment> {
    Segment::open(name).map_err(err)
}

/// The table entry `entry` of `seg`.
pub fn entry(seg: &Segment, entry: &str) -> Result<EntryInfo> {
    seg.entries()
        .map_err(err)?
        .into_iter()
        .find(|e| e.name == entry)
        .ok_or_else(|| {
            format!(
                "segment {:?} has no entry {entry:?} (see `shmds info {}`)",
                seg.name(),
                seg.name()
            )
        })
}

fn shape(d: &str) -> Result<TypeShape> {
    TypeShape::of(d).ok_or_else(|| format!("this shmds cannot read values of type {d:?}"))
}

fn wrong_kind(e: &EntryInfo, what: &str) -> String {
    format!("{:?} is a {}; {what}", e.name, e.kind_name())
}

fn timeout(secs: Option<f64>) -> Result<Option<Duration>> {
    secs.map(|s| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("timeout {s} is not a number of seconds"))
    })
    .transpose()
}

/// Print one value: JSON with `--json`, else JSON too, but a bare string
/// without its quotes (so `shmds get s prices AAPL` prints `189.5` and a
/// string prints as text).
fn print(value: &Value, as_json: bool) {
    match value {
        Value::String(s) if !as_json => println!("{s}"),
        v => println!("{v}"),
    }
}

fn index(text: &str, len: usize) -> Result<usize> {
    match text.parse::<usize>() {
        Ok(i) if i < len => Ok(i),
        Ok(i) => Err(format!("index {i} is out of range for length {len}")),
        Err(_) => Err(format!("{text:?} is not an index (0..{len})")),
    }
}

/// `shmds get`: an array element, a map's value, or whether a set holds a key.
pub fn get(seg: &str, name: &str, key: &str, as_json: bool) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    match e.kind_name() {
        "array" => {
            let a = seg.open_array_raw(name).map_err(err)?;
            let s = shape_sized(a.type_descriptor(), a.elem_size())?;
            let i = index(key, a.len())?;
            let mut buf = vec![0u8; a.elem_size()];
            a.read_bytes(i, &mut buf).map_err(err)?;
            print(&decode(&s, &buf), as_json);
            Ok(Outcome::Done)
        }
        "map" => {
            let m = seg.open_map_raw(name).map_err(err)?;
            let ks = shape_sized(m.key_type(), m.key_size())?;
            let vs = shape_sized(m.value_type(), m.value_size())?;
            let k = encode(&ks, &parse_arg(&ks, key)?)?;
            let mut out = vec![0u8; m.value_size()];
            if m.get(&k, &mut out).map_err(err)? {
                print(&decode(&vs, &out), as_json);
                Ok(Outcome::Done)
            } else {
                Ok(Outcome::Miss(format!("map {name:?} has no key {key}")))
            }
        }
        "set" => {
            let s = seg.open_set_raw(name).map_err(err)?;
            let ks = shape_sized(s.key_type(), s.key_size())?;
            let k = encode(&ks, &parse_arg(&ks, key)?)?;
            if s.contains(&k).map_err(err)? {
                println!("true");
                Ok(Outcome::Done)
            } else {
                println!("false");
                Ok(Outcome::Miss(format!("set {name:?} does not hold {key}")))
            }
        }
        _ => Err(wrong_kind(&e, "get reads arrays, maps and sets")),
    }
}

/// `shmds set`: an array element, a map's value, or a key into a set.
pub fn set(seg: &str, name: &str, key: &str, value: Option<&str>) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    match (e.kind_name(), value) {
        ("array", Some(v)) => {
            let a = seg.open_array_raw(name).map_err(err)?;
            let s = shape_sized(a.type_descriptor(), a.elem_size())?;
            let i = index(key, a.len())?;
            a.write_bytes(i, &encode(&s, &parse_arg(&s, v)?)?)
                .map_err(err)?;
            Ok(Outcome::Done)
        }
        ("map", Some(v)) => {
            let m = seg.open_map_raw(name).map_err(err)?;
            let (ks, vs) = (
                shape_sized(m.key_type(), m.key_size())?,
                shape_sized(m.value_type(), m.value_size())?,
            );
            let k = encode(&ks, &parse_arg(&ks, key)?)?;
            match m.insert(&k, &encode(&vs, &parse_arg(&vs, v)?)?, None) {
                Ok(_) => Ok(Outcome::Done),
                Err(Error::NoSpace { .. }) => Ok(Outcome::Miss(format!("map {name:?} is full"))),
                Err(e) => Err(err(e)),
            }
        }
        ("set", None) => {
            let s = seg.open_set_raw(name).map_err(err)?;
            let ks = shape_sized(s.key_type(), s.key_size())?;
            match s.insert(&encode(&ks, &parse_arg(&ks, key)?)?) {
                Ok(_) => Ok(Outcome::Done),
                Err(Error::NoSpace { .. }) => Ok(Outcome::Miss(format!("set {name:?} is full"))),
                Err(e) => Err(err(e)),
            }
        }
        ("array" | "map", None) => Err(format!("set {name:?} {key} needs a VALUE")),
        ("set", Some(_)) => Err(format!("{name:?} is a set: give only the KEY to add")),
        _ => Err(wrong_kind(&e, "set writes arrays, maps and sets")),
    }
}

/// A queue or a stack, opened by the kind its entry names.
enum Ring {
    Queue(shmds::RawQueue),
    Stack(shmds::RawStack),
}

impl Ring {
    fn open(seg: &Segment, e: &EntryInfo, what: &str) -> Result<Ring> {
        match e.kind_name() {
            "queue" => seg.open_queue_raw(&e.name).map(Ring::Queue).map_err(err),
            "stack" => seg.open_stack_raw(&e.name).map(Ring::Stack).map_err(err),
            _ => Err(wrong_kind(e, what)),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Ring::Queue(_) => "queue",
            Ring::Stack(_) => "stack",
        }
    }

    /// The element shape, from the open handle (not from an earlier read
    /// of the table, which another process may have changed since).
    fn shape(&self) -> Result<TypeShape> {
        let (d, size) = match self {
            Ring::Queue(q) => (q.type_descriptor(), q.elem_size()),
            Ring::Stack(s) => (s.type_descriptor(), s.elem_size()),
        };
        shape_sized(d, size)
    }

    fn capacity(&self) -> usize {
        match self {
            Ring::Queue(q) => q.capacity(),
            Ring::Stack(s) => s.capacity(),
        }
    }

    fn push(&self, bytes: &[u8], wait: Option<Duration>) -> shmds::Result<usize> {
        match (self, wait) {
            (Ring::Queue(q), None) => q.try_push_slice(bytes),
            (Ring::Queue(q), t) => q.push_slice(bytes, t, None),
            (Ring::Stack(s), None) => s.try_push_slice(bytes),
            (Ring::Stack(s), t) => s.push_slice(bytes, t, None),
        }
    }

    fn pop(&self, out: &mut [u8], wait: Option<Duration>) -> shmds::Result<usize> {
        match (self, wait) {
            (Ring::Queue(q), None) => q.try_pop_into(out),
            (Ring::Queue(q), t) => q.pop_into(out, t, None),
            (Ring::Stack(s), None) => s.try_pop_into(out),
            (Ring::Stack(s), t) => s.pop_into(out, t, None),
        }
    }

    fn peek(&self, max: usize) -> Vec<Vec<u8>> {
        match self {
            Ring::Queue(q) => q.peek(max),
            Ring::Stack(s) => s.peek(max),
        }
    }
}

/// The shape of descriptor `d`, which must describe `size`-byte elements.
fn shape_sized(d: &str, size: usize) -> Result<TypeShape> {
    let s = shape(d)?;
    if s.size() != size {
        return Err(format!(
            "type {d:?} does not describe the {size}-byte elements it is stored with"
        ));
    }
    Ok(s)
}

/// `shmds push`: values onto a queue or a stack, in order.
pub fn push(seg: &str, name: &str, values: &[String], wait: Option<f64>) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    let wait = timeout(wait)?;
    let ring = Ring::open(
        &seg,
        &e,
        "push is for queues and stacks (send for channels)",
    )?;
    let s = ring.shape()?;
    let mut bytes = Vec::new();
    for v in values {
        bytes.extend(encode(&s, &parse_arg(&s, v)?)?);
    }
    let pushed = ring.push(&bytes, wait).map_err(err)?;
    if pushed == values.len() {
        Ok(Outcome::Done)
    } else {
        Ok(Outcome::Miss(format!(
            "{} {name:?} is full: pushed {pushed} of {}",
            ring.kind(),
            values.len()
        )))
    }
}

/// `shmds pop`: up to `n` values off a queue or a stack, one per line.
pub fn pop(seg: &str, name: &str, n: usize, wait: Option<f64>, as_json: bool) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    let wait = timeout(wait)?;
    let ring = Ring::open(&seg, &e, "pop is for queues and stacks (recv for channels)")?;
    let s = ring.shape()?;
    let size = s.size();
    // No more can be there than the capacity.
    let n = n.min(ring.capacity());
    let mut out = vec![0u8; size * n];
    let got = match ring.pop(&mut out, wait) {
        Ok(k) => k.min(n),
        Err(Error::Timeout { .. }) => 0,
        Err(e) => return Err(err(e)),
    };
    for k in 0..got {
        print(&decode(&s, &out[k * size..(k + 1) * size]), as_json);
    }
    if got == 0 {
        Ok(Outcome::Miss(format!("{} {name:?} is empty", ring.kind())))
    } else {
        Ok(Outcome::Done)
    }
}

/// `shmds send`: a message into a channel, or published to a topic (the
/// argument's bytes, or standard input's).
pub fn send(seg: &str, name: &str, message: Option<&str>, wait: Option<f64>) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    let bytes = match message {
        Some(m) => m.as_bytes().to_vec(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("reading standard input: {e}"))?;
            buf
        }
    };
    match e.kind_name() {
        "channel" => {
            let ch = seg.open_channel(name).map_err(err)?;
            let mut tx = ch.sender().map_err(err)?;
            let sent = match timeout(wait)? {
                None => tx.try_send(&bytes),
                Some(t) => tx.send_timeout(&bytes, t),
            };
            match sent {
                Ok(()) => Ok(Outcome::Done),
                Err(Error::Full { .. } | Error::Timeout { .. }) => {
                    Ok(Outcome::Miss(format!("channel {name:?} has no room")))
                }
                Err(e) => Err(err(e)),
            }
        }
        "topic" => {
            let seq = seg
                .open_topic(name)
                .map_err(err)?
                .publish(&bytes)
                .map_err(err)?;
            println!("{seq}");
            Ok(Outcome::Done)
        }
        _ => Err(wrong_kind(
            &e,
            "send is for channels and topics (push for queues)",
        )),
    }
}

/// Print a message: its text, or with `hex` its bytes as hex; `--json` an
/// object with the length and the bytes escaped.
fn print_message(msg: &[u8], hex: bool, as_json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let r = if as_json {
        writeln!(out, "{}", json!({"len": msg.len(), "bytes": escaped(msg)}))
    } else if hex {
        writeln!(
            out,
            "{}",
            msg.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    } else {
        out.write_all(msg).and_then(|()| writeln!(out))
    };
    r.map_err(|e| format!("writing standard output: {e}"))
}

/// `shmds recv`: up to `n` messages from a channel (taken), or the next
/// ones published to a topic (a new subscriber's).
pub fn recv(
    seg: &str,
    name: &str,
    n: usize,
    wait: Option<f64>,
    hex: bool,
    as_json: bool,
) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    let wait = timeout(wait)?;
    let mut buf = Vec::new();
    let mut got = 0;
    match e.kind_name() {
        "channel" => {
            let ch = seg.open_channel(name).map_err(err)?;
            let mut rx = ch.receiver().map_err(err)?;
            while got < n {
                let r = match wait {
                    None => rx.try_recv(&mut buf),
                    Some(t) => rx.recv_timeout(&mut buf, t),
                };
                match r {
                    Ok(_) => print_message(&buf, hex, as_json)?,
                    Err(
                        Error::Empty { .. } | Error::Timeout { .. } | Error::Disconnected { .. },
                    ) => break,
                    Err(e) => return Err(err(e)),
                }
                got += 1;
            }
        }
        "topic" => {
            let mut sub = seg.open_topic(name).map_err(err)?.subscribe();
            while got < n {
                let r = match wait {
                    None => sub.try_recv(&mut buf),
                    Some(t) => sub.recv_timeout(&mut buf, t),
                };
                match r {
                    Ok(_) => print_message(&buf, hex, as_json)?,
                    Err(Error::Empty { .. } | Error::Timeout { .. }) => break,
                    Err(Error::Lagged { .. }) => continue,
                    Err(e) => return Err(err(e)),
                }
                got += 1;
            }
        }
        _ => {
            return Err(wrong_kind(
                &e,
                "recv is for channels and topics (pop for queues)",
            ))
        }
    }
    if got == 0 {
        Ok(Outcome::Miss(format!(
            "no message in {} {name:?}",
            e.kind_name()
        )))
    } else {
        Ok(Outcome::Done)
    }
}

/// `shmds dump`: the contents, decoded, without taking anything: an
/// array's elements, a queue's items oldest first, a stack's top first, a
/// map's pairs, a set's keys, a channel's messages in order, a topic's
/// newest messages (oldest of them first).
/// (Structure handles need a writable mapping, so this attaches like any
/// other process; it writes nothing.)
pub fn dump(seg: &str, name: &str, limit: usize, as_json: bool) -> Result<Outcome> {
    let seg = open(seg)?;
    let e = entry(&seg, name)?;
    let rows: Vec<Value> = match e.kind_name() {
        "array" => {
            let a = seg.open_array_raw(name).map_err(err)?;
            let s = shape_sized(a.type_descriptor(), a.elem_size())?;
            let mut buf = vec![0u8; a.elem_size()];
            let mut rows = Vec::new();
            for i in 0..a.len().min(limit) {
                a.read_bytes(i, &mut buf).map_err(err)?;
                rows.push(json!({"index": i, "value": decode(&s, &buf)}));
            }
            rows
        }
        "map" => {
            let m = seg.open_map_raw(name).map_err(err)?;
            let (ks, vs) = (
                shape_sized(m.key_type(), m.key_size())?,
                shape_sized(m.value_type(), m.value_size())?,
            );
            m.iter()
                .take(limit)
                .map(|(k, v)| json!({"key": decode(&ks, &k), "value": decode(&vs, &v)}))
                .collect()
        }
        "set" => {
            let st = seg.open_set_raw(name).map_err(err)?;
            let ks = shape_sized(st.key_type(), st.key_size())?;
            st.iter()
                .take(limit)
                .map(|k| json!({"key": decode(&ks, &k)}))
                .collect()
        }
        "queue" | "stack" => {
            let ring = Ring::open(&seg, &e, "")?;
            let s = ring.shape()?;
            ring.peek(limit)
                .iter()
                .enumerate()
                .map(|(i, item)| json!({"index": i, "value": decode(&s, item)}))
                .collect()
        }
        "channel" => seg
            .open_channel(name)
            .map_err(err)?
            .peek(limit)
            .iter()
            .map(|m| json!({"len": m.len(), "bytes": escaped(m)}))
            .collect(),
        "topic" => {
            // A private subscriber from the oldest message held (subscribers
            // keep no shared state), up to what was published when the dump
            // began (a publisher that keeps pace does not keep it going), in
            // a bounded number of reads: the newest `limit` of what it reads.
            let topic = seg.open_topic(name).map_err(err)?;
            let end = topic.published();
            let mut sub = topic.subscribe_from_oldest();
            let mut buf = Vec::new();
            let mut rows = std::collections::VecDeque::new();
            for _ in 0..(topic.len() + 64) * 4 {
                match sub.try_recv(&mut buf) {
                    Ok(seq) => {
                        rows.push_back(
                            json!({"seq": seq, "len": buf.len(), "bytes": escaped(&buf)}),
                        );
                        if rows.len() > limit {
                            rows.pop_front();
                        }
                        if seq.wrapping_add(1) >= end {
                            break;
                        }
                    }
                    Err(Error::Lagged { .. }) => continue,
                    Err(Error::Empty { .. }) => break,
                    Err(e) => return Err(err(e)),
                }
            }
            rows.into_iter().collect()
        }
        _ => {
            return Err(wrong_kind(
                &e,
                "dump reads arrays, queues, stacks, maps, sets, channels and topics \
                 (`shmds info` shows a primitive's state)",
            ))
        }
    };
    if as_json {
        println!("{}", Value::Array(rows));
    } else {
        for row in &rows {
            let text = match (row.get("index"), row.get("key"), row.get("value")) {
                (Some(i), _, Some(v)) => format!("[{i}] {v}"),
                (_, Some(k), Some(v)) => format!("{k}: {v}"),
                (_, Some(k), None) => k.to_string(),
                _ => row.to_string(),
            };
            println!("{text}");
        }
    }
    Ok(Outcome::Done)
}
