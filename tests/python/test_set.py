"""Sets from Python: the MutableSet shape, string and record keys, pop,
processes adding overlapping keys, errors."""

import multiprocessing as mp
import pickle
from collections.abc import MutableSet

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


def test_set_is_a_mutable_set(seg):
    seen = seg.set("seen", key="<u8", capacity=100)
    assert isinstance(seen, MutableSet) and isinstance(seen, shmds.Set)
    assert len(seen) == 0 and seen.capacity == 100
    assert seen.key_descriptor == "<Q" and seen.name == "seen"
    seen.add(1)
    seen.add(1)
    assert seen.insert(2) is True and seen.insert(2) is False
    assert 1 in seen and 2 in seen and 3 not in seen
    # Objects that cannot be keys of this set are not in it.
    assert "x" not in seen and -1 not in seen and 2**70 not in seen
    assert sorted(seen) == [1, 2] and len(seen) == 2
    seen.discard(2)
    seen.discard(2)
    seen.discard("not a key")
    with pytest.raises(KeyError):
        seen.remove(2)
    seen.remove(1)
    assert len(seen) == 0
    seen |= {5, 6, 7}
    assert seen == {5, 6, 7}
    assert seen <= {5, 6, 7, 8} and not seen <= {5}
    union = seen | {8}
    assert type(union) is set and union == {5, 6, 7, 8}
    assert seen & {6, 9} == {6} and seen - {5} == {6, 7} and seen ^ {7, 8} == {5, 6, 8}
    assert seen.isdisjoint({1, 2})
    seen -= {5}
    assert seen == {6, 7}
    popped = seen.pop()
    assert popped in (6, 7) and popped not in seen and len(seen) == 1
    seen.clear()
    assert len(seen) == 0 and list(seen) == []
    with pytest.raises(KeyError):
        seen.pop()
    assert repr(seen) == "<shmds.Set 'seen' key='<Q' len=0/100>"


def test_string_bytes_and_record_keys(seg):
    names = seg.set("names", key="S8", capacity=10)
    names.add("Zürich")  # 7 bytes in UTF-8
    names.add(b"raw")
    assert "Zürich" in names and "raw" in names and "Zurich" not in names
    assert sorted(names) == ["Zürich", "raw"]
    with pytest.raises(ValueError, match="at most 8"):
        names.add("Zürich-West")
    with pytest.raises(TypeError):
        names.add(5)
    raw = seg.set("raw", key="V4", capacity=4)
    raw.add(b"\0\1\0\0")
    assert b"\0\1\0\0" in raw and list(raw) == [b"\0\1\0\0"]
    key = np.dtype([("venue", "u1"), ("seq", "<u8")], align=True)
    book = seg.set("book", key=key, capacity=8)
    book.add((1, 99))
    assert (1, 99) in book and (2, 99) not in book
    (k,) = list(book)
    assert (int(k["venue"]), int(k["seq"])) == (1, 99)


def test_full_set_raises_no_space(seg):
    s = seg.set("small", key="<u4", capacity=2)
    s.add(1)
    s.add(2)
    with pytest.raises(shmds.NoSpaceError):
        s.add(3)
    s.add(2)  # already there: needs no room
    s.discard(1)
    s.add(3)
    assert s == {2, 3}


def test_kinds_types_open_and_closed_handles(seg):
    s = seg.set("s", key="<u8", capacity=4)
    s.add(7)
    seg.map("m", key="<u8", value="<u8", capacity=4)
    with pytest.raises(TypeError):
        seg.set("s", key="<u4", capacity=4)
    with pytest.raises(TypeError):
        seg.set("m", key="<u8", capacity=4)
    with pytest.raises(TypeError):
        seg.map("s", key="<u8", value="<u8", capacity=4)
    with pytest.raises(ValueError):
        seg.set("s", key="<u8", capacity=5)
    with pytest.raises(ValueError):
        shmds.Set(seg, "x", "<Q")
    entry = next(e for e in seg.entries() if e.name == "s")
    assert (entry.kind, entry.type, entry.key_type, entry.fill) == ("set", "", "<Q", 1)
    again = seg.open("s")
    assert isinstance(again, shmds.Set) and again == {7}
    s.close()
    s.close()
    assert s.closed and repr(s) == "<shmds.Set (closed)>"
    with pytest.raises(ValueError):
        s.add(1)
    seg.erase("s")
    assert repr(again) == "<shmds.Set 's' (erased)>"
    with pytest.raises(shmds.StaleError):
        7 in again
    assert seg.check() == []


def _add_range(s, start, n, out):
    out.put(sum(1 for k in range(start, start + n) if s.insert(k)))


def test_processes_add_overlapping_keys_exactly_once(seg):
    s = seg.set("s", key="<u8", capacity=3000)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    # Every key but the outermost ones is added by two processes at once.
    procs = [ctx.Process(target=_add_range, args=(s, i * 1000, 2000, results))
             for i in range(2)]
    procs.append(ctx.Process(target=_add_range, args=(s, 500, 2000, results)))
    for p in procs:
        p.start()
    new = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sum(new) == 3000, new  # each key reported new to one process
    keys = list(s)
    assert len(keys) == len(set(keys)) == len(s) == 3000
    assert set(keys) == set(range(3000))
    assert 2999 in pickle.loads(pickle.dumps(s))
    assert seg.check() == []
