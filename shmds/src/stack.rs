//! `Stack<T>`: a bounded lock-free LIFO in shared memory.
//!
//! # The algorithm
//!
//! `capacity` nodes live in the block (bytes: [`StackHeader`], [`StackNode`]).
//! Each node is on exactly one of two Treiber stacks: the **stack** (`top`)
//! or the **free list** (`free`). Push takes a node off the free list, writes
//! the element into it and pushes it on the stack; pop does the reverse.
//!
//! Both list heads are one 64-bit word, `tag << 25 | shut << 24 | link`,
//! where `link` is the node index + 1 (0 for an empty list), `shut` the
//! shutdown bit (below) and `tag` (39 bits) grows with every successful
//! change. A popper reads `top`, then the top node's `next`, then swaps
//! `top` for `next` by compare-and-swap; if the node was popped and pushed
//! again meanwhile, the tag differs and the CAS fails (ABA guard). The tag
//! repeats only after 2^39 changes, far more than a stalled process could
//! sleep through.
//!
//! Invariants:
//! - A node's element is written only by the process that took the node off
//!   the free list, before it publishes the node on the stack (release CAS),
//!   and read only by the process that popped it (acquire CAS).
//! - `next` is written only by the process that owns the node, just before
//!   the CAS that publishes it; readers that lose the race discard what they
//!   read when their CAS fails.
//!
//! Every operation is one successful CAS on each list it touches; a process
//! that fails a CAS retries because another one succeeded: **lock-free**. No
//! process ever waits for a specific other process.
//!
//! *Sleeping.* `pop` on an empty stack registers in `pop_waiters`, reads the
//! event counter `not_empty`, checks the stack again and sleeps on the
//! counter with a shared futex. A push that finds `pop_waiters > 0` after its
//! CAS (both sequentially consistent) bumps the counter and wakes one
//! sleeper. Full stacks use `push_waiters`/`not_full` the same way.
//!
//! *Shutdown.* Bit 24 of `top` (the tag is bits 25-63, so counting it
//! never touches the bit) is set once, by `fetch_or`, after
//! `StackHeader::shutdown`, and kept by every change of the word. A push
//! whose CAS onto `top` finds it does not publish: it puts its node back on
//! the free list and fails. A pop that finds `top` empty reads emptiness
//! and the bit from the same word. So shutdown is one atomic step with
//! every push and pop: once a pop has reported "shut down", no element can
//! arrive after it. Stacks made before the bit existed counted their tag
//! from bit 24, so a set bit counts only when `shutdown` is set too (read
//! only then, off the hot path).
//!
//! *Crashes.* A process killed inside push or pop holds at most one node
//! that is on neither list: that node is leaked and the stack's capacity
//! shrinks by one. The element being pushed (or popped) by the killed process
//! is lost; its call never returned. Nothing else is affected: no state waits
//! on a dead process. A process killed while sleeping leaves its waiter count
//! behind, which costs later pushes a futex wake-up call each.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::handle::{block_size, Handle, Typed};
use crate::layout::{kind, StackHeader, StackNode, STACK_HEADER_SIZE};
use crate::payload;
use crate::segment::Segment;
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};
use crate::wait::{futex_wait, futex_wake, Deadline, Wait};
use std::marker::PhantomData;
use std::mem::offset_of;
use std::time::Duration;

/// Largest stack capacity (indices use 24 bits of the list words).
pub const MAX_STACK_CAPACITY: u64 = (1 << LINK_BITS) - 1;

const LINK_BITS: u32 = 24;
const LINK_MASK: u64 = (1 << LINK_BITS) - 1;
/// Bit 24 of `top`: the stack was shut down, if `StackHeader::shutdown`
/// says so too (stacks made before this bit existed counted their tag from
/// bit 24, so the bit alone proves nothing there). Kept by every change of
/// the word; a push that finds it does not publish its node.
const SHUT: u64 = 1 << LINK_BITS;
/// The tag: bits 25-63, counted in place (its overflow leaves the word).
const TAG_ONE: u64 = 1 << (LINK_BITS + 1);

/// The next value of a list word that was `current`, now pointing to
/// `link`: the tag grows by one, the shutdown bit stays as it was.
#[inline(always)]
fn next_word(current: u64, link: u64) -> u64 {
    ((current & !LINK_MASK).wrapping_add(TAG_ONE)) | (link & LINK_MASK)
}

/// How one push or pop attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The element went in (came out).
    Done,
    /// Full (empty): nothing happened.
    Blocked,
    /// The stack was shut down: a push was refused, or a pop found it empty.
    ShutDown,
}

/// What `take` found.
enum Took {
    /// The node behind this link is ours now.
    Node(u64),
    /// The list was empty; its word had the shutdown bit (or not).
    Empty { shut_bit: bool },
}

/// The stack algorithm over a header and a node array; the same code runs on
/// a segment's bytes and, under loom, on heap memory.
pub(crate) struct StackCore<'a> {
    header: &'a StackHeader,
    nodes: *mut u8,
    stride: usize,
    capacity: u64,
}

const NODE_HEADER: usize = std::mem::size_of::<StackNode>();

/// Bytes between nodes for elements of `elem_size` bytes.
pub(crate) fn node_stride(elem_size: u64) -> u64 {
    (NODE_HEADER as u64 + elem_size + 7) & !7
}

impl<'a> StackCore<'a> {
    /// # Safety
    /// `nodes` must point to `capacity` initialised nodes, `stride` bytes
    /// apart, each followed by its element's bytes, valid for `'a`.
    unsafe fn new(header: &'a StackHeader, nodes: *mut u8, stride: usize, capacity: u64) -> Self {
        StackCore {
            header,
            nodes,
            stride,
            capacity,
        }
    }

    /// The node behind `link`, or a corruption report.
    #[inline]
    fn node(&self, link: u64) -> std::result::Result<&'a StackNode, String> {
        if link == 0 || link > self.capacity {
            return Err(self.bad_link(link));
        }
        // SAFETY: 1 <= link <= capacity, so the node lies in the array.
        Ok(unsafe {
            &*self
                .nodes
                .add((link - 1) as usize * self.stride)
                .cast::<StackNode>()
        })
    }

    #[cold]
    fn bad_link(&self, link: u64) -> String {
        format!("node link {link} is outside 1..={}", self.capacity)
    }

    #[inline]
    fn payload(&self, link: u64) -> *mut u8 {
        // SAFETY: callers pass links that `node` accepted.
        unsafe {
            self.nodes
                .add((link - 1) as usize * self.stride + NODE_HEADER)
        }
    }

    /// Take the first node off `list`. Emptiness and the shutdown bit come
    /// from one load of the word, so "empty and shut down" is exact.
    #[inline(always)]
    fn take(&self, list: &AtomicU64) -> std::result::Result<Took, String> {
        let mut current = list.load(Ordering::Acquire);
        loop {
            let link = current & LINK_MASK;
            if link == 0 {
                return Ok(Took::Empty {
                    shut_bit: current & SHUT != 0,
                });
            }
            let next = self.node(link)?.next.load(Ordering::Relaxed) as u64;
            let new = next_word(current, next);
            match list.compare_exchange_weak(current, new, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => return Ok(Took::Node(link)),
                Err(seen) => current = seen,
            }
        }
    }

    /// Put node `link` (which we own) on top of `list`. With `stack` (the
    /// list is `top`), record the stack depth in the node, and refuse
    /// (`Ok(false)`, the node still ours) once the stack is shut down.
    #[inline(always)]
    fn put(&self, list: &AtomicU64, link: u64, stack: bool) -> std::result::Result<bool, String> {
        let node = self.node(link)?;
        let mut current = list.load(Ordering::Relaxed);
        loop {
            if stack && current & SHUT != 0 && self.flagged() {
                return Ok(false);
            }
            let below = current & LINK_MASK;
            node.next.store(below as u32, Ordering::Relaxed);
            if stack {
                let depth = match below {
                    0 => 0,
                    _ => self
                        .node(below)
                        .map_or(0, |n| n.depth.load(Ordering::Relaxed)),
                };
                node.depth.store(depth.saturating_add(1), Ordering::Relaxed);
            }
            let new = next_word(current, link);
            match list.compare_exchange_weak(current, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return Ok(true),
                Err(seen) => current = seen,
            }
        }
    }

    /// Push an element written by `write`.
    #[inline]
    pub(crate) fn push(
        &self,
        write: &mut impl FnMut(*mut u8),
    ) -> std::result::Result<Step, String> {
        let link = match self.take(&self.header.free)? {
            Took::Node(link) => link,
            Took::Empty { .. } if self.shut_down() => return Ok(Step::ShutDown),
            Took::Empty { .. } => return Ok(Step::Blocked),
        };
        crate::fault::pause_point("stack.push.taken");
        write(self.payload(link));
        if !self.put(&self.header.top, link, true)? {
            // Shut down since: the element never was on the stack.
            self.put(&self.header.free, link, false)?;
            return Ok(Step::ShutDown);
        }
        notify(&self.header.pop_waiters, &self.header.not_empty);
        Ok(Step::Done)
    }

    /// Pop the top element into `read`.
    #[inline]
    pub(crate) fn pop(
        &self,
        read: &mut impl FnMut(*const u8),
    ) -> std::result::Result<Step, String> {
        let link = match self.take(&self.header.top)? {
            Took::Node(link) => link,
            Took::Empty { shut_bit: true } if self.flagged() => return Ok(Step::ShutDown),
            Took::Empty { .. } => return Ok(Step::Blocked),
        };
        crate::fault::pause_point("stack.pop.taken");
        read(self.payload(link));
        self.put(&self.header.free, link, false)?;
        notify(&self.header.push_waiters, &self.header.not_full);
        Ok(Step::Done)
    }

    /// Whether the stack was shut down.
    pub(crate) fn shut_down(&self) -> bool {
        self.header.top.load(Ordering::SeqCst) & SHUT != 0 && self.flagged()
    }

    /// `StackHeader::shutdown`, which confirms the bit in `top` (it is set
    /// first). Read only when the bit is seen.
    #[cold]
    fn flagged(&self) -> bool {
        // The bit was seen by a load (maybe relaxed) of `top`, written by a
        // release RMW that follows the store of `shutdown`: the fence makes
        // that store visible here.
        fence(Ordering::Acquire);
        self.header.shutdown.load(Ordering::SeqCst) != 0
    }

    /// Set the shutdown field, then the bit in `top`.
    fn shut(&self) {
        self.header.shutdown.fetch_or(1, Ordering::SeqCst);
        self.header.top.fetch_or(SHUT, Ordering::SeqCst);
    }

    /// Whether a push (`push`) or a pop would find a node now, or the
    /// stack was shut down (so either returns at once).
    fn ready(&self, push: bool) -> bool {
        let top = self.header.top.load(Ordering::SeqCst);
        if top & SHUT != 0 && self.flagged() {
            return true;
        }
        if push {
            self.header.free.load(Ordering::SeqCst) & LINK_MASK != 0
        } else {
            top & LINK_MASK != 0
        }
    }

    /// Wake every process sleeping on this stack, so that each re-checks
    /// its condition, the shutdown bit and its interrupt callback.
    pub(crate) fn wake_all(&self) {
        for event in [&self.header.not_empty, &self.header.not_full] {
            // The bump makes a sleeper between reading the counter and its
            // futex wait return at once.
            event.fetch_add(1, Ordering::SeqCst);
            futex_wake(event, i32::MAX as u32);
        }
    }

    /// Elements on the stack: the depth recorded in the top node.
    pub(crate) fn len(&self) -> u64 {
        let top = self.header.top.load(Ordering::Acquire) & LINK_MASK;
        match self.node(top) {
            Ok(node) => (node.depth.load(Ordering::Relaxed) as u64).min(self.capacity),
            Err(_) => 0,
        }
    }

    /// Walk both lists (for `check` on a quiescent stack): nodes on the
    /// stack, nodes free, or a description of the damage.
    pub(crate) fn census(&self) -> std::result::Result<(u64, u64), String> {
        let mut seen = vec![false; self.capacity as usize];
        let mut count = |list: &AtomicU64, what: &str| -> std::result::Result<u64, String> {
            let mut link = list.load(Ordering::Acquire) & LINK_MASK;
            let mut n = 0;
            while link != 0 {
                let node = self.node(link)?;
                if std::mem::replace(&mut seen[(link - 1) as usize], true) {
                    return Err(format!(
                        "node {} appears twice ({what} list has a cycle or is shared)",
                        link - 1
                    ));
                }
                n += 1;
                link = node.next.load(Ordering::Relaxed) as u64;
            }
            Ok(n)
        };
        let on_stack = count(&self.header.top, "stack")?;
        let free = count(&self.header.free, "free")?;
        Ok((on_stack, free))
    }
}

/// After a push (pop): wake one sleeping popper (pusher) if any is registered.
#[inline]
fn notify(waiters: &AtomicU32, event: &AtomicU32) {
    // SeqCst: pairs with the waiter's SeqCst registration before its re-check.
    if waiters.load(Ordering::SeqCst) > 0 {
        event.fetch_add(1, Ordering::SeqCst);
        futex_wake(event, 1);
    }
}

/// Sleep on `event` until notified (or a nap passes), having re-checked with
/// `retry` after registering in `waiters`; `retry` returns `true` when
/// there is no need to sleep. `stop` is called after that, before the
/// sleep: `true` means do not sleep (an interrupt). A process that sets a
/// stop condition and then bumps `event` and wakes it (`wake_all`) never
/// leaves us asleep: `stop` sees the condition, or the counter has changed
/// since we read it and the futex wait returns at once.
fn sleep_until(
    waiters: &AtomicU32,
    event: &AtomicU32,
    deadline: &Deadline,
    retry: &mut dyn FnMut() -> bool,
    stop: &mut dyn FnMut() -> bool,
) {
    waiters.fetch_add(1, Ordering::SeqCst);
    let seen = event.load(Ordering::SeqCst);
    if !retry() {
        fence(Ordering::SeqCst);
        if !stop() {
            if let Some(nap) = deadline.next_sleep() {
                futex_wait(event, seen, Some(nap));
            }
        }
    }
    waiters.fetch_sub(1, Ordering::SeqCst);
}

/// Write a fresh stack into `block`: every node on the free list.
///
/// # Safety
/// `block` must be valid for `STACK_HEADER_SIZE + capacity * node_stride`
/// bytes, 8-aligned, and not visible to anyone else.
unsafe fn init(block: *mut u8, capacity: u64, elem_size: u64) {
    let stride = node_stride(elem_size);
    let header = StackHeader {
        kind: kind::STACK,
        elem_size: elem_size as u32,
        capacity,
        node_stride: stride,
        nodes_offset: STACK_HEADER_SIZE,
        shutdown: AtomicU64::new(0),
        reserved0: [0; 3],
        top: AtomicU64::new(0),
        not_empty: AtomicU32::new(0),
        pop_waiters: AtomicU32::new(0),
        reserved1: [0; 6],
        free: AtomicU64::new(if capacity > 0 { 1 } else { 0 }),
        not_full: AtomicU32::new(0),
        push_waiters: AtomicU32::new(0),
        reserved2: [0; 6],
    };
    // SAFETY: the caller guarantees the block is ours, aligned and large enough.
    unsafe { block.cast::<StackHeader>().write(header) };
    for i in 0..capacity {
        let next = if i + 1 < capacity { i as u32 + 2 } else { 0 };
        // SAFETY: node i lies inside the block.
        unsafe {
            block
                .add((STACK_HEADER_SIZE + i * stride) as usize)
                .cast::<StackNode>()
                .write(StackNode {
                    next: AtomicU32::new(next),
                    depth: AtomicU32::new(0),
                })
        };
    }
}

/// Check a stack block against its table entry; returns the header, the
/// node stride and the capacity to use from now on (taken from the entry
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
    let stride = node_stride(info.elem_size as u64);
    let needed = block_size(STACK_HEADER_SIZE, capacity, stride);
    if field32(offset_of!(StackHeader, kind)) != kind::STACK
        || field32(offset_of!(StackHeader, elem_size)) != info.elem_size
        || field(offset_of!(StackHeader, capacity)) != capacity
        || capacity == 0
        || capacity > MAX_STACK_CAPACITY
        || field(offset_of!(StackHeader, node_stride)) != stride
        || field(offset_of!(StackHeader, nodes_offset)) != STACK_HEADER_SIZE
        || needed.map_or(true, |n| n > info.size)
    {
        return Err(
            handle.corrupt("stack header disagrees with its table entry or overruns its block")
        );
    }
    Ok((header, stride as usize, capacity))
}

/// Per-kind validation for `Segment::check`: the header and, with `deep`,
/// both lists (which must be disjoint and acyclic; a walk that races with
/// live pushes and pops is retried). Returns the fill level.
pub(crate) fn check(handle: &Handle, deep: bool) -> Result<Option<u64>> {
    let (header, stride, capacity) = validate(handle)?;
    // SAFETY: validate proved the nodes fit in the block.
    let core = unsafe {
        StackCore::new(
            header,
            handle.block.add(STACK_HEADER_SIZE as usize),
            stride,
            capacity,
        )
    };
    if !deep {
        return Ok(Some(core.len()));
    }
    let mut last = String::new();
    for _ in 0..5 {
        match core.census() {
            Ok((on_stack, _free)) => return Ok(Some(on_stack)),
            Err(d) => last = d,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(handle.corrupt(last))
}

/// A bounded lock-free LIFO stack of `T` in shared memory.
///
/// ```
/// use shmds::Segment;
/// # let name = format!("doc-stack-{}", std::process::id());
/// let seg = Segment::create(&name, 1 << 20)?;
/// let undo = seg.create_stack::<i64>("undo", 2)?;
/// assert!(undo.try_push(1)?);
/// assert!(undo.try_push(2)?);
/// assert!(!undo.try_push(3)?, "full");
/// assert_eq!(undo.try_pop()?, Some(2));
/// assert_eq!(undo.len(), 1);
/// # Segment::remove(&name)?;
/// # Ok::<(), shmds::Error>(())
/// ```
///
/// See the documentation of `src/stack.rs` and FORMAT.md for the algorithm and what a crashed
/// process leaves behind.
pub struct Stack<T: Element> {
    raw: RawStack,
    _t: PhantomData<T>,
}

impl<T: Element> std::fmt::Debug for Stack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.raw.fmt(f)
    }
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
pub struct RawStack {
    handle: Handle,
    header: *const StackHeader,
    nodes: *mut u8,
    /// Node stride and capacity as validated at open.
    stride: usize,
    capacity: u64,
    elem_size: usize,
}

// SAFETY: shared state is only touched through atomics and the node
// ownership protocol; payload bytes carry no Rust invariants.
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

impl Segment {
    /// Create a stack of `capacity` elements.
    pub fn create_stack<T: Element>(&self, name: &str, capacity: u64) -> Result<Stack<T>> {
        RawStack::create(self, Typed::of::<T>(kind::STACK), name, capacity, false).map(Stack::new)
    }

    /// Open the stack `name`; fails with [`Error::TypeMismatch`] if it holds another type.
    pub fn open_stack<T: Element>(&self, name: &str) -> Result<Stack<T>> {
        RawStack::from_handle(Typed::of::<T>(kind::STACK).open(self, name)?).map(Stack::new)
    }

    /// Open the stack `name`, creating it with `capacity` if it does not exist.
    pub fn open_or_create_stack<T: Element>(&self, name: &str, capacity: u64) -> Result<Stack<T>> {
        RawStack::create(self, Typed::of::<T>(kind::STACK), name, capacity, true).map(Stack::new)
    }

    /// Create a stack of `capacity` elements of the type `descriptor`
    /// describes (see [`TypeDescriptor`](crate::TypeDescriptor)).
    pub fn create_stack_raw(
        &self,
        name: &str,
        descriptor: &str,
        capacity: u64,
    ) -> Result<RawStack> {
        RawStack::create(
            self,
            Typed::described(kind::STACK, descriptor)?,
            name,
            capacity,
            false,
        )
    }

    /// Open the stack `name`, creating it with `capacity` elements of type
    /// `descriptor` if it does not exist. An existing stack must hold that type.
    pub fn open_or_create_stack_raw(
        &self,
        name: &str,
        descriptor: &str,
        capacity: u64,
    ) -> Result<RawStack> {
        RawStack::create(
            self,
            Typed::described(kind::STACK, descriptor)?,
            name,
            capacity,
            true,
        )
    }

    /// Open the stack `name` whatever its element type.
    pub fn open_stack_raw(&self, name: &str) -> Result<RawStack> {
        RawStack::from_handle(Typed::stored(self, kind::STACK, name)?.open(self, name)?)
    }
}

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
        let size = block_size(STACK_HEADER_SIZE, capacity, node_stride(elem_size))?;
        let handle = typed.create(seg, name, capacity, size, existing_ok, |block| {
            // SAFETY: the fresh block has `size` bytes, is 64-aligned and unpublished.
            unsafe { init(block, capacity, elem_size) };
            Ok(())
        })?;
        RawStack::from_handle(handle)
    }

    fn from_handle(handle: Handle) -> Result<RawStack> {
        let (header, stride, capacity) = handle.fresh(validate(&handle))?;
        let header: *const StackHeader = header;
        // SAFETY: validate proved the node array lies inside the block.
        let nodes = unsafe { handle.block.add(STACK_HEADER_SIZE as usize) };
        Ok(RawStack {
            elem_size: handle.info.elem_size as usize,
            handle,
            header,
            nodes,
            stride,
            capacity,
        })
    }

    #[inline]
    fn core(&self) -> StackCore<'_> {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe { StackCore::new(&*self.header, self.nodes, self.stride, self.capacity) }
    }

    #[inline]
    fn header(&self) -> &StackHeader {
        // SAFETY: validated at open; the handle keeps the mapping alive.
        unsafe { &*self.header }
    }

    fn corrupt(&self, detail: String) -> Error {
        self.handle.corrupt(detail)
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
    /// `write(i, payload)`. Without `wait` it stops when the stack is full;
    /// with it, each element waits for room until the deadline. Returns how
    /// many were pushed (a prefix); [`Error::ShutDown`] if the stack was
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
        for i in 0..n {
            let mut once = || core.push(&mut |p| write(i, p)).map_err(|d| self.corrupt(d));
            let step = match wait.as_deref_mut() {
                None => once()?,
                Some(w) => {
                    let h = self.header();
                    self.block_on(w, &h.push_waiters, &h.not_full, &mut once)?
                }
            };
            match step {
                Step::Done => {}
                Step::Blocked => return Ok(i),
                Step::ShutDown => return self.refused(i),
            }
        }
        Ok(n)
    }

    /// One element without waiting: `Ok(false)` when full (the form
    /// `try_push` uses; the queue has the same).
    #[inline(always)]
    pub(crate) fn push_one(&self, write: &mut impl FnMut(*mut u8)) -> Result<bool> {
        Ok(self.push_n(1, &mut |_, p| write(p), None)? == 1)
    }

    /// One element without waiting: `Ok(false)` when empty.
    #[inline(always)]
    pub(crate) fn pop_one(&self, read: &mut impl FnMut(*const u8)) -> Result<bool> {
        Ok(self.pop_n(1, &mut |_, p| read(p), None)? == 1)
    }

    /// Pop up to `n` elements, handing the `i`-th payload to `read(i, payload)`.
    /// With `wait` it waits (until the deadline) for the first element only.
    /// Returns how many were popped (top first); [`Error::ShutDown`] if there
    /// was none and the stack was shut down.
    #[inline(always)]
    pub(crate) fn pop_n(
        &self,
        n: usize,
        read: &mut impl FnMut(usize, *const u8),
        mut wait: Option<&mut Wait<'_>>,
    ) -> Result<usize> {
        self.handle.check()?;
        let core = self.core();
        for i in 0..n {
            let mut once = || core.pop(&mut |p| read(i, p)).map_err(|d| self.corrupt(d));
            let step = match wait.as_deref_mut().filter(|_| i == 0) {
                None => once()?,
                Some(w) => {
                    let h = self.header();
                    self.block_on(w, &h.pop_waiters, &h.not_empty, &mut once)?
                }
            };
            match step {
                Step::Done => {}
                Step::Blocked => return Ok(i),
                Step::ShutDown => return self.refused(i),
            }
        }
        Ok(n)
    }

    /// Run `attempt` until it does not block, sleeping on (`waiters`,
    /// `event`) in between; `Ok(Step::Blocked)` when the deadline passes
    /// first.
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

    /// Wait until a push (`push`) or a pop would find a node, or the stack
    /// is shut down; `Ok(false)` if `timeout` passed first.
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
        for _ in 0..SPINS_BEFORE_SLEEP {
            if core.ready(push) {
                return Ok(true);
            }
            crate::sync::spin_hint();
        }
        loop {
            if core.ready(push) {
                return Ok(true);
            }
            if wait.deadline.expired() {
                return Ok(false);
            }
            let deadline = wait.deadline;
            let mut interrupted = false;
            sleep_until(
                waiters,
                event,
                &deadline,
                &mut || core.ready(push),
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
    pub fn shutdown(&self, immediate: bool) -> Result<u64> {
        self.handle.check()?;
        // The bit in `top` makes it one atomic step with every push and pop
        // (they CAS that word): a push either landed before it or is refused.
        let core = self.core();
        core.shut();
        core.wake_all();
        let mut discarded = 0u64;
        if immediate {
            loop {
                match self.pop_n(usize::MAX, &mut |_, _| {}, None) {
                    Ok(n) => discarded += n as u64,
                    Err(Error::ShutDown { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(discarded)
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
        self.handle.check().is_err() || self.header().top.load(Ordering::Acquire) & LINK_MASK == 0
    }

    /// Whether the stack is full (approximate under concurrency; false once
    /// it was erased).
    pub fn is_full(&self) -> bool {
        self.handle.check().is_ok() && self.header().free.load(Ordering::Acquire) & LINK_MASK == 0
    }

    /// The capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
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

impl<T: Element> Stack<T> {
    fn new(raw: RawStack) -> Stack<T> {
        debug_assert_eq!(raw.elem_size, std::mem::size_of::<T>());
        Stack {
            raw,
            _t: PhantomData,
        }
    }

    payload::typed_ring_methods!("stack", "top");
}

/// How many attempts a blocking call makes (with a spin hint) before sleeping.
const SPINS_BEFORE_SLEEP: u32 = 200;

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    struct Model {
        buf: Vec<u64>,
    }

    // SAFETY: the model's memory is only touched through the stack protocol.
    unsafe impl Send for Model {}
    // SAFETY: as above.
    unsafe impl Sync for Model {}

    const CAP: u64 = 2;

    impl Model {
        fn new() -> Model {
            let bytes =
                std::mem::size_of::<StackHeader>() + 64 + CAP as usize * node_stride(8) as usize;
            let mut buf = vec![0u64; bytes / 8 + 1];
            let block = buf.as_mut_ptr().cast::<u8>();
            // SAFETY: init writes the header at offset 0 and the nodes at
            // STACK_HEADER_SIZE; we place the nodes after the (larger) loom
            // header instead, so write them by hand.
            unsafe {
                let stride = node_stride(8);
                block.cast::<StackHeader>().write(StackHeader {
                    kind: kind::STACK,
                    elem_size: 8,
                    capacity: CAP,
                    node_stride: stride,
                    nodes_offset: 0,
                    shutdown: AtomicU64::new(0),
                    reserved0: [0; 3],
                    top: AtomicU64::new(0),
                    not_empty: AtomicU32::new(0),
                    pop_waiters: AtomicU32::new(0),
                    reserved1: [0; 6],
                    free: AtomicU64::new(1),
                    not_full: AtomicU32::new(0),
                    push_waiters: AtomicU32::new(0),
                    reserved2: [0; 6],
                });
                for i in 0..CAP {
                    let next = if i + 1 < CAP { i as u32 + 2 } else { 0 };
                    block
                        .add(Self::nodes_offset() + (i * stride) as usize)
                        .cast::<StackNode>()
                        .write(StackNode {
                            next: AtomicU32::new(next),
                            depth: AtomicU32::new(0),
                        });
                }
            }
            Model { buf }
        }

        fn nodes_offset() -> usize {
            (std::mem::size_of::<StackHeader>() + 7) & !7
        }

        fn core(&self) -> StackCore<'_> {
            let block = self.buf.as_ptr() as *mut u8;
            // SAFETY: initialised in new.
            unsafe {
                StackCore::new(
                    &*block.cast::<StackHeader>(),
                    block.add(Self::nodes_offset()),
                    node_stride(8) as usize,
                    (*block.cast::<StackHeader>()).capacity,
                )
            }
        }

        fn push(&self, v: u64) -> bool {
            self.core()
                .push(&mut |p| unsafe { p.cast::<u64>().write_unaligned(v) })
                .unwrap()
                == Step::Done
        }

        fn pop(&self) -> Option<u64> {
            let mut out = 0;
            let step = self
                .core()
                .pop(&mut |p| out = unsafe { p.cast::<u64>().read_unaligned() })
                .unwrap();
            (step == Step::Done).then_some(out)
        }
    }

    impl Drop for Model {
        fn drop(&mut self) {
            let block = self.buf.as_mut_ptr().cast::<u8>();
            // SAFETY: drop the loom objects written in new, exactly once.
            unsafe {
                std::ptr::drop_in_place(block.cast::<StackHeader>());
                for i in 0..CAP {
                    std::ptr::drop_in_place(
                        block
                            .add(Self::nodes_offset() + (i * node_stride(8)) as usize)
                            .cast::<StackNode>(),
                    );
                }
            }
        }
    }

    /// Concurrent pushes and pops: no element lost or duplicated, no node
    /// lost (both lists intact afterwards), capacity respected.
    #[test]
    fn push_pop_race() {
        crate::sync::model(|| {
            let s = Arc::new(Model::new());
            assert!(s.push(1));
            let s2 = s.clone();
            let t = loom::thread::spawn(move || {
                let pushed = s2.push(2);
                let popped = s2.pop();
                (pushed, popped)
            });
            let mine = s.pop();
            let (pushed, theirs) = t.join().unwrap();
            assert!(pushed);
            let mut got: Vec<u64> = [mine, theirs].into_iter().flatten().collect();
            while let Some(v) = s.pop() {
                got.push(v);
            }
            got.sort();
            assert_eq!(got, vec![1, 2]);
            assert_eq!(s.core().census().unwrap(), (0, CAP));
        });
    }

    /// Two pops racing on a two-element stack (the ABA-prone case), then a
    /// full stack refusing a push.
    #[test]
    fn pop_pop_then_full() {
        crate::sync::model(|| {
            let s = Arc::new(Model::new());
            assert!(s.push(1));
            assert!(s.push(2));
            assert!(!s.push(3));
            let s2 = s.clone();
            let t = loom::thread::spawn(move || {
                let v = s2.pop();
                if let Some(v) = v {
                    assert!(s2.push(v + 10));
                }
                v
            });
            let mine = s.pop();
            let theirs = t.join().unwrap();
            assert!(mine.is_some() && theirs.is_some());
            assert_ne!(mine, theirs);
            let (on_stack, free) = s.core().census().unwrap();
            assert_eq!(on_stack + free, CAP);
        });
    }
}
