//! The heap of format version 4, in one process: freed space is reused
//! (churn in a small segment never runs out), handles to erased
//! structures stay stale after their memory is reused, wiping, many names
//! in one segment, and segments that grow.
//!
//! `SHMDS_HEAP_SEED` changes the seed of the random workloads (each
//! failure message prints the seed it ran with).

mod common;
mod heap_support;
use common::ShmName;
use heap_support::*;
use shmds::{ChannelOptions, EntryInfo, Error, Segment, TopicOptions};
use std::time::Duration;

/// The first table chunk of a segment created without a table capacity.
const DEFAULT_TABLE: u64 = shmds::DEFAULT_TABLE_CAPACITY as u64;

fn seed() -> u64 {
    std::env::var("SHMDS_HEAP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4ea9_5eed)
}

/// A segment of `size` bytes that cannot grow.
fn fixed(name: &ShmName, size: u64, table: u32) -> Segment {
    Segment::options()
        .size(size)
        .max_size(size)
        .table_capacity(table)
        .create(name.as_str())
        .unwrap()
}

fn entry(seg: &Segment, name: &str) -> EntryInfo {
    seg.entry(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no entry {name:?}"))
}

/// Whether two entries' blocks share any byte. `[offset, offset + size)`
/// works whether `size` counts the block header or not: with the header,
/// the range ends where the next block's data starts.
fn overlaps(a: &EntryInfo, b: &EntryInfo) -> bool {
    a.offset < b.offset + b.size && b.offset < a.offset + a.size
}

/// Create structures with `make` (named `reuse-0`, `reuse-1`, ...) until
/// one lies where `old` was: the allocator must reuse freed space by the
/// time nothing else is left. The others are kept. Returns the one that
/// overlaps `old`, with its entry.
fn reuse<T>(
    seg: &Segment,
    old: &EntryInfo,
    mut make: impl FnMut(&str) -> shmds::Result<T>,
) -> (T, EntryInfo) {
    for i in 0.. {
        let name = format!("reuse-{i}");
        match make(&name) {
            Ok(t) => {
                let info = entry(seg, &name);
                if overlaps(&info, old) {
                    return (t, info);
                }
            }
            Err(e) => panic!(
                "the block of erased {:?} (offset {}, {} bytes) was never reused; after {i} \
                 creations: {e}; heap {:?}",
                old.name,
                old.offset,
                old.size,
                seg.heap()
            ),
        }
    }
    unreachable!()
}

/// `bytes` bytes of the segment at `offset`, read through `Segment::as_ptr`.
fn raw(seg: &Segment, offset: u64, bytes: u64) -> Vec<u8> {
    assert!(offset + bytes <= seg.size());
    // SAFETY: the range lies inside the mapping (checked above), which
    // `seg` keeps alive; no other process writes this segment, and this
    // thread does not write it while the slice is alive.
    unsafe { std::slice::from_raw_parts(seg.as_ptr().add(offset as usize), bytes as usize) }
        .to_vec()
}

fn assert_stale<T: std::fmt::Debug>(what: &str, r: shmds::Result<T>) {
    match r {
        Err(Error::Stale { .. }) => {}
        other => panic!("{what} on a handle to an erased structure gave {other:?}, not Stale"),
    }
}

// ---------------------------------------------------------------------------
// (a) Churn

/// Ten thousand create/erase cycles of every kind and many sizes in a
/// 1 MiB segment that cannot grow, the live structures staying under half
/// of the heap: freed space is reused (never OutOfSpace), every new
/// structure starts zeroed, every structure keeps its contents until it is
/// erased, and the heap is sound throughout; once everything is erased it
/// is one free block again.
#[test]
fn churn_in_a_small_segment_never_runs_out() {
    const SIZE: u64 = 1 << 20;
    const CYCLES: u64 = 10_000;
    let seed = seed();
    let name = ShmName::new("heap-churn");
    // A first table chunk large enough that a name's probe window (8
    // entries) seldom fills with at most 100 names: the table rarely grows
    // into the heap.
    const TABLE: u64 = 512;
    let seg = fixed(&name, SIZE, TABLE as u32);
    let start = heap_sound(&seg, "new segment");
    assert_eq!(
        start.free_blocks, 1,
        "a new heap is one free block: {start:?}"
    );
    assert_eq!(start.used_bytes, 0, "{start:?}");
    assert_eq!(start.max_size, SIZE, "{start:?}");
    let mut churn = Churn::new(&seg, "s", seed);
    churn.pool = Some(300);
    churn.max_bytes = 24 << 10;
    churn.budget = start.heap_bytes * 45 / 100;
    churn.max_live = 100;
    let mut steps = 0u64;
    while churn.creates < CYCLES {
        churn
            .step()
            .unwrap_or_else(|e| panic!("seed {seed}, step {steps}: {e}"));
        steps += 1;
        if steps % 1000 == 0 {
            let ctx = format!("seed {seed}, step {steps}");
            let h = heap_sound(&seg, &ctx);
            let chunks = heap_table_chunks(TABLE, seg.table_capacity());
            assert_eq!(
                h.used_blocks,
                churn.live.len() as u64 + chunks,
                "{ctx}: one used block per live structure and per table chunk in the heap \
                 (table capacity {}): {h:?}",
                seg.table_capacity()
            );
            assert_eq!(h.size, SIZE, "{ctx}: a segment with max_size = size grew");
        }
    }
    let ctx = format!("seed {seed}, after {} cycles", churn.creates);
    heap_sound(&seg, &ctx);
    churn.erase_all().unwrap_or_else(|e| panic!("{ctx}: {e}"));
    assert!(churn.erases >= CYCLES);
    // One free block, unless the table grew into the heap (a name's probe
    // window can fill before the chunk does): then only the table chunks
    // are left between the free blocks.
    eprintln!(
        "{ctx}: table capacity {} (first chunk {TABLE})",
        seg.table_capacity()
    );
    let h = assert_all_free(&seg, TABLE, &ctx);
    assert_eq!(h.heap_bytes, start.heap_bytes, "{ctx}");
    if seg.table_capacity() == TABLE {
        assert_eq!(h.largest_free, start.heap_bytes, "{ctx}");
    }
    assert_eq!(seg.size(), SIZE, "{ctx}");
}

/// The largest structure that fits is the whole heap, again after churn
/// (free blocks coalesce into one, and the allocator finds it).
#[test]
fn freed_blocks_coalesce_into_the_largest_allocation() {
    const SIZE: u64 = 512 << 10;
    let name = ShmName::new("heap-coalesce");
    let seg = fixed(&name, SIZE, 64);
    let largest = seg.heap().unwrap().largest_free;
    // Interleaved small blocks, erased in an order that needs merges with
    // the previous block, the next one, and both.
    let n = 40;
    for i in 0..n {
        seg.create_array::<u64>(&format!("a{i}"), 100 + i as usize)
            .unwrap();
    }
    let order: Vec<u64> = (0..n)
        .step_by(3)
        .chain((2..n).step_by(3))
        .chain((1..n).step_by(3))
        .collect();
    for i in order {
        seg.erase(&format!("a{i}")).unwrap();
        heap_sound(&seg, &format!("after erasing a{i}"));
    }
    let h = assert_all_free(&seg, 64, "all small blocks erased");
    assert_eq!(h.largest_free, largest, "{h:?}");
    // One array as large as the heap allows: the whole free block minus the
    // block and array headers.
    let mut len = (largest - 256) / 8;
    let big = loop {
        match seg.create_array::<u64>("big", len as usize) {
            Ok(a) => break a,
            Err(Error::OutOfSpace { .. }) if len > (largest - 4096) / 8 => len -= 8,
            Err(e) => panic!("an array of {len} words in a heap with {largest} free bytes: {e}"),
        }
    };
    big.set(len as usize - 1, 7).unwrap();
    let h = heap_sound(&seg, "one big array");
    assert!(h.free_bytes < 4096, "{h:?}");
    seg.erase("big").unwrap();
    assert_all_free(&seg, 64, "big array erased");
}

// ---------------------------------------------------------------------------
// (b) Stale handles after reuse

/// The segment for the stale-handle tests: small and fixed, so the space
/// of an erased structure is reused soon.
fn stale_segment(tag: &str) -> (ShmName, Segment) {
    let name = ShmName::new(tag);
    let seg = fixed(&name, 256 << 10, 64);
    seg.create_array::<u8>("guard-before", 1).unwrap();
    (name, seg)
}

const NEW: u64 = 0x5eed_0000_0000_0000;

#[test]
fn stale_array_handle_after_its_memory_is_reused() {
    let (_name, seg) = stale_segment("heap-stale-array");
    let old = seg.create_array::<u64>("victim", 500).unwrap();
    old.write(0, &[0x0bad; 500]).unwrap();
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    // Re-created under the same name first (the same table entry, probably
    // the same block), then by other names until the block is reused.
    let again = seg.create_array::<u64>("victim", 500).unwrap();
    let again_info = entry(&seg, "victim");
    let (new, new_info) = if overlaps(&again_info, &info) {
        (again, again_info)
    } else {
        reuse(&seg, &info, |n| seg.create_array::<u64>(n, 500))
    };
    let fresh = new.to_vec().unwrap();
    assert!(fresh.iter().all(|&w| w == 0), "reused memory is zeroed");
    let values: Vec<u64> = (0..500).map(|i| NEW + i).collect();
    new.write(0, &values).unwrap();

    assert_stale("get", old.get(0));
    assert_stale("get (last)", old.get(499));
    assert_stale("set", old.set(0, 1));
    let mut out = [0u64; 4];
    assert_stale("read", old.read(0, &mut out));
    assert_eq!(out, [0; 4], "a stale read copied something");
    assert_stale("write", old.write(0, &[2; 4]));
    assert_stale("to_vec", old.to_vec());
    assert_stale("load", old.load(1));
    assert_stale("store", old.store(1, 3));
    assert_stale("fetch_add", old.fetch_add(2, 4));
    assert_stale("compare_exchange", old.compare_exchange(3, NEW + 3, 5));
    assert_eq!(
        new.to_vec().unwrap(),
        values,
        "a stale handle wrote into {new_info:?}"
    );
    heap_sound(&seg, "stale array");
}

#[test]
fn stale_array_handle_when_a_queue_reuses_its_memory() {
    let (_name, seg) = stale_segment("heap-stale-cross");
    let old = seg.create_array::<u64>("victim", 400).unwrap();
    old.write(0, &[u64::MAX; 400]).unwrap();
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    let (q, _) = reuse(&seg, &info, |n| seg.create_queue::<u64>(n, 180));
    assert!(q.is_empty());
    assert!(
        matches!(q.try_pop(), Ok(None)),
        "a queue on reused memory starts empty"
    );
    for i in 0..100 {
        assert!(q.try_push(NEW + i).unwrap());
    }
    assert_stale("set", old.set(0, 0));
    assert_stale("write", old.write(0, &[0; 400]));
    assert_stale("store", old.store(399, 0));
    assert_stale("to_vec", old.to_vec());
    for i in 0..100 {
        assert_eq!(q.try_pop().unwrap(), Some(NEW + i));
    }
    assert!(matches!(q.try_pop(), Ok(None)));
    heap_sound(&seg, "stale array, queue on its memory");
}

#[test]
fn stale_queue_handle_after_its_memory_is_reused() {
    let (_name, seg) = stale_segment("heap-stale-queue");
    let old = seg.create_queue::<u64>("victim", 64).unwrap();
    for i in 1..=3 {
        assert!(old.try_push(i).unwrap());
    }
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    let (new, _) = reuse(&seg, &info, |n| seg.create_queue::<u64>(n, 64));
    assert!(new.is_empty(), "a queue on reused memory starts empty");
    for i in 0..10 {
        assert!(new.try_push(NEW + i).unwrap());
    }
    let short = Some(Duration::from_millis(10));
    assert_stale("check", old.check());
    assert_stale("try_push", old.try_push(9));
    assert_stale("try_pop", old.try_pop());
    assert_stale("push", old.push(9, short));
    assert_stale("pop", old.pop(short));
    assert_stale("try_push_slice", old.try_push_slice(&[9, 9]));
    let mut out = [0u64; 4];
    assert_stale("try_pop_into", old.try_pop_into(&mut out));
    assert_stale("push_slice", old.push_slice(&[9], short));
    assert_stale("pop_into", old.pop_into(&mut out, short));
    assert_eq!(out, [0; 4], "a stale pop copied something");
    assert_eq!(new.len(), 10);
    for i in 0..10 {
        assert_eq!(
            new.try_pop().unwrap(),
            Some(NEW + i),
            "the stale handle took from the new queue"
        );
    }
    assert!(matches!(new.try_pop(), Ok(None)));
    heap_sound(&seg, "stale queue");
}

#[test]
fn stale_stack_handle_after_its_memory_is_reused() {
    let (_name, seg) = stale_segment("heap-stale-stack");
    let old = seg.create_stack::<u64>("victim", 64).unwrap();
    assert!(old.try_push(1).unwrap());
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    let (new, _) = reuse(&seg, &info, |n| seg.create_stack::<u64>(n, 64));
    assert!(new.is_empty(), "a stack on reused memory starts empty");
    for i in 0..10 {
        assert!(new.try_push(NEW + i).unwrap());
    }
    let short = Some(Duration::from_millis(10));
    assert_stale("try_push", old.try_push(9));
    assert_stale("try_pop", old.try_pop());
    assert_stale("push", old.push(9, short));
    assert_stale("pop", old.pop(short));
    let mut out = [0u64; 4];
    assert_stale("try_pop_into", old.try_pop_into(&mut out));
    assert_stale("try_push_slice", old.try_push_slice(&[9]));
    assert_eq!(out, [0; 4], "a stale pop copied something");
    for i in (0..10).rev() {
        assert_eq!(
            new.try_pop().unwrap(),
            Some(NEW + i),
            "the stale handle changed the new stack"
        );
    }
    assert!(matches!(new.try_pop(), Ok(None)));
    heap_sound(&seg, "stale stack");
}

#[test]
fn stale_map_handle_after_its_memory_is_reused() {
    let (_name, seg) = stale_segment("heap-stale-map");
    let old = seg.create_map::<u64, u64>("victim", 64).unwrap();
    for k in 1..=8 {
        old.insert(k, k).unwrap();
    }
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    let (new, _) = reuse(&seg, &info, |n| seg.create_map::<u64, u64>(n, 64));
    assert!(new.is_empty(), "a map on reused memory starts empty");
    assert_eq!(new.iter().count(), 0, "a map on reused memory starts empty");
    for k in 1..=8 {
        assert_eq!(
            new.get(&k).unwrap(),
            None,
            "a map on reused memory starts empty"
        );
        new.insert(k, NEW + k).unwrap();
    }
    assert_stale("check", old.check());
    assert_stale("get", old.get(&1));
    assert_stale("contains_key", old.contains_key(&2));
    assert_stale("insert", old.insert(3, 0));
    assert_stale("insert (new key)", old.insert(30, 0));
    assert_stale("get_or_insert", old.get_or_insert(4, 0));
    assert_stale("remove", old.remove(&5));
    assert_stale("fetch_add", old.fetch_add(&6, 1));
    assert_stale("compare_exchange", old.compare_exchange(&7, NEW + 7, 0));
    assert_stale("clear", old.clear());
    let seen: Vec<(u64, u64)> = old.iter().collect();
    assert!(
        !seen.iter().any(|&(k, v)| v == NEW + k),
        "iterating a stale map yielded the new map's pairs: {seen:x?}"
    );
    let mut got: Vec<(u64, u64)> = new.iter().collect();
    got.sort();
    let want: Vec<(u64, u64)> = (1..=8).map(|k| (k, NEW + k)).collect();
    assert_eq!(got, want, "the stale handle changed the new map");
    heap_sound(&seg, "stale map");
}

/// Attached ends of an erased channel: every call is stale, and dropping
/// them (which detaches) must not detach the ends of the channel that now
/// lives in the same memory, nor release its messages.
#[test]
fn stale_channel_ends_after_its_memory_is_reused() {
    let (_name, seg) = stale_segment("heap-stale-channel");
    let old = seg
        .create_channel("victim", ChannelOptions::new(4096))
        .unwrap();
    let mut old_tx = old.sender().unwrap();
    let mut old_rx = old.receiver().unwrap();
    old_tx.try_send(b"old message").unwrap();
    seg.create_array::<u8>("guard-after", 1).unwrap();
    let info = entry(&seg, "victim");
    seg.erase("victim").unwrap();
    let (new, _) = reuse(&seg, &info, |n| {
        seg.create_channel(n, ChannelOptions::new(4096))
    });
    assert!(new.is_empty(), "a channel on reused memory starts empty");
    assert!(
        !new.has_senders() && !new.has_receivers(),
        "a new channel has no ends"
    );
    let mut tx = new.sender().unwrap();
    let mut rx = new.receiver().unwrap();
    for j in 0..3u8 {
        tx.try_send(&[j; 100]).unwrap();
    }
    let mut buf = Vec::new();
    assert_stale("Channel::check", old.check());
    assert_stale("Channel::sender", old.sender().map(drop));
    assert_stale("Channel::receiver", old.receiver().map(drop));
    assert_stale("Sender::try_send", old_tx.try_send(b"x"));
    assert_stale(
        "Sender::send_timeout",
        old_tx.send_timeout(b"x", Duration::from_millis(10)),
    );
    assert_stale("Sender::try_reserve", old_tx.try_reserve(8).map(drop));
    assert_stale("Receiver::try_recv", old_rx.try_recv(&mut buf));
    assert!(buf.is_empty(), "a stale receive copied {buf:?}");
    assert_stale(
        "Receiver::recv_timeout",
        old_rx.recv_timeout(&mut buf, Duration::from_millis(10)),
    );
    assert_stale(
        "Receiver::try_recv_ref",
        old_rx.try_recv_ref().map(|m| m.len()),
    );
    drop(old_tx);
    drop(old_rx);
    assert!(
        new.has_senders(),
        "dropping a stale sender detached the new channel's sender"
    );
    assert!(
        new.has_receivers(),
        "dropping a stale receiver detached the new channel's receiver"
    );
    assert_eq!(new.len(), 3);
    for j in 0..3u8 {
        rx.try_recv(&mut buf).unwrap();
        assert_eq!(buf, [j; 100]);
    }
    tx.try_send(b"still works").unwrap();
    rx.try_recv(&mut buf).unwrap();
    assert_eq!(buf, b"still works");
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty { .. })));
    heap_sound(&seg, "stale channel ends");
}

/// A message held in place (`recv_ref`) and a reservation held open
/// across the erase: releasing them afterwards touches only the erased
/// channel, never the one that reused its memory.
#[test]
fn stale_channel_message_and_reservation_after_reuse() {
    for commit in [false, true] {
        let (_name, seg) = stale_segment("heap-stale-held");
        let old = seg
            .create_channel("victim", ChannelOptions::new(4096))
            .unwrap();
        let mut old_tx = old.sender().unwrap();
        let mut old_rx = old.receiver().unwrap();
        old_tx.try_send(&[0xee; 200]).unwrap();
        old_tx.try_send(&[0xef; 200]).unwrap();
        let held = old_rx.try_recv_ref().unwrap();
        let mut writer = old.sender().unwrap();
        let mut open = writer.try_reserve(300).unwrap();
        open.fill(0xdd);
        seg.create_array::<u8>("guard-after", 1).unwrap();
        let info = entry(&seg, "victim");
        seg.erase("victim").unwrap();
        let (new, _) = reuse(&seg, &info, |n| {
            seg.create_channel(n, ChannelOptions::new(4096))
        });
        let mut tx = new.sender().unwrap();
        let mut rx = new.receiver().unwrap();
        for j in 0..4u8 {
            tx.try_send(&[j; 150]).unwrap();
        }
        drop(held);
        if commit {
            open.commit();
        } else {
            drop(open);
        }
        drop(writer);
        drop(old_tx);
        drop(old_rx);
        let mut buf = Vec::new();
        for j in 0..4u8 {
            rx.try_recv(&mut buf).unwrap();
            assert_eq!(
                buf, [j; 150],
                "commit {commit}: the new channel's message {j}"
            );
        }
        assert!(
            matches!(rx.try_recv(&mut buf), Err(Error::Empty { .. })),
            "commit {commit}: the new channel received {buf:x?} it was never sent"
        );
        assert!(new.has_senders() && new.has_receivers(), "commit {commit}");
        heap_sound(
            &seg,
            &format!("held message and reservation, commit {commit}"),
        );
    }
}

#[test]
fn stale_topic_handles_after_its_memory_is_reused() {
    for commit in [false, true] {
        let (_name, seg) = stale_segment("heap-stale-topic");
        let old = seg.create_topic("victim", TopicOptions::new(4096)).unwrap();
        old.publish(b"old").unwrap();
        let mut old_sub = old.subscribe_from_oldest();
        let open = old.reserve(100).unwrap();
        seg.create_array::<u8>("guard-after", 1).unwrap();
        let info = entry(&seg, "victim");
        seg.erase("victim").unwrap();
        let (new, _) = reuse(&seg, &info, |n| {
            seg.create_topic(n, TopicOptions::new(4096))
        });
        assert_eq!(new.published(), 0, "a topic on reused memory starts empty");
        for j in 0..3u8 {
            new.publish(&[j; 80]).unwrap();
        }
        let mut buf = Vec::new();
        assert_stale("Topic::check", old.check());
        assert_stale("Topic::publish", old.publish(b"x"));
        assert_stale("Topic::latest", old.latest(&mut buf));
        assert_stale("Subscriber::try_recv", old_sub.try_recv(&mut buf));
        assert_stale("Subscriber::recv_latest", old_sub.recv_latest(&mut buf));
        assert!(buf.is_empty(), "a stale subscriber copied {buf:x?}");
        if commit {
            open.commit();
        } else {
            drop(open);
        }
        assert_eq!(
            new.published(),
            3,
            "commit {commit}: a stale reservation published"
        );
        assert_eq!(new.latest(&mut buf).unwrap(), Some(2), "commit {commit}");
        assert_eq!(buf, [2; 80], "commit {commit}");
        let mut sub = new.subscribe_from_oldest();
        for j in 0..3u8 {
            sub.try_recv(&mut buf).unwrap();
            assert_eq!(buf, [j; 80], "commit {commit}");
        }
        heap_sound(&seg, &format!("stale topic, commit {commit}"));
    }
}

// ---------------------------------------------------------------------------
// (c) Wiping, and zeroed new blocks

const SECRET: u8 = 0xa5;

/// An array of `n` secret bytes between two guards; returns its entry.
fn secret(seg: &Segment, name: &str, n: u64) -> EntryInfo {
    seg.create_array::<u8>(&format!("{name}-before"), 1)
        .unwrap();
    let a = seg.create_array::<u8>(name, n as usize).unwrap();
    a.write(0, &vec![SECRET; n as usize]).unwrap();
    seg.create_array::<u8>(&format!("{name}-after"), 1).unwrap();
    let info = entry(seg, name);
    // The array header (one line) and the elements, from the entry offset.
    assert!(
        raw(seg, info.offset + 64, n).iter().all(|&b| b == SECRET),
        "{info:?}"
    );
    info
}

/// Array header and elements of an erased array: all zero.
fn assert_wiped(seg: &Segment, info: &EntryInfo, n: u64, ctx: &str) {
    let bytes = raw(seg, info.offset, 64 + n);
    let dirty: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b != 0)
        .map(|(i, _)| i)
        .collect();
    assert!(
        dirty.is_empty(),
        "{ctx}: {} of {} bytes at the erased block ({info:?}) are not zero, first at +{}",
        dirty.len(),
        bytes.len(),
        dirty[0]
    );
}

#[test]
fn erase_and_wipe_zeroes_the_block() {
    let name = ShmName::new("heap-wipe");
    let seg = fixed(&name, 256 << 10, 64);
    let info = secret(&seg, "secret", 5000);
    let before = seg.heap().unwrap();
    seg.erase_and_wipe("secret").unwrap();
    assert!(seg.entry("secret").unwrap().is_none());
    assert_wiped(&seg, &info, 5000, "erase_and_wipe");
    let after = heap_sound(&seg, "after erase_and_wipe");
    // Free (maybe merged with a neighbouring free block).
    assert!(
        after.free_bytes >= before.free_bytes + 5000 && after.free_blocks <= before.free_blocks + 1,
        "the wiped block is free: before {before:?}, after {after:?}"
    );
    // A wiped queue and a wiped map too.
    let q = seg.create_queue::<u64>("q", 200).unwrap();
    for _ in 0..200 {
        assert!(q.try_push(u64::MAX).unwrap());
    }
    let m = seg.create_map::<u64, u64>("m", 64).unwrap();
    for k in 0..40 {
        m.insert(u64::MAX - k, u64::MAX).unwrap();
    }
    seg.create_array::<u8>("after-qm", 1).unwrap();
    let (qi, mi) = (entry(&seg, "q"), entry(&seg, "m"));
    seg.erase_and_wipe("q").unwrap();
    seg.erase_and_wipe("m").unwrap();
    for (info, data) in [(qi, 192 + 200 * 16), (mi, 1024)] {
        let bytes = raw(&seg, info.offset, data);
        assert!(
            bytes.iter().all(|&b| b == 0),
            "wiped {:?} left data: {info:?}",
            info.name
        );
    }
    assert!(matches!(
        seg.erase_and_wipe("secret"),
        Err(Error::EntryNotFound { .. })
    ));
    heap_sound(&seg, "after wiping a queue and a map");
}

#[test]
fn wipe_on_erase_zeroes_every_erased_block() {
    let name = ShmName::new("heap-wipe-all");
    let seg = Segment::options()
        .size(256 << 10)
        .max_size(256 << 10)
        .wipe_on_erase(true)
        .create(name.as_str())
        .unwrap();
    let info = secret(&seg, "secret", 3000);
    seg.erase("secret").unwrap();
    assert_wiped(&seg, &info, 3000, "erase with wipe_on_erase");
    // Also when a second handle opened the segment without the option.
    let other = Segment::open(name.as_str()).unwrap();
    let info = secret(&other, "again", 2000);
    other.erase("again").unwrap();
    assert_wiped(
        &other,
        &info,
        2000,
        "erase through another handle with wipe_on_erase",
    );
    heap_sound(&seg, "wipe_on_erase");
}

/// Without wiping, the data stays in the freed block; a structure given
/// that memory again still starts zeroed, of every kind, and also when it
/// spans several freed blocks (their old block headers are inside it).
#[test]
fn new_structures_are_zeroed_on_reused_memory() {
    let name = ShmName::new("heap-dirty");
    let seg = fixed(&name, 256 << 10, 64);
    let dirty = |seg: &Segment, name: &str| {
        let info = secret(seg, name, 8000);
        seg.erase(name).unwrap();
        info
    };
    let old = dirty(&seg, "d1");
    let (a, _) = reuse(&seg, &old, |n| seg.create_array::<u64>(n, 1000));
    let got = a.to_vec().unwrap();
    assert!(
        got.iter().all(|&w| w == 0),
        "an array on dirty memory is not zeroed"
    );
    drop(a);
    erase_everything(&seg);

    let old = dirty(&seg, "d2");
    let (q, _) = reuse(&seg, &old, |n| seg.create_queue::<u64>(n, 400));
    assert!(q.is_empty());
    assert!(
        matches!(q.try_pop(), Ok(None)),
        "a queue on dirty memory is not empty"
    );
    for i in 0..400 {
        assert!(q.try_push(i).unwrap());
    }
    for i in 0..400 {
        assert_eq!(q.try_pop().unwrap(), Some(i));
    }
    drop(q);
    erase_everything(&seg);

    let old = dirty(&seg, "d3");
    let (m, _) = reuse(&seg, &old, |n| seg.create_map::<u64, u64>(n, 128));
    assert!(
        m.is_empty() && m.iter().count() == 0,
        "a map on dirty memory is not empty"
    );
    for k in 0..64 {
        assert_eq!(m.get(&k).unwrap(), None);
        assert_eq!(m.insert(k, k).unwrap(), None);
    }
    drop(m);
    erase_everything(&seg);

    let old = dirty(&seg, "d4");
    let (c, _) = reuse(&seg, &old, |n| {
        seg.create_channel(n, ChannelOptions::new(4096))
    });
    assert!(
        c.is_empty() && c.used_bytes() == 0,
        "a channel on dirty memory is not empty"
    );
    let mut rx = c.receiver().unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        rx.try_recv(&mut buf),
        Err(Error::Empty { .. } | Error::Disconnected { .. })
    ));
    drop(rx);
    drop(c);
    erase_everything(&seg);

    // Three adjacent dirty arrays, erased (their blocks coalesce), then one
    // array covering all of them.
    for i in 0..3 {
        seg.create_array::<u8>(&format!("x{i}"), 3000)
            .unwrap()
            .write(0, &[SECRET; 3000])
            .unwrap();
    }
    let first = entry(&seg, "x0");
    for i in [0, 2, 1] {
        seg.erase(&format!("x{i}")).unwrap();
    }
    let (wide, _) = reuse(&seg, &first, |n| seg.create_array::<u8>(n, 9000));
    let got = wide.to_vec().unwrap();
    let dirty: Vec<usize> = (0..got.len()).filter(|&i| got[i] != 0).collect();
    assert!(
        dirty.is_empty(),
        "an array over three freed blocks is not zeroed at {} bytes, first at {}",
        dirty.len(),
        dirty[0]
    );
    heap_sound(&seg, "zeroed on reuse");
}

// ---------------------------------------------------------------------------
// (d) Many names

#[test]
fn ten_thousand_names_in_one_segment() {
    const N: u64 = 10_000;
    let name = ShmName::new("heap-names");
    let seg = Segment::options()
        .size(16 << 20)
        .create(name.as_str())
        .unwrap();
    assert_eq!(seg.table_capacity(), DEFAULT_TABLE);
    let key = |i: u64| format!("name-{i:05}");
    for i in 0..N {
        seg.create_array::<u64>(&key(i), 1)
            .unwrap_or_else(|e| panic!("creating name {i}: {e}"))
            .set(0, i)
            .unwrap();
    }
    assert!(seg.table_capacity() >= N, "{}", seg.table_capacity());
    let entries = seg.entries().unwrap();
    assert_eq!(entries.len(), N as usize);
    let mut names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, (0..N).map(key).collect::<Vec<_>>());
    for i in 0..N {
        assert_eq!(seg.open_array::<u64>(&key(i)).unwrap().get(0).unwrap(), i);
    }
    assert!(matches!(
        seg.create_array::<u64>(&key(1234), 1),
        Err(Error::EntryExists { .. })
    ));
    heap_sound(&seg, "10,000 names");
    // A second handle, opened now, finds them all too.
    let other = Segment::open(name.as_str()).unwrap();
    assert_eq!(other.entries().unwrap().len(), N as usize);
    assert_eq!(other.table_capacity(), seg.table_capacity());
    assert_eq!(
        other
            .open_array::<u64>(&key(N - 1))
            .unwrap()
            .get(0)
            .unwrap(),
        N - 1
    );

    for i in (0..N).step_by(2) {
        seg.erase(&key(i)).unwrap();
    }
    assert_eq!(seg.entries().unwrap().len(), (N / 2) as usize);
    for i in 0..N {
        let found = other.entry(&key(i)).unwrap().is_some();
        assert_eq!(found, i % 2 == 1, "{}", key(i));
    }
    assert!(matches!(
        seg.open_array::<u64>(&key(0)),
        Err(Error::EntryNotFound { .. })
    ));
    heap_sound(&seg, "half erased");
    let capacity = seg.table_capacity();
    for i in (0..N).step_by(2) {
        seg.create_array::<u64>(&key(i), 1)
            .unwrap()
            .set(0, i + N)
            .unwrap();
    }
    assert_eq!(
        seg.table_capacity(),
        capacity,
        "re-creating erased names reuses their entries"
    );
    assert_eq!(seg.entries().unwrap().len(), N as usize);
    for i in 0..N {
        let want = if i % 2 == 0 { i + N } else { i };
        assert_eq!(
            other.open_array::<u64>(&key(i)).unwrap().get(0).unwrap(),
            want
        );
    }
    heap_sound(&seg, "re-created");
    erase_everything(&seg);
    assert_all_free(&seg, DEFAULT_TABLE, "all 10,000 erased");
}

#[test]
fn table_grows_past_its_first_chunk() {
    let name = ShmName::new("heap-table");
    let seg = Segment::options()
        .size(1 << 20)
        .table_capacity(4)
        .create(name.as_str())
        .unwrap();
    assert_eq!(seg.table_capacity(), 4);
    for i in 0..100 {
        seg.create_queue::<u32>(&format!("q{i}"), 4)
            .unwrap()
            .try_push(i)
            .unwrap();
    }
    assert!(seg.table_capacity() >= 100);
    // A stated table capacity is the first chunk's: it still matches.
    Segment::options()
        .table_capacity(4)
        .open(name.as_str())
        .unwrap();
    for i in 0..100 {
        assert_eq!(
            seg.open_queue::<u32>(&format!("q{i}"))
                .unwrap()
                .try_pop()
                .unwrap(),
            Some(i)
        );
    }
    heap_sound(&seg, "table of 100 names from a first chunk of 4");
    erase_everything(&seg);
    assert_all_free(&seg, 4, "all erased");
}

// ---------------------------------------------------------------------------
// (e) Growth

#[test]
fn segment_grows_and_an_early_opener_sees_the_new_structures() {
    const START: u64 = 64 << 10;
    const MAX: u64 = 64 << 20;
    let name = ShmName::new("heap-grow");
    let seg = Segment::options()
        .size(START)
        .max_size(MAX)
        .table_capacity(16)
        .create(name.as_str())
        .unwrap();
    assert_eq!(seg.size(), START);
    assert_eq!(seg.heap().unwrap().max_size, MAX);
    assert_eq!(seg.max_size(), MAX);
    // Opened while the segment is small; so is a structure it holds.
    let early = Segment::open(name.as_str()).unwrap();
    let base = early.as_ptr();
    assert_eq!(early.size(), START);
    let first = seg.create_array::<u64>("first", 16).unwrap();
    first.set(0, 1).unwrap();
    let early_first = early.open_array::<u64>("first").unwrap();

    // Structures of growing sizes, made alternately through both handles,
    // until the segment is 16 times larger.
    let mut made = Vec::new();
    let mut sizes = vec![seg.size()];
    let mut i = 0u64;
    while seg.size() < 16 * START * 4 {
        let len: u64 = 1024 << (i % 6);
        let (maker, user) = if i % 3 == 2 {
            (&early, &seg)
        } else {
            (&seg, &early)
        };
        let name = format!("g{i}");
        let a = maker
            .create_array::<u64>(&name, len as usize)
            .unwrap_or_else(|e| panic!("{name} of {len} words at size {}: {e}", maker.size()));
        a.write(0, &(0..len).map(|k| k ^ i).collect::<Vec<_>>())
            .unwrap();
        // The other handle opens and uses it at once, wherever it lies.
        let b = user.open_array::<u64>(&name).unwrap();
        assert_eq!(b.get(len as usize - 1).unwrap(), (len - 1) ^ i);
        b.set(0, u64::MAX - i).unwrap();
        assert_eq!(a.get(0).unwrap(), u64::MAX - i);
        made.push((name, len));
        if *sizes.last().unwrap() != seg.size() {
            sizes.push(seg.size());
        }
        i += 1;
    }
    assert!(
        sizes.len() >= 3,
        "the segment grew in fewer steps than expected: {sizes:?}"
    );
    for w in sizes.windows(2) {
        assert!(
            w[0] < w[1] && w[1] % 4096 == 0 && w[1] <= MAX,
            "sizes {sizes:?}"
        );
    }
    assert_eq!(
        early.size(),
        seg.size(),
        "both handles see the current size"
    );
    assert_eq!(early.as_ptr(), base, "a mapping never moves");
    // Handles opened before the growth still work.
    assert_eq!(early_first.get(0).unwrap(), 1);
    early_first.set(15, 15).unwrap();
    assert_eq!(first.get(15).unwrap(), 15);
    // Everything, through a handle opened now and through the early one.
    let late = Segment::open(name.as_str()).unwrap();
    assert_eq!(late.size(), seg.size());
    for (k, (name, len)) in made.iter().enumerate() {
        for s in [&late, &early] {
            let a = s.open_array::<u64>(name).unwrap();
            let got = a.to_vec().unwrap();
            assert_eq!(got.len() as u64, *len);
            assert_eq!(got[0], u64::MAX - k as u64, "{name}");
            assert!((1..*len).all(|j| got[j as usize] == j ^ k as u64), "{name}");
        }
    }
    heap_sound(&seg, "grown");
    heap_sound(&early, "grown, through the early handle");
    erase_everything(&seg);
    let h = assert_all_free(&seg, 16, "grown, then all erased");
    assert_eq!(h.size, seg.size(), "a segment does not shrink");
}

#[test]
fn growth_stops_at_max_size_with_out_of_space() {
    const START: u64 = 64 << 10;
    const MAX: u64 = 4 << 20;
    let name = ShmName::new("heap-max");
    let seg = Segment::options()
        .size(START)
        .max_size(MAX)
        .create(name.as_str())
        .unwrap();
    // More than the maximum at once.
    let err = seg
        .create_array::<u8>("huge", 2 * MAX as usize)
        .unwrap_err();
    match &err {
        Error::OutOfSpace { requested, .. } => assert!(*requested >= 2 * MAX, "{err}"),
        other => panic!("an array past max_size gave {other:?}, not OutOfSpace"),
    }
    let msg = err.to_string();
    assert!(msg.contains("out of space"), "{msg}");
    assert!(
        msg.to_lowercase().contains("max"),
        "the message should say the maximum size was reached: {msg}"
    );
    assert!(
        seg.size() < MAX,
        "a refused request did not grow the segment"
    );
    // Fill it up in 256 KiB steps.
    let mut n = 0;
    let err = loop {
        match seg.create_array::<u8>(&format!("b{n}"), 256 << 10) {
            Ok(a) => a.set((256 << 10) - 1, 1).unwrap(),
            Err(e) => break e,
        }
        n += 1;
        assert!(
            n < 100,
            "{n} arrays of 256 KiB in a segment of at most 4 MiB"
        );
    };
    assert!(matches!(err, Error::OutOfSpace { .. }), "{err}");
    assert!(n >= 12, "only {n} arrays of 256 KiB fit in 4 MiB");
    assert!(
        seg.size() <= MAX && seg.size() > MAX - (512 << 10),
        "size {}",
        seg.size()
    );
    // Smaller ones still fit in what is left, and the heap is sound.
    seg.create_array::<u8>("small", 100).unwrap();
    heap_sound(&seg, "full");
    erase_everything(&seg);
    assert_all_free(&seg, DEFAULT_TABLE, "full, then all erased");
    // Without max_size, a small segment may grow to 4 GiB.
    let default_name = ShmName::new("heap-default-max");
    let default = Segment::create(default_name.as_str(), START).unwrap();
    assert_eq!(default.heap().unwrap().max_size, 4 << 30);
    assert_eq!(default.max_size(), shmds::DEFAULT_MAX_SIZE);
    // A segment whose max_size is its size never grows.
    let fixed_name = ShmName::new("heap-nogrow");
    let small = fixed(&fixed_name, START, 16);
    let err = small.create_array::<u8>("big", START as usize).unwrap_err();
    assert!(matches!(err, Error::OutOfSpace { .. }), "{err}");
    assert_eq!(small.size(), START);
}
