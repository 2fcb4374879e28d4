//! The segment: a named POSIX shared memory region holding a header, the
//! table of named entries, and the heap the structures are allocated from.

mod durable;
mod files;
mod header;
mod mapping;
mod revoke;

pub(crate) use durable::copy_out;
pub use files::{is_shmds_segment, list_segments};
use files::{open_existing, reserve};
pub(crate) use files::{segment_path, unlink as unlink_name};
pub(crate) use header::random_seed;
use header::{init_header, validate_header, wait_ready};
pub(crate) use mapping::Mapping;

use crate::error::{Error, Result};
use crate::layout::{segment_state, CACHE_LINE, ENTRY_SIZE, MAGIC, SEGMENT_HEADER_SIZE};
use crate::sync::Ordering;
use crate::table::EntryInfo;
use rustix::fs::Mode;
use rustix::io::Errno;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of a new segment when none is stated (1 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 1 << 20;
/// Default largest size a segment grows to (4 GiB), when
/// [`SegmentOptions::max_size`] is not stated.
pub const DEFAULT_MAX_SIZE: u64 = 4 << 30;
/// Default number of entries in a new segment's table.
pub const DEFAULT_TABLE_CAPACITY: u32 = 64;
/// Most entries a table may have.
pub const MAX_TABLE_CAPACITY: u32 = 65_536;
/// Largest segment this crate creates or opens (64 TiB).
pub const MAX_SEGMENT_SIZE: u64 = 1 << 46;
/// How long `open` waits by default for a creator to finish initialising.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(1);
/// How long registration waits by default for a live lock holder.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest segment name, without the leading `/`.
pub const SEGMENT_NAME_MAX: usize = 255;

pub(crate) const PAGE: u64 = 4096;

/// Check a segment name and return it without its leading `/`.
///
/// Names are `name` or `/name`: 1 to 255 bytes of ASCII letters, digits,
/// `.`, `_` and `-`, not `.` or `..`. Such a segment lives in `/dev/shm`.
///
/// A name with a `/` anywhere but at its start (`./state.shmds`,
/// `/var/lib/app/state.shmds`) is the path of a regular file instead: a
/// *durable* segment, in the same format, that survives a reboot (see
/// [`Segment::flush`]). It is returned whole.
pub fn validate_segment_name(name: &str) -> Result<&str> {
    if files::is_file_name(name) {
        return files::validate_file_name(name);
    }
    let bare = name.strip_prefix('/').unwrap_or(name);
    let reason = if bare.is_empty() {
        "segment names cannot be empty"
    } else if bare.len() > SEGMENT_NAME_MAX {
        "segment names are at most 255 bytes"
    } else if bare == "." || bare == ".." {
        "'.' and '..' are not segment names"
    } else if !bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "segment names may contain only ASCII letters, digits, '.', '_' and '-' (and one leading '/')"
    } else {
        return Ok(bare);
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

pub(crate) fn os_error(op: &'static str, name: &str, err: Errno) -> Error {
    match err {
        Errno::NOENT => Error::SegmentNotFound {
            name: name.to_owned(),
        },
        Errno::EXIST => Error::SegmentExists {
            name: name.to_owned(),
        },
        Errno::ACCESS | Errno::PERM => Error::PermissionDenied {
            name: name.to_owned(),
        },
        Errno::NAMETOOLONG | Errno::INVAL => Error::InvalidName {
            name: name.to_owned(),
            reason: "the system refused this name",
        },
        other => Error::io(op, other),
    }
}

/// How to create or open a segment. Made by [`Segment::options`].
///
/// ```
/// # let name = format!("doc-opts-{}", std::process::id());
/// let seg = shmds::Segment::options()
///     .size(1 << 20)
///     .mode(0o640)
///     .table_capacity(16)
///     .create(&name)?;
/// assert_eq!(seg.table_capacity(), 16);
/// # shmds::Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// `None`: not stated (creating uses [`DEFAULT_SEGMENT_SIZE`]; opening
    /// an existing segment accepts any size).
    size: Option<u64>,
    mode: u32,
    /// `None`: not stated, as for `size`.
    table_capacity: Option<u32>,
    open_timeout: Duration,
    lock_timeout: Duration,
    read_only: bool,
    /// `None`: not stated (creating uses [`DEFAULT_MAX_SIZE`] or the size,
    /// whichever is larger).
    max_size: Option<u64>,
    temporary: bool,
    wipe_on_erase: bool,
    flush_on_close: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            size: None,
            mode: 0o600,
            table_capacity: None,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            read_only: false,
            max_size: None,
            temporary: false,
            wipe_on_erase: false,
            flush_on_close: false,
        }
    }
}

impl SegmentOptions {
    /// Total size in bytes (rounded up to a page) when creating. Default 1 MiB.
    ///
    /// With [`open_or_create`](SegmentOptions::open_or_create), an existing
    /// segment of another size is refused ([`Error::ShapeMismatch`]); leave
    /// the size unstated to open whatever size it has.
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = Some(bytes);
        self
    }

    /// Permission bits of a new segment (not reduced by the umask). Default `0o600`.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Number of entries in a new segment's table. Default 64. Like
    /// [`size`](SegmentOptions::size), checked against an existing segment
    /// by `open_or_create` when stated.
    pub fn table_capacity(mut self, entries: u32) -> Self {
        self.table_capacity = Some(entries);
        self
    }

    /// How long `open` waits for a creator that is still initialising. Default 1 s.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// How long creating or erasing an entry waits for another live process
    /// that holds the registration lock before failing with
    /// [`Error::LockBusy`]. Default 10 s. (A dead holder is taken over at once.)
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Map the segment read-only (for inspection: entries, check). Structures
    /// cannot be opened from a read-only segment.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// The largest size a new segment may grow to (rounded up to a page).
    /// Default: [`DEFAULT_MAX_SIZE`] or the initial size, whichever is
    /// larger. When the heap runs out, the segment grows (the file is
    /// extended and every process maps the new part at the same address);
    /// past this size allocation fails with [`Error::OutOfSpace`]. Each
    /// process reserves (but does not use) this much address space.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Remove a new segment when the last process attached to it detaches
    /// or dies (see [`Segment::attachers`]). Default `false`: a segment
    /// stays until removed.
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// Zero every structure's memory when it is erased, before the space is
    /// reused (as [`Segment::erase_and_wipe`] does for one). Default `false`
    /// (new blocks are always zeroed when allocated).
    pub fn wipe_on_erase(mut self, wipe: bool) -> Self {
        self.wipe_on_erase = wipe;
        self
    }

    /// For a durable segment (a file path as its name): flush it to disk
    /// ([`Segment::flush`]) whenever this handle's mapping closes, not only
    /// at the last close (which always seals the file). Default `false`.
    pub fn flush_on_close(mut self, flush: bool) -> Self {
        self.flush_on_close = flush;
        self
    }

    /// Create a new segment; fails with [`Error::SegmentExists`] if the name is taken.
    pub fn create(&self, name: &str) -> Result<Segment> {
        Segment::create_with(name, self)
    }

    /// Open an existing segment. A [`size`](SegmentOptions::size) or
    /// [`table_capacity`](SegmentOptions::table_capacity) stated in these
    /// options must match it ([`Error::ShapeMismatch`]).
    pub fn open(&self, name: &str) -> Result<Segment> {
        self.check_shape(Segment::open_with(name, self)?)
    }

    /// Open the segment, creating it if it does not exist.
    pub fn open_or_create(&self, name: &str) -> Result<Segment> {
        loop {
            match Segment::create_with(name, self) {
                Err(Error::SegmentExists { .. }) => {}
                other => return other,
            }
            match self.open(name) {
                // Removed between our create and open: try again.
                Err(Error::SegmentNotFound { .. }) => continue,
                other => return other,
            }
        }
    }
}

/// The header fields that never change after creation, copied out of the
/// segment once (when it is created or opened) and validated there.
///
/// Only these copies are used afterwards: another process may rewrite the
/// header's bytes at any moment, so a field read again later could point the
/// table or the heap anywhere (even into another mapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// The most the segment may grow to: the address range reserved.
    pub(crate) max_size: u64,
    /// Entries in the table, which starts at `SEGMENT_HEADER_SIZE`.
    pub(crate) table_capacity: u32,
    /// First heap byte; cache-line aligned, after table chunk 0, `< max_size`.
    pub(crate) heap_offset: u64,
    /// The segment's random seed.
    pub(crate) seed: u64,
    /// [`segment_flags`](crate::layout::segment_flags), fixed at creation.
    pub(crate) flags: u32,
}

impl SegmentOptions {
    /// An opened segment, if it has the size and table capacity stated.
    fn check_shape(&self, seg: Segment) -> Result<Segment> {
        let mismatch = |what, expected, found| Error::ShapeMismatch {
            name: seg.name().to_owned(),
            what,
            expected,
            found,
        };
        // A segment grows, so a stated size is met by any segment that can
        // be that large; a stated maximum must be the segment's.
        if let Some(size) = self.size {
            if page_round(size).is_none_or(|s| s > seg.max_size()) {
                return Err(mismatch("size", size, seg.max_size()));
            }
        }
        if let Some(max) = self.max_size {
            if page_round(max) != Some(seg.max_size()) {
                return Err(mismatch("maximum size", max, seg.max_size()));
            }
        }
        let temporary = seg.map.geometry().flags & crate::layout::segment_flags::TEMPORARY != 0;
        if self.temporary && !temporary {
            return Err(Error::InvalidArgument(format!(
                "segment {:?} exists and is persistent, not temporary as asked: remove it first, \
                 or open it without asking for a temporary segment",
                seg.name()
            )));
        }
        if let Some(entries) = self.table_capacity {
            let first = seg.map.geometry().table_capacity;
            if entries != first {
                return Err(mismatch("table capacity", entries.into(), first.into()));
            }
        }
        Ok(seg)
    }
}

/// The error of reserving `size` bytes for the new segment `bare`.
fn reserve_error(bare: &str, size: u64, e: Errno) -> Error {
    match e {
        Errno::NOSPC | Errno::FBIG | Errno::NOMEM => Error::NoSpace {
            name: bare.to_owned(),
            requested: size,
        },
        other => Error::io("fallocate", other),
    }
}

/// `bytes` rounded up to a whole page, if that fits the size limit.
fn page_round(bytes: u64) -> Option<u64> {
    bytes
        .checked_add(PAGE - 1)
        .map(|s| s & !(PAGE - 1))
        .filter(|&s| s <= MAX_SEGMENT_SIZE)
}

/// A handle on a named shared memory segment.
///
/// Cloning is cheap (the mapping is reference-counted) and every structure
/// opened from a segment keeps the mapping alive. Dropping the last handle
/// detaches this process and unmaps the segment; it removes it only if it
/// was created [`temporary`](SegmentOptions::temporary) and no other live
/// process is attached. Otherwise call [`Segment::remove`] or
/// [`Segment::unlink`] to remove it.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-seg-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let temps = seg.create_array::<f32>("temps", 100)?;
/// temps.set(3, 21.5)?;
///
/// let other = Segment::open(&name)?;           // e.g. in another process
/// let same = other.open_array::<f32>("temps")?;
/// assert_eq!(same.get(3)?, 21.5);
/// assert!(other.open_array::<u32>("temps").is_err()); // wrong element type
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Segment {
    pub(crate) map: Arc<Mapping>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.map.name())
            .field("size", &self.map.len())
            .field("writable", &self.map.writable())
            .finish()
    }
}

impl Segment {
    /// Options for creating or opening a segment.
    pub fn options() -> SegmentOptions {
        SegmentOptions::default()
    }

    /// Create a segment of `size` bytes with default options.
    pub fn create(name: &str, size: u64) -> Result<Segment> {
        Segment::options().size(size).create(name)
    }

    /// Open an existing segment.
    pub fn open(name: &str) -> Result<Segment> {
        Segment::options().open(name)
    }

    /// Open a segment, creating it with `size` bytes if it does not exist.
    pub fn open_or_create(name: &str, size: u64) -> Result<Segment> {
        Segment::options().size(size).open_or_create(name)
    }

    /// Remove the segment `name` from the system. Processes that have it
    /// mapped keep using it; the memory is freed when the last one unmaps.
    pub fn remove(name: &str) -> Result<()> {
        let bare = validate_segment_name(name)?;
        files::unlink(bare).map_err(|e| os_error("unlink", bare, e))
    }

    /// Remove this segment's name from the system (see [`Segment::remove`]).
    pub fn unlink(&self) -> Result<()> {
        Segment::remove(self.map.name())
    }

    /// The segment's name (without a leading `/`).
    pub fn name(&self) -> &str {
        self.map.name()
    }

    /// The first byte of the mapping (a [`SegmentHeader`](crate::layout::SegmentHeader)),
    /// [`size`](Segment::size) bytes long, valid while this handle or a
    /// structure opened from it lives. For tools that read the layout
    /// directly; other processes change these bytes at any time.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.base()
    }

    /// Current size in bytes. It grows (up to [`max_size`](Segment::max_size))
    /// when a structure does not fit.
    pub fn size(&self) -> u64 {
        let g = self.map.geometry();
        self.map
            .header()
            .size
            .load(Ordering::Relaxed)
            .clamp(g.heap_offset, g.max_size)
    }

    /// The size the segment may grow to.
    pub fn max_size(&self) -> u64 {
        self.map.geometry().max_size
    }

    /// Bytes in use: header, first table chunk and every used heap block
    /// (structures, later table chunks, block headers).
    pub fn used(&self) -> u64 {
        let free = self.map.header().free_bytes.load(Ordering::Relaxed);
        self.size()
            .saturating_sub(free)
            .max(self.map.geometry().heap_offset)
    }

    /// Bytes free in the heap now (not counting growth to the maximum size).
    pub fn available(&self) -> u64 {
        self.size() - self.used()
    }

    /// The heap's figures: used and free bytes, blocks, the largest free
    /// block and fragmentation. Walks every block header (a consistent
    /// walk: it takes the registration lock when the segment is writable).
    pub fn heap(&self) -> Result<crate::alloc::HeapStats> {
        self.with_quiet_heap(|_, heap| heap.walk(heap.end()?))
    }

    /// Run `f` on the heap while no registration changes it: under the
    /// registration lock when this handle can take it soon; otherwise
    /// (read-only inspection, or a busy lock) between moments when the lock
    /// is free, trying again while registrations run, so that a walk that
    /// met one half-way is not taken for damage. A failure is returned only
    /// when it is seen three times with the lock free around the walk (or
    /// after the lock timeout, at most half a second, of trying).
    pub(crate) fn with_quiet_heap<T>(
        &self,
        f: impl Fn(&crate::table::Table<'_>, &crate::alloc::Heap<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut table = self.map.table();
        table.lock_timeout = table.lock_timeout.min(Duration::from_millis(500));
        if self.map.writable() {
            if let Ok(_guard) = table.lock() {
                return f(&table, &table.heap());
            }
        }
        let lock = &self.map.header().lock;
        let mut quiet_failures = 0;
        let mut last = None;
        let deadline = Instant::now() + table.lock_timeout;
        while Instant::now() < deadline {
            if lock.load(Ordering::Acquire) == 0 {
                let got = f(&table, &table.heap());
                let quiet = lock.load(Ordering::Acquire) == 0;
                match got {
                    Ok(v) if quiet => return Ok(v),
                    Err(e) if quiet => {
                        quiet_failures += 1;
                        if quiet_failures >= 3 {
                            return Err(e);
                        }
                        last = Some(Err(e));
                    }
                    other => last = Some(other),
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        last.unwrap_or_else(|| f(&table, &table.heap()))
    }

    /// Number of entries the table holds now; it grows when they are taken.
    pub fn table_capacity(&self) -> u64 {
        self.map.table().capacity()
    }

    /// Pid of the process that created the segment.
    pub fn creator_pid(&self) -> u32 {
        self.map.header().creator_pid.load(Ordering::Relaxed)
    }

    /// Creation time in nanoseconds since the Unix epoch.
    pub fn created_unix_ns(&self) -> u64 {
        self.map.header().created_unix_ns.load(Ordering::Relaxed)
    }

    /// The segment's random seed (map hash seeds derive from it).
    pub fn seed(&self) -> u64 {
        self.map.geometry().seed
    }

    /// Every live entry.
    pub fn entries(&self) -> Result<Vec<EntryInfo>> {
        self.map.table().list()
    }

    /// The live entry `name`, if any.
    pub fn entry(&self, name: &str) -> Result<Option<EntryInfo>> {
        self.map.table().find(name)
    }

    /// Erase the entry `name`. Handles to it get [`Error::Stale`] from then on;
    /// the name can be created again and its memory is reused (zeroed when
    /// it is handed out again, or at once if the segment was created with
    /// [`wipe_on_erase`](SegmentOptions::wipe_on_erase)).
    pub fn erase(&self, name: &str) -> Result<()> {
        self.require_writable()?;
        self.map.table().erase(name, false)
    }

    /// Erase the entry `name` and zero its memory before it can be reused,
    /// for data that must not linger in the segment.
    pub fn erase_and_wipe(&self, name: &str) -> Result<()> {
        self.require_writable()?;
        self.map.table().erase(name, true)
    }

    pub(crate) fn require_writable(&self) -> Result<()> {
        if self.map.writable() {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                name: self.map.name().to_owned(),
            })
        }
    }

    fn create_with(name: &str, opts: &SegmentOptions) -> Result<Segment> {
        let bare = validate_segment_name(name)?.to_owned();
        if opts.read_only {
            return Err(Error::InvalidArgument(
                "a segment cannot be created read-only".into(),
            ));
        }
        let table_capacity = opts.table_capacity.unwrap_or(DEFAULT_TABLE_CAPACITY);
        let requested = opts.size.unwrap_or(DEFAULT_SEGMENT_SIZE);
        if table_capacity == 0 || table_capacity > MAX_TABLE_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "table capacity must be 1..={MAX_TABLE_CAPACITY}, not {table_capacity}"
            )));
        }
        let table_end = crate::layout::TABLE_OFFSET + table_capacity as u64 * ENTRY_SIZE;
        let heap_offset = crate::alloc::align_up(table_end).expect("small");
        let size = page_round(requested).ok_or_else(|| {
            Error::InvalidArgument(format!("segment size {requested} is too large"))
        })?;
        if size < heap_offset + CACHE_LINE {
            return Err(Error::InvalidArgument(format!(
                "segment size {requested} is too small: the header and a {table_capacity}-entry \
                 table need {} bytes",
                heap_offset + CACHE_LINE
            )));
        }
        let fd = files::create_exclusive(&bare, Mode::from_bits_truncate(opts.mode)).map_err(
            |e| match e {
                Errno::NOENT if files::is_file_name(&bare) => Error::InvalidArgument(format!(
                    "cannot create segment file {bare:?}: its directory does not exist (create \
                     it first)"
                )),
                e => os_error("create", &bare, e),
            },
        )?;
        // From here on, a failure removes the half-made segment.
        let made = bare.clone();
        let undo = |err: Error| {
            let _ = files::unlink(&made);
            err
        };
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(opts.mode))
            .map_err(|e| undo(Error::io("fchmod", e)))?;
        reserve(&fd, size).map_err(|e| undo(reserve_error(&bare, size, e)))?;
        let file = File::from(fd);
        let max_size = match opts.max_size {
            Some(max) => page_round(max).filter(|&m| m >= size).ok_or_else(|| {
                undo(Error::InvalidArgument(format!(
                    "maximum size {max} must be at least the size {size} and at most \
                     {MAX_SEGMENT_SIZE}"
                )))
            })?,
            None => size.max(DEFAULT_MAX_SIZE),
        };
        let durable = if files::is_file_name(&bare) {
            crate::layout::segment_flags::DURABLE
        } else {
            0
        };
        let flags = durable
            | (if opts.temporary {
                crate::layout::segment_flags::TEMPORARY
            } else {
                0
            })
            | if opts.wipe_on_erase {
                crate::layout::segment_flags::WIPE_ON_ERASE
            } else {
                0
            };
        let geometry = Geometry {
            max_size,
            table_capacity,
            heap_offset,
            seed: random_seed(),
            flags,
        };
        let mut mapping =
            Mapping::new(bare, file, geometry, size, true, opts.lock_timeout).map_err(undo)?;
        mapping.flush_on_close = opts.flush_on_close;
        init_header(&mapping, size).map_err(undo)?;
        if durable != 0 {
            durable::init(&mapping);
        }
        crate::attach::attach(&mapping).map_err(undo)?;
        crate::fault::pause_point("segment.create.before_ready");
        mapping
            .header()
            .state
            .store(segment_state::READY, Ordering::Release);
        Ok(Segment {
            map: Arc::new(mapping),
        })
    }

    fn open_with(name: &str, opts: &SegmentOptions) -> Result<Segment> {
        let bare = validate_segment_name(name)?.to_owned();
        let fd = open_existing(&bare, opts.read_only)?;
        let deadline = Instant::now() + opts.open_timeout;
        // The creator sizes the file right after creating it: wait for that.
        let file_size = loop {
            let stat = rustix::fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
            let size = stat.st_size as u64;
            if size >= 8 {
                let mut magic = [0u8; 8];
                let n = rustix::io::pread(&fd, &mut magic, 0).map_err(|e| Error::io("pread", e))?;
                if n == 8 && magic != [0; 8] && magic != MAGIC {
                    return Err(Error::Corrupt {
                        name: bare,
                        detail: "not a shmds segment (bad magic)".into(),
                    });
                }
            }
            if size >= SEGMENT_HEADER_SIZE {
                break size;
            }
            if Instant::now() >= deadline {
                let detail = format!(
                    "it has {size} bytes, less than a header; its creator died or is not a shmds \
                     process (if no process is making it, remove it with `shmds rm --force {bare}`)"
                );
                return Err(Error::NotReady { name: bare, detail });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if file_size > MAX_SEGMENT_SIZE {
            return Err(Error::Corrupt {
                name: bare,
                detail: format!("file size {file_size} exceeds the {MAX_SEGMENT_SIZE}-byte limit"),
            });
        }
        let file = File::from(fd);
        // Read the header through a small read-only view until we know how
        // much address space to reserve.
        let view = memmap2::MmapOptions::new()
            .len(SEGMENT_HEADER_SIZE as usize)
            .map_raw_read_only(&file)
            .map_err(|e| Error::io("mmap", e))?;
        wait_ready(&bare, view.as_ptr(), deadline)?;
        let (geometry, stated) = validate_header(&bare, view.as_ptr(), file_size)?;
        drop(view);
        // The file grows before the header says so; a size past the file's
        // end (after looking again) is damage.
        let file_size = if stated > file_size {
            rustix::fs::fstat(&file)
                .map_err(|e| Error::io("fstat", e))?
                .st_size as u64
        } else {
            file_size
        };
        if stated > file_size {
            return Err(Error::Corrupt {
                name: bare,
                detail: format!(
                    "header says {stated} bytes but the file has {file_size} (truncated?)"
                ),
            });
        }
        let mut mapping = Mapping::new(
            bare,
            file,
            geometry,
            stated,
            !opts.read_only,
            opts.lock_timeout,
        )?;
        mapping.flush_on_close = opts.flush_on_close;
        if !durable::is_durable(&mapping) {
            crate::attach::attach(&mapping)?;
            return Ok(Segment {
                map: Arc::new(mapping),
            });
        }
        let seg = Segment {
            map: Arc::new(mapping),
        };
        durable::open(&seg, opts.read_only, opts.open_timeout)?;
        Ok(seg)
    }
}

impl Segment {
    /// Create the segment `name` holding `image` (a snapshot's bytes: a
    /// whole segment of the current format), with every claim in it
    /// revoked before it is ready. The image's header is validated as an
    /// opener validates a file's; its flags become this target's (durable
    /// or not, never temporary), its creator this process.
    pub(crate) fn create_from_image(name: &str, image: &[u8]) -> Result<Segment> {
        use crate::layout::{segment_flags, SegmentHeader};
        use core::mem::offset_of;
        let bare = validate_segment_name(name)?.to_owned();
        let size = image.len() as u64;
        if size < SEGMENT_HEADER_SIZE + CACHE_LINE || size % PAGE != 0 {
            return Err(Error::Corrupt {
                name: bare,
                detail: format!("a snapshot image of {size} bytes is not a segment"),
            });
        }
        let durable = files::is_file_name(&bare);
        let mut header = image[..SEGMENT_HEADER_SIZE as usize].to_vec();
        let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
        let flags_at = offset_of!(SegmentHeader, flags);
        let old_flags = u32::from_ne_bytes(image[flags_at..flags_at + 4].try_into().expect("4"));
        let flags = (old_flags & segment_flags::WIPE_ON_ERASE)
            | if durable { segment_flags::DURABLE } else { 0 };
        put(flags_at, &flags.to_ne_bytes());
        put(
            offset_of!(SegmentHeader, state),
            &segment_state::INITIALIZING.to_ne_bytes(),
        );
        put(
            offset_of!(SegmentHeader, creator_pid),
            &crate::process::current_pid().to_ne_bytes(),
        );
        put(
            offset_of!(SegmentHeader, creator_start),
            &crate::process::current_start_time().to_ne_bytes(),
        );
        for field in [
            offset_of!(SegmentHeader, boot_id),
            offset_of!(SegmentHeader, header_sum),
        ] {
            let len = if field == offset_of!(SegmentHeader, boot_id) {
                16
            } else {
                32
            };
            put(field, &vec![0u8; len]);
        }
        put(offset_of!(SegmentHeader, durable), &0u32.to_ne_bytes());
        let fd = files::create_exclusive(&bare, Mode::from_bits_truncate(0o600))
            .map_err(|e| os_error("create", &bare, e))?;
        let made = bare.clone();
        let undo = |err: Error| {
            let _ = files::unlink(&made);
            err
        };
        reserve(&fd, size).map_err(|e| undo(reserve_error(&bare, size, e)))?;
        let file = File::from(fd);
        {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&header, 0)
                .and_then(|()| file.write_all_at(&image[header.len()..], header.len() as u64))
                .map_err(|e| undo(Error::io("writing the restored segment", e)))?;
        }
        let view = memmap2::MmapOptions::new()
            .len(SEGMENT_HEADER_SIZE as usize)
            .map_raw_read_only(&file)
            .map_err(|e| undo(Error::io("mmap", e)))?;
        let (geometry, stated) = validate_header(&bare, view.as_ptr(), size).map_err(undo)?;
        drop(view);
        if stated != size {
            return Err(undo(Error::Corrupt {
                name: bare,
                detail: format!("the snapshot's header says {stated} bytes, its image has {size}"),
            }));
        }
        let mapping =
            Mapping::new(bare, file, geometry, size, true, DEFAULT_LOCK_TIMEOUT).map_err(undo)?;
        let seg = Segment {
            map: Arc::new(mapping),
        };
        revoke::revoke_all(&seg).map_err(undo)?;
        if durable {
            durable::init(&seg.map);
        }
        crate::attach::attach(&seg.map).map_err(undo)?;
        seg.map
            .header()
            .state
            .store(segment_state::READY, Ordering::Release);
        Ok(seg)
    }
}

/// Validation of an entry's block against the segment; shared by every
/// structure's `open` and by [`Segment::check`](crate::Segment::check): the
/// block lies in the heap, is mapped, and its header says it is in use by
/// this entry at this generation (so a block reused by another structure is
/// never taken for this one's).
pub(crate) fn check_block(mapping: &Mapping, info: &EntryInfo) -> Result<()> {
    let g = mapping.geometry();
    let corrupt = |detail: String| Error::Corrupt {
        name: mapping.name().to_owned(),
        detail: format!("entry {:?}: {detail}", info.name),
    };
    let end = info.offset.checked_add(info.size);
    let block = info.offset.checked_sub(crate::layout::BLOCK_HEADER_SIZE);
    if block.is_none_or(|b| b < g.heap_offset)
        || info.offset % CACHE_LINE != 0
        || info.size == 0
        || end.is_none_or(|end| end > g.max_size)
    {
        return Err(corrupt(format!(
            "block at {} of {} bytes is not an aligned part of the heap [{}, {})",
            info.offset, info.size, g.heap_offset, g.max_size
        )));
    }
    let (block, end) = (block.unwrap_or(0), end.unwrap_or(0));
    let table = mapping.table();
    let heap = table.heap();
    let heap_end = heap.end()?;
    if end > heap_end {
        return Err(corrupt(format!(
            "block at {} of {} bytes ends past the segment's end {heap_end}",
            info.offset, info.size
        )));
    }
    let found = heap.read(block, heap_end);
    let matches = found.as_ref().is_ok_and(|b| {
        b.state == crate::layout::block_state::USED
            && b.owner == info.index
            && b.owner_generation == info.generation
            && b.size == info.size + crate::layout::BLOCK_HEADER_SIZE
    });
    if matches {
        return Ok(());
    }
    // Erased (and perhaps reused) since `info` was read: stale, not damaged.
    let now = table
        .entry(info.index)
        .map(|e| e.generation.load(Ordering::Acquire));
    if now != Some(info.generation) {
        return Err(Error::Stale {
            name: info.name.clone(),
        });
    }
    Err(match found {
        Err(e) => e,
        Ok(b) => corrupt(format!(
            "its heap block (state {}, owner {}, generation {}, {} bytes) is not the block of \
             entry {} at generation {} ({} bytes)",
            b.state,
            b.owner,
            b.owner_generation,
            b.size,
            info.index,
            info.generation,
            info.size + crate::layout::BLOCK_HEADER_SIZE
        )),
    })
}
