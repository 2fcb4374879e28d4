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
