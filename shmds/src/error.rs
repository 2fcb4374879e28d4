//! The one error type of the crate.

use std::io;

/// Everything that can go wrong in `shmds`.
///
/// Each message says what happened and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A segment or entry name is not acceptable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No shared memory segment has this name.
    #[error(
        "segment {name:?} does not exist (create it first, or check the name with `shmds ls`)"
    )]
    SegmentNotFound {
        /// The segment name.
        name: String,
    },
    /// A segment with this name already exists.
    #[error("segment {name:?} already exists (open it, or remove it with `shmds rm {name}`)")]
    SegmentExists {
        /// The segment name.
        name: String,
    },
    /// The operating system refused access.
    #[error("permission denied on segment {name:?} (check its owner and mode in /dev/shm)")]
    PermissionDenied {
        /// The segment name.
        name: String,
    },
    /// `/dev/shm` (or the memory limit) has no room for a new segment.
    #[error("no space to reserve {requested} bytes for segment {name:?} (/dev/shm is full: free space or ask for less)")]
    NoSpace {
        /// The segment name.
        name: String,
        /// Bytes that were asked for.
        requested: u64,
    },
    /// The segment's heap cannot hold the requested block, even after
    /// growing to its maximum size.
    #[error("segment out of space: {requested} bytes requested, at most {available} available even at the segment's maximum size (erase structures, or create the segment with a larger maximum size)")]
    OutOfSpace {
        /// Bytes requested (after alignment, block header included).
        requested: u64,
        /// The largest block that could be had: the largest free block, or
        /// the space up to the maximum size.
        available: u64,
    },
    /// The name table has no free entry.
    #[error("name table is full ({capacity} entries; create the segment with a larger table)")]
    TableFull {
        /// Number of entries in the table.
        capacity: u32,
    },
    /// No entry with this name in the segment.
    #[error("no entry named {name:?} in segment {segment:?}")]
    EntryNotFound {
        /// The segment name.
        segment: String,
        /// The entry name.
        name: String,
    },
    /// An entry with this name already exists.
    #[error("entry {name:?} already exists in segment {segment:?} (open it instead)")]
    EntryExists {
        /// The segment name.
        segment: String,
        /// The entry name.
        name: String,
    },
    /// The entry exists but is a different kind of structure.
    #[error("entry {name:?} is {}, not {} (open it as {}, or use another name)", with_article(.found), with_article(.expected), with_article(.found))]
    KindMismatch {
        /// The entry name.
        name: String,
        /// The kind that was asked for.
        expected: &'static str,
        /// The kind stored in the table.
        found: &'static str,
    },
    /// The entry holds a different element type.
    #[error("entry {name:?} holds {}, not {} (open it with the type it holds, or use another name)", crate::type_name::named(.found), crate::type_name::named(.expected))]
    TypeMismatch {
        /// The entry name.
        name: String,
        /// The type descriptor that was asked for.
        expected: String,
        /// The type descriptor stored in the table.
        found: String,
    },
    /// The entry (or segment) exists with another shape than the caller
    /// stated: another array length, capacity or segment size.
    #[error("{name:?} exists with {what} {found}, not the {expected} asked for ({})", shape_remedy(.what))]
    ShapeMismatch {
        /// The entry or segment name.
        name: String,
        /// What differs, in the caller's words: "length", "capacity", "size".
        what: &'static str,
        /// The value the caller asked for.
        expected: u64,
        /// The value it has.
        found: u64,
    },
    /// A type descriptor could not be parsed or is too long.
    #[error("invalid type descriptor {descriptor:?}: {reason}")]
    InvalidType {
        /// The descriptor.
        descriptor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The structure behind a handle was erased (and maybe re-created).
    #[error("entry {name:?} was erased after this handle was opened (open it again)")]
    Stale {
        /// The entry name.
        name: String,
    },
    /// The segment is not a shmds segment, or it is damaged.
    #[error("segment {name:?} is corrupt: {detail}")]
    Corrupt {
        /// The segment name.
        name: String,
        /// What check failed.
        detail: String,
    },
    /// The segment was made by an incompatible build or format version.
    #[error("segment {name:?} is incompatible with this build: {detail}")]
    Incompatible {
        /// The segment name.
        name: String,
        /// What differs.
        detail: String,
    },
    /// The segment's creator has not finished initialising it.
    #[error("segment {name:?} is not ready: {detail}")]
    NotReady {
        /// The segment name.
        name: String,
        /// Why it is not ready.
        detail: String,
    },
    /// An index past the end of an array.
    #[error("index {index} out of bounds for length {len}")]
    IndexOutOfBounds {
        /// The index used.
        index: u64,
        /// The array length.
        len: u64,
    },
    /// The registration lock stayed with one live process for longer than
    /// the segment's lock timeout.
    #[error("segment {segment:?}: the registration lock has been held by live process {pid} for over {seconds} s (is it stopped? if the segment may be damaged, run `shmds check`)")]
    LockBusy {
        /// The segment name.
        segment: String,
        /// The process holding the lock.
        pid: u32,
        /// How long we waited.
        seconds: u64,
    },
    /// A live process held a lock or slot of a structure for longer than
    /// the segment's lock timeout.
    #[error("{name:?}: live process {pid} has held a lock in it for over {seconds} s (is it stopped? if the segment may be damaged, run `shmds check`)")]
    Busy {
        /// The entry name.
        name: String,
        /// The process holding the lock.
        pid: u32,
        /// How long we waited.
        seconds: u64,
    },
    /// A bounded structure is full.
    #[error("{name:?} is full")]
    Full {
        /// The entry name.
        name: String,
    },
    /// A structure is empty.
    #[error("{name:?} is empty")]
    Empty {
        /// The entry name.
        name: String,
    },
    /// A blocking operation timed out.
    #[error("timed out waiting on {name:?}")]
    Timeout {
        /// The entry name.
        name: String,
    },
    /// A blocking operation was abandoned because its interrupt check (see
    /// [`RawQueue::push_slice`](crate::RawQueue::push_slice)) asked it to stop.
    #[error("waiting on {name:?} was interrupted")]
    Interrupted {
        /// The entry name.
        name: String,
    },
    /// A message is larger than the channel's or topic's limit.
    #[error("a message of {len} bytes is larger than {name:?} allows ({max} bytes; send less, or create it with a larger max_message)")]
    MessageTooLarge {
        /// The entry name.
        name: String,
        /// The message length.
        len: u64,
        /// The limit fixed at creation.
        max: u64,
    },
    /// The other side of a channel is gone: every sender (for a receiver
    /// that found it empty) or every receiver (for a sender that found it
    /// full) detached or died.
    #[error("{name:?} is disconnected: no {peer} is attached any more (its messages were all delivered)")]
    Disconnected {
        /// The entry name.
        name: String,
        /// The side that is gone: "sender" or "receiver".
        peer: &'static str,
    },
    /// The structure was shut down (by this or another process): nothing
    /// more goes in (a put or send fails like this at once), and what was
    /// in it can still be taken; a get or receive fails like this once
    /// nothing is left.
    #[error("{name:?} was shut down (nothing more goes in; a get fails once nothing is left; erase it and create it again to start over)")]
    ShutDown {
        /// The entry name.
        name: String,
    },
    /// A subscriber fell behind by more than a topic holds: `missed`
    /// messages were overwritten before it read them. It goes on from the
    /// oldest message still held.
    #[error("{name:?}: this subscriber fell behind and missed {missed} messages (they were overwritten; it continues with the oldest one held)")]
    Lagged {
        /// The entry name.
        name: String,
        /// Messages lost to this subscriber.
        missed: u64,
    },
    /// An SPSC channel already has a live sender or receiver.
    #[error("{name:?} is a single-producer single-consumer channel and process {pid} is attached as its {role} (detach it first, or create the channel without spsc)")]
    AlreadyAttached {
        /// The entry name.
        name: String,
        /// "sender" or "receiver".
        role: &'static str,
        /// The attached process.
        pid: u32,
    },
    /// Every attachment word of a channel is held by a live process.
    #[error("{name:?}: {slots} processes are attached, the most a channel records (detach some)")]
    TooManyAttached {
        /// The entry name.
        name: String,
        /// The number of attachment words.
        slots: usize,
    },
    /// A lock was taken from a process that died holding it (what `?` makes
    /// of [`LockError::OwnerDied`](crate::LockError); the lock was released
    /// again).
    #[error("{name:?}: process {pid} died holding this lock, so what it guards may be half-updated (the lock was taken over; use LockError::recover to go on holding it)")]
    OwnerDied {
        /// The entry name.
        name: String,
        /// The pid of the process that died.
        pid: u32,
    },
    /// A release of a lock (or a once's run) this process does not hold.
    #[error("{name:?} is not held by this process{}", holder_text(*.holder))]
    NotOwner {
        /// The entry name.
        name: String,
        /// The pid holding it, 0 if nobody does.
        holder: u32,
    },
    /// A barrier wait on a broken barrier (a party timed out, aborted or died).
    #[error("barrier {name:?} is broken: a party timed out, was interrupted, aborted or died (reset it to use it again)")]
    BrokenBarrier {
        /// The entry name.
        name: String,
    },
    /// A bounded semaphore released past its initial value.
    #[error("semaphore {name:?} released too many times: it has {value} permits and holds at most {max}")]
    TooManyReleases {
        /// The entry name.
        name: String,
        /// Permits it held.
        value: u32,
        /// The most it holds.
        max: u32,
    },
    /// Every reader slot of an rwlock is taken by a live process.
    #[error("rwlock {name:?}: {slots} processes hold read locks, as many as it has reader slots (create it with more reader slots)")]
    ReaderSlotsFull {
        /// The entry name.
        name: String,
        /// The number of reader slots.
        slots: u32,
    },
    /// A snapshot store has no snapshot with this id (or id prefix).
    #[error("store {store:?} has no snapshot {id:?} (list them with `shmds snapshots {store}`)")]
    SnapshotNotFound {
        /// The store directory.
        store: String,
        /// The id or prefix asked for.
        id: String,
    },
    /// Stored bytes (a durable segment's file, a snapshot's chunk or
    /// manifest) do not match their checksum.
    #[error("{what} is damaged: {detail}")]
    Damaged {
        /// What was read: a file, a chunk, a manifest.
        what: String,
        /// What did not match, and what to do.
        detail: String,
    },
    /// A remote segment's server could not be reached or did not answer in
    /// time: a lost connection, a timeout, a cluster redirection that failed
    /// or a server-side error. Whether the operation took effect is unknown
    /// for a write (see the `remote` module's delivery guarantees).
    #[error("remote segment {segment:?} is unavailable: {cause} (check that the server is running and reachable; the next call reconnects)")]
    Unavailable {
        /// The segment name.
        segment: String,
        /// What went wrong, as the client saw it.
        cause: String,
    },
    /// An argument is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, err: impl Into<io::Error>) -> Error {
        Error::Io {
            op,
            source: err.into(),
        }
    }
}

/// What to do about a [`Error::ShapeMismatch`] of `what`.
fn shape_remedy(what: &str) -> String {
    match what {
        "size" | "table capacity" => format!(
            "open it without stating a {what}, or remove the segment (`shmds rm`) and create it again"
        ),
        _ => format!("open it without stating a {what}, or erase the entry and create it again"),
    }
}

/// ": it is free", ": process N holds it".
fn holder_text(holder: u32) -> String {
    if holder == 0 {
        " (nobody holds it)".to_owned()
    } else {
        format!(" (process {holder} holds it)")
    }
}

/// "an array", "a queue": a kind name with its article.
fn with_article(kind: &str) -> String {
    // "a once" (said "wunce"), "an array".
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) && kind != "once" {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
