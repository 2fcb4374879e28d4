"""Wrong uses of the shmds types: mypy must report exactly the lines
marked ``# E: <error code>`` (test_typing.py checks it). Never executed."""

from __future__ import annotations

import shmds


def wrong(seg: shmds.Segment) -> None:
    jobs = seg.queue("jobs", "<u8", capacity=4)
    jobs.put("oops")  # E: arg-type
    jobs.put_nowait(1.5)  # E: arg-type
    s: str = jobs.get()  # E: assignment

    prices = seg.map("prices", key="S16", value="<f8", capacity=16)
    prices["AAPL"] = "x"  # E: assignment
    prices[1] = 2.0  # E: index
    seen = seg.set("seen", key="<u8", capacity=16)
    seen.add("x")  # E: arg-type

    counts = seg.array("counts", "<u8", 4)
    x: str = counts[0]  # E: assignment
    counts[0] = "x"  # E: call-overload
    names = seg.array("names", "S16", 2)
    names[0] = 1  # E: call-overload

    typed: shmds.Channel[int] = seg.channel("typed", capacity=1 << 16)
    typed.put("x")  # E: arg-type

    # open() is a union of every kind: narrow it, or use open_queue().
    seg.open("jobs").put(1)  # E: union-attr
    # open_queue() needs no narrowing, and is a queue.
    seg.open_queue("jobs").publish(b"x")  # E: attr-defined
    jobs_again: shmds.Stack[int] = seg.open_queue("jobs")  # E: assignment

    shmds.Queue(seg, "q", "queue", "<Q", 4, None, None)  # E: call-arg
    shmds.Lock(seg, "l", True, 1)  # E: call-arg
