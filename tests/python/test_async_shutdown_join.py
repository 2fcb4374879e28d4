"""Queue and Stack: awaitable calls (and their cancellation), close() waking
waiters, shutdown() and task_done()/join() across real processes.

No test asserts a duration: a call that is not woken as it should be runs
into a long timeout (or a join() of a thread or process gives up), and the
test fails on what it observes."""

import asyncio
import multiprocessing as mp
import queue
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import shmds
from shmds import _aio

LONG = 60  # seconds: only a missed wake-up runs into it


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


def run(coro):
    """asyncio.run, then check no worker thread is still in a wait."""
    result = asyncio.run(coro)
    assert _aio.waits_in_threads() == 0, "a worker thread was left waiting"
    return result


# ---------------------------------------------------------------- asyncio


def test_async_calls_take_what_is_there_at_once(seg):
    q = seg.queue("q", "<u8", capacity=4)
    s = seg.stack("s", "<i4", capacity=4)

    async def main():
        await q.put_async(1)
        await q.put_many_async([2, 3])
        await s.put_async(-1)
        assert await q.get_async() == 1
        assert (await q.get_many_async(5)).tolist() == [2, 3]
        assert await s.get_async() == -1
        with pytest.raises(queue.Empty):
            await q.get_async(timeout=0)
        with pytest.raises(queue.Empty):
            await q.get_many_async(2, timeout=0.01)
        with pytest.raises(ValueError):
            await q.get_async(timeout=-1)

    run(main())


def test_async_get_waits_for_a_put_from_another_thread_and_process(seg, segname):
    q = seg.queue("q", "<u8", capacity=2)
    script = f"import shmds, sys; sys.stdin.readline(); shmds.Segment({segname!r}).open('q').put(7)"
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, text=True)

    async def main():
        task = asyncio.ensure_future(q.get_async(timeout=LONG))
        await asyncio.sleep(0.05)  # the task is waiting in a worker thread
        assert not task.done()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert await task == 7
        # And a thread: several tasks wait, each element goes to one.
        tasks = [asyncio.ensure_future(q.get_async(timeout=LONG)) for _ in range(8)]
        await asyncio.sleep(0.05)
        threading.Thread(target=lambda: [q.put(v, timeout=LONG) for v in range(100, 108)]).start()
        assert sorted(await asyncio.gather(*tasks)) == list(range(100, 108))

    try:
        run(main())
        assert child.wait(LONG) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_async_put_waits_for_room(seg):
    q = seg.queue("q", "<u8", capacity=1)
    q.put(1)

    async def main():
        task = asyncio.ensure_future(q.put_async(2, timeout=LONG))
        many = asyncio.ensure_future(q.put_many_async(np.arange(10, 13), timeout=LONG))
        await asyncio.sleep(0.05)
        got = [await q.get_async(timeout=LONG) for _ in range(5)]
        await task
        assert await many == 3
        assert got[0] == 1 and sorted(got[1:]) == [2, 10, 11, 12]
        q.put(7)
        with pytest.raises(queue.Full):
            await q.put_async(5, timeout=0.01)
        assert await q.put_many_async([5, 6], timeout=0.01) == 0

    run(main())


def test_cancelled_async_calls_take_and_put_nothing_and_leave_no_thread(seg):
    q = seg.queue("q", "<u8", capacity=1)
    s = seg.stack("s", "<u8", capacity=1)

    async def main():
        # wait_for cancels the call when its timeout passes.
        for call in (q.get_async, s.get_async, q.get_many_async):
            args = (3,) if call == q.get_many_async else ()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call(*args), 0.05)
            assert _aio.waits_in_threads() == 0
        q.put(1)
        s.put(1)
        for call, arg in ((q.put_async, 2), (s.put_async, 2), (q.put_many_async, [2, 3])):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call(arg), 0.05)
            assert _aio.waits_in_threads() == 0
        assert q.get() == 1 and q.empty(), "a cancelled put put nothing"
        assert s.get() == 1 and s.empty()
        # Task.cancel, many at once.
        tasks = [asyncio.ensure_future(q.get_async()) for _ in range(20)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert _aio.waits_in_threads() == 0
        q.put(9)
        assert q.get() == 9, "a cancelled get took nothing"

    run(main())


def test_asyncio_run_returns_with_a_get_still_pending(segname):
    """The failure this replaces: run_in_executor(None, q.get) under
    wait_for leaves a thread in get() and asyncio.run never returns. Here
    a child process leaves a get_async pending when main() ends
    (asyncio.run cancels it) and one timed out by wait_for: the child
    finishes, and no worker thread is left waiting."""
    shmds.Segment(segname, size=1 << 20).queue("never", "<u8", capacity=4)
    script = textwrap.dedent(
        f"""
        import asyncio, shmds
        from shmds import _aio
        q = shmds.Segment({segname!r}, create=False).open("never")

        async def main():
            try:
                await asyncio.wait_for(q.get_async(), 0.05)
            except asyncio.TimeoutError:
                pass
            asyncio.ensure_future(q.get_async())   # still pending at the end
            await asyncio.sleep(0.05)

        asyncio.run(main())
        print("returned", _aio.waits_in_threads(), flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=LONG)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["returned", "0"]


def test_join_async(seg):
    q = seg.queue("q", "<u8", capacity=4)

    async def main():
        assert await q.join_async(timeout=0)
        q.put(1)
        assert not await q.join_async(timeout=0.01)
        joiner = asyncio.ensure_future(q.join_async())
        assert await q.get_async() == 1
        await asyncio.sleep(0.02)
        assert not joiner.done(), "a task is still unfinished"
        q.task_done()
        assert await joiner
        with pytest.raises(asyncio.TimeoutError):
            q.put(2)
            await asyncio.wait_for(q.join_async(), 0.05)
        assert _aio.waits_in_threads() == 0

    run(main())


# ---------------------------------------------------------------- close


def test_close_wakes_an_awaiting_call(seg):
    q = seg.queue("q", "<u8", capacity=1)

    async def main():
        task = asyncio.ensure_future(q.get_async(timeout=LONG))
        await asyncio.sleep(0.05)
        q.close()
        with pytest.raises(ValueError, match="was closed while"):
            await task

    run(main())


# ---------------------------------------------------------------- shutdown


def test_shutdown_is_queue_shutdown_where_python_has_it():
    if hasattr(queue, "ShutDown"):
        assert issubclass(shmds.ShutDown, queue.ShutDown)
    assert issubclass(shmds.ShutDown, Exception)
    # One class for queues, stacks, channels and topics.
    assert shmds.ShutDown is shmds._shmds.ShutDown and shmds.ShutDown.__name__ == "ShutDown"


def test_shutdown_refuses_puts_and_drains_gets(seg):
    for kind in ("queue", "stack"):
        q = getattr(seg, kind)(kind, "<u8", capacity=4)
        q.put_many([1, 2, 3])
        assert not q.is_shutdown
        q.shutdown()
        assert q.is_shutdown and seg.open(kind).is_shutdown
        for put in (lambda: q.put(9), lambda: q.put_nowait(9), lambda: q.put_many([9])):
            with pytest.raises(shmds.ShutDown):
                put()
        got = [q.get(), q.get_nowait()] + q.get_many(5).tolist()
        assert sorted(got) == [1, 2, 3]
        for get in (q.get, q.get_nowait, lambda: q.get(timeout=LONG), lambda: q.get_many(2)):
            with pytest.raises(shmds.ShutDown):
                get()
        q.shutdown(immediate=True)  # again, harmless
        assert "shut down" in repr(q)

        async def main():
            with pytest.raises(shmds.ShutDown):
                await q.get_async()
            with pytest.raises(shmds.ShutDown):
                await q.put_async(1)

        run(main())


def test_immediate_shutdown_discards(seg):
    q = seg.queue("q", "<u8", capacity=8)
    q.put_many([1, 2, 3])
    q.shutdown(immediate=True)
    assert q.qsize() == 0
    with pytest.raises(shmds.ShutDown):
        q.get_nowait()


WAITER = textwrap.dedent(
    """
    import shmds, sys
    segname, name, action = sys.argv[1:4]
    q = shmds.Segment(segname, create=False).open(name)
    print("waiting", flush=True)
    got = []
    try:
        while True:
            if action == "get":
                got.append(q.get())          # no timeout: only a shutdown ends this
            else:
                q.put(1)
    except shmds.ShutDown:
        print("shut down", *got, flush=True)
    """
)


def start(segname, name, action):
    child = subprocess.Popen([sys.executable, "-c", WAITER, segname, name, action],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "waiting"
    return child


def test_shutdown_wakes_waiters_in_other_processes(seg, segname):
    q = seg.queue("q", "<u8", capacity=2)
    s = seg.stack("s", "<u8", capacity=2)
    children = []
    try:
        getter = start(segname, "q", "get")
        putter = start(segname, "s", "put")  # fills the stack, then waits for room
        children = [getter, putter]
        q.put(5)
        time.sleep(0.2)  # let them block
        q.shutdown()
        s.shutdown()
        for child in children:
            assert child.wait(LONG) == 0
        assert getter.stdout.read().split() == ["shut", "down", "5"]
        assert putter.stdout.read().split() == ["shut", "down"]
        assert sorted([s.get(), s.get()]) == [1, 1]  # what it put before stays
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


# ---------------------------------------------------------------- join


def test_task_done_and_join_in_one_process(seg):
    q = seg.queue("q", "<u8", capacity=8)
    assert q.join(timeout=0) and q.unfinished_tasks == 0
    q.put_many([1, 2, 3])
    assert not q.join(timeout=0.01)
    q.get()
    q.get_many(2)
    assert q.unfinished_tasks == 3
    for _ in range(3):
        q.task_done()
    assert q.join(timeout=0) and q.join()
    with pytest.raises(ValueError, match="more times than"):
        q.task_done()
    s = seg.stack("s", "<u8", capacity=2)
    for call in (s.task_done, s.join, lambda: s.unfinished_tasks):
        with pytest.raises(TypeError, match="stack does not count tasks"):
            call()


def _worker(q, done_flags, i):
    while True:
        try:
            v = q.get(timeout=LONG)
        except shmds.ShutDown:
            return
        done_flags.fetch_add(int(v) % 4, 1)
        q.task_done()


@pytest.mark.parametrize("method", ["spawn"])
def test_join_across_processes(seg, method):
    """Workers in other processes get and task_done; this process joins.
    A worker holding a task keeps join waiting, in every process."""
    ctx = mp.get_context(method)
    q = seg.queue("jobs", "<u8", capacity=16)
    counts = seg.array("counts", "<u8", 4)
    workers = [ctx.Process(target=_worker, args=(q, counts, i)) for i in range(2)]
    for w in workers:
        w.start()
    try:
        for v in range(200):
            q.put(v, timeout=LONG)
        assert q.join(timeout=LONG), "join gave up"
        assert q.unfinished_tasks == 0 and q.empty()
        assert np.asarray(counts).tolist() == [50, 50, 50, 50]
        q.shutdown()  # the workers leave once the queue is empty
        for w in workers:
            w.join(LONG)
            assert w.exitcode == 0
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()


def test_a_task_held_by_another_process_keeps_join_waiting(seg, segname):
    q = seg.queue("q", "<u8", capacity=4)
    q.put(1)
    script = textwrap.dedent(
        f"""
        import shmds, sys
        q = shmds.Segment({segname!r}, create=False).open("q")
        q.get()
        print("took it", flush=True)
        sys.stdin.readline()
        q.task_done()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "took it"
        assert q.empty() and q.unfinished_tasks == 1
        assert not q.join(timeout=0.05)
        joined = []
        t = threading.Thread(target=lambda: joined.append(q.join(timeout=LONG)))
        t.start()
        child.stdin.write("done\n")
        child.stdin.flush()
        t.join(LONG)
        assert joined == [True]
        assert child.wait(LONG) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
