"""Uses of the shmds types that must type-check clean (mypy --strict).

Never executed (test_typing.py only type-checks it): everything is in
functions that nothing calls.
"""

from __future__ import annotations

import datetime
import pathlib
from typing import Any, Literal, assert_type

import numpy as np

import shmds


def structures(seg: shmds.Segment) -> None:
    jobs = seg.queue("jobs", "<u8", capacity=4)
    assert_type(jobs, shmds.Queue[int])
    jobs.put(7)
    jobs.put_nowait(8)
    n: int = jobs.get(timeout=1.0)
    assert_type(jobs.get_nowait(), int)

    assert_type(seg.queue("a", "uint32", 4), shmds.Queue[int])
    assert_type(seg.queue("b", "=i2", 4), shmds.Queue[int])
    assert_type(seg.queue("c", "|u1", 4), shmds.Queue[int])
    assert_type(seg.queue("d", np.int64, 4), shmds.Queue[int])
    assert_type(seg.queue("e", int, 4), shmds.Queue[int])
    assert_type(seg.queue("f", np.dtype("<i4"), 4), shmds.Queue[int])
    assert_type(seg.queue("g", "<f4", 4), shmds.Queue[float])
    assert_type(seg.queue("h", float, 4), shmds.Queue[float])
    assert_type(seg.queue("i", np.float32, 4), shmds.Queue[float])
    assert_type(seg.queue("j", "S16", 4), shmds.Queue[str])
    assert_type(seg.queue("k", "V8", 4), shmds.Queue[bytes])
    assert_type(seg.queue("l", ">u8", 4), shmds.Queue[Any])  # big-endian: numpy scalars
    assert_type(seg.queue("m", [("ts", "<u8"), ("price", "<f8")], 4), shmds.Queue[Any])
    floats = seg.queue("n", "<f8", 4)
    floats.put(1)  # an int is a float here, as for the native conversion
    stack = seg.stack("s", "<i8", capacity=4)
    assert_type(stack, shmds.Stack[int])
    stack.put(-1)
    q: shmds.Queue[int] = stack  # a Stack is a Queue

    prices = seg.map("prices", key="S16", value="<f8", capacity=16)
    assert_type(prices, shmds.Map[str, float])
    prices["AAPL"] = 189.5
    p: float = prices["AAPL"]
    assert_type(prices.get("MSFT"), float | None)
    assert_type(prices.get("MSFT", 0.0), float)
    assert_type(prices.pop("AAPL"), float)
    for k, v in prices.items():
        assert_type(k, str)
        assert_type(v, float)
    assert_type(list(prices), list[str])
    counts = seg.map("counts", key="<u8", value="<i8", capacity=16)
    assert_type(counts, shmds.Map[int, int])
    old: int = counts.fetch_add(3)
    assert_type(seg.map("x", key="S8", value=[("a", "<u4")], capacity=4), shmds.Map[str, Any])

    seen = seg.set("seen", key="<u8", capacity=16)
    assert_type(seen, shmds.Set[int])
    seen.add(1)
    was_new: bool = seen.insert(2)
    assert_type(seen.pop(), int)
    assert_type(seg.set("names", key="S32", capacity=4), shmds.Set[str])

    temps = seg.array("temps", "<f4", 8)
    assert_type(temps, shmds.Array[np.float32])
    temps[0] = 20
    temps[1] = 20.5
    temps[2:4] = [1.0, 2.0]
    assert_type(temps[0], np.float32)
    total = seg.array("total", "<u8", 1)
    assert_type(total, shmds.Array[np.uint64])
    total[0] = 1
    total[0] += 1
    c = int(total[0])
    assert_type(seg.array("f", float, 2), shmds.Array[np.float64])
    assert_type(seg.array("i", int, 2), shmds.Array[np.int64])
    assert_type(seg.array("u", np.uint16, 2), shmds.Array[np.uint16])
    names = seg.array("names", "S16", 2)
    names[0] = "abc"
    s: str = names[0]
    blobs = seg.array("blobs", "V8", 2)
    b: bytes = blobs[1]

    events = seg.channel("events", capacity=1 << 16)
    assert_type(events, shmds.Channel[Any])
    events.put({"id": 1})
    typed: shmds.Channel[dict[str, int]] = seg.channel("typed", capacity=1 << 16)
    typed.put({"id": 1})
    assert_type(typed.get(), dict[str, int])
    ticks = seg.topic("ticks", capacity=1 << 16)
    seq: int = ticks.put((1, 2))


def accessors(seg: shmds.Segment) -> None:
    # The typed accessors need no narrowing...
    seg.open_queue("jobs").put(1)
    ids: shmds.Queue[int] = seg.open_queue("jobs")
    assert_type(seg.open_stack("s"), shmds.Stack[Any])
    seg.open_map("prices")["AAPL"] = 1.0
    assert_type(seg.open_array("temps"), shmds.Array[Any])
    assert_type(seg.open_set("seen"), shmds.Set[Any])
    seg.open_channel("events").send(b"x")
    seg.open_topic("ticks").publish(b"x")
    with seg.open_lock("l"):
        pass
    with seg.open_rwlock("rw").read():
        pass
    seg.open_condition("c").notify_all()
    seg.open_semaphore("sem").release()
    seg.open_barrier("b").wait(1.0)
    seg.open_event("e").set()
    seg.open_latch("latch").count_down()
    seg.open_once("o").call(lambda: None)
    # ...while open() is narrowed first.
    handle = seg.open("jobs")
    if isinstance(handle, shmds.Queue):
        handle.put(1)


def constructors() -> None:
    seg = shmds.Segment("x", 1 << 20, temporary=True)
    assert_type(seg, shmds.Segment)
    with shmds.Segment("x", create=False) as again:
        assert_type(again, shmds.Segment)
    lock = shmds.Lock(seg, "l", create=False)
    assert_type(lock, shmds.Lock)
    sem = shmds.BoundedSemaphore(seg, "sem", 2)
    assert_type(sem, shmds.BoundedSemaphore)
    with seg.queue("q", "<u8", 4) as q:
        assert_type(q, shmds.Queue[int])


async def awaitables(seg: shmds.Segment) -> None:
    jobs = seg.queue("jobs", "<u8", capacity=4)
    await jobs.put_async(1)
    assert_type(await jobs.get_async(), int)
    typed: shmds.Channel[str] = seg.channel("typed", capacity=1 << 16)
    await typed.put_async("x")
    assert_type(await typed.get_async(), str)


def durable_and_snapshots(path: pathlib.Path) -> None:
    seg = shmds.Segment(path / "state.shmds", 1 << 20, flush_on_close=True)
    durable: bool = seg.is_durable
    seg.flush()
    shmds.remove("./state.shmds")
    store = shmds.Store(path / "store")
    assert_type(store.path, pathlib.Path)
    info = store.snapshot(seg)
    assert_type(info, shmds.SnapshotInfo)
    assert_type(seg.snapshot(store), shmds.SnapshotInfo)
    assert_type(seg.snapshot("./store"), shmds.SnapshotInfo)
    ident: str = info.id
    assert_type(info.created, datetime.datetime)
    assert_type(info.paused_for, float)
    assert_type(store.restore(info.id[:8], "copy"), shmds.Segment)
    assert_type(store.snapshots(), list[shmds.SnapshotInfo])
    full: str = store.resolve(info.id[:8])
    report = store.verify()
    assert_type(report, shmds.VerifyReport)
    if not report:
        problems: list[str] = report.problems
    for change in store.diff(info.id, full):
        assert_type(change.change, Literal["added", "removed", "changed", "unchanged"])
        if change.after is not None:
            assert_type(change.after, shmds.SnapshotEntry)
            key: str | None = change.after.key_type
    store.remove(info.id)
    freed: int = store.gc().bytes_freed
