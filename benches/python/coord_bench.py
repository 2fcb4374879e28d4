"""The shmds coordination primitives from Python beside multiprocessing's.

Not a test. Run it from outside the source tree (so that the installed
package is imported), e.g. ``cd /tmp && python .../coord_bench.py``.

Figures:

- uncontended ``with lock:`` (one process, one thread), ns per
  acquire-release pair: shmds ``Lock`` beside ``multiprocessing.Lock`` (a
  POSIX semaphore) and, for scale, ``threading.Lock`` (which no other
  process can use); the shmds row carries its ratio to
  ``multiprocessing.Lock``. Median of BENCH_REPEAT runs of BENCH_LOCK_N
  pairs each, the implementations alternating run by run.
- event wake-up latency between two processes: a ``spawn``ed child waits on
  event ``ping``, clears it and sets ``pong``; this process sets ``ping``
  and waits on ``pong`` (then clears it). One round trip is two wake-ups
  across processes; the table gives the median and the 99th percentile of
  BENCH_EVENT_N round trips (after 100 unmeasured ones), in microseconds,
  shmds ``Event`` beside ``multiprocessing.Event``. The waits block (no
  timeout): shmds spins briefly, then sleeps on a futex without the GIL;
  multiprocessing waits in a ``Condition`` built on POSIX semaphores.

Each run of shmds has its own segment, named after this process and removed
at the end.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import threading
import time

import shmds

LOCK_N = int(os.environ.get("BENCH_LOCK_N", "1000000"))
EVENT_N = int(os.environ.get("BENCH_EVENT_N", "2000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
WARMUP = 100


def with_lock_ns(lock, n: int) -> float:
    """ns per ``with lock:`` over ``n`` uncontended pairs."""
    start = time.perf_counter_ns()
    for _ in range(n):
        with lock:
            pass
    return (time.perf_counter_ns() - start) / n


def _pong(ping, pong, rounds: int) -> None:
    for _ in range(rounds):
        ping.wait()
        ping.clear()
        pong.set()


def round_trips_us(ping, pong, rounds: int) -> list[float]:
    """Round trips (µs) with a child that answers each ``ping`` with ``pong``."""
    child = mp.get_context("spawn").Process(target=_pong, args=(ping, pong, WARMUP + rounds))
    child.start()
    times = []
    try:
        for i in range(WARMUP + rounds):
            start = time.perf_counter_ns()
            ping.set()
            pong.wait()
            took = time.perf_counter_ns() - start
            pong.clear()
            if i >= WARMUP:
                times.append(took / 1000)
        child.join(60)
        assert child.exitcode == 0, child.exitcode
    finally:
        if child.is_alive():
            child.kill()
    return times


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(len(xs) * 0.99))]


def main() -> None:
    name = f"shmds-coord-bench-{os.getpid()}"
    seg = shmds.Segment(name, 1 << 20)
    try:
        locks = {
            "shmds Lock": seg.lock("bench"),
            "multiprocessing.Lock": mp.get_context("spawn").Lock(),
            "threading.Lock (one process only)": threading.Lock(),
        }
        runs: dict[str, list[float]] = {k: [] for k in locks}
        for _ in range(REPEAT):
            for label, lock in locks.items():
                runs[label].append(with_lock_ns(lock, LOCK_N))
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"Uncontended `with lock:` ({LOCK_N:,} pairs, median of {REPEAT} runs)\n")
        print("| lock | ns per with | range |")
        print("| --- | ---: | --- |")
        for label, v in runs.items():
            ratio = ""
            if label == "shmds Lock":
                ratio = f" ({med[label] / med['multiprocessing.Lock']:.2f}x multiprocessing.Lock)"
            print(f"| {label} | {med[label]:.0f}{ratio} | {min(v):.0f}-{max(v):.0f} |")

        ctx = mp.get_context("spawn")
        events = {
            "shmds Event": (seg.event("ping"), seg.event("pong")),
            "multiprocessing.Event": (ctx.Event(), ctx.Event()),
        }
        trips: dict[str, list[float]] = {k: [] for k in events}
        for _ in range(2):  # alternating runs, pooled
            for label, (ping, pong) in events.items():
                trips[label] += round_trips_us(ping, pong, EVENT_N // 2)
        print(f"\nEvent round trip between two processes ({EVENT_N:,} round trips, "
              "two wake-ups each)\n")
        print("| event | median µs | p99 µs |")
        print("| --- | ---: | ---: |")
        for label, t in trips.items():
            print(f"| {label} | {statistics.median(t):.1f} | {p99(t):.1f} |")
        print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    finally:
        seg.close()
        shmds.remove(name)


if __name__ == "__main__":
    main()
