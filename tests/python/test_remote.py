"""Remote segments (shmds.connect) on a private redis-server: the Python
shapes of the local structures, the same bytes as Rust (the Rust peer
writes and checks the known structures of test_interop), at-least-once
take/ack, a lock's lease, UnavailableError and failure injection."""

import queue
import time
import threading
import warnings

import numpy as np
import pytest

import shmds
from test_interop import PRICES, QUOTE, run


def test_queue_like_queue_queue(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name)
    q = seg.queue("jobs", "<u8", capacity=3)
    q.put(1)
    q.put_nowait(2)
    assert q.put_many([3, 4], block=False) == 1
    assert q.full() and q.qsize() == 3 and q.maxsize == 3
    with pytest.raises(queue.Full):
        q.put_nowait(9)
    with pytest.raises(queue.Full):
        q.put(9, timeout=0.05)
    assert q.get() == 1 and q.get_nowait() == 2
    assert list(q.get_many(10)) == [3]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(OverflowError):
        q.put(-1)
    s = seg.stack("undo", "<i4", 4)
    for v in (1, 2, 3):
        s.put(v)
    assert [s.get(), s.get(), s.get()] == [3, 2, 1]
    # Blocking get woken by a put from another thread.
    t = threading.Timer(0.1, lambda: q.put(42))
    t.start()
    assert q.get(timeout=10) == 42
    t.join()


def test_map_array_lock(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name)
    m = seg.map("prices", key="S16", value="<f8", capacity=2)
    m["AAPL"] = 189.5
    m.update({"MSFT": 410.25})
    assert dict(m) == {"AAPL": 189.5, "MSFT": 410.25} and len(m) == 2
    with pytest.raises(shmds.NoSpaceError):
        m["X"] = 1.0
    assert m.pop("AAPL") == 189.5 and "AAPL" not in m
    with pytest.raises(KeyError):
        m["AAPL"]
    n = seg.map("hits", "<u8", "<i8", 8)
    assert n.fetch_add(1, 5) == 0 and n.fetch_add(1, -7) == 5 and n[1] == -2
    assert n.compare_exchange(1, -2, 3) == (True, -2)
    assert n.compare_exchange(1, 0, 4) == (False, 3)
    assert n.compare_exchange(2, 0, 4) == (False, None)

    a = seg.array("temps", "<f4", 4)
    a[1] = 2.5
    a.write(2, [3.0, 4.0])
    assert a.tolist() == [0.0, 2.5, 3.0, 4.0] and a[-1] == 4.0 and len(a) == 4
    assert a.numpy().dtype == np.float32
    with pytest.raises(IndexError):
        a[4]
    c = seg.array("count", "<u4", 1)
    threads = [threading.Thread(target=lambda: [c.fetch_add(0, 1) for _ in range(100)])
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c[0] == 300

    lock = seg.lock("guard")
    with lock:
        assert lock.locked() and lock.holder is not None
        assert not seg.lock("guard").acquire(blocking=False)
    assert not lock.locked()


def test_lapsed_lock_holder_is_reported(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name, lease=0.2)
    a = seg.lock("l")
    assert a.acquire()
    b = seg.lock("l")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert b.acquire(timeout=5)
    assert any(issubclass(w.category, shmds.OwnerDiedWarning) for w in caught)
    assert b.owner_died is not None
    b.release()
    with pytest.raises(shmds.NotOwnerError):
        a.release()


def test_take_is_at_least_once(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name, lease=0.2)
    q = seg.queue("work", "<u8", 8)
    q.put_many([1, 2, 3])
    d = q.take()
    assert d.value == 1 and q.in_flight() == 1 and q.qsize() == 2
    assert d.ack() is True
    lost = q.take()  # never acknowledged: its lease runs out
    assert lost.value == 2

    time.sleep(0.3)
    other = shmds.connect(redis_server, remote_name, lease=0.2).open_queue("work")
    assert other.recover() == 1
    assert [other.get(), other.get()] == [2, 3]
    assert lost.ack() is False
    with pytest.raises(ValueError):
        lost.ack()


def test_types_are_checked(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name)
    seg.queue("q", "<u8", 4)
    with pytest.raises(TypeError):
        seg.queue("q", "<u4", 4)
    with pytest.raises(ValueError):
        seg.queue("q", "<u8", 5)
    with pytest.raises(TypeError):
        seg.open_map("q")
    with pytest.raises(KeyError):
        seg.open_queue("nope")
    q = seg.open_queue("q")
    seg.erase("q")
    with pytest.raises(shmds.StaleError):
        q.put(1)
    assert [e.name for e in seg.entries()] == []


def test_unavailable_and_injected_faults(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name, timeout=0.5)
    q = seg.queue("q", "<u8", 100)
    seg.faults.make_unavailable()
    with pytest.raises(shmds.UnavailableError) as e:
        q.put(1)
    assert isinstance(e.value, ConnectionError) and isinstance(e.value, shmds.ShmdsError)
    seg.faults.clear()
    seg.faults.lose_replies(1.0)
    with pytest.raises(ConnectionError):
        q.put(2)
    seg.faults.clear()
    assert q.qsize() == 1, "the put whose reply was lost happened"
    assert seg.faults.injected == 2
    with pytest.raises(shmds.UnavailableError):
        shmds.connect("redis://127.0.0.1:1/0", "x", connect_timeout=0.5)


@pytest.mark.parametrize("writer", ["rust", "python"])
def test_same_bytes_as_rust(redis_server, remote_name, interop, writer):
    seg = shmds.connect(redis_server, remote_name)
    if writer == "rust":
        run(interop, "remote-write", redis_server, remote_name)
        quotes = seg.open_array("quotes")
        assert [tuple(q) for q in quotes.tolist()] == [(i, 100.5 + i, 10 * i) for i in range(3)]
        assert list(seg.open_queue("jobs").get_many(200)) == list(range(1, 101))
        undo = seg.open_stack("undo")
        assert [undo.get(), undo.get(), undo.get()] == [-3, -2, -1]
        assert dict(seg.open_map("prices")) == PRICES
        assert dict(seg.open_map("hits")) == {k: -k for k in range(1, 21)}
    else:
        quotes = seg.array("quotes", QUOTE, 3)
        for i in range(3):
            quotes[i] = (i, 100.5 + i, 10 * i)
        seg.queue("jobs", "<u8", 128).put_many(np.arange(1, 101))
        undo = seg.stack("undo", "<i4", 8)
        for v in (-1, -2, -3):
            undo.put(v)
        seg.map("prices", key="S16", value="<f8", capacity=64).update(PRICES)
        seg.map("hits", key="<u8", value="<i8", capacity=32).update(
            {k: -k for k in range(1, 21)})
        run(interop, "remote-check", redis_server, remote_name)


def test_coherent_read_cache(redis_server, remote_name):

    cached = shmds.connect(redis_server, remote_name, cache=600.0)
    deadline = time.monotonic() + 10
    while not cached.cache_is_live:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    m = cached.map("m", "<u4", "<u8", 8)
    m[1] = 10
    # The server's invalidation of this very write may arrive after the
    # first read and drop its copy (a miss, never a stale hit): read until
    # a read is a hit, which then needs no server.
    for _ in range(1000):
        assert m[1] == 10
        cached.faults.make_unavailable()
        try:
            assert m[1] == 10
            break
        except shmds.UnavailableError:
            time.sleep(0.005)
        finally:
            cached.faults.clear()
    else:
        pytest.fail("no read was ever served from the cache")
    shmds.connect(redis_server, remote_name).open_map("m")[1] = 11
    while m[1] != 11:
        assert time.monotonic() < deadline, "the invalidation never arrived"
        time.sleep(0.001)


def test_channel_and_topic(redis_server, remote_name):
    seg = shmds.connect(redis_server, remote_name, lease=0.2)
    ch = seg.channel("events", capacity=2, max_message=64)
    ch.put({"id": 1})
    ch.send(b"raw")
    with pytest.raises(queue.Full):
        ch.send(b"x", block=False)
    with pytest.raises(shmds.MessageTooLargeError):
        ch.send(b"x" * 65)
    assert ch.get() == {"id": 1} and ch.recv() == b"raw"
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0.05)
    ch.send(b"work")
    d = ch.take()
    assert d.value == b"work" and ch.qsize() == 1
    assert d.ack() and ch.qsize() == 0

    t = seg.topic("ticks", capacity=2)
    a, b = t.subscribe(), t.subscribe()
    for i in range(3):
        assert t.publish(b"t%d" % i) == i
    with pytest.raises(shmds.Lagged) as lag:
        a.recv(block=False)
    assert lag.value.missed == 1
    assert [a.recv(), a.recv()] == [b"t1", b"t2"]
    with pytest.raises(shmds.Lagged):
        b.recv()
    assert b.recv() == b"t1"
    with pytest.raises(queue.Empty):
        a.recv(timeout=0.05)
