"""The shmds Channel from Python beside its peers (issue 13, Performance).

Not a test: `make bench-channel` runs it (after the Rust peers) and it prints
a Markdown table for BENCHMARKS.md. Every implementation of a figure is
measured in the same run, on the same items, the runs alternating (shmds
run 0, each peer's run 0, shmds run 1, ...) so that all see the same load;
the shmds rows carry their ratios to the peers.

Figures, all between two separate processes (a `spawn`ed producer puts the
items, this process gets them, one at a time):

- 64-byte `bytes` messages, messages/s: shmds Channel `send`/`recv` (SPSC
  and MPMC rows), `multiprocessing.Queue`,
  `faster_fifo.Queue` as it comes (pickles every item), and faster-fifo with
  raw bytes (`dumps`/`loads` that pass bytes through, no pickle), the fair
  peer of a `send`/`recv` of bytes;
- small dicts `{"id": i, "v": 1.5, "s": "abc"}`, put/get items/s: shmds
  Channel `put`/`get` (SPSC and MPMC), `multiprocessing.Queue`,
  `faster_fifo.Queue` (all pickle);
- 8 MiB numpy frames (uint8, 2048 x 4096), GB/s (10^9 bytes/s): shmds
  Channel `send(frame)` (buffer protocol, one copy into the ring) and
  `recv_into` one preallocated `np.empty(FRAME_SHAPE, np.uint8)` (one copy
  out; SPSC and MPMC), and, as context, `recv_view` (the zero-copy numpy
  view of the message in the ring: one element read, nothing copied out, so
  less work than the peers do); `multiprocessing.Queue` and
  `faster_fifo.Queue` pickling the ndarray, and faster-fifo with raw bytes
  (`tobytes` in, `frombuffer(...).copy()` out).

Timing: the producer does its set-up (imports, attaching the queue, building
the frame), sets `ready` and waits for `go`; this process starts the clock as
it sets `go` and stops it when the last item is received, so set-up is not
timed (a shmds handle attaches on its first send/receive, inside the timed
part: one attachment per run). Waiting is each library's own blocking wait:
`multiprocessing.Queue` blocks in a pipe read (its feeder thread writes the
pipe), faster-fifo in a process-shared pthread condition variable, shmds in
its blocking calls (one try with the GIL, then without it: spin, yield,
futex). Each figure is the median of BENCH_REPEAT runs, with the range.

Sizes: BENCH_N (64-byte messages and dicts per run, 200,000),
BENCH_FRAMES (8 MiB frames per run, 64), BENCH_REPEAT (3). Capacities: a
1 MiB byte ring for faster-fifo's small messages (the capacity a shmds
Channel should be given too), `maxsize=16384` items for
`multiprocessing.Queue`; for frames, 64 MiB (7 frames; 8 for shmds, whose
8 MiB messages take exactly 8 MiB of ring) and `maxsize=8`. Each shmds run
has its own segment, named after this process and removed at the end.
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
SMALL_RING = 1 << 20  # bytes, faster-fifo and the shmds Channel
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


def cross(q, kind: str, n: int, producer=_producer, consume=_consume) -> float:
    """Items (or frames) per second from a spawned producer to this process."""
    ready, go = CTX.Event(), CTX.Event()
    p = CTX.Process(target=producer, args=(q, kind, n, ready, go))
    p.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("producer did not start")
        t = time.perf_counter()
        go.set()
        consume(q, kind, n)
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


# ----------------------------------------------------------------- shmds


def _shmds_producer(ch, kind: str, n: int, ready, go) -> None:
    """The shmds side of `_producer`: the same items, sent with `send`
    (bytes, frames: buffer protocol, no pickle) or `put` (dicts: pickled)."""
    if kind == "frames":
        f = frame()
        send = ch.send
        ready.set()
        go.wait()
        for _ in range(n):
            send(f, True, TIMEOUT)
    elif kind == "bytes":
        send = ch.send
        ready.set()
        go.wait()
        for i in range(n):
            send(message(i), True, TIMEOUT)
    else:  # dicts
        put = ch.put
        ready.set()
        go.wait()
        for i in range(n):
            put(item(i), True, TIMEOUT)
    ch.close()


def _shmds_consume(ch, kind: str, n: int, frames: str = "into") -> None:
    """The shmds side of `_consume`, with the same checks."""
    if kind == "bytes":
        recv = ch.recv
        for i in range(n):
            m = recv(True, TIMEOUT)
            if len(m) != MSG or m[:8] != i.to_bytes(8, "little"):
                raise RuntimeError(f"message {i}: got {m[:8]!r}, {len(m)} bytes")
    elif kind == "dicts":
        get = ch.get
        for i in range(n):
            d = get(True, TIMEOUT)
            if d["id"] != i:
                raise RuntimeError(f"dict {i}: got id {d['id']}")
    elif frames == "into":
        buf = np.empty(FRAME_SHAPE, np.uint8)
        recv_into = ch.recv_into
        for _ in range(n):
            got = recv_into(buf, True, TIMEOUT)
            if got != FRAME_BYTES or buf[-1, -1] != 7:
                raise RuntimeError("bad frame")
    else:  # "view": zero copy, read in place
        recv_view = ch.recv_view
        for _ in range(n):
            with recv_view(True, TIMEOUT) as view:
                a = np.frombuffer(view, np.uint8).reshape(FRAME_SHAPE)
                ok = a.shape == FRAME_SHAPE and a[-1, -1] == 7
                del a  # the view must have no exports when it is released
            if not ok:
                raise RuntimeError("bad frame")


def _shmds_cross(kind: str, n: int, capacity: int, max_message: int, spsc: bool,
                 frames: str = "into") -> float:
    import shmds

    name = f"shmds-chbench-py-{os.getpid()}"
    try:
        shmds.remove(name)
    except FileNotFoundError:
        pass
    # The ring, its control records (16 bytes per 64-byte cell) and the table.
    seg = shmds.Segment(name, capacity + capacity // 4 + (1 << 20), create=True)
    try:
        ch = seg.channel("c", capacity, max_message=max_message, spsc=spsc)
        try:
            return cross(ch, kind, n, _shmds_producer,
                         lambda q, k, m: _shmds_consume(q, k, m, frames))
        finally:
            ch.close()
    finally:
        seg.close()
        shmds.remove(name)


def shmds_bytes(n: int, spsc: bool) -> float:
    """`ch.send(message(i))` in the child, `ch.recv()` here. Goal: >= 2 M
    msg/s and >= 20x faster-fifo (raw bytes)."""
    return _shmds_cross("bytes", n, SMALL_RING, MSG, spsc)


def shmds_dicts(n: int, spsc: bool) -> float:
    """`ch.put(item(i))` / `ch.get()` (pickled, ~60 bytes; max_message 256).
    Goal: >= 10x multiprocessing.Queue."""
    return _shmds_cross("dicts", n, SMALL_RING, 256, spsc)


def shmds_frames(n: int, spsc: bool, how: str = "into") -> float:
    """`ch.send(frame)` / `ch.recv_into(buf)` (or `recv_view`), frames/s.
    Goal: >= 2 GB/s."""
    return _shmds_cross("frames", n, FRAME_RING, FRAME_BYTES, spsc, how)


# ----------------------------------------------------------------- report


def main() -> None:
    # (measure, implementation, values, unit, note)
    rows: list[tuple[str, str, list[float], str, str]] = []

    def figure(measure: str, unit: str, impls: list, scale: float = 1.0) -> dict:
        """Run every implementation REPEAT times, alternating; rows in order."""
        values: dict[str, list[float]] = {label: [] for label, *_ in impls}
        for r in range(REPEAT):
            for label, f, *args in impls:
                v = f(*args) * scale
                values[label].append(v)
                print(f"  run {r}: {measure:34} {label:52} {v:,.4g} {unit}", flush=True)
        for label, *_ in impls:
            rows.append((measure, label, values[label], unit, ""))
        return {label: statistics.median(v) for label, v in values.items()}

    def note(label: str, text: str) -> None:
        for i, (m, impl, v, u, _) in enumerate(rows):
            if impl == label:
                rows[i] = (m, impl, v, u, text)

    print(f"# channel peers (Python): N={N:,}, frames={FRAMES}, {REPEAT} runs each", flush=True)
    m = "64-byte bytes, one at a time"
    S, M = "shmds Channel SPSC send/recv", "shmds Channel MPMC send/recv"
    MPQ, FFP, FFR = ("multiprocessing.Queue", "faster_fifo.Queue (pickled)",
                     "faster_fifo.Queue (raw bytes, no pickle)")
    med = figure(m, "msg/s", [
        (S, shmds_bytes, N, True),
        (M, shmds_bytes, N, False),
        (MPQ, mp_queue, "bytes", N),
        (FFP, faster_fifo_queue, "bytes", N),
        (FFR, faster_fifo_queue, "bytes", N, True),
    ])
    for label in (S, M):
        note(label, f"**{med[label] / med[FFR]:.1f}× faster-fifo raw** (goal ≥ 20×), "
                    f"{med[label] / med[MPQ]:.1f}× multiprocessing.Queue; goal ≥ 2 M msg/s")

    m = "small dicts, put/get one at a time"
    S, M = "shmds Channel SPSC put/get", "shmds Channel MPMC put/get"
    FF = "faster_fifo.Queue"
    med = figure(m, "items/s", [
        (S, shmds_dicts, N, True),
        (M, shmds_dicts, N, False),
        (MPQ, mp_queue, "dicts", N),
        (FF, faster_fifo_queue, "dicts", N),
    ])
    for label in (S, M):
        note(label, f"**{med[label] / med[MPQ]:.1f}× multiprocessing.Queue** (goal ≥ 10×), "
                    f"{med[label] / med[FF]:.1f}× faster-fifo")

    m = "8 MiB numpy frames"
    S, M = ("shmds Channel SPSC send/recv_into (preallocated ndarray)",
            "shmds Channel MPMC send/recv_into (preallocated ndarray)")
    V = "shmds Channel MPMC send/recv_view (zero-copy view, no copy out)"
    MPQ, FFR = "multiprocessing.Queue (pickled)", "faster_fifo.Queue (raw: tobytes / frombuffer+copy)"
    med = figure(m, "GB/s", [
        (S, shmds_frames, FRAMES, True),
        (M, shmds_frames, FRAMES, False),
        (V, shmds_frames, FRAMES, False, "view"),
        (MPQ, mp_queue, "frames", FRAMES),
        (FFP, faster_fifo_queue, "frames", FRAMES),
        (FFR, faster_fifo_queue, "frames", FRAMES, True),
    ], FRAME_BYTES / 1e9)
    for label in (S, M):
        note(label, f"goal ≥ 2 GB/s; **{med[label] / med[FFR]:.2f}× faster-fifo raw**, "
                    f"{med[label] / med[MPQ]:.1f}× multiprocessing.Queue")
    note(V, f"context, not the same work: the frame is read in place (one element), never "
            f"copied out; {med[V] / med[FFR]:.2f}× faster-fifo raw")

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
    for measure, impl, values, unit, text in rows:
        med = statistics.median(values)
        lo, hi = min(values), max(values)
        if unit == "GB/s":
            value, rng = f"{med:.2f} GB/s", f"{lo:.2f}–{hi:.2f}"
        else:
            value, rng = f"{med / 1e3:,.1f} k {unit}", f"{lo / 1e3:,.1f}–{hi / 1e3:,.1f} k"
        print(f"| {measure} | {impl} | {value} | {rng} | {text} |")


if __name__ == "__main__":
    main()
