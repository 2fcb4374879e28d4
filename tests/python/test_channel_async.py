"""asyncio forms of Channel and Topic receives and sends: results, timeouts,
and cancellation that leaves no thread blocked and loses no message."""

from __future__ import annotations

import asyncio
import os
import queue
import threading

import pytest

import shmds


@pytest.fixture
def seg():
    name = f"shmds-pytest-chasync-{os.getpid()}-{threading.get_ident()}"
    s = shmds.Segment(name, size=4 << 20)
    yield s
    shmds.remove(name)


def test_channel_round_trip_and_wakeup(seg):
    ch = seg.channel("c", 4096)

    async def main():
        waiter = asyncio.create_task(ch.recv_async(timeout=10))
        await asyncio.sleep(0.05)
        await ch.send_async(b"hello")
        assert await waiter == b"hello"
        await ch.put_async({"k": 1})
        assert await ch.get_async() == {"k": 1}

    asyncio.run(main())


def test_channel_timeout_and_cancel_lose_nothing(seg):
    ch = seg.channel("c", 4096)

    async def main():
        with pytest.raises(queue.Empty):
            await ch.recv_async(timeout=0.05)
        task = asyncio.create_task(ch.recv_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled receive took nothing: the next message is there.
        ch.send(b"kept")
        assert await asyncio.wait_for(ch.recv_async(), 10) == b"kept"

    asyncio.run(asyncio.wait_for(main(), 30))
    # asyncio.run returned, and no worker thread is still in a wait.
    assert shmds._aio.waits_in_threads() == 0


def test_send_async_waits_for_room(seg):
    ch = seg.channel("c", 128)
    ch.send(b"x" * 64)
    ch.send(b"y" * 64)

    async def main():
        with pytest.raises(queue.Full):
            await ch.send_async(b"z" * 64, timeout=0.05)
        sender = asyncio.create_task(ch.send_async(b"z" * 64, timeout=10))
        await asyncio.sleep(0.05)
        assert ch.recv() == b"x" * 64
        await sender
        assert ch.recv() == b"y" * 64
        assert ch.recv() == b"z" * 64

    asyncio.run(main())


def test_subscriber_recv_async(seg):
    t = seg.topic("t", 4096)
    sub = t.subscribe()

    async def main():
        waiter = asyncio.create_task(sub.recv_async(timeout=10))
        await asyncio.sleep(0.05)
        t.publish(b"tick")
        assert await waiter == b"tick"
        with pytest.raises(queue.Empty):
            await sub.recv_async(timeout=0.05)
        task = asyncio.create_task(sub.get_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t.put([1, 2])
        assert await sub.get_async(timeout=10) == [1, 2]

    asyncio.run(asyncio.wait_for(main(), 30))


def test_task_done_and_join_across_processes(seg):
    import subprocess
    import sys
    import textwrap

    ch = seg.channel("jobs", 4096)
    for i in range(5):
        ch.put(i)
    assert ch.join(timeout=0.05) is False
    worker = textwrap.dedent(f"""
        import shmds
        seg = shmds.Segment({seg.name!r}, create=False)
        ch = seg.open("jobs")
        for _ in range(5):
            ch.get(timeout=10)
            ch.task_done()
    """)
    child = subprocess.Popen([sys.executable, "-c", worker])
    try:
        assert ch.join(timeout=30) is True
    finally:
        child.wait(timeout=30)
    assert child.returncode == 0
    assert ch.unfinished_tasks == 0
    with pytest.raises(ValueError):
        ch.task_done()
    ch.put("x")
    assert ch.get() == "x"
    assert ch.unfinished_tasks == 1

    async def main():
        joiner = asyncio.create_task(ch.join_async(timeout=10))
        await asyncio.sleep(0.05)
        assert not joiner.done()
        ch.task_done()
        assert await joiner is True

    asyncio.run(main())
