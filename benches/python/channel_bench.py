"""Python peers of the shmds Channel benchmarks (issue 13, Performance).

Not a test: `make bench-channel` runs it (after the Rust peers) and it prints
a Markdown table for BENCHMARKS.md. The shmds Channel rows are PLACEHOLDERS
until the Channel API lands (see the `shmds_*` functions below); every peer
is measured in the same run, on the same items, so the shmds figures can be
put beside them.

Figures, all between two separate processes (a `spawn`ed producer puts the
items, this process gets them, one at a time):

- 64-byte `bytes` messages, messages/s: `multiprocessing.Queue`,
  `faster_fifo.Queue` as it comes (pickles every item), and faster-fifo with
  raw bytes (`dumps`/`loads` that pass bytes through, no pickle), the fair
  peer of a `send`/`recv` of bytes;
- small dicts `{"id": i, "v": 1.5, "s": "abc"}`, put/get items/s:
  `multiprocessing.Queue`, `faster_fifo.Queue` (both pickle);
- 8 MiB numpy frames (uint8, 2048 x 4096), GB/s (10^9 bytes/s):
  `multiprocessing.Queue` and `faster_fifo.Queue` pickling the ndarray, and
  faster-fifo with raw bytes (`tobytes` in, `frombuffer(...).copy()` out).

Timing: the producer does its set-up (imports, attaching the queue, building
the frame), sets `ready` and waits for `go`; this process starts the clock as
it sets `go` and stops it when the last item is received, so set-up is not
timed. Waiting is each library's own blocking wait: `multiprocessing.Queue`
blocks in a pipe read (its feeder thread writes the pipe), faster-fifo in a
process-shared pthread condition variable. Each figure is the median of
BENCH_REPEAT runs, with the range.

Sizes: BENCH_N (64-byte messages and dicts per run, 200,000),
BENCH_FRAMES (8 MiB frames per run, 64), BENCH_REPEAT (3). Capacities: a
1 MiB byte ring for faster-fifo's small messages (the capacity a shmds
Channel should be given too), `maxsize=16384` items for
`multiprocessing.Queue`; for frames, 64 MiB (7 frames) and `maxsize=8`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import time

import numpy as np

N = int(os.environ.get("BENCH_N", "200000"))
FRAMES = int(os.environ.get("BENCH_FRAMES", "64"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
CTX = mp.get_context("spawn")

MSG = 64
FRAME_SHAPE = (2048, 4096)  # uint8: 8 MiB
FRAME_BYTES = FRAME_SHAPE[0] * FRAME_SHAPE[1]
SMALL_RING = 1 << 20  # bytes, faster-fifo (and the shmds Channel, when it lands)
FRAME_RING = 64 << 20
TIMEOUT = 60.0


# ----------------------------------------------------------------- payloads


def message(i: int) -> bytes:
    """A 64-byte message carrying its index (checked by the consumer)."""
    return i.to_bytes(8, "little") * 8


def item(i: int) -> dict:
    return {"id": i, "v": 1.5, "s": "abc"}


def frame() -> np.ndarray:
    return np.full(FRAME_SHAPE, 7, dtype=np.uint8)


# faster-fifo serialisers for raw bytes (module level, so that a spawned
# child can unpickle the queue that refers to them).
def _bytes_dumps(b: bytes) -> bytes:
    return b


def _bytes_loads(view: memoryview) -> bytes:
    return bytes(view)  # the view is into faster-fifo's reused buffer


def _frame_dumps(a: np.ndarray) -> bytes:
    return a.tobytes()


def _frame_loads(view: memoryview) -> np.ndarray:
    return np.frombuffer(view, dtype=np.uint8).reshape(FRAME_SHAPE).copy()


# ----------------------------------------------------------------- producers


def _producer(q, kind: str, n: int, ready, go) -> None:
    put = q.put
    if kind == "frames":
        f = frame()
        ready.set()
        go.wait()
        for _ in range(n):
            put(f, True, TIMEOUT)
        return
    ready.set()
    go.wait()
    if kind == "bytes":
        for i in range(n):
            put(message(i), True, TIMEOUT)
    else:  # dicts
        for i in range(n):
            put(item(i), True, TIMEOUT)


def _consume(q, kind: str, n: int) -> None:
    get = q.get
    if kind == "bytes":
        for i in range(n):
            m = get(True, TIMEOUT)
            if len(m) != MSG or m[:8] != i.to_bytes(8, "little"):
                raise RuntimeError(f"message {i}: got {m[:8]!r}, {len(m)} bytes")
    elif kind == "dicts":
        for i in range(n):
            d = get(True, TIMEOUT)
            if d["id"] != i:
                raise RuntimeError(f"dict {i}: got id {d['id']}")
    else:
        for _ in range(n):
            f = get(True, TIMEOUT)
            if f.shape != FRAME_SHAPE or f[-1, -1] != 7:
                raise RuntimeError("bad frame")


def cross(q, kind: str, n: int) -> float:
    """Items (or frames) per second from a spawned producer to this process."""
    ready, go = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_producer, args=(q, kind, n, ready, go))
    p.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("producer did not start")
        t = time.perf_counter()
        go.set()
        _consume(q, kind, n)
        dt = time.perf_counter() - t
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
            p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"producer exited with {p.exitcode}")
    return n / dt


# ----------------------------------------------------------------- peers


def mp_queue(kind: str, n: int) -> float:
    q = CTX.Queue(maxsize=8 if kind == "frames" else 16384)
    try:
        return cross(q, kind, n)
    finally:
        q.close()
        q.join_thread()


def faster_fifo_queue(kind: str, n: int, raw: bool = False) -> float:
    import faster_fifo
    import faster_fifo_reduction  # noqa: F401  (registers how a queue is sent to a child)

    size = FRAME_RING if kind == "frames" else SMALL_RING
    if raw and kind == "bytes":
        q = faster_fifo.Queue(max_size_bytes=size, loads=_bytes_loads, dumps=_bytes_dumps)
    elif raw and kind == "frames":
        q = faster_fifo.Queue(max_size_bytes=size, loads=_frame_loads, dumps=_frame_dumps)
    else:
        q = faster_fifo.Queue(max_size_bytes=size)
    return cross(q, kind, n)


# ----------------------------------------------------------------- shmds (PLACEHOLDERS)
# The Channel API of issue 13 has not landed: these return None and their
# rows print as "not measured". When it lands, give each the shape below
# (same items, same counts, the producer in a spawned child started with the
# same ready/go events, `cross()`-style timing), in a segment named after
# this process and removed at the end (shmds.remove(name) in `finally`).


def shmds_bytes(n: int) -> float | None:
    # TODO(issue 13): seg = shmds.Segment(name, size=...);
    # ch = seg.channel("c", capacity=SMALL_RING, max_message=MSG, spsc=True)
    # (and a spsc=False row); child: ch.send(message(i)); here: ch.recv(),
    # checked like _consume("bytes"). Goal: >= 2 M msg/s and >= 20x faster-fifo.
    return None


def shmds_dicts(n: int) -> float | None:
    # TODO(issue 13): the same channel with max_message large enough for a
    # pickled item(i) (~60 bytes; e.g. 256); child: ch.put(item(i)); here:
    # ch.get(). Goal: >= 10x multiprocessing.Queue.
    return None


def shmds_frames(n: int) -> float | None:
    # TODO(issue 13): seg.channel("f", capacity=FRAME_RING,
    # max_message=FRAME_BYTES); child: ch.send(f) (buffer protocol, no
    # pickle); here: ch.recv_into(buf) into one preallocated
    # np.empty(FRAME_SHAPE, np.uint8), or the zero-copy numpy read of the
    # issue (say which). Goal: >= 2 GB/s.
    return None


# ----------------------------------------------------------------- report


def runs(f, *args) -> list[float] | None:
    out = []
    for _ in range(REPEAT):
        v = f(*args)
        if v is None:
            return None
        out.append(v)
    return out


def main() -> None:
    rows: list[tuple[str, str, list[float] | None, str, str]] = []

    def add(measure: str, impl: str, values, unit: str, note: str = "") -> None:
        rows.append((measure, impl, values, unit, note))
        shown = "not measured" if values is None else ", ".join(f"{v:,.3g}" for v in values)
        print(f"  {measure:34} {impl:44} {shown} {unit}", flush=True)

    print(f"# channel peers (Python): N={N:,}, frames={FRAMES}, {REPEAT} runs each", flush=True)
    m = "64-byte bytes, one at a time"
    add(m, "shmds Channel send/recv", runs(shmds_bytes, N), "msg/s",
        "PLACEHOLDER: Channel not landed. Goal: ≥ 2 M msg/s and ≥ 20× faster-fifo")
    add(m, "multiprocessing.Queue", runs(mp_queue, "bytes", N), "msg/s")
    add(m, "faster_fifo.Queue (pickled)", runs(faster_fifo_queue, "bytes", N), "msg/s")
    add(m, "faster_fifo.Queue (raw bytes, no pickle)",
        runs(faster_fifo_queue, "bytes", N, True), "msg/s")
    m = "small dicts, put/get one at a time"
    add(m, "shmds Channel put/get", runs(shmds_dicts, N), "items/s",
        "PLACEHOLDER: Channel not landed. Goal: ≥ 10× multiprocessing.Queue")
    add(m, "multiprocessing.Queue", runs(mp_queue, "dicts", N), "items/s")
    add(m, "faster_fifo.Queue", runs(faster_fifo_queue, "dicts", N), "items/s")
    m = "8 MiB numpy frames"
    to_gb = lambda v: None if v is None else [x * FRAME_BYTES / 1e9 for x in v]  # noqa: E731
    add(m, "shmds Channel send/recv_into", to_gb(runs(shmds_frames, FRAMES)), "GB/s",
        "PLACEHOLDER: Channel not landed. Goal: ≥ 2 GB/s")
    add(m, "multiprocessing.Queue (pickled)", to_gb(runs(mp_queue, "frames", FRAMES)), "GB/s")
    add(m, "faster_fifo.Queue (pickled)", to_gb(runs(faster_fifo_queue, "frames", FRAMES)), "GB/s")
    add(m, "faster_fifo.Queue (raw: tobytes / frombuffer+copy)",
        to_gb(runs(faster_fifo_queue, "frames", FRAMES, True)), "GB/s")

    try:
        from importlib.metadata import version

        ff = version("faster-fifo")
    except Exception:
        ff = "?"
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print()
    print(f"Machine: {cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()} "
          f"{platform.machine()}; Python {platform.python_version()}, numpy {np.__version__}, "
          f"faster-fifo {ff}; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print(f"N = {N:,} messages/items per run, {FRAMES} frames of 8 MiB per run, "
          f"median of {REPEAT} runs; spawned producer process -> this process, one item at a time.")
    print()
    print("| measure | implementation | median | range | notes |")
    print("|---|---|---:|---:|---|")
    for measure, impl, values, unit, note in rows:
        if values is None:
            print(f"| {measure} | {impl} | — | | {note} |")
            continue
        med = statistics.median(values)
        lo, hi = min(values), max(values)
        if unit == "GB/s":
            value, rng = f"{med:.2f} GB/s", f"{lo:.2f}–{hi:.2f}"
        else:
            value, rng = f"{med / 1e3:,.1f} k {unit}", f"{lo / 1e3:,.1f}–{hi / 1e3:,.1f} k"
        print(f"| {measure} | {impl} | {value} | {rng} | {note} |")


if __name__ == "__main__":
    main()
