//! `RawStack`: a stack whose element type is known at run time, its
//! validation, the waiting calls, and the `Segment` functions that create
//! and open stacks.

use super::*;

/// Write a fresh, empty stack header into `block` (zeroed).
///
/// # Safety
/// `block` must be valid for writes of `STACK_HEADER_SIZE` bytes, 8-aligned,
/// and not visible to anyone else.
unsafe fn init(block: *mut u8, capacity: u64, elem_size: u64) {
    let header = StackHeader {
        kind: kind::STACK,
        elem_size: elem_size as u32,
        capacity,
        slot_stride: slot_stride(elem_size),
        slots_offset: STACK_HEADER_SIZE,
        shutdown: AtomicU64::new(0),
        reserved0: [0; 3],
        top: AtomicU64::new(0),
        not_empty: AtomicU32::new(0),
        pop_waiters: AtomicU32::new(0),
        reserved1: [0; 6],
        reserved2: 0,
        not_full: AtomicU32::new(0),
        push_waiters: AtomicU32::new(0),
        reserved3: [0; 6],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<StackHeader>().write(header) };
}

/// Check a stack block against its table entry; returns the header, the
/// slot stride and the capacity to use from now on (taken from the entry
/// snapshot, not from the header, which a peer could rewrite later).
fn validate(handle: &Handle) -> Result<(&StackHeader, usize, u64)> {
    let info = &handle.info;
    if info.size < STACK_HEADER_SIZE {
        return Err(handle.corrupt("stack block is smaller than its header"));
    }
    // SAFETY: the block holds at least STACK_HEADER_SIZE bytes (just checked)
    // inside the mapping (check_block). Only the atomics are used through
    // this reference; the fixed fields are read once, as a copy.
    let header = unsafe { &*handle.block.cast::<StackHeader>() };
    let line = handle.first_line();
    let field32 = |offset| line.u32_at(offset);
    let field = |offset| line.u64_at(offset);
    let capacity = info.capacity;
    let stride = slot_stride(info.elem_size as u64);
    let needed = block_size(STACK_HEADER_SIZE, capacity, stride);
    if field32(offset_of!(StackHeader, kind)) != kind::STACK
        || field32(offset_of!(StackHeader, elem_size)) != info.elem_size
        || field(offset_of!(StackHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_STACK_CAPACITY
        || field(offset_of!(StackHeader, slot_stride)) != stride
        || field(offset_of!(StackHeader, slots_offset)) != STACK_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("stack header disagrees with its table entry or overruns its block")
        );
    }
    Ok((header, stride as usize, capacity))
}

/// Per-kind validation for `Segment::check`: the header and the stack
/// word. Returns the fill level.
pub(crate) fn check(handle: &Handle, _deep: bool) -> Result<Option<u64>> {
    let (header, core) = validated_core(handle)?;
    match core.decode(header.top.load(Ordering::Acquire)) {
        Ok(_) => Ok(Some(core.len())),
        Err(Stop::Corrupt(d)) => Err(handle.corrupt(d)),
        Err(Stop::Busy(_)) => Ok(Some(core.len())),
    }
}

/// Take back a claim (see `StackCore::revoke`).
pub(crate) fn revoke(handle: &Handle) -> Result<u64> {
    Ok(validated_core(handle)?.1.revoke())
}

/// The validated header and the algorithm over it, for `check` and `revoke`.
fn validated_core(handle: &Handle) -> Result<(&StackHeader, StackCore<'_>)> {
    let (header, stride, capacity) = validate(handle)?;
    // SAFETY: validate proved the slots fit in the block.
    let core = unsafe {
        StackCore::new(
            header,
            handle.block.add(STACK_HEADER_SIZE as usize),
            stride,
            capacity,
            handle.seg.map.lock_timeout(),
        )
    };
    Ok((header, core))
}

/// A stack whose element type is known at run time only, by its type
/// descriptor: elements go in and out as byte slices of
/// [`elem_size`](RawStack::elem_size) bytes. Python and C use this;
/// [`Stack<T>`] is the same stack with a Rust type.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-rawstack-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let raw = seg.create_stack_raw("undo", "<i", 4)?;
/// raw.try_push_slice(&[1i32.to_ne_bytes(), 2i32.to_ne_bytes()].concat())?;
/// let undo = seg.open_stack::<i32>("undo")?;
/// assert_eq!(undo.try_pop()?, Some(2));
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
#[derive(Clone)]
pub struct RawStack {
    pub(super) handle: Handle,
    header: *const StackHeader,
    slots: *mut u8,
    /// Slot stride and capacity as validated at open.
    stride: usize,
    capacity: u64,
    pub(super) elem_size: usize,
}

// SAFETY: shared state is only touched through atomics and the claim
// protocol; payload bytes carry no Rust invariants.
unsafe impl Send for RawStack {}
// SAFETY: as above.
unsafe impl Sync for RawStack {}

impl std::fmt::Debug for RawStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("name", &self.handle.name())
            .field("type", &self.handle.info.elem_type)
            .field("capacity", &self.capacity())
            .finish()
    }
}

payload::ring_segment_methods!(
    "stack",
    Stack,
    RawStack,
    kind::STACK,
    create_stack,
    open_stack,
    open_or_create_stack,
    create_stack_raw,
    open_or_create_stack_raw,
    open_stack_raw
);

impl RawStack {
    fn create(
        seg: &Segment,
        typed: Typed,
        name: &str,
        capacity: u64,
        existing_ok: bool,
    ) -> Result<RawStack> {
        if capacity == 0 || capacity > MAX_STACK_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "stack capacity must be 1..={MAX_STACK_CAPACITY}, not {capacity}"
            )));
        }
        let elem_size = typed.elem_size() as u64;
        let size = block_size(STACK_HEADER_SIZE, capacity, slot_stride(elem_size))?;
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe { init(block, capacity, elem_size) };
            Ok(())
        })?;
        RawStack::from_handle(handle)
    }

    pub(super) fn from_handle(handle: Handle) -> Result<RawStack> {
        let (header, stride, capacity) = handle.fresh(validate(&handle))?;
        let header: *const StackHeader = header;
        // SAFETY: validate proved the slot array lies inside the block.
        let slots = unsafe { handle.block.add(STACK_HEADER_SIZE as usize) };
        Ok(RawStack {
            elem_size: handle.info.elem_size as usize,
            handle,
            header,
            slots,
            stride,
            capacity,
        })
    }

    #[inline]
    fn core(&self) -> StackCore<'_> {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe {
            StackCore::new(
                &*self.header,
                self.slots,
                self.stride,
                self.capacity,
                self.handle.seg.map.lock_timeout(),
            )
        }
    }

    #[inline]
    fn header(&self) -> &StackHeader {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe { &*self.header }
    }

    #[cold]
    fn stop(&self, stop: Stop) -> Error {
        match stop {
            Stop::Corrupt(detail) => self.handle.corrupt(detail),
            Stop::Busy(pid) => Error::Busy {
                name: self.handle.name().to_owned(),
                pid,
                seconds: self.handle.seg.map.lock_timeout().as_secs(),
            },
        }
    }

    /// What a call stopped by a shutdown returns after `done` elements:
    /// the error if there were none, else the count.
    fn refused(&self, done: usize) -> Result<usize> {
        match done {
            0 => Err(self.handle.shut_down()),
            n => Ok(n),
        }
    }

    /// Push up to `n` elements, the `i`-th written into its payload by
    /// `write(i, payload)`, as many per claim as fit. Without `wait` it
    /// stops when the stack is full; with it, it waits for room until the
    /// deadline. Returns how many were pushed (a prefix); [`Error::ShutDown`]
    /// if the stack was shut down before the first.
    #[inline(always)]
    pub(crate) fn push_n(
        &self,
        n: usize,
        write: &mut impl FnMut(usize, *mut u8),
        wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        let core = self.core();
        self.move_n(n, true, wait, &mut |done, blocking| {
            core.push(n - done, &mut |i, p| write(done + i, p), blocking)
        })
    }

    /// One element without waiting: `Ok(false)` when full (the form
    /// `try_push` uses; the queue has the same).
    #[inline(always)]
    pub(crate) fn push_one(&self, write: &mut impl FnMut(*mut u8)) -> Result<bool> {
        self.handle.check()?;
        self.one(self.core().push(1, &mut |_, p| write(p), false))
    }

    /// One element without waiting: `Ok(false)` when empty.
    #[inline(always)]
    pub(crate) fn pop_one(&self, read: &mut impl FnMut(*const u8)) -> Result<bool> {
        self.handle.check()?;
        self.one(self.core().pop(1, &mut |_, p| read(p), false))
    }

    /// What a one-element call returns for `step`.
    #[inline(always)]
    fn one(&self, step: std::result::Result<Step, Stop>) -> Result<bool> {
        match step {
            Ok(Step::Moved(_)) => Ok(true),
            Ok(Step::Blocked) => Ok(false),
            Ok(Step::ShutDown) => Err(self.handle.shut_down()),
            Err(s) => Err(self.stop(s)),
        }
    }

    /// Pop up to `n` elements (top first), handing the `i`-th payload to
    /// `read(i, payload)`, in one claim when they are there. With `wait` it
    /// waits (until the deadline) for the first element only. Returns how
    /// many were popped; [`Error::ShutDown`] if there was none and the stack
    /// was shut down.
    #[inline(always)]
    pub(crate) fn pop_n(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        let core = self.core();
        self.move_n(n, false, wait, &mut |done, blocking| {
            core.pop(n - done, &mut |i, p| read(done + i, p), blocking)
        })
    }

    /// Move up to `n` elements by repeated `attempt(done, blocking)` calls
    /// (one claim each), pushing (`push`) or popping. With `wait`, a push
    /// waits for room for every element, a pop for the first one only.
    #[inline(always)]
    fn move_n(
        &self,
        n: usize,
        push: bool,
        mut wait: Option<&mut Wait<'_>>,
        attempt: &mut impl FnMut(usize, bool) -> std::result::Result<Step, Stop>,
    ) -> Result<usize> {
        self.handle.check()?;
        let h = self.header();
        let (waiters, event) = if push {
            (&h.push_waiters, &h.not_full)
        } else {
            (&h.pop_waiters, &h.not_empty)
        };
        let mut done = 0;
        while done < n {
            let waiting = wait.as_deref_mut().filter(|_| push || done == 0);
            let blocking = waiting.is_some();
            let mut once = || attempt(done, blocking).map_err(|s| self.stop(s));
            let step = match waiting {
                None => once()?,
                Some(w) => self.block_on(w, waiters, event, &mut once)?,
            };
            match step {
                Step::Moved(k) => done += k,
                Step::Blocked => break,
                Step::ShutDown => return self.refused(done),
            }
        }
        Ok(done)
    }

    /// Run `attempt` until it does not block, sleeping on (`waiters`,
    /// `event`) in between; `Ok(Step::Blocked)` when the deadline passes
    /// first. (`attempt` itself waits for a live claimant: it reports
    /// `Blocked` only for a full or empty stack.)
    fn block_on(
        &self,
        wait: &mut Wait<'_>,
        waiters: &AtomicU32,
        event: &AtomicU32,
        attempt: &mut dyn FnMut() -> Result<Step>,
    ) -> Result<Step> {
        for _ in 0..SPINS_BEFORE_SLEEP {
            match attempt()? {
                Step::Blocked => crate::sync::spin_hint(),
                step => return Ok(step),
            }
        }
        loop {
            if wait.deadline.expired() {
                return Ok(Step::Blocked);
            }
            let deadline = wait.deadline;
            let mut outcome = Ok(Step::Blocked);
            let mut interrupted = false;
            sleep_until(
                waiters,
                event,
                &deadline,
                &mut || {
                    outcome = attempt();
                    !matches!(outcome, Ok(Step::Blocked))
                },
                &mut || {
                    interrupted = wait.interrupted();
                    interrupted
                },
            );
            match outcome? {
                Step::Blocked => {}
                step => return Ok(step),
            }
            self.handle.check()?;
            if interrupted {
                return Err(Error::Interrupted {
                    name: self.handle.name().to_owned(),
                });
            }
            match attempt()? {
                Step::Blocked => {}
                step => return Ok(step),
            }
        }
    }

    /// Wait until a push (`push`) or a pop would find room (an element), or
    /// the stack is shut down; `Ok(false)` if `timeout` passed first.
    fn wait_ready(
        &self,
        push: bool,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.handle.check()?;
        let core = self.core();
        let h = self.header();
        let (waiters, event) = if push {
            (&h.push_waiters, &h.not_full)
        } else {
            (&h.pop_waiters, &h.not_empty)
        };
        let mut wait = Wait::new(timeout, interrupt);
        let mut waiting = ClaimWait::default();
        let mut spins = 0;
        loop {
            let readiness = core.readiness(push).map_err(|s| self.stop(s))?;
            if readiness == Readiness::Ready {
                return Ok(true);
            }
            if wait.deadline.expired() {
                return Ok(false);
            }
            if let Readiness::Claimed { word, pid } = readiness {
                // Claimed: the claim ends soon (or its dead owner's is taken
                // back); never sleep on the event meanwhile. The word and
                // the pid come from one load.
                core.wait_for_claim(word, pid, true, waiting.on(word))
                    .map_err(|s| self.stop(s))?;
                continue;
            }
            if spins < SPINS_BEFORE_SLEEP {
                spins += 1;
                crate::sync::spin_hint();
                continue;
            }
            let deadline = wait.deadline;
            let mut interrupted = false;
            sleep_until(
                waiters,
                event,
                &deadline,
                &mut || !matches!(core.readiness(push), Ok(Readiness::Sleep)),
                &mut || {
                    interrupted = wait.interrupted();
                    interrupted
                },
            );
            self.handle.check()?;
            if interrupted {
                return Err(Error::Interrupted {
                    name: self.handle.name().to_owned(),
                });
            }
        }
    }

    /// Wait until the stack seems to hold an element, without taking it:
    /// `Ok(true)` when a pop would find one (or the stack was shut down),
    /// `Ok(false)` if `timeout` passed first; see
    /// [`RawQueue::wait_not_empty`](crate::RawQueue::wait_not_empty).
    pub fn wait_not_empty(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(false, timeout, interrupt)
    }

    /// Wait until the stack seems to have room (or was shut down).
    pub fn wait_not_full(
        &self,
        timeout: Option<Duration>,
        interrupt: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<bool> {
        self.wait_ready(true, timeout, interrupt)
    }

    /// Wake every thread of every process blocked on this stack, so that
    /// each checks its interrupt callback and the shutdown bit again; see
    /// [`RawQueue::wake_waiters`](crate::RawQueue::wake_waiters).
    pub fn wake_waiters(&self) {
        self.core().wake_all();
    }

    /// Shut the stack down, for every process: pushes fail with
    /// [`Error::ShutDown`] from now on, pops take what is left and then fail
    /// with it; every blocked call wakes up. With `immediate` the elements
    /// left are discarded too. Returns how many were discarded. Shutting
    /// down twice is harmless; there is no way back short of erasing it.
    pub fn shutdown(&self, immediate: bool) -> Result<usize> {
        self.handle.check()?;
        // The bit in `top` makes it one atomic step with every push and pop
        // (they claim that word): a push either landed before it or is refused.
        let core = self.core();
        core.shut().map_err(|s| self.stop(s))?;
        core.wake_all();
        let mut discarded = 0u64;
        if immediate {
            // Blocking pops: they wait for a live claimant (up to the lock
            // timeout) instead of reporting "empty" while it holds the
            // claim; shut down, they never sleep on an empty stack.
            let mut wait = Wait::new(None, None);
            loop {
                match self.pop_n(usize::MAX, &mut |_, _| {}, Some(&mut wait)) {
                    Ok(n) => discarded += n as u64,
                    Err(Error::ShutDown { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(discarded as usize)
    }

    /// Whether the stack was shut down (by any process).
    pub fn is_shutdown(&self) -> bool {
        self.core().shut_down()
    }

    payload::raw_ring_methods!(RawStack, "top");

    /// Number of elements (approximate while other processes push and pop);
    /// 0 once the stack was erased.
    pub fn len(&self) -> usize {
        if self.handle.check().is_err() {
            return 0;
        }
        self.core().len() as usize
    }

    /// Whether the stack is empty (approximate under concurrency; true once
    /// it was erased).
    pub fn is_empty(&self) -> bool {
        self.handle.check().is_err() || self.core().len() == 0
    }

    /// Whether the stack is full (approximate under concurrency; false once
    /// it was erased).
    pub fn is_full(&self) -> bool {
        self.handle.check().is_ok() && self.core().len() >= self.capacity
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
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

    /// The name of the segment the stack lives in.
    pub fn segment_name(&self) -> &str {
        self.handle.seg.name()
    }
}

/// How many attempts a blocking call makes (with a spin hint) before sleeping.
const SPINS_BEFORE_SLEEP: u32 = 200;
