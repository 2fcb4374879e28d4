//! # shmds: named, typed data structures in POSIX shared memory
//!
//! Several processes (Rust, Python, C) attach to one named segment and share
//! arrays, queues, stacks, maps, channels and topics inside it: zero-copy, lock-free, no server,
//! no serialisation.
//!
//! ```
//! use shmds::Segment;
//! # let name = format!("doc-lib-{}", std::process::id());
//! // Process A
//! let seg = Segment::create(&name, 1 << 20)?;
//! let prices = seg.create_array::<f64>("prices", 4)?;
//! prices.write(0, &[1.5, 2.5, 3.5, 4.5])?;
//!
//! // Process B (here the same process, for the example)
//! let seg_b = Segment::open(&name)?;
//! let prices_b = seg_b.open_array::<f64>("prices")?;
//! assert_eq!(prices_b.get(2)?, 3.5);
//! for e in seg_b.entries()? {
//!     println!("{} {} {} x{}", e.name, e.kind_name(), e.elem_type, e.capacity);
//! }
//! # Segment::remove(&name)?;
//! # Ok::<(), shmds::Error>(())
//! ```
//!
//! The byte layout is specified in `FORMAT.md`; [`layout`] is its Rust form.
#![warn(missing_docs)]

pub mod element;
pub mod layout;
#[cfg(feature = "remote")]
pub mod remote;
pub mod snapshot;

mod alloc;
mod array;
mod attach;
mod channel;
mod checksum;
mod coord;
mod error;
mod fault;
mod handle;
mod map;
mod payload;
mod process;
mod queue;
mod ring;
mod segment;
mod stack;
mod sync;
mod table;
mod topic;
mod type_name;
mod wait;

pub use alloc::HeapStats;
pub use array::{Array, RawArray};
pub use attach::{remove_abandoned, remove_if_abandoned, segment_status, Attacher, SegmentStatus};
pub use channel::{
    Channel, ChannelOptions, Message, Receiver, Reservation, Sender, MAX_MESSAGE, MAX_RING_CAPACITY,
};
pub use coord::{
    Barrier, BarrierWaitResult, Condition, Event, Latch, Lock, LockError, LockGuard, LockResult,
    Once, OnceRun, OwnerDied, Permit, ReadGuard, RwLock, Semaphore, Status as PrimitiveStatus,
    TryLockResult, WaitTimeoutResult, WriteGuard, DEFAULT_READER_SLOTS, MAX_BARRIER_PARTIES,
    MAX_READER_SLOTS, MAX_SEMAPHORE_VALUE,
};
pub use element::{AtomicElement, Element, FixedStr, Lookup, Scalar, TypeDescriptor};
pub use error::{Error, Result};
pub use map::{map_key_hash, Iter as MapIter, Map, RawMap, MAX_KEY_SIZE, MAX_MAP_CAPACITY};
pub use map::{RawSet, Set, SetIter};
pub use queue::{Queue, RawQueue, MAX_QUEUE_CAPACITY};
pub use segment::{
    is_shmds_segment, list_segments, validate_segment_name, Segment, SegmentOptions,
    DEFAULT_MAX_SIZE, DEFAULT_SEGMENT_SIZE, DEFAULT_TABLE_CAPACITY, MAX_SEGMENT_SIZE,
    MAX_TABLE_CAPACITY,
};
pub use stack::{RawStack, Stack, MAX_STACK_CAPACITY};
pub use table::EntryInfo;
pub use topic::{Subscriber, Topic, TopicOptions, TopicReservation};
pub use type_name::{human_type, TypeShape};

/// The outcome of [`Segment::check`].
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Number of live entries checked.
    pub entries: usize,
    /// Everything found wrong; empty when the segment is sound.
    pub problems: Vec<String>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Segment {
    /// Validate the whole segment: header, every entry's name and type, that
    /// blocks lie in the allocated heap without overlapping, and each
    /// structure's own header. Never panics on a damaged segment.
    pub fn check(&self) -> CheckReport {
        let mut report = CheckReport::default();
        report.problems.extend(self.map.header_drift());
        let entries = match self.entries() {
            Ok(e) => e,
            Err(e) => {
                report.problems.push(e.to_string());
                return report;
            }
        };
        report.entries = entries.len();
        let mut blocks: Vec<(u64, u64, &str)> = Vec::new();
        for info in &entries {
            match self.examine(info, true) {
                // Erased since the listing: nothing to check.
                Err(Error::Stale { .. }) => continue,
                Err(e) => report.problems.push(e.to_string()),
                Ok(_) => {}
            }
            blocks.push((
                info.offset,
                info.offset.saturating_add(info.size),
                &info.name,
            ));
        }
        blocks.sort();
        for pair in blocks.windows(2) {
            if pair[0].1 > pair[1].0 {
                report.problems.push(format!(
                    "blocks of {:?} and {:?} overlap",
                    pair[0].2, pair[1].2
                ));
            }
        }
        self.check_heap(&mut report);
        report
    }

    /// The heap part of [`check`](Segment::check): walk every block, check
    /// the free lists, and that each used block belongs to a live entry (or
    /// table chunk) that names it. Holds the registration lock while it
    /// walks when it can get it soon, so concurrent registrations do not
    /// show as damage.
    fn check_heap(&self, report: &mut CheckReport) {
        // The walk and the ownership check run on one quiet heap: a
        // registration in progress is not damage.
        let problems = self.with_quiet_heap(|table, heap| {
            let mut used = Vec::new();
            let end = heap.end()?;
            let stats = heap.walk_blocks(end, |b| {
                if b.state != layout::block_state::FREE {
                    used.push(*b);
                }
            })?;
            heap.check_lists(end, &stats)?;
            let mut leaks = Vec::new();
            for b in used {
                let data = b.offset + layout::BLOCK_HEADER_SIZE;
                let owned = if b.state == layout::block_state::TABLE {
                    let k = b.owner as usize;
                    k > 0
                        && k < layout::TABLE_CHUNKS
                        && self.map.header().table_chunks[k].load(crate::sync::Ordering::Acquire)
                            == data
                } else {
                    matches!(
                        table.snapshot(b.owner),
                        Ok(Some(info)) if info.offset == data && info.generation == b.owner_generation
                    )
                };
                if !owned {
                    leaks.push(format!(
                        "heap block at {} ({} bytes) is in use but no live entry or table chunk \
                         owns it (a leak)",
                        b.offset, b.size
                    ));
                }
            }
            if leaks.is_empty() {
                Ok(leaks)
            } else {
                // Reported only if a quiet heap shows it again.
                Err(Error::Corrupt {
                    name: self.name().to_owned(),
                    detail: leaks.join("; "),
                })
            }
        });
        if let Err(e) = problems {
            report.problems.push(e.to_string());
        }
    }

    /// Check one entry's type and block header and return its fill level
    /// (elements held) where that applies (queue, stack, map, set).
    pub fn inspect(&self, info: &EntryInfo) -> Result<Option<u64>> {
        self.examine(info, false)
    }

    /// Running totals of one entry since it was made, for rates (`shmds
    /// watch`, `shmds hz`), read without writing anything (a read-only
    /// segment handle works): `(in, out)` as a queue's pushes and pops, a
    /// channel's cells sent and received (64 bytes each, padding
    /// included), a topic's messages published (both); `None` for other
    /// kinds. The counts wrap; take differences with `wrapping_sub`.
    #[doc(hidden)]
    pub fn totals(&self, info: &EntryInfo) -> Result<Option<(u64, u64)>> {
        let handle = handle::Handle::at(self, info.clone())?;
        let totals = match info.kind {
            layout::kind::QUEUE => queue::totals(&handle).map(Some),
            layout::kind::CHANNEL => channel::totals(&handle).map(Some),
            layout::kind::TOPIC => topic::published(&handle).map(|n| Some((n, n))),
            _ => Ok(None),
        };
        // Erased meanwhile: the figures may be another structure's.
        let totals = totals.and_then(|t| handle.recheck().map(|()| t));
        handle.fresh(totals)
    }

    /// A map's or set's largest and mean probe bound (how many slots past
    /// its home a lookup reads), for `shmds watch`, read without writing
    /// anything; `None` for other kinds.
    #[doc(hidden)]
    pub fn probe_bounds(&self, info: &EntryInfo) -> Result<Option<(u64, f64)>> {
        if !matches!(info.kind, layout::kind::MAP | layout::kind::SET) {
            return Ok(None);
        }
        let handle = handle::Handle::at(self, info.clone())?;
        let bounds = map::probe_bounds(&handle).and_then(|b| handle.recheck().map(|()| Some(b)));
        handle.fresh(bounds)
    }

    fn examine(&self, info: &EntryInfo, deep: bool) -> Result<Option<u64>> {
        let corrupt = |detail: String| Error::Corrupt {
            name: self.name().to_owned(),
            detail: format!("entry {:?}: {detail}", info.name),
        };
        // A set's entry has no element type (its values have 0 bytes): its
        // key type is checked in its place.
        let (elem_type, elem_size) = match info.kind {
            layout::kind::SET if info.elem_type.is_empty() && info.elem_size == 0 => {
                (&info.key_type, info.key_size)
            }
            _ => (&info.elem_type, info.elem_size),
        };
        let parsed =
            TypeDescriptor::parse(elem_type).map_err(|e| corrupt(format!("element type: {e}")))?;
        if parsed.size() != elem_size as u64 || parsed.as_str() != elem_type {
            return Err(corrupt(format!(
                "element type {elem_type:?} does not describe {elem_size}-byte elements canonically"
            )));
        }
        let handle = handle::Handle::at(self, info.clone())?;
        let checked = match info.kind {
            layout::kind::ARRAY => array::check(&handle, deep),
            layout::kind::QUEUE => queue::check(&handle, deep),
            layout::kind::STACK => stack::check(&handle, deep),
            layout::kind::MAP | layout::kind::SET => map::check(&handle, deep),
            layout::kind::CHANNEL => channel::check(&handle, deep),
            layout::kind::TOPIC => topic::check(&handle, deep),
            layout::kind::LOCK..=layout::kind::ONCE => coord::check(&handle),
            other => Err(corrupt(format!("unknown kind {other}"))),
        };
        // Erased while we looked: not damage.
        handle.fresh(checked)
    }
}
