"""Maps from Python: the MutableMapping shape, string and record keys,
atomic counters across processes, errors."""

import multiprocessing as mp
import pickle
from collections.abc import MutableMapping

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


def test_map_is_a_mutable_mapping(seg):
    prices = seg.map("prices", key="S32", value="<f8", capacity=100)
    assert isinstance(prices, MutableMapping)
    assert len(prices) == 0 and prices.capacity == 100
    prices["AAPL"] = 189.5
    prices["MSFT"] = 410
    assert prices["AAPL"] == 189.5 and prices["MSFT"] == 410.0
    assert "AAPL" in prices and "IBM" not in prices and 42 not in prices
    with pytest.raises(KeyError):
        prices["IBM"]
    assert prices.get("IBM") is None and prices.get("IBM", 1.0) == 1.0
    assert prices.setdefault("IBM", 150.0) == 150.0
    assert prices.setdefault("IBM", 999.0) == 150.0
    prices.update({"GOOG": 170.0}, TSLA=250.0)
    assert dict(prices) == {
        "AAPL": 189.5, "MSFT": 410.0, "IBM": 150.0, "GOOG": 170.0, "TSLA": 250.0
    }
    assert sorted(prices.keys()) == sorted(prices)
    assert sorted(prices.values()) == [150.0, 170.0, 189.5, 250.0, 410.0]
    assert prices.pop("TSLA") == 250.0
    assert prices.pop("TSLA", None) is None
    with pytest.raises(KeyError):
        prices.pop("TSLA")
    del prices["GOOG"]
    with pytest.raises(KeyError):
        del prices["GOOG"]
    key, value = prices.popitem()
    assert key not in prices and len(prices) == 2
    assert value == {"AAPL": 189.5, "MSFT": 410.0, "IBM": 150.0}[key]
    prices.clear()
    assert len(prices) == 0 and list(prices) == []


def test_string_keys_are_utf8_and_bounded(seg):
    m = seg.map("names", key="S8", value="<u4", capacity=10)
    m["Zürich"] = 1  # 7 bytes in UTF-8
    assert m["Zürich"] == 1 and list(m) == ["Zürich"]
    with pytest.raises(ValueError, match="at most 8"):
        m["Zürich-West"] = 2
    m[b"raw"] = 3
    assert m["raw"] == 3
    with pytest.raises(TypeError):
        m[5] = 1
    with pytest.raises(ValueError):
        seg.map("bad", key="S300", value="<u4", capacity=10)


def test_integer_keys_values_and_atomics(seg):
    hits = seg.map("hits", key="<u8", value="<i4", capacity=10)
    assert hits.fetch_add(7) == 0
    assert hits.fetch_add(7, 10) == 1
    assert hits.fetch_add(7, -20) == 11
    assert hits[7] == -9
    assert hits.compare_exchange(7, -9, 100) == -9 and hits[7] == 100
    assert hits.compare_exchange(7, 0, 1) == 100 and hits[7] == 100
    with pytest.raises(KeyError):
        hits.compare_exchange(8, 0, 1)
    with pytest.raises(OverflowError):
        hits[1] = 2**31
    with pytest.raises(OverflowError):
        hits[-1] = 1
    floats = seg.map("floats", key="<i8", value="<f8", capacity=4)
    with pytest.raises(TypeError):
        floats.fetch_add(1)


def test_full_map_raises_no_space(seg):
    m = seg.map("small", key="<u8", value="<u8", capacity=2)
    m[1] = 1
    m[2] = 2
    with pytest.raises(shmds.NoSpaceError):
        m[3] = 3
    m[2] = 20  # replacing needs no room
    del m[1]
    m[3] = 3
    assert dict(m) == {2: 20, 3: 3}


def test_record_keys_and_values(seg):
    key = np.dtype([("venue", "u1"), ("seq", "<u8")], align=True)
    val = np.dtype([("bid", "<f8"), ("ask", "<f8")])
    m = seg.map("book", key=key, value=val, capacity=8)
    m[(1, 99)] = (10.0, 10.5)
    got = m[(1, 99)]
    assert (float(got["bid"]), float(got["ask"])) == (10.0, 10.5)
    (k, v), = m.items()
    assert (int(k["venue"]), int(k["seq"])) == (1, 99)
    assert (2, 99) not in m


def test_wrong_types_and_closed_handles(seg):
    m = seg.map("m", key="<u8", value="<u8", capacity=4)
    with pytest.raises(TypeError):
        seg.map("m", key="<u4", value="<u8", capacity=4)
    with pytest.raises(TypeError):
        seg.queue("m", "<u8", capacity=4)
    m.close()
    m.close()
    with pytest.raises(ValueError):
        m[1] = 1
    again = seg.open("m")
    assert isinstance(again, shmds.Map)
    assert again.key_descriptor == "<Q" and again.value_descriptor == "<Q"


def _count(m, n):
    for i in range(n):
        m.fetch_add(i % 4)


def test_counters_from_several_processes(seg):
    m = seg.map("counts", key="<u8", value="<u8", capacity=16)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_count, args=(m, 4000)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert dict(m) == {0: 3000, 1: 3000, 2: 3000, 3: 3000}
    assert pickle.loads(pickle.dumps(m))[0] == 3000
    assert seg.check() == []
