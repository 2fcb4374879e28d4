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
//! The string/bytes structures (README, "Strings and bytes"):
//! - queue `names` of `FixedStr<64>` (capacity 8) holding "alpha", "Zürich",
//!   "nul\0\0"; the other language pops them and puts "from python\0";
//! - queue `raw` of `[u8; 8]` (capacity 8) holding `b"abc\0\0\0\0\0"`; the
//!   other language puts `b"xyz\0\0\0\0\0"`;
//! - array `raw8` of 2 `[u8; 8]`, element 1 `b"abc\0\0\0\0\0"`.

use shmds::{FixedStr, Segment};
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
        quotes.set(i, quote(i))?;
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

fn check(seg: &Segment) -> Result<(), String> {
    let e = |e: shmds::Error| e.to_string();
    let quotes = seg.open_array::<Quote>("quotes").map_err(e)?;
    for i in 0..3 {
        let q = quotes.get(i).map_err(e)?;
        if q != quote(i) {
            return Err(format!("quotes[{i}] is {q:?}, expected {:?}", quote(i)));
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
    let got = names.try_pop().map_err(e)?;
    if got.as_bytes() != b"from python\0" {
        return Err(format!("names held {got:?}"));
    }
    let raw = seg.open_queue::<[u8; 8]>("raw").map_err(e)?;
    let got = raw.try_pop().map_err(e)?;
    if &got != b"xyz\0\0\0\0\0" {
        return Err(format!("raw held {got:?}"));
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let number = |i: usize| arg(i).parse::<u64>().map_err(|e| format!("{e}"));
    let result = Segment::open(arg(1))
        .map_err(|e| e.to_string())
        .and_then(|seg| match arg(0) {
            "write" => write(&seg).map_err(|e| e.to_string()),
            "check" => check(&seg),
            "write-strings" => write_strings(&seg).map_err(|e| e.to_string()),
            "check-strings" => check_strings(&seg),
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
