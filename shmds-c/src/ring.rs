//! Queues and stacks: the same C functions for both kinds, written once.
//!
//! `ring_api!` writes the `shmds_queue_*` or `shmds_stack_*` functions
//! over the generic helpers below, and also keeps their text in a constant
//! (`QUEUE_DECLS`, `STACK_DECLS`, test builds only): cbindgen does not
//! expand macros, so the header generator hands it that text as a source
//! file of its own, and the header declares exactly what is compiled.

use super::{
    call, handle, make_handle, miss, release, timeout, Fail, Named, Need, ShmdsQueue, ShmdsSegment,
    ShmdsStack, Stated, SHMDS_E_EMPTY, SHMDS_E_FULL, SHMDS_E_TIMEOUT, SHMDS_OK,
};
use crate::core_lib;
use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

/// What the C functions need of a queue or a stack, and of its handle type.
trait Ring: Sized {
    /// The structure in shared memory (`RawQueue`, `RawStack`).
    type Raw;
    /// "queue" or "stack", for messages.
    const KIND: &'static str;
    fn wrap(raw: Self::Raw) -> Self;
    fn open(seg: &core_lib::Segment, name: &str) -> core_lib::Result<Self::Raw>;
    fn create(
        seg: &core_lib::Segment,
        name: &str,
        descriptor: &str,
        capacity: u64,
        open_existing: bool,
    ) -> core_lib::Result<Self::Raw>;
    fn elem_size(&self) -> usize;
    fn type_descriptor(&self) -> &str;
    fn name(&self) -> &str;
    fn len(&self) -> usize;
    fn capacity(&self) -> u64;
    fn check(&self) -> core_lib::Result<()>;
    fn try_push(&self, elem: &[u8]) -> core_lib::Result<bool>;
    fn try_pop(&self, out: &mut [u8]) -> core_lib::Result<bool>;
    fn push_slice(&self, elems: &[u8], t: Option<Duration>) -> core_lib::Result<usize>;
    fn pop_into(&self, out: &mut [u8], t: Option<Duration>) -> core_lib::Result<usize>;
    fn try_push_slice(&self, elems: &[u8]) -> core_lib::Result<usize>;
    fn try_pop_into(&self, out: &mut [u8]) -> core_lib::Result<usize>;
    fn shutdown(&self, immediate: bool) -> core_lib::Result<usize>;
    fn is_shutdown(&self) -> bool;
}

macro_rules! impl_ring {
    ($handle:ident($raw:ty), $kind:literal, $open:ident, $create:ident, $open_or_create:ident) => {
        impl Ring for $handle {
            type Raw = $raw;
            const KIND: &'static str = $kind;
            fn wrap(raw: $raw) -> Self {
                $handle(raw)
            }
            fn open(seg: &core_lib::Segment, name: &str) -> core_lib::Result<$raw> {
                seg.$open(name)
            }
            fn create(
                seg: &core_lib::Segment,
                name: &str,
                descriptor: &str,
                capacity: u64,
                open_existing: bool,
            ) -> core_lib::Result<$raw> {
                if open_existing {
                    seg.$open_or_create(name, descriptor, crate::count(capacity))
                } else {
                    seg.$create(name, descriptor, crate::count(capacity))
                }
            }
            fn elem_size(&self) -> usize {
                self.0.elem_size()
            }
            fn type_descriptor(&self) -> &str {
                self.0.type_descriptor()
            }
            fn name(&self) -> &str {
                self.0.name()
            }
            fn len(&self) -> usize {
                self.0.len()
            }
            fn capacity(&self) -> u64 {
                self.0.capacity() as u64
            }
            fn check(&self) -> core_lib::Result<()> {
                self.0.check()
            }
            fn try_push(&self, elem: &[u8]) -> core_lib::Result<bool> {
                self.0.try_push(elem)
            }
            fn try_pop(&self, out: &mut [u8]) -> core_lib::Result<bool> {
                self.0.try_pop(out)
            }
            fn push_slice(&self, elems: &[u8], t: Option<Duration>) -> core_lib::Result<usize> {
                self.0.push_slice(elems, t, None)
            }
            fn pop_into(&self, out: &mut [u8], t: Option<Duration>) -> core_lib::Result<usize> {
                self.0.pop_into(out, t, None)
            }
            fn try_push_slice(&self, elems: &[u8]) -> core_lib::Result<usize> {
                self.0.try_push_slice(elems)
            }
            fn try_pop_into(&self, out: &mut [u8]) -> core_lib::Result<usize> {
                self.0.try_pop_into(out)
            }
            fn shutdown(&self, immediate: bool) -> core_lib::Result<usize> {
                self.0.shutdown(immediate)
            }
            fn is_shutdown(&self) -> bool {
                self.0.is_shutdown()
            }
        }
    };
}

impl_ring!(
    ShmdsQueue(core_lib::RawQueue),
    "queue",
    open_queue_raw,
    create_queue_raw,
    open_or_create_queue_raw
);
impl_ring!(
    ShmdsStack(core_lib::RawStack),
    "stack",
    open_stack_raw,
    create_stack_raw,
    open_or_create_stack_raw
);

/// `Err` unless `ring` holds what the caller stated.
fn check<R: Ring>(ring: R, stated: &Stated<'_>) -> Result<R, Fail> {
    let owner = Named(R::KIND, ring.name());
    stated.matches(&owner, ring.elem_size(), ring.type_descriptor())?;
    Ok(ring)
}

unsafe fn open<R: Ring>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    elem_size: usize,
    descriptor: *const c_char,
    out: *mut *mut R,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let stated = Stated::new("elements", elem_size, descriptor)?;
            check(R::wrap(R::open(seg, name)?), &stated)
        })
    }
}

unsafe fn create<R: Ring>(
    seg: *const ShmdsSegment,
    name: *const c_char,
    elem_size: usize,
    descriptor: *const c_char,
    capacity: u64,
    open_existing: bool,
    out: *mut *mut R,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        make_handle(seg, name, out, |seg, name| {
            let stated = Stated::new("elements", elem_size, descriptor)?;
            let raw = R::create(seg, name, stated.required()?, capacity, open_existing)?;
            check(R::wrap(raw), &stated)
        })
    }
}

/// Run `body` on the ring behind `ring` and the size check of its elements.
unsafe fn with_ring<R: Ring>(
    ring: *const R,
    body: impl FnOnce(&R, &Need<'_>) -> Result<c_int, Fail>,
) -> c_int {
    call(|| {
        // SAFETY: pointer rules of the header.
        let r = unsafe { handle(ring)? };
        let owner = Named(R::KIND, r.name());
        let need = Need {
            unit: "elements",
            owner: &owner,
            want: r.elem_size(),
        };
        body(r, &need)
    })
}

unsafe fn push<R: Ring>(
    ring: *const R,
    elem: *const c_void,
    size: usize,
    wait: Option<i64>,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, need| {
            let elem = need.input(elem, size)?;
            let Some(ns) = wait else {
                return Ok(match r.try_push(elem)? {
                    true => SHMDS_OK,
                    false => miss(SHMDS_E_FULL, c"full: no room now (nothing was pushed)"),
                });
            };
            match r.push_slice(elem, timeout(ns))? {
                1 => Ok(SHMDS_OK),
                _ => Err(Fail(
                    SHMDS_E_TIMEOUT,
                    format!("timed out waiting for room in {} {:?}", R::KIND, r.name()),
                )),
            }
        })
    }
}

unsafe fn pop<R: Ring>(ring: *const R, out: *mut c_void, size: usize, wait: Option<i64>) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, need| {
            let out = need.output(out, size)?;
            match wait {
                None => {
                    if !r.try_pop(out)? {
                        return Ok(miss(SHMDS_E_EMPTY, c"empty: nothing to pop now"));
                    }
                }
                Some(ns) => {
                    r.pop_into(out, timeout(ns))?;
                }
            }
            Ok(SHMDS_OK)
        })
    }
}

/// Store `n` in `*count` if the caller gave a place for it.
unsafe fn report(count: *mut usize, n: usize) {
    if !count.is_null() {
        // SAFETY: a non-NULL `count` points to a writable size_t (header contract).
        unsafe { count.write(n) }
    }
}

unsafe fn push_many<R: Ring>(
    ring: *const R,
    elems: *const c_void,
    size: usize,
    timeout_ns: i64,
    pushed: *mut usize,
) -> c_int {
    // SAFETY: a non-NULL `pushed` is writable (header contract).
    unsafe { report(pushed, 0) };
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, need| {
            let elems = need.many(elems, size, "input")?;
            let n = elems.len() / r.elem_size().max(1);
            let done = if timeout_ns == 0 {
                r.try_push_slice(elems)?
            } else {
                r.push_slice(elems, timeout(timeout_ns))?
            };
            report(pushed, done);
            Ok(match (done == n, timeout_ns == 0) {
                (true, _) => SHMDS_OK,
                (false, true) => miss(
                    SHMDS_E_FULL,
                    c"full: not every element fit now (*pushed says how many did)",
                ),
                (false, false) => miss(
                    SHMDS_E_TIMEOUT,
                    c"timed out waiting for room (*pushed says how many were pushed)",
                ),
            })
        })
    }
}

unsafe fn pop_many<R: Ring>(
    ring: *const R,
    out: *mut c_void,
    size: usize,
    timeout_ns: i64,
    popped: *mut usize,
) -> c_int {
    // SAFETY: a non-NULL `popped` is writable (header contract).
    unsafe { report(popped, 0) };
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, need| {
            let out = need.many_mut(out, size)?;
            if out.is_empty() {
                return Ok(SHMDS_OK);
            }
            let done = if timeout_ns == 0 {
                r.try_pop_into(out)?
            } else {
                r.pop_into(out, timeout(timeout_ns))?
            };
            report(popped, done);
            Ok(match done {
                0 => miss(SHMDS_E_EMPTY, c"empty: nothing to pop now"),
                _ => SHMDS_OK,
            })
        })
    }
}

/// Copy the element type descriptor, NUL-terminated, into `buf`.
unsafe fn descriptor<R: Ring>(
    ring: *const R,
    buf: *mut c_char,
    buf_size: usize,
    len: *mut usize,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, _| {
            super::give_text(r.type_descriptor(), buf, buf_size, len)
        })
    }
}

/// Shut the ring down; the number of elements discarded to `*discarded`.
unsafe fn shutdown<R: Ring>(ring: *const R, immediate: bool, discarded: *mut usize) -> c_int {
    // SAFETY: a non-NULL `discarded` is writable (header contract).
    unsafe { report(discarded, 0) };
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(ring, |r, _| {
            let n = r.shutdown(immediate)?;
            report(discarded, n);
            Ok(SHMDS_OK)
        })
    }
}

/// A getter: `get(ring)`, or 0 for a NULL handle.
unsafe fn attribute<R: Ring, T: Default>(ring: *const R, get: impl FnOnce(&R) -> T) -> T {
    // SAFETY: pointer rules of the header.
    unsafe { super::attribute(ring, get) }
}

/// The C functions of one kind (`H`: its handle type), named by the caller.
macro_rules! ring_api {
    ($decls:ident, $H:ident: $open:ident, $create:ident, $close:ident, $try_push:ident,
     $push:ident, $try_pop:ident, $pop:ident, $push_many:ident, $pop_many:ident, $len:ident,
     $capacity:ident, $elem_size:ident, $descriptor:ident, $check:ident, $shutdown:ident,
     $is_shut_down:ident) => {
        c_items_with_text! { $decls;
            /// Open the existing structure `name`, which must hold elements
            /// of `elem_size` bytes and, unless `descriptor` is NULL, of that
            /// type (else SHMDS_E_TYPE).
            #[no_mangle]
            pub unsafe extern "C" fn $open(
                seg: *const ShmdsSegment,
                name: *const c_char,
                elem_size: usize,
                descriptor: *const c_char,
                out: *mut *mut $H,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { open(seg, name, elem_size, descriptor, out) }
            }

            /// Create the structure `name` of `capacity` elements of type
            /// `descriptor`, each `elem_size` bytes (the size the descriptor
            /// describes); with `open_existing`, open it instead if it exists
            /// (same type required, SHMDS_E_SHAPE for another capacity).
            #[no_mangle]
            pub unsafe extern "C" fn $create(
                seg: *const ShmdsSegment,
                name: *const c_char,
                elem_size: usize,
                descriptor: *const c_char,
                capacity: u64,
                open_existing: bool,
                out: *mut *mut $H,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { create(seg, name, elem_size, descriptor, capacity, open_existing, out) }
            }

            /// Release the handle.
            #[no_mangle]
            pub unsafe extern "C" fn $close(handle: *mut $H) {
                // SAFETY: a handle from this library, closed once (header contract).
                unsafe { release(handle) }
            }

            /// Push one element, `elem` of `elem_size` bytes (exactly the
            /// element size), if there is room, else SHMDS_E_FULL. Never
            /// sleeps.
            #[no_mangle]
            pub unsafe extern "C" fn $try_push(
                handle: *const $H,
                elem: *const c_void,
                elem_size: usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { push(handle, elem, elem_size, None) }
            }

            /// Push one element, waiting for room up to `timeout_ns`
            /// (negative: forever); SHMDS_E_TIMEOUT when it passes.
            #[no_mangle]
            pub unsafe extern "C" fn $push(
                handle: *const $H,
                elem: *const c_void,
                elem_size: usize,
                timeout_ns: i64,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { push(handle, elem, elem_size, Some(timeout_ns)) }
            }

            /// Pop one element (a queue's oldest, a stack's top) into `out`,
            /// a buffer of `out_size` bytes (exactly the element size), else
            /// SHMDS_E_EMPTY. Never sleeps.
            #[no_mangle]
            pub unsafe extern "C" fn $try_pop(
                handle: *const $H,
                out: *mut c_void,
                out_size: usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { pop(handle, out, out_size, None) }
            }

            /// Pop one element into `out` (`out_size` bytes, exactly the
            /// element size), waiting up to `timeout_ns` (negative: forever);
            /// SHMDS_E_TIMEOUT when it passes.
            #[no_mangle]
            pub unsafe extern "C" fn $pop(
                handle: *const $H,
                out: *mut c_void,
                out_size: usize,
                timeout_ns: i64,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { pop(handle, out, out_size, Some(timeout_ns)) }
            }

            /// Push the elements packed in `elems` (`elems_size` bytes, a
            /// whole number of elements), in order. `timeout_ns` 0: push
            /// what fits now, never sleeping (SHMDS_E_FULL if not all
            /// did); else wait for room as needed, up to `timeout_ns`
            /// (negative: forever; SHMDS_E_TIMEOUT if it passed first).
            /// How many were pushed goes to `*pushed` (if not NULL) in
            /// every case. A run of free slots is claimed at once, so
            /// this is much faster than a push per element.
            #[no_mangle]
            pub unsafe extern "C" fn $push_many(
                handle: *const $H,
                elems: *const c_void,
                elems_size: usize,
                timeout_ns: i64,
                pushed: *mut usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { push_many(handle, elems, elems_size, timeout_ns, pushed) }
            }

            /// Pop up to `out_size / elem_size` elements (a queue's oldest,
            /// a stack's top first) into `out` (`out_size` bytes, a whole
            /// number of elements). `timeout_ns` 0: take what is there now,
            /// never sleeping (SHMDS_E_EMPTY if nothing); else wait for the
            /// first element up to `timeout_ns` (negative: forever;
            /// SHMDS_E_TIMEOUT), then take what is there. How many were
            /// popped goes to `*popped` (if not NULL).
            #[no_mangle]
            pub unsafe extern "C" fn $pop_many(
                handle: *const $H,
                out: *mut c_void,
                out_size: usize,
                timeout_ns: i64,
                popped: *mut usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { pop_many(handle, out, out_size, timeout_ns, popped) }
            }

            /// Copy the element type descriptor (e.g. "<Q"), NUL-terminated,
            /// into `buf` (`buf_size` bytes); its length without the NUL
            /// goes to `*len` if not NULL. SHMDS_E_BUFFER_TOO_SMALL if it
            /// does not fit (nothing is written; `*len` says what is needed).
            #[no_mangle]
            pub unsafe extern "C" fn $descriptor(
                handle: *const $H,
                buf: *mut c_char,
                buf_size: usize,
                len: *mut usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { descriptor(handle, buf, buf_size, len) }
            }

            /// Number of elements (approximate under concurrency; 0 for NULL).
            #[no_mangle]
            pub unsafe extern "C" fn $len(handle: *const $H) -> usize {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { attribute(handle, Ring::len) }
            }

            /// The capacity (0 for NULL).
            #[no_mangle]
            pub unsafe extern "C" fn $capacity(handle: *const $H) -> u64 {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { attribute(handle, Ring::capacity) }
            }

            /// Size of one element in bytes (0 for NULL).
            #[no_mangle]
            pub unsafe extern "C" fn $elem_size(handle: *const $H) -> usize {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { attribute(handle, Ring::elem_size) }
            }

            /// SHMDS_OK while the structure exists; SHMDS_E_STALE once it was
            /// erased (the length and capacity getters of an erased
            /// structure describe its old block: check before trusting them).
            #[no_mangle]
            pub unsafe extern "C" fn $check(handle: *const $H) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { super::liveness(handle, Ring::check) }
            }

            /// Shut the structure down for every process: pushes fail with
            /// SHMDS_E_SHUT_DOWN from now on, pops take what is left and
            /// then fail with it; every waiter wakes. With `immediate`, the
            /// elements still there are discarded; how many goes to
            /// `*discarded` (if not NULL). Shutting down twice is harmless;
            /// there is no way back short of erasing and creating it again.
            #[no_mangle]
            pub unsafe extern "C" fn $shutdown(
                handle: *const $H,
                immediate: bool,
                discarded: *mut usize,
            ) -> c_int {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { shutdown(handle, immediate, discarded) }
            }

            /// Whether the structure was shut down, by any process (false
            /// for NULL).
            #[no_mangle]
            pub unsafe extern "C" fn $is_shut_down(handle: *const $H) -> bool {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { attribute(handle, Ring::is_shutdown) }
            }
        }
    };
}

ring_api!(QUEUE_DECLS, ShmdsQueue: shmds_queue_open, shmds_queue_create, shmds_queue_close,
    shmds_queue_try_push, shmds_queue_push, shmds_queue_try_pop, shmds_queue_pop,
    shmds_queue_push_many, shmds_queue_pop_many, shmds_queue_len, shmds_queue_capacity,
    shmds_queue_elem_size, shmds_queue_descriptor, shmds_queue_check, shmds_queue_shutdown,
    shmds_queue_is_shut_down);
ring_api!(STACK_DECLS, ShmdsStack: shmds_stack_open, shmds_stack_create, shmds_stack_close,
    shmds_stack_try_push, shmds_stack_push, shmds_stack_try_pop, shmds_stack_pop,
    shmds_stack_push_many, shmds_stack_pop_many, shmds_stack_len, shmds_stack_capacity,
    shmds_stack_elem_size, shmds_stack_descriptor, shmds_stack_check, shmds_stack_shutdown,
    shmds_stack_is_shut_down);

// ------------------------------------------------------------- queue tasks
// (a queue counts tasks, as Python's JoinableQueue; a stack does not)

/// Pop one element into `out` (`out_size` bytes, exactly the element size)
/// and count it as an unfinished task, to be marked done with
/// `shmds_queue_task_done` (see `shmds_queue_join`). `timeout_ns` 0: only if
/// one is there now (SHMDS_E_EMPTY); else wait up to `timeout_ns`
/// (negative: forever; SHMDS_E_TIMEOUT).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_pop_task(
    queue: *const ShmdsQueue,
    out: *mut c_void,
    out_size: usize,
    timeout_ns: i64,
) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(queue, |q, need| {
            let out = need.output(out, out_size)?;
            if timeout_ns == 0 {
                return Ok(match q.0.try_pop_tasks_into(out)? {
                    0 => miss(SHMDS_E_EMPTY, c"empty: nothing to pop now"),
                    _ => SHMDS_OK,
                });
            }
            q.0.pop_tasks_into(out, timeout(timeout_ns), None)?;
            Ok(SHMDS_OK)
        })
    }
}

/// Mark one task taken by `shmds_queue_pop_task` (in any process) as done.
/// SHMDS_E_INVALID if no task is unfinished.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_task_done(queue: *const ShmdsQueue) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe { with_ring(queue, |q, _| Ok(q.0.task_done().map(|()| SHMDS_OK)?)) }
}

/// Wait until the queue is empty and every task taken from it was marked
/// done, up to `timeout_ns` (negative: forever): SHMDS_OK, or
/// SHMDS_E_TIMEOUT. Elements taken by the other pops count as done at once.
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_join(queue: *const ShmdsQueue, timeout_ns: i64) -> c_int {
    // SAFETY: pointer rules of the header.
    unsafe {
        with_ring(queue, |q, _| {
            Ok(match q.0.join(timeout(timeout_ns), None)? {
                true => SHMDS_OK,
                false => miss(
                    SHMDS_E_TIMEOUT,
                    c"timed out waiting for the tasks to be done",
                ),
            })
        })
    }
}

/// Tasks taken by `shmds_queue_pop_task` and not yet marked done (0 for
/// NULL).
#[no_mangle]
pub unsafe extern "C" fn shmds_queue_unfinished_tasks(queue: *const ShmdsQueue) -> u64 {
    // SAFETY: the header's pointer rules, passed on.
    unsafe { attribute(queue, |q| q.0.unfinished_tasks()) }
}
