"""The one string/bytes model (README, "Strings and bytes"): ``"S<n>"`` is
Rust's ``FixedStr<n>`` (str in, str out) in every structure, and raw
n-byte values (``"V<n>"``, Rust ``[u8; n]``, descriptor ``<n>s``) come back
as exactly the n bytes that went in, trailing NULs included."""

import struct
import subprocess

import numpy as np
import pytest

import shmds

FIXED8 = "T{B:len:8s:bytes:}"
EDGE_BYTES = [b"ab\x00\x00", struct.pack("<I", 256), b"\x00\x00\x00\x00", b"\xff\x00\x01\x00"]


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


@pytest.mark.parametrize("make", ["queue", "stack"])
def test_s_n_is_a_fixed_str_in_queues_and_stacks(seg, make):
    q = getattr(seg, make)("names", "S8", capacity=8)
    assert q.descriptor == FIXED8
    for s in ["", "ab\x00\x00", "Zürich", "abc\x00"]:
        q.put(s)
        assert q.get() == s
    with pytest.raises(ValueError, match="at most 8"):
        q.put("123456789")
    q.put_many(["x", "y\x00"])
    got = q.get_many(2)  # numpy out: the (len, bytes) record of each string
    assert got.dtype.names == ("len", "bytes")
    assert sorted(r["bytes"].tobytes()[: r["len"]].decode() for r in got) == ["x", "y\x00"]


def test_s_n_is_a_fixed_str_in_arrays(seg):
    a = seg.array("names", "S8", 3)
    assert a.descriptor == FIXED8
    a[0] = "ab\x00\x00"
    a[1] = "Zürich"
    assert a[0] == "ab\x00\x00" and a[1] == "Zürich" and a[2] == ""
    assert list(a) == ["ab\x00\x00", "Zürich", ""]
    view = a.numpy()  # zero-copy: the record of a length byte and the bytes
    assert view.dtype.names == ("len", "bytes")
    assert view["len"].tolist() == [4, 7, 0]
    with pytest.raises(ValueError):
        a[2] = "123456789"


def test_s_n_is_a_fixed_str_in_maps(seg):
    m = seg.map("m", key="S8", value="S8", capacity=8)
    assert m.key_descriptor == FIXED8 and m.value_descriptor == FIXED8
    m["k\x00"] = "v\x00\x00"
    assert m["k\x00"] == "v\x00\x00" and "k" not in m


@pytest.mark.parametrize("make", ["queue", "stack"])
@pytest.mark.parametrize("value", EDGE_BYTES)
def test_raw_bytes_keep_every_byte_in_queues(seg, make, value):
    q = getattr(seg, make)("raw", "V4", capacity=8)
    assert q.descriptor == "4s"
    q.put(value)
    got = q.get()
    assert type(got) is bytes and got == value
    q.put_many([value, value])
    batch = q.get_many(2)
    assert batch.dtype == np.dtype("V4")
    assert [b.tobytes() for b in batch] == [value, value]


@pytest.mark.parametrize("value", EDGE_BYTES)
def test_raw_bytes_keep_every_byte_in_maps_and_arrays(seg, value):
    m = seg.map("m", key="V4", value="V4", capacity=8)
    m[value] = value
    assert m[value] == value and list(m) == [value]
    a = seg.array("a", "V4", 2)
    a[1] = value
    assert a[1] == value and type(a[1]) is bytes
    assert a.numpy().dtype == np.dtype("V4")
    assert a.numpy()[1].tobytes() == value


def test_raw_bytes_are_exactly_n_bytes(seg):
    q = seg.queue("raw", "V16", capacity=4)
    q.put(struct.pack("<IIII", 256, 0, 1, 0))
    assert q.get() == struct.pack("<IIII", 256, 0, 1, 0)
    with pytest.raises(ValueError, match="exactly 16 bytes"):
        q.put(b"short")
    with pytest.raises(TypeError):
        q.put("a str")
    with pytest.raises(TypeError):
        q.put(16)  # bytes(16) would be 16 zero bytes: refused, not guessed
    q.put(bytearray(16))
    assert q.get() == bytes(16)


def test_numpy_bytes_dtype_is_a_fixed_str_too(seg):
    # np.dtype("S8") is the same spelling as "S8": one meaning.
    assert seg.queue("a", np.dtype("S8"), capacity=2).descriptor == FIXED8


def test_rust_fixed_str_queue_and_byte_array(segname, interop):
    with shmds.Segment(segname, size=4 << 20) as seg:
        done = subprocess.run([interop, "write-strings", segname], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        names = seg.queue("names", "S64", capacity=8)  # Rust Queue<FixedStr<64>>
        assert [names.get_nowait() for _ in range(3)] == ["alpha", "Zürich", "nul\x00\x00"]
        raw = seg.open("raw")  # Rust Queue<[u8; 8]>
        assert raw.get_nowait() == b"abc\x00\x00\x00\x00\x00"
        assert seg.array("raw8", "V8", 2)[1] == b"abc\x00\x00\x00\x00\x00"
        # And back: Python writes, Rust checks the exact bytes.
        names.put("from python\x00")
        raw.put(b"xyz\x00\x00\x00\x00\x00")
        done = subprocess.run([interop, "check-strings", segname], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
