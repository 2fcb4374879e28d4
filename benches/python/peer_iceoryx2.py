"""iceoryx2 peer for the Python throughput benchmark.

Publisher runs in a spawned child process, subscriber in the caller. Payload is
one ctypes.c_uint64 (8 bytes) per message, values 0..n-1.

No-loss strategy: the service is created with enable_safe_overflow(False) (a full
subscriber queue never overwrites old samples) and the publisher asks for
BackpressureStrategy.RetryUntilDelivered. In the iceoryx2 0.10 Python package that
alone is NOT enough: when the queue is full, send() returns 0 (delivered to no
subscriber) instead of blocking, and the message is silently gone. So the publisher
also checks send()'s return value and re-loans/re-sends the same value until it was
delivered to the one subscriber. The subscriber checks every value in order.
"""

import ctypes
import gc
import glob
import multiprocessing as mp
import os
import time

import iceoryx2 as iox2

iox2.set_log_level_from_env_or(iox2.LogLevel.Error)  # silence the "No config file was loaded" warning
IOX_ROOT = "/tmp/iceoryx2"  # default config root_path; shm files are /dev/shm/iox2_*
BUFFER = 4096  # subscriber queue depth; large enough to absorb scheduling jitter on 2 cores


def _service(node, name, create):
    b = (
        node.service_builder(iox2.ServiceName.new(name))
        .publish_subscribe(ctypes.c_uint64)
        .enable_safe_overflow(False)  # must match between create and open
        .subscriber_max_buffer_size(BUFFER)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
    )
    return b.create() if create else b.open()


def _publisher(name, n, done):
    """Child process: open the service, send 0..n-1, linger until the parent is done."""
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = _service(node, name, create=False)
    pub = (
        service.publisher_builder()
        .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    # The public loan_uninit()/assume_init() are Python wrappers (iceoryx2/publish_subscribe_
    # extensions.py) that call typing.get_origin() per message; calling the native methods
    # they wrap roughly doubles publisher speed. Fall back to the public API if they vanish.
    loan = getattr(pub, "__loan_uninit", pub.loan_uninit)
    assume = iox2.SampleMutUninit.__dict__.get("__assume_init", iox2.SampleMutUninit.assume_init)
    send = iox2.SampleMut.send
    from_addr = ctypes.c_uint64.from_address
    for i in range(n):
        while True:
            try:
                s = loan()
            except iox2.LoanError:  # sample pool exhausted (should not happen): wait
                os.sched_yield()
                continue
            from_addr(s.payload_ptr).value = i  # write payload in place (zero-copy)
            if send(assume(s)):  # number of subscribers reached; 0 = queue full, dropped
                break
            os.sched_yield()  # let the subscriber drain, then resend the same value
    # keep the publisher (and its data segment) alive until everything was received
    done.wait()
    pub.delete()
    del pub, service, node
    gc.collect()


def throughput(n: int) -> float:
    """Messages/s received. Timing starts when the first message is received
    (child spawn + iceoryx2 import/setup excluded) and ends at message n-1,
    so the rate is (n-1) / (t_last - t_first)."""
    name = f"bench/peer_iceoryx2/{os.getpid()}/{time.monotonic_ns()}"
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = _service(node, name, create=True)
    sub = service.subscriber_builder().buffer_size(BUFFER).create()

    ctx = mp.get_context("spawn")
    done = ctx.Event()
    child = ctx.Process(target=_publisher, args=(name, n, done))
    child.start()
    try:
        from_addr = ctypes.c_uint64.from_address
        receive = sub.receive
        expected = 0
        t0 = None
        idle = 0
        while expected < n:
            s = receive()
            if s is None:  # busy-poll; every 64k empty polls check the child is still alive
                idle += 1
                if idle & 0xFFFF == 0 and not child.is_alive() and not sub.has_samples():
                    raise RuntimeError(f"publisher exited after {expected} msgs (exit={child.exitcode})")
                continue
            v = from_addr(s.payload_ptr).value
            s.delete()  # return the sample to the publisher's pool right away
            if v != expected:
                raise RuntimeError(f"expected {expected}, got {v}")
            if expected == 0:
                t0 = time.perf_counter()
            expected += 1
        t1 = time.perf_counter()
    finally:
        done.set()
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()
        sub.delete()
        del sub, service, node  # last handles -> service + node files removed
        gc.collect()
        _remove_leftovers()
    return (n - 1) / (t1 - t0) if n > 1 else 0.0


def _remove_leftovers():
    """Dropping the last node/service handle removes the service and node files, but
    iceoryx2 keeps the empty /tmp/iceoryx2/{nodes,services} dirs and a 16-byte
    /dev/shm/iox2_<hash>_node.<ver>.global_mgmt segment. Remove those too, but only
    when no iceoryx2 node/service is left (i.e. no other user of the default config)."""
    dirs = [os.path.join(IOX_ROOT, d) for d in ("nodes", "services")]
    if any(os.path.isdir(d) and os.listdir(d) for d in dirs):
        return
    for path in glob.glob("/dev/shm/iox2_*.global_mgmt") + dirs + [IOX_ROOT]:
        try:
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
        except OSError:  # already gone, or not empty (someone else is using it)
            pass


if __name__ == "__main__":
    print(f"iceoryx2: {throughput(200_000):,.0f} msg/s")
