//! The segment header: writing it at creation, waiting for it to be ready,
//! and copying and validating its fixed fields at open.

use super::mapping::Mapping;
use super::{Geometry, MAX_SEGMENT_SIZE, MAX_TABLE_CAPACITY, PAGE};
use crate::error::{Error, Result};
use crate::layout::{
    segment_state, Line, SegmentHeader, CACHE_LINE, ENTRY_SIZE, FORMAT_VERSION, MAGIC,
    SEGMENT_HEADER_SIZE,
};
use crate::sync::Ordering;
use std::time::{Duration, Instant};

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Write a new segment's header and heap (`size` bytes, all mapped); the
/// caller stores `READY` once it has attached.
pub(super) fn init_header(mapping: &Mapping, size: u64) -> Result<()> {
    let g = *mapping.geometry();
    let header = mapping.header();
    header
        .creator_pid
        .store(crate::process::current_pid(), Ordering::Relaxed);
    header
        .creator_start
        .store(crate::process::current_start_time(), Ordering::Relaxed);
    header
        .state
        .store(segment_state::INITIALIZING, Ordering::Relaxed);
    crate::fault::pause_point("segment.create.initializing");
    // The fixed line, written as eight atomic words (openers read it so, see
    // `read_fixed`), `magic` last. Openers look at anything but `magic`
    // only after `state` is READY (Release below, Acquire in `wait_ready`).
    let halves = |lo: u32, hi: u32| {
        let (lo, hi) = (lo.to_ne_bytes(), hi.to_ne_bytes());
        u64::from_ne_bytes([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]])
    };
    let words: [u64; 8] = [
        u64::from_ne_bytes(MAGIC),
        halves(FORMAT_VERSION, SEGMENT_HEADER_SIZE as u32),
        crate::layout::fingerprint(),
        g.max_size,
        crate::layout::TABLE_OFFSET,
        halves(g.table_capacity, ENTRY_SIZE as u32),
        g.heap_offset,
        g.seed,
    ];
    // SAFETY: the mapping is ours, page-aligned and larger than the header;
    // AtomicU64 has the size and alignment of u64.
    let line = unsafe { &*mapping.base().cast::<[core::sync::atomic::AtomicU64; 8]>() };
    for i in (1..8).chain([0]) {
        line[i].store(words[i], Ordering::Relaxed);
    }
    header.size.store(size, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    header.created_unix_ns.store(now, Ordering::Relaxed);
    header.flags.store(g.flags, Ordering::Relaxed);
    crate::table::Table::heap_of(mapping).init(size)
}

/// The header's first cache line: the fields fixed at creation, as read once.
pub(super) struct FixedFields {
    pub(super) magic: [u8; 8],
    pub(super) format_version: u32,
    pub(super) header_size: u32,
    pub(super) fingerprint: u64,
    pub(super) max_size: u64,
    pub(super) table_offset: u64,
    pub(super) table_capacity: u32,
    pub(super) entry_size: u32,
    pub(super) heap_offset: u64,
    pub(super) seed: u64,
}

/// Copy the header's first line out of the segment (see
/// [`Line`](crate::layout::Line)). Every use of these fields after open goes
/// through the validated [`Geometry`] made from this copy.
///
/// `base` must point to a live mapping of at least `SEGMENT_HEADER_SIZE`
/// bytes, aligned to a page.
pub(super) fn read_fixed(base: *const u8) -> FixedFields {
    use core::mem::offset_of;
    // SAFETY: (caller) page-aligned, and SEGMENT_HEADER_SIZE >= 64 bytes.
    let line = unsafe { Line::read(base) };
    let u32_at = |offset| line.u32_at(offset);
    let u64_at = |offset| line.u64_at(offset);
    FixedFields {
        magic: u64_at(offset_of!(SegmentHeader, magic)).to_ne_bytes(),
        format_version: u32_at(offset_of!(SegmentHeader, format_version)),
        header_size: u32_at(offset_of!(SegmentHeader, header_size)),
        fingerprint: u64_at(offset_of!(SegmentHeader, fingerprint)),
        max_size: u64_at(offset_of!(SegmentHeader, max_size)),
        table_offset: u64_at(offset_of!(SegmentHeader, table_offset)),
        table_capacity: u32_at(offset_of!(SegmentHeader, table_capacity)),
        entry_size: u32_at(offset_of!(SegmentHeader, entry_size)),
        heap_offset: u64_at(offset_of!(SegmentHeader, heap_offset)),
        seed: u64_at(offset_of!(SegmentHeader, seed)),
    }
}

/// The first 8 bytes of the mapping at `base` (see [`read_fixed`]), read
/// with one atomic load: while the creator initialises the header, only
/// this word is looked at.
fn read_magic(base: *const u8) -> [u8; 8] {
    // SAFETY: (caller of wait_ready) a live, page-aligned mapping of at
    // least SEGMENT_HEADER_SIZE bytes.
    let word = unsafe { &*base.cast::<core::sync::atomic::AtomicU64>() };
    word.load(Ordering::Relaxed).to_ne_bytes()
}

/// The header's atomics at `base` (see [`read_fixed`] for the requirement).
fn header_at<'a>(base: *const u8) -> &'a SegmentHeader {
    // SAFETY: (caller) a live page-aligned mapping of at least
    // SEGMENT_HEADER_SIZE bytes; only the header's atomic fields are used
    // through this reference (the plain ones are read by `read_fixed`).
    unsafe { &*base.cast::<SegmentHeader>() }
}

pub(super) fn wait_ready(name: &str, base: *const u8, deadline: Instant) -> Result<()> {
    let header = header_at(base);
    loop {
        let magic = read_magic(base);
        if magic != [0; 8] && magic != MAGIC {
            return Err(Error::Corrupt {
                name: name.to_owned(),
                detail: "not a shmds segment (bad magic)".into(),
            });
        }
        let state = header.state.load(Ordering::Acquire);
        match state {
            // REMOVED: crate::attach decides (a removal may be undone).
            segment_state::READY | segment_state::REMOVED => return Ok(()),
            segment_state::UNINIT | segment_state::INITIALIZING => {}
            other => {
                return Err(Error::Corrupt {
                    name: name.to_owned(),
                    detail: format!("unknown segment state {other}"),
                })
            }
        }
        let creator = header.creator_pid.load(Ordering::Relaxed);
        if creator != 0 && !crate::process::is_alive(creator) {
            return Err(Error::NotReady {
                name: name.to_owned(),
                detail: format!(
                    "its creator (pid {creator}) died during initialisation; remove it with `shmds rm {name}`"
                ),
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                name: name.to_owned(),
                detail: if creator == 0 {
                    "it was never initialised (not a shmds segment, or its creator died at once)"
                        .into()
                } else {
                    format!("its creator (pid {creator}) has not finished initialising it")
                },
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Copy the header's fixed fields once, check them against the file
/// (`file_size` bytes; `base` maps at least the header) and this build, and
/// return the copy that is used from then on, with the segment's current
/// size (checked against the geometry, not yet against the file).
pub(super) fn validate_header(
    name: &str,
    base: *const u8,
    file_size: u64,
) -> Result<(Geometry, u64)> {
    let h = read_fixed(base);
    let corrupt = |detail: String| Error::Corrupt {
        name: name.to_owned(),
        detail,
    };
    let incompatible = |detail: String| Error::Incompatible {
        name: name.to_owned(),
        detail,
    };
    if h.magic != MAGIC {
        return Err(corrupt("not a shmds segment (bad magic)".into()));
    }
    if h.format_version != FORMAT_VERSION {
        return Err(incompatible(if h.format_version > FORMAT_VERSION {
            format!(
                "it has format version {}, newer than this build's {FORMAT_VERSION}: upgrade shmds",
                h.format_version
            )
        } else {
            format!(
                "it has format version {}, made by an older shmds; this build reads only version \
                 {FORMAT_VERSION}: remove it (`shmds rm`) and create it again, or use the shmds \
                 that made it",
                h.format_version
            )
        }));
    }
    if h.fingerprint != crate::layout::fingerprint() {
        return Err(incompatible(format!(
            "layout fingerprint {:#018x} differs from this build's {:#018x} (another pointer width, \
             byte order or struct layout)",
            h.fingerprint,
            crate::layout::fingerprint()
        )));
    }
    if h.header_size as u64 != SEGMENT_HEADER_SIZE || h.entry_size as u64 != ENTRY_SIZE {
        return Err(incompatible(format!(
            "header/entry sizes {}/{} differ from {SEGMENT_HEADER_SIZE}/{ENTRY_SIZE}",
            h.header_size, h.entry_size
        )));
    }
    // A sealed durable file has its checksum trailer past `max_size` at most.
    let room = h
        .max_size
        .saturating_add(super::durable::trailer_len(h.max_size));
    if h.max_size % PAGE != 0 || h.max_size > MAX_SEGMENT_SIZE || file_size > room {
        return Err(corrupt(format!(
            "its maximum size {} is not a whole number of pages of at most {MAX_SEGMENT_SIZE} \
             bytes at least as large as its file ({file_size} bytes)",
            h.max_size
        )));
    }
    if h.table_offset != crate::layout::TABLE_OFFSET {
        return Err(corrupt(format!(
            "table offset {} is not {}",
            h.table_offset,
            crate::layout::TABLE_OFFSET
        )));
    }
    if h.table_capacity == 0 || h.table_capacity > MAX_TABLE_CAPACITY {
        return Err(corrupt(format!(
            "table capacity {} is out of range",
            h.table_capacity
        )));
    }
    let table_end = crate::layout::TABLE_OFFSET + h.table_capacity as u64 * ENTRY_SIZE;
    if h.heap_offset < table_end || h.heap_offset % CACHE_LINE != 0 || h.heap_offset >= h.max_size {
        return Err(corrupt(format!(
            "heap offset {} is not an aligned offset between the table end {table_end} and the \
             segment's maximum size {}",
            h.heap_offset, h.max_size
        )));
    }
    let geometry = Geometry {
        max_size: h.max_size,
        table_capacity: h.table_capacity,
        heap_offset: h.heap_offset,
        seed: h.seed,
        flags: header_at(base).flags.load(Ordering::Relaxed),
    };
    let size = header_at(base).size.load(Ordering::Acquire);
    if size % PAGE != 0 || size <= h.heap_offset || size > h.max_size {
        return Err(corrupt(format!(
            "its size {size} is not a whole number of pages between its heap start {} and its \
             maximum size {}",
            h.heap_offset, h.max_size
        )));
    }
    Ok((geometry, size))
}
