//! The public face of a channel: [`Channel`] (the entry), [`Sender`] and
//! [`Receiver`] (attached ends), [`Reservation`] and [`Message`] (zero-copy
//! frames), and the `Segment` functions that create and open channels.

use super::{
    Blocked, ChannelCore, ChannelShape, Claim, Role, SpscEnd, Stop, Taken, Took, MAX_MESSAGE,
    MAX_RING_CAPACITY,
};
use crate::checksum::crc32c;
use crate::error::{Error, Result};
use crate::handle::{Handle, Typed};
use crate::layout::{
    kind, message_flags, ChannelCell, ChannelHeader, CHANNEL_HEADER_SIZE, MESSAGE_CELL,
};
use crate::process::current_pid;
use crate::ring::{ring_bytes, RingLine, RingShape};
use crate::segment::Segment;
use crate::wait::Wait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a channel is made: its size in bytes, the largest message, and
/// the protocol.
///
/// ```
/// use shmds::ChannelOptions;
/// let options = ChannelOptions::new(1 << 20).max_message(4096).spsc(true);
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelOptions {
    capacity: u64,
    max_message: Option<u64>,
    spsc: bool,
    checksum: bool,
}

impl ChannelOptions {
    /// A channel of `capacity` bytes of message data, rounded up to a
    /// multiple of 64 (each message takes whole 64-byte cells, at least
    /// one). Messages may be as large as the capacity unless
    /// [`max_message`](Self::max_message) says less.
    pub fn new(capacity: u64) -> ChannelOptions {
        ChannelOptions {
            capacity,
            max_message: None,
            spsc: false,
            checksum: false,
        }
    }

    /// The largest message in bytes (at most the capacity and 1 GiB).
    /// Sending a larger one fails at once with [`Error::MessageTooLarge`].
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }

    /// One producer and one consumer: the SPSC protocol (no compare-and-swap
    /// on the hot path). A second live sender or receiver is refused.
    pub fn spsc(mut self, spsc: bool) -> Self {
        self.spsc = spsc;
        self
    }

    /// Every message carries a CRC32C of its payload, checked on receipt
    /// (end-to-end detection of damage; costs a pass over each message).
    pub fn checksum(mut self, checksum: bool) -> Self {
        self.checksum = checksum;
        self
    }

    /// The data capacity in bytes, after rounding.
    pub fn capacity(&self) -> u64 {
        self.capacity.div_ceil(MESSAGE_CELL) * MESSAGE_CELL
    }

    fn resolve(&self) -> Result<(u64, u64, u32)> {
        let capacity = self.capacity();
        if capacity == 0 || capacity > MAX_RING_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "a channel's capacity must be 1..={MAX_RING_CAPACITY} bytes, not {}",
                self.capacity
            )));
        }
        let max = self.max_message.unwrap_or(capacity.min(MAX_MESSAGE));
        if max > capacity || max > MAX_MESSAGE {
            return Err(Error::InvalidArgument(format!(
                "max_message must be at most the capacity ({capacity} bytes) and 1 GiB, not {max}"
            )));
        }
        let flags = if self.spsc { message_flags::SPSC } else { 0 }
            | if self.checksum {
                message_flags::CHECKSUM
            } else {
                0
            };
        Ok((capacity, max, flags))
    }
}

/// The shared part of every handle on one channel.
struct Inner {
    handle: Handle,
    header: *const ChannelHeader,
    cells: *const ChannelCell,
    data: *mut u8,
    shape: ChannelShape,
}

// SAFETY: the channel's shared state is only touched through atomics and
// the claim protocols; payload bytes carry no Rust invariants. The
// pointers stay valid while `handle` keeps the mapping alive.
unsafe impl Send for Inner {}
// SAFETY: as above; every method takes &self and is safe to call
// concurrently (the SPSC ends' own state lives in Sender/Receiver).
unsafe impl Sync for Inner {}

impl Inner {
    #[inline]
    fn core(&self) -> ChannelCore<'_> {
        // SAFETY: header, records and data were validated at open and live
        // as long as the mapping, which self.handle keeps alive.
        unsafe { ChannelCore::new(&*self.header, self.cells, self.data, &self.shape) }
    }

    fn stop(&self, stop: Stop) -> Error {
        match stop {
            Stop::Corrupt(detail) => self.handle.corrupt(detail),
        }
    }

    fn name(&self) -> &str {
        self.handle.name()
    }
}

/// A bounded channel of variable-length byte messages in a segment (see
/// the [module docs](self) of `channel` in FORMAT.md for the protocol).
/// Attach a [`Sender`] and a [`Receiver`] to move messages.
///
/// ```
/// use shmds::{ChannelOptions, Segment};
/// # let name = format!("doc-channel-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let ch = seg.create_channel("events", ChannelOptions::new(64 << 10))?;
/// let mut tx = ch.sender()?;
/// let mut rx = seg.open_channel("events")?.receiver()?;
/// tx.send(b"hello")?;
/// let mut slot = tx.reserve(3)?;       // zero copy: write in place
/// slot.copy_from_slice(b"abc");
/// slot.commit();
/// let mut buf = Vec::new();
/// rx.recv(&mut buf)?;
/// assert_eq!(buf, b"hello");
/// assert_eq!(&*rx.recv_ref()?, b"abc"); // zero copy: read in place
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct Channel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("spsc", &self.is_spsc())
            .finish()
    }
}

impl Segment {
    /// Create a channel.
    pub fn create_channel(&self, name: &str, options: ChannelOptions) -> Result<Channel> {
        Channel::create(self, name, options, false)
    }

    /// Open the channel `name`, creating it with `options` if it does not
    /// exist. An existing channel must have that capacity.
    pub fn open_or_create_channel(&self, name: &str, options: ChannelOptions) -> Result<Channel> {
        Channel::create(self, name, options, true)
    }

    /// Open the channel `name`.
    pub fn open_channel(&self, name: &str) -> Result<Channel> {
        Channel::from_handle(typed().open(self, name)?)
    }
}

fn typed() -> Typed {
    Typed::of::<u8>(kind::CHANNEL)
}

/// Check a channel block against its table entry; the shape comes from our
/// own copy of the header's first line, validated here.
fn validate(handle: &Handle) -> Result<(&ChannelHeader, ChannelShape)> {
    let info = &handle.info;
    if info.size < CHANNEL_HEADER_SIZE {
        return Err(handle.corrupt("channel block is smaller than its header"));
    }
    // SAFETY: the block holds at least CHANNEL_HEADER_SIZE bytes inside the
    // mapping (check_block, just checked). Only the atomics are used
    // through this reference; the fixed fields are read once, as a copy.
    let header = unsafe { &*handle.block.cast::<ChannelHeader>() };
    let expect = RingLine {
        kind: kind::CHANNEL,
        flags: message_flags::SPSC | message_flags::CHECKSUM,
        cells: 0,
        max_message: 0,
        header_size: CHANNEL_HEADER_SIZE,
    };
    let Some(line) = RingLine::check(&handle.first_line(), info, expect, 1, |capacity| {
        capacity.min(MAX_MESSAGE)
    }) else {
        return Err(
            handle.corrupt("channel header disagrees with its table entry or overruns its block")
        );
    };
    let shape = ChannelShape {
        ring: RingShape::new(
            line.cells,
            line.max_message,
            line.flags & message_flags::CHECKSUM != 0,
        ),
        spsc: line.flags & message_flags::SPSC != 0,
    };
    Ok((header, shape))
}

/// Cells sent and received since creation, read without writing anything.
pub(crate) fn totals(handle: &Handle) -> Result<(u64, u64)> {
    let channel = Channel::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    let totals = channel.inner.core().totals();
    Ok(totals)
}

/// Take over every claim (see `ChannelCore::revoke`).
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    let channel = Channel::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    Ok(channel.inner.core().revoke())
}

/// Per-kind validation for `Segment::check`; returns the messages held.
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    let channel = Channel::from_handle(Handle::at(&handle.seg, handle.info.clone())?)?;
    Ok(Some(channel.len() as u64))
}

impl Channel {
    fn create(
        seg: &Segment,
        name: &str,
        options: ChannelOptions,
        existing_ok: bool,
    ) -> Result<Channel> {
        let (capacity, max, flags) = options.resolve()?;
        let cells = capacity / MESSAGE_CELL;
        let (_, size) = ring_bytes(CHANNEL_HEADER_SIZE, cells).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a channel of {capacity} bytes does not fit in memory"
            ))
        })?;
        let handle = typed().create(seg, name, capacity, size, existing_ok, |block| {
            let line = RingLine {
                kind: kind::CHANNEL,
                flags,
                cells,
                max_message: max,
                header_size: CHANNEL_HEADER_SIZE,
            };
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and
            // unpublished; the rest of it is zero, the initial state of
            // every atomic (positions 0, cells EMPTY(0), nobody attached).
            unsafe { line.write(block) };
            Ok(())
        })?;
        Channel::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<Channel> {
        let (header, shape) = handle.fresh(validate(&handle))?;
        let header: *const ChannelHeader = header;
        let (data_offset, _) =
            ring_bytes(CHANNEL_HEADER_SIZE, shape.ring.cells).expect("validated");
        // SAFETY: validate proved the records and data lie inside the block.
        let (cells, data) = unsafe {
            (
                handle
                    .block
                    .add(CHANNEL_HEADER_SIZE as usize)
                    .cast::<ChannelCell>(),
                handle.block.add(data_offset as usize),
            )
        };
        Ok(Channel {
            inner: Arc::new(Inner {
                handle,
                header,
                cells,
                data,
                shape,
            }),
        })
    }

    /// Attach a sender. On an SPSC channel this fails with
    /// [`Error::AlreadyAttached`] while another live sender is attached.
    pub fn sender(&self) -> Result<Sender> {
        let (slot, end) = self.attach(Role::Sender)?;
        Ok(Sender {
            inner: self.inner.clone(),
            slot,
            end,
            checked: Checked::default(),
        })
    }

    /// Attach a receiver. On an SPSC channel this fails with
    /// [`Error::AlreadyAttached`] while another live receiver is attached.
    pub fn receiver(&self) -> Result<Receiver> {
        let (slot, end) = self.attach(Role::Receiver)?;
        Ok(Receiver {
            inner: self.inner.clone(),
            slot,
            end,
            checked: Checked::default(),
            counting: false,
        })
    }

    fn attach(&self, role: Role) -> Result<(usize, SpscEnd)> {
        self.inner.handle.check()?;
        self.inner.handle.seg.require_writable()?;
        let core = self.inner.core();
        let slot = core.attach(role, current_pid()).map_err(|pid| {
            if pid == 0 {
                Error::TooManyAttached {
                    name: self.name().to_owned(),
                    slots: crate::layout::CHANNEL_ATTACH_SLOTS,
                }
            } else {
                Error::AlreadyAttached {
                    name: self.name().to_owned(),
                    role: role.noun(),
                    pid,
                }
            }
        })?;
        let (tail, head) = core.ends();
        let end = match role {
            Role::Sender => SpscEnd {
                pos: tail,
                cached: head,
            },
            Role::Receiver => SpscEnd {
                pos: head,
                cached: tail,
            },
        };
        Ok((slot, end))
    }

    /// Shut the channel down for every process: sends fail with
    /// [`Error::ShutDown`] from now on; receivers get the messages still
    /// held, then the same error. Wakes every waiter.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.handle.check()?;
        self.inner.core().shut_down();
        Ok(())
    }

    /// Wake every process's waiters on this channel without changing its
    /// state: they look again and, finding nothing new, sleep again. For
    /// bindings whose interrupt check depends on something set outside
    /// the channel (a handle closed in another thread), so that it is seen
    /// at once instead of after the next recheck interval.
    #[doc(hidden)]
    pub fn wake_waiters(&self) {
        self.inner.core().wake_all();
    }

    /// Wait until a receive could find a message (`Ok(true)`), or until
    /// `timeout` passed (`Ok(false)`), taking nothing: an abandoned wait
    /// loses nothing (the asyncio forms of the bindings use it). Shutdown
    /// and disconnection end it with their errors, as a receive would.
    #[doc(hidden)]
    pub fn wait_readable(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(Role::Receiver, timeout, interrupt, |core| core.readable())
    }

    /// Wait until a send of `len` bytes could find room (`Ok(true)`), or
    /// until `timeout` passed (`Ok(false)`), taking nothing.
    #[doc(hidden)]
    pub fn wait_writable(
        &self,
        len: usize,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        let len = len.min(u32::MAX as usize - 1) as u32;
        self.wait_ready(Role::Sender, timeout, interrupt, |core| {
            Ok(core.writable(len))
        })
    }

    fn wait_ready(
        &self,
        role: Role,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
        ready: impl FnMut(
            &ChannelCore<'_>,
        ) -> std::result::Result<std::result::Result<(), Blocked>, Stop>,
    ) -> Result<bool> {
        let mut checked = Checked::default();
        let mut wait = Wait::new(timeout, interrupt);
        match run(&self.inner, role, &mut checked, Some(&mut wait), ready) {
            Ok(()) => Ok(true),
            Err(Error::Timeout { .. }) => Ok(false),
            // A receive drains before it reports shutdown: ready to find out.
            Err(Error::ShutDown { .. }) if role == Role::Receiver => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Mark one task taken by a counting receiver as done (by any process).
    /// [`Error::InvalidArgument`] when none is unfinished (called more
    /// times than counting receives took messages).
    pub fn task_done(&self) -> Result<()> {
        self.inner.handle.check()?;
        // SAFETY: validated at open; the handle keeps the mapping alive.
        let header = unsafe { &*self.inner.header };
        let mut current = header.unfinished.load(crate::sync::Ordering::Acquire);
        loop {
            if current == 0 {
                return Err(Error::InvalidArgument(format!(
                    "task_done() on {:?} was called more times than messages were taken from \
                     it (call it once for each message a get returned)",
                    self.name()
                )));
            }
            match header.unfinished.compare_exchange_weak(
                current,
                current - 1,
                crate::sync::Ordering::SeqCst,
                crate::sync::Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        // SeqCst: our decrement before this load, a joiner's registration
        // before its check; one of the two sees the other.
        if current == 1 && header.join_waiters.load(crate::sync::Ordering::SeqCst) > 0 {
            header
                .join_event
                .fetch_add(1, crate::sync::Ordering::SeqCst);
            crate::wait::futex_wake(&header.join_event, i32::MAX as u32);
        }
        Ok(())
    }

    /// Tasks taken by counting receivers and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        // SAFETY: as in task_done.
        unsafe { &*self.inner.header }
            .unfinished
            .load(crate::sync::Ordering::Acquire)
    }

    /// Wait until the channel is empty and every task taken by a counting
    /// receiver was marked done: `Ok(true)`, or `Ok(false)` when `timeout`
    /// passed first (`None`: no limit). Messages taken by receivers that
    /// do not count are done at once (a join that waits for such a receive
    /// to empty the channel notices within 100 ms).
    pub fn join(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        use crate::sync::Ordering::SeqCst;
        self.inner.handle.check()?;
        // SAFETY: as in task_done.
        let header = unsafe { &*self.inner.header };
        let core = self.inner.core();
        let mut wait = Wait::new(timeout, interrupt);
        let finished = || core.used_cells() == 0 && header.unfinished.load(SeqCst) == 0;
        loop {
            if finished() {
                return Ok(true);
            }
            if wait.deadline.expired() {
                return Ok(false);
            }
            header.join_waiters.fetch_add(1, SeqCst);
            let seen = header.join_event.load(SeqCst);
            let mut interrupted = false;
            if !finished() {
                interrupted = wait.interrupted();
                if !interrupted {
                    if let Some(nap) = wait.deadline.next_sleep() {
                        crate::wait::futex_wait(&header.join_event, seen, Some(nap));
                    }
                }
            }
            header.join_waiters.fetch_sub(1, SeqCst);
            self.inner.handle.check()?;
            if interrupted {
                return Err(Error::Interrupted {
                    name: self.name().to_owned(),
                });
            }
        }
    }

    /// `Err(Stale)` once the channel has been erased.
    pub fn check(&self) -> Result<()> {
        self.inner.handle.check()
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.core().is_shut_down()
    }

    /// Messages held (approximate while other processes send and receive);
    /// 0 once the channel was erased.
    pub fn len(&self) -> usize {
        if self.inner.handle.check().is_err() {
            return 0;
        }
        self.inner.core().messages() as usize
    }

    /// A one-line description of the ring's control words (positions, the
    /// cells at them, attachments), for diagnostics; not a stable format.
    #[doc(hidden)]
    pub fn describe(&self) -> String {
        if self.inner.handle.check().is_err() {
            return "erased".to_owned();
        }
        self.inner.core().describe()
    }

    /// Copies of up to `max` messages, oldest first, without taking any
    /// (for inspection, such as `shmds dump`): weakly consistent, since
    /// other processes send and receive meanwhile, but never a torn
    /// message. Empty once the channel was erased.
    pub fn peek(&self, max: usize) -> Vec<Vec<u8>> {
        if self.inner.handle.check().is_err() {
            return Vec::new();
        }
        let msgs = self.inner.core().peek(max);
        // Erased meanwhile: its memory may hold something else now.
        if self.inner.handle.check().is_err() {
            return Vec::new();
        }
        msgs
    }

    /// Whether no message is held (true once the channel was erased).
    pub fn is_empty(&self) -> bool {
        self.used_bytes() == 0
    }

    /// Whether the ring has no free cell (not even an empty message fits);
    /// false once the channel was erased.
    pub fn is_full(&self) -> bool {
        self.inner.handle.check().is_ok()
            && self.inner.core().used_cells() >= self.inner.shape.ring.cells
    }

    /// Bytes of the ring in use by messages held (whole cells, padding
    /// included); 0 once the channel was erased.
    pub fn used_bytes(&self) -> u64 {
        if self.inner.handle.check().is_err() {
            return 0;
        }
        self.inner.core().used_cells() * MESSAGE_CELL
    }

    /// The ring's data capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.shape.ring.cells * MESSAGE_CELL
    }

    /// The largest message in bytes.
    pub fn max_message(&self) -> u64 {
        self.inner.shape.ring.max_message
    }

    /// Whether this is an SPSC channel.
    pub fn is_spsc(&self) -> bool {
        self.inner.shape.spsc
    }

    /// Whether messages carry a CRC32C.
    pub fn has_checksum(&self) -> bool {
        self.inner.shape.ring.checksum
    }

    /// Whether a sender (or receiver, with `false`) is attached and alive.
    pub fn has_senders(&self) -> bool {
        self.inner.core().attached(Role::Sender, true)
    }

    /// Whether a live receiver is attached.
    pub fn has_receivers(&self) -> bool {
        self.inner.core().attached(Role::Receiver, true)
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The name of the segment holding the channel.
    pub fn segment_name(&self) -> &str {
        self.inner.handle.seg.name()
    }
}

/// When a handle last looked at its peers' liveness (a `/proc` read per
/// process): at most every [`Checked::EVERY`], so that polling with `try_`
/// calls stays cheap.
#[derive(Debug, Default)]
struct Checked {
    last: Option<Instant>,
}

impl Checked {
    const EVERY: Duration = Duration::from_millis(20);

    fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Self::EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// The one loop behind every send and receive: try, and while blocked,
/// report or wait (spin, then sleep), noticing shutdown, disconnection,
/// dead claimants, the deadline and interrupts.
fn run<T>(
    inner: &Inner,
    role: Role,
    checked: &mut Checked,
    mut wait: Option<&mut Wait<'_>>,
    mut attempt: impl FnMut(
        &ChannelCore<'_>,
    ) -> std::result::Result<std::result::Result<T, Blocked>, Stop>,
) -> Result<T> {
    let core = inner.core();
    let peer = match role {
        Role::Sender => Role::Receiver,
        Role::Receiver => Role::Sender,
    };
    let mut backoff = crate::wait::Backoff::default();
    let mut first = true;
    loop {
        inner.handle.check()?;
        if role == Role::Sender && core.is_shut_down() {
            return Err(Error::ShutDown {
                name: inner.name().to_owned(),
            });
        }
        let blocked = match attempt(&core) {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(blocked)) => blocked,
            Err(stop) => return Err(inner.stop(stop)),
        };
        if core.is_shut_down() {
            return Err(Error::ShutDown {
                name: inner.name().to_owned(),
            });
        }
        // Liveness (a /proc read per peer) is looked at before sleeping, and
        // by the first miss of a call at most every `Checked::EVERY`; the
        // clock is not read while spinning.
        let waiting = wait.is_some() && backoff.done();
        let scan = waiting || (first && checked.due());
        first = false;
        if scan && core.gone(peer, true) {
            return Err(Error::Disconnected {
                name: inner.name().to_owned(),
                peer: peer.noun(),
            });
        }
        let Some(w) = wait.as_deref_mut() else {
            // A try call takes over a dead claimant at most as often as it
            // looks at liveness.
            if let (true, Some((idx, word))) = (scan, blocked.claim()) {
                core.recover(idx, word);
            }
            return Err(match role {
                Role::Sender => Error::Full {
                    name: inner.name().to_owned(),
                },
                Role::Receiver => Error::Empty {
                    name: inner.name().to_owned(),
                },
            });
        };
        if backoff.snooze() {
            continue;
        }
        if w.deadline.expired() {
            return Err(inner.handle.timeout());
        }
        if let Some((idx, word)) = blocked.claim() {
            if !core.recover(idx, word) {
                continue;
            }
        }
        core.sleep(blocked, &w.deadline);
        if w.interrupted() {
            return Err(Error::Interrupted {
                name: inner.name().to_owned(),
            });
        }
    }
}

/// An attached sending end of a [`Channel`]. Dropping it detaches; when the
/// last sender is gone (detached or dead), receivers that find the channel
/// empty get [`Error::Disconnected`].
pub struct Sender {
    inner: Arc<Inner>,
    slot: usize,
    end: SpscEnd,
    checked: Checked,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("channel", &self.inner.name())
            .finish()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // An erased channel's memory may hold another structure now.
        if self.inner.handle.check().is_ok() {
            self.inner
                .core()
                .detach(self.slot, Role::Sender, current_pid());
        }
    }
}

impl Sender {
    fn check_len(&self, len: usize) -> Result<u32> {
        let max = self.inner.shape.ring.max_message;
        if len as u64 > max {
            return Err(Error::MessageTooLarge {
                name: self.inner.name().to_owned(),
                len: len as u64,
                max,
            });
        }
        Ok(len as u32)
    }

    fn claim(&mut self, len: u32, wait: Option<&mut Wait<'_>>) -> Result<Claim> {
        let me = current_pid();
        let spsc = self.inner.shape.spsc;
        let end = &mut self.end;
        run(&self.inner, Role::Sender, &mut self.checked, wait, |core| {
            if spsc {
                core.spsc_claim(end, len)
            } else {
                core.claim(len, me)
            }
        })
    }

    fn publish(&mut self, claim: &Claim, len: u32) {
        let core = self.inner.core();
        let checksum = if self.inner.shape.ring.checksum {
            // SAFETY: the claimed frame's cells hold `len` bytes (run_of).
            crc32c(unsafe { std::slice::from_raw_parts(core.payload(claim.idx), len as usize) })
        } else {
            0
        };
        if self.inner.shape.spsc {
            core.spsc_publish(&mut self.end, claim, len, checksum);
        } else {
            core.publish(claim, false, checksum);
        }
    }

    fn send_wait(&mut self, msg: &[u8], wait: Option<&mut Wait<'_>>) -> Result<()> {
        let len = self.check_len(msg.len())?;
        let claim = self.claim(len, wait)?;
        let core = self.inner.core();
        // SAFETY: the frame is ours until published and holds `len` bytes
        // (cells_for(len) cells from claim.idx, inside the ring).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), core.payload(claim.idx), msg.len()) };
        self.publish(&claim, len);
        Ok(())
    }

    /// Send a message, waiting for room.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, Some(&mut Wait::new(None, None)))
    }

    /// Send a message if there is room now ([`Error::Full`] otherwise).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, None)
    }

    /// Send a message, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_wait(msg, Some(&mut Wait::new(Some(timeout), None)))
    }

    /// [`send`](Self::send) with a timeout (`None`: no limit) and an
    /// interrupt check run between sleeps (for bindings: Ctrl-C).
    #[doc(hidden)]
    pub fn send_interruptible(
        &mut self,
        msg: &[u8],
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<()> {
        self.send_wait(msg, Some(&mut Wait::new(timeout, interrupt)))
    }

    fn reserve_wait(&mut self, len: usize, wait: Option<&mut Wait<'_>>) -> Result<Reservation<'_>> {
        let n = self.check_len(len)?;
        let claim = self.claim(n, wait)?;
        Ok(Reservation {
            sender: self,
            claim,
            len: n,
            done: false,
        })
    }

    /// Reserve room for a message of `len` bytes in the ring, waiting for
    /// it: the [`Reservation`] is a writable slice of the ring that
    /// [`commit`](Reservation::commit) publishes. Dropped without commit,
    /// the reservation is aborted (receivers pass over it).
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_wait(len, Some(&mut Wait::new(None, None)))
    }

    /// [`reserve`](Self::reserve) if there is room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_wait(len, None)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_wait(len, Some(&mut Wait::new(Some(timeout), None)))
    }

    /// [`reserve`](Self::reserve) with a timeout and an interrupt check.
    #[doc(hidden)]
    pub fn reserve_interruptible(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Reservation<'_>> {
        self.reserve_wait(len, Some(&mut Wait::new(timeout, interrupt)))
    }

    /// The channel this sender is attached to.
    pub fn channel(&self) -> Channel {
        Channel {
            inner: self.inner.clone(),
        }
    }
}

/// Room for one message in the ring, claimed by [`Sender::reserve`]: write
/// the message through `DerefMut<Target = [u8]>`, then
/// [`commit`](Self::commit). Dropped without commit, it is aborted.
pub struct Reservation<'a> {
    sender: &'a mut Sender,
    claim: Claim,
    len: u32,
    done: bool,
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("len", &self.len)
            .finish()
    }
}

impl Reservation<'_> {
    /// The message's position in the ring (what the receiver's
    /// [`Message::position`] will say).
    pub fn position(&self) -> u64 {
        self.claim.pos
    }

    /// Publish the message.
    pub fn commit(mut self) {
        self.done = true;
        // Erased meanwhile: the message goes nowhere (its memory may hold
        // another structure now).
        if self.sender.inner.handle.check().is_err() {
            return;
        }
        let (claim, len) = (self.claim, self.len);
        self.sender.publish(&claim, len);
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the claimed frame holds `len` bytes and is ours until
        // published; its bytes may be anything (u8 has no invalid values).
        unsafe {
            std::slice::from_raw_parts(
                self.sender.inner.core().payload(self.claim.idx),
                self.len as usize,
            )
        }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; no other process writes a claimed frame
        // (a hostile one could, which changes only the message's bytes).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.sender.inner.core().payload(self.claim.idx),
                self.len as usize,
            )
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.done || self.sender.inner.handle.check().is_err() {
            return;
        }
        let core = self.sender.inner.core();
        if self.sender.inner.shape.spsc {
            // Nothing was published: the next send reuses the room.
        } else {
            core.publish(&self.claim, true, 0);
        }
    }
}

/// An attached receiving end of a [`Channel`]. Dropping it detaches; when
/// the last receiver is gone, senders that find the channel full get
/// [`Error::Disconnected`].
pub struct Receiver {
    inner: Arc<Inner>,
    slot: usize,
    end: SpscEnd,
    checked: Checked,
    /// Messages taken count as unfinished tasks (see [`Channel::join`]).
    counting: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("channel", &self.inner.name())
            .finish()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // An erased channel's memory may hold another structure now.
        if self.inner.handle.check().is_ok() {
            self.inner
                .core()
                .detach(self.slot, Role::Receiver, current_pid());
        }
    }
}

impl Receiver {
    fn take(&mut self, wait: Option<&mut Wait<'_>>) -> Result<Message<'_>> {
        match self.take_within(u32::MAX, wait)? {
            Ok(message) => Ok(message),
            // Unreachable: no message is longer than 1 GiB (max_message).
            Err(len) => Err(Error::InvalidArgument(format!(
                "a message of {len} bytes is longer than any limit"
            ))),
        }
    }

    /// The next message, or `Ok(Err(len))` when it is longer than `limit`
    /// bytes (it stays first in line).
    fn take_within(
        &mut self,
        limit: u32,
        wait: Option<&mut Wait<'_>>,
    ) -> Result<std::result::Result<Message<'_>, u32>> {
        let me = current_pid();
        let spsc = self.inner.shape.spsc;
        let want = super::Want {
            limit,
            count: self.counting,
        };
        let end = &mut self.end;
        let took = run(
            &self.inner,
            Role::Receiver,
            &mut self.checked,
            wait,
            |core| {
                if spsc {
                    core.spsc_take(end, want)
                } else {
                    core.take(me, want)
                }
            },
        )?;
        let taken = match took {
            Took::Frame(taken) => taken,
            Took::TooLong(len) => return Ok(Err(len)),
        };
        let message = Message {
            receiver: self,
            taken,
        };
        if message.receiver.inner.shape.ring.checksum {
            let stored = message.stored_checksum();
            if crc32c(&message) != stored {
                let pos = message.taken.pos;
                let name = message.receiver.inner.name().to_owned();
                drop(message);
                return Err(Error::Corrupt {
                    name,
                    detail: format!(
                        "the message at position {pos} fails its CRC32C check (it was damaged \
                         in the ring; it has been removed)"
                    ),
                });
            }
        }
        Ok(Ok(message))
    }

    fn recv_wait(&mut self, buf: &mut Vec<u8>, wait: Option<&mut Wait<'_>>) -> Result<usize> {
        let message = self.take(wait)?;
        buf.clear();
        buf.extend_from_slice(&message);
        Ok(buf.len())
    }

    /// Receive a message into `buf` (replacing its contents), waiting for
    /// one; returns its length.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_wait(buf, Some(&mut Wait::new(None, None)))
    }

    /// Receive a message if one is there ([`Error::Empty`] otherwise).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_wait(buf, None)
    }

    /// Receive a message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_wait(buf, Some(&mut Wait::new(Some(timeout), None)))
    }

    /// The next message in place, waiting for one: the [`Message`] derefs to
    /// its bytes in the ring and frees them when dropped.
    pub fn recv_ref(&mut self) -> Result<Message<'_>> {
        self.take(Some(&mut Wait::new(None, None)))
    }

    /// [`recv_ref`](Self::recv_ref) if a message is there now.
    pub fn try_recv_ref(&mut self) -> Result<Message<'_>> {
        self.take(None)
    }

    /// [`recv_ref`](Self::recv_ref), waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Message<'_>> {
        self.take(Some(&mut Wait::new(Some(timeout), None)))
    }

    /// [`recv_ref`](Self::recv_ref) with a timeout (`None`: no limit) and an
    /// interrupt check run between sleeps; `timeout == Some(ZERO)` and
    /// `block == false` is a try.
    #[doc(hidden)]
    pub fn recv_ref_interruptible(
        &mut self,
        block: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Message<'_>> {
        if block {
            self.take(Some(&mut Wait::new(timeout, interrupt)))
        } else {
            self.take(None)
        }
    }

    /// [`recv_ref_interruptible`](Self::recv_ref_interruptible) for a
    /// caller with room for at most `limit` bytes (a binding receiving into
    /// a buffer of fixed size): a longer message is not taken. It stays
    /// first in line, and `Ok(Err(len))` gives its length.
    #[doc(hidden)]
    pub fn recv_ref_within(
        &mut self,
        limit: usize,
        block: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<std::result::Result<Message<'_>, usize>> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let mut wait = block.then(|| Wait::new(timeout, interrupt));
        Ok(self
            .take_within(limit, wait.as_mut())?
            .map_err(|len| len as usize))
    }

    /// Count every message this receiver takes as an unfinished task,
    /// until [`Channel::task_done`] marks it done ([`Channel::join`] waits
    /// for that). Off by default; the Python binding's receives count.
    pub fn count_tasks(&mut self, on: bool) {
        self.counting = on;
    }

    /// The channel this receiver is attached to.
    pub fn channel(&self) -> Channel {
        Channel {
            inner: self.inner.clone(),
        }
    }
}

/// A received message, in place in the ring: deref to its bytes. Dropping
/// it frees its room for senders.
pub struct Message<'a> {
    receiver: &'a mut Receiver,
    taken: Taken,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("len", &self.taken.len)
            .finish()
    }
}

impl Message<'_> {
    fn stored_checksum(&self) -> u32 {
        // SAFETY: taken.idx < cells (run_of checked it).
        let cell = unsafe { &*self.receiver.inner.cells.add(self.taken.idx as usize) };
        cell.checksum.load(crate::sync::Ordering::Relaxed)
    }

    /// The message's position in the ring (a sequence number: positions
    /// only grow).
    pub fn position(&self) -> u64 {
        self.taken.pos
    }
}

impl std::ops::Deref for Message<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the frame is ours until released and its cells hold `len`
        // bytes (run_of bounded `len` by the ring). Another process may
        // still write them (a hostile peer), which changes only the bytes.
        unsafe {
            std::slice::from_raw_parts(
                self.receiver.inner.core().payload(self.taken.idx),
                self.taken.len as usize,
            )
        }
    }
}

impl Drop for Message<'_> {
    fn drop(&mut self) {
        if self.receiver.inner.handle.check().is_err() {
            return;
        }
        let core = self.receiver.inner.core();
        if self.receiver.inner.shape.spsc {
            core.spsc_release(&mut self.receiver.end, &self.taken);
        } else {
            core.release(&self.taken);
        }
    }
}

// Handles move between threads (each is used by one at a time).
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Sender>();
    is_send::<Receiver>();
    is_send::<Channel>();
};
