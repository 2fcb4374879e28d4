"""Segments and arrays from Python: attach, types, zero-copy views, errors."""

import multiprocessing as mp
import pickle

import numpy as np
import pytest

import shmds


def test_create_open_and_list(segname):
    with shmds.Segment(segname, size=1 << 20) as seg:
        assert seg.name == segname and seg.size == 1 << 20
        assert segname in shmds.list_segments()
    assert seg.closed
    again = shmds.Segment(segname, create=False)
    assert again.entries() == []
    with pytest.raises(FileExistsError):
        shmds.Segment(segname, size=1 << 20, create=True)
    shmds.remove(segname)
    with pytest.raises(FileNotFoundError):
        shmds.Segment(segname, create=False)
    with pytest.raises(FileNotFoundError):
        shmds.Segment(segname)
    with pytest.raises(ValueError):
        shmds.Segment(segname, create=True)


def test_array_is_a_zero_copy_numpy_view(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    temps = seg.array("temps", "<f4", 1000)
    assert len(temps) == 1000 and temps.descriptor == "<f" and temps.itemsize == 4
    np.asarray(temps)[:] = 20.0
    view = shmds.Segment(segname, create=False).open("temps")
    assert view.dtype == np.float32
    assert float(view[999]) == 20.0
    view[3] = 21.5
    assert float(temps[3]) == 21.5
    assert np.asarray(temps)[2:5].tolist() == [20.0, 21.5, 20.0]
    # Opening again with the same dtype and length gives the same array
    # (another length is a ValueError: test_shapes.py).
    assert len(seg.array("temps", np.float32, 1000)) == 1000


def test_types_are_checked(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    seg.array("a", "<u8", 4)
    with pytest.raises(TypeError):
        seg.array("a", "<f8", 4)
    with pytest.raises(KeyError):
        seg.open("missing")
    with pytest.raises(ValueError):
        seg.array("b", object, 4)
    with pytest.raises(ValueError):
        seg.array("n" * 100, "<u8", 4)


def test_record_dtype_matches_the_rust_descriptor(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    dt = np.dtype([("ts", "<u8"), ("price", "<f8")])
    assert shmds.descriptor(dt) == "T{<Q:ts:<d:price:}"
    aligned = np.dtype([("a", "u1"), ("b", "<u8"), ("c", "S3")], align=True)
    assert shmds.descriptor(aligned) == "T{B:a:7x<Q:b:3s:c:5x}"
    assert shmds.descriptor(("<f8", (3,))) == "(3)<d"
    ticks = seg.array("ticks", dt, 8)
    ticks[2] = (7, 189.5)
    got = shmds.Segment(segname, create=False).open("ticks")
    assert got.dtype.names == ("ts", "price")
    assert got[2]["ts"] == 7 and got[2]["price"] == 189.5


def test_close_refuses_while_views_exist(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    arr = seg.array("x", "<i8", 4)
    view = np.asarray(arr)
    with pytest.raises(BufferError):
        arr.close()
    del view
    arr.close()
    arr.close()  # idempotent
    with pytest.raises(ValueError):
        len(arr)
    # Closing the segment handle leaves opened arrays usable.
    other = seg.array("y", "<i8", 4)
    seg.close()
    other[0] = 5
    assert int(other[0]) == 5


def test_erased_array_is_stale(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    arr = seg.array("x", "<i8", 4)
    seg.erase("x")
    with pytest.raises(shmds.StaleError):
        np.asarray(arr)
    assert issubclass(shmds.StaleError, shmds.ShmdsError)


def _child_writes(arr, value):
    arr[0] = value


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_handles_pickle_as_reattach_by_name(segname, method):
    seg = shmds.Segment(segname, size=1 << 20)
    arr = seg.array("x", "<i8", 4)
    clone = pickle.loads(pickle.dumps(arr))
    clone[1] = 9
    assert int(arr[1]) == 9
    assert pickle.loads(pickle.dumps(seg)).name == segname
    proc = mp.get_context(method).Process(target=_child_writes, args=(arr, 42))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert int(arr[0]) == 42


def test_corrupt_segment_raises_shmds_error(segname):
    with open(f"/dev/shm/{segname}", "wb") as f:
        f.write(b"not a shmds segment at all" * 10)
    with pytest.raises(shmds.CorruptError):
        shmds.Segment(segname, create=False)


def _add(arr, n):
    for _ in range(n):
        arr.fetch_add(0)


def test_integer_arrays_have_atomic_arithmetic(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    a = seg.array("counts", "<i2", 4)
    assert a.fetch_add(1, 5) == 0
    assert a.fetch_add(-3, -6) == 5  # negative index and delta
    assert int(a[1]) == -1
    assert a.compare_exchange(1, -1, 7) == -1 and int(a[1]) == 7
    assert a.compare_exchange(1, 0, 8) == 7 and int(a[1]) == 7
    a.fetch_add(2, 0x7FFF)
    assert a.fetch_add(2) == 0x7FFF and int(a[2]) == -0x8000  # wraps at 16 bits
    with pytest.raises(IndexError):
        a.fetch_add(4)
    with pytest.raises(OverflowError):
        a.compare_exchange(0, 0, 1 << 20)
    with pytest.raises(TypeError):
        seg.array("floats", "<f8", 2).fetch_add(0)
    with pytest.raises(TypeError):
        a.fetch_add(0, 1.5)
    wide = seg.array("wide", "<u8", 1)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_add, args=(wide, 3000)) for _ in range(2)]
    for p in procs:
        p.start()
    _add(wide, 3000)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert int(wide[0]) == 9000
