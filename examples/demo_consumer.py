"""The Python half of the shmds demo (started by examples/demo.rs): attach
to the segment by name, take every job from the queue as the Rust process
pushes it, and report through the shared map and array."""

import os
import sys
import time

import numpy as np

import shmds

name, jobs_expected = sys.argv[1], int(sys.argv[2])
me = f"[python {os.getpid()}]"
seg = shmds.Segment(name, create=False)
readings, jobs, tally = seg.open("readings"), seg.open("jobs"), seg.open("tally")
print(f"{me} attached to {name!r}; readings = {readings.numpy().tolist()}", flush=True)

start, total, count = None, 0, 0
while count < jobs_expected:
    batch = jobs.get_many(4096, timeout=30)  # numpy out, waits without the GIL
    start = start or time.perf_counter()  # timed from the first batch
    total += int(batch.sum(dtype=np.uint64))
    count += len(batch)
took = time.perf_counter() - start
print(f"{me} popped {count} jobs in {took:.2f} s ({count / took / 1e6:.1f} M/s), sum {total}", flush=True)

tally["python popped"] = count
tally["python sum"] = total
np.asarray(readings)[:] *= 10  # zero-copy: the Rust process sees this
print(f"{me} tally = {dict(tally)}", flush=True)
