//! Loom models of the coordination primitives, on heap memory, with the
//! code that runs in shared memory: lock handoff and dead-holder takeover,
//! rwlock reader/writer exclusion and dead readers, barrier generations,
//! once with a failing and a dying initialiser, semaphore permits, event
//! wake-ups.

use super::barrier::BarrierCore;
use super::condition::{notify_core, wait_core};
use super::event;
use super::lock::{give, take, wait_free, Taken};
use super::once::{self, Begin};
use super::rwlock::RwCore;
use super::semaphore;
use super::waiter;
use crate::fault::{crash, pause_point};
use crate::layout::{
    BarrierHeader, BarrierSlot, ConditionHeader, EventHeader, LockState, OnceHeader, ReaderSlot,
    RwLockHeader, SemaphoreHeader, ONCE_DONE,
};
use crate::process::current_pid;
use crate::sync::{model, AtomicU32, AtomicU64, Ordering};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

fn lock_state() -> LockState {
    LockState {
        word: AtomicU32::new(0),
        sleepers: AtomicU32::new(0),
        holder_stamp: AtomicU64::new(0),
        holder_tid: AtomicU32::new(0),
        last_dead_pid: AtomicU32::new(0),
        owner_deaths: AtomicU64::new(0),
        reserved: [0; 4],
    }
}

/// Data guarded by a lock: loom reports a data race if two threads touch it
/// without the lock's happens-before.
struct Guarded(UnsafeCell<u64>);

// SAFETY: only touched under the modelled lock (loom checks it).
unsafe impl Sync for Guarded {}

impl Guarded {
    fn bump(&self) {
        // SAFETY: loom's cell pointer is valid; loom reports unsynchronised use.
        self.0.with_mut(|v| unsafe { *v += 1 });
    }

    fn get(&self) -> u64 {
        // SAFETY: as in bump.
        self.0.with(|v| unsafe { *v })
    }
}

fn take_blocking(s: &LockState) -> Taken {
    take(s, &mut waiter(None, None)).expect("a blocking take without an interrupt ends taken")
}

#[test]
fn loom_lock_hands_off_between_processes() {
    model(|| {
        let s = Arc::new(lock_state());
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (s, data) = (s.clone(), data.clone());
                thread::spawn(move || {
                    assert_eq!(take_blocking(&s), Taken::Clean);
                    data.bump();
                    give(&s, false);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(data.get(), 2);
        assert_eq!(s.word.load(Ordering::Relaxed), 0);
    });
}

/// A holder that dies (right after its compare-and-swap, before it wrote
/// its stamp, or inside the critical section) never wedges the lock, and
/// the survivor is told exactly when it took the lock from the dead one.
#[test]
fn loom_lock_dead_holder_is_taken_over() {
    for point in ["coord.lock.taken", "test.lock.held"] {
        model(move || {
            crash::reset();
            let s = Arc::new(lock_state());
            let dying = {
                let s = s.clone();
                thread::spawn(move || {
                    let me = current_pid();
                    crash::die_at(point, || {
                        take_blocking(&s);
                        pause_point("test.lock.held");
                        give(&s, false);
                    });
                    me
                })
            };
            let taken = take_blocking(&s);
            give(&s, false);
            let dead = dying.join().unwrap();
            let again = take_blocking(&s);
            // The dying process always dies holding the lock: exactly one
            // of our takes took it from the dead process, and was told.
            let told: Vec<u32> = [taken, again]
                .iter()
                .filter_map(|t| match t {
                    Taken::FromDead(pid) => Some(*pid),
                    Taken::Clean => None,
                })
                .collect();
            assert_eq!(told, vec![dead]);
            assert!(crash::is_dead(dead));
            assert_eq!(s.owner_deaths.load(Ordering::Relaxed), 1);
            give(&s, false);
        });
    }
}

fn rwlock_model(slots: usize) -> (Box<RwLockHeader>, Vec<ReaderSlot>) {
    let header = Box::new(RwLockHeader {
        kind: crate::layout::kind::RWLOCK,
        reader_slots: slots as u32,
        slots_offset: crate::layout::RWLOCK_HEADER_SIZE,
        reserved0: [0; 6],
        writer: lock_state(),
        drain: AtomicU32::new(0),
        drain_waiting: AtomicU32::new(0),
        reader_deaths: AtomicU64::new(0),
        reserved1: [0; 6],
    });
    let slots = (0..slots)
        .map(|_| ReaderSlot {
            stamp: AtomicU64::new(0),
            count: AtomicU32::new(0),
            reserved0: 0,
            reserved1: [0; 6],
        })
        .collect();
    (header, slots)
}

/// A reader and a writer in two processes never overlap (loom checks the
/// data accesses), in every interleaving of the read lock's count and
/// check with the writer's take and drain.
#[test]
fn loom_rwlock_reader_and_writer_exclude() {
    model(|| {
        let m = Arc::new(rwlock_model(2));
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let writer = {
            let (m, data) = (m.clone(), data.clone());
            thread::spawn(move || {
                let core = RwCore {
                    header: &m.0,
                    slots: &m.1,
                };
                core.write(&mut waiter(None, None)).unwrap();
                data.bump();
                core.write_unlock();
            })
        };
        let core = RwCore {
            header: &m.0,
            slots: &m.1,
        };
        let slot = core.claim().unwrap();
        core.read(slot, &mut waiter(None, None)).unwrap();
        let seen = data.get();
        core.read_unlock(slot);
        writer.join().unwrap();
        assert!(seen <= 1);
        assert_eq!(data.get(), 1);
        assert_eq!(core.readers(), 0);
    });
}

/// A reader process that dies holding its read lock (or right after
/// counting itself) does not block a writer: its slot is reclaimed.
#[test]
fn loom_rwlock_dead_reader_is_reclaimed() {
    for point in ["coord.rwlock.counted", "test.rwlock.held"] {
        model(move || {
            crash::reset();
            let m = Arc::new(rwlock_model(1));
            let data = Arc::new(Guarded(UnsafeCell::new(0)));
            let reader = {
                let (m, data) = (m.clone(), data.clone());
                thread::spawn(move || {
                    let core = RwCore {
                        header: &m.0,
                        slots: &m.1,
                    };
                    crash::die_at(point, || {
                        let slot = core.claim().unwrap();
                        core.read(slot, &mut waiter(None, None)).unwrap();
                        // Released on drop, also while the process dies
                        // (read_unlock models the death as a release).
                        let _held = ReadHeld(&core, slot);
                        let _ = data.get();
                        pause_point("test.rwlock.held");
                    });
                })
            };
            let core = RwCore {
                header: &m.0,
                slots: &m.1,
            };
            // Never wedged by the dead reader, never overlapping a live one.
            core.write(&mut waiter(None, None)).unwrap();
            data.bump();
            core.write_unlock();
            reader.join().unwrap();
        });
    }
}

/// A read lock held in a model: released on drop (a dead process's drop
/// is its death, which `read_unlock` models as a release).
struct ReadHeld<'a>(&'a RwCore<'a>, usize);

impl Drop for ReadHeld<'_> {
    fn drop(&mut self) {
        self.0.read_unlock(self.1);
    }
}

fn barrier_model(parties: usize) -> (Box<BarrierHeader>, Vec<BarrierSlot>) {
    let header = Box::new(BarrierHeader {
        kind: crate::layout::kind::BARRIER,
        parties: parties as u32,
        slots_offset: crate::layout::BARRIER_HEADER_SIZE,
        reserved0: [0; 6],
        state: AtomicU64::new(0),
        reset_from: AtomicU32::new(0),
        waiters: AtomicU32::new(0),
        reserved1: [0; 6],
    });
    let slots = (0..parties)
        .map(|_| BarrierSlot {
            stamp: AtomicU64::new(0),
        })
        .collect();
    (header, slots)
}

/// Two parties through two generations: each round both pass, with the
/// indices 0 and 1, and neither passes a round before the other arrived.
#[test]
fn loom_barrier_generations() {
    model(|| {
        let m = Arc::new(barrier_model(2));
        let arrivals = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (m, arrivals) = (m.clone(), arrivals.clone());
                thread::spawn(move || {
                    let core = BarrierCore {
                        header: &m.0,
                        slots: &m.1,
                    };
                    let mut indices = Vec::new();
                    for round in 1..=2u32 {
                        arrivals.fetch_add(1, Ordering::SeqCst);
                        indices.push(core.wait(&mut waiter(None, None)).unwrap());
                        // Passed: both parties arrived in this round.
                        assert!(arrivals.load(Ordering::SeqCst) >= 2 * round);
                    }
                    indices
                })
            })
            .collect();
        let a = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>();
        for round in 0..2 {
            let mut idx = [a[0][round], a[1][round]];
            idx.sort();
            assert_eq!(idx, [0, 1]);
        }
    });
}

/// A party that aborts breaks the barrier for the other, which never
/// passes and never hangs.
#[test]
fn loom_barrier_abort_breaks_waiters() {
    model(|| {
        let m = Arc::new(barrier_model(2));
        let waiter_thread = {
            let m = m.clone();
            thread::spawn(move || {
                let core = BarrierCore {
                    header: &m.0,
                    slots: &m.1,
                };
                core.wait(&mut waiter(None, None))
            })
        };
        let core = BarrierCore {
            header: &m.0,
            slots: &m.1,
        };
        core.abort();
        assert!(waiter_thread.join().unwrap().is_err());
        assert!(core.is_broken());
    });
}

fn once_model() -> Box<OnceHeader> {
    Box::new(OnceHeader {
        kind: crate::layout::kind::ONCE,
        reserved0: 0,
        reserved1: [0; 7],
        state: AtomicU32::new(0),
        waiters: AtomicU32::new(0),
        runner_stamp: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
        reserved2: [0; 5],
    })
}

/// Two processes call a once whose first run fails (or whose runner dies):
/// the initialiser succeeds exactly once, both callers return, and the
/// once ends done.
#[test]
fn loom_once_failing_and_dying_initialiser() {
    for dies in [false, true] {
        model(move || {
            crash::reset();
            let h = Arc::new(once_model());
            let done = Arc::new(AtomicU32::new(0));
            let first = {
                let (h, done) = (h.clone(), done.clone());
                thread::spawn(move || {
                    let run = |h: &OnceHeader| {
                        if let Begin::Run(_) = once::begin(h, &mut waiter(None, None)).unwrap() {
                            pause_point("test.once.running");
                            // This process's run fails.
                            once::finish(h, false);
                        }
                    };
                    if dies {
                        crash::die_at("test.once.running", || run(&h));
                    } else {
                        run(&h);
                    }
                    let _ = &done;
                })
            };
            loop {
                match once::begin(&h, &mut waiter(None, None)).unwrap() {
                    Begin::Done => break,
                    Begin::Run(_) => {
                        done.fetch_add(1, Ordering::SeqCst);
                        once::finish(&h, true);
                        break;
                    }
                }
            }
            first.join().unwrap();
            assert_eq!(done.load(Ordering::SeqCst), 1);
            assert_eq!(h.state.load(Ordering::SeqCst), ONCE_DONE);
        });
    }
}

/// One permit, two processes: never both inside; nobody hangs.
#[test]
fn loom_semaphore_permits() {
    model(|| {
        let h = Arc::new(Box::new(SemaphoreHeader {
            kind: crate::layout::kind::SEMAPHORE,
            flags: 0,
            initial: 1,
            reserved0: [0; 6],
            value: AtomicU32::new(1),
            waiters: AtomicU32::new(0),
            reserved1: [0; 7],
        }));
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (h, data) = (h.clone(), data.clone());
                thread::spawn(move || {
                    semaphore::acquire(&h, &mut waiter(None, None)).unwrap();
                    data.bump();
                    semaphore::release(&h, 1, u32::MAX).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(data.get(), 2);
        assert_eq!(h.value.load(Ordering::SeqCst), 1);
    });
}

/// A waiter on an event returns once it is set, whatever the order of the
/// set and the wait (no lost wake-up), and sees what was written before.
#[test]
fn loom_event_wakes_waiter() {
    model(|| {
        let h = Arc::new(Box::new(EventHeader {
            kind: crate::layout::kind::EVENT,
            reserved0: 0,
            reserved1: [0; 7],
            flag: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            reserved2: [0; 7],
        }));
        let data = Arc::new(Guarded(UnsafeCell::new(0)));
        let setter = {
            let (h, data) = (h.clone(), data.clone());
            thread::spawn(move || {
                data.bump();
                event::set(&h);
            })
        };
        event::wait_set(&h, &mut waiter(None, None)).unwrap();
        assert_eq!(data.get(), 1);
        setter.join().unwrap();
    });
}

/// A reader waiting for a writer that died clears the dead writer and is
/// told.
#[test]
fn loom_wait_free_clears_a_dead_holder() {
    model(|| {
        crash::reset();
        let s = Arc::new(lock_state());
        let dying = {
            let s = s.clone();
            thread::spawn(move || {
                let me = current_pid();
                crash::die_at("test.held", || {
                    take_blocking(&s);
                    pause_point("test.held");
                    give(&s, true);
                });
                me
            })
        };
        let cleared = wait_free(&s, &mut waiter(None, None)).unwrap();
        let dead = dying.join().unwrap();
        if let Some(pid) = cleared {
            assert_eq!(pid, dead);
        }
        assert!(
            s.word.load(Ordering::SeqCst) == 0 || s.word.load(Ordering::SeqCst) == dead,
            "only the dying process may hold it after we saw it free"
        );
    });
}

fn condition_model() -> Box<ConditionHeader> {
    Box::new(ConditionHeader {
        kind: crate::layout::kind::CONDITION,
        reserved0: 0,
        reserved1: [0; 7],
        lock: lock_state(),
        seq: AtomicU32::new(0),
        waiters: AtomicU32::new(0),
        signals: AtomicU64::new(0),
        reserved2: [0; 6],
    })
}

/// A waiter waiting for a flag and a notifier setting it under the lock:
/// the waiter always ends (no lost notify, whatever the order), sees the
/// flag, and the counts return to 0.
#[test]
fn loom_condition_notify_is_not_lost() {
    model(|| {
        let h = Arc::new(condition_model());
        let flag = Arc::new(Guarded(UnsafeCell::new(0)));
        let notifier = {
            let (h, flag) = (h.clone(), flag.clone());
            thread::spawn(move || {
                take_blocking(&h.lock);
                flag.bump();
                notify_core(&h, 1);
                give(&h.lock, false);
            })
        };
        take_blocking(&h.lock);
        while flag.get() == 0 {
            let (notified, _) = wait_core(&h, &mut waiter(None, None));
            assert!(notified.unwrap());
        }
        give(&h.lock, false);
        notifier.join().unwrap();
        assert_eq!(h.waiters.load(Ordering::SeqCst), 0);
        assert_eq!(h.signals.load(Ordering::SeqCst), 0);
    });
}
