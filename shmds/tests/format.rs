//! FORMAT.md and layout.rs agree: every struct table in FORMAT.md lists
//! exactly the fields of the Rust struct, at the same offsets and sizes.

use shmds::layout::*;
use std::collections::BTreeMap;

type Fields = Vec<(String, usize, usize)>;

/// Parse `## Name (N bytes...)` headings and the `| offset | size | field |` rows under them.
fn format_tables() -> BTreeMap<String, (usize, Fields)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../FORMAT.md")).unwrap();
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix("## ") {
            current = None;
            if let Some((name, rest)) = head.split_once(" (") {
                if let Some(n) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    current = Some(name.trim().to_owned());
                    tables.insert(name.trim().to_owned(), (n, Vec::new()));
                }
            }
            continue;
        }
        let Some(name) = &current else { continue };
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 4 {
            if let (Ok(off), Ok(size)) = (cells[1].parse::<usize>(), cells[2].parse::<usize>()) {
                tables
                    .get_mut(name)
                    .unwrap()
                    .1
                    .push((cells[3].to_owned(), off, size));
            }
        }
    }
    tables
}

#[test]
fn format_md_matches_layout_rs() {
    let tables = format_tables();
    // layout::describe() is the list the C header is generated from too.
    let expected: BTreeMap<&str, (usize, Fields)> = describe()
        .into_iter()
        .map(|s| {
            let fields = s
                .fields
                .iter()
                .map(|f| (f.name.to_owned(), f.offset, f.size))
                .collect();
            (s.name, (s.size, fields))
        })
        .collect();
    assert_eq!(
        expected.len(),
        25,
        "a layout struct is missing from describe()"
    );
    for (name, (size, fields)) in &expected {
        let (doc_size, doc_fields) = tables
            .get(*name)
            .unwrap_or_else(|| panic!("FORMAT.md has no table for {name}"));
        assert_eq!(doc_size, size, "{name}: size");
        assert_eq!(doc_fields, fields, "{name}: fields");
        // Fields tile the struct with no gaps.
        let mut end = 0;
        for (f, off, sz) in fields {
            assert_eq!(*off, end, "{name}.{f} leaves a gap");
            end = off + sz;
        }
        assert_eq!(end, *size, "{name} has trailing padding");
    }
    for name in tables.keys() {
        assert!(
            expected.contains_key(name.as_str()),
            "FORMAT.md documents {name}, which the test does not know"
        );
    }
}

#[test]
fn magic_and_fingerprint_as_documented() {
    assert_eq!(MAGIC, [0x53, 0x48, 0x4d, 0x44, 0x53, 0x00, 0x01, 0x00]);
    // Recompute the fingerprint as FORMAT.md describes it.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let endian = if cfg!(target_endian = "little") {
        1u64
    } else {
        2
    };
    for v in [
        usize::BITS as u64,
        endian,
        64,
        1024,
        320,
        64,
        192,
        8,
        192,
        128,
        24,
        512,
        16,
        256,
        16,
        16,
        64,
        // LockState, LockHeader, ConditionHeader, RwLockHeader, ReaderSlot,
        // SemaphoreHeader, BarrierHeader, BarrierSlot, EventHeader,
        // LatchHeader, OnceHeader
        64,
        128,
        192,
        192,
        64,
        128,
        128,
        8,
        128,
        128,
        128,
    ] {
        for b in v.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    assert_eq!(h, fingerprint());
}

/// The README's Rust example as a block (`examples/readme_example.in`),
/// which `examples/readme_check.rs` includes and `make test` runs, on a
/// segment name of its own.
fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```rust\n").expect("README has a Rust example") + 8;
    let end = start + readme[start..].find("\n```").unwrap();
    let body = readme[start..end].replace("\"sensors\"", "\"shmds-readme-check\"");
    format!("// Generated from README.md (SHMDS_UPDATE_README=1 cargo test -p shmds --test format).\n{{\n{body}\nOk(())\n}}\n")
}

#[test]
fn readme_rust_example_is_the_checked_program() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/readme_example.in");
    let want = readme_block();
    if std::env::var_os("SHMDS_UPDATE_README").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "examples/readme_example.in is stale: run SHMDS_UPDATE_README=1 cargo test -p shmds --test format"
    );
}
