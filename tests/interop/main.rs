//! The Rust side of the cross-language tests (`tests/python/test_interop.py`
//! and the C tests): it writes a known set of structures, checks a set
//! written by another language, or streams through a queue while another
//! process reads or writes it.
//!
//! ```text
//! interop write   SEGMENT          create the known structures
//! interop check   SEGMENT          check the known structures, exit 1 on a mismatch
//! interop produce SEGMENT QUEUE N  push 0..N into queue QUEUE of u64 (blocking)
//! interop consume SEGMENT QUEUE N  pop N u64 from QUEUE, check they are 0..N in order
//! interop write-strings SEGMENT  create the string/bytes structures below
//! interop check-strings SEGMENT  pop what the other language put into them, exit 1 on a mismatch
//! interop write-coord SEGMENT   create the sets and coordination primitives below
//! interop check-coord SEGMENT   check them, exit 1 on a mismatch
//! interop write-messages SEGMENT create the channels and topic below, full of messages
//! interop check-messages SEGMENT receive them all, exit 1 on a mismatch
//! interop stream-send SEGMENT spsc|mpmc N   send N messages into channel `stream`
//! interop stream-recv SEGMENT spsc|mpmc N   receive them, checking each, in order
//! interop remote-write URL SEGMENT  the known structures, on a Redis server
//! interop remote-check URL SEGMENT  check them there, exit 1 on a mismatch
//! ```
//!
//! The known structures (every language writes and checks the same):
//! - array `quotes` of 3 `Quote {venue: u8, price: f64, size: u32}`:
//!   `(i, 100.5 + i, 10 * i)`;
//! - queue `jobs` of u64 holding 1..=100 (capacity 128);
//! - stack `undo` of i32 holding -1, -2, -3 pushed in that order (capacity 8);
//! - map `prices` from `FixedStr<16>` to f64: AAPL 189.5, MSFT 410.25,
//!   "Zürich" 7.0 (capacity 64);
//! - map `hits` from u64 to i64: k -> -k for k in 1..=20 (capacity 32).
//!
//! The sets and coordination primitives (`write-coord`):
//! - set `tags` of u64 holding 3, 7, 42 (capacity 16);
//! - set `words` of `FixedStr<16>` holding "alpha", "Zürich" (capacity 8);
//! - event `ready`, set; latch `start` of 4, counted down once (3 left);
//! - semaphore `slots` of 5 with 2 permits taken (3 left);
//! - once `init`, run; barrier `meet` of 3 parties, nobody waiting;
//! - lock `guard` and rwlock `table` (4 reader slots), free.
//!
//! The string/bytes structures (README, "Strings and bytes"):
//! - queue `names` of `FixedStr<64>` (capacity 8) holding "alpha", "Zürich",
//!   "nul\0\0"; the other language pops them and puts "from python\0";
//! - queue `raw` of `[u8; 8]` (capacity 8) holding `b"abc\0\0\0\0\0"`; the
//!   other language puts `b"xyz\0\0\0\0\0"`;
//! - array `raw8` of 2 `[u8; 8]`, element 1 `b"abc\0\0\0\0\0"`.
//!
//! The messages (every language sends and receives the same), message `k`
//! of `len` bytes being `byte i = (7k + 31i + len) % 251`:
//! - channel `events` (MPMC, 64 KiB, `max_message` 4096, CRC32C) holding
//!   messages 0..10 of [`EVENT_LENS`] bytes (0 and 4096 included); writers
//!   send the even ones by copy and the odd ones by reserve/commit where
//!   they can, readers receive the even ones into a buffer (first probing
//!   the length with one too small) and the odd ones in place;
//! - channel `pipe` (SPSC, 4096 bytes) holding messages 0..10 of `10k`
//!   bytes;
//! - topic `ticks` (4096 bytes, `max_message` the default 2048) holding
//!   messages 0..7 of [`TICK_LENS`] bytes (sequence numbers 0..7), read by
//!   a subscriber from the oldest; the newest is message 6.
//!
//! The stream: channel `stream` (or `stream-spsc`; 4096 bytes,
//! `max_message` 1000), message `k` of `37k % 1001` bytes, created by
//! whichever side comes first.

use shmds::{ChannelOptions, Error, FixedStr, Segment, TopicOptions};
use std::process::ExitCode;
use std::time::Duration;

shmds::record! {
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Quote {
        pub venue: u8,
        pub price: f64,
        pub size: u32,
    }
}

const PRICES: [(&str, f64); 3] = [("AAPL", 189.5), ("MSFT", 410.25), ("Zürich", 7.0)];

fn quote(i: u64) -> Quote {
    Quote {
        venue: i as u8,
        price: 100.5 + i as f64,
        size: 10 * i as u32,
    }
}

fn write(seg: &Segment) -> shmds::Result<()> {
    let quotes = seg.create_array::<Quote>("quotes", 3)?;
    for i in 0..3 {
        quotes.set(i, quote(i as u64))?;
    }
    let jobs = seg.create_queue::<u64>("jobs", 128)?;
    jobs.push_slice(&(1..=100).collect::<Vec<_>>(), None)?;
    let undo = seg.create_stack::<i32>("undo", 8)?;
    undo.push_slice(&[-1, -2, -3], None)?;
    let prices = seg.create_map::<FixedStr<16>, f64>("prices", 64)?;
    for (k, v) in PRICES {
        prices.insert(FixedStr::new(k)?, v)?;
    }
    let hits = seg.create_map::<u64, i64>("hits", 32)?;
    for k in 1..=20u64 {
        hits.insert(k, -(k as i64))?;
    }
    Ok(())
}

const WORDS: [&str; 2] = ["alpha", "Zürich"];

fn write_coord(seg: &Segment) -> shmds::Result<()> {
    let tags = seg.create_set::<u64>("tags", 16)?;
    for k in [3, 7, 42] {
        tags.insert(k)?;
    }
    let words = seg.create_set::<FixedStr<16>>("words", 8)?;
    for w in WORDS {
        words.insert(FixedStr::new(w)?)?;
    }
    seg.create_event("ready")?.set();
    seg.create_latch("start", 4)?.count_down(1)?;
    let slots = seg.create_semaphore("slots", 5)?;
    for _ in 0..2 {
        slots.acquire()?.forget();
    }
    seg.create_once("init")?.call_once(|| {})?;
    seg.create_barrier("meet", 3)?;
    seg.create_lock("guard")?;
    seg.create_rwlock("table", 4)?;
    Ok(())
}

fn check_coord(seg: &Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let tags = seg.open_set::<u64>("tags").map_err(e)?;
    let mut got: Vec<u64> = tags.iter().collect();
    got.sort_unstable();
    if got != [3, 7, 42] {
        return Err(format!("tags holds {got:?}"));
    }
    let words = seg.open_set::<FixedStr<16>>("words").map_err(e)?;
    if words.len() != WORDS.len() || !WORDS.iter().all(|w| words.contains(*w).unwrap_or(false)) {
        return Err(format!(
            "words holds {:?}",
            words.iter().collect::<Vec<_>>()
        ));
    }
    if !seg.open_event("ready").map_err(e)?.is_set() {
        return Err("event ready is not set".into());
    }
    let left = seg.open_latch("start").map_err(e)?.count();
    if left != 3 {
        return Err(format!("latch start has {left} counts left, expected 3"));
    }
    let value = seg.open_semaphore("slots").map_err(e)?.value();
    if value != 3 {
        return Err(format!("semaphore slots has {value} permits, expected 3"));
    }
    if !seg.open_once("init").map_err(e)?.is_done() {
        return Err("once init has not run".into());
    }
    let meet = seg.open_barrier("meet").map_err(e)?;
    if meet.parties() != 3 || meet.is_broken() {
        return Err(format!(
            "barrier meet: {} parties, broken {}",
            meet.parties(),
            meet.is_broken()
        ));
    }
    if seg.open_lock("guard").map_err(e)?.is_locked() {
        return Err("lock guard is held".into());
    }
    seg.open_rwlock("table").map_err(e)?;
    let report = seg.check();
    if !report.is_ok() {
        return Err(format!("check: {:?}", report.problems));
    }
    Ok(())
}

fn check(seg: &Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let quotes = seg.open_array::<Quote>("quotes").map_err(e)?;
    for i in 0..3 {
        let q = quotes.get(i).map_err(e)?;
        if q != quote(i as u64) {
            return Err(format!(
                "quotes[{i}] is {q:?}, expected {:?}",
                quote(i as u64)
            ));
        }
    }
    let jobs = seg.open_queue::<u64>("jobs").map_err(e)?;
    let mut out = vec![0u64; 200];
    let n = jobs.try_pop_into(&mut out).map_err(e)?;
    if out[..n] != (1..=100).collect::<Vec<_>>()[..] {
        return Err(format!("jobs held {:?}", &out[..n]));
    }
    let undo = seg.open_stack::<i32>("undo").map_err(e)?;
    let mut out = [0i32; 8];
    let n = undo.try_pop_into(&mut out).map_err(e)?;
    if out[..n] != [-3, -2, -1] {
        return Err(format!("undo popped {:?}", &out[..n]));
    }
    let prices = seg.open_map::<FixedStr<16>, f64>("prices").map_err(e)?;
    if prices.len() != PRICES.len() {
        return Err(format!("prices has {} keys", prices.len()));
    }
    for (k, v) in PRICES {
        let got = prices.get(&FixedStr::new(k).map_err(e)?).map_err(e)?;
        if got != Some(v) {
            return Err(format!("prices[{k:?}] is {got:?}, expected {v}"));
        }
    }
    let hits = seg.open_map::<u64, i64>("hits").map_err(e)?;
    for k in 1..=20u64 {
        let got = hits.get(&k).map_err(e)?;
        if got != Some(-(k as i64)) {
            return Err(format!("hits[{k}] is {got:?}"));
        }
    }
    let report = seg.check();
    if !report.is_ok() {
        return Err(format!("check: {:?}", report.problems));
    }
    Ok(())
}

const NAMES: [&str; 3] = ["alpha", "Zürich", "nul\0\0"];
const RAW: [u8; 8] = *b"abc\0\0\0\0\0";

fn write_strings(seg: &Segment) -> shmds::Result<()> {
    let names = seg.create_queue::<FixedStr<64>>("names", 8)?;
    for s in NAMES {
        names.try_push(FixedStr::new(s)?)?;
    }
    let raw = seg.create_queue::<[u8; 8]>("raw", 8)?;
    raw.try_push(RAW)?;
    seg.create_array::<[u8; 8]>("raw8", 2)?.set(1, RAW)?;
    Ok(())
}

fn check_strings(seg: &Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let names = seg.open_queue::<FixedStr<64>>("names").map_err(e)?;
    let got = names.try_pop().map_err(e)?.ok_or("names is empty")?;
    if got.as_bytes() != b"from python\0" {
        return Err(format!("names held {got:?}"));
    }
    let raw = seg.open_queue::<[u8; 8]>("raw").map_err(e)?;
    let got = raw.try_pop().map_err(e)?.ok_or("raw is empty")?;
    if &got != b"xyz\0\0\0\0\0" {
        return Err(format!("raw held {got:?}"));
    }
    Ok(())
}

/// Lengths of the messages in channel `events`.
const EVENT_LENS: [usize; 10] = [0, 1, 7, 63, 64, 65, 200, 1000, 4096, 3];
/// Lengths of the messages in topic `ticks`.
const TICK_LENS: [usize; 7] = [0, 5, 64, 100, 300, 2048, 1];

/// Message `k` of `len` bytes.
fn message(k: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((7 * k + 31 * i + len) % 251) as u8)
        .collect()
}

fn events_options() -> ChannelOptions {
    ChannelOptions::new(64 << 10)
        .max_message(4096)
        .checksum(true)
}

fn write_messages(seg: &Segment) -> shmds::Result<()> {
    let mut tx = seg.create_channel("events", events_options())?.sender()?;
    for (k, &len) in EVENT_LENS.iter().enumerate() {
        if k % 2 == 0 {
            tx.try_send(&message(k, len))?;
        } else {
            let mut slot = tx.try_reserve(len)?;
            slot.copy_from_slice(&message(k, len));
            slot.commit();
        }
    }
    let pipe = seg.create_channel("pipe", ChannelOptions::new(4096).spsc(true))?;
    let mut tx = pipe.sender()?;
    for k in 0..10 {
        tx.try_send(&message(k, 10 * k))?;
    }
    let ticks = seg.create_topic("ticks", TopicOptions::new(4096))?;
    for (k, &len) in TICK_LENS.iter().enumerate() {
        if k % 2 == 0 {
            ticks.publish(&message(k, len))?;
        } else {
            let mut slot = ticks.reserve(len)?;
            slot.copy_from_slice(&message(k, len));
            slot.commit();
        }
    }
    Ok(())
}

/// `Ok` when `got` is message `k` of `len` bytes.
fn expect(what: &str, k: usize, len: usize, got: &[u8]) -> Result<(), String> {
    if got != message(k, len) {
        return Err(format!(
            "{what} message {k}: {} bytes {:?}..., expected {len} bytes",
            got.len(),
            &got[..got.len().min(8)]
        ));
    }
    Ok(())
}

/// `Ok` when a receive found nothing more: empty, or every sender gone.
fn nothing_more<T>(what: &str, got: shmds::Result<T>) -> Result<(), String> {
    match got {
        Err(Error::Empty { .. } | Error::Disconnected { .. }) => Ok(()),
        Err(e) => Err(format!("{what}: {e}")),
        Ok(_) => Err(format!("{what}: a message too many")),
    }
}

fn check_messages(seg: &Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let events = seg.open_channel("events").map_err(e)?;
    if events.max_message() != 4096 || !events.has_checksum() || events.is_spsc() {
        return Err(format!("events is {events:?}"));
    }
    let mut rx = events.receiver().map_err(e)?;
    let mut buf = Vec::new();
    for (k, &len) in EVENT_LENS.iter().enumerate() {
        if k % 2 == 0 {
            // Too small a buffer: the length, and the message stays.
            if len > 0 {
                match rx.recv_ref_within(len - 1, false, None, None).map_err(e)? {
                    Err(n) if n == len => {}
                    Err(n) => return Err(format!("events message {k} says {n} bytes")),
                    Ok(m) => return Err(format!("events message {k} taken: {} bytes", m.len())),
                }
            }
            rx.try_recv(&mut buf).map_err(e)?;
            expect("events", k, len, &buf)?;
        } else {
            let m = rx.try_recv_ref().map_err(e)?;
            expect("events", k, len, &m)?;
        }
    }
    nothing_more("events", rx.try_recv(&mut buf))?;
    let pipe = seg.open_channel("pipe").map_err(e)?;
    if !pipe.is_spsc() {
        return Err("pipe is not SPSC".into());
    }
    let mut rx = pipe.receiver().map_err(e)?;
    for k in 0..10 {
        rx.try_recv(&mut buf).map_err(e)?;
        expect("pipe", k, 10 * k, &buf)?;
    }
    nothing_more("pipe", rx.try_recv(&mut buf))?;
    let ticks = seg.open_topic("ticks").map_err(e)?;
    let mut sub = ticks.subscribe_from_oldest();
    for (k, &len) in TICK_LENS.iter().enumerate() {
        let seq = sub.try_recv(&mut buf).map_err(e)?;
        if seq != k as u64 {
            return Err(format!("ticks message {k} has sequence number {seq}"));
        }
        expect("ticks", k, len, &buf)?;
    }
    nothing_more("ticks", sub.try_recv(&mut buf))?;
    let last = TICK_LENS.len() - 1;
    if ticks.latest(&mut buf).map_err(e)? != Some(last as u64) {
        return Err("ticks: the latest is not the last".into());
    }
    expect("ticks latest", last, TICK_LENS[last], &buf)?;
    let report = seg.check();
    if !report.is_ok() {
        return Err(format!("check: {:?}", report.problems));
    }
    Ok(())
}

/// The channel of the stream, created by whichever side comes first.
fn stream(seg: &Segment, mode: &str) -> Result<shmds::Channel, String> {
    let (name, spsc) = match mode {
        "spsc" => ("stream-spsc", true),
        "mpmc" => ("stream", false),
        other => return Err(format!("mode {other:?} is not spsc or mpmc")),
    };
    let options = ChannelOptions::new(4096).max_message(1000).spsc(spsc);
    seg.open_or_create_channel(name, options)
        .map_err(|e| e.to_string())
}

fn stream_send(seg: &Segment, mode: &str, n: usize) -> Result<(), String> {
    let mut tx = stream(seg, mode)?.sender().map_err(|e| e.to_string())?;
    for k in 0..n {
        tx.send_timeout(&message(k, 37 * k % 1001), Duration::from_secs(60))
            .map_err(|e| format!("send {k}: {e}"))?;
    }
    Ok(())
}

fn stream_recv(seg: &Segment, mode: &str, n: usize) -> Result<(), String> {
    let mut rx = stream(seg, mode)?.receiver().map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    for k in 0..n {
        rx.recv_timeout(&mut buf, Duration::from_secs(60))
            .map_err(|e| format!("receive {k}: {e}"))?;
        expect("stream", k, 37 * k % 1001, &buf)?;
    }
    Ok(())
}

fn produce(seg: &Segment, queue: &str, n: u64) -> Result<(), String> {
    let q = seg
        .open_or_create_queue::<u64>(queue, 64)
        .map_err(|e| e.to_string())?;
    for i in 0..n {
        q.push(i, Some(Duration::from_secs(60)))
            .map_err(|e| format!("push {i}: {e}"))?;
    }
    Ok(())
}

fn consume(seg: &Segment, queue: &str, n: u64) -> Result<(), String> {
    let q = seg
        .open_or_create_queue::<u64>(queue, 64)
        .map_err(|e| e.to_string())?;
    for i in 0..n {
        let v = q
            .pop(Some(Duration::from_secs(60)))
            .map_err(|e| format!("pop {i}: {e}"))?;
        if v != i {
            return Err(format!("item {i} was {v}"));
        }
    }
    Ok(())
}

/// The known structures on a remote segment (the same as [`write`]).
fn remote_write(seg: &shmds::remote::Segment) -> shmds::Result<()> {
    let quotes = seg.create_array::<Quote>("quotes", 3)?;
    for i in 0..3 {
        quotes.set(i, quote(i as u64))?;
    }
    let jobs = seg.create_queue::<u64>("jobs", 128)?;
    jobs.push_slice(&(1..=100).collect::<Vec<_>>(), None)?;
    seg.create_stack::<i32>("undo", 8)?
        .push_slice(&[-1, -2, -3], None)?;
    let prices = seg.create_map::<FixedStr<16>, f64>("prices", 64)?;
    for (k, v) in PRICES {
        prices.insert(FixedStr::new(k)?, v)?;
    }
    let hits = seg.create_map::<u64, i64>("hits", 32)?;
    for k in 1..=20u64 {
        hits.insert(k, -(k as i64))?;
    }
    Ok(())
}

/// Check the known structures on a remote segment (as [`check`] does).
fn remote_check(seg: &shmds::remote::Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let quotes = seg.open_array::<Quote>("quotes").map_err(e)?;
    let got = quotes.to_vec().map_err(e)?;
    if got != (0..3).map(quote).collect::<Vec<_>>() {
        return Err(format!("quotes are {got:?}"));
    }
    let mut out = vec![0u64; 200];
    let n = seg
        .open_queue::<u64>("jobs")
        .map_err(e)?
        .try_pop_into(&mut out)
        .map_err(e)?;
    if out[..n] != (1..=100).collect::<Vec<_>>()[..] {
        return Err(format!("jobs held {:?}", &out[..n]));
    }
    let mut out = [0i32; 8];
    let n = seg
        .open_stack::<i32>("undo")
        .map_err(e)?
        .try_pop_into(&mut out)
        .map_err(e)?;
    if out[..n] != [-3, -2, -1] {
        return Err(format!("undo popped {:?}", &out[..n]));
    }
    let prices = seg.open_map::<FixedStr<16>, f64>("prices").map_err(e)?;
    for (k, v) in PRICES {
        let got = prices.get(k).map_err(e)?;
        if got != Some(v) {
            return Err(format!("prices[{k:?}] is {got:?}, expected {v}"));
        }
    }
    let hits = seg.open_map::<u64, i64>("hits").map_err(e)?;
    let mut all = hits.to_vec().map_err(e)?;
    all.sort();
    if all != (1..=20u64).map(|k| (k, -(k as i64))).collect::<Vec<_>>() {
        return Err(format!("hits are {all:?}"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    if let Some(remote) = arg(0).strip_prefix("remote-") {
        let result = shmds::remote::Segment::connect(arg(1), arg(2))
            .map_err(|e| e.to_string())
            .and_then(|seg| match remote {
                "write" => remote_write(&seg).map_err(|e| e.to_string()),
                "check" => remote_check(&seg),
                other => Err(format!("unknown command remote-{other:?}")),
            });
        if let Err(msg) = result {
            eprintln!("interop {}: {msg}", arg(0));
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let number = |i: usize| arg(i).parse::<u64>().map_err(|e| format!("{e}"));
    let result = Segment::open(arg(1))
        .map_err(|e| e.to_string())
        .and_then(|seg| match arg(0) {
            "write" => write(&seg).map_err(|e| e.to_string()),
            "check" => check(&seg),
            "write-strings" => write_strings(&seg).map_err(|e| e.to_string()),
            "check-strings" => check_strings(&seg),
            "write-coord" => write_coord(&seg).map_err(|e| e.to_string()),
            "check-coord" => check_coord(&seg),
            "write-messages" => write_messages(&seg).map_err(|e| e.to_string()),
            "check-messages" => check_messages(&seg),
            "stream-send" => number(3).and_then(|n| stream_send(&seg, arg(2), n as usize)),
            "stream-recv" => number(3).and_then(|n| stream_recv(&seg, arg(2), n as usize)),
            "produce" => number(3).and_then(|n| produce(&seg, arg(2), n)),
            "consume" => number(3).and_then(|n| consume(&seg, arg(2), n)),
            other => Err(format!("unknown command {other:?}")),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("interop {}: {msg}", arg(0));
            ExitCode::FAILURE
        }
    }
}
