//! A segment's mapping: one address range reserved for the segment's
//! largest size, with the file mapped over its first part. Growth maps more
//! of the file into the same range, so the base address (and every pointer
//! a structure handle holds) never moves.

use super::{Geometry, PAGE};
use crate::error::{Error, Result};
use crate::layout::{Entry, SegmentHeader, SEGMENT_HEADER_SIZE};
use crate::sync::Ordering;
use crate::table::Table;
use rustix::mm::{MapFlags, ProtFlags};
use std::fs::File;
use std::sync::atomic::AtomicU64 as LocalU64;
use std::time::Duration;

/// The mapping shared by a segment and all handles opened from it.
pub(crate) struct Mapping {
    name: String,
    /// The segment's file, kept open to map more of it as it grows.
    file: File,
    /// Start of the reservation: `geometry.max_size` bytes of address space,
    /// of which `[0, mapped)` maps the file and the rest is inaccessible.
    base: *mut u8,
    /// Bytes of the file mapped at `base`: whole pages, only grows, never
    /// more than the file had when it was mapped.
    mapped: LocalU64,
    /// Serialises mapping more of the file in this process.
    extending: std::sync::Mutex<()>,
    geometry: Geometry,
    writable: bool,
    lock_timeout: Duration,
    /// Table chunk offsets seen valid once (they never change), so a
    /// rewritten header word cannot move a chunk this process uses.
    chunks: [LocalU64; crate::layout::TABLE_CHUNKS],
    /// Where this mapping's process is counted as attached (crate::attach).
    pub(crate) attachment: crate::attach::Attachment,
    /// Flush a durable segment's file when this mapping closes.
    pub(crate) flush_on_close: bool,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through
// atomics or through element copies whose synchronisation the structures
// document. The raw base pointer is what makes it !Sync by default.
unsafe impl Sync for Mapping {}
// SAFETY: as above; the mapping is not tied to the thread that made it.
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.flush_on_close && super::durable::is_durable(self) {
            let _ = super::durable::flush_range(self, 0, self.len());
        }
        // Only a process that was attached seals: an open refused (say, as
        // damaged) must leave the file as it found it.
        let attached = self.attachment.is_ours();
        crate::attach::detach(self);
        if attached && super::durable::is_durable(self) {
            super::durable::close(self);
        }
        // SAFETY: `base` is the start of our reservation of
        // `geometry.max_size` bytes, made by `Mapping::new`; no handle
        // outlives the Arc<Mapping> it holds, so nothing uses it any more.
        unsafe {
            let _ = rustix::mm::munmap(self.base.cast(), self.geometry.max_size as usize);
        }
    }
}

impl Mapping {
    /// Reserve `geometry.max_size` bytes of address space and map the first
    /// `size` bytes of `file` there (`size` whole pages, at most the file's
    /// size, checked by the caller).
    pub(crate) fn new(
        name: String,
        file: File,
        geometry: Geometry,
        size: u64,
        writable: bool,
        lock_timeout: Duration,
    ) -> Result<Mapping> {
        debug_assert!(size <= geometry.max_size && size % PAGE == 0);
        // SAFETY: a fresh anonymous reservation at an address the kernel
        // picks; PROT_NONE, so nothing can touch the part not mapped yet.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                geometry.max_size as usize,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .map_err(|e| Error::io("reserving address space (mmap)", e))?;
        let mapping = Mapping {
            name,
            file,
            base: base.cast(),
            mapped: LocalU64::new(0),
            extending: std::sync::Mutex::new(()),
            geometry,
            writable,
            lock_timeout,
            chunks: std::array::from_fn(|_| LocalU64::new(0)),
            attachment: Default::default(),
            flush_on_close: false,
        };
        mapping.map_file(0, size)?;
        mapping
            .mapped
            .store(size, std::sync::atomic::Ordering::Release);
        Ok(mapping)
    }

    /// Map `[from, to)` of the file over the same range of the reservation.
    fn map_file(&self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        let prot = if self.writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: `[from, to)` lies inside our reservation (to <= max_size,
        // the callers' bound) and is not mapped yet (from = our `mapped`),
        // so MAP_FIXED replaces only the inaccessible reservation; the file
        // has at least `to` bytes (the callers checked its size).
        unsafe {
            rustix::mm::mmap(
                self.base.add(from as usize).cast(),
                (to - from) as usize,
                prot,
                MapFlags::SHARED | MapFlags::FIXED,
                &self.file,
                from,
            )
        }
        .map(|_| ())
        .map_err(|e| Error::io("mmap", e))
    }

    /// The segment's open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.base
    }

    /// Bytes mapped: everything below this may be touched.
    pub(crate) fn len(&self) -> u64 {
        self.mapped.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Make sure `[0, end)` is mapped: when the segment has grown past what
    /// this process mapped, map the rest (up to the segment's current size,
    /// and never past the file's end, so touching it cannot fault).
    pub(crate) fn ensure_mapped(&self, end: u64) -> Result<()> {
        if end <= self.len() {
            return Ok(());
        }
        let _guard = self.extending.lock().unwrap_or_else(|e| e.into_inner());
        let have = self.len();
        if end <= have {
            return Ok(());
        }
        let stated = self.header().size.load(Ordering::Acquire);
        let file = rustix::fs::fstat(&self.file)
            .map_err(|e| Error::io("fstat", e))?
            .st_size as u64;
        let target = stated.min(file).min(self.geometry.max_size) & !(PAGE - 1);
        if target < end {
            return Err(Error::Corrupt {
                name: self.name.clone(),
                detail: format!(
                    "byte {end} is past the segment's end (it says it has {stated} bytes, its file                      {file})"
                ),
            });
        }
        self.map_file(have, target)?;
        self.mapped
            .store(target, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Grow the segment to `new_size` bytes (whole pages, `<= max_size`):
    /// reserve the file space (a full /dev/shm fails here, never later with
    /// SIGBUS), map it, then publish the size. The caller holds the
    /// registration lock.
    pub(crate) fn grow_file(&self, new_size: u64) -> Result<()> {
        let have = self.len();
        if new_size <= have {
            return Ok(());
        }
        super::files::reserve_range(&self.file, have, new_size).map_err(|e| match e {
            rustix::io::Errno::NOSPC | rustix::io::Errno::FBIG | rustix::io::Errno::NOMEM => {
                Error::NoSpace {
                    name: self.name.clone(),
                    requested: new_size,
                }
            }
            other => Error::io("fallocate", other),
        })?;
        crate::fault::pause_point("segment.grow.extended");
        let _guard = self.extending.lock().unwrap_or_else(|e| e.into_inner());
        let have = self.len();
        self.map_file(have, new_size)?;
        self.mapped
            .store(new_size, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// The validated offset of table chunk `k` (`1..TABLE_CHUNKS`), mapped,
    /// or `None` when the chunk does not exist (yet) or its header word is
    /// not a valid chunk offset.
    pub(crate) fn chunk_offset(&self, k: usize) -> Option<u64> {
        let local = self.chunks.get(k)?;
        let known = local.load(std::sync::atomic::Ordering::Acquire);
        if known != 0 {
            return Some(known);
        }
        let offset = self.header().table_chunks.get(k)?.load(Ordering::Acquire);
        let g = &self.geometry;
        let bytes = crate::table::chunk_bytes(g.table_capacity, k)?;
        let end = offset.checked_add(bytes)?;
        if offset < g.heap_offset
            || offset % crate::layout::CACHE_LINE != 0
            || end > g.max_size
            || self.ensure_mapped(end).is_err()
        {
            return None;
        }
        local.store(offset, std::sync::atomic::Ordering::Release);
        Some(offset)
    }

    /// Entries of table chunk `k`: chunk 0 after the attachment slots, the
    /// others where the header says (validated once, see `chunk_offset`).
    pub(crate) fn chunk(&self, k: usize) -> Option<&[Entry]> {
        let g = &self.geometry;
        let (offset, len) = if k == 0 {
            (crate::layout::TABLE_OFFSET, g.table_capacity as usize)
        } else {
            let offset = self.chunk_offset(k)?;
            (offset, (g.table_capacity as usize) << k)
        };
        // SAFETY: chunk 0 lies between TABLE_OFFSET and heap_offset (checked
        // when the segment was opened: table end <= heap_offset <= size);
        // chunk k >= 1 was checked by `chunk_offset` to be cache-line
        // aligned and mapped for its whole length. Entry is repr(C) of
        // atomics, so other processes' writes are races on values only.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.add(offset as usize).cast::<Entry>(), len)
        })
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least SEGMENT_HEADER_SIZE bytes (checked
        // before a Mapping is built), page-aligned, and SegmentHeader is
        // repr(C) with atomics for every field that changes after creation.
        unsafe { &*self.base().cast::<SegmentHeader>() }
    }

    pub(crate) fn table(&self) -> Table<'_> {
        Table {
            header: self.header(),
            memory: self,
            segment: &self.name,
            lock_timeout: self.lock_timeout,
        }
    }

    /// The attachment slots after the header.
    pub(crate) fn attach_slots(&self) -> &[crate::layout::AttachSlot] {
        // SAFETY: the mapping is at least TABLE_OFFSET bytes (the table
        // starts there, checked before a Mapping is built); the slots are
        // ATTACH_SLOTS repr(C) pairs of atomics at SEGMENT_HEADER_SIZE, a
        // multiple of 8.
        unsafe {
            std::slice::from_raw_parts(
                self.base()
                    .add(SEGMENT_HEADER_SIZE as usize)
                    .cast::<crate::layout::AttachSlot>(),
                crate::layout::ATTACH_SLOTS,
            )
        }
    }

    /// The validated copy of the header's fixed fields.
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// How long to wait for a live peer that holds a lock or claim.
    pub(crate) fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }
}

impl Mapping {
    /// The header's fixed fields that no longer hold what they held when
    /// this process opened the segment (someone rewrote them), in words.
    pub(crate) fn header_drift(&self) -> Vec<String> {
        use super::header::read_fixed;
        use crate::layout::{segment_state, ENTRY_SIZE, FORMAT_VERSION, MAGIC};
        let now = read_fixed(self.base());
        let g = &self.geometry;
        let mut out = Vec::new();
        const OVERWRITTEN: &str = "something overwrote the header; this process keeps using \
                                   the values it validated";
        if now.magic != MAGIC {
            out.push(format!(
                "header magic is {:02x?}, not the shmds magic ({OVERWRITTEN})",
                now.magic
            ));
        }
        if now.fingerprint != crate::layout::fingerprint() {
            out.push(format!(
                "header fingerprint is {:#018x}, not {:#018x} ({OVERWRITTEN})",
                now.fingerprint,
                crate::layout::fingerprint()
            ));
        }
        let fields: [(&str, u64, u64); 8] = [
            (
                "format version",
                now.format_version.into(),
                FORMAT_VERSION.into(),
            ),
            ("header size", now.header_size.into(), SEGMENT_HEADER_SIZE),
            ("maximum size", now.max_size, g.max_size),
            (
                "table offset",
                now.table_offset,
                crate::layout::TABLE_OFFSET,
            ),
            (
                "table capacity",
                now.table_capacity.into(),
                g.table_capacity.into(),
            ),
            ("entry size", now.entry_size.into(), ENTRY_SIZE),
            ("heap offset", now.heap_offset, g.heap_offset),
            ("seed", now.seed, g.seed),
        ];
        for (field, found, expected) in fields {
            if found != expected {
                out.push(format!(
                    "header field {field} is {found}, not {expected} as when the segment was \
                     opened ({OVERWRITTEN})"
                ));
            }
        }
        let state = self.header().state.load(Ordering::Acquire);
        if state != segment_state::READY {
            out.push(format!(
                "header state is {state}, not {} (ready) as when the segment was opened",
                segment_state::READY
            ));
        }
        let size = self.header().size.load(Ordering::Acquire);
        if size < g.heap_offset || size > g.max_size || size % PAGE != 0 {
            out.push(format!(
                "the segment's size {size} is outside [{}, {}] or not whole pages",
                g.heap_offset, g.max_size
            ));
        }
        out
    }
}
impl crate::alloc::Memory for Mapping {
    fn block(&self, offset: u64) -> Option<&crate::layout::BlockHeader> {
        let end = offset.checked_add(crate::layout::BLOCK_HEADER_SIZE)?;
        if offset < self.geometry.heap_offset || offset % crate::layout::CACHE_LINE != 0 {
            return None;
        }
        if end > self.len() && self.ensure_mapped(end).is_err() {
            return None;
        }
        // SAFETY: checked just above: cache-line aligned, inside the heap
        // and mapped; BlockHeader is repr(C) of atomics (64 bytes), so other
        // processes' writes are races on values only.
        Some(unsafe {
            &*self
                .base
                .add(offset as usize)
                .cast::<crate::layout::BlockHeader>()
        })
    }

    fn chunk(&self, k: usize) -> Option<&[Entry]> {
        Mapping::chunk(self, k)
    }

    fn zero(&self, offset: u64, len: u64) {
        let Some(end) = offset.checked_add(len) else {
            return;
        };
        if offset < self.geometry.heap_offset || end > self.len() {
            return;
        }
        // SAFETY: [offset, end) is inside the mapped heap (checked just
        // above); the heap only hands it to this call while the block is
        // owned by the registration lock holder (being allocated or freed).
        unsafe { std::ptr::write_bytes(self.base.add(offset as usize), 0, len as usize) };
    }

    fn heap_start(&self) -> u64 {
        self.geometry.heap_offset
    }

    fn max_size(&self) -> u64 {
        self.geometry.max_size
    }

    fn table_capacity(&self) -> u32 {
        self.geometry.table_capacity
    }

    fn flags(&self) -> u32 {
        self.geometry.flags
    }

    fn ensure_mapped(&self, end: u64) -> Result<()> {
        Mapping::ensure_mapped(self, end)
    }

    fn grow_to(&self, new_size: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::PermissionDenied {
                name: self.name.clone(),
            });
        }
        self.grow_file(new_size)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
