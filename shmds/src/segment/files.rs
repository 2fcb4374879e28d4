//! The segment's file, in /dev/shm or (a durable segment) anywhere else:
//! opening it safely, reserving its space, listing segments.

use super::{os_error, validate_segment_name};
use crate::error::{Error, Result};
use rustix::fs::Mode;
use rustix::io::Errno;

/// The directory where Linux keeps POSIX shared memory objects (what
/// `shm_open` opens).
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Whether `name` is the path of a durable segment's file: it has a `/`
/// anywhere but at its start.
pub(crate) fn is_file_name(name: &str) -> bool {
    name.bytes().skip(1).any(|b| b == b'/')
}

/// Longest path of a durable segment's file.
pub(crate) const PATH_MAX: usize = 4095;

/// Check the path of a durable segment's file (returned whole).
pub(super) fn validate_file_name(name: &str) -> Result<&str> {
    let reason = if name.len() > PATH_MAX {
        "segment file paths are at most 4095 bytes"
    } else if name.contains('\0') {
        "segment file paths cannot contain NUL"
    } else if name.ends_with('/') {
        "a segment file path names a file, not a directory (it ends with '/')"
    } else {
        return Ok(name);
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// The file that holds the segment `bare` (a name checked by
/// `validate_segment_name`).
pub(crate) fn segment_path(bare: &str) -> String {
    if is_file_name(bare) {
        bare.to_owned()
    } else {
        format!("{SHM_DIR}/{bare}")
    }
}

/// Create the file of a new segment `bare`, failing if it exists.
pub(super) fn create_exclusive(
    bare: &str,
    mode: Mode,
) -> std::result::Result<rustix::fd::OwnedFd, Errno> {
    if is_file_name(bare) {
        use rustix::fs::OFlags;
        rustix::fs::open(
            bare,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY,
            mode,
        )
    } else {
        rustix::shm::open(
            format!("/{bare}"),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            mode,
        )
    }
}

/// Remove the name `bare` (`shm_unlink`, or `unlink` of a durable file).
pub(crate) fn unlink(bare: &str) -> std::result::Result<(), Errno> {
    if is_file_name(bare) {
        rustix::fs::unlink(bare)
    } else {
        rustix::shm::unlink(format!("/{bare}"))
    }
}

/// Open the existing segment file `/dev/shm/<bare>` as `shm_open` would,
/// but refusing anything that is not a regular file.
///
/// `/dev/shm` is writable by every user, so anyone can plant a FIFO, a
/// device node or a symbolic link under a segment's name. The file is
/// opened with `O_NONBLOCK` (opening a FIFO for reading would otherwise
/// wait for a writer, for ever) and `O_NOFOLLOW`, then checked with
/// `fstat` before anything is read from it.
pub(super) fn open_existing(bare: &str, read_only: bool) -> Result<rustix::fd::OwnedFd> {
    use rustix::fs::{FileType, OFlags};
    let access = if read_only {
        OFlags::RDONLY
    } else {
        OFlags::RDWR
    };
    let path = segment_path(bare);
    // A durable segment's path is the user's own: it may be a link.
    let follow = if is_file_name(bare) {
        OFlags::empty()
    } else {
        OFlags::NOFOLLOW
    };
    let fd = rustix::fs::open(
        &path,
        access | OFlags::NONBLOCK | follow | OFlags::CLOEXEC | OFlags::NOCTTY,
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
    let path = segment_path(bare);
    let remedy = if what == "a directory" {
        format!("remove it with `rmdir {path}`")
    } else {
        format!("remove it with `shmds rm --force {bare}`")
    };
    Error::Corrupt {
        name: bare.to_owned(),
        detail: format!(
            "{path} is {what}, not a shmds segment (someone else made it; {remedy} if it is \
             yours to remove, or use another name)"
        ),
    }
}

/// Reserve `size` bytes of memory for the file, so that touching any page
/// later cannot SIGBUS on a full /dev/shm.
pub(super) fn reserve(fd: &rustix::fd::OwnedFd, size: u64) -> std::result::Result<(), Errno> {
    reserve_range(fd, 0, size)
}

/// Reserve the bytes `[from, to)` of the file (extending it to `to`).
pub(super) fn reserve_range<Fd: rustix::fd::AsFd>(
    fd: Fd,
    from: u64,
    to: u64,
) -> std::result::Result<(), Errno> {
    let fd = fd.as_fd();
    let size = to;
    match rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), from, to - from) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
            // No fallocate: size the file, then write every page, which reports
            // ENOSPC instead of faulting.
            rustix::fs::ftruncate(fd, size)?;
            let zeros = vec![0u8; 1 << 16];
            let mut offset = from;
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
