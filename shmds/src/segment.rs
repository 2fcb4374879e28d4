//! The segment: a named POSIX shared memory region holding a header, the
//! table of named entries, and the heap the structures are allocated from.

use crate::error::{Error, Result};
use crate::layout::{
    segment_state, Entry, Line, SegmentHeader, CACHE_LINE, ENTRY_SIZE, FORMAT_VERSION, MAGIC,
    SEGMENT_HEADER_SIZE,
};
use crate::sync::Ordering;
use crate::table::{EntryInfo, Table};
use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::shm;
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

const PAGE: u64 = 4096;

/// Check a segment name and return it without its leading `/`.
///
/// Names are `name` or `/name`: 1 to 255 bytes of ASCII letters, digits,
/// `.`, `_` and `-`, not `.` or `..`.
pub fn validate_segment_name(name: &str) -> Result<&str> {
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

fn os_error(op: &'static str, name: &str, err: Errno) -> Error {
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
    /// Size of the mapping (= the file size, = the header's `total_size`).
    pub(crate) total_size: u64,
    /// Entries in the table, which starts at `SEGMENT_HEADER_SIZE`.
    pub(crate) table_capacity: u32,
    /// First heap byte; cache-line aligned, after the table, `<= total_size`.
    pub(crate) heap_offset: u64,
    /// The segment's random seed.
    pub(crate) seed: u64,
    /// [`segment_flags`](crate::layout::segment_flags), fixed at creation.
    pub(crate) flags: u32,
}

impl Geometry {
    /// `bump` if it is a valid allocation pointer (aligned, inside the heap).
    pub(crate) fn valid_bump(&self, bump: u64) -> Option<u64> {
        (bump >= self.heap_offset && bump <= self.total_size && bump % CACHE_LINE == 0)
            .then_some(bump)
    }
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
        if let Some(size) = self.size {
            // Sizes are whole pages: 1,000,000 asked for is 1,003,520 made.
            if page_round(size) != Some(seg.size()) {
                return Err(mismatch("size", size, seg.size()));
            }
        }
        if let Some(entries) = self.table_capacity {
            if entries != seg.table_capacity() {
                return Err(mismatch(
                    "table capacity",
                    entries.into(),
                    seg.table_capacity().into(),
                ));
            }
        }
        Ok(seg)
    }
}

/// `bytes` rounded up to a whole page, if that fits the size limit.
fn page_round(bytes: u64) -> Option<u64> {
    bytes
        .checked_add(PAGE - 1)
        .map(|s| s & !(PAGE - 1))
        .filter(|&s| s <= MAX_SEGMENT_SIZE)
}

/// The mapping shared by a segment and all handles opened from it.
pub(crate) struct Mapping {
    name: String,
    map: memmap2::MmapRaw,
    geometry: Geometry,
    writable: bool,
    lock_timeout: Duration,
    /// Where this mapping's process is counted as attached (crate::attach).
    pub(crate) attachment: crate::attach::Attachment,
}

// SAFETY: the mapping is plain shared memory; every access to it goes through
// atomics or through element copies whose synchronisation the structures
// document. The raw pointer inside MmapRaw is what makes it !Sync by default.
unsafe impl Sync for Mapping {}
// SAFETY: as above; the mapping is not tied to the thread that made it.
unsafe impl Send for Mapping {}

impl Mapping {
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least SEGMENT_HEADER_SIZE bytes (checked
        // before a Mapping is built), page-aligned, and SegmentHeader is
        // repr(C) with atomics for every field that changes after creation.
        unsafe { &*self.base().cast::<SegmentHeader>() }
    }

    pub(crate) fn table(&self) -> Table<'_> {
        let geometry = self.geometry;
        // SAFETY: the table starts at SEGMENT_HEADER_SIZE (a multiple of 64)
        // and `geometry` is our private copy, validated when the segment was
        // created or opened: SEGMENT_HEADER_SIZE + table_capacity * ENTRY_SIZE
        // <= heap_offset <= total_size = the mapping's length. Nothing in the
        // segment is re-read to find the table. Entry is repr(C) of atomics,
        // so concurrent writes by other processes are not data races.
        let entries = unsafe {
            std::slice::from_raw_parts(
                self.base()
                    .add(crate::layout::TABLE_OFFSET as usize)
                    .cast::<Entry>(),
                geometry.table_capacity as usize,
            )
        };
        Table {
            header: self.header(),
            entries,
            heap: (geometry.heap_offset, geometry.total_size),
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

impl Drop for Mapping {
    fn drop(&mut self) {
        crate::attach::detach(self);
    }
}

/// A handle on a named shared memory segment.
///
/// Cloning is cheap (the mapping is reference-counted) and every structure
/// opened from a segment keeps the mapping alive. Dropping the last handle
/// unmaps the segment; it never removes it: call [`Segment::remove`] or
/// [`Segment::unlink`] for that.
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
            .field("name", &self.map.name)
            .field("size", &self.map.len())
            .field("writable", &self.map.writable)
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
        shm::unlink(format!("/{bare}")).map_err(|e| os_error("shm_unlink", bare, e))
    }

    /// Remove this segment's name from the system (see [`Segment::remove`]).
    pub fn unlink(&self) -> Result<()> {
        Segment::remove(&self.map.name)
    }

    /// The segment's name (without a leading `/`).
    pub fn name(&self) -> &str {
        &self.map.name
    }

    /// The first byte of the mapping (a [`SegmentHeader`](crate::layout::SegmentHeader)),
    /// [`size`](Segment::size) bytes long, valid while this handle or a
    /// structure opened from it lives. For tools that read the layout
    /// directly; other processes change these bytes at any time.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.base()
    }

    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.map.geometry.total_size
    }

    /// Bytes in use: header, table and allocated blocks.
    pub fn used(&self) -> u64 {
        self.map
            .header()
            .heap_last
            .load(Ordering::Relaxed)
            .clamp(self.map.geometry.heap_offset, self.size())
    }

    /// Bytes still free for new structures.
    pub fn available(&self) -> u64 {
        self.size() - self.used()
    }

    /// Number of entries the table can hold.
    pub fn table_capacity(&self) -> u32 {
        self.map.geometry.table_capacity
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
        self.map.geometry.seed
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
    /// the name can be created again. Its memory is not reused.
    pub fn erase(&self, name: &str) -> Result<()> {
        self.require_writable()?;
        self.map.table().erase(name)
    }

    pub(crate) fn require_writable(&self) -> Result<()> {
        if self.map.writable() {
            Ok(())
        } else {
            Err(Error::PermissionDenied {
                name: self.map.name.clone(),
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
        let path = format!("/{bare}");
        let fd = shm::open(
            &path,
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from_bits_truncate(opts.mode),
        )
        .map_err(|e| os_error("shm_open", &bare, e))?;
        // From here on, a failure removes the half-made segment.
        let undo = |err: Error| {
            let _ = shm::unlink(&path);
            err
        };
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(opts.mode))
            .map_err(|e| undo(Error::io("fchmod", e)))?;
        reserve(&fd, size).map_err(|e| {
            undo(match e {
                Errno::NOSPC | Errno::FBIG | Errno::NOMEM => Error::NoSpace {
                    name: bare.clone(),
                    requested: size,
                },
                other => Error::io("fallocate", other),
            })
        })?;
        let file = File::from(fd);
        // MmapRaw hands out only a raw pointer; all access to the bytes
        // follows the segment protocol.
        let map = memmap2::MmapOptions::new()
            .len(size as usize)
            .map_raw(&file)
            .map_err(|e| undo(Error::io("mmap", e)))?;
        let geometry = Geometry {
            total_size: size,
            table_capacity,
            heap_offset,
            seed: random_seed(),
            flags: (if opts.temporary {
                crate::layout::segment_flags::TEMPORARY
            } else {
                0
            }) | if opts.wipe_on_erase {
                crate::layout::segment_flags::WIPE_ON_ERASE
            } else {
                0
            },
        };
        let mapping = Mapping {
            name: bare,
            map,
            geometry,
            writable: true,
            lock_timeout: opts.lock_timeout,
            attachment: Default::default(),
        };
        crate::attach::attach(&mapping).map_err(undo)?;
        init_header(&mapping);
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
                return Err(Error::NotReady {
                    name: bare,
                    detail: format!(
                        "it has {size} bytes, less than a header; its creator died or is not a shmds \
                         process (remove it with `shmds rm`)"
                    ),
                });
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
        let mut mmap_opts = memmap2::MmapOptions::new();
        mmap_opts.len(file_size as usize);
        // We only keep a raw pointer and validate every field before trusting it.
        let map = if opts.read_only {
            mmap_opts.map_raw_read_only(&file)
        } else {
            mmap_opts.map_raw(&file)
        }
        .map_err(|e| Error::io("mmap", e))?;
        wait_ready(&bare, map.as_ptr(), deadline)?;
        let geometry = validate_header(&bare, map.as_ptr(), file_size)?;
        let mapping = Mapping {
            name: bare,
            map,
            geometry,
            writable: !opts.read_only,
            lock_timeout: opts.lock_timeout,
            attachment: Default::default(),
        };
        crate::attach::attach(&mapping)?;
        Ok(Segment {
            map: Arc::new(mapping),
        })
    }
}

/// The directory where Linux keeps POSIX shared memory objects (what
/// `shm_open` opens).
const SHM_DIR: &str = "/dev/shm";

/// Open the existing segment file `/dev/shm/<bare>` as `shm_open` would,
/// but refusing anything that is not a regular file.
///
/// `/dev/shm` is writable by every user, so anyone can plant a FIFO, a
/// device node or a symbolic link under a segment's name. The file is
/// opened with `O_NONBLOCK` (opening a FIFO for reading would otherwise
/// wait for a writer, for ever) and `O_NOFOLLOW`, then checked with
/// `fstat` before anything is read from it.
fn open_existing(bare: &str, read_only: bool) -> Result<rustix::fd::OwnedFd> {
    use rustix::fs::{FileType, OFlags};
    let access = if read_only {
        OFlags::RDONLY
    } else {
        OFlags::RDWR
    };
    let path = format!("{SHM_DIR}/{bare}");
    let fd = rustix::fs::open(
        &path,
        access | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a symbolic link.
        Errno::LOOP => not_a_file(bare, "a symbolic link"),
        Errno::ISDIR => not_a_file(bare, "a directory"),
        // open(2) of a UNIX socket; of a device without a driver.
        Errno::NXIO | Errno::NODEV => not_a_file(bare, "a socket or device node"),
        other => os_error("open", bare, other),
    })?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| Error::io("fstat", e))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(fd),
        FileType::Fifo => Err(not_a_file(bare, "a FIFO")),
        FileType::Socket => Err(not_a_file(bare, "a socket")),
        FileType::CharacterDevice | FileType::BlockDevice => Err(not_a_file(bare, "a device node")),
        FileType::Directory => Err(not_a_file(bare, "a directory")),
        _ => Err(not_a_file(bare, "not a regular file")),
    }
}

fn not_a_file(bare: &str, what: &str) -> Error {
    let remedy = if what == "a directory" {
        format!("remove it with `rmdir {SHM_DIR}/{bare}`")
    } else {
        format!("remove it with `shmds rm --force {bare}`")
    };
    Error::Corrupt {
        name: bare.to_owned(),
        detail: format!(
            "{SHM_DIR}/{bare} is {what}, not a shmds segment (someone else made it; {remedy} if \
             it is yours to remove, or use another name)"
        ),
    }
}

/// Reserve `size` bytes of memory for the file, so that touching any page
/// later cannot SIGBUS on a full /dev/shm.
fn reserve(fd: &rustix::fd::OwnedFd, size: u64) -> std::result::Result<(), Errno> {
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
            // No fallocate: size the file, then write every page, which reports
            // ENOSPC instead of faulting.
            rustix::fs::ftruncate(fd, size)?;
            let zeros = vec![0u8; 1 << 16];
            let mut offset = 0;
            while offset < size {
                let n = ((size - offset) as usize).min(zeros.len());
                let written = rustix::io::pwrite(fd, &zeros[..n], offset)?;
                if written == 0 {
                    return Err(Errno::NOSPC);
                }
                offset += written as u64;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Names of the shmds segments in `/dev/shm` (files that start with the
/// shmds magic), sorted.
pub fn list_segments() -> Result<Vec<String>> {
    let dir = std::fs::read_dir(SHM_DIR).map_err(|e| Error::io("reading /dev/shm", e))?;
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| validate_segment_name(n).is_ok() && is_shmds_segment(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether the file `/dev/shm/<name>` is a regular file that starts with
/// the shmds magic. Never blocks (a FIFO or device under that name is
/// simply not a segment).
pub fn is_shmds_segment(name: &str) -> bool {
    let Ok(bare) = validate_segment_name(name) else {
        return false;
    };
    let Ok(fd) = open_existing(bare, true) else {
        return false;
    };
    let mut magic = [0u8; 8];
    matches!(rustix::io::pread(&fd, &mut magic, 0), Ok(8)) && magic == crate::layout::MAGIC
}

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

fn init_header(mapping: &Mapping) {
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
        g.total_size,
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
    header.heap_last.store(g.heap_offset, Ordering::Relaxed);
    header.size.store(g.total_size, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    header.created_unix_ns.store(now, Ordering::Relaxed);
    header.flags.store(g.flags, Ordering::Relaxed);
    crate::fault::pause_point("segment.create.before_ready");
    header.state.store(segment_state::READY, Ordering::Release);
}

/// The header's first cache line: the fields fixed at creation, as read once.
struct FixedFields {
    magic: [u8; 8],
    format_version: u32,
    header_size: u32,
    fingerprint: u64,
    max_size: u64,
    table_offset: u64,
    table_capacity: u32,
    entry_size: u32,
    heap_offset: u64,
    seed: u64,
}

/// Copy the header's first line out of the segment (see
/// [`Line`](crate::layout::Line)). Every use of these fields after open goes
/// through the validated [`Geometry`] made from this copy.
///
/// `base` must point to a live mapping of at least `SEGMENT_HEADER_SIZE`
/// bytes, aligned to a page.
fn read_fixed(base: *const u8) -> FixedFields {
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

impl Mapping {
    /// The header's fixed fields that no longer hold what they held when
    /// this process opened the segment (someone rewrote them), in words.
    pub(crate) fn header_drift(&self) -> Vec<String> {
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
            ("maximum size", now.max_size, g.total_size),
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
        let bump = self.header().heap_last.load(Ordering::Acquire);
        if g.valid_bump(bump).is_none() {
            out.push(format!("allocation pointer {bump} is outside the heap"));
        }
        out
    }
}

/// The header's atomics at `base` (see [`read_fixed`] for the requirement).
fn header_at<'a>(base: *const u8) -> &'a SegmentHeader {
    // SAFETY: (caller) a live page-aligned mapping of at least
    // SEGMENT_HEADER_SIZE bytes; only the header's atomic fields are used
    // through this reference (the plain ones are read by `read_fixed`).
    unsafe { &*base.cast::<SegmentHeader>() }
}

fn wait_ready(name: &str, base: *const u8, deadline: Instant) -> Result<()> {
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
/// (`file_size` bytes, all mapped) and this build, and return the copy that
/// is used from then on.
fn validate_header(name: &str, base: *const u8, file_size: u64) -> Result<Geometry> {
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
    if h.max_size != file_size || file_size % PAGE != 0 {
        return Err(corrupt(format!(
            "header says {} bytes but the file has {file_size} (truncated or resized; segments \
             are whole pages)",
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
    if h.heap_offset < table_end || h.heap_offset % CACHE_LINE != 0 || h.heap_offset > file_size {
        return Err(corrupt(format!(
            "heap offset {} is not an aligned offset between the table end {table_end} and the \
             segment end {file_size}",
            h.heap_offset
        )));
    }
    let geometry = Geometry {
        total_size: file_size,
        table_capacity: h.table_capacity,
        heap_offset: h.heap_offset,
        seed: h.seed,
        flags: header_at(base).flags.load(Ordering::Relaxed),
    };
    let bump = header_at(base).heap_last.load(Ordering::Acquire);
    if geometry.valid_bump(bump).is_none() {
        return Err(corrupt(format!(
            "allocation pointer {bump} is outside the heap"
        )));
    }
    Ok(geometry)
}

/// Validation of an entry's block against the segment; shared by every
/// structure's `open` and by [`Segment::check`](crate::Segment::check).
pub(crate) fn check_block(mapping: &Mapping, info: &EntryInfo) -> Result<()> {
    let g = mapping.geometry();
    // The bump pointer changes; only the copied bounds are trusted.
    let bump = mapping
        .header()
        .heap_last
        .load(Ordering::Acquire)
        .clamp(g.heap_offset, g.total_size);
    let end = info.offset.checked_add(info.size);
    if info.offset < g.heap_offset
        || info.offset % CACHE_LINE != 0
        || info.size == 0
        || end.is_none_or(|end| end > bump)
    {
        return Err(Error::Corrupt {
            name: mapping.name().to_owned(),
            detail: format!(
                "entry {:?}: block at {} of {} bytes is not an allocated, aligned part of the heap \
                 [{}, {bump})",
                info.name, info.offset, info.size, g.heap_offset
            ),
        });
    }
    Ok(())
}
