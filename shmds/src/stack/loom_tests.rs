//! Loom models of the stack: the same `StackCore` on heap memory.

use super::*;
use loom::sync::Arc;

struct Model {
    header: Box<StackHeader>,
    slots: Vec<u64>,
}

// SAFETY: the model's memory is only touched through the stack protocol.
unsafe impl Send for Model {}
// SAFETY: as above.
unsafe impl Sync for Model {}

const CAP: u64 = 2;

impl Model {
    fn new() -> Model {
        Model {
            header: Box::new(StackHeader {
                kind: kind::STACK,
                elem_size: 8,
                capacity: CAP,
                slot_stride: 8,
                slots_offset: 0,
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
            }),
            slots: vec![0; CAP as usize],
        }
    }

    fn core(&self) -> StackCore<'_> {
        // SAFETY: CAP slots of 8 bytes.
        unsafe {
            StackCore::new(
                &self.header,
                self.slots.as_ptr() as *mut u8,
                8,
                CAP,
                Duration::from_secs(3600),
            )
        }
    }

    /// One push call of `values` (one claim); how many went in.
    fn push_run(&self, values: &[u64]) -> usize {
        // SAFETY: a slot holds a u64.
        let mut w = |i: usize, p: *mut u8| unsafe { p.cast::<u64>().write_unaligned(values[i]) };
        match self.core().push(values.len(), &mut w, false).unwrap() {
            Step::Moved(n) => n,
            Step::Blocked | Step::ShutDown => 0,
        }
    }

    fn push(&self, v: u64) -> bool {
        self.push_run(&[v]) == 1
    }

    /// One pop call of up to `want` (one claim), top first.
    fn pop_run(&self, want: usize) -> Vec<u64> {
        let mut out = vec![0; want];
        // SAFETY: a slot holds a u64.
        let mut r = |i: usize, p: *const u8| out[i] = unsafe { p.cast::<u64>().read_unaligned() };
        let n = match self.core().pop(want, &mut r, false).unwrap() {
            Step::Moved(n) => n,
            Step::Blocked | Step::ShutDown => 0,
        };
        out.truncate(n);
        out
    }

    fn pop(&self) -> Option<u64> {
        self.pop_run(1).pop()
    }

    /// Pop everything (a few calls).
    fn drain(&self) -> Vec<u64> {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(self.pop_run(CAP as usize));
        }
        got
    }
}

/// Push all of `values` in a few calls (a try_ call that meets a claim may
/// report full).
fn push_all(s: &Model, mut values: &[u64]) {
    for _ in 0..3 {
        if values.is_empty() {
            break;
        }
        values = &values[s.push_run(values)..];
    }
    assert!(values.is_empty(), "{values:?} found no room");
}

/// Concurrent pushes and pops: no element lost or duplicated, capacity
/// respected, the stack idle and consistent afterwards.
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
        let mut got: Vec<u64> = [mine, theirs].into_iter().flatten().collect();
        got.extend(s.drain());
        got.sort();
        let expected: Vec<u64> = if pushed { vec![1, 2] } else { vec![1] };
        assert_eq!(got, expected);
        assert_eq!(s.core().len(), 0);
    });
}

/// Two poppers race on a two-element stack: each element once, LIFO for
/// the first; then a full stack refuses a push.
#[test]
fn pop_pop_then_full() {
    crate::sync::model(|| {
        let s = Arc::new(Model::new());
        push_all(&s, &[1, 2]);
        assert!(!s.push(3), "full");
        let s2 = s.clone();
        let t = loom::thread::spawn(move || s2.pop());
        let mine = s.pop();
        let theirs = t.join().unwrap();
        let mut got: Vec<u64> = [mine, theirs].into_iter().flatten().collect();
        got.extend(s.drain());
        assert_eq!(got.len(), 2, "{got:?}");
        got.sort();
        assert_eq!(got, vec![1, 2]);
    });
}

/// A run: a push of two against a pop of up to two, both in one claim.
#[test]
fn runs() {
    crate::sync::model(|| {
        let s = Arc::new(Model::new());
        let s2 = s.clone();
        let t = loom::thread::spawn(move || s2.pop_run(2));
        let pushed = s.push_run(&[1, 2]);
        let taken = t.join().unwrap();
        assert!(taken.is_empty() || taken == [2, 1] || (pushed == 1 && taken == [1]));
        let mut got = taken;
        got.extend(s.drain());
        got.sort();
        assert_eq!(got, [1, 2][..pushed].to_vec());
    });
}

/// A pusher and a popper die holding their claims, at every pause point,
/// while a survivor pushes and pops: the dead pusher's element never shows
/// up, the dead popper's elements are still there, nothing else is lost,
/// and the stack works afterwards at full capacity (nothing leaked).
#[test]
fn killed_pusher_and_popper() {
    use crate::fault::crash;
    const PUSH: [&str; 2] = ["stack.push.claimed", "stack.push.written"];
    const POP: [&str; 2] = ["stack.pop.claimed", "stack.pop.read"];
    for push_point in PUSH {
        for pop_point in POP {
            crate::sync::model(move || {
                crash::reset();
                let s = Arc::new(Model::new());
                assert!(s.push(1));
                let s2 = s.clone();
                let pusher = loom::thread::spawn(move || crash::die_at(push_point, || s2.push(9)));
                let s3 = s.clone();
                let popper = loom::thread::spawn(move || crash::die_at(pop_point, || s3.pop()));
                let pushed = pusher.join().unwrap();
                let popped = popper.join().unwrap();
                let mut got = s.drain();
                got.extend(popped.flatten());
                got.sort();
                let case = format!("{push_point} / {pop_point}: {pushed:?} {popped:?} {got:?}");
                let mut expected = vec![1];
                if pushed == Some(true) {
                    expected.push(9);
                }
                assert_eq!(got, expected, "{case}");
                push_all(&s, &[7, 8]);
                assert_eq!(s.drain(), vec![8, 7], "{case}");
            });
        }
    }
}

/// Shutdown against a push: the push lands before it (and is popped) or is
/// refused; once a pop reports "shut down", nothing is left behind.
#[test]
fn shutdown_is_atomic_with_pushes() {
    crate::sync::model(|| {
        let s = Arc::new(Model::new());
        let s2 = s.clone();
        let t = loom::thread::spawn(move || s2.push(5));
        s.core().shut().unwrap();
        let mut got = Vec::new();
        loop {
            let mut out = 0;
            // SAFETY: a slot holds a u64.
            let mut r = |_: usize, p: *const u8| out = unsafe { p.cast::<u64>().read_unaligned() };
            match s.core().pop(1, &mut r, true).unwrap() {
                Step::Moved(_) => got.push(out),
                Step::ShutDown => break,
                Step::Blocked => {}
            }
        }
        let pushed = t.join().unwrap();
        assert_eq!(got, if pushed { vec![5] } else { vec![] });
        assert!(!s.push(6), "a push after the shutdown");
    });
}
