"""Any value read from a structure can be written back, for every dtype;
sub-array values accept any sequence or ndarray of their shape."""

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


REC = np.dtype([("ts", "<u8"), ("pair", "<u4", (2,)), ("tag", "V3")])
NESTED = np.dtype([("head", REC), ("x", "<f8")])

# (dtype, a value in the user's spelling)
CASES = [
    ("<u1", 200),
    ("<i8", -5),
    ("<f4", 1.5),
    ("<f8", 2.25),
    ("S8", "ab\x00"),
    ("V4", b"a\x00\x00\x00"),
    (("<u8", (2,)), [1, 2]),
    (("<u8", (2,)), (1, 2)),
    (("<u8", (2,)), np.array([1, 2], dtype="<u8")),
    (("<i4", (2, 3)), [[1, 2, 3], [4, 5, 6]]),
    (REC, (1, [2, 3], b"xy\x00")),
    (NESTED, ((1, [2, 3], b"xy\x00"), 0.5)),
]


def same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b)) if not isinstance(a, (str, bytes)) else a == b


def kinds(seg, dtype):
    yield "map", seg.map("m", key="<u8", value=dtype, capacity=4)
    yield "queue", seg.queue("q", dtype, capacity=4)
    yield "stack", seg.stack("s", dtype, capacity=4)
    yield "array", seg.array("a", dtype, 2)


@pytest.mark.parametrize("dtype,value", CASES)
def test_write_read_write_back(seg, dtype, value):
    for kind, s in kinds(seg, dtype):
        if kind == "map":
            s[1] = value
            got = s[1]
            s[2] = got
            assert same(s[2], got), kind
            assert s.setdefault(3, got) is not None
        elif kind == "array":
            s[0] = value
            got = s[0]
            s[1] = got
            assert same(s[1], got), kind
        else:
            s.put(value)
            got = s.get()
            s.put(got)
            assert same(s.get(), got), kind
            s.put_many([value, got])
            batch = s.get_many(4)
            assert len(batch) == 2
            s.put_many(batch)
            assert len(s.get_many(4)) == 2


def test_sub_array_value_of_the_wrong_shape_says_so(seg):
    m = seg.map("m", key="<u8", value=("<u8", (2,)), capacity=4)
    m[1] = [1, 2]
    assert m[1].tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        m[2] = [1, 2, 3]
