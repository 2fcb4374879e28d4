"""Python benchmarks of shmds beside the peers a Python user would reach for.

Not a test: it prints a Markdown table of medians and ratios for
BENCHMARKS.md. Run it with `make bench-python` (which installs the peers:
faster-fifo, shared-memory-dict and iceoryx2 into .venv).

Everything is measured in one run, side by side, on the same items:
- cross-process throughput of single items (small ints, and 8-byte bytes):
  a producer process puts N items, this process gets them;
- single-op put+get in one process;
- batches (put_many/get_many of u64) across processes;
- map get and set.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import queue as stdqueue
import statistics
import sys
import time

import numpy as np

import shmds

N = int(os.environ.get("BENCH_N", "200000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CTX = mp.get_context("spawn")


def median(f, *args) -> float:
    return statistics.median(f(*args) for _ in range(REPEAT))


# ---------------------------------------------------------------- producers
# Producers run in spawned children; each waits for `go` so that start-up
# is not timed, then puts `n` items.


def _shmds_producer(segname, name, n, kind, go):
    q = shmds.Segment(segname, create=False).open(name)
    go.wait()
    if kind == "int":
        for i in range(n):
            q.put(i)
    elif kind == "bytes":
        for i in range(n):
            q.put(i.to_bytes(8, "little"))
    else:  # batches
        batch = np.arange(4096, dtype="<u8")
        sent = 0
        while sent < n:
            sent += q.put_many(batch[: min(4096, n - sent)])


def _pyqueue_producer(q, n, kind, go):
    go.wait()
    if kind == "int":
        for i in range(n):
            q.put(i)
    else:
        for i in range(n):
            q.put(i.to_bytes(8, "little"))


def _ff_batch_producer(q, n, go):
    go.wait()
    batch = list(range(4096))
    sent = 0
    while sent < n:
        k = min(4096, n - sent)
        q.put_many(batch[:k], timeout=60)
        sent += k


# ---------------------------------------------------------------- cross-process


def shmds_cross(kind: str, n: int) -> float:
    name = f"shmds-bench-{os.getpid()}"
    dtype = "V8" if kind == "bytes" else "<u8"  # exactly 8 raw bytes
    seg = shmds.Segment(name, size=16 << 20)
    try:
        q = seg.queue("q", dtype, capacity=65536 if kind == "batch" else 4096)
        go = CTX.Event()
        p = CTX.Process(target=_shmds_producer, args=(name, "q", n, kind, go))
        p.start()
        time.sleep(0.2)
        t = time.perf_counter()
        go.set()
        got = 0
        if kind == "batch":
            while got < n:
                got += len(q.get_many(65536, timeout=60))
        else:
            get = q.get
            for _ in range(n):
                get(True, 60)
        dt = time.perf_counter() - t
        p.join()
        return n / dt
    finally:
        seg.close()
        shmds.remove(name)


def mp_queue_cross(kind: str, n: int) -> float:
    q = CTX.Queue(maxsize=4096)
    go = CTX.Event()
    p = CTX.Process(target=_pyqueue_producer, args=(q, n, kind, go))
    p.start()
    time.sleep(0.2)
    t = time.perf_counter()
    go.set()
    for _ in range(n):
        q.get(True, 60)
    dt = time.perf_counter() - t
    p.join()
    return n / dt


def faster_fifo_cross(kind: str, n: int) -> float:
    import faster_fifo

    q = faster_fifo.Queue(max_size_bytes=16 << 20)
    go = CTX.Event()
    if kind == "batch":
        p = CTX.Process(target=_ff_batch_producer, args=(q, n, go))
    else:
        p = CTX.Process(target=_pyqueue_producer, args=(q, n, kind, go))
    p.start()
    time.sleep(0.2)
    t = time.perf_counter()
    go.set()
    got = 0
    if kind == "batch":
        while got < n:
            got += len(q.get_many(timeout=60, max_messages_to_get=65536))
    else:
        for _ in range(n):
            q.get(True, 60)
    dt = time.perf_counter() - t
    p.join()
    return n / dt


def iceoryx2_cross(n: int) -> float | None:
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import peer_iceoryx2
    except Exception:  # not installed, or the peer file is missing
        return None
    return peer_iceoryx2.throughput(n)


# ---------------------------------------------------------------- in-process


def per_op_ns(f, n: int) -> float:
    t = time.perf_counter()
    f(n)
    return (time.perf_counter() - t) / n * 1e9


def shmds_pair(n: int) -> None:
    name = f"shmds-bench-pair-{os.getpid()}"
    seg = shmds.Segment(name, size=1 << 20)
    try:
        q = seg.queue("q", "<u8", capacity=1024)
        put, get = q.put, q.get
        for i in range(n):
            put(i)
            get()
    finally:
        seg.close()
        shmds.remove(name)


def mp_pair(n: int) -> None:
    q = CTX.Queue()
    for i in range(n):
        q.put(i)
        q.get()


def ff_pair(n: int) -> None:
    import faster_fifo

    q = faster_fifo.Queue()
    for i in range(n):
        q.put(i)
        q.get()


def stdlib_pair(n: int) -> None:
    q = stdqueue.Queue()
    for i in range(n):
        q.put(i)
        q.get()


# ---------------------------------------------------------------- maps


def map_ops(kind: str, n: int) -> tuple[float, float]:
    """ns per get and per set of int keys 0..1023 -> float values."""
    keys = [i % 1024 for i in range(n)]
    name = f"shmds-bench-map-{os.getpid()}"
    cleanup = None
    if kind == "shmds":
        seg = shmds.Segment(name, size=16 << 20)
        m = seg.map("m", key="<u8", value="<f8", capacity=2048)

        def cleanup():
            seg.close()
            shmds.remove(name)
    elif kind == "shmds str":
        seg = shmds.Segment(name, size=16 << 20)
        m = seg.map("m", key="S16", value="<f8", capacity=2048)
        keys = [f"k{k}" for k in keys]

        def cleanup():
            seg.close()
            shmds.remove(name)
    elif kind == "shared_memory_dict":
        from shared_memory_dict import SharedMemoryDict

        m = SharedMemoryDict(name=f"smd{os.getpid()}", size=1 << 20)

        def cleanup():
            m.shm.close()
            m.shm.unlink()
    else:
        m = {}
    try:
        t = time.perf_counter()
        for k in keys:
            m[k] = 1.5
        set_ns = (time.perf_counter() - t) / n * 1e9
        t = time.perf_counter()
        for k in keys:
            m[k]
        get_ns = (time.perf_counter() - t) / n * 1e9
        return get_ns, set_ns
    finally:
        if cleanup:
            cleanup()


# ---------------------------------------------------------------- report


def main() -> None:
    rows: list[tuple[str, str, float, str]] = []

    def add(group: str, what: str, value: float, unit: str) -> None:
        rows.append((group, what, value, unit))
        print(f"  {group:28} {what:34} {value:14,.1f} {unit}", flush=True)

    print(f"# shmds Python benchmarks, N={N}, median of {REPEAT}")
    for kind in ("int", "bytes"):
        g = f"cross-process {kind} items"
        add(g, "shmds Queue", median(shmds_cross, kind, N), "items/s")
        add(g, "multiprocessing.Queue", median(mp_queue_cross, kind, N), "items/s")
        add(g, "faster_fifo.Queue", median(faster_fifo_cross, kind, N), "items/s")
    rate = iceoryx2_cross(N)
    if rate is not None:
        add("cross-process int items", "iceoryx2 publish-subscribe", rate, "items/s")
    g = "cross-process batches"
    add(g, "shmds put_many/get_many", median(shmds_cross, "batch", 20 * N), "items/s")
    add(g, "faster_fifo put_many/get_many", median(faster_fifo_cross, "batch", 20 * N), "items/s")
    g = "put+get, one process"
    add(g, "shmds Queue", median(per_op_ns, shmds_pair, N), "ns")
    add(g, "multiprocessing.Queue", median(per_op_ns, mp_pair, N // 10), "ns")
    add(g, "faster_fifo.Queue", median(per_op_ns, ff_pair, N), "ns")
    add(g, "queue.Queue (threads only)", median(per_op_ns, stdlib_pair, N), "ns")
    for kind in ("shmds", "shmds str", "shared_memory_dict", "dict"):
        gets, sets = zip(*(map_ops(kind, N) for _ in range(REPEAT)))
        add("map get", kind, statistics.median(gets), "ns")
        add("map set", kind, statistics.median(sets), "ns")

    print()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}")
    print()
    print("| measure | implementation | median | shmds vs this peer |")
    print("|---|---|---:|---:|")
    base = {}
    for group, what, value, unit in rows:
        if what.startswith("shmds") and group not in base:
            base[group] = value
        ratio = ""
        if not what.startswith("shmds") and group in base:
            b = base[group]
            # For rates higher is better, for times lower is better: report
            # how many times better shmds is.
            better = b / value if unit == "items/s" else value / b
            ratio = f"{better:.1f}× faster" if better >= 1 else f"{1 / better:.1f}× slower"
        print(f"| {group} | {what} | {value:,.0f} {unit} | {ratio} |")


if __name__ == "__main__":
    main()
