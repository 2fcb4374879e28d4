"""Queues and stacks from Python: the queue.Queue shape, batches, blocking
from threads and processes, Ctrl-C, pickling, errors."""

import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


def test_queue_is_fifo_with_the_queue_module_shape(seg):
    q = seg.queue("jobs", "<u8", capacity=3)
    assert (q.maxsize, q.qsize(), q.empty(), q.full()) == (3, 0, True, False)
    # Like queue.Queue: no len(), so an empty queue is still true
    # (`if jobs:` tests the handle, not the contents).
    assert bool(q) and bool(seg.stack("undo", "<u8", capacity=2))
    with pytest.raises(TypeError):
        len(q)
    q.put(1)
    q.put(2, block=False)
    q.put_nowait(3)
    assert q.full() and q.qsize() == 3
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.01)
    assert [q.get(), q.get_nowait(), q.get(block=False)] == [1, 2, 3]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    assert time.monotonic() - t >= 0.05
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_stack_is_lifo(seg):
    s = seg.stack("undo", "<i8", capacity=4)
    for v in (1, -2, 3):
        s.put(v)
    assert [s.get(), s.get(), s.get()] == [3, -2, 1]
    assert isinstance(s, shmds.Queue) and isinstance(s, shmds.Stack)
    s.put_many(np.array([5, 6, 7, 8]))
    assert s.full()
    assert s.get_many(10).tolist() == [8, 7, 6, 5]


def test_element_types_are_checked_and_converted(seg):
    q = seg.queue("bytes", "<u1", capacity=4)
    with pytest.raises(OverflowError):
        q.put(256)
    with pytest.raises(OverflowError):
        q.put(-1)
    with pytest.raises(TypeError):
        q.put("x")
    f = seg.queue("floats", "<f4", capacity=4)
    f.put(1)
    f.put(2.5)
    assert [f.get(), f.get()] == [1.0, 2.5]
    i = seg.queue("ints", "<i2", capacity=4)
    i.put(-32768)
    assert i.get() == -32768
    with pytest.raises(TypeError):
        seg.queue("ints", "<i4", capacity=4)
    with pytest.raises(TypeError):
        seg.stack("ints", "<i2", capacity=4)


def test_records_and_byte_strings_go_through_numpy(seg):
    rec = np.dtype([("ts", "<u8"), ("price", "<f8")])
    q = seg.queue("ticks", rec, capacity=8)
    q.put((1, 2.5))
    q.put(np.array((2, 3.5), dtype=rec))
    first = q.get()
    assert (int(first["ts"]), float(first["price"])) == (1, 2.5)
    batch = np.array([(3, 4.5), (4, 5.5)], dtype=rec)
    assert q.put_many(batch) == 2
    out = q.get_many(8)
    assert out.dtype == rec and out["ts"].tolist() == [2, 3, 4]
    # "S<n>" is a string and "V<n>" raw bytes (README, "Strings and bytes").
    b = seg.queue("tags", "S8", capacity=2)
    b.put("abc")
    assert b.get() == "abc"
    raw = seg.queue("raw", "V8", capacity=2)
    raw.put(b"abc\0\0\0\0\0")
    assert raw.get() == b"abc\0\0\0\0\0"


def test_batches_are_numpy_in_numpy_out(seg):
    q = seg.queue("batch", "<u8", capacity=1000)
    assert q.put_many(np.arange(1000, dtype="<u8")) == 1000
    assert q.put_many([1, 2], block=False) == 0
    with pytest.raises(queue.Full):
        q.put(1, timeout=0)
    got = q.get_many(600)
    assert got.dtype == np.uint8 or got.dtype == np.dtype("<u8")
    assert got.tolist() == list(range(600))
    assert q.get_many(1000).tolist() == list(range(600, 1000))
    with pytest.raises(queue.Empty):
        q.get_many(5, block=False)
    with pytest.raises(queue.Empty):
        q.get_many(5, timeout=0.01)
    assert q.get_many(0).size == 0
    # A list converts to the dtype; a wrong one is refused by numpy.
    assert q.put_many([7, 8, 9]) == 3
    assert q.get_many(3).tolist() == [7, 8, 9]


def test_blocking_get_wakes_when_a_thread_puts(seg):
    q = seg.queue("wake", "<u8", capacity=1)

    def later():
        time.sleep(0.05)
        q.put(42)
        time.sleep(0.05)
        q.put(43)  # blocks until the main thread takes 42... then room

    t = threading.Thread(target=later)
    t.start()
    assert q.get() == 42  # timeout=None: waits as long as it takes
    assert q.get(timeout=5) == 43
    t.join()
    # put waits for room too
    q.put(1)
    threading.Timer(0.05, q.get).start()
    q.put(2, timeout=5)
    assert q.get() == 2


def _producer(q, n):
    for i in range(n):
        q.put(i)


def _consumer(q, n, results):
    total = 0
    for _ in range(n):
        total += q.get(timeout=30)
    results.put(total)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_handles_pickle_into_child_processes(seg, method):
    ctx = mp.get_context(method)
    q = seg.queue("mp", "<u8", capacity=16)
    n = 2000
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_producer, args=(q, n)),
        ctx.Process(target=_consumer, args=(q, n, results)),
    ]
    for p in procs:
        p.start()
    assert results.get(timeout=60) == n * (n - 1) // 2
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    again = pickle.loads(pickle.dumps(q))
    assert again.name == "mp" and again.empty()


def test_ctrl_c_interrupts_a_blocking_get(segname):
    seg = shmds.Segment(segname, size=1 << 20)
    seg.queue("never", "<u8", capacity=4)
    script = textwrap.dedent(
        f"""
        import shmds, signal, sys
        # A shell's background job may start us with SIGINT ignored;
        # install Python's usual Ctrl-C handler explicitly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        q = shmds.Segment({segname!r}, create=False).open("never")
        print("waiting", flush=True)
        try:
            q.get()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=10) == 3
        assert time.monotonic() - sent < 2
        assert child.stdout.readline().strip() == "interrupted"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_closed_and_erased_handles(seg):
    q = seg.queue("gone", "<u8", capacity=4)
    q.put(1)
    q2 = seg.open("gone")
    q.close()
    q.close()
    assert q.closed
    with pytest.raises(ValueError):
        q.put(1)
    seg.erase("gone")
    with pytest.raises(shmds.StaleError):
        q2.get_nowait()
    with pytest.raises(KeyError):
        seg.open("gone")


def test_open_by_name_takes_the_type_from_the_table(seg):
    seg.queue("typed", "<i4", capacity=4).put(-5)
    seg.stack("typed_stack", "<f8", capacity=4).put(0.5)
    q = shmds.Segment(seg.name, create=False).open("typed")
    assert type(q) is shmds.Queue and q.dtype == np.dtype("<i4") and q.get() == -5
    s = shmds.Segment(seg.name, create=False).open("typed_stack")
    assert type(s) is shmds.Stack and s.get() == 0.5
    kinds = {e.name: (e.kind, e.type, e.capacity) for e in seg.entries()}
    assert kinds["typed"] == ("queue", "<i", 4)
    assert kinds["typed_stack"] == ("stack", "<d", 4)


def test_close_wakes_the_threads_waiting_on_the_handle(seg):
    q = seg.queue("closing", "<u8", capacity=1)
    other = seg.open("closing")
    raised = []

    def wait(call):
        try:
            call()
        except ValueError as e:
            raised.append(str(e))

    # One thread waits for an element, one for room (on a full stack).
    s = seg.stack("closing_stack", "<u8", capacity=1)
    s.put(1)
    threads = [threading.Thread(target=wait, args=(lambda: q.get(timeout=60),)),
               threading.Thread(target=wait, args=(lambda: s.put(2, timeout=60),))]
    for t in threads:
        t.start()
    time.sleep(0.1)  # let them fall asleep (if not yet, they see the flag)
    q.close()
    s.close()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "close() did not wake a waiting thread"
    assert len(raised) == 2 and all("was closed while" in m for m in raised), raised
    with pytest.raises(ValueError):
        q.get_nowait()
    # Other handles are not affected.
    other.put(5)
    assert other.get() == 5


@pytest.mark.parametrize("kind", ["queue", "stack"])
def test_a_producer_killed_mid_stream_does_not_wedge_the_structure(segname, kind):
    """SIGKILL a Python producer at some point in a tight put loop (often
    in the middle of a push); the survivors keep using the structure."""
    seg = shmds.Segment(segname, size=1 << 20)
    ring = seg.queue("q", "<u8", capacity=8) if kind == "queue" else seg.stack("q", "<u8", capacity=8)
    script = textwrap.dedent(
        f"""
        import shmds, sys
        q = shmds.Segment({segname!r}, create=False).open("q")
        print("ready", flush=True)
        i = 0
        while True:
            q.put(i)
            i += 1
        """
    )
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            for _ in range(50 + 37 * round_):  # let it fill and wait, take some
                ring.get(timeout=10)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        # Drain what it left (a push it died in is skipped or recovered).
        while True:
            try:
                ring.get(timeout=0.3)
            except queue.Empty:
                break
        ring.put(1000 + round_)
        assert ring.get(timeout=5) == 1000 + round_
    assert seg.check() == []
