"""Remote segments against redis-py doing the same operations by hand, on
one private redis-server (loopback TCP, AOF off), side by side: each pair
of figures is taken A B A B in one run and reported as a ratio (shmds
throughput / redis-py throughput; above 1 is shmds faster). Also the
forwarding rate of `shmds bridge`. Run by `make bench-remote`.

What "by hand" means: redis-py issues the plain commands (RPUSH/LPOP,
HSET/HGET, SETRANGE/GETRANGE, its own Lua lock), with no capacity bound, no
type check and no staleness check; shmds runs one script per call that
does all three. Batches: shmds put_many/get_many (one script per 1000
elements) beside a redis-py pipeline of the same commands.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import redis

import shmds

N = int(os.environ.get("N", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def start_server():
    d = tempfile.mkdtemp(prefix="shmds-bench-redis-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            if redis.Redis(port=port).ping():
                break
        except redis.ConnectionError:
            time.sleep(0.01)
    return p, port, d


def rate(fn, n):
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def pair(name, ours, theirs, n=N):
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(rate(ours, n))
        b.append(rate(theirs, n))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"| {name} | {ma:,.0f} | {mb:,.0f} | {ma / mb:.2f} |", flush=True)


def main():
    proc, port, d = start_server()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        seg = shmds.connect(url, "bench")
        r = redis.Redis(port=port)
        q = seg.queue("q", "<u8", 1 << 20)
        print(f"machine: {os.uname().nodename}, {os.cpu_count()} cores; N = {N}, "
              f"median of {ROUNDS} alternating rounds")
        print("| operation | shmds ops/s | redis-py ops/s | ratio |")
        print("|---|---|---|---|")

        def q_ours(n):
            for i in range(n):
                q.put(i)
            for _ in range(n):
                q.get()

        def q_theirs(n):
            for i in range(n):
                r.rpush("rq", i.to_bytes(8, "little"))
            for _ in range(n):
                int.from_bytes(r.lpop("rq"), "little")

        pair("queue put then get, one element per call (2 calls each)", q_ours, q_theirs)

        batch = np.arange(1000, dtype="<u8")

        def qb_ours(n):
            for _ in range(n // 1000):
                q.put_many(batch)
            for _ in range(n // 1000):
                q.get_many(1000)

        def qb_theirs(n):
            raw = [int(v).to_bytes(8, "little") for v in batch]
            for _ in range(n // 1000):
                p = r.pipeline(transaction=False)
                p.rpush("rq", *raw)
                p.execute()
            for _ in range(n // 1000):
                p = r.pipeline(transaction=False)
                p.lpop("rq", 1000)
                np.frombuffer(b"".join(p.execute()[0]), dtype="<u8")

        pair("queue batches of 1000 (put_many/get_many vs pipelined RPUSH/LPOP)",
             qb_ours, qb_theirs, n=N * 20)

        m = seg.map("m", "<u8", "<f8", 1 << 20)

        def m_ours(n):
            for i in range(n):
                m[i % 1000] = 1.5
            for i in range(n):
                m[i % 1000]

        def m_theirs(n):
            for i in range(n):
                r.hset("rm", (i % 1000).to_bytes(8, "little"), np.float64(1.5).tobytes())
            for i in range(n):
                np.frombuffer(r.hget("rm", (i % 1000).to_bytes(8, "little")), "<f8")[0]

        pair("map set then get (2 calls each)", m_ours, m_theirs)

        def add_ours(n):
            for _ in range(n):
                m2.fetch_add(1, 1)

        def add_theirs(n):
            for _ in range(n):
                r.hincrby("rm2", "1", 1)

        m2 = seg.map("m2", "<u8", "<u8", 16)
        pair("map fetch_add (HINCRBY)", add_ours, add_theirs)

        cached = shmds.connect(url, "bench", cache=10.0)
        while not cached.cache_is_live:
            time.sleep(0.01)
        cm = cached.open_map("m")

        def hot_ours(n):
            for i in range(n):
                cm[i % 1000]

        def hot_theirs(n):
            for i in range(n):
                np.frombuffer(r.hget("rm", (i % 1000).to_bytes(8, "little")), "<f8")[0]

        pair("hot map get, coherent cache on (redis-py HGET)", hot_ours, hot_theirs)

        a = seg.array("a", "<u4", 1000)

        def a_ours(n):
            for i in range(n):
                a[i % 1000] = i
            for i in range(n):
                a[i % 1000]

        def a_theirs(n):
            r.setrange("ra", 3999, b"\0")
            for i in range(n):
                r.setrange("ra", (i % 1000) * 4, (i & 0xffffffff).to_bytes(4, "little"))
            for i in range(n):
                int.from_bytes(r.getrange("ra", (i % 1000) * 4, (i % 1000) * 4 + 3), "little")

        pair("array set then get (2 calls each)", a_ours, a_theirs)

        ch = seg.channel("ch", 1 << 20, max_message=64)
        msg = b"x" * 32
        try:
            r.xgroup_create("rch", "g", id="0", mkstream=True)
        except redis.ResponseError:
            pass

        def ch_ours(n):
            for _ in range(n):
                ch.send(msg)
            for _ in range(n):
                ch.recv()

        def ch_theirs(n):
            for _ in range(n):
                r.xadd("rch", {"m": msg})
            for _ in range(n):
                got = r.xreadgroup("g", "c", {"rch": ">"}, count=1)
                mid = got[0][1][0][0]
                r.xack("rch", "g", mid)
                r.xdel("rch", mid)

        pair("channel send then recv (redis-py XADD; XREADGROUP+XACK+XDEL)", ch_ours, ch_theirs,
             n=N // 2)

        topic = seg.topic("tp", 1000, max_message=64)

        def tp_ours(n):
            for _ in range(n):
                topic.publish(msg)
            sub = topic.subscribe(from_oldest=True)
            for _ in range(min(n, 1000)):
                sub.recv()

        def tp_theirs(n):
            for _ in range(n):
                r.xadd("rtp", {"m": msg}, maxlen=1000, approximate=False)
            last = "0-0"
            for _ in range(min(n, 1000)):
                got = r.xread({"rtp": last}, count=1)
                last = got[0][1][0][0]

        pair("topic publish (+ 1000 reads) (redis-py XADD MAXLEN; XREAD)", tp_ours, tp_theirs,
             n=N // 2)

        lock = seg.lock("l")
        rl = r.lock("rl", timeout=30)

        def l_ours(n):
            for _ in range(n):
                lock.acquire()
                lock.release()

        def l_theirs(n):
            for _ in range(n):
                rl.acquire()
                rl.release()

        pair("lock acquire + release (redis-py Lock)", l_ours, l_theirs, n=N // 2)

        # The bridge: a local queue drained into the remote one.
        cli = shutil.which("shmds") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "target", "release", "shmds")
        local_name = f"bench-bridge-{os.getpid()}"
        with shmds.Segment(local_name, size=64 << 20) as local:
            lq = local.queue("jobs", "<u8", 1 << 20)
            total = N * 20
            lq.put_many(np.arange(total, dtype="<u8"))
            t = time.perf_counter()
            subprocess.run([cli, "bridge", local_name, "jobs", url, "--remote-segment", "bridged",
                            "--count", str(total), "--batch", "1000"], check=True,
                           stdout=subprocess.DEVNULL)
            el = time.perf_counter() - t
            print(f"\nbridge, local queue → remote queue: {total / el:,.0f} elements/s "
                  f"({total} elements, batches of 1000, process start included)")
        shmds.remove(local_name)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
