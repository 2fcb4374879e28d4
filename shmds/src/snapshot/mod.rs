//! Snapshots: a consistent copy of a live segment, written into a
//! content-addressed [`Store`] (64 KiB chunks named by their BLAKE3 hash,
//! each stored once, and a manifest named by its Merkle root), and
//! restored from it into a new segment, in /dev/shm or in a file.
//!
//! **Consistency.** [`Segment::snapshot`] pauses every other live process
//! attached to the segment (SIGSTOP, until all their threads are stopped),
//! copies the segment's bytes, and continues them (SIGCONT; also if the
//! snapshotting process dies in between, from a watchdog). A stopped process
//! is frozen at an instruction, so the copy is exactly what a crash of all
//! of them at that instant would leave. [`Store::restore`] then treats
//! every process stamped in the copy as dead and lets each structure's own
//! crash recovery take its claims over (see FORMAT.md, "What a crash leaves
//! behind"): no half-published queue slot is counted as present, a map
//! value being rewritten is removed (never torn), a lock held at the
//! instant is taken over by its next taker, who is told the owner died,
//! and counters are those of that instant. The snapshotting process's own
//! other threads are not paused: take snapshots from a thread whose process
//! does not change the segment meanwhile (or with `shmds snapshot`).
//!
//! ```
//! use shmds::{snapshot::Store, Segment};
//! # let name = format!("doc-snap-{}", std::process::id());
//! # let copy = format!("{name}-copy");
//! # let dir = std::env::temp_dir().join(format!("doc-store-{}", std::process::id()));
//! let seg = Segment::create(&name, 1 << 20)?;
//! seg.create_queue::<u64>("jobs", 64)?.push(7, None)?;
//! let store = Store::open(&dir)?;
//! let snap = seg.snapshot(&store)?;
//! let back = store.restore(&snap.id, &copy)?;
//! assert_eq!(back.open_queue::<u64>("jobs")?.try_pop()?, Some(7));
//! # drop(back);
//! # Segment::remove(&name)?;
//! # Segment::remove(&copy)?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), shmds::Error>(())
//! ```

mod pause;
pub mod store;

pub use store::{
    EntryChange, GcReport, Manifest, SnapshotEntry, SnapshotInfo, SnapshotMeta, Store,
    VerifyReport, CHUNK_SIZE,
};

use crate::error::{Error, Result};
use crate::segment::Segment;
use std::time::Duration;

/// What a snapshot took: the store's account and how long the segment's
/// other processes were paused.
#[derive(Clone, Debug)]
pub struct Taken {
    /// The snapshot as stored (id, dedup figures).
    pub info: SnapshotInfo,
    /// Processes paused for the copy.
    pub paused_processes: usize,
    /// How long they were paused.
    pub paused_for: Duration,
}

impl std::ops::Deref for Taken {
    type Target = SnapshotInfo;
    fn deref(&self) -> &SnapshotInfo {
        &self.info
    }
}

impl Segment {
    /// Write a consistent snapshot of this segment into `store` (see the
    /// [module documentation](crate::snapshot) for what it guarantees and
    /// how): the other processes attached to it are paused while its bytes
    /// are copied (a memory copy: 0.1 ms per MiB of a segment in cache, up
    /// to 0.7 ms per MiB from memory on a slow machine; see BENCHMARKS.md),
    /// then the copy is hashed and its new chunks written while they run
    /// again.
    ///
    /// Fails without pausing anyone if some attached processes could not be
    /// recorded (more than the 128 attachment slots), and without writing
    /// anything if a process cannot be paused (another user's).
    pub fn snapshot(&self, store: &Store) -> Result<Taken> {
        let (image, entries, paused, paused_for) = self.capture()?;
        let created_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let entries = entries
            .into_iter()
            .map(|e| SnapshotEntry {
                kind: e.kind_name().to_owned(),
                key_descriptor: (!e.key_type.is_empty()).then(|| e.key_type.clone()),
                type_descriptor: e.elem_type,
                name: e.name,
                offset: e.offset,
                size: e.size,
                hash: [0; 32],
            })
            .collect();
        let info = store.write(
            &image,
            SnapshotMeta {
                source: self.name().to_owned(),
                segment_format: crate::layout::FORMAT_VERSION,
                created_unix_ns,
                entries,
            },
        )?;
        Ok(Taken {
            info,
            paused_processes: paused,
            paused_for,
        })
    }

    /// Copy `[0, size)` and the table while every other attached process
    /// is stopped.
    fn capture(&self) -> Result<(Vec<u8>, Vec<crate::EntryInfo>, usize, Duration)> {
        let map = &self.map;
        let overflow = map
            .header()
            .attach_overflow
            .load(crate::sync::Ordering::Acquire);
        if overflow != 0 {
            return Err(Error::InvalidArgument(format!(
                "segment {:?} has {overflow} attached processes beyond its 128 attachment slots, \
                 which cannot all be paused for a consistent snapshot (detach some first)",
                self.name()
            )));
        }
        let me = crate::process::current_pid();
        let others: Vec<u32> = map
            .attach_slots()
            .iter()
            .filter_map(|slot| {
                let word = slot.process.load(crate::sync::Ordering::Acquire);
                let (pid, count) = (word as u32, (word >> 32) as u32);
                let start = slot.start_time.load(crate::sync::Ordering::Acquire);
                (pid != 0 && count != 0 && pid != me && crate::process::is_same_process(pid, start))
                    .then_some(pid)
            })
            .collect();
        // The copy's memory is allocated and touched before anyone is
        // paused (first touches of fresh pages are the slow part), with room
        // for some growth meanwhile.
        let guess = map.header().size.load(crate::sync::Ordering::Acquire);
        let room = guess.saturating_add(guess / 8).min(map.geometry().max_size);
        let mut image = Vec::new();
        image.try_reserve_exact(room as usize).map_err(|_| {
            Error::io(
                "allocating the snapshot copy",
                std::io::ErrorKind::OutOfMemory,
            )
        })?;
        image.resize(room as usize, 0);
        let paused = pause::Paused::stop(self.name(), &others)?;
        crate::fault::pause_point("snapshot.paused");
        let size = map.header().size.load(crate::sync::Ordering::Acquire);
        map.ensure_mapped(size)?;
        if size > image.len() as u64 {
            // It grew by more than the room left: copy what we must.
            image.resize(size as usize, 0);
        }
        crate::segment::copy_out(map, 0, &mut image[..size as usize]);
        image.truncate(size as usize);
        let entries = self.entries();
        let count = paused.count();
        let paused_for = if count == 0 {
            Duration::ZERO
        } else {
            paused.elapsed()
        };
        drop(paused);
        Ok((image, entries?, count, paused_for))
    }
}

impl Store {
    /// Restore snapshot `id` (or a unique prefix of it) as the new segment
    /// `name` (a /dev/shm name, or a file path for a durable segment), and
    /// open it. Every chunk is re-hashed as it is read (a damaged one fails
    /// with [`Error::Damaged`]); a snapshot of another format version is
    /// refused ([`Error::Incompatible`]). No claim of the snapshot's
    /// processes is trusted: each is taken over by its structure's crash
    /// recovery before the segment is ready.
    pub fn restore(&self, id: &str, name: &str) -> Result<Segment> {
        let (manifest, image) = self.read(id)?;
        if manifest.segment_format != crate::layout::FORMAT_VERSION {
            return Err(Error::Incompatible {
                name: manifest.id.clone(),
                detail: format!(
                    "the snapshot is of format version {}; this build restores only version {} \
                     (use the shmds that took it)",
                    manifest.segment_format,
                    crate::layout::FORMAT_VERSION
                ),
            });
        }
        let seg = Segment::create_from_image(name, &image)?;
        // The image's table must be the one the manifest describes (the
        // manifest's root hash covers its entries, the chunks' hashes the
        // image: they can disagree only if the store was written wrongly).
        let found = seg.entries();
        let mismatch = match &found {
            Err(e) => Some(e.to_string()),
            Ok(found) => manifest.entries.iter().find_map(|want| {
                let got = found.iter().find(|e| e.name == want.name);
                let same = got.is_some_and(|e| {
                    e.kind_name() == want.kind
                        && e.elem_type == want.type_descriptor
                        && (!e.key_type.is_empty()).then(|| e.key_type.clone())
                            == want.key_descriptor
                        && e.offset == want.offset
                        && e.size == want.size
                });
                (!same).then(|| match got {
                    None => format!(
                        "the manifest lists entry {:?}, the image has none",
                        want.name
                    ),
                    Some(e) => format!(
                        "the manifest says entry {:?} is a {} of {}, the image holds a {} of {}",
                        want.name,
                        want.kind,
                        crate::human_type(&want.type_descriptor),
                        e.kind_name(),
                        crate::human_type(&e.elem_type)
                    ),
                })
            }),
        };
        let extra = match (&found, mismatch.is_none()) {
            (Ok(found), true) if found.len() != manifest.entries.len() => Some(format!(
                "the image holds {} entries, the manifest lists {}",
                found.len(),
                manifest.entries.len()
            )),
            _ => None,
        };
        if let Some(detail) = mismatch.or(extra) {
            drop(seg);
            let _ = Segment::remove(name);
            return Err(Error::Damaged {
                what: format!("snapshot {}", manifest.id),
                detail: format!("{detail}; nothing was restored"),
            });
        }
        Ok(seg)
    }
}
