"""Every call on a handle to an erased structure raises StaleError, the
length and fill queries included (they must not read the freed block)."""

import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


@pytest.mark.parametrize("make", ["queue", "stack"])
def test_erased_queue_and_stack_lengths_are_stale(seg, make):
    q = getattr(seg, make)("q", "<u8", capacity=4)
    q.put(1)
    seg.erase("q")
    for call in (q.qsize, q.empty, q.full):
        with pytest.raises(shmds.StaleError):
            call()


def test_erased_map_length_is_stale(seg):
    m = seg.map("m", key="<u8", value="<u8", capacity=4)
    m[1] = 1
    seg.erase("m")
    with pytest.raises(shmds.StaleError):
        len(m)


def test_erased_array_length_is_stale(seg):
    a = seg.array("a", "<u8", 4)
    seg.erase("a")
    with pytest.raises(shmds.StaleError):
        len(a)
