//! `RawQueue`: a queue whose element type is known at run time, its
//! validation, and the `Segment` functions that create and open queues.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// Write a fresh queue into `block` (zeroed, `block_size` bytes).
///
/// # Safety
/// `block` must be valid for writes of `QUEUE_HEADER_SIZE + capacity *
/// slot_stride(elem_size)` bytes, 8-aligned, and not visible to anyone else.
unsafe fn init(block: *mut u8, capacity: u64, elem_size: u64) {
    let header = QueueHeader {
        kind: kind::QUEUE,
        elem_size: elem_size as u32,
        capacity,
        one_lap: capacity.next_power_of_two(),
        slot_stride: slot_stride(elem_size),
        slots_offset: QUEUE_HEADER_SIZE,
        shutdown: crate::sync::AtomicU64::new(0),
        reserved0: [0; 2],
        tail: crate::sync::AtomicU64::new(0),
        reserved1: [0; 7],
        head: crate::sync::AtomicU64::new(0),
        unfinished: crate::sync::AtomicU64::new(0),
        join_event: crate::sync::AtomicU32::new(0),
        join_waiters: crate::sync::AtomicU32::new(0),
        reserved2: [0; 5],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<QueueHeader>().write(header) };
    let stride = slot_stride(elem_size) as usize;
    for i in 0..capacity as usize {
        let slot = QueueSlot {
            state: crate::sync::AtomicU64::new(
                SlotState::Empty {
                    tag: 0,
                    waited: false,
                }
                .encode(),
            ),
        };
        // SAFETY: slot i lies inside the block (see the size above).
        unsafe {
            block
                .add(QUEUE_HEADER_SIZE as usize + i * stride)
                .cast::<QueueSlot>()
                .write(slot)
        };
    }
}

/// Check a queue block against its table entry; returns the header and
/// the shape to use from now on. The shape comes from the entry snapshot,
/// not from the header, which a peer could rewrite after we looked.
fn validate(handle: &Handle) -> Result<(&QueueHeader, QueueShape)> {
    let info = &handle.info;
    if info.size < QUEUE_HEADER_SIZE {
        return Err(handle.corrupt("queue block is smaller than its header"));
    }
    // SAFETY: check_block proved the block lies in the mapping, 64-aligned,
    // and it holds at least QUEUE_HEADER_SIZE bytes (just checked). Only
    // the atomics (`tail`, `head`) are used through this reference; the
    // fixed fields are read once, as a copy (`first_line`).
    let header = unsafe { &*handle.block.cast::<QueueHeader>() };
    let line = handle.first_line();
    let field32 = |offset| line.u32_at(offset);
    let field = |offset| line.u64_at(offset);
    let capacity = info.capacity;
    let stride = slot_stride(info.elem_size as u64);
    let needed = block_size(QUEUE_HEADER_SIZE, capacity, stride);
    if field32(offset_of!(QueueHeader, kind)) != kind::QUEUE
        || field32(offset_of!(QueueHeader, elem_size)) != info.elem_size
        || field(offset_of!(QueueHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_QUEUE_CAPACITY
        || field(offset_of!(QueueHeader, one_lap)) != capacity.next_power_of_two()
        || field(offset_of!(QueueHeader, slot_stride)) != stride
        || field(offset_of!(QueueHeader, slots_offset)) != QUEUE_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("queue header disagrees with its table entry or overruns its block")
        );
    }
    let shape = QueueShape {
        capacity,
        shift: capacity.next_power_of_two().trailing_zeros(),
        stride: stride as usize,
        patience: handle.seg.map.lock_timeout(),
    };
    Ok((header, shape))
}

/// Per-kind validation for `Segment::check`; returns the fill level.
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    let (header, shape) = validate(handle)?;
    // SAFETY: validate proved the slots fit in the block.
    let core =
        unsafe { QueueCore::new(header, handle.block.add(QUEUE_HEADER_SIZE as usize), &shape) };
    Ok(Some(core.len()))
}

/// Take over every claim (see `QueueCore::revoke`).
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    let (header, shape) = validate(handle)?;
    // SAFETY: validate proved the slots fit in the block.
    let core =
        unsafe { QueueCore::new(header, handle.block.add(QUEUE_HEADER_SIZE as usize), &shape) };
    Ok(core.revoke())
}

/// Pushes and pops since creation (see `QueueCore::totals`), read without
/// writing anything.
pub(crate) fn totals(handle: &Handle) -> Result<(u64, u64)> {
    let (header, shape) = validate(handle)?;
    // SAFETY: validate proved the slots fit in the block.
    let core =
        unsafe { QueueCore::new(header, handle.block.add(QUEUE_HEADER_SIZE as usize), &shape) };
    Ok(core.totals())
}

/// A queue whose element type is known at run time only, by its type
/// descriptor: elements go in and out as byte slices of
/// [`elem_size`](RawQueue::elem_size) bytes each. This is what the Python and
/// C bindings use; [`Queue<T>`] is the same queue with a Rust type, and both
/// can be open on one queue at once.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawqueue-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_queue_raw("ticks", "<Q", 8)?;
/// assert!(raw.try_push(&7u64.to_ne_bytes())?);
/// // The same queue, typed:
/// let ticks = seg.open_queue::<u64>("ticks")?;
/// assert_eq!(ticks.try_pop()?, Some(7));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
pub struct RawQueue {
    pub(super) handle: Handle,
    pub(super) header: *const QueueHeader,
    pub(super) slots: *mut u8,
    pub(super) shape: QueueShape,
    pub(super) elem_size: usize,
    /// The last push (pop) through this handle found the queue full
    /// (empty): the next one looks at the slot before it claims (see
    /// `QueueCore::first_claim`). A hint local to this process.
    push_missed: AtomicBool,
    pop_missed: AtomicBool,
}

/// Record whether a call missed, writing the hint only when it changes
/// (threads sharing a handle then do not bounce its line).
#[inline(always)]
fn missed(hint: &AtomicBool, was: bool, now: bool) {
    if was != now {
        hint.store(now, Relaxed);
    }
}

/// Another handle to the same queue (a reference count; the miss hints
/// start afresh).
impl Clone for RawQueue {
    fn clone(&self) -> RawQueue {
        RawQueue {
            handle: self.handle.clone(),
            header: self.header,
            slots: self.slots,
            shape: self.shape,
            elem_size: self.elem_size,
            push_missed: AtomicBool::new(false),
            pop_missed: AtomicBool::new(false),
        }
    }
}

// SAFETY: the queue's shared state is only touched through atomics and the
// claim protocol; payload bytes carry no Rust invariants.
unsafe impl Send for RawQueue {}
// SAFETY: as above; all methods take &self and are safe to call concurrently.
unsafe impl Sync for RawQueue {}

impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.handle.name())
            .field("type", &self.handle.info.elem_type)
            .field("capacity", &self.capacity())
            .finish()
    }
}

payload::ring_segment_methods!(
    "queue",
    Queue,
    RawQueue,
    kind::QUEUE,
    create_queue,
    open_queue,
    open_or_create_queue,
    create_queue_raw,
    open_or_create_queue_raw,
    open_queue_raw
);

impl RawQueue {
    fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawQueue> {
        if capacity == 0 || capacity > MAX_QUEUE_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "queue capacity must be 1..={MAX_QUEUE_CAPACITY}, not {capacity}"
            )));
        }
        let elem_size = typed.elem_size() as u64;
        let size = block_size(QUEUE_HEADER_SIZE, capacity, slot_stride(elem_size))?;
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe { init(block, capacity, elem_size) };
            Ok(())
        })?;
        RawQueue::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<RawQueue> {
        let (header, shape) = handle.fresh(validate(&handle))?;
        let header: *const QueueHeader = header;
        // SAFETY: validate proved the slot array lies inside the block.
        let slots = unsafe { handle.block.add(QUEUE_HEADER_SIZE as usize) };
        Ok(RawQueue {
            elem_size: handle.info.elem_size as usize,
            handle,
            header,
            slots,
            shape,
            push_missed: AtomicBool::new(false),
            pop_missed: AtomicBool::new(false),
        })
    }

    #[inline]
    fn core(&self) -> QueueCore<'_> {
        // SAFETY: header and slots were validated at open and live as long as
        // the mapping, which self.handle keeps alive.
        unsafe { QueueCore::new(&*self.header, self.slots, &self.shape) }
    }

    fn stop(&self, stop: Stop) -> Error {
        match stop {
            Stop::Corrupt(detail) => self.handle.corrupt(detail),
            Stop::TimedOut => self.handle.timeout(),
            Stop::Busy(pid) => Error::Busy {
                name: self.handle.name().to_owned(),
                pid,
                seconds: self.shape.patience.as_secs(),
            },
            Stop::ShutDown => self.handle.shut_down(),
        }
    }

    /// What a push stopped by a shutdown returns: the error if it pushed
    /// nothing, else how many it pushed (the next call gets the error).
    fn refused(&self, done: usize) -> Result<usize> {
        match done {
            0 => Err(self.handle.shut_down()),
            n => Ok(n),
        }
    }

    /// Push up to `n` elements, the `i`-th written into its payload by
    /// `write(i, payload)`. Without `wait` it stops at the first full slot;
    /// with it, it waits for room until the deadline passes. Returns how
    /// many were pushed (a prefix); [`Error::ShutDown`] if the queue was
    /// shut down before the first.
    #[inline(always)]
    pub(crate) fn push_n(
        &self,
        n: usize,
        write: &mut impl FnMut(usize, *mut u8),
        mut wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.handle.check()?;
        let core = self.core();
        // Refuse early (one read of a line no hot path writes) rather than
        // claim a position only to leave a skip mark in it.
        if core.shut_down() {
            return Err(self.handle.shut_down());
        }
        let mut patience = PeerWait::new();
        let mut done = 0;
        let mut spins = 0;
        while done < n {
            let deadline = wait.as_ref().map(|w| &w.deadline);
            let look = self.push_missed.load(Relaxed);
            match core.push(n - done, &mut |i, p| write(done + i, p), deadline, look) {
                Ok(Step::Moved(moved)) => {
                    missed(&self.push_missed, look, false);
                    done += moved;
                    spins = 0;
                }
                Ok(Step::Blocked(blocked)) => {
                    missed(&self.push_missed, look, true);
                    if core.shut_down() {
                        return self.refused(done);
                    }
                    let Some(w) = wait.as_deref_mut() else { break };
                    if !self.nap(&core, blocked, w, &mut spins, &mut patience)? {
                        break;
                    }
                }
                Err(Stop::TimedOut) => break,
                Err(Stop::ShutDown) => return self.refused(done),
                Err(stop) => return Err(self.stop(stop)),
            }
        }
        Ok(done)
    }

    /// `push_n(1, write, None)`, written out for the hot path of `try_push`:
    /// `Ok(false)` when full.
    #[inline(always)]
    pub(crate) fn push_one(&self, write: &mut impl FnMut(*mut u8)) -> Result<bool> {
        self.handle.check()?;
        let core = self.core();
        if core.shut_down() {
            return Err(self.handle.shut_down());
        }
        let look = self.push_missed.load(Relaxed);
        match core.push(1, &mut |_, p| write(p), None, look) {
            Ok(Step::Moved(_)) => {
                missed(&self.push_missed, look, false);
                Ok(true)
            }
            Ok(Step::Blocked(_)) if core.shut_down() => Err(self.handle.shut_down()),
            Ok(Step::Blocked(_)) | Err(Stop::TimedOut) => {
                missed(&self.push_missed, look, true);
                Ok(false)
            }
            Err(Stop::ShutDown) => Err(self.handle.shut_down()),
            Err(stop) => Err(self.stop(stop)),
        }
    }

    /// `pop_n(1, read, None)`, written out for the hot path of `try_pop`:
    /// `Ok(false)` when empty.
    #[inline(always)]
    pub(crate) fn pop_one(&self, read: &mut impl FnMut(*const u8)) -> Result<bool> {
        self.handle.check()?;
        let core = self.core();
        let look = self.pop_missed.load(Relaxed);
        match core.pop(1, &mut |_, p| read(p), &mut || {}, None, look) {
            // A pop that returns moved at least one element (skip marks
            // are passed over inside it).
            Ok(Step::Moved(_)) => {
                missed(&self.pop_missed, look, false);
                Ok(true)
            }
            Ok(Step::Blocked(_)) if core.shut_down() => self
                .last_look(&core, &mut |p| read(p), &mut || {})
                .map(|_| true),
            Ok(Step::Blocked(_)) | Err(Stop::TimedOut) => {
                missed(&self.pop_missed, look, true);
                Ok(false)
            }
            Err(stop) => Err(self.stop(stop)),
        }
    }

    /// Pop up to `n` elements, handing the `i`-th payload to `read(i, payload)`.
    /// With `wait` it waits (until the deadline) for the first element only;
    /// it then takes what is there. Returns how many were popped;
    /// [`Error::ShutDown`] if there was none and the queue was shut down.
    #[inline(always)]
    pub(crate) fn pop_n(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.pop_n_with(n, read, &mut || {}, wait)
    }

    /// [`RawQueue::pop_n`], calling `taken` for each element as it leaves
    /// the queue (see `QueueCore::pop`).
    #[inline(always)]
    fn pop_n_with(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        taken: &mut impl FnMut(),
        mut wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.handle.check()?;
        let core = self.core();
        let mut patience = PeerWait::new();
        let mut done = 0;
        let mut spins = 0;
        while done < n {
            let deadline = wait.as_ref().map(|w| &w.deadline);
            let look = self.pop_missed.load(Relaxed);
            match core.pop(
                n - done,
                &mut |i, p| read(done + i, p),
                taken,
                deadline,
                look,
            ) {
                Ok(Step::Moved(moved)) => {
                    missed(&self.pop_missed, look, false);
                    done += moved;
                }
                Ok(Step::Blocked(blocked)) => {
                    missed(&self.pop_missed, look, true);
                    if done > 0 {
                        break;
                    }
                    if core.shut_down() {
                        return self.last_look(&core, &mut |p| read(0, p), taken);
                    }
                    let Some(w) = wait.as_deref_mut() else { break };
                    if !self.nap(&core, blocked, w, &mut spins, &mut patience)? {
                        break;
                    }
                }
                Err(Stop::TimedOut) => break,
                Err(stop) => return Err(self.stop(stop)),
            }
        }
        Ok(done)
    }

    /// A pop found the queue empty and shut down: look once more, waiting
    /// for live pushers that claimed a position before the shutdown (their
    /// elements are delivered, not stranded); one element or
    /// [`Error::ShutDown`].
    #[cold]
    #[inline(never)]
    fn last_look(
        &self,
        core: &QueueCore<'_>,
        read: &mut dyn FnMut(*const u8),
        taken: &mut dyn FnMut(),
    ) -> Result<usize> {
        // Pairs with the SeqCst claim and flag load of every push (module
        // documentation, "Shutdown").
        fence(Ordering::SeqCst);
        let forever = Deadline::after(None);
        match core.pop(
            1,
            &mut |_, p| read(p),
            &mut || taken(),
            Some(&forever),
            true,
        ) {
            Ok(Step::Moved(_)) => Ok(1),
            Ok(Step::Blocked(_)) => Err(self.handle.shut_down()),
            Err(stop) => Err(self.stop(stop)),
        }
    }

    /// One step of waiting on a blocked slot: spin a while, then sleep.
    /// `Ok(false)` when the deadline has passed. A shutdown cuts the sleep
    /// short (the caller sees the flag); an interrupt ends the call.
    #[inline]
    fn nap(
        &self,
        core: &QueueCore<'_>,
        blocked: Blocked,
        wait: &mut Wait<'_>,
        spins: &mut u32,
        patience: &mut PeerWait,
    ) -> Result<bool> {
        if wait.deadline.expired() {
            return Ok(false);
        }
        if *spins < SPINS_BEFORE_SLEEP {
            *spins += 1;
            crate::sync::spin_hint();
            return Ok(true);
        }
        let deadline = wait.deadline;
        let mut interrupted = false;
        core.wait(blocked, &deadline, patience, &mut || {
            if core.shut_down() {
                return true;
            }
            interrupted = wait.interrupted();
            interrupted
        });
        self.handle.check()?;
        if interrupted {
            return Err(Error::Interrupted {
                name: self.handle.name().to_owned(),
            });
        }
        Ok(true)
    }

    /// Wait until a push (`push`) or a pop would find its position ready,
    /// or the queue is shut down; `Ok(false)` if `timeout` passed first.
    fn wait_ready(
        &self,
        push: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let core = self.core();
        let mut wait = Wait::new(timeout, interrupt);
        let mut patience = PeerWait::new();
        let mut spins = 0;
        loop {
            if core.shut_down() {
                return Ok(true);
            }
            match core.blocked(push).map_err(|stop| self.stop(stop))? {
                None => return Ok(true),
                Some(blocked) => {
                    if !self.nap(&core, blocked, &mut wait, &mut spins, &mut patience)? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Wait until the queue seems to hold an element, without taking it:
    /// `Ok(true)` when a pop would find one (or the queue was shut down, so
    /// a pop returns at once), `Ok(false)` if `timeout` passed first. Another
    /// consumer may take the element before you do; pop without waiting and
    /// wait again if it is gone. `interrupt` as for
    /// [`push_slice`](RawQueue::push_slice); together with
    /// [`wake_waiters`](RawQueue::wake_waiters) it lets a binding cancel the
    /// wait from another thread. This is how the Python binding's asyncio
    /// methods wait without ever losing an element to a cancelled call.
    pub fn wait_not_empty(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(false, timeout, interrupt)
    }

    /// Wait until the queue seems to have room (or was shut down); like
    /// [`wait_not_empty`](RawQueue::wait_not_empty) for pushes.
    pub fn wait_not_full(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(true, timeout, interrupt)
    }

    /// Wake every thread of every process blocked on this queue (in a push,
    /// a pop, a `wait_*` or `join`), so that each checks its interrupt
    /// callback and the shutdown flag again. Those with nothing new to see
    /// go back to sleep. To cancel a wait from another thread: make its
    /// interrupt callback return `true` (an atomic flag), then call this.
    pub fn wake_waiters(&self) {
        self.core().wake_all();
    }

    /// Shut the queue down, for every process: from now on pushes fail
    /// with [`Error::ShutDown`], and pops take the elements still there,
    /// then fail with it instead of waiting. Every blocked call wakes up.
    /// With `immediate`, the elements still there are discarded too (a push
    /// that raced with the shutdown either failed or is discarded).
    /// Returns how many were discarded. Shutting down twice is harmless
    /// (the second may be `immediate`); there is no way back short of
    /// erasing the queue and creating it again.
    pub fn shutdown(&self, immediate: bool) -> Result<usize> {
        self.handle.check()?;
        let bits = if immediate {
            SHUT | SHUT_IMMEDIATE
        } else {
            SHUT
        };
        self.header().shutdown.fetch_or(bits, Ordering::SeqCst);
        let core = self.core();
        core.wake_all();
        if !immediate {
            return Ok(0);
        }
        let mut discarded = 0u64;
        loop {
            match self.pop_n(usize::MAX, &mut |_, _| {}, None) {
                Ok(n) => discarded += n as u64,
                Err(Error::ShutDown { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        // Empty now: a join waiting for the queue to drain can return.
        core.wake_joiners();
        Ok(discarded as usize)
    }

    /// Whether the queue was shut down (by any process).
    pub fn is_shutdown(&self) -> bool {
        self.core().shut_down()
    }

    /// [`try_pop_into`](RawQueue::try_pop_into) that counts every element
    /// it takes as an unfinished task, to be marked done with
    /// [`task_done`](RawQueue::task_done) (see [`join`](RawQueue::join)).
    pub fn try_pop_tasks_into(&self, out: &mut [u8]) -> Result<usize> {
        let n = payload::count(out.len(), self.elem_size, self.name())?;
        let size = self.elem_size;
        let mut count = self.count_task();
        self.pop_n_with(n, &mut payload::copy_out(out, size), &mut count, None)
    }

    /// [`pop_into`](RawQueue::pop_into) that counts every element it takes
    /// as an unfinished task (see [`join`](RawQueue::join)).
    pub fn pop_tasks_into(
        &self,
        out: &mut [u8],
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<usize> {
        let n = payload::count(out.len(), self.elem_size, self.name())?;
        if n == 0 {
            return Ok(0);
        }
        let mut wait = Wait::new(timeout, interrupt);
        let size = self.elem_size;
        let mut count = self.count_task();
        match self.pop_n_with(
            n,
            &mut payload::copy_out(out, size),
            &mut count,
            Some(&mut wait),
        )? {
            0 => Err(self.handle.timeout()),
            got => Ok(got),
        }
    }

    /// The `taken` callback of counting pops: one more unfinished task.
    fn count_task(&self) -> impl FnMut() + '_ {
        let unfinished = &self.header().unfinished;
        // Before `head` moves (release): whoever sees the element gone
        // from the queue also sees it counted.
        move || {
            unfinished.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Mark one task taken by a counting pop as done (by any process).
    /// [`Error::InvalidArgument`] if no task is unfinished: it was called
    /// more times than counting pops took elements.
    pub fn task_done(&self) -> Result<()> {
        self.handle.check()?;
        let header = self.header();
        let mut current = header.unfinished.load(Ordering::Acquire);
        loop {
            if current == 0 {
                return Err(Error::InvalidArgument(format!(
                    "task_done() on {:?} was called more times than elements were taken \
                     from it (call it once for each element a get returned)",
                    self.name()
                )));
            }
            match header.unfinished.compare_exchange_weak(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        // SeqCst: the decrement before this load, the joiner's registration
        // before its check (one of the two sees the other).
        if current == 1 && header.join_waiters.load(Ordering::SeqCst) > 0 {
            self.core().wake_joiners();
        }
        Ok(())
    }

    /// Tasks taken by counting pops and not yet marked done.
    pub fn unfinished_tasks(&self) -> u64 {
        self.header().unfinished.load(Ordering::Acquire)
    }

    /// Wait until the queue is empty and every task taken from it by a
    /// counting pop was marked done ([`task_done`](RawQueue::task_done)):
    /// `Ok(true)`, or `Ok(false)` if `timeout` passed first (`None`: no
    /// limit). Elements taken by pops that do not count (`try_pop`,
    /// `pop_into`...) count as done at once. `interrupt` as for
    /// [`push_slice`](RawQueue::push_slice).
    pub fn join(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let header = self.header();
        let core = self.core();
        let mut wait = Wait::new(timeout, interrupt);
        let finished = || core.len() == 0 && header.unfinished.load(Ordering::SeqCst) == 0;
        loop {
            if finished() {
                return Ok(true);
            }
            if wait.deadline.expired() {
                return Ok(false);
            }
            header.join_waiters.fetch_add(1, Ordering::SeqCst);
            let seen = header.join_event.load(Ordering::SeqCst);
            let mut interrupted = false;
            if !finished() {
                interrupted = wait.interrupted();
                if !interrupted {
                    if let Some(nap) = wait.deadline.next_sleep() {
                        futex_wait(&header.join_event, seen, Some(nap));
                    }
                }
            }
            header.join_waiters.fetch_sub(1, Ordering::SeqCst);
            self.handle.check()?;
            if interrupted {
                return Err(Error::Interrupted {
                    name: self.handle.name().to_owned(),
                });
            }
        }
    }

    fn header(&self) -> &QueueHeader {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe { &*self.header }
    }

    payload::raw_ring_methods!(RawQueue, "oldest");

    /// Number of elements (approximate while other processes push and pop);
    /// 0 once the queue was erased.
    pub fn len(&self) -> usize {
        if self.handle.check().is_err() {
            return 0;
        }
        self.core().len() as usize
    }

    /// Whether the queue holds no elements (approximate under concurrency).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full (approximate under concurrency; false
    /// once it was erased).
    pub fn is_full(&self) -> bool {
        self.handle.check().is_ok() && self.len() >= self.capacity()
    }

    /// The capacity (exactly as created).
    pub fn capacity(&self) -> usize {
        self.shape.capacity as usize
    }

    /// Size of one element in bytes.
    pub fn elem_size(&self) -> usize {
        self.elem_size
    }

    /// The entry name.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// The element type descriptor.
    pub fn type_descriptor(&self) -> &str {
        &self.handle.info.elem_type
    }

    /// The name of the segment the queue lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }
}

/// How many times a blocking call retries with a spin hint before sleeping.
const SPINS_BEFORE_SLEEP: u32 = 200;
