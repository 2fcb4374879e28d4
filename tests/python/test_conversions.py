"""A batch converts its elements by the same rules as one element: a float
into an integer structure is a TypeError, an integer out of range an
OverflowError, whether it comes alone, in a list or in a numpy array."""

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


BAD = [
    (1.5, [1.7, 2.2], np.array([1.7, 2.2]), TypeError),
    (256, [1, 256], np.array([1, 256]), OverflowError),
    (-1, [0, -1], np.array([0, -1], dtype="<i8"), OverflowError),
    ("x", ["x"], np.array(["x"]), TypeError),
]


@pytest.mark.parametrize("make", ["queue", "stack"])
@pytest.mark.parametrize("one,listed,array,error", BAD)
def test_queue_and_stack_batches_follow_put(seg, make, one, listed, array, error):
    q = getattr(seg, make)("q", "<u1", capacity=8)
    with pytest.raises(error):
        q.put(one)
    with pytest.raises(error):
        q.put_many(listed)
    with pytest.raises(error):
        q.put_many(array)
    assert q.qsize() == 0  # nothing half-put


@pytest.mark.parametrize("one,listed,array,error", BAD)
def test_array_bulk_writes_follow_single_writes(seg, one, listed, array, error):
    a = seg.array("a", "<u1", 4)
    with pytest.raises(error):
        a[0] = one
    with pytest.raises(error):
        a[0:len(listed)] = listed
    with pytest.raises(error):
        a[0:len(array)] = array
    assert a.numpy().tolist() == [0, 0, 0, 0]


def test_good_batches_still_convert(seg):
    q = seg.queue("q", "<u8", capacity=16)
    assert q.put_many(np.arange(3)) == 3  # int64 values in range
    assert q.put_many([3, 4]) == 2
    assert q.put_many(np.array([5], dtype="<u8")) == 1
    assert q.put_many([True]) == 1  # put(True) works: a bool is an int
    with pytest.raises(TypeError):
        q.put(np.True_)  # numpy's bool is not an int: neither alone nor in bulk
    with pytest.raises(TypeError):
        q.put_many(np.array([True]))
    assert q.get_many(16).tolist() == [0, 1, 2, 3, 4, 5, 1]
    f = seg.queue("f", "<f8", capacity=4)
    assert f.put_many([1, 2.5]) == 2 and f.put_many(np.array([3], dtype="<i4")) == 1
    assert f.get_many(4).tolist() == [1.0, 2.5, 3.0]
    a = seg.array("a", "<i2", 4)
    a[:] = 7
    a[1:3] = [-1, 2]
    a[3] = np.int64(-32768)
    assert a.numpy().tolist() == [7, -1, 2, -32768]
    with pytest.raises(OverflowError):
        a[:] = 40000
