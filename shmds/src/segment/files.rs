//! The segment's file in /dev/shm: opening it safely, reserving its space,
//! listing segments.

use super::{os_error, validate_segment_name};
use crate::error::{Error, Result};
use rustix::fs::Mode;
use rustix::io::Errno;

/// The directory where Linux keeps POSIX shared memory objects (what
/// `shm_open` opens).
pub(crate) const SHM_DIR: &str = "/dev/shm";

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
