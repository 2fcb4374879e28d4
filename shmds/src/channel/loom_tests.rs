//! Loom models of the channel protocols (MPMC and SPSC) and of the topic,
//! on heap memory, with the same code that runs in shared memory.

use super::{Blocked, ChannelCore, ChannelShape, SpscEnd, Took};
use crate::fault::crash;
use crate::layout::{ChannelCell, ChannelHeader, CHANNEL_ATTACH_SLOTS, MESSAGE_CELL};
use crate::ring::RingShape;
use crate::sync::{model, model_limited, AtomicU32, AtomicU64};
use loom::sync::Arc;
use loom::thread;

/// A channel on the heap.
struct Model {
    header: Box<ChannelHeader>,
    cells: Vec<ChannelCell>,
    data: std::cell::UnsafeCell<Vec<u8>>,
    shape: ChannelShape,
}

// SAFETY: loom runs a model's threads one at a time; the data buffer is
// only touched through the protocol (claimed frames), as in shared memory.
unsafe impl Sync for Model {}
// SAFETY: as above.
unsafe impl Send for Model {}

impl Model {
    fn new(cells: u64, spsc: bool) -> Model {
        let header = Box::new(ChannelHeader {
            kind: crate::layout::kind::CHANNEL,
            flags: 0,
            capacity: cells * MESSAGE_CELL,
            cells,
            one_lap: cells.next_power_of_two(),
            max_message: cells * MESSAGE_CELL,
            cells_offset: 0,
            data_offset: 0,
            reserved0: 0,
            tail: AtomicU64::new(0),
            reserved1: [0; 7],
            head: AtomicU64::new(0),
            unfinished: AtomicU64::new(0),
            join_event: AtomicU32::new(0),
            join_waiters: AtomicU32::new(0),
            reserved2: [0; 5],
            shutdown: AtomicU32::new(0),
            ever_attached: AtomicU32::new(0),
            send_waiters: AtomicU32::new(0),
            recv_waiters: AtomicU32::new(0),
            space: AtomicU32::new(0),
            reserved3: 0,
            reserved4: [0; 5],
            attached: std::array::from_fn(|_| AtomicU64::new(0)),
        });
        let _ = CHANNEL_ATTACH_SLOTS;
        Model {
            header,
            cells: (0..cells)
                .map(|_| ChannelCell {
                    state: AtomicU64::new(0),
                    len: AtomicU32::new(0),
                    checksum: AtomicU32::new(0),
                })
                .collect(),
            data: std::cell::UnsafeCell::new(vec![0; (cells * MESSAGE_CELL) as usize]),
            shape: ChannelShape {
                ring: RingShape::new(cells, cells * MESSAGE_CELL, false),
                spsc,
            },
        }
    }

    fn core(&self) -> ChannelCore<'_> {
        // SAFETY: cells and data hold `cells` records and cells * 64 bytes
        // and live as long as self.
        unsafe {
            ChannelCore::new(
                &self.header,
                self.cells.as_ptr(),
                (*self.data.get()).as_mut_ptr(),
                &self.shape,
            )
        }
    }

    /// One MPMC send attempt of `msg`; false when blocked. A claimant
    /// found dead is taken over (as a waiter would).
    fn try_send(&self, msg: &[u8]) -> bool {
        let core = self.core();
        let me = crate::process::current_pid();
        loop {
            match core.claim(msg.len() as u32, me).unwrap() {
                Ok(claim) => {
                    // SAFETY: the claimed frame holds msg.len() bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            msg.as_ptr(),
                            core.payload(claim.idx),
                            msg.len(),
                        )
                    };
                    core.publish(&claim, false, 0);
                    return true;
                }
                // A claim in the way, or a receiver's claim on an unfreed
                // frame where room is wanted: taken over if it is dead.
                Err(blocked) => match blocked.claim() {
                    Some((idx, word)) if !core.recover(idx, word) => {}
                    _ => return false,
                },
            }
        }
    }

    /// One MPMC receive attempt; `None` when blocked.
    fn try_recv(&self) -> Option<Vec<u8>> {
        let core = self.core();
        let me = crate::process::current_pid();
        loop {
            match core.take(me, super::Want::ANY).unwrap() {
                Ok(Took::TooLong(len)) => panic!("no limit, yet a {len}-byte message is too long"),
                Ok(Took::Frame(taken)) => {
                    // SAFETY: the taken frame holds `len` bytes.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(core.payload(taken.idx), taken.len as usize)
                    }
                    .to_vec();
                    core.release(&taken);
                    return Some(bytes);
                }
                Err(Blocked::Claim { idx, word }) => {
                    if core.recover(idx, word) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn spsc_send(&self, end: &mut SpscEnd, msg: &[u8]) -> bool {
        let core = self.core();
        match core.spsc_claim(end, msg.len() as u32).unwrap() {
            Ok(claim) => {
                // SAFETY: as in try_send.
                unsafe {
                    std::ptr::copy_nonoverlapping(msg.as_ptr(), core.payload(claim.idx), msg.len())
                };
                core.spsc_publish(end, &claim, msg.len() as u32, 0);
                true
            }
            Err(_) => false,
        }
    }

    fn spsc_recv(&self, end: &mut SpscEnd) -> Option<Vec<u8>> {
        let core = self.core();
        match core.spsc_take(end, super::Want::ANY).unwrap() {
            Ok(Took::TooLong(len)) => panic!("no limit, yet a {len}-byte message is too long"),
            Ok(Took::Frame(taken)) => {
                // SAFETY: as in try_recv.
                let bytes = unsafe {
                    std::slice::from_raw_parts(core.payload(taken.idx), taken.len as usize)
                }
                .to_vec();
                core.spsc_release(end, &taken);
                Some(bytes)
            }
            Err(_) => None,
        }
    }

    fn dump(&self) -> String {
        use crate::sync::Ordering::SeqCst;
        format!(
            "tail {} head {} cells {:?}",
            self.header.tail.load(SeqCst),
            self.header.head.load(SeqCst),
            self.cells
                .iter()
                .map(|c| (
                    crate::queue::SlotState::decode(c.state.load(SeqCst)),
                    c.len.load(SeqCst)
                ))
                .collect::<Vec<_>>()
        )
    }

    /// Every cell is free for some lap and the ring is empty.
    fn quiet(&self) -> bool {
        use crate::queue::SlotState;
        self.core().used_cells() == 0
            && self.cells.iter().all(|c| {
                matches!(
                    SlotState::decode(c.state.load(crate::sync::Ordering::SeqCst)),
                    SlotState::Empty { .. }
                )
            })
    }
}

fn msg(tag: u8, len: usize) -> Vec<u8> {
    vec![tag; len]
}

/// Two producers (one of them sending a two-cell message) and one consumer
/// on a three-cell ring: both messages arrive exactly once, whole, and the
/// ring wraps with padding.
#[test]
fn mpmc_two_producers_one_consumer_with_wrap() {
    model_limited(2, None, || {
        crash::reset();
        let m = Arc::new(Model::new(3, false));
        // Move the ring's position to cell 2, so a two-cell message pads.
        assert!(m.try_send(&msg(0, 64)));
        assert!(m.try_send(&msg(0, 64)));
        assert_eq!(m.try_recv().unwrap().len(), 64);
        assert_eq!(m.try_recv().unwrap().len(), 64);
        let p1 = {
            let m = m.clone();
            thread::spawn(move || m.try_send(&msg(1, 100)))
        };
        let p2 = {
            let m = m.clone();
            thread::spawn(move || m.try_send(&msg(2, 10)))
        };
        let mut got = Vec::new();
        for _ in 0..6 {
            if let Some(b) = m.try_recv() {
                got.push(b);
            }
            thread::yield_now();
        }
        let sent1 = p1.join().unwrap();
        let sent2 = p2.join().unwrap();
        while let Some(b) = m.try_recv() {
            got.push(b);
        }
        let ones = got.iter().filter(|b| **b == msg(1, 100)).count();
        let twos = got.iter().filter(|b| **b == msg(2, 10)).count();
        assert_eq!(ones, sent1 as usize, "{got:?}");
        assert_eq!(twos, sent2 as usize, "{got:?}");
        assert_eq!(got.len(), ones + twos, "a foreign or torn message: {got:?}");
        assert!(m.quiet());
    });
}

/// Two consumers race for one message: exactly one gets it.
#[test]
fn mpmc_two_consumers_one_message() {
    model(|| {
        crash::reset();
        let m = Arc::new(Model::new(2, false));
        let c = {
            let m = m.clone();
            thread::spawn(move || m.try_recv())
        };
        assert!(m.try_send(&msg(7, 70)));
        let mine = m.try_recv();
        let theirs = c.join().unwrap();
        let late = m.try_recv();
        let all: Vec<_> = [mine, theirs, late].into_iter().flatten().collect();
        assert_eq!(all, vec![msg(7, 70)]);
        assert!(m.quiet());
    });
}

/// A producer killed at each step of a send never wedges the channel: the
/// other producer's message gets through, and the dead one's message is
/// delivered whole or not at all.
#[test]
fn mpmc_killed_producer() {
    for point in [
        "channel.send.claimed",
        "channel.send.tail_moved",
        "channel.send.written",
    ] {
        model_limited(2, None, move || {
            crash::reset();
            let m = Arc::new(Model::new(2, false));
            let dying = {
                let m = m.clone();
                thread::spawn(move || crash::die_at(point, || m.try_send(&msg(1, 64))))
            };
            let sent = m.try_send(&msg(2, 64));
            dying.join().unwrap();
            // Once the dead claim is found, the live producer gets through.
            let sent = sent || m.try_send(&msg(2, 64));
            assert!(sent, "{point}: a dead producer's claim blocks the channel");
            let mut got = Vec::new();
            for _ in 0..4 {
                if let Some(b) = m.try_recv() {
                    got.push(b);
                }
            }
            assert_eq!(
                got.iter().filter(|b| **b == msg(2, 64)).count(),
                1,
                "{point}: {got:?} {}",
                m.dump()
            );
            assert!(got.iter().all(|b| *b == msg(1, 64) || *b == msg(2, 64)));
            // No wedge: the channel still carries messages.
            assert!(m.try_send(&msg(3, 10)), "{point}: wedged");
            assert_eq!(m.try_recv(), Some(msg(3, 10)));
        });
    }
}

/// A consumer killed at each step of a receive of a one-cell and of a
/// two-cell message: the message is delivered to the other consumer
/// (killed before moving head) or lost (after), and the channel never
/// wedges: a two-cell frame the dead consumer took but did not free is
/// found through its first cell when a sender comes round to it.
#[test]
fn mpmc_killed_consumer() {
    for (point, len) in [
        ("channel.recv.claimed", 64),
        ("channel.recv.head_moved", 64),
        ("channel.recv.read", 64),
        ("channel.recv.head_moved", 128),
        ("channel.recv.read", 128),
    ] {
        model_limited(2, None, move || {
            crash::reset();
            let m = Arc::new(Model::new(2, false));
            assert!(m.try_send(&msg(1, len)));
            let dying = {
                let m = m.clone();
                thread::spawn(move || crash::die_at(point, || m.try_recv()))
            };
            let mine = m.try_recv();
            let theirs = dying.join().unwrap().flatten();
            let again = m.try_recv();
            let got: Vec<_> = [mine, theirs, again].into_iter().flatten().collect();
            assert!(got.len() <= 1, "{point}: delivered twice: {got:?}");
            if point == "channel.recv.claimed" {
                // It died before moving head: nobody loses the message.
                assert_eq!(got.len(), 1, "{point}: lost");
            }
            assert!(m.try_send(&msg(3, 128)), "{point}: wedged");
            let mut last = None;
            for _ in 0..3 {
                last = last.or_else(|| m.try_recv());
            }
            assert_eq!(last, Some(msg(3, 128)), "{point}");
        });
    }
}

/// A consumer that dies after moving `head` past a two-cell message and
/// before freeing it, while a producer keeps trying to send a two-cell
/// message: the producer, blocked on the unfreed inner cell, finds the dead
/// consumer's claim through the frame's first cell and frees it, and its
/// message gets through (in an empty ring nothing else would free it).
#[test]
fn mpmc_sender_frees_a_dead_consumers_frame() {
    model_limited(2, None, || {
        crash::reset();
        let m = Arc::new(Model::new(2, false));
        assert!(m.try_send(&msg(1, 128)));
        let dying = {
            let m = m.clone();
            thread::spawn(move || crash::die_at("channel.recv.read", || m.try_recv()))
        };
        let mut sent = m.try_send(&msg(2, 128));
        dying.join().unwrap();
        sent = sent || m.try_send(&msg(2, 128));
        assert!(sent, "wedged: {}", m.dump());
        assert_eq!(m.try_recv(), Some(msg(2, 128)), "{}", m.dump());
        assert!(m.quiet(), "{}", m.dump());
    });
}

/// A consumer killed while freeing a three-cell message (its last cell
/// freed, the middle one not): a producer a lap later, whose frame starts
/// on the dead consumer's claim, still finds the claim and frees the rest.
#[test]
fn mpmc_consumer_killed_while_freeing() {
    model_limited(2, None, || {
        crash::reset();
        let m = Arc::new(Model::new(4, false));
        assert!(m.try_send(&msg(1, 150)));
        let dying = {
            let m = m.clone();
            thread::spawn(move || crash::die_at("channel.free.inner", || m.try_recv()))
        };
        let mut sent = m.try_send(&msg(2, 150));
        dying.join().unwrap();
        sent = sent || m.try_send(&msg(2, 150));
        assert!(sent, "wedged: {}", m.dump());
        assert_eq!(m.try_recv(), Some(msg(2, 150)), "{}", m.dump());
        assert!(m.quiet(), "{}", m.dump());
    });
}

/// SPSC: a producer and a consumer on a two-cell ring, messages of one
/// and two cells (padding), in order, exactly once.
#[test]
fn spsc_in_order_with_padding() {
    model(|| {
        crash::reset();
        let m = Arc::new(Model::new(2, true));
        let consumer = {
            let m = m.clone();
            thread::spawn(move || {
                let mut end = SpscEnd::default();
                let mut got = Vec::new();
                for _ in 0..8 {
                    if let Some(b) = m.spsc_recv(&mut end) {
                        got.push(b);
                    }
                    if got.len() == 3 {
                        break;
                    }
                    thread::yield_now();
                }
                got
            })
        };
        let mut end = SpscEnd::default();
        let mut sent = Vec::new();
        for (tag, len) in [(1u8, 10usize), (2, 100), (3, 1)] {
            for _ in 0..4 {
                if m.spsc_send(&mut end, &msg(tag, len)) {
                    sent.push(msg(tag, len));
                    break;
                }
                thread::yield_now();
            }
        }
        let got = consumer.join().unwrap();
        assert!(got.len() <= sent.len());
        assert_eq!(got[..], sent[..got.len()], "out of order or torn");
    });
}

/// Topic: a publisher overwriting a two-cell ring while a subscriber reads
/// (data written and copied in two halves, with a preemption point
/// between): every message returned is whole; lagging is reported.
#[test]
fn topic_reader_never_sees_a_torn_message() {
    use crate::layout::{TopicCell, TopicHeader};
    use crate::topic::{Cursor, Read, TopicCore};
    // The payload is modelled as relaxed atomic words (the standard model
    // of a seqlock's data), so that loom sees the reader's copy race with
    // the publisher's overwrite; the real ring copies with memcpy.
    struct T {
        header: Box<TopicHeader>,
        cells: Vec<TopicCell>,
        data: Vec<AtomicU64>,
        base: std::cell::UnsafeCell<Vec<u8>>,
        ring: RingShape,
    }
    // SAFETY: loom runs one thread at a time; data is reached through the protocol.
    unsafe impl Sync for T {}
    // SAFETY: as above.
    unsafe impl Send for T {}
    impl T {
        fn core(&self) -> TopicCore<'_> {
            // SAFETY: sized in the constructor below, alive as long as self.
            unsafe {
                TopicCore::new(
                    &self.header,
                    self.cells.as_ptr(),
                    (*self.base.get()).as_mut_ptr(),
                    &self.ring,
                )
            }
        }
        /// The 8 words of the cell whose payload pointer is `p`.
        fn words(&self, p: *const u8) -> &[AtomicU64] {
            // SAFETY: p was computed from base by TopicCore::payload.
            let off = unsafe { p.offset_from((*self.base.get()).as_ptr()) } as usize;
            &self.data[off / 8..off / 8 + 8]
        }
        fn publish(&self, tag: u8) {
            let core = self.core();
            let slot = core.prepare(64).unwrap();
            let words = self.words(core.payload(slot.idx));
            for (i, w) in words.iter().enumerate() {
                if i == 4 {
                    thread::yield_now();
                }
                w.store(tag as u64, crate::sync::Ordering::Relaxed);
            }
            core.publish(&slot, 64, 0);
        }
    }
    model_limited(3, None, || {
        let t = Arc::new(T {
            header: Box::new(TopicHeader {
                kind: crate::layout::kind::TOPIC,
                flags: 0,
                capacity: 128,
                cells: 2,
                one_lap: 2,
                max_message: 64,
                cells_offset: 0,
                data_offset: 0,
                reserved0: 0,
                tail: AtomicU64::new(0),
                newest: AtomicU64::new(u64::MAX),
                next_seq: AtomicU64::new(0),
                sub_waiters: AtomicU32::new(0),
                reserved1: 0,
                reserved2: [0; 4],
                oldest: AtomicU64::new(0),
                reserved3: [0; 7],
                lock: AtomicU32::new(0),
                lock_waiters: AtomicU32::new(0),
                reserved4: [0; 7],
            }),
            cells: (0..2)
                .map(|_| TopicCell {
                    seq: AtomicU64::new(0),
                    len: AtomicU32::new(0),
                    checksum: AtomicU32::new(0),
                })
                .collect(),
            data: (0..16).map(|_| AtomicU64::new(0)).collect(),
            base: std::cell::UnsafeCell::new(vec![0; 128]),
            ring: RingShape::new(2, 64, false),
        });
        t.publish(1);
        let reader = {
            let t = t.clone();
            thread::spawn(move || {
                let core = t.core();
                let mut cursor = Cursor {
                    next: 0,
                    expect: Some(0),
                };
                let mut out = Vec::new();
                for _ in 0..2 {
                    let mut buf = [0u64; 8];
                    let mut copy = |p: *const u8, len: usize| {
                        assert_eq!(len, 64);
                        for (i, w) in t.words(p).iter().enumerate() {
                            if i == 4 {
                                thread::yield_now();
                            }
                            buf[i] = w.load(crate::sync::Ordering::Relaxed);
                        }
                    };
                    match core.read(&mut cursor, &mut copy).unwrap() {
                        Read::Message { seq, .. } => {
                            assert!(buf.iter().all(|&b| b == buf[0]), "torn: {buf:?}");
                            assert_eq!(buf[0], seq + 1, "wrong message for seq {seq}");
                            out.push(seq);
                        }
                        Read::Lagged(missed) => assert!(missed >= 1),
                        Read::Empty(_) => {}
                    }
                }
                // `latest` during a publish: the previous message or the new
                // one, whole, never a frame that "does not fit".
                let mut buf = [0u64; 8];
                let mut copy = |p: *const u8, _len: usize| {
                    for (i, w) in t.words(p).iter().enumerate() {
                        buf[i] = w.load(crate::sync::Ordering::Relaxed);
                    }
                };
                let latest = core.latest(&mut copy);
                match latest {
                    Ok(Some(l)) => assert_eq!(buf[0], l.seq + 1, "latest is another message"),
                    other => panic!("latest during a publish: {other:?}"),
                }
                out
            })
        };
        t.publish(2);
        t.publish(3);
        let seen = reader.join().unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    });
}
