//! Tests of the coordination primitives in one process (threads; dead
//! holders are made by writing a dead process's pid into the words).

use crate::layout::{self, ONCE_DONE};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{Error, LockError, Segment};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Seg(Segment);

impl Drop for Seg {
    fn drop(&mut self) {
        let _ = Segment::remove(self.0.name());
    }
}

impl std::ops::Deref for Seg {
    type Target = Segment;
    fn deref(&self) -> &Segment {
        &self.0
    }
}

fn segment(tag: &str) -> Arc<Seg> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("shmds-unit-coord-{tag}-{}-{n}", std::process::id());
    Arc::new(Seg(Segment::create(&name, 4 << 20).unwrap()))
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// The atomic at byte `offset` of entry `name`'s block.
fn word32(seg: &Segment, name: &str, offset: usize) -> &'static AtomicU32 {
    let info = seg.entry(name).unwrap().unwrap();
    // SAFETY: test-only: the offset lies inside the entry's block, in the
    // mapping `seg` keeps alive for the test's duration.
    unsafe {
        &*seg
            .as_ptr()
            .add(info.offset as usize + offset)
            .cast::<AtomicU32>()
    }
}

fn word64(seg: &Segment, name: &str, offset: usize) -> &'static AtomicU64 {
    let info = seg.entry(name).unwrap().unwrap();
    // SAFETY: as in word32.
    unsafe {
        &*seg
            .as_ptr()
            .add(info.offset as usize + offset)
            .cast::<AtomicU64>()
    }
}

const LOCK_WORD: usize = std::mem::offset_of!(layout::LockHeader, lock);

#[test]
fn lock_excludes_threads_and_reports_state() {
    let seg = segment("lock");
    let lock = Arc::new(seg.create_lock("l").unwrap());
    let counter = seg.create_array::<u64>("n", 1).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (lock, seg) = (lock.clone(), seg.clone());
            std::thread::spawn(move || {
                let counter = seg.open_array::<u64>("n").unwrap();
                for _ in 0..5_000 {
                    let _g = lock.lock().unwrap();
                    let v = counter.get(0).unwrap();
                    std::hint::spin_loop();
                    counter.set(0, v + 1).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(counter.get(0).unwrap(), 20_000);
    assert!(!lock.is_locked());
    let g = lock.lock().unwrap();
    let (pid, tid) = lock.holder().unwrap();
    assert_eq!(pid, std::process::id());
    assert!(tid.is_some());
    assert!(lock.status().summary.starts_with("held by pid"));
    // Held by this process: another thread's try fails, a timed wait times out.
    let l2 = lock.clone();
    std::thread::spawn(move || {
        assert!(l2.try_lock().unwrap().is_none());
        let t = Instant::now();
        assert!(l2
            .lock_timeout(Duration::from_millis(30))
            .unwrap()
            .is_none());
        assert!(t.elapsed() >= Duration::from_millis(30));
    })
    .join()
    .unwrap();
    drop(g);
    assert!(matches!(
        lock.unlock(),
        Err(Error::NotOwner { holder: 0, .. })
    ));
    // A leaked guard is released by unlock.
    lock.lock().unwrap().leak();
    assert!(lock.is_held_by_me());
    lock.unlock().unwrap();
    assert!(!lock.is_locked());
}

#[test]
fn lock_waiter_sleeps_and_is_woken() {
    let seg = segment("wake");
    let lock = Arc::new(seg.create_lock("l").unwrap());
    let g = lock.lock().unwrap();
    let l2 = lock.clone();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        drop(l2.lock().unwrap());
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(g);
    let waited = t.join().unwrap();
    assert!(waited >= Duration::from_millis(40), "{waited:?}");
}

#[test]
fn lock_of_a_dead_holder_is_taken_over_and_reported() {
    let seg = segment("dead");
    let lock = seg.create_lock("l").unwrap();
    let dead = dead_pid();
    word32(&seg, "l", LOCK_WORD).store(dead, Ordering::SeqCst);
    assert!(
        seg.check().problems.iter().any(|p| p.contains("died")),
        "{:?}",
        seg.check().problems
    );
    let start = Instant::now();
    match lock.lock() {
        Err(LockError::OwnerDied(d)) => {
            assert_eq!(d.pid(), dead);
            let _g = d.into_guard();
            assert!(lock.is_held_by_me());
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(lock.owner_deaths(), 1);
    assert!(!lock.is_locked());
    assert!(seg.check().is_ok());
    // `?` makes it an Error (and releases the lock); recover keeps it.
    word32(&seg, "l", LOCK_WORD).store(dead, Ordering::SeqCst);
    let e: Error = lock.try_lock().unwrap_err().into();
    assert!(
        matches!(e, Error::OwnerDied { pid, .. } if pid == dead),
        "{e}"
    );
    assert!(!lock.is_locked());
    // A garbage word is no live process either.
    word32(&seg, "l", LOCK_WORD).store(0xffff_fff0, Ordering::SeqCst);
    let g = lock.lock().or_else(LockError::recover).unwrap();
    drop(g);
    assert_eq!(lock.owner_deaths(), 3);
}

#[test]
fn a_reused_pid_with_another_start_time_is_dead() {
    let seg = segment("reuse");
    let lock = seg.create_lock("l").unwrap();
    // Pid 1 runs, but the stamp's start time is not its own: the holder
    // was an earlier process with that pid.
    let stamp_offset = LOCK_WORD + std::mem::offset_of!(layout::LockState, holder_stamp);
    let start = crate::process::start_time(1).expect("pid 1 is readable");
    let other_start = (start + 1) & ((1 << 40) - 1);
    word32(&seg, "l", LOCK_WORD).store(1, Ordering::SeqCst);
    word64(&seg, "l", stamp_offset).store(1 | (other_start << 24), Ordering::SeqCst);
    // (The guard inside is dropped at the end of the statement.)
    assert!(matches!(lock.try_lock(), Err(LockError::OwnerDied(_))));
    // With its real start time it is alive.
    word32(&seg, "l", LOCK_WORD).store(1, Ordering::SeqCst);
    word64(&seg, "l", stamp_offset).store(1 | (start << 24), Ordering::SeqCst);
    assert!(lock.try_lock().unwrap().is_none());
    word32(&seg, "l", LOCK_WORD).store(0, Ordering::SeqCst);
}

#[test]
fn rwlock_readers_share_and_writers_exclude() {
    let seg = segment("rw");
    let rw = Arc::new(seg.create_rwlock("rw", 4).unwrap());
    let r1 = rw.read().unwrap();
    let r2 = rw.read().unwrap();
    assert_eq!(rw.readers(), 2);
    assert!(rw.try_write().unwrap().is_none());
    assert!(
        rw.writer().is_none(),
        "a failed try gives the writers' lock back"
    );
    drop((r1, r2));
    let w = rw.write().unwrap();
    assert!(rw.try_read().unwrap().is_none());
    let rw2 = rw.clone();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        drop(rw2.read().unwrap());
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(30));
    drop(w);
    assert!(t.join().unwrap() >= Duration::from_millis(20));
    // Writers are preferred: a writer waiting for a reader keeps new readers out.
    let r = rw.read().unwrap();
    let rw2 = rw.clone();
    let writer = std::thread::spawn(move || drop(rw2.write().unwrap()));
    while rw.writer().is_none() {
        std::thread::yield_now();
    }
    assert!(rw.try_read().unwrap().is_none());
    drop(r);
    writer.join().unwrap();
    assert!(matches!(rw.read_unlock(), Err(Error::NotOwner { .. })));
    assert!(matches!(rw.write_unlock(), Err(Error::NotOwner { .. })));
}

#[test]
fn rwlock_many_threads_keep_the_invariant() {
    let seg = segment("rwmany");
    let rw = Arc::new(seg.create_rwlock("rw", 8).unwrap());
    let inside = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (rw, inside) = (rw.clone(), inside.clone());
            std::thread::spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                for i in 0..2_000 {
                    if (i + t) % 5 == 0 {
                        let _w = rw.write().unwrap();
                        assert_eq!(inside.swap(-1, SeqCst), 0);
                        std::hint::spin_loop();
                        assert_eq!(inside.swap(0, SeqCst), -1);
                    } else {
                        let _r = rw.read().unwrap();
                        assert!(inside.fetch_add(1, SeqCst) >= 0);
                        inside.fetch_sub(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(rw.readers(), 0);
}

#[test]
fn rwlock_takes_back_dead_readers_and_dead_writers() {
    let seg = segment("rwdead");
    let rw = seg.create_rwlock("rw", 2).unwrap();
    let dead = dead_pid() as u64;
    let slot0 = layout::RWLOCK_HEADER_SIZE as usize;
    word64(&seg, "rw", slot0).store(dead, Ordering::SeqCst);
    word32(&seg, "rw", slot0 + 8).store(3, Ordering::SeqCst);
    assert_eq!(rw.readers(), 3);
    let w = rw.write_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(rw.readers(), 0);
    drop(w);
    assert!(rw.status().summary.contains("3 read locks of dead readers"));
    // Dead writer: a reader clears it and is told.
    let writer = std::mem::offset_of!(layout::RwLockHeader, writer);
    word32(&seg, "rw", writer).store(dead as u32, Ordering::SeqCst);
    match rw.read() {
        Err(LockError::OwnerDied(d)) => assert_eq!(d.pid(), dead as u32),
        other => panic!("{other:?}"),
    }
    assert!(rw.writer().is_none());
    // Every slot taken by live processes: the next reader process is refused.
    let full = seg.create_rwlock("full", 1).unwrap();
    word64(&seg, "full", slot0).store(1, Ordering::SeqCst); // pid 1 runs
    assert!(matches!(
        full.read(),
        Err(LockError::Failed(Error::ReaderSlotsFull { .. }))
    ));
}

#[test]
fn condition_waits_and_notifies() {
    let seg = segment("cond");
    let cond = Arc::new(seg.create_condition("c").unwrap());
    let flag = Arc::new(seg.create_array::<u64>("flag", 1).unwrap());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let (cond, flag) = (cond.clone(), flag.clone());
            std::thread::spawn(move || {
                let g = cond.lock().unwrap();
                let g = cond.wait_while(g, || flag.get(0).unwrap() == 0).unwrap();
                assert!(cond.is_held_by_me());
                drop(g);
            })
        })
        .collect();
    while cond.waiters() < 3 {
        std::thread::sleep(Duration::from_millis(1));
    }
    {
        let _g = cond.lock().unwrap();
        flag.set(0, 1).unwrap();
        cond.notify_all();
    }
    for w in waiters {
        w.join().unwrap();
    }
    // A timed wait times out, holding the lock again.
    let g = cond.lock().unwrap();
    let (g, r) = cond
        .wait_timeout(g, Some(Duration::from_millis(20)))
        .unwrap();
    assert!(r.timed_out());
    drop(g);
    assert!(matches!(
        cond.wait_held(None, None),
        Err(Error::NotOwner { .. })
    ));
    // A guard of another lock is refused.
    let other = seg.create_lock("other").unwrap();
    let og = other.lock().unwrap();
    assert!(cond.wait(og).is_err());
    assert!(!other.is_locked());
}

#[test]
fn semaphore_counts_and_bounds() {
    let seg = segment("sem");
    let sem = Arc::new(seg.create_semaphore("s", 2).unwrap());
    let a = sem.acquire().unwrap();
    let b = sem.acquire().unwrap();
    assert!(sem.try_acquire().unwrap().is_none());
    assert!(sem
        .acquire_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
    let s2 = sem.clone();
    let t = std::thread::spawn(move || s2.acquire().unwrap().forget());
    std::thread::sleep(Duration::from_millis(20));
    drop(a);
    t.join().unwrap();
    drop(b);
    assert_eq!(sem.value(), 1);
    sem.release(10).unwrap(); // unbounded
    assert_eq!(sem.value(), 11);
    let bounded = seg.create_bounded_semaphore("b", 1).unwrap();
    assert!(bounded.is_bounded());
    assert!(matches!(
        bounded.release(1),
        Err(Error::TooManyReleases { max: 1, .. })
    ));
    bounded.acquire().unwrap().forget();
    bounded.release(1).unwrap();
    // Opened as the other flavour: refused.
    assert!(matches!(
        seg.open_or_create_semaphore("b", 1),
        Err(Error::KindMismatch { .. })
    ));
    assert!(matches!(
        seg.open_or_create_semaphore("s", 3),
        Err(Error::ShapeMismatch {
            what: "initial value",
            ..
        })
    ));
}

#[test]
fn barrier_rounds_indices_and_breaking() {
    let seg = segment("bar");
    let bar = Arc::new(seg.create_barrier("b", 3).unwrap());
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let bar = bar.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|_| bar.wait().unwrap().index())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let all: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for round in 0..20 {
        let mut idx: Vec<u32> = all.iter().map(|v| v[round]).collect();
        idx.sort();
        assert_eq!(idx, vec![0, 1, 2], "round {round}");
    }
    // A timeout breaks it for all.
    let b2 = bar.clone();
    let other = std::thread::spawn(move || b2.wait());
    while bar.n_waiting() < 1 {
        std::thread::yield_now();
    }
    assert!(matches!(
        bar.wait_timeout(Duration::from_millis(10)),
        Err(Error::Timeout { .. })
    ));
    assert!(matches!(
        other.join().unwrap(),
        Err(Error::BrokenBarrier { .. })
    ));
    assert!(matches!(bar.wait(), Err(Error::BrokenBarrier { .. })));
    bar.reset();
    assert!(!bar.is_broken());
    // Reset while one waits: the waiter fails.
    let b2 = bar.clone();
    let other = std::thread::spawn(move || b2.wait());
    while bar.n_waiting() < 1 {
        std::thread::yield_now();
    }
    bar.reset();
    assert!(matches!(
        other.join().unwrap(),
        Err(Error::BrokenBarrier { .. })
    ));
    // Abort.
    bar.abort();
    assert!(bar.is_broken());
    bar.reset();
    // A dead party at the barrier breaks it.
    let state = std::mem::offset_of!(layout::BarrierHeader, state);
    let phase = word64(&seg, "b", state).load(Ordering::SeqCst) as u32;
    word64(&seg, "b", state).store((1u64 << 32) | phase as u64, Ordering::SeqCst);
    word64(&seg, "b", layout::BARRIER_HEADER_SIZE as usize)
        .store(dead_pid() as u64, Ordering::SeqCst);
    assert!(matches!(
        bar.wait_timeout(Duration::from_secs(5)),
        Err(Error::BrokenBarrier { .. })
    ));
    assert!(matches!(
        seg.open_or_create_barrier("b", 4),
        Err(Error::ShapeMismatch {
            what: "parties",
            ..
        })
    ));
}

#[test]
fn event_and_latch() {
    let seg = segment("ev");
    let ev = Arc::new(seg.create_event("e").unwrap());
    assert!(!ev.wait_timeout(Duration::from_millis(5)).unwrap());
    let e2 = ev.clone();
    let t = std::thread::spawn(move || e2.wait().unwrap());
    std::thread::sleep(Duration::from_millis(10));
    ev.set();
    t.join().unwrap();
    assert!(ev.is_set());
    ev.clear();
    assert!(!ev.is_set());

    let latch = Arc::new(seg.create_latch("l", 3).unwrap());
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let l = latch.clone();
            std::thread::spawn(move || l.wait().unwrap())
        })
        .collect();
    assert_eq!(latch.count_down(2).unwrap(), 1);
    assert!(matches!(
        latch.count_down(2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!latch.try_wait());
    latch.count_down(1).unwrap();
    for w in waiters {
        w.join().unwrap();
    }
    assert!(latch.wait_timeout(Duration::ZERO).unwrap());
}

#[test]
fn once_runs_once_retries_failures_and_dead_runners() {
    let seg = segment("once");
    let once = Arc::new(seg.create_once("o").unwrap());
    let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (once, runs) = (once.clone(), runs.clone());
            std::thread::spawn(move || {
                once.call_once(|| {
                    std::thread::sleep(Duration::from_millis(10));
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap()
            })
        })
        .collect();
    let ran: usize = threads
        .into_iter()
        .map(|t| t.join().unwrap() as usize)
        .sum();
    assert_eq!(
        (ran, runs.load(std::sync::atomic::Ordering::SeqCst)),
        (1, 1)
    );
    assert!(once.is_done());

    let o2 = seg.create_once("o2").unwrap();
    assert_eq!(o2.try_call_once(|| Err::<(), _>(7)).unwrap(), Err(7));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        o2.call_once(|| panic!("initialiser fails"))
    }));
    assert!(caught.is_err());
    assert!(!o2.is_done());
    assert!(o2.call_once(|| {}).unwrap());
    assert_eq!(o2.attempts(), 3);

    let o3 = seg.create_once("o3").unwrap();
    let state = std::mem::offset_of!(layout::OnceHeader, state);
    word32(&seg, "o3", state).store(dead_pid(), Ordering::SeqCst);
    let run = o3
        .begin(Some(Duration::from_secs(5)), None)
        .unwrap()
        .unwrap();
    assert!(run.after_death().is_some());
    run.complete();
    assert_eq!(word32(&seg, "o3", state).load(Ordering::SeqCst), ONCE_DONE);
    assert!(matches!(o3.finish(true), Err(Error::NotOwner { .. })));
}

#[test]
fn primitives_are_typed_entries() {
    let seg = segment("kinds");
    seg.create_lock("l").unwrap();
    assert!(matches!(
        seg.open_event("l"),
        Err(Error::KindMismatch { .. })
    ));
    let infos = seg.entries().unwrap();
    assert_eq!(infos[0].kind_name(), "lock");
    let status = seg.primitive_status(&infos[0]).unwrap().unwrap();
    assert_eq!(status.summary, "free");
    // Erased: the handle is stale.
    let lock = seg.open_lock("l").unwrap();
    seg.erase("l").unwrap();
    assert!(matches!(
        lock.lock(),
        Err(LockError::Failed(Error::Stale { .. }))
    ));
    assert!(seg.check().is_ok());
}
