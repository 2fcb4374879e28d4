//! Coordination primitives: locks, rwlocks, conditions, semaphores,
//! barriers, events, latches and once cells, named entries of a segment
//! shared by processes (in any language).
//!
//! The C calls hold no guard: a lock taken by `shmds_lock_acquire` stays
//! held (by this process: any of its threads may release it) until
//! `shmds_lock_release`, or until the process dies, when the next taker gets
//! `SHMDS_E_OWNER_DEAD` *with the lock*. The same goes for rwlocks, a
//! condition's lock, a semaphore's permits (which a dead process does not
//! give back) and a once's run.
//!
//! The create, open and close calls of every kind come from one template
//! (`primitive_handles!`), whose text goes to the header generator as the
//! ring and message calls' do (see `ring.rs`); the operations are written
//! out below.

use super::{
    attribute, call, handle, make_handle, put, release, timeout, Fail, ShmdsSegment, SHMDS_OK,
};
use super::{SHMDS_E_OWNER_DEAD, SHMDS_E_TIMEOUT};
use crate::core_lib;
use core_lib::{LockError, TryLockResult};
use std::ffi::{c_char, c_int};

/// The kinds of the coordination primitives, as in `ShmdsEntryInfo.kind`:
/// a robust lock.
pub const SHMDS_KIND_LOCK: u32 = 8;
/// A readers-writer lock.
pub const SHMDS_KIND_RWLOCK: u32 = 9;
/// A condition variable with its own lock.
pub const SHMDS_KIND_CONDITION: u32 = 10;
/// A counting semaphore (bounded or not).
pub const SHMDS_KIND_SEMAPHORE: u32 = 11;
/// A barrier.
pub const SHMDS_KIND_BARRIER: u32 = 12;
/// An event flag.
pub const SHMDS_KIND_EVENT: u32 = 13;
/// A count-down latch.
pub const SHMDS_KIND_LATCH: u32 = 14;
/// A run-once cell.
pub const SHMDS_KIND_ONCE: u32 = 15;

const _: () = {
    use core_lib::layout::kind;
    assert!(
        SHMDS_KIND_LOCK == kind::LOCK
            && SHMDS_KIND_RWLOCK == kind::RWLOCK
            && SHMDS_KIND_CONDITION == kind::CONDITION
            && SHMDS_KIND_SEMAPHORE == kind::SEMAPHORE
            && SHMDS_KIND_BARRIER == kind::BARRIER
            && SHMDS_KIND_EVENT == kind::EVENT
            && SHMDS_KIND_LATCH == kind::LATCH
            && SHMDS_KIND_ONCE == kind::ONCE
    );
};

/// A robust lock shared by processes: held by one process at a time, and
/// taken over (`SHMDS_E_OWNER_DEAD`) when its holder dies holding it. Not
/// reentrant: a thread that acquires it twice waits for itself.
pub struct ShmdsLock(core_lib::Lock);
/// A readers-writer lock: many readers (each process claims one of its
/// reader slots) or one writer; a waiting writer keeps new readers out.
pub struct ShmdsRwLock(core_lib::RwLock);
/// A condition variable with its own robust lock (as Python's
/// `threading.Condition`): wait and notify with the lock held.
pub struct ShmdsCondition(core_lib::Condition);
/// A counting semaphore; a bounded one refuses releases past its initial
/// value.
pub struct ShmdsSemaphore(core_lib::Semaphore);
/// A reusable barrier for a fixed number of parties.
pub struct ShmdsBarrier(core_lib::Barrier);
/// An event flag that waiters wait for (as Python's `threading.Event`).
pub struct ShmdsEvent(core_lib::Event);
/// A count-down latch: waiters wait until its count reaches 0, then it
/// stays open.
pub struct ShmdsLatch(core_lib::Latch);
/// A run-once cell: one initialiser run among all processes; a run whose
/// process dies, or that finishes undone, is left to the next caller.
pub struct ShmdsOnce(core_lib::Once);

/// Write the create and open-or-create calls (`make`) and the open and
/// close calls (`kind`) of the primitives, from one template each; their
/// text goes to `$decls` for the header generator.
macro_rules! primitive_handles {
    ($decls:ident;
     $( $(#[$doc:meta])* make $make:ident = $method:ident($($arg:ident: $T:ty),*) -> $MH:ident; )*
     $( kind $H:ident: open $open:ident = $omethod:ident, close $close:ident; )*
    ) => {
        c_items_with_text! { $decls;
            $(
                $(#[$doc])*
                #[no_mangle]
                pub unsafe extern "C" fn $make(
                    seg: *const ShmdsSegment,
                    name: *const c_char,
                    $($arg: $T,)*
                    out: *mut *mut $MH,
                ) -> c_int {
                    // SAFETY: the header's pointer rules, passed on.
                    unsafe { make_handle(seg, name, out, |s, n| Ok($MH(s.$method(n $(, $arg)*)?))) }
                }
            )*
            $(
                /// Open the existing primitive `name` of this kind
                /// (SHMDS_E_NOT_FOUND if there is none, SHMDS_E_TYPE if it is
                /// of another kind).
                #[no_mangle]
                pub unsafe extern "C" fn $open(
                    seg: *const ShmdsSegment,
                    name: *const c_char,
                    out: *mut *mut $H,
                ) -> c_int {
                    // SAFETY: the header's pointer rules, passed on.
                    unsafe { make_handle(seg, name, out, |s, n| Ok($H(s.$omethod(n)?))) }
                }

                /// Release the handle. What this process holds stays held
                /// (release it through another handle; when the process
                /// exits, the next taker gets SHMDS_E_OWNER_DEAD).
                #[no_mangle]
                pub unsafe extern "C" fn $close(handle: *mut $H) {
                    // SAFETY: a handle from this library, closed once (header contract).
                    unsafe { release(handle) }
                }
            )*
        }
    };
}

primitive_handles! { PRIMITIVE_HANDLES;
    /// Create the lock `name`, free (SHMDS_E_EXISTS if `name` exists).
    make shmds_lock_create = create_lock() -> ShmdsLock;
    /// Open the lock `name`, creating it if it does not exist.
    make shmds_lock_open_or_create = open_or_create_lock() -> ShmdsLock;
    /// Create the rwlock `name` with room for `reader_slots` reading
    /// processes at once (64 is a good start; at most 65536).
    make shmds_rwlock_create = create_rwlock(reader_slots: u32) -> ShmdsRwLock;
    /// Open the rwlock `name`, creating it if it does not exist
    /// (SHMDS_E_SHAPE if it has another number of reader slots).
    make shmds_rwlock_open_or_create = open_or_create_rwlock(reader_slots: u32) -> ShmdsRwLock;
    /// Create the condition `name` (its lock free).
    make shmds_condition_create = create_condition() -> ShmdsCondition;
    /// Open the condition `name`, creating it if it does not exist.
    make shmds_condition_open_or_create = open_or_create_condition() -> ShmdsCondition;
    /// Create the semaphore `name` holding `value` permits.
    make shmds_semaphore_create = create_semaphore(value: u32) -> ShmdsSemaphore;
    /// Open the semaphore `name`, creating it with `value` permits if it
    /// does not exist (SHMDS_E_SHAPE if it was created with another value,
    /// SHMDS_E_TYPE if it is bounded).
    make shmds_semaphore_open_or_create = open_or_create_semaphore(value: u32) -> ShmdsSemaphore;
    /// Create the bounded semaphore `name` holding `value` permits: a
    /// release past `value` fails with SHMDS_E_TOO_MANY_RELEASES (as
    /// Python's `threading.BoundedSemaphore`). Open it with
    /// `shmds_semaphore_open`.
    make shmds_bounded_semaphore_create = create_bounded_semaphore(value: u32) -> ShmdsSemaphore;
    /// Open the bounded semaphore `name`, creating it with `value` permits
    /// if it does not exist (SHMDS_E_TYPE if it is not bounded).
    make shmds_bounded_semaphore_open_or_create =
        open_or_create_bounded_semaphore(value: u32) -> ShmdsSemaphore;
    /// Create the barrier `name` for `parties` parties.
    make shmds_barrier_create = create_barrier(parties: u32) -> ShmdsBarrier;
    /// Open the barrier `name`, creating it if it does not exist
    /// (SHMDS_E_SHAPE if it is for another number of parties).
    make shmds_barrier_open_or_create = open_or_create_barrier(parties: u32) -> ShmdsBarrier;
    /// Create the event `name`, clear.
    make shmds_event_create = create_event() -> ShmdsEvent;
    /// Open the event `name`, creating it (clear) if it does not exist.
    make shmds_event_open_or_create = open_or_create_event() -> ShmdsEvent;
    /// Create the latch `name`, which opens after `count` count-downs.
    make shmds_latch_create = create_latch(count: u32) -> ShmdsLatch;
    /// Open the latch `name`, creating it if it does not exist
    /// (SHMDS_E_SHAPE if it was created with another count).
    make shmds_latch_open_or_create = open_or_create_latch(count: u32) -> ShmdsLatch;
    /// Create the once cell `name`, not run.
    make shmds_once_create = create_once() -> ShmdsOnce;
    /// Open the once cell `name`, creating it if it does not exist.
    make shmds_once_open_or_create = open_or_create_once() -> ShmdsOnce;
    kind ShmdsLock: open shmds_lock_open = open_lock, close shmds_lock_close;
    kind ShmdsRwLock: open shmds_rwlock_open = open_rwlock, close shmds_rwlock_close;
    kind ShmdsCondition: open shmds_condition_open = open_condition, close shmds_condition_close;
    kind ShmdsSemaphore: open shmds_semaphore_open = open_semaphore, close shmds_semaphore_close;
    kind ShmdsBarrier: open shmds_barrier_open = open_barrier, close shmds_barrier_close;
    kind ShmdsEvent: open shmds_event_open = open_event, close shmds_event_close;
    kind ShmdsLatch: open shmds_latch_open = open_latch, close shmds_latch_close;
    kind ShmdsOnce: open shmds_once_open = open_once, close shmds_once_close;
}

// ------------------------------------------------------------- helpers

/// Run `body` on the primitive behind the handle `p`.
unsafe fn with<T>(p: *const T, body: impl FnOnce(&T) -> Result<c_int, Fail>) -> c_int {
    call(|| {
        // SAFETY: NULL or a live handle (header contract).
        body(unsafe { handle(p)? })
    })
}

/// What an action returns: nothing, or a result whose value is dropped.
trait Done {
    fn done(self) -> core_lib::Result<()>;
}

impl Done for () {
    fn done(self) -> core_lib::Result<()> {
        Ok(())
    }
}

impl<T> Done for core_lib::Result<T> {
    fn done(self) -> core_lib::Result<()> {
        self.map(drop)
    }
}

/// Run `action` on the primitive behind `p`: SHMDS_OK, or its error.
unsafe fn act<T, D: Done>(p: *const T, action: impl FnOnce(&T) -> D) -> c_int {
    // SAFETY: the header's pointer rules, passed on.
    unsafe {
        with(p, |t| {
            action(t).done()?;
            Ok(SHMDS_OK)
        })
    }
}

/// SHMDS_E_TIMEOUT, with its message: "timed out waiting for lock "x"".
fn timed_out(what: &str, name: &str) -> Fail {
    Fail(
        SHMDS_E_TIMEOUT,
        format!("timed out waiting for {what} {name:?}"),
    )
}

/// SHMDS_E_OWNER_DEAD, with its message; the caller holds `what` now.
fn owner_dead(what: &str, name: &str, pid: u32) -> Fail {
    Fail(
        SHMDS_E_OWNER_DEAD,
        format!(
            "process {pid} died holding {what} {name:?}: this process holds it now, but what \
             it guarded may be half-updated (repair or check it, then release as usual)"
        ),
    )
}

/// The C result of a lock-like acquire: the guard is kept held (`keep`,
/// a guard's `leak`) on SHMDS_OK and on SHMDS_E_OWNER_DEAD.
fn taken<G>(
    what: &str,
    name: &str,
    result: TryLockResult<G>,
    keep: impl FnOnce(G),
) -> Result<c_int, Fail> {
    match result {
        Ok(Some(guard)) => {
            keep(guard);
            Ok(SHMDS_OK)
        }
        Ok(None) => Err(timed_out(what, name)),
        Err(LockError::OwnerDied(died)) => {
            let pid = died.pid();
            keep(died.into_guard());
            Err(owner_dead(what, name, pid))
        }
        Err(LockError::Failed(e)) => Err(e.into()),
    }
}

/// SHMDS_OK if a wait ended as hoped (`ok`), else SHMDS_E_TIMEOUT.
fn waited(ok: bool, what: &str, name: &str) -> Result<c_int, Fail> {
    if ok {
        Ok(SHMDS_OK)
    } else {
        Err(timed_out(what, name))
    }
}

/// Who holds `lock`: 1 and the pid and thread (0: not recorded), or 0 and
/// zeros when it is free.
unsafe fn holder(lock: &ShmdsLock, pid: *mut u32, tid: *mut u32) -> Result<c_int, Fail> {
    let holder = lock.0.holder();
    let (p, t) = holder.unwrap_or((0, None));
    // SAFETY: NULL or writable (header contract).
    unsafe {
        put(pid, p);
        put(tid, t.unwrap_or(0));
    }
    Ok(c_int::from(holder.is_some()))
}

/// The outcome of a condition wait, with the lock held again.
fn condition_waited(c: &ShmdsCondition, timeout_ns: i64) -> Result<c_int, Fail> {
    let name = c.0.name();
    match c.0.wait_held(timeout(timeout_ns), None)? {
        (_, Some(pid)) => Err(owner_dead("condition", name, pid)),
        (notified, None) => waited(notified, "a notify of condition", name),
    }
}

/// A permit taken and kept, or SHMDS_E_TIMEOUT.
fn permit(s: &ShmdsSemaphore, timeout_ns: i64) -> Result<c_int, Fail> {
    match s.0.acquire_interruptible(timeout(timeout_ns), None)? {
        Some(permit) => {
            permit.forget();
            Ok(SHMDS_OK)
        }
        None => Err(timed_out("a permit of semaphore", s.0.name())),
    }
}

/// The barrier passed: SHMDS_OK and the arrival index in `*index`.
unsafe fn passed(b: &ShmdsBarrier, timeout_ns: i64, index: *mut u32) -> Result<c_int, Fail> {
    let r = b.0.wait_interruptible(timeout(timeout_ns), None)?;
    // SAFETY: NULL or writable (header contract).
    unsafe { put(index, r.index()) };
    Ok(SHMDS_OK)
}

/// 1 (and the run kept going) if this caller runs the initialiser, 0 if
/// it has run.
fn run_begun(o: &ShmdsOnce, timeout_ns: i64) -> Result<c_int, Fail> {
    Ok(match o.0.begin(timeout(timeout_ns), None)? {
        Some(run) => {
            run.leak();
            1
        }
        None => 0,
    })
}

/// Write C calls on one primitive's handle: each `fn name(h: H, args) ->
/// R = helper(closure);` becomes `name(const H *h, args)`, which returns
/// `helper(h, closure)` (`with`, `act` or `attribute`, which turn a NULL
/// handle into SHMDS_E_INVALID or 0). Their text goes to `$decls`.
macro_rules! handle_calls {
    ($decls:ident; $(
        $(#[$doc:meta])*
        fn $f:ident($p:ident: $H:ident $(, $a:ident: $A:ty)*) -> $R:ty = $helper:ident($body:expr);
    )*) => {
        c_items_with_text! { $decls; $(
            $(#[$doc])*
            #[no_mangle]
            pub unsafe extern "C" fn $f($p: *const $H $(, $a: $A)*) -> $R {
                // SAFETY: the header's pointer rules, passed on.
                unsafe { $helper($p, $body) }
            }
        )* }
    };
}

handle_calls! { PRIMITIVE_CALLS;
    // ------------------------------------------------------------- locks

    /// Take the lock, waiting up to `timeout_ns` (negative: forever; 0: try
    /// once). SHMDS_OK: held. SHMDS_E_OWNER_DEAD: held too, but its previous
    /// holder died holding it, so what it guards may be half-updated.
    /// SHMDS_E_TIMEOUT: another process holds it.
    fn shmds_lock_acquire(lock: ShmdsLock, timeout_ns: i64) -> c_int = with(|l| {
        let r = l.0.lock_interruptible(timeout(timeout_ns), None);
        taken("lock", l.0.name(), r, core_lib::LockGuard::leak)
    });

    /// Release the lock this process holds (SHMDS_E_NOT_OWNER if it does
    /// not).
    fn shmds_lock_release(lock: ShmdsLock) -> c_int = act(|l| l.0.unlock());

    /// Whether some process holds the lock now (false for NULL).
    fn shmds_lock_is_locked(lock: ShmdsLock) -> bool = attribute(|l| l.0.is_locked());

    /// Who holds the lock: 1 and its pid in `*pid` and thread id in `*tid`
    /// (0 if not recorded), or 0 when it is free (both set to 0). Either
    /// pointer may be NULL.
    fn shmds_lock_holder(lock: ShmdsLock, pid: *mut u32, tid: *mut u32) -> c_int =
        with(|l| holder(l, pid, tid));

    /// How often the lock was taken over from a holder that died (0 for
    /// NULL).
    fn shmds_lock_owner_deaths(lock: ShmdsLock) -> u64 = attribute(|l| l.0.owner_deaths());

    /// Take a read lock, waiting up to `timeout_ns` (negative: forever; 0:
    /// try once) while a writer holds the lock or waits for it. SHMDS_OK;
    /// SHMDS_E_OWNER_DEAD (read lock held; a writer died holding the lock);
    /// SHMDS_E_TIMEOUT; SHMDS_E_READER_SLOTS_FULL.
    fn shmds_rwlock_read_acquire(rwlock: ShmdsRwLock, timeout_ns: i64) -> c_int = with(|rw| {
        let r = rw.0.read_interruptible(timeout(timeout_ns), None);
        taken("rwlock", rw.0.name(), r, core_lib::ReadGuard::leak)
    });

    /// Release a read lock this process holds (SHMDS_E_NOT_OWNER if it
    /// holds none).
    fn shmds_rwlock_read_release(rwlock: ShmdsRwLock) -> c_int = act(|rw| rw.0.read_unlock());

    /// Take the write lock, waiting up to `timeout_ns` (negative: forever;
    /// 0: try once) for the writer before and for the readers. SHMDS_OK;
    /// SHMDS_E_OWNER_DEAD (held; the previous writer died holding it);
    /// SHMDS_E_TIMEOUT.
    fn shmds_rwlock_write_acquire(rwlock: ShmdsRwLock, timeout_ns: i64) -> c_int = with(|rw| {
        let r = rw.0.write_interruptible(timeout(timeout_ns), None);
        taken("rwlock", rw.0.name(), r, core_lib::WriteGuard::leak)
    });

    /// Release the write lock this process holds (SHMDS_E_NOT_OWNER if it
    /// does not).
    fn shmds_rwlock_write_release(rwlock: ShmdsRwLock) -> c_int = act(|rw| rw.0.write_unlock());

    /// Read locks held now, by all processes (0 for NULL).
    fn shmds_rwlock_readers(rwlock: ShmdsRwLock) -> u64 = attribute(|rw| rw.0.readers());

    /// The pid of the writer holding (or draining readers for) the lock, 0
    /// if none (0 for NULL).
    fn shmds_rwlock_writer(rwlock: ShmdsRwLock) -> u32 =
        attribute(|rw| rw.0.writer().unwrap_or(0));

    // ------------------------------------------------------------- conditions

    /// Take the condition's lock, as `shmds_lock_acquire` does (SHMDS_OK,
    /// SHMDS_E_OWNER_DEAD with the lock held, SHMDS_E_TIMEOUT).
    fn shmds_condition_acquire(cond: ShmdsCondition, timeout_ns: i64) -> c_int = with(|c| {
        let r = c.0.lock_interruptible(timeout(timeout_ns), None);
        taken("condition", c.0.name(), r, core_lib::LockGuard::leak)
    });

    /// Release the condition's lock (SHMDS_E_NOT_OWNER if this process
    /// does not hold it).
    fn shmds_condition_release(cond: ShmdsCondition) -> c_int = act(|c| c.0.unlock());

    /// With the condition's lock held: release it, wait up to `timeout_ns`
    /// (negative: forever) for a notify, and take the lock again (waiting
    /// as long as that takes). SHMDS_OK: notified; SHMDS_E_TIMEOUT: the
    /// time ran out; in both the lock is held again. SHMDS_E_OWNER_DEAD:
    /// notified or not, the lock was taken back from a process that died
    /// holding it (held too). SHMDS_E_NOT_OWNER: this process did not hold
    /// the lock (nothing waited). Wake-ups may be spurious: wait in a loop
    /// that checks the state.
    fn shmds_condition_wait(cond: ShmdsCondition, timeout_ns: i64) -> c_int =
        with(|c| condition_waited(c, timeout_ns));

    /// Wake up to `n` waiters of the condition (with or without its lock
    /// held).
    fn shmds_condition_notify(cond: ShmdsCondition, n: u32) -> c_int = act(|c| c.0.notify(n));

    /// Wake every waiter of the condition.
    fn shmds_condition_notify_all(cond: ShmdsCondition) -> c_int = act(|c| c.0.notify_all());

    // ------------------------------------------------------------- semaphores

    /// Take a permit, waiting up to `timeout_ns` (negative: forever; 0: try
    /// once); SHMDS_E_TIMEOUT if none came. A permit is not given back when
    /// its process dies.
    fn shmds_semaphore_acquire(sem: ShmdsSemaphore, timeout_ns: i64) -> c_int =
        with(|s| permit(s, timeout_ns));

    /// Add `n` permits, waking as many waiters. A bounded semaphore fails
    /// with SHMDS_E_TOO_MANY_RELEASES (adding none) past its initial value.
    fn shmds_semaphore_release(sem: ShmdsSemaphore, n: u32) -> c_int = act(|s| s.0.release(n));

    /// Permits free now (0 for NULL).
    fn shmds_semaphore_value(sem: ShmdsSemaphore) -> u32 = attribute(|s| s.0.value());

    // ------------------------------------------------------------- barriers

    /// Wait until all parties have arrived, up to `timeout_ns` (negative:
    /// forever). SHMDS_OK, and the arrival index in `*index` (if not
    /// NULL): 0 for the first party, `parties - 1` for the last, which
    /// tripped it. SHMDS_E_TIMEOUT: the time ran out, and the barrier broke
    /// for all. SHMDS_E_BROKEN: it is, or became, broken (aborted, another
    /// party's timeout, a waiting party died).
    fn shmds_barrier_wait(barrier: ShmdsBarrier, timeout_ns: i64, index: *mut u32) -> c_int =
        with(|b| passed(b, timeout_ns, index));

    /// Break the barrier: every waiter, and every wait until
    /// `shmds_barrier_reset`, fails with SHMDS_E_BROKEN.
    fn shmds_barrier_abort(barrier: ShmdsBarrier) -> c_int = act(|b| b.0.abort());

    /// Make the barrier new: not broken, nobody waiting (waiters fail with
    /// SHMDS_E_BROKEN).
    fn shmds_barrier_reset(barrier: ShmdsBarrier) -> c_int = act(|b| b.0.reset());

    /// Parties needed to trip the barrier (0 for NULL).
    fn shmds_barrier_parties(barrier: ShmdsBarrier) -> u32 = attribute(|b| b.0.parties());

    /// Parties waiting now (0 for NULL).
    fn shmds_barrier_n_waiting(barrier: ShmdsBarrier) -> u32 = attribute(|b| b.0.n_waiting());

    /// Whether the barrier is broken (false for NULL).
    fn shmds_barrier_is_broken(barrier: ShmdsBarrier) -> bool = attribute(|b| b.0.is_broken());

    // ------------------------------------------------------------- events

    /// Set the event, waking every waiter.
    fn shmds_event_set(event: ShmdsEvent) -> c_int = act(|e| e.0.set());

    /// Clear the event.
    fn shmds_event_clear(event: ShmdsEvent) -> c_int = act(|e| e.0.clear());

    /// Whether the event is set (false for NULL).
    fn shmds_event_is_set(event: ShmdsEvent) -> bool = attribute(|e| e.0.is_set());

    /// Wait until the event is set, up to `timeout_ns` (negative: forever;
    /// 0: look once): SHMDS_OK once set, SHMDS_E_TIMEOUT.
    fn shmds_event_wait(event: ShmdsEvent, timeout_ns: i64) -> c_int = with(|e| {
        let set = e.0.wait_interruptible(timeout(timeout_ns), None)?;
        waited(set, "event", e.0.name())
    });

    // ------------------------------------------------------------- latches

    /// Count the latch down by `n`, opening it (waking every waiter) when
    /// it reaches 0. Counting down by more than is left fails with
    /// SHMDS_E_INVALID and changes nothing.
    fn shmds_latch_count_down(latch: ShmdsLatch, n: u32) -> c_int = act(|l| l.0.count_down(n));

    /// Count-downs still awaited (0 for NULL).
    fn shmds_latch_count(latch: ShmdsLatch) -> u32 = attribute(|l| l.0.count());

    /// Wait until the latch is open (count 0), up to `timeout_ns`
    /// (negative: forever; 0: look once): SHMDS_OK once open,
    /// SHMDS_E_TIMEOUT.
    fn shmds_latch_wait(latch: ShmdsLatch, timeout_ns: i64) -> c_int = with(|l| {
        let open = l.0.wait_interruptible(timeout(timeout_ns), None)?;
        waited(open, "latch", l.0.name())
    });

    // ------------------------------------------------------------- once

    /// Begin the once cell's initialiser, waiting up to `timeout_ns`
    /// (negative: forever) while another process runs it. 1: run it now,
    /// then call `shmds_once_finish` (also when a process that ran it
    /// before died: its work may be half done). 0: it has run.
    /// SHMDS_E_TIMEOUT: the other run did not end in time.
    fn shmds_once_begin(once: ShmdsOnce, timeout_ns: i64) -> c_int =
        with(|o| run_begun(o, timeout_ns));

    /// End the run this process began: `done` marks the initialiser run
    /// for good; false leaves it to the next caller of `shmds_once_begin`.
    /// SHMDS_E_NOT_OWNER if this process runs none.
    fn shmds_once_finish(once: ShmdsOnce, done: bool) -> c_int = act(|o| o.0.finish(done));

    /// Whether the initialiser has run (false for NULL).
    fn shmds_once_is_done(once: ShmdsOnce) -> bool = attribute(|o| o.0.is_done());
}
