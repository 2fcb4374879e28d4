"""Cross-language conformance: a known set of structures (an array of a
record type, a queue, a stack, two maps) written by Rust, Python or C and
checked by each of the others; and a Rust process streaming through a
queue with a Python process at the same time.

The Rust peer is tests/interop/main.rs (its docs list the known
structures); the C peer is examples/c/interop.c.
"""

import subprocess
import threading

import numpy as np
import pytest

import shmds

QUOTE = np.dtype([("venue", "u1"), ("price", "<f8"), ("size", "<u4")], align=True)
PRICES = {"AAPL": 189.5, "MSFT": 410.25, "Zürich": 7.0}


def run(interop, *args, timeout=120):
    done = subprocess.run([interop, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done


def py_write(seg):
    quotes = seg.array("quotes", QUOTE, 3)
    for i in range(3):
        quotes[i] = (i, 100.5 + i, 10 * i)
    seg.queue("jobs", "<u8", capacity=128).put_many(np.arange(1, 101))
    undo = seg.stack("undo", "<i4", capacity=8)
    for v in (-1, -2, -3):
        undo.put(v)
    prices = seg.map("prices", key="S16", value="<f8", capacity=64)
    prices.update(PRICES)
    hits = seg.map("hits", key="<u8", value="<i8", capacity=32)
    for k in range(1, 21):
        hits.fetch_add(k, -k)


def py_check(seg):
    quotes = seg.open("quotes")
    assert quotes.dtype == QUOTE  # the record descriptor maps to the aligned dtype
    arr = quotes.numpy()
    assert arr["venue"].tolist() == [0, 1, 2]
    assert arr["price"].tolist() == [100.5, 101.5, 102.5]
    assert arr["size"].tolist() == [0, 10, 20]
    jobs = seg.open("jobs")
    assert jobs.get_many(200).tolist() == list(range(1, 101))
    undo = seg.open("undo")
    assert [undo.get_nowait() for _ in range(3)] == [-3, -2, -1]
    prices = seg.open("prices")
    assert dict(prices) == PRICES
    hits = seg.open("hits")
    assert dict(hits) == {k: -k for k in range(1, 21)}
    assert seg.check() == []


LANGUAGES = ["rust", "python", "c"]


@pytest.mark.parametrize(
    "writer,reader",
    [(w, r) for w in LANGUAGES for r in LANGUAGES if w != r],
)
def test_conformance(segname, interop, c_interop, writer, reader):
    """The known structures, written by one language and checked by another."""
    seg = shmds.Segment(segname, size=4 << 20)
    peers = {"rust": interop, "c": c_interop}
    if writer == "python":
        py_write(seg)
    else:
        run(peers[writer], "write", segname)
    if reader == "python":
        py_check(seg)
    else:
        run(peers[reader], "check", segname)


def test_python_types_match_what_rust_expects(segname, interop):
    seg = shmds.Segment(segname, size=4 << 20)
    seg.queue("jobs", "<i8", capacity=128)  # i64, not u64: Rust must refuse it
    done = subprocess.run([interop, "check", segname], capture_output=True, text=True)
    assert done.returncode != 0


@pytest.mark.parametrize("n", [20000])
def test_rust_producer_python_consumer_at_once(segname, interop, n):
    seg = shmds.Segment(segname, size=1 << 20)
    q = seg.queue("stream", "<u8", capacity=64)
    producer = subprocess.Popen([interop, "produce", segname, "stream", str(n)])
    try:
        got = []
        while len(got) < n:
            got.extend(q.get_many(1024, timeout=60).tolist())
        assert got == list(range(n))
        assert producer.wait(timeout=60) == 0
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()


def test_python_producer_rust_consumer_at_once(segname, interop):
    n = 20000
    seg = shmds.Segment(segname, size=1 << 20)
    q = seg.queue("stream", "<u8", capacity=64)
    consumer = subprocess.Popen([interop, "consume", segname, "stream", str(n)])
    try:
        for i in range(n):
            q.put(i, timeout=60)
        assert consumer.wait(timeout=60) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
