"""Type descriptors that no language can use are refused where they are
stated, with ValueError."""

import pytest

import shmds
from shmds import _shmds


def test_duplicate_field_names_are_refused(segname):
    with pytest.raises(ValueError, match='"a" appears twice'):
        _shmds.parse_descriptor("T{<I:a:<I:a:}")
    with shmds.Segment(segname, size=1 << 20) as seg:
        with pytest.raises(ValueError, match='"a" appears twice'):
            _shmds.Array(seg, "x", "T{<I:a:<d:a:}", 4)
        with pytest.raises(ValueError, match='"b" appears twice'):
            _shmds.Queue(seg, "q", "queue", "T{<I:a:T{B:b:B:b:}:c:}", 4)
        assert seg.entries() == []
    # The same name in two different records is fine.
    assert _shmds.parse_descriptor("T{<I:a:T{<I:a:}:b:}")[1] == 8


def test_types_are_named_as_people_read_them(segname):
    assert shmds.human_type("<Q") == "u64"
    assert shmds.human_type(shmds.descriptor("S16")) == "str16"
    assert shmds.human_type(shmds.descriptor([("ts", "<u8"), ("price", "<f8")])) == (
        "record{ts: u64, price: f64}")
    assert shmds.human_type("Z") == "Z"
    with shmds.Segment(segname, size=1 << 20) as seg:
        seg.queue("jobs", "<u8", capacity=4)
        with pytest.raises(TypeError, match=r'holds u64 \("<Q"\), not f32 \("<f"\)'):
            seg.queue("jobs", "<f4", capacity=4)
        with pytest.raises(TypeError, match="is a queue, not a stack"):
            seg.open_stack("jobs")
        with pytest.raises(ValueError, match=r"type \[u8; 2\] must have shape"):
            seg.queue("pairs", ("<u1", (2,)), capacity=2).put([1, 2, 3])
