"""The heap of format version 4 from Python: freed space is reused (churn
never runs out), erase(name, wipe=True) zeroes the memory, seg.heap
statistics, segments that grow up to max_size, stale handles after their
memory was reused, and 10,000 names in one segment."""

import queue
import random

import numpy as np
import pytest

import shmds

FIELDS = (
    "size",
    "max_size",
    "heap_bytes",
    "used_bytes",
    "free_bytes",
    "largest_free",
    "used_blocks",
    "free_blocks",
)


def stats(seg):
    """seg.heap as a dict of the HeapStats fields (a mapping or an object
    with those attributes; a method or a property)."""
    h = seg.heap
    if callable(h):
        h = h()
    if hasattr(h, "keys"):
        return {f: int(h[f]) for f in FIELDS}
    return {f: int(getattr(h, f)) for f in FIELDS}


def sound(seg):
    """check() is clean and the statistics add up."""
    assert seg.check() == []
    h = stats(seg)
    assert h["size"] == seg.size, h
    assert h["max_size"] >= h["size"], h
    assert h["free_bytes"] + h["used_bytes"] == h["heap_bytes"], h
    assert h["largest_free"] <= h["free_bytes"], h
    assert h["free_blocks"] <= h["used_blocks"] + 1, h
    return h


def shm_bytes(segname):
    with open(f"/dev/shm/{segname}", "rb") as f:
        return f.read()


def test_heap_statistics(segname):
    with shmds.Segment(segname, 1 << 20, create=True, max_size=1 << 20) as seg:
        start = sound(seg)
        assert start["size"] == 1 << 20 and start["max_size"] == 1 << 20
        assert start["free_blocks"] == 1, start
        assert start["used_blocks"] == 0 and start["used_bytes"] == 0, start
        assert start["largest_free"] == start["heap_bytes"] == start["free_bytes"], start
        a = seg.array("a", "<u8", 1000)
        b = seg.array("b", "<u8", 10)
        h = sound(seg)
        assert h["used_blocks"] == 2 and h["used_bytes"] >= 8080, h
        a.close()
        seg.erase("a")
        freed = sound(seg)
        assert freed["free_bytes"] >= h["free_bytes"] + 8000, f"the erased block is free: {freed}"
        assert freed["used_blocks"] == 1, freed
        b.close()
        seg.erase("b")
        assert sound(seg) == start, "everything erased: one free block again"


def _message(tag, j):
    """Message j of a channel: at most 60 bytes, so 8 fit in 2 KiB."""
    return bytes([j]) * (1 + (tag + j) % 60)


def _make(seg, rng, name, tag):
    """A random structure filled with values derived from tag; returns how
    to check it."""
    kind = rng.choice(["array", "array", "queue", "map", "channel"])
    if kind == "array":
        n = rng.choice([1, rng.randint(1, 64), rng.randint(1, 3000)])
        a = seg.array(name, "<u8", n)
        assert not a.numpy().any(), f"new array {name} is not zeroed"
        a.numpy()[:] = np.arange(n, dtype=np.uint64) + tag
        return ("array", a, n)
    if kind == "queue":
        cap = rng.randint(1, 256)
        q = seg.queue(name, "<u8", capacity=cap)
        assert q.empty(), f"new queue {name} is not empty"
        n = rng.randint(0, cap)
        for j in range(n):
            q.put_nowait(tag + j)
        return ("queue", q, n)
    if kind == "map":
        cap = rng.randint(16, 128)
        m = seg.map(name, key="<u8", value="<u8", capacity=cap)
        assert len(m) == 0, f"new map {name} is not empty"
        n = rng.randint(0, cap // 2)
        for k in range(n):
            m[k] = tag + k
        return ("map", m, n)
    cap = rng.choice([2048, 4096, 8192])
    c = seg.channel(name, capacity=cap)
    assert c.empty(), f"new channel {name} is not empty"
    n = rng.randint(0, 8)
    for j in range(n):
        c.send(_message(tag, j), timeout=1.0)
    return ("channel", c, n)


def _check_and_close(name, made, tag):
    kind, h, n = made
    if kind == "array":
        got = h.numpy()
        assert np.array_equal(got, np.arange(n, dtype=np.uint64) + tag), name
        del got
    elif kind == "queue":
        assert [h.get_nowait() for _ in range(n)] == [tag + j for j in range(n)], name
        with pytest.raises(queue.Empty):
            h.get_nowait()
    elif kind == "map":
        assert dict(h.items()) == {k: tag + k for k in range(n)}, name
    else:
        for j in range(n):
            assert h.recv(timeout=1.0) == _message(tag, j), name
    h.close()


def test_churn_reuses_freed_space(segname):
    rng = random.Random(1234)
    with shmds.Segment(
        segname, 1 << 20, create=True, max_size=1 << 20, table_capacity=512
    ) as seg:
        heap = stats(seg)["heap_bytes"]
        live = {}
        live_bytes = 0
        sizes = {}
        for cycle in range(3000):
            while live and (
                live_bytes > heap * 0.4 or len(live) >= 100 or rng.random() < 0.45
            ):
                name = rng.choice(sorted(live))
                tag, made = live.pop(name)
                _check_and_close(name, made, tag)
                seg.erase(name, wipe=rng.random() < 0.1)
                live_bytes -= sizes.pop(name)
            name = f"c{rng.randrange(300)}"
            while name in live:
                name = f"c{rng.randrange(300)}"
            tag = rng.randrange(1 << 40)
            try:
                live[name] = (tag, _make(seg, rng, name, tag))
            except shmds.NoSpaceError as e:
                pytest.fail(f"cycle {cycle}: {e}; {len(live)} live, {live_bytes} bytes, {stats(seg)}")
            sizes[name] = next(e.bytes for e in seg.entries() if e.name == name)
            live_bytes += sizes[name]
            if cycle % 500 == 0:
                h = sound(seg)
                assert h["used_blocks"] == len(live), h
        sound(seg)
        for name, (tag, made) in list(live.items()):
            _check_and_close(name, made, tag)
            seg.erase(name)
        h = sound(seg)
        assert h["free_blocks"] == 1 and h["used_bytes"] == 0, h
        assert h["largest_free"] == h["heap_bytes"] == heap, h
        assert seg.size == 1 << 20


def test_erase_with_wipe_zeroes_the_memory(segname):
    pattern = np.random.default_rng(7).integers(1, 256, 8192, dtype=np.uint8)
    windows = [pattern[i : i + 64].tobytes() for i in range(0, pattern.size, 64)]
    with shmds.Segment(segname, 1 << 20, create=True) as seg:
        seg.array("before", "u1", 1)
        a = seg.array("secret", "u1", pattern.size)
        a.numpy()[:] = pattern
        a.close()
        seg.array("after", "u1", 1)
        assert pattern.tobytes() in shm_bytes(segname)
        seg.erase("secret", wipe=True)
        raw = shm_bytes(segname)
        left = [i for i, w in enumerate(windows) if w in raw]
        assert left == [], f"64-byte pieces of the wiped array are still in the segment: {left}"
        with pytest.raises(KeyError):
            seg.open("secret")
        sound(seg)
        # Without wipe: the next structure on that memory still starts zeroed.
        d = seg.array("dirty", "u1", 8192)
        d.numpy()[:] = 0xFF
        d.close()
        seg.erase("dirty")
        for i in range(8):
            fresh = seg.array(f"fresh{i}", "u1", 8192)
            assert not fresh.numpy().any(), f"fresh{i} on reused memory is not zeroed"
        sound(seg)


def test_stale_handles_after_their_memory_is_reused(segname):
    with shmds.Segment(segname, 256 << 10, create=True, max_size=256 << 10) as seg:
        old = seg.array("victim", "<u8", 512)
        old.numpy()[:] = 7
        q = seg.queue("q", "<u8", capacity=64)
        q.put(1)
        seg.erase("victim")
        seg.erase("q")
        new = seg.array("victim", "<u8", 512)
        assert not new.numpy().any()
        new.numpy()[:] = 99
        q2 = seg.queue("q", "<u8", capacity=64)
        for i in range(5):
            q2.put(100 + i)
        with pytest.raises(shmds.StaleError):
            old[0]
        with pytest.raises(shmds.StaleError):
            old[0] = 1
        with pytest.raises(shmds.StaleError):
            len(old)
        with pytest.raises(shmds.StaleError):
            q.get_nowait()
        with pytest.raises(shmds.StaleError):
            q.put_nowait(9)
        with pytest.raises(shmds.StaleError):
            q.qsize()
        assert (new.numpy() == 99).all()
        assert [q2.get_nowait() for _ in range(5)] == [100, 101, 102, 103, 104]
        sound(seg)


def test_segment_grows_up_to_max_size(segname):
    seg = shmds.Segment(segname, 65536, create=True, max_size=1 << 24)
    early = shmds.Segment(segname, create=False)
    try:
        assert seg.size == 65536 and early.size == 65536
        assert stats(seg)["max_size"] == 1 << 24
        n = 0
        while seg.size < 1 << 22:
            a = seg.array(f"g{n}", "<u8", 16384)
            a.numpy()[:] = n
            a.close()
            n += 1
        assert early.size == seg.size
        for i in range(n):
            a = early.array(f"g{i}", "<u8", 16384)
            assert (a.numpy() == i).all(), f"g{i} through the handle opened at 64 KiB"
            a.close()
        with pytest.raises(shmds.NoSpaceError):
            seg.array("huge", "u1", 1 << 25)
        k = 0
        while True:
            try:
                seg.array(f"f{k}", "u1", 1 << 20).close()
            except shmds.NoSpaceError:
                break
            k += 1
            assert k < 32
        assert (1 << 24) - (2 << 20) < seg.size <= 1 << 24
        assert early.check() == []
        sound(seg)
    finally:
        early.close()
        seg.close()


def test_ten_thousand_names(segname):
    n = 10_000
    with shmds.Segment(segname, 16 << 20, create=True) as seg:
        for i in range(n):
            a = seg.array(f"n{i}", "<u8", 1)
            a[0] = i
            a.close()
        entries = seg.entries()
        assert len(entries) == n
        assert {e.name for e in entries} == {f"n{i}" for i in range(n)}
        for i in range(0, n, 2):
            seg.erase(f"n{i}")
        assert len(seg.entries()) == n // 2
        for i in range(0, n, 2):
            a = seg.array(f"n{i}", "<u8", 1)
            assert a[0] == 0
            a[0] = i + n
            a.close()
        other = shmds.Segment(segname, create=False)
        for i in range(n):
            a = other.array(f"n{i}", "<u8", 1)
            assert a[0] == (i + n if i % 2 == 0 else i)
            a.close()
        other.close()
        sound(seg)
