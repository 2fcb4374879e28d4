//! The C ABI of shmds (`libshmds.so`, `libshmds.a`), declared in
//! `include/shmds.h` (generated from this file, `ring.rs`, `message.rs`,
//! `channel.rs`, `topic.rs` and `layout.rs`; a test fails when the
//! checked-in header is stale).
//!
//! Conventions:
//! - Functions return `SHMDS_OK` (0) or a negative `SHMDS_E_*` code;
//!   `shmds_strerror(code)` names a code and `shmds_last_error()` gives the
//!   full message of the calling thread's last failure.
//! - Handles are opaque pointers, released with their `*_close` function
//!   (`NULL` is accepted and ignored). Structure handles keep their
//!   segment mapped: closing the segment handle first is allowed.
//! - Every open states what the caller expects: the element size (a map's
//!   key and value sizes) and optionally a type descriptor (`NULL`: any
//!   type of that size). Another size or type is `SHMDS_E_TYPE`.
//! - Every buffer is passed with its size in bytes, which must be exactly
//!   what the call moves: one element (key, value), or for the entries
//!   listing a whole number of `ShmdsEntryInfo`. Another size is
//!   `SHMDS_E_INVALID` and nothing is read or written. Messages (channels,
//!   topics) have any length: a receive buffer must be at least as large
//!   as the message, else `SHMDS_E_BUFFER_TOO_SMALL`, the length needed in
//!   `*len`, and the message is kept for the next call.
//! - Timeouts are in nanoseconds; a negative timeout waits forever.
//! - No Rust panic crosses the boundary: one would become `SHMDS_E_PANIC`.
//! - Every handle may be used from several threads at once (the calls on
//!   one sender, receiver, subscriber or topic's publishing side run one
//!   at a time).

#![allow(clippy::missing_safety_doc)] // the header documents each pointer rule

use shmds_core as core_lib;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Write `items` and, in test builds, keep their text in `$decls`:
/// cbindgen does not expand macros, so the header generator hands it the
/// text of macro-written functions as a source file of its own (see
/// `ring.rs`).
macro_rules! c_items_with_text {
    ($decls:ident; $($items:tt)*) => {
        $($items)*
        #[cfg(test)]
        pub(crate) const $decls: &str = stringify!($($items)*);
    };
}

/// Each `try $try, wait $wait, (args) => $body;` writes the C function
/// `$try(args)`, which calls `$body(args, None)` (never sleeps), and its
/// waiting twin `$wait(args, timeout_ns)`, which calls `$body(args,
/// Some(timeout_ns))`, from one template; their text goes to `$decls` as
/// with `c_items_with_text!`.
macro_rules! try_and_wait {
    ($decls:ident; $(
        $(#[$try_doc:meta])* try $try:ident,
        $(#[$wait_doc:meta])* wait $wait:ident,
        ($($arg:ident: $T:ty),*) => $body:ident;
    )*) => {
        c_items_with_text! { $decls; $(
            $(#[$try_doc])*
            #[no_mangle]
            pub unsafe extern "C" fn $try($($arg: $T),*) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { $body($($arg,)* None) }
            }

            $(#[$wait_doc])*
            #[no_mangle]
            pub unsafe extern "C" fn $wait($($arg: $T,)* timeout_ns: i64) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { $body($($arg,)* Some(timeout_ns)) }
            }
        )* }
    };
}

mod array;
mod channel;
mod coord;
mod map;
mod message;
mod ring;
mod set;
mod topic;

/// Success.
pub const SHMDS_OK: c_int = 0;
/// An argument is invalid (a NULL pointer, a bad name, a buffer of the
/// wrong size, a bad type descriptor).
pub const SHMDS_E_INVALID: c_int = -1;
/// No such segment or entry.
pub const SHMDS_E_NOT_FOUND: c_int = -2;
/// The segment or entry already exists.
pub const SHMDS_E_EXISTS: c_int = -3;
/// The operating system refused access.
pub const SHMDS_E_PERMISSION: c_int = -4;
/// The entry is another kind of structure, or holds elements (keys,
/// values) of another size or type than the caller stated.
pub const SHMDS_E_TYPE: c_int = -5;
/// No room: /dev/shm, the segment's heap, its name table, or a full map.
pub const SHMDS_E_NO_SPACE: c_int = -6;
/// The queue, stack or channel is full (a try call).
pub const SHMDS_E_FULL: c_int = -7;
/// The queue, stack or channel is empty (a try call), a subscriber has no
/// new message, or a topic had none published yet.
pub const SHMDS_E_EMPTY: c_int = -8;
/// A blocking call timed out.
pub const SHMDS_E_TIMEOUT: c_int = -9;
/// The segment is damaged or not a shmds segment.
pub const SHMDS_E_CORRUPT: c_int = -10;
/// The segment was made by an incompatible format or machine.
pub const SHMDS_E_INCOMPATIBLE: c_int = -11;
/// The structure was erased after the handle was opened.
pub const SHMDS_E_STALE: c_int = -12;
/// A live process held a lock for longer than the lock timeout.
pub const SHMDS_E_BUSY: c_int = -13;
/// The segment's creator has not finished initialising it.
pub const SHMDS_E_NOT_READY: c_int = -14;
/// A system call failed.
pub const SHMDS_E_IO: c_int = -15;
/// An index is past the end of an array.
pub const SHMDS_E_INDEX: c_int = -16;
/// A bug in shmds (a Rust panic), caught at the boundary.
pub const SHMDS_E_PANIC: c_int = -17;
/// The structure or segment exists with another shape than the caller
/// asked for: another array length, capacity or segment size.
pub const SHMDS_E_SHAPE: c_int = -18;
/// The other side of a channel is gone: a receiver found it empty and no
/// sender is attached any more (all its messages were delivered), or a
/// sender found it full and no receiver is attached. Stop, or attach anew.
pub const SHMDS_E_DISCONNECTED: c_int = -19;
/// The channel, queue or stack was shut down (`shmds_channel_shutdown`,
/// or another process or language): sends and pushes fail, and receivers
/// and pops get this once what is left was taken.
pub const SHMDS_E_SHUT_DOWN: c_int = -20;
/// A message is longer than the channel's or topic's `max_message`; nothing
/// was sent.
pub const SHMDS_E_MESSAGE_TOO_LARGE: c_int = -21;
/// A topic subscriber fell behind: messages were overwritten before it read
/// them (the count goes to `*missed`). Nothing was received; the next call
/// goes on from the oldest message held.
pub const SHMDS_E_LAGGED: c_int = -22;
/// An SPSC channel already has a live sender (receiver) attached, in this
/// process or another: close it first, or create the channel without
/// `SHMDS_SPSC`.
pub const SHMDS_E_ALREADY_ATTACHED: c_int = -23;
/// Every attachment record of a channel is held by a live process (at most
/// 32 processes attach at once): close some senders or receivers.
pub const SHMDS_E_TOO_MANY_ATTACHED: c_int = -24;
/// The receive buffer is smaller than the message: nothing was received,
/// the length needed is in `*len`, and the message is kept (first in the
/// channel, or for the subscriber's next call).
pub const SHMDS_E_BUFFER_TOO_SMALL: c_int = -25;
/// The lock (rwlock, condition's lock) was taken, but the process that held
/// it died holding it: the caller holds it now, and what it guarded may be
/// half-updated (as `EOWNERDEAD` of a robust pthread mutex). Repair or
/// check that state, then release as after `SHMDS_OK`.
pub const SHMDS_E_OWNER_DEAD: c_int = -26;
/// A release (or condition wait, once finish) by a process that does not
/// hold the lock (read lock, once run).
pub const SHMDS_E_NOT_OWNER: c_int = -27;
/// The barrier is broken (aborted, a wait timed out, or a waiting party
/// died): every wait fails with this until `shmds_barrier_reset`.
pub const SHMDS_E_BROKEN: c_int = -28;
/// A bounded semaphore's release would pass its initial value; nothing was
/// released.
pub const SHMDS_E_TOO_MANY_RELEASES: c_int = -29;
/// Every reader slot of the rwlock is claimed by another live process (a
/// process keeps its slot from its first read lock while it runs): create
/// the rwlock with more reader slots.
pub const SHMDS_E_READER_SLOTS_FULL: c_int = -30;

/// Kinds of structure, as in `shmds_entry_info.kind` and FORMAT.md.
pub const SHMDS_KIND_ARRAY: u32 = 1;
/// A FIFO queue.
pub const SHMDS_KIND_QUEUE: u32 = 2;
/// A LIFO stack.
pub const SHMDS_KIND_STACK: u32 = 3;
/// A hash map.
pub const SHMDS_KIND_MAP: u32 = 4;
/// A channel of variable-length messages.
pub const SHMDS_KIND_CHANNEL: u32 = 5;
/// A broadcast topic of variable-length messages.
pub const SHMDS_KIND_TOPIC: u32 = 6;
/// A set of keys (a map without values).
pub const SHMDS_KIND_SET: u32 = 7;

/// Channel flag: one sender and one receiver (the SPSC protocol, no
/// compare-and-swap on the hot path); a second live one is refused.
pub const SHMDS_SPSC: u32 = 1;
/// Channel and topic flag: every message carries a CRC32C of its bytes,
/// checked on receipt (a damaged message is `SHMDS_E_CORRUPT`).
pub const SHMDS_CHECKSUM: u32 = 2;

/// Segment flag (`ShmdsSegmentOptions.flags`) of a new segment: remove it
/// when the last attached process (in any language) closes it or dies.
/// Every open segment handle attaches its process. A temporary segment
/// found with every attached process dead is removed by the next open,
/// which then fails with `SHMDS_E_NOT_FOUND` (an open-or-create creates
/// a fresh one).
pub const SHMDS_TEMPORARY: u32 = 1;
/// Segment flag of a new segment: zero every structure's memory when it
/// is erased (as `shmds_segment_erase_wipe` does for one).
pub const SHMDS_WIPE_ON_ERASE: u32 = 2;
/// Segment flag for `shmds_segment_open_with`: map the segment read-only,
/// for inspection. Such a handle does not attach (so
/// `shmds_segment_is_abandoned` can be 1) and opens no structure.
pub const SHMDS_READ_ONLY: u32 = 4;

const _: () = assert!(
    SHMDS_TEMPORARY == core_lib::layout::segment_flags::TEMPORARY
        && SHMDS_WIPE_ON_ERASE == core_lib::layout::segment_flags::WIPE_ON_ERASE
);

const _: () = assert!(
    SHMDS_SPSC == core_lib::layout::message_flags::SPSC
        && SHMDS_CHECKSUM == core_lib::layout::message_flags::CHECKSUM
        && SHMDS_KIND_CHANNEL == core_lib::layout::kind::CHANNEL
        && SHMDS_KIND_TOPIC == core_lib::layout::kind::TOPIC
        && SHMDS_KIND_SET == core_lib::layout::kind::SET
);

/// An attached segment.
pub struct ShmdsSegment(core_lib::Segment);
/// An array of fixed-size elements.
pub struct ShmdsArray(core_lib::RawArray);
/// A bounded multi-producer multi-consumer FIFO queue.
pub struct ShmdsQueue(core_lib::RawQueue);
/// A bounded LIFO stack.
pub struct ShmdsStack(core_lib::RawStack);
/// A fixed-capacity hash map.
pub struct ShmdsMap(core_lib::RawMap);

/// How to create or open a segment (`shmds_segment_create_with`,
/// `shmds_segment_open_or_create_with`, `shmds_segment_open_with`).
/// Zero-initialise it (`ShmdsSegmentOptions opts = {0};`) and set what
/// you need: a field left 0 takes its default.
#[repr(C)]
pub struct ShmdsSegmentOptions {
    /// Size in bytes of a new segment, rounded up to a page; 0: 1 MiB. An
    /// open-or-create (or open) that states a size refuses an existing
    /// segment of another size (`SHMDS_E_SHAPE`); 0 accepts any.
    pub size: u64,
    /// The largest size a new segment grows to; 0: the default (4 GiB, or
    /// the size if larger).
    pub max_size: u64,
    /// Entries in a new segment's table; 0: 64. Checked against an
    /// existing segment like `size`.
    pub table_capacity: u32,
    /// Permission bits of a new segment (not reduced by the umask); 0: 0600.
    pub mode: u32,
    /// `SHMDS_TEMPORARY`, `SHMDS_WIPE_ON_ERASE` (a new segment),
    /// `SHMDS_READ_ONLY` (`shmds_segment_open_with` only); other bits are
    /// `SHMDS_E_INVALID`.
    pub flags: u32,
    /// Reserved: must be 0.
    pub reserved: u32,
}

/// One structure in a segment's table (see `shmds_segment_entries`).
#[repr(C)]
pub struct ShmdsEntryInfo {
    /// The name, NUL-terminated.
    pub name: [c_char; 64],
    /// One of `SHMDS_KIND_*`.
    pub kind: u32,
    /// Size of an element (a map's value) in bytes.
    pub elem_size: u32,
    /// Size of a map's key in bytes (0 for other kinds).
    pub key_size: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Array length, or queue, stack or map capacity.
    pub capacity: u64,
    /// Size of the structure's block in bytes.
    pub bytes: u64,
    /// The element (value) type descriptor, NUL-terminated.
    pub elem_type: [c_char; 128],
    /// The key type descriptor (maps), NUL-terminated.
    pub key_type: [c_char; 64],
}

thread_local! {
    /// The message of the thread's last failed call: owned, or one of the
    /// fixed texts of the calls that fail often (a full or empty queue),
    /// which then cost no allocation.
    static LAST_ERROR: RefCell<Cow<'static, CStr>> = const { RefCell::new(Cow::Borrowed(c"")) };
}

fn code_of(e: &core_lib::Error) -> c_int {
    use core_lib::Error as E;
    match e {
        E::InvalidName { .. } | E::InvalidType { .. } | E::InvalidArgument(_) => SHMDS_E_INVALID,
        E::SegmentNotFound { .. } | E::EntryNotFound { .. } | E::SnapshotNotFound { .. } => {
            SHMDS_E_NOT_FOUND
        }
        E::SegmentExists { .. } | E::EntryExists { .. } => SHMDS_E_EXISTS,
        E::PermissionDenied { .. } => SHMDS_E_PERMISSION,
        E::KindMismatch { .. } | E::TypeMismatch { .. } => SHMDS_E_TYPE,
        E::ShapeMismatch { .. } => SHMDS_E_SHAPE,
        E::NoSpace { .. } | E::OutOfSpace { .. } | E::TableFull { .. } => SHMDS_E_NO_SPACE,
        E::Full { .. } => SHMDS_E_FULL,
        E::Empty { .. } => SHMDS_E_EMPTY,
        E::Timeout { .. } | E::Interrupted { .. } => SHMDS_E_TIMEOUT,
        E::Corrupt { .. } | E::Damaged { .. } => SHMDS_E_CORRUPT,
        E::Incompatible { .. } => SHMDS_E_INCOMPATIBLE,
        E::Stale { .. } => SHMDS_E_STALE,
        E::LockBusy { .. } | E::Busy { .. } => SHMDS_E_BUSY,
        E::NotReady { .. } => SHMDS_E_NOT_READY,
        E::IndexOutOfBounds { .. } => SHMDS_E_INDEX,
        E::Disconnected { .. } => SHMDS_E_DISCONNECTED,
        E::ShutDown { .. } => SHMDS_E_SHUT_DOWN,
        E::MessageTooLarge { .. } => SHMDS_E_MESSAGE_TOO_LARGE,
        E::Lagged { .. } => SHMDS_E_LAGGED,
        E::AlreadyAttached { .. } => SHMDS_E_ALREADY_ATTACHED,
        E::TooManyAttached { .. } => SHMDS_E_TOO_MANY_ATTACHED,
        E::OwnerDied { .. } => SHMDS_E_OWNER_DEAD,
        E::NotOwner { .. } => SHMDS_E_NOT_OWNER,
        E::BrokenBarrier { .. } => SHMDS_E_BROKEN,
        E::TooManyReleases { .. } => SHMDS_E_TOO_MANY_RELEASES,
        E::ReaderSlotsFull { .. } => SHMDS_E_READER_SLOTS_FULL,
        _ => SHMDS_E_IO,
    }
}

fn remember(msg: String) {
    let msg = CString::new(msg.replace('\0', "?")).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; drop the message.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Cow::Owned(msg));
}

/// A call that found nothing to do (a full or empty queue or stack):
/// `code`, with the fixed message `msg`, without allocating.
fn miss(code: c_int, msg: &'static CStr) -> c_int {
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Cow::Borrowed(msg));
    code
}

/// A failure: its code and message.
struct Fail(c_int, String);

impl From<core_lib::Error> for Fail {
    fn from(e: core_lib::Error) -> Fail {
        Fail(code_of(&e), e.to_string())
    }
}

/// An invalid argument; its message starts as the core library's do
/// ("invalid argument: ..."), so `shmds_last_error()` alone says it all.
/// A count or index from C as the core's `usize`. Saturates on a target
/// where `usize` is narrower than 64 bits, so an out-of-range value stays
/// out of range (the core then refuses it) instead of wrapping.
pub(crate) fn count(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn invalid(msg: &str) -> Fail {
    Fail(SHMDS_E_INVALID, format!("invalid argument: {msg}"))
}

/// Run `body`, turning errors and panics into a code (and the thread's
/// last error message).
fn call(body: impl FnOnce() -> Result<c_int, Fail>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(Fail(code, msg))) => {
            remember(msg);
            code
        }
        Err(_) => {
            remember("internal error: a Rust panic was caught at the C boundary".into());
            SHMDS_E_PANIC
        }
    }
}

/// A C string argument as UTF-8.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string (header contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// An optional C string argument (`NULL` is `None`).
unsafe fn optional_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, so a NUL-terminated string (header contract).
    unsafe { text(p, what) }.map(Some)
}

/// A handle argument.
unsafe fn handle<'a, T>(p: *const T) -> Result<&'a T, Fail> {
    // SAFETY: a non-NULL handle was returned by this library and not yet
    // closed (header contract).
    unsafe { p.as_ref() }.ok_or_else(|| invalid("handle is NULL"))
}

/// What a caller's buffer must hold, for the size check and its message:
/// `want` bytes, the size of one of the `unit` of `owner` (e.g. one of the
/// elements of queue "jobs").
struct Need<'a> {
    /// "elements", "keys", "values".
    unit: &'a str,
    /// The structure, e.g. `queue "jobs"`.
    owner: &'a dyn std::fmt::Display,
    want: usize,
}

impl Need<'_> {
    fn check(&self, p: *const c_void, size: usize, role: &str) -> Result<(), Fail> {
        if p.is_null() {
            return Err(invalid(&format!("{role} buffer is NULL")));
        }
        if size != self.want {
            return Err(invalid(&format!(
                "{role} buffer is {size} bytes, but {owner} has {unit} of {want} bytes \
                 (pass a buffer of exactly that size, and its size)",
                unit = self.unit,
                owner = self.owner,
                want = self.want
            )));
        }
        Ok(())
    }

    /// The caller's `size` bytes at `p`, to read (an element, key or value).
    unsafe fn input<'b>(&self, p: *const c_void, size: usize) -> Result<&'b [u8], Fail> {
        self.check(p, size, "input")?;
        // SAFETY: the caller passes `size` readable bytes (header contract),
        // and `size` is what the call reads.
        Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) })
    }

    /// The caller's `size` bytes at `p` holding whole elements (keys,
    /// values), none or more: `size` a multiple of the unit's size, `p`
    /// non-NULL unless `size` is 0.
    unsafe fn many<'b>(&self, p: *const c_void, size: usize, role: &str) -> Result<&'b [u8], Fail> {
        if size == 0 {
            return Ok(&[]);
        }
        if p.is_null() {
            return Err(invalid(&format!(
                "{role} buffer is NULL but its size is not 0"
            )));
        }
        if self.want == 0 || size % self.want != 0 {
            return Err(invalid(&format!(
                "{role} buffer is {size} bytes, not a whole number of the {unit} of {owner} \
                 ({want} bytes each)",
                unit = self.unit,
                owner = self.owner,
                want = self.want
            )));
        }
        // SAFETY: the caller passes `size` bytes at `p` (header contract),
        // readable, and writable for the output calls (`many_mut`).
        Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size) })
    }

    /// [`Need::many`], to write.
    unsafe fn many_mut<'b>(&self, p: *mut c_void, size: usize) -> Result<&'b mut [u8], Fail> {
        // SAFETY: as for `many`: the checks only.
        unsafe { self.many(p, size, "output")? };
        if size == 0 {
            return Ok(&mut []);
        }
        // SAFETY: `many` checked p and size; the caller passes `size`
        // writable bytes (header contract), and they are what the call writes.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size) })
    }

    /// The caller's `size` writable bytes at `p`.
    unsafe fn output<'b>(&self, p: *mut c_void, size: usize) -> Result<&'b mut [u8], Fail> {
        self.check(p, size, "output")?;
        // SAFETY: the caller passes `size` writable bytes (header contract),
        // and `size` is what the call writes.
        Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), size) })
    }
}

/// A structure as messages name it: `queue "jobs"`.
struct Named<'a>(&'a str, &'a str);

impl std::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.0, self.1)
    }
}

/// The elements (keys, values) a caller states: a size and maybe a type.
#[derive(Clone, Copy)]
struct Stated<'a> {
    /// "elements", "keys", "values".
    what: &'a str,
    size: usize,
    descriptor: Option<&'a str>,
}

impl<'a> Stated<'a> {
    /// What the caller stated, read from the C arguments (`descriptor` may
    /// be NULL). A descriptor must describe elements of `size` bytes.
    unsafe fn new(what: &'a str, size: usize, descriptor: *const c_char) -> Result<Self, Fail> {
        // SAFETY: NULL or a NUL-terminated string (header contract).
        let descriptor = unsafe { optional_text(descriptor, "type descriptor")? };
        if let Some(d) = descriptor {
            let parsed = core_lib::TypeDescriptor::parse(d)?;
            if parsed.size() != size as u64 {
                return Err(invalid(&format!(
                    "type {d:?} describes {what} of {} bytes, but the size given is {size} \
                     (make the size and the type agree)",
                    parsed.size()
                )));
            }
        }
        Ok(Stated {
            what,
            size,
            descriptor,
        })
    }

    /// The stated descriptor, required (to create a structure).
    fn required(&self) -> Result<&'a str, Fail> {
        self.descriptor.ok_or_else(|| {
            invalid(&format!(
                "the type descriptor of the {} is NULL: a new structure needs one",
                self.what
            ))
        })
    }

    /// `Err(SHMDS_E_TYPE)` unless `owner` holds what was stated: elements
    /// of `size` bytes with type `found` (a canonical descriptor).
    fn matches(&self, owner: &Named<'_>, size: usize, found: &str) -> Result<(), Fail> {
        let what = self.what;
        // `u64 ("<Q")`: the name people read, with the descriptor to state.
        let named = |d: &str| match core_lib::human_type(d) {
            human if human == d => format!("{d:?}"),
            human => format!("{human} ({d:?})"),
        };
        if size != self.size {
            return Err(Fail(
                SHMDS_E_TYPE,
                format!(
                    "{owner} holds {what} of {size} bytes ({}), not {} \
                     (state the size and type it holds, or open another name)",
                    named(found),
                    self.size
                ),
            ));
        }
        if let Some(d) = self.descriptor {
            let canonical = core_lib::TypeDescriptor::parse(d)?;
            let stored = core_lib::TypeDescriptor::parse(found)?;
            if canonical.as_str() != stored.as_str() {
                return Err(Fail(
                    SHMDS_E_TYPE,
                    format!(
                        "{owner} holds {what} of type {}, not {} (both {size} bytes; \
                         state the type it holds, or NULL for any type of {size} bytes)",
                        named(found),
                        named(canonical.as_str())
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `Err` for a NULL output handle pointer: checked before anything is
/// created, so that a failed call leaves nothing behind.
fn need_out<T>(out: *mut *mut T) -> Result<(), Fail> {
    if out.is_null() {
        return Err(invalid("output handle pointer is NULL"));
    }
    Ok(())
}

/// Store a new handle in `*out`.
unsafe fn give<T>(out: *mut *mut T, value: T) -> Result<c_int, Fail> {
    need_out(out)?;
    // SAFETY: `out` is non-NULL and points to writable storage for a pointer.
    unsafe { *out = Box::into_raw(Box::new(value)) };
    Ok(SHMDS_OK)
}

/// Store `value` in `*out` if `out` is not NULL.
unsafe fn put<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL, and the caller passes writable storage.
        unsafe { *out = value };
    }
}

/// The shared part of every open and create: check the output pointer,
/// read the segment handle and the name, let `make` produce the structure
/// (it checks what the caller stated), and hand out its handle.
unsafe fn make_handle<T>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    out: *mut *mut T,
    make: impl FnOnce(&core_lib::Segment, &str) -> Result<T, Fail>,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        let seg = &handle(seg)?.0;
        let name = text(name, "name")?;
        give(out, make(seg, name)?)
    })
}

fn timeout(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

/// Release a handle made by `give`, catching any panic of its drop.
unsafe fn release<T>(p: *mut T) {
    if !p.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: p came from Box::into_raw in `give` and is closed once.
            drop(unsafe { Box::from_raw(p) })
        }));
    }
}

/// `check` on the handle `p`: SHMDS_OK, or the error (SHMDS_E_STALE for
/// an erased structure; SHMDS_E_INVALID for NULL).
unsafe fn liveness<T>(p: *const T, check: impl FnOnce(&T) -> core_lib::Result<()>) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        check(unsafe { handle(p)? })?;
        Ok(SHMDS_OK)
    })
}

/// A structure's attribute for the `*_len`-style getters: `get(handle)`,
/// or `0` for a NULL handle.
unsafe fn attribute<T, R: Default>(p: *const T, get: impl FnOnce(&T) -> R) -> R {
    // SAFETY: NULL or a live handle (header contract).
    unsafe { p.as_ref() }.map_or_else(R::default, get)
}

// ------------------------------------------------------------- errors

/// A static description of an error code.
#[no_mangle]
pub extern "C" fn shmds_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        SHMDS_OK => c"success",
        SHMDS_E_INVALID => c"invalid argument",
        SHMDS_E_NOT_FOUND => c"not found",
        SHMDS_E_EXISTS => c"already exists",
        SHMDS_E_PERMISSION => c"permission denied",
        SHMDS_E_TYPE => c"wrong kind, element size or element type",
        SHMDS_E_NO_SPACE => c"no space",
        SHMDS_E_FULL => c"full",
        SHMDS_E_EMPTY => c"empty",
        SHMDS_E_TIMEOUT => c"timed out",
        SHMDS_E_CORRUPT => c"corrupt segment",
        SHMDS_E_INCOMPATIBLE => c"incompatible segment",
        SHMDS_E_STALE => c"structure was erased",
        SHMDS_E_BUSY => c"lock held too long by a live process",
        SHMDS_E_NOT_READY => c"segment not ready",
        SHMDS_E_IO => c"system call failed",
        SHMDS_E_INDEX => c"index out of bounds",
        SHMDS_E_PANIC => c"internal error",
        SHMDS_E_SHAPE => c"exists with another length, capacity or size",
        SHMDS_E_DISCONNECTED => c"the other side of the channel is gone",
        SHMDS_E_SHUT_DOWN => c"shut down",
        SHMDS_E_MESSAGE_TOO_LARGE => c"message larger than max_message",
        SHMDS_E_LAGGED => c"subscriber fell behind and missed messages",
        SHMDS_E_ALREADY_ATTACHED => c"an SPSC channel's side is already attached",
        SHMDS_E_TOO_MANY_ATTACHED => c"too many processes attached",
        SHMDS_E_BUFFER_TOO_SMALL => c"buffer too small for the message",
        SHMDS_E_OWNER_DEAD => c"taken from a holder that died holding it",
        SHMDS_E_NOT_OWNER => c"not held by this process",
        SHMDS_E_BROKEN => c"barrier is broken",
        SHMDS_E_TOO_MANY_RELEASES => c"released past the bounded semaphore's value",
        SHMDS_E_READER_SLOTS_FULL => c"every reader slot is taken",
        _ => c"unknown error code",
    };
    s.as_ptr()
}

/// The message of the calling thread's last failed call (empty if none);
/// valid until the thread's next failing call.
#[no_mangle]
pub extern "C" fn shmds_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

// ------------------------------------------------------------- segments

/// Create the segment `name` with `size` bytes (`SHMDS_E_EXISTS` if it exists).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_create(
    name: *const c_char,
    size: u64,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        give(
            out,
            ShmdsSegment(core_lib::Segment::create(text(name, "name")?, size)?),
        )
    })
}

/// Open the existing segment `name`.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open(
    name: *const c_char,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        give(
            out,
            ShmdsSegment(core_lib::Segment::open(text(name, "name")?)?),
        )
    })
}

/// Open the segment `name`, creating it with `size` bytes if it does not
/// exist. An existing segment is accepted whatever its current size if it
/// can grow to `size` bytes (segments grow on demand); `SHMDS_E_SHAPE` if
/// its maximum size is smaller.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open_or_create(
    name: *const c_char,
    size: u64,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        give(
            out,
            ShmdsSegment(core_lib::Segment::open_or_create(
                text(name, "name")?,
                size,
            )?),
        )
    })
}

/// The Rust options for `opts`, for an open (`open`) or a create. Every
/// field is checked, so a bad one is refused before anything is made.
unsafe fn segment_options(
    opts: *const ShmdsSegmentOptions,
    open: bool,
) -> Result<core_lib::SegmentOptions, Fail> {
    // SAFETY: NULL or a readable ShmdsSegmentOptions (header contract).
    let o = unsafe { opts.as_ref() }.ok_or_else(|| invalid("options pointer is NULL"))?;
    let known = SHMDS_TEMPORARY | SHMDS_WIPE_ON_ERASE | if open { SHMDS_READ_ONLY } else { 0 };
    if o.flags & !known != 0 {
        return Err(invalid(&format!(
            "unknown segment flags {:#x} (SHMDS_TEMPORARY, SHMDS_WIPE_ON_ERASE{})",
            o.flags & !known,
            if open { ", SHMDS_READ_ONLY" } else { "" }
        )));
    }
    if o.reserved != 0 {
        return Err(invalid("ShmdsSegmentOptions.reserved must be 0"));
    }
    let mut rust = core_lib::Segment::options()
        .temporary(o.flags & SHMDS_TEMPORARY != 0)
        .wipe_on_erase(o.flags & SHMDS_WIPE_ON_ERASE != 0)
        .read_only(o.flags & SHMDS_READ_ONLY != 0)
        .mode(if o.mode == 0 { 0o600 } else { o.mode });
    if o.size != 0 {
        rust = rust.size(o.size);
    }
    if o.max_size != 0 {
        rust = rust.max_size(o.max_size);
    }
    if o.table_capacity != 0 {
        rust = rust.table_capacity(o.table_capacity);
    }
    Ok(rust)
}

/// The `shmds_segment_*_with` calls: check the arguments, build the options
/// (`open_only`: read-only allowed) and make the handle with `make`.
///
/// # Safety
/// The pointer rules of the header for `name`, `opts` and `out`.
unsafe fn segment_with(
    name: *const c_char,
    opts: *const ShmdsSegmentOptions,
    out: *mut *mut ShmdsSegment,
    open_only: bool,
    make: impl FnOnce(&core_lib::SegmentOptions, &str) -> core_lib::Result<core_lib::Segment>,
) -> c_int {
    // SAFETY: (caller) pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        let name = text(name, "name")?;
        let seg = make(&segment_options(opts, open_only)?, name)?;
        give(out, ShmdsSegment(seg))
    })
}

/// Create the segment `name` as `opts` says (`SHMDS_E_EXISTS` if it exists).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_create_with(
    name: *const c_char,
    opts: *const ShmdsSegmentOptions,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_with(name, opts, out, false, |o, n| o.create(n)) }
}

/// Open the segment `name`, creating it as `opts` says if it does not
/// exist (`SHMDS_E_SHAPE` if it exists with another maximum size or table
/// capacity than a non-zero one stated, or a size past its maximum).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open_or_create_with(
    name: *const c_char,
    opts: *const ShmdsSegmentOptions,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_with(name, opts, out, false, |o, n| o.open_or_create(n)) }
}

/// Open the existing segment `name` as `opts` says: `SHMDS_READ_ONLY` for
/// inspection (the handle does not attach), and the maximum size and table
/// capacity it must have (0: any).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_open_with(
    name: *const c_char,
    opts: *const ShmdsSegmentOptions,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_with(name, opts, out, true, |o, n| o.open(n)) }
}

/// Release a segment handle (the segment stays; see `shmds_segment_remove`).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_close(seg: *mut ShmdsSegment) {
    // SAFETY: a handle from this library, closed once (header contract).
    unsafe { release(seg) }
}

/// Remove the segment `name` from /dev/shm (attached processes keep their mapping).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_remove(name: *const c_char) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let name = unsafe { text(name, "name")? };
        core_lib::Segment::remove(name)?;
        Ok(SHMDS_OK)
    })
}

/// Erase the structure `name` from the segment's table (SHMDS_E_NOT_FOUND if
/// there is none). Open handles to it get SHMDS_E_STALE from then on
/// (`shmds_*_check`); the name can be created again.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_erase(
    seg: *const ShmdsSegment,
    name: *const c_char,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let (seg, name) = unsafe { (&handle(seg)?.0, text(name, "name")?) };
        seg.erase(name)?;
        Ok(SHMDS_OK)
    })
}

/// Erase the structure `name` as `shmds_segment_erase` does, and zero its
/// memory.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_erase_wipe(
    seg: *const ShmdsSegment,
    name: *const c_char,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let (seg, name) = unsafe { (&handle(seg)?.0, text(name, "name")?) };
        seg.erase_and_wipe(name)?;
        Ok(SHMDS_OK)
    })
}

/// A yes/no question about a segment: 1 or 0, `SHMDS_E_INVALID` for NULL.
unsafe fn segment_question(
    seg: *const ShmdsSegment,
    ask: impl FnOnce(&core_lib::Segment) -> bool,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let seg = unsafe { handle(seg)? };
        Ok(c_int::from(ask(&seg.0)))
    })
}

/// 1 if the segment is temporary (`SHMDS_TEMPORARY`), 0 if not,
/// `SHMDS_E_INVALID` for NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_is_temporary(seg: *const ShmdsSegment) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_question(seg, core_lib::Segment::is_temporary) }
}

/// 1 if no live process is attached to the segment (what `shmds rm
/// --abandoned` removes), 0 if one is, `SHMDS_E_INVALID` for NULL. A
/// handle that is not read-only is itself attached: 0.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_is_abandoned(seg: *const ShmdsSegment) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_question(seg, core_lib::Segment::is_abandoned) }
}

/// 1 if the process that created the segment still runs (its pid and start
/// time), 0 if not, `SHMDS_E_INVALID` for NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_creator_alive(seg: *const ShmdsSegment) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { segment_question(seg, core_lib::Segment::creator_alive) }
}

/// The processes attached to the segment: into `*live` those recorded and
/// running, into `*overflow` those counted without a record (every record
/// was taken). Either pointer may be NULL.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_attached(
    seg: *const ShmdsSegment,
    live: *mut u32,
    overflow: *mut u32,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let seg = unsafe { &handle(seg)?.0 };
        let running = seg.attachers().iter().filter(|a| a.alive).count();
        // SAFETY: NULL or writable (header contract).
        unsafe {
            put(live, u32::try_from(running).unwrap_or(u32::MAX));
            put(overflow, seg.attach_overflow());
        }
        Ok(SHMDS_OK)
    })
}

/// The first byte of the mapping (a `shmds_segment_header`, see the layout
/// section); `size` bytes long, valid while the handle is open.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_base(seg: *const ShmdsSegment) -> *const c_void {
    // SAFETY: pointer rules of the header.
    match unsafe { seg.as_ref() } {
        Some(s) => s.0.as_ptr().cast(),
        None => std::ptr::null(),
    }
}

/// Copy the segment's name, NUL-terminated, into `buf` (`buf_size` bytes);
/// its length without the NUL goes to `*len` if not NULL.
/// SHMDS_E_BUFFER_TOO_SMALL if it does not fit (nothing is written; `*len`
/// says what is needed).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_name(
    seg: *const ShmdsSegment,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let s = unsafe { handle(seg)? };
        // SAFETY: the caller's buffer rules, passed on.
        unsafe { give_text(s.0.name(), buf, buf_size, len) }
    })
}

/// Write everything changed in a durable segment (one whose name is a file
/// path) to its file and wait for the disk (`msync` and `fsync`); nothing
/// to do for a /dev/shm segment.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_flush(seg: *const ShmdsSegment) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        unsafe { handle(seg)? }.0.flush()?;
        Ok(SHMDS_OK)
    })
}

/// 1 if the segment lives in a regular file (a durable segment), 0 if in
/// /dev/shm or for a NULL handle.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_is_durable(seg: *const ShmdsSegment) -> c_int {
    // SAFETY: pointer rules of the header.
    match unsafe { seg.as_ref() } {
        Some(s) => c_int::from(s.0.is_durable()),
        None => 0,
    }
}

/// Write a consistent snapshot of the segment into the snapshot store
/// directory `store` (made if missing; the segment's other processes are
/// paused while it is copied) and copy its id (64 hex digits) into `id`
/// (`id_size` bytes, at least 65; SHMDS_E_BUFFER_TOO_SMALL otherwise, with
/// nothing written). `new_bytes`, if not NULL, gets the bytes of chunks
/// the store did not hold before.
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_snapshot(
    seg: *const ShmdsSegment,
    store: *const c_char,
    id: *mut c_char,
    id_size: usize,
    new_bytes: *mut u64,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let s = unsafe { handle(seg)? };
        // SAFETY: as above.
        let dir = unsafe { text(store, "store")? };
        if id_size < 65 {
            return Err(Fail(
                SHMDS_E_BUFFER_TOO_SMALL,
                format!(
                    "the id buffer has {id_size} bytes; a snapshot id needs 65 (64 hex digits \
                     and the NUL)"
                ),
            ));
        }
        let store = core_lib::snapshot::Store::open(dir)?;
        let taken = s.0.snapshot(&store)?;
        // SAFETY: NULL or writable (header contract).
        unsafe { put(new_bytes, taken.new_bytes) };
        // SAFETY: the caller's buffer rules, passed on.
        unsafe { give_text(&taken.id, id, id_size, std::ptr::null_mut()) }
    })
}

/// Restore the snapshot `id` (or a unique prefix of at least 4 hex digits)
/// of the store directory `store` as the new segment `name` (a /dev/shm
/// name or a file path) and open it into `*out`. Every chunk is re-hashed
/// (a damaged one: SHMDS_E_CORRUPT); a missing snapshot: SHMDS_E_NOT_FOUND;
/// `name` taken: SHMDS_E_EXISTS.
#[no_mangle]
pub unsafe extern "C" fn shmds_snapshot_restore(
    store: *const c_char,
    id: *const c_char,
    name: *const c_char,
    out: *mut *mut ShmdsSegment,
) -> c_int {
    // SAFETY: pointer rules of the header.
    call(|| unsafe {
        need_out(out)?;
        let store = core_lib::snapshot::Store::open(text(store, "store")?)?;
        let seg = store.restore(text(id, "id")?, text(name, "name")?)?;
        give(out, ShmdsSegment(seg))
    })
}

/// Copy the canonical form of the type descriptor `descriptor` (the form
/// the table records and the `*_descriptor` getters return, e.g. "<Q" for
/// "Q" or "T{<Q:ts:4x<i:n:}" for a record with its padding written as
/// "xxxx"), NUL-terminated, into `buf` (`buf_size` bytes); its length goes
/// to `*len` if not NULL. SHMDS_E_INVALID (with the reason in
/// `shmds_last_error()`) if it is not a descriptor shmds can share;
/// SHMDS_E_BUFFER_TOO_SMALL as for `shmds_segment_name`.
#[no_mangle]
pub unsafe extern "C" fn shmds_type_canonical(
    descriptor: *const c_char,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let d = unsafe { text(descriptor, "descriptor")? };
        let canonical = core_lib::TypeDescriptor::parse(d)?;
        // SAFETY: the caller's buffer rules, passed on.
        unsafe { give_text(canonical.as_str(), buf, buf_size, len) }
    })
}

/// The segment size in bytes (0 for a NULL handle).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_size(seg: *const ShmdsSegment) -> u64 {
    // SAFETY: pointer rules of the header.
    unsafe { attribute(seg, |s| s.0.size()) }
}

/// Copy table entries into `out`, a buffer of `out_size` bytes holding
/// `out_size / sizeof(ShmdsEntryInfo)` entries (`out_size` must be a whole
/// multiple; `out` may be NULL when it is 0), and the number of entries
/// into `*count` (which may exceed what fits: call again with more room).
#[no_mangle]
pub unsafe extern "C" fn shmds_segment_entries(
    seg: *const ShmdsSegment,
    out: *mut ShmdsEntryInfo,
    out_size: usize,
    count: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let seg = unsafe { handle(seg)? };
        let one = std::mem::size_of::<ShmdsEntryInfo>();
        if out_size % one != 0 {
            return Err(invalid(&format!(
                "entries buffer is {out_size} bytes, not a whole number of \
                 ShmdsEntryInfo ({one} bytes each; pass sizeof your array)"
            )));
        }
        if out_size > 0 && out.is_null() {
            return Err(invalid("entries buffer is NULL but its size is not 0"));
        }
        let entries = seg.0.entries()?;
        for (i, e) in entries.iter().take(out_size / one).enumerate() {
            let mut info = ShmdsEntryInfo {
                name: [0; 64],
                kind: e.kind,
                elem_size: e.elem_size,
                key_size: e.key_size,
                reserved: 0,
                capacity: e.capacity,
                bytes: e.size,
                elem_type: [0; 128],
                key_type: [0; 64],
            };
            copy_text(&mut info.name, &e.name);
            copy_text(&mut info.elem_type, &e.elem_type);
            copy_text(&mut info.key_type, &e.key_type);
            // SAFETY: out has room for out_size / one entries (header
            // contract), and i is below that.
            unsafe { out.add(i).write_unaligned(info) };
        }
        // SAFETY: pointer rules of the header.
        unsafe { put(count, entries.len()) };
        Ok(SHMDS_OK)
    })
}

/// Give `text` to a caller's buffer `buf` of `buf_size` bytes,
/// NUL-terminated, and its length (without the NUL) to `*len` if not NULL;
/// `SHMDS_E_BUFFER_TOO_SMALL` (nothing written but `*len`) if it does not fit.
unsafe fn give_text(
    text: &str,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> Result<c_int, Fail> {
    if !len.is_null() {
        // SAFETY: a non-NULL `len` points to a writable size_t (header contract).
        unsafe { len.write(text.len()) };
    }
    if text.len() >= buf_size {
        return Err(Fail(
            SHMDS_E_BUFFER_TOO_SMALL,
            format!(
                "the text is {} bytes and its NUL, the buffer {buf_size}",
                text.len()
            ),
        ));
    }
    if buf.is_null() {
        return Err(invalid("text buffer is NULL but its size is not 0"));
    }
    // SAFETY: `buf` holds `buf_size` > text.len() writable bytes (header
    // contract), so the text and its NUL fit.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
    Ok(SHMDS_OK)
}

fn copy_text(dst: &mut [c_char], src: &str) {
    let room = dst.len() - 1;
    for (d, s) in dst.iter_mut().zip(src.bytes().take(room)) {
        *d = s as c_char;
    }
}

#[cfg(test)]
mod header;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_mismatch_is_its_own_code() {
        let e = core_lib::Error::ShapeMismatch {
            name: "jobs".into(),
            what: "capacity",
            expected: 8,
            found: 4,
        };
        let Fail(code, msg) = Fail::from(e);
        assert_eq!(code, SHMDS_E_SHAPE);
        assert!(msg.contains("capacity 4, not the 8"), "{msg}");
        // SAFETY: shmds_strerror returns static NUL-terminated strings.
        let text = |c| unsafe { CStr::from_ptr(shmds_strerror(c)) };
        assert_ne!(text(SHMDS_E_SHAPE), text(SHMDS_E_IO));
        assert_ne!(text(SHMDS_E_SHAPE), text(-1000));
    }

    #[test]
    fn shutdown_is_its_own_code() {
        let e = core_lib::Error::ShutDown {
            name: "jobs".into(),
        };
        let Fail(code, msg) = Fail::from(e);
        assert_eq!(code, SHMDS_E_SHUT_DOWN);
        assert!(msg.contains("\"jobs\" was shut down"), "{msg}");
        // SAFETY: shmds_strerror returns static NUL-terminated strings.
        let text = |c| unsafe { CStr::from_ptr(shmds_strerror(c)) };
        assert_ne!(text(SHMDS_E_SHUT_DOWN), text(SHMDS_E_IO));
        assert_ne!(text(SHMDS_E_SHUT_DOWN), text(-1000));
    }
}
