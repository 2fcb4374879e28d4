"""Opening an existing structure or segment while stating another shape
(length, capacity, size) is a ValueError naming both; opening without a
stated shape stays lenient.
"""

import pytest

import shmds


def raises_value_error_naming(call, *numbers):
    try:
        call()
    except ValueError as e:
        for n in numbers:
            assert str(n) in str(e), f"{n} not in {e}"
        return
    raise AssertionError("no ValueError raised")


def test_array_of_another_length(segname):
    with shmds.Segment(segname, size=1 << 20) as seg:
        seg.array("a", "<u4", 4)
        raises_value_error_naming(lambda: seg.array("a", "<u4", 400), 4, 400)
        assert len(seg.array("a", "<u4", 4)) == 4


@pytest.mark.parametrize("make", ["queue", "stack"])
def test_queue_and_stack_of_another_capacity(segname, make):
    with shmds.Segment(segname, size=1 << 20) as seg:
        getattr(seg, make)("q", "<u8", capacity=4)
        raises_value_error_naming(lambda: getattr(seg, make)("q", "<u8", capacity=8), 4, 8)
        assert getattr(seg, make)("q", "<u8", capacity=4).maxsize == 4


def test_map_of_another_capacity(segname):
    with shmds.Segment(segname, size=1 << 20) as seg:
        seg.map("m", key="<u8", value="<u8", capacity=4)
        raises_value_error_naming(
            lambda: seg.map("m", key="<u8", value="<u8", capacity=64), 64)


def test_segment_of_another_size(segname):
    # Segments grow (up to 4 GiB by default): another size opens it, a size
    # past its maximum is refused, naming both.
    with shmds.Segment(segname, size=1 << 20):
        with shmds.Segment(segname, size=2 << 20) as bigger:
            assert bigger.size == 1 << 20
        raises_value_error_naming(lambda: shmds.Segment(segname, size=8 << 30),
                                  8 << 30, 4 << 30)
        with shmds.Segment(segname, size=1 << 20) as again:
            assert again.size == 1 << 20


def test_opening_without_a_shape_stays_lenient(segname):
    with shmds.Segment(segname, size=1 << 20) as seg:
        seg.array("a", "<u4", 4)
        seg.queue("q", "<u8", capacity=4)
        seg.stack("s", "<u8", capacity=4)
        seg.map("m", key="<u8", value="<u8", capacity=4)
        assert len(seg.open("a")) == 4
        assert seg.open("q").maxsize == 4 and seg.open("s").maxsize == 4
        assert seg.open("m").capacity >= 4
        with shmds.Segment(segname, create=False) as other:
            assert other.size == 1 << 20
        with shmds.Segment(segname) as other:
            assert other.size == 1 << 20
