"""Channels and topics from Python: bytes and pickled objects, the
multiprocessing.Queue shape, zero-copy reads, SPSC attachment, the end of
a stream (disconnection, shutdown) across processes, broadcast and lag,
Ctrl-C. No test asserts how long anything took."""

import ast
import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import shmds


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=16 << 20) as s:
        yield s


def pattern(n, salt=0):
    return bytes((i * 7 + salt) % 251 for i in range(n))


def run_child(script, *args, timeout=60):
    """Run a Python child; returns (exit code, stdout). Killed if it hangs."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args],
                             stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out


# ---------------------------------------------------------------- bytes


@pytest.mark.parametrize("spsc", [False, True])
@pytest.mark.parametrize("checksum", [False, True])
def test_messages_of_every_size_round_trip(seg, spsc, checksum):
    ch = seg.channel("c", 4096, max_message=1000, spsc=spsc, checksum=checksum)
    assert (ch.capacity, ch.max_message, ch.spsc, ch.checksum) == (4096, 1000, spsc, checksum)
    sizes = [0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 500, 999, 1000]
    for round_ in range(3):  # enough to wrap the ring several times
        for n in sizes:
            ch.send(pattern(n, round_ + n))
            got = ch.recv(timeout=5)
            assert type(got) is bytes and got == pattern(n, round_ + n)
    # Several held at once, in order, from every kind of bytes-like object.
    for data in (b"abc", bytearray(b"de"), memoryview(b"xfgx")[1:3],
                 np.arange(5, dtype=np.int16), b""):
        ch.send(data)
    assert ch.qsize() == len(ch) == 5 and not ch.empty()
    assert [ch.recv() for _ in range(5)] == [
        b"abc", b"de", b"fg", np.arange(5, dtype=np.int16).tobytes(), b""]
    assert ch.empty() and seg.check() == []


def test_too_large_is_a_value_error_and_sends_nothing(seg):
    ch = seg.channel("c", 4096, max_message=100)
    with pytest.raises(ValueError) as e:
        ch.send(bytes(101))
    assert isinstance(e.value, shmds.MessageTooLargeError)
    assert (e.value.size, e.value.limit) == (101, 100)
    assert "max_message" in str(e.value)
    with pytest.raises(shmds.MessageTooLargeError):
        ch.put(bytes(200))
    assert ch.empty()
    ch.send(bytes(100))
    assert ch.recv() == bytes(100)
    with pytest.raises(ValueError):
        seg.channel("big", 4096, max_message=8192)  # larger than the ring


def test_empty_full_and_timeouts_raise_the_queue_exceptions(seg):
    ch = seg.channel("c", 256)  # 4 cells: 4 small messages
    with pytest.raises(queue.Empty):
        ch.recv(block=False)
    with pytest.raises(queue.Empty):
        ch.get_nowait()
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0.01)
    with pytest.raises(queue.Empty):
        ch.get(timeout=0)
    for i in range(4):
        ch.send(bytes([i]), block=False)
    assert ch.full() and ch.qsize() == 4
    with pytest.raises(queue.Full):
        ch.send(b"x", block=False)
    with pytest.raises(queue.Full):
        ch.put_nowait(1)
    with pytest.raises(queue.Full):
        ch.send(b"x", timeout=0.01)
    with pytest.raises(ValueError):
        ch.recv(timeout=-1)
    assert [ch.recv() for _ in range(4)] == [b"\0", b"\1", b"\2", b"\3"]


def test_blocking_calls_wake_when_another_thread_acts(seg):
    ch = seg.channel("c", 128)
    got = []
    t = threading.Thread(target=lambda: got.append(ch.get()))  # timeout=None
    t.start()
    ch.put("hello")
    t.join(30)
    assert got == ["hello"]
    ch.send(b"1")
    ch.send(b"2")  # full now
    t = threading.Thread(target=lambda: ch.send(b"3"))
    t.start()
    assert ch.recv(timeout=30) == b"1"
    t.join(30)
    assert [ch.recv(timeout=30), ch.recv(timeout=30)] == [b"2", b"3"]


def test_recv_into_copies_once_and_keeps_a_message_too_large(seg):
    ch = seg.channel("c", 1 << 16)
    frame = np.arange(1000, dtype=np.float32)
    ch.send(frame)
    out = np.empty(1000, dtype=np.float32)
    assert ch.recv_into(out) == 4000
    assert (out == frame).all()
    ch.send(b"0123456789")
    ch.send(b"next")
    small = bytearray(4)
    with pytest.raises(ValueError) as e:
        ch.recv_into(small)
    assert isinstance(e.value, shmds.MessageTooLargeError)
    assert (e.value.size, e.value.limit) == (10, 4)
    assert small == bytearray(4)
    big = bytearray(64)
    assert ch.recv_into(big) == 10 and big[:10] == b"0123456789"  # not lost
    assert ch.recv_into(small) == 4 and small == b"next"
    ch.send(b"abc")
    with pytest.raises(shmds.MessageTooLargeError):
        ch.recv_into(bytearray(1))
    assert ch.recv() == b"abc"  # any receive gets the kept message first
    with pytest.raises(BufferError):
        ch.recv_into(b"read-only")
    with pytest.raises(queue.Empty):
        ch.recv_into(big, block=False)


def test_recv_view_reads_in_place_and_frees_on_exit(seg):
    ch = seg.channel("c", 1 << 20)
    frame = np.random.default_rng(1).integers(0, 255, (480, 640), dtype=np.uint8)
    ch.send(frame)
    with ch.recv_view() as m:
        assert len(m) == frame.nbytes and not m.released
        view = np.frombuffer(m, dtype=np.uint8).reshape(480, 640)  # no copy
        assert not view.flags.writeable and not view.flags.owndata
        assert (view == frame).all()
        assert memoryview(m).readonly and bytes(m)[:5] == frame.tobytes()[:5]
        del view
    assert m.released and ch.empty()
    with pytest.raises(ValueError):
        len(m)
    with pytest.raises(ValueError):
        np.frombuffer(m, dtype=np.uint8)
    # A view that outlives the block: leaving it is refused and the message
    # stays held (safe to read) until the view goes.
    ch.send(b"kept")
    leaked = None
    with pytest.raises(BufferError):
        with ch.recv_view() as m:
            leaked = np.frombuffer(m, dtype=np.uint8)
    assert leaked.tobytes() == b"kept" and not m.released
    ch.send(b"other")  # MPMC: the handle receives meanwhile
    assert ch.recv() == b"other"
    del leaked
    m.release()
    assert m.released
    # Views are read-only.
    ch.send(b"ro")
    with ch.recv_view() as m:
        with pytest.raises(ValueError):
            np.frombuffer(m, dtype=np.uint8).setflags(write=True)
        with pytest.raises(TypeError):
            memoryview(m)[0] = 1
        assert m.tobytes() == b"ro"


def test_an_spsc_receiver_held_by_a_view_is_reported(seg):
    ch = seg.channel("c", 4096, spsc=True)
    ch.send(b"a")
    ch.send(b"b")
    with ch.recv_view() as m:
        assert m.tobytes() == b"a"
        with pytest.raises(shmds.AlreadyAttachedError):
            ch.recv()
    assert ch.recv() == b"b"


# -------------------------------------------------------------- objects


def test_objects_are_pickled_with_protocol_5(seg):
    ch = seg.channel("c", 4 << 20)
    objects = [None, 0, -1, 2**100, 1.5, "text", b"bytes", (1, "a"), [1, [2]],
               {"a": 1, "b": {"c": [1.5, None]}}, {1, 2}, frozenset(), pickle.PickleError("x")]
    for obj in objects:
        ch.put(obj)
    for obj in objects:
        got = ch.get()
        assert got == obj or (isinstance(obj, Exception) and got.args == obj.args)
    ch.send(b"not a pickle")
    with pytest.raises(pickle.UnpicklingError):
        ch.get()
    ch.send(b"\0OOB" + bytes(20))
    with pytest.raises(pickle.UnpicklingError):
        ch.get()


@pytest.mark.parametrize("shape,dtype,order", [
    ((0,), "<f8", "C"),
    ((10,), "<i4", "C"),              # small: in the pickle
    ((1000, 100), "<f4", "C"),        # large: out of band
    ((300, 200), "<u2", "F"),
    ((5000,), [("ts", "<u8"), ("price", "<f8")], "C"),
])
def test_numpy_arrays_come_back_equal_and_writable(seg, shape, dtype, order):
    ch = seg.channel("c", 4 << 20)
    a = np.zeros(shape, dtype=dtype, order=order)
    if a.dtype.names is None:
        a[...] = np.arange(a.size).reshape(shape) % 1000
    else:
        a["ts"] = np.arange(a.size)
        a["price"] = a["ts"] * 0.5
    ch.put({"frame": a, "id": 3, "slice": a[::2]})
    got = ch.get()
    assert got["id"] == 3
    for key, want in (("frame", a), ("slice", a[::2])):
        b = got[key]
        assert b.dtype == want.dtype and b.shape == want.shape
        assert np.array_equal(b, want)
        assert b.flags.writeable
        b[...] = 0  # owns (or shares only with this message) its memory
    assert ch.empty()


def test_topic_carries_objects_with_out_of_band_buffers(seg):
    t = seg.topic("t", 8 << 20)
    sub = t.subscribe()
    frame = np.arange(500_000, dtype=np.float64)
    t.put({"frame": frame})
    got = sub.get(timeout=5)["frame"]
    assert np.array_equal(got, frame) and got.flags.writeable


def test_put_many_and_get_many(seg):
    ch = seg.channel("c", 4096)
    assert ch.put_many([{"i": i} for i in range(10)]) == 10
    assert ch.get_many(4) == [{"i": i} for i in range(4)]
    assert ch.get_many(100) == [{"i": i} for i in range(4, 10)]
    assert ch.get_many(0) == []
    with pytest.raises(queue.Empty):
        ch.get_many(3, block=False)
    with pytest.raises(queue.Empty):
        ch.get_many(3, timeout=0.01)
    # 64 cells: the batch stops when the channel is full.
    assert ch.put_many(range(100), block=False) == 64
    assert ch.put_many([1], timeout=0.01) == 0
    with pytest.raises(TypeError):
        ch.put_many([1, threading.Lock()])  # nothing sent
    assert len(ch.get_many(1000)) == 64


def test_threads_share_one_handle(seg):
    ch = seg.channel("c", 1 << 16)
    n, threads = 2000, 4

    def produce(k):
        for i in range(n):
            ch.put((k, i))

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    last = {}
    for _ in range(n * threads):
        k, i = ch.get(timeout=30)
        assert i == last.get(k, -1) + 1  # per-producer order
        last[k] = i
    for w in workers:
        w.join(30)
    assert ch.empty()


def test_one_spsc_handle_serves_several_threads(seg):
    ch = seg.channel("c", 1 << 12, spsc=True)
    n = 500

    def produce(k):
        for i in range(n):
            ch.put((k, i))

    workers = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for w in workers:
        w.start()
    got = sorted(ch.get(timeout=30) for _ in range(3 * n))
    for w in workers:
        w.join(30)
    assert got == sorted((k, i) for k in range(3) for i in range(n))


# ------------------------------------------------------- handles and kinds


def test_create_open_pickle_and_shapes(seg):
    ch = seg.channel("c", 1000, max_message=500, spsc=True, checksum=True)
    t = seg.topic("t", 4096)
    assert ch.capacity == 1024 and t.max_message == 2048 and not t.checksum
    again = shmds.Segment(seg.name, create=False)
    c2, t2 = again.open("c"), again.open("t")
    assert type(c2) is shmds.Channel and type(t2) is shmds.Topic
    assert (c2.capacity, c2.max_message, c2.spsc, c2.checksum) == (1024, 500, True, True)
    assert seg.channel("c", 1024, max_message=500, spsc=True, checksum=True).name == "c"
    with pytest.raises(ValueError, match="spsc=True"):
        seg.channel("c", 1024, checksum=True)
    with pytest.raises(ValueError, match="checksum"):
        seg.channel("c", 1024, spsc=True)
    with pytest.raises(ValueError, match="max_message"):
        seg.channel("c", 1024, max_message=100, spsc=True, checksum=True)
    with pytest.raises(ValueError):
        seg.channel("c", 2048, spsc=True, checksum=True)
    with pytest.raises(ValueError, match="max_message"):
        seg.topic("t", 4096, max_message=10)
    with pytest.raises(TypeError):
        seg.topic("c", 1024)
    with pytest.raises(TypeError):
        seg.queue("c", "<u8", 4)
    kinds = {e.name: e.kind for e in seg.entries()}
    assert kinds == {"c": "channel", "t": "topic"}
    p = pickle.loads(pickle.dumps(ch))
    assert type(p) is shmds.Channel and p.name == "c" and p.segment_name == seg.name
    assert pickle.loads(pickle.dumps(t)).name == "t"
    with pytest.raises(TypeError, match="subscribe"):
        pickle.dumps(t.subscribe())
    assert "spsc" in repr(ch) and "'t'" in repr(t)


def test_close_detaches_and_wakes_this_handles_waiters(seg):
    ch = seg.channel("c", 4096)
    errors = []

    def wait_forever():
        try:
            ch.recv()
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=wait_forever)
    t.start()
    for _ in range(30_000):  # until the thread has attached its receiver
        if ch.has_receivers:
            break
        threading.Event().wait(0.001)
    ch.close()
    t.join(30)
    assert not t.is_alive() and len(errors) == 1 and "closed" in str(errors[0])
    ch.close()
    assert ch.closed and "closed" in repr(ch)
    with pytest.raises(ValueError):
        ch.send(b"x")
    with pytest.raises(ValueError):
        ch.qsize()
    assert not seg.open("c").has_receivers  # detached


def test_an_spsc_end_busy_in_another_thread_is_waited_for(seg):
    ch = seg.channel("c", 128, spsc=True)
    got = []
    t = threading.Thread(target=lambda: got.append(ch.recv(timeout=60)))
    t.start()
    for _ in range(30_000):  # until the thread waits, holding the one receiver
        with pytest.raises(queue.Empty) as e:
            ch.recv(block=False)
        if "busy" in str(e.value):
            break
        threading.Event().wait(0.001)
    assert "busy in another thread" in str(e.value)
    with pytest.raises(queue.Empty):
        ch.recv(timeout=0.02)  # waited for the receiver, then gave up
    ch.send(b"1")
    t.join(60)
    assert got == [b"1"]
    ch.send(b"2")
    ch.send(b"3")  # full: a sending thread waits for room, close() stops it
    errors = []

    def send_forever():
        try:
            ch.send(b"4")
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=send_forever)
    t.start()
    threading.Event().wait(0.05)
    ch.close()
    t.join(60)
    assert not t.is_alive() and len(errors) == 1


_REENTERED = {}


def _reenter():
    return _REENTERED["channel"].recv(block=False)


class _CallsBack:
    def __reduce__(self):
        return (_reenter, ())


def test_a_call_from_inside_a_call_on_an_spsc_handle_is_refused(seg):
    ch = seg.channel("c", 4096, spsc=True)
    _REENTERED["channel"] = ch
    try:
        ch.put(_CallsBack())
        ch.send(b"after")
        with pytest.raises(RuntimeError, match="inside"):
            ch.get()
        assert ch.recv() == b"after"
    finally:
        del _REENTERED["channel"]


def test_subscriber_close_wakes_its_waiter(seg):
    t = seg.topic("t", 4096)
    sub = t.subscribe()
    errors = []

    def wait_forever():
        try:
            sub.recv()  # closed before it waits, or while it waits: the same
        except ValueError as e:
            errors.append(e)

    th = threading.Thread(target=wait_forever)
    th.start()
    threading.Event().wait(0.05)
    sub.close()
    th.join(30)
    assert not th.is_alive() and len(errors) == 1
    with pytest.raises(ValueError):
        sub.recv(block=False)


def test_the_last_sender_closing_disconnects_receivers(seg):
    tx, rx = seg.channel("c", 4096), seg.open("c")
    with pytest.raises(queue.Empty):  # no sender yet: just empty
        rx.recv(block=False)
    tx.put(1)
    tx.put(2)
    tx.close()
    assert rx.get() == 1 and rx.get() == 2  # drained first
    with pytest.raises(shmds.Disconnected) as e:
        rx.get(timeout=30)
    assert isinstance(e.value, EOFError) and isinstance(e.value, shmds.ShmdsError)
    # And the other way: no receiver left, a full channel does not hang.
    tx2 = seg.open("c")
    while True:
        try:
            tx2.send(b"x", block=False)
        except queue.Full:
            break
    rx.close()
    with pytest.raises(shmds.Disconnected):
        tx2.send(b"x", timeout=30)


def test_shutdown_drains_then_raises(seg):
    ch = seg.channel("c", 4096)
    ch.put("left")
    ch.shutdown()
    assert ch.is_shutdown and seg.open("c").is_shutdown
    with pytest.raises(shmds.ShutDown):
        ch.put("more")
    assert ch.get() == "left"
    with pytest.raises(shmds.ShutDown):
        ch.get()
    if sys.version_info >= (3, 13):
        assert issubclass(shmds.ShutDown, queue.ShutDown)
    other = seg.channel("d", 4096)
    other.put(1)
    other.shutdown(immediate=True)
    with pytest.raises(shmds.ShutDown):
        other.get(block=False)


# ------------------------------------------------------------ processes


def _put_and_exit(ch, n):
    for i in range(n):
        ch.put({"i": i, "data": np.full(10, i)})


def test_a_receiver_sees_disconnection_after_the_sending_process_exits(seg):
    ch = seg.channel("c", 1 << 16)
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_put_and_exit, args=(ch, 500))
    p.start()
    for i in range(500):
        got = ch.get(timeout=60)
        assert got["i"] == i and (got["data"] == i).all()
    p.join(60)
    assert p.exitcode == 0
    with pytest.raises(shmds.Disconnected):
        ch.get(timeout=60)


def _consume(ch, n, results):
    results.put(sum(ch.get(timeout=60) for _ in range(n)))


@pytest.mark.parametrize("spsc", [False, True])
def test_a_drop_in_for_multiprocessing_queue(seg, spsc):
    ctx = mp.get_context("spawn")
    ch = seg.channel("jobs", 1 << 14, spsc=spsc)
    results = seg.channel("results", 4096)
    n = 3000
    consumer = ctx.Process(target=_consume, args=(ch, n, results))
    consumer.start()
    for i in range(n):
        ch.put(i)
    assert results.get(timeout=60) == n * (n - 1) // 2
    consumer.join(60)
    assert consumer.exitcode == 0
    ch.close()
    ch.join_thread()


def _send_from_fork(tx, ready, go):
    tx.put("child")  # through the inherited handle: attaches its own sender
    ready.put("sent")
    go.get(timeout=60)


def _spsc_send_from_fork(tx, results):
    try:
        tx.send(b"child")
        results.put("sent")
    except shmds.AlreadyAttachedError:
        results.put("refused")


def test_a_forked_child_attaches_ends_of_its_own(seg):
    ctx = mp.get_context("fork")
    tx, rx = seg.channel("c", 4096), seg.open("c")
    ready, go = seg.channel("ready", 4096), seg.channel("go", 4096)
    tx.put("parent")  # the parent's sender, inherited by the child
    p = ctx.Process(target=_send_from_fork, args=(tx, ready, go))
    p.start()
    assert ready.get(timeout=60) == "sent"
    tx.close()  # the child's own attachment keeps the channel connected
    assert sorted([rx.get(timeout=60), rx.get(timeout=60)]) == ["child", "parent"]
    with pytest.raises(queue.Empty):
        rx.get(timeout=0.05)
    go.put("exit")
    p.join(60)
    assert p.exitcode == 0
    with pytest.raises(shmds.Disconnected):
        rx.get(timeout=60)
    # SPSC: the child may not use the parent's one sender behind its back.
    sp, results = seg.channel("s", 4096, spsc=True), seg.channel("r", 4096)
    sp.send(b"parent")
    p = ctx.Process(target=_spsc_send_from_fork, args=(sp, results))
    p.start()
    assert results.get(timeout=60) == "refused"
    p.join(60)
    assert sp.recv() == b"parent" and sp.empty()


def test_spsc_refuses_a_second_sender_in_another_process(seg):
    ch = seg.channel("c", 4096, spsc=True)
    ch.send(b"mine")  # this handle is the sender now
    code, out = run_child(
        """
        import shmds, sys
        ch = shmds.Segment(sys.argv[1], create=False).open("c")
        try:
            ch.send(b"second")
        except shmds.AlreadyAttachedError as e:
            print("refused:", e)
            sys.exit(3)
        """,
        seg.name,
    )
    assert code == 3 and "single-producer" in out
    assert ch.recv() == b"mine" and ch.empty()
    ch.close()  # hands the sending side over
    code, _ = run_child(
        """
        import shmds, sys
        shmds.Segment(sys.argv[1], create=False).open("c").send(b"now it may")
        """,
        seg.name,
    )
    assert code == 0
    rx = seg.open("c")
    assert rx.recv(timeout=30) == b"now it may"


def test_shutdown_wakes_a_get_blocked_in_another_process(seg):
    seg.channel("c", 4096)
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(
            """
            import shmds, sys
            ch = shmds.Segment(sys.argv[1], create=False).open("c")
            print("waiting", flush=True)
            try:
                ch.get()  # no timeout
            except shmds.ShutDown:
                sys.exit(4)
            """), seg.name],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "waiting"
        seg.open("c").shutdown()
        assert child.wait(timeout=60) == 4
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _subscribe_and_collect(topic, n, ready, results):
    sub = topic.subscribe()
    ready.put(os.getpid())
    got = [sub.get(timeout=60) for _ in range(n)]
    results.put((sub.last_seq, got == [{"seq": i, "v": [i] * (i % 7)} for i in range(n)]))


def test_topic_fans_out_to_every_subscriber_process(seg):
    ctx = mp.get_context("spawn")
    topic = seg.topic("t", 1 << 20)
    ready, results = seg.channel("ready", 4096), seg.channel("results", 4096)
    n, subscribers = 2000, 3
    procs = [ctx.Process(target=_subscribe_and_collect, args=(topic, n, ready, results))
             for _ in range(subscribers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    for i in range(n):  # 2000 small messages fit: nobody lags
        assert topic.put({"seq": i, "v": [i] * (i % 7)}) == i
    assert sorted(results.get(timeout=60) for _ in procs) == [(n - 1, True)] * subscribers
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert topic.published == n


def test_a_lagging_subscriber_is_told_what_it_missed(seg):
    t = seg.topic("t", 1024)  # holds 16 one-cell messages
    slow = t.subscribe()
    assert t.latest() is None
    with pytest.raises(queue.Empty):
        slow.get_latest()
    for i in range(100):
        assert t.publish(i.to_bytes(8, "little")) == i
    assert len(t) == 16 and t.published == 100 and slow.pending == 100
    with pytest.raises(shmds.Lagged) as e:
        slow.recv()
    assert e.value.missed == 84 and isinstance(e.value, shmds.ShmdsError)
    assert "84" in str(e.value)
    assert [int.from_bytes(slow.recv(), "little") for _ in range(16)] == list(range(84, 100))
    assert slow.last_seq == 99
    with pytest.raises(queue.Empty):
        slow.recv(block=False)
    with pytest.raises(queue.Empty):
        slow.recv(timeout=0.01)
    late = t.subscribe(from_oldest=True)
    assert late.recv() == (84).to_bytes(8, "little")
    assert t.latest() == (99).to_bytes(8, "little")
    assert late.recv_latest() == (99).to_bytes(8, "little") and late.last_seq == 99
    with pytest.raises(queue.Empty):
        late.recv(block=False)
    t.put({"newest": True})
    assert late.get_latest() == {"newest": True}
    with pytest.raises(shmds.MessageTooLargeError):
        t.publish(bytes(513))


def test_one_subscriber_per_thread(seg):
    t = seg.topic("t", 4096)
    sub = t.subscribe()
    started = threading.Event()

    def wait_then_get():
        started.set()
        sub.recv(timeout=30)

    th = threading.Thread(target=wait_then_get)
    th.start()
    started.wait(30)
    threading.Event().wait(0.05)  # let it reach the wait (if not, recv below wins)
    try:
        sub.pending
    except RuntimeError as e:
        assert "another thread" in str(e)
    t.publish(b"go")
    th.join(30)
    assert not th.is_alive()


# --------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("what", ["channel.recv", "channel.recv_view", "subscriber.recv"])
def test_ctrl_c_interrupts_a_blocking_receive(segname, what):
    seg = shmds.Segment(segname, size=1 << 20)
    seg.channel("c", 4096, spsc=True)
    seg.topic("t", 4096)
    script = f"""
        import shmds, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)
        seg = shmds.Segment({segname!r}, create=False)
        ch, sub = seg.open("c"), seg.open("t").subscribe()
        call = {{"channel.recv": ch.recv, "channel.recv_view": ch.recv_view,
                 "subscriber.recv": sub.recv}}[{what!r}]
        try:
            print("waiting", flush=True)
            call()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "waiting"
        # The signal may come before the call waits: Python then raises at
        # the call's first interrupt check, or before it. Either is Ctrl-C.
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 3
        assert child.stdout.readline().strip() == "interrupted"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    seg.close()


# ---------------------------------------------------------------- stubs


def test_the_stubs_name_what_the_classes_have():
    here = os.path.dirname(os.path.abspath(shmds.__file__))
    with open(os.path.join(here, "_shmds.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    stubbed = {node.name: {n.name for n in node.body
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
               for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    for name in ("Channel", "MessageView", "Topic", "Subscriber", "Map", "Set"):
        runtime = getattr(shmds._shmds, name)
        public = {a for a in vars(runtime) if not a.startswith("__") or a in (
            "__len__", "__enter__", "__exit__", "__new__")} - {"__new__"}
        assert public <= stubbed[name] | {"__new__"}, (name, public - stubbed[name])
        assert stubbed[name] - {"__new__", "__buffer__"} <= set(dir(runtime)), name
    for exc in ("Disconnected", "ShutDown", "Lagged", "MessageTooLargeError",
                "AlreadyAttachedError"):
        assert exc in stubbed and hasattr(shmds, exc)
    assert issubclass(shmds.Disconnected, EOFError)
    assert issubclass(shmds.MessageTooLargeError, ValueError)
