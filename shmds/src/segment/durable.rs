//! Durable segments: a segment in a regular file (any path outside
//! /dev/shm), in the same format, mapped shared, so processes use it exactly
//! as a /dev/shm segment. What this file adds is what a file outlives:
//!
//! - **the boot**: the header records the Linux boot id. The first opener in
//!   a later boot (under the file's `flock`) revokes every claim stamped by
//!   a process of the earlier boot ([`crate::segment::revoke`]) before
//!   anyone uses the segment, so a pid reused after the reboot is never
//!   taken for the dead holder;
//! - **the disk**: line 0 of the header carries a BLAKE3 checksum, checked
//!   at every open; the last process to close the segment *seals* it: it
//!   writes a trailer of per-chunk BLAKE3 checksums after the segment's
//!   bytes, and the next opener checks every chunk before anything is used.
//!   A segment not sealed (its processes died, or the machine stopped) is
//!   opened unverified past line 0 and recovered like a crash.
//!
//! Every step that changes `durable`, `boot_id` or the trailer holds an
//! exclusive `flock` on the file, so openers and the sealer never interleave.

use super::mapping::Mapping;
use super::Segment;
use crate::error::{Error, Result};
use crate::layout::{durable_state, segment_flags, SegmentHeader};
use crate::sync::Ordering;
use std::time::{Duration, Instant};

/// Bytes each trailer checksum covers.
pub(crate) const SEAL_CHUNK: u64 = 64 * 1024;
/// The trailer's first 8 bytes.
const TRAILER_MAGIC: [u8; 8] = *b"SHMDSEAL";
/// Trailer: magic, version u32, pad u32, covered size u64, chunk size u64,
/// then one 32-byte BLAKE3 hash per chunk, then the BLAKE3 of all of that.
const TRAILER_HEAD: u64 = 32;

/// Trailer length for `size` bytes of segment.
pub(crate) fn trailer_len(size: u64) -> u64 {
    TRAILER_HEAD + size.div_ceil(SEAL_CHUNK) * 32 + 32
}

/// The current boot's id (16 bytes), or zeros if it cannot be read (then
/// every open looks like the same boot: claims are judged by liveness, as
/// in /dev/shm).
pub(crate) fn boot_id() -> [u8; 16] {
    static BOOT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let hex: Vec<u8> = text
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).unwrap_or(0) as u8)
            .collect();
        let mut id = [0u8; 16];
        if hex.len() == 32 {
            for (i, b) in id.iter_mut().enumerate() {
                *b = hex[2 * i] << 4 | hex[2 * i + 1];
            }
        }
        id
    })
}

fn boot_words(id: [u8; 16]) -> [u64; 2] {
    let (a, b) = id.split_at(8);
    [
        u64::from_ne_bytes(a.try_into().expect("8 bytes")),
        u64::from_ne_bytes(b.try_into().expect("8 bytes")),
    ]
}

/// BLAKE3 of line 0 of the header at `base` (a live mapping of at least a
/// header), as four words.
fn line0_sum(base: *const u8) -> [u64; 4] {
    // SAFETY: (caller) the mapping has at least 64 bytes; line 0 is copied
    // once with atomic loads (`Line::read`), so a concurrent writer can
    // only make the sum differ, never cause a torn read of our copy.
    let line = unsafe { crate::layout::Line::read(base) };
    let hash = blake3::hash(&line.to_bytes());
    let mut words = [0u64; 4];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u64::from_ne_bytes(hash.as_bytes()[8 * i..8 * i + 8].try_into().expect("8"));
    }
    words
}

/// An exclusive `flock` on a segment's file, released on drop.
struct FileLock<'a>(&'a std::fs::File);

impl<'a> FileLock<'a> {
    /// Take the lock, waiting up to `timeout` for another process's open or
    /// seal (both are short).
    fn take(file: &'a std::fs::File, name: &str, timeout: Duration) -> Result<FileLock<'a>> {
        use rustix::fs::FlockOperation::NonBlockingLockExclusive;
        let deadline = Instant::now() + timeout.max(Duration::from_secs(5));
        loop {
            match rustix::fs::flock(file, NonBlockingLockExclusive) {
                Ok(()) => return Ok(FileLock(file)),
                Err(rustix::io::Errno::WOULDBLOCK) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("flock", e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    name: name.to_owned(),
                    detail: "another process has held its file lock (flock) for over 5 s while \
                             opening or sealing it; try again"
                        .into(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// Whether `map` is a durable segment's.
pub(crate) fn is_durable(map: &Mapping) -> bool {
    map.geometry().flags & segment_flags::DURABLE != 0
}

/// Creation: stamp the boot, the state and line 0's checksum (before
/// `READY`; the creator holds the only handle, and openers wait for READY).
pub(super) fn init(map: &Mapping) {
    let h = map.header();
    for (w, v) in h.boot_id.iter().zip(boot_words(boot_id())) {
        w.store(v, Ordering::Relaxed);
    }
    h.durable.store(durable_state::OPEN, Ordering::Relaxed);
    let sum = line0_sum(map.base());
    // SAFETY: header_sum is plain u64 words inside our own mapping's header,
    // written before READY (Release) by the only process using it.
    unsafe {
        let p = core::ptr::addr_of!(h.header_sum) as *mut u64;
        for (i, w) in sum.iter().enumerate() {
            core::ptr::write_volatile(p.add(i), *w);
        }
    }
}

/// Opening a durable segment, between mapping it and attaching: under the
/// file lock, check line 0's checksum and, if sealed, every chunk; unseal;
/// if the segment was last opened in another boot, revoke every claim.
/// Attaches the process before the lock is released, so a concurrent close
/// never seals a segment that is being opened.
pub(super) fn open(seg: &Segment, read_only: bool, timeout: Duration) -> Result<()> {
    let map = &*seg.map;
    let name = map.name();
    let _lock = FileLock::take(map.file(), name, timeout)?;
    let h = map.header();
    // SAFETY: header_sum lies inside the mapped header; plain words read
    // with volatile loads (another process may rewrite them: then the
    // comparison fails, which is the point).
    let stored: [u64; 4] = unsafe {
        let p = core::ptr::addr_of!(h.header_sum) as *const u64;
        core::array::from_fn(|i| core::ptr::read_volatile(p.add(i)))
    };
    if stored != line0_sum(map.base()) {
        return Err(damaged(
            name,
            "its header's checksum does not match (the file was changed on disk or is not a \
             durable shmds segment)"
                .into(),
        ));
    }
    if h.durable.load(Ordering::Acquire) == durable_state::SEALED {
        verify_seal(map)?;
        if !read_only {
            h.durable.store(durable_state::OPEN, Ordering::Release);
            flush_range(map, 0, crate::layout::SEGMENT_HEADER_SIZE)?;
            // Drop the trailer: growth must find zeros past `size`.
            let size = h.size.load(Ordering::Acquire);
            rustix::fs::ftruncate(map.file(), size).map_err(|e| Error::io("ftruncate", e))?;
        }
    }
    let now = boot_words(boot_id());
    let then = [
        h.boot_id[0].load(Ordering::Acquire),
        h.boot_id[1].load(Ordering::Acquire),
    ];
    if then != now && !read_only {
        // Nobody of this boot has attached yet: we hold the file lock and
        // every opener takes it before attaching.
        super::revoke::revoke_all(seg)?;
        for (w, v) in h.boot_id.iter().zip(now) {
            w.store(v, Ordering::Release);
        }
    }
    crate::attach::attach(map)
}

/// Closing a durable segment, after detaching: if no process is attached
/// any more, seal it (flush, write the checksum trailer, mark it SEALED).
/// Errors are ignored: an unsealed segment is only opened unverified.
pub(crate) fn close(map: &Mapping) {
    if !map.writable() {
        return;
    }
    let Ok(_lock) = FileLock::take(map.file(), map.name(), Duration::from_secs(5)) else {
        return;
    };
    if crate::attach::anyone_attached(map) {
        return;
    }
    let _ = seal(map);
}

/// Write the trailer and mark the segment SEALED (holding the file lock,
/// nobody attached).
fn seal(map: &Mapping) -> Result<()> {
    let h = map.header();
    let size = h.size.load(Ordering::Acquire);
    if size > map.len() || h.durable.load(Ordering::Acquire) != durable_state::OPEN {
        return Ok(());
    }
    flush_range(map, 0, size)?;
    let mut trailer = Vec::with_capacity(trailer_len(size) as usize);
    trailer.extend_from_slice(&TRAILER_MAGIC);
    trailer.extend_from_slice(&1u32.to_le_bytes());
    trailer.extend_from_slice(&0u32.to_le_bytes());
    trailer.extend_from_slice(&size.to_le_bytes());
    trailer.extend_from_slice(&SEAL_CHUNK.to_le_bytes());
    let mut at = 0;
    while at < size {
        let end = (at + SEAL_CHUNK).min(size);
        trailer.extend_from_slice(chunk_hash(map, at, end, true).as_bytes());
        at = end;
    }
    let sum = blake3::hash(&trailer);
    trailer.extend_from_slice(sum.as_bytes());
    write_all_at(map.file(), &trailer, size)?;
    rustix::fs::fdatasync(map.file()).map_err(|e| Error::io("fdatasync", e))?;
    h.durable.store(durable_state::SEALED, Ordering::Release);
    flush_range(map, 0, crate::layout::SEGMENT_HEADER_SIZE)?;
    Ok(())
}

/// BLAKE3 of `[from, to)` of the mapping; with `sealed`, as the bytes will
/// be once `durable` reads SEALED (the chunk holding the header).
fn chunk_hash(map: &Mapping, from: u64, to: u64, sealed: bool) -> blake3::Hash {
    let mut bytes = vec![0u8; (to - from) as usize];
    copy_out(map, from, &mut bytes);
    let at = core::mem::offset_of!(SegmentHeader, durable) as u64;
    if from <= at && at + 4 <= to {
        let state = if sealed {
            durable_state::SEALED
        } else {
            durable_state::OPEN
        };
        let split = (at - from) as usize;
        bytes[split..split + 4].copy_from_slice(&state.to_ne_bytes());
    }
    blake3::hash(&bytes)
}

/// Copy `[from, from + out.len())` of the mapping into `out`.
pub(crate) fn copy_out(map: &Mapping, from: u64, out: &mut [u8]) {
    assert!(from.saturating_add(out.len() as u64) <= map.len());
    // SAFETY: the range lies inside our mapping (asserted); the bytes may
    // change while they are copied (another process writes), which leaves a
    // mix in `out` that the callers' checks report, as with every element
    // copy out of shared memory (copied through a raw pointer, never
    // referenced as a slice).
    unsafe {
        std::ptr::copy_nonoverlapping(map.base().add(from as usize), out.as_mut_ptr(), out.len())
    }
}

/// Check a sealed segment's trailer against its bytes.
fn verify_seal(map: &Mapping) -> Result<()> {
    let name = map.name();
    let size = map.header().size.load(Ordering::Acquire);
    if size > map.len() {
        return Err(damaged(
            name,
            format!("its size {size} is past its mapping"),
        ));
    }
    let len = trailer_len(size);
    let mut trailer = vec![0u8; len as usize];
    let file_len = rustix::fs::fstat(map.file())
        .map_err(|e| Error::io("fstat", e))?
        .st_size as u64;
    let missing = || {
        damaged(
            name,
            "it is marked sealed but its checksum trailer is missing or cut short (the file was \
             truncated or copied without its end)"
                .into(),
        )
    };
    if file_len < size + len {
        return Err(missing());
    }
    read_exact_at(map.file(), &mut trailer, size)?;
    let (body, sum) = trailer.split_at(trailer.len() - 32);
    if body[..8] != TRAILER_MAGIC || blake3::hash(body).as_bytes() != sum {
        return Err(missing());
    }
    let covered = u64::from_le_bytes(body[16..24].try_into().expect("8"));
    let chunk = u64::from_le_bytes(body[24..32].try_into().expect("8"));
    if covered != size || chunk != SEAL_CHUNK {
        return Err(missing());
    }
    let mut bad = Vec::new();
    let mut at = 0;
    let mut k = 0usize;
    while at < size {
        let end = (at + SEAL_CHUNK).min(size);
        let want = &body[TRAILER_HEAD as usize + 32 * k..TRAILER_HEAD as usize + 32 * (k + 1)];
        if chunk_hash(map, at, end, true).as_bytes() != want {
            bad.push(format!("{at}..{end}"));
        }
        at = end;
        k += 1;
    }
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = bad.iter().take(8).map(String::as_str).collect();
    Err(damaged(
        name,
        format!(
            "{} of its {k} chunks of 64 KiB do not match the checksums written when it was last \
             closed (bytes {}{}); restore it from a snapshot, or remove it",
            bad.len(),
            shown.join(", "),
            if bad.len() > shown.len() { ", ..." } else { "" }
        ),
    ))
}

fn damaged(name: &str, detail: String) -> Error {
    Error::Damaged {
        what: format!("durable segment {name:?}"),
        detail,
    }
}

/// msync `[from, to)` (rounded to pages) and fsync the file.
pub(crate) fn flush_range(map: &Mapping, from: u64, to: u64) -> Result<()> {
    let from = from & !(super::PAGE - 1);
    let to = to.min(map.len());
    if to <= from {
        return Ok(());
    }
    // SAFETY: `[from, to)` lies inside our mapping (to <= len); msync only
    // writes dirty pages back, it changes no memory.
    unsafe {
        rustix::mm::msync(
            map.base().add(from as usize).cast(),
            (to - from) as usize,
            rustix::mm::MsyncFlags::SYNC,
        )
    }
    .map_err(|e| Error::io("msync", e))?;
    rustix::fs::fsync(map.file()).map_err(|e| Error::io("fsync", e))
}

fn write_all_at(file: &std::fs::File, mut buf: &[u8], mut at: u64) -> Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::pwrite(file, buf, at).map_err(|e| Error::io("pwrite", e))?;
        if n == 0 {
            return Err(Error::io("pwrite", rustix::io::Errno::NOSPC));
        }
        buf = &buf[n..];
        at += n as u64;
    }
    Ok(())
}

fn read_exact_at(file: &std::fs::File, mut buf: &mut [u8], mut at: u64) -> Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::pread(file, &mut *buf, at).map_err(|e| Error::io("pread", e))?;
        if n == 0 {
            return Err(Error::io("pread", rustix::io::Errno::NODATA));
        }
        buf = &mut buf[n..];
        at += n as u64;
    }
    Ok(())
}

impl Segment {
    /// Make everything written to a durable segment so far survive a crash
    /// of the machine: write its dirty pages to its file and wait for the
    /// disk (`msync` and `fsync`). A /dev/shm segment has no disk: this
    /// does nothing for it. Changes made after `flush` returns are on disk
    /// only after the next one (or the last close, which seals the file).
    ///
    /// ```
    /// use shmds::Segment;
    /// # let dir = std::env::temp_dir().join(format!("doc-flush-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// let path = dir.join("state.shmds"); // a path: a durable segment
    /// let seg = Segment::create(path.to_str().unwrap(), 1 << 20)?;
    /// seg.create_array::<u64>("totals", 4)?.set(0, 42)?;
    /// seg.flush()?;
    /// # drop(seg);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), shmds::Error>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        if !is_durable(&self.map) {
            return Ok(());
        }
        let size = self.map.header().size.load(Ordering::Acquire);
        flush_range(&self.map, 0, size)
    }

    /// Whether this segment lives in a regular file (a durable segment)
    /// rather than in /dev/shm.
    pub fn is_durable(&self) -> bool {
        is_durable(&self.map)
    }
}
