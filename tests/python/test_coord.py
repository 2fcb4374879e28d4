"""The coordination primitives from Python: the shapes of threading's Lock,
Condition, Semaphore, BoundedSemaphore, Barrier and Event (tests in the
manner of CPython's lock tests, written for named primitives), RwLock,
Latch and Once; then real processes: mutual exclusion, a holder killed
with SIGKILL, events, barriers and a once across processes, pickling,
Ctrl-C. Timeouts are checked from below only (never that a call was
fast), and every wait of a test has a generous limit."""

import ast
import asyncio
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

import shmds
from shmds import _aio

LONG = 60  # seconds: a limit no healthy wait reaches


@pytest.fixture
def seg(segname):
    with shmds.Segment(segname, size=4 << 20) as s:
        yield s


def wait_until(condition, timeout=LONG):
    """Poll ``condition()`` until true (fails the test after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        time.sleep(0.005)


class Threads:
    """Start ``n`` threads running ``fn(i)``; ``join()`` checks that each
    finished without an exception, and returns their results by index."""

    def __init__(self, fn, n):
        self.results = [None] * n
        self.errors = []
        self.started = 0
        self._lock = threading.Lock()

        def body(i):
            with self._lock:
                self.started += 1
            try:
                self.results[i] = fn(i)
            except BaseException as e:  # reported by join()
                self.errors.append(e)

        self.threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def alive(self):
        return sum(t.is_alive() for t in self.threads)

    def join(self, timeout=LONG):
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a thread did not finish"
        if self.errors:
            raise self.errors[0]
        return self.results


def run_child(script, *args, timeout=LONG):
    """Run a Python child to its end: (exit code, stdout)."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                             stdout=subprocess.PIPE, text=True)
    try:
        out, _ = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, out


class Child:
    """A Python child that prints lines as it goes; killed on exit."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid

    def line(self):
        return self.proc.stdout.readline().strip()

    def say(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(LONG)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(LONG)
        self.proc.stdout.close()
        self.proc.stdin.close()


# ------------------------------------------------------------------- Lock


def test_lock_acquire_release_and_locked(seg):
    lock = seg.lock("l")
    assert not lock.locked() and lock.holder is None
    assert lock.acquire() is True
    assert lock.locked()
    pid, tid = lock.holder
    assert pid == os.getpid() and tid is not None
    lock.release()
    assert not lock.locked() and lock.holder is None
    assert lock.owner_died is None and lock.owner_deaths == 0
    assert (lock.name, lock.segment_name) == ("l", seg.name)


def test_lock_try_and_timeout(seg):
    lock = seg.lock("l")
    lock.acquire()
    assert lock.acquire(False) is False
    assert lock.acquire(blocking=True, timeout=0) is False
    started = time.monotonic()
    assert lock.acquire(timeout=0.1) is False
    assert time.monotonic() - started >= 0.09
    # Another thread of this process waits too: the lock is not reentrant.
    got = Threads(lambda i: lock.acquire(timeout=0.05), 1).join()
    assert got == [False]
    lock.release()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_arguments_as_threading_checks_them(seg):
    lock = seg.lock("l")
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-5)
    with pytest.raises(ValueError):
        lock.acquire(timeout=float("nan"))
    assert not lock.locked()
    assert lock.acquire(True, -1) and lock.locked()
    lock.release()


def test_releasing_an_unlocked_lock_is_a_runtime_error(seg):
    lock = seg.lock("l")
    with pytest.raises(RuntimeError) as info:
        lock.release()
    assert isinstance(info.value, shmds.NotOwnerError)
    assert isinstance(info.value, shmds.ShmdsError)
    assert info.value.holder == 0
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_lock_with_statement_releases_on_exceptions(seg):
    lock = seg.lock("l")
    with lock as entered:
        assert entered is True and lock.locked()
    assert not lock.locked()
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert not lock.locked()


def test_a_waiting_thread_gets_the_lock_when_it_is_released(seg):
    lock = seg.lock("l")
    lock.acquire()
    done = []

    def waiter(i):
        assert lock.acquire()
        done.append(i)
        lock.release()

    t = Threads(waiter, 3)
    time.sleep(0.1)
    assert done == [] and t.alive() == 3
    lock.release()
    t.join()
    assert sorted(done) == [0, 1, 2]
    assert not lock.locked()


def test_another_thread_of_the_holder_may_release_it(seg):
    # As with threading.Lock: ownership is per process, not per thread.
    lock = seg.lock("l")
    Threads(lambda i: lock.acquire(), 1).join()
    assert lock.locked() and lock.holder[0] == os.getpid()
    lock.release()
    assert not lock.locked()


def test_lock_excludes_threads(seg):
    lock = seg.lock("l")
    box = [0]

    def add(i):
        for _ in range(300):
            with lock:
                v = box[0]
                time.sleep(0)
                box[0] = v + 1

    Threads(add, 4).join()
    assert box[0] == 1200


def test_lock_handles_are_one_lock(seg):
    a, b = seg.lock("l"), seg.open("l")
    assert type(b) is shmds.Lock
    a.acquire()
    assert b.locked() and not b.acquire(False)
    b.release()  # the process holds it, whichever handle took it
    assert not a.locked()


def test_lock_repr_pickle_and_close(seg):
    lock = seg.lock("ledger")
    assert repr(lock) == "<shmds.Lock 'ledger' unlocked>"
    lock.acquire()
    assert f"locked by pid {os.getpid()}" in repr(lock)
    again = pickle.loads(pickle.dumps(lock))
    assert type(again) is shmds.Lock and again.name == "ledger" and again.locked()
    lock.release()
    again.close()
    again.close()
    assert again.closed and repr(again) == "<shmds.Lock (closed)>"
    with pytest.raises(ValueError):
        again.acquire()
    assert not lock.locked()


def test_closing_a_handle_wakes_its_waiting_calls(seg):
    lock = seg.lock("l")
    lock.acquire()
    other = seg.open("l")
    t = Threads(lambda i: other.acquire(), 1)
    time.sleep(0.05)
    other.close()
    with pytest.raises(ValueError, match="closed"):
        t.join()
    assert lock.locked()
    lock.release()


def test_lock_acquire_async(seg):
    lock = seg.lock("l")

    async def main():
        assert await lock.acquire_async()
        # Held (by this process): a second acquire waits, then times out.
        assert await lock.acquire_async(timeout=0.05) is False
        # Cancelled while waiting: it took nothing and left no thread behind.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(lock.acquire_async(), 0.05)
        assert _aio.waits_in_threads() == 0
        threading.Timer(0.1, lock.release).start()
        assert await lock.acquire_async(timeout=LONG)
        lock.release()

    asyncio.run(main())
    assert not lock.locked()


# ----------------------------------------------------------------- RwLock


def test_rwlock_readers_share_and_a_writer_excludes(seg):
    rw = seg.rwlock("rw")
    assert rw.reader_slots == 64 and rw.readers == 0 and rw.writer is None
    assert rw.acquire_read() and rw.acquire_read()
    assert rw.readers == 2
    assert rw.acquire_write(False) is False
    assert rw.acquire_write(timeout=0.05) is False
    rw.release_read()
    rw.release_read()
    assert rw.acquire_write()
    assert rw.writer == os.getpid()
    assert rw.acquire_read(False) is False and rw.acquire_write(False) is False
    rw.release_write()
    with rw.read():
        assert rw.readers == 1
    with rw.write():
        assert rw.writer == os.getpid()
    assert rw.readers == 0 and rw.writer is None


def test_rwlock_release_without_holding_is_a_runtime_error(seg):
    rw = seg.rwlock("rw", reader_slots=4)
    with pytest.raises(RuntimeError):
        rw.release_read()
    with pytest.raises(RuntimeError):
        rw.release_write()
    with pytest.raises(ValueError):
        seg.rwlock("rw", reader_slots=8)  # exists with another shape


def test_rwlock_writer_waits_for_readers_and_readers_for_writer(seg):
    rw = seg.rwlock("rw")
    rw.acquire_read()
    wrote = []

    def writer(i):
        with rw.write():
            wrote.append(rw.readers)

    t = Threads(writer, 1)
    time.sleep(0.05)
    assert wrote == []
    rw.release_read()
    t.join()
    assert wrote == [0]
    rw.acquire_write()
    t = Threads(lambda i: rw.acquire_read(timeout=LONG), 2)
    time.sleep(0.05)
    assert t.alive() == 2
    rw.release_write()
    assert t.join() == [True, True]
    assert rw.readers == 2
    rw.release_read()
    rw.release_read()


def test_rwlock_async(seg):
    rw = seg.rwlock("rw")

    async def main():
        assert await rw.acquire_read_async()
        assert await rw.acquire_write_async(timeout=0.05) is False
        threading.Timer(0.05, rw.release_read).start()
        assert await rw.acquire_write_async(timeout=LONG)
        assert await rw.acquire_read_async(timeout=0.05) is False
        threading.Timer(0.05, rw.release_write).start()
        assert await rw.acquire_read_async(timeout=LONG)
        rw.release_read()

    asyncio.run(main())
    assert rw.readers == 0 and rw.writer is None


# -------------------------------------------------------------- Condition


def test_condition_needs_its_lock(seg):
    cond = seg.condition("c")
    with pytest.raises(RuntimeError):
        cond.wait()
    with pytest.raises(RuntimeError):
        cond.wait(0.01)
    with pytest.raises(RuntimeError):
        cond.notify()
    with pytest.raises(RuntimeError):
        cond.notify_all()
    with pytest.raises(RuntimeError):
        cond.release()
    with cond:
        with pytest.raises(ValueError):
            cond.notify(-1)
        cond.notify(0)


def test_condition_wait_times_out_holding_the_lock(seg):
    cond = seg.condition("c")
    with cond:
        started = time.monotonic()
        assert cond.wait(0.1) is False
        assert time.monotonic() - started >= 0.09
        assert cond._is_owned()
        assert cond.wait(0) is False and cond.wait(-1) is False
        assert cond._is_owned()
    assert not cond._is_owned()
    assert cond.acquire(False)
    cond.release()


def test_condition_notify_wakes_at_most_n(seg):
    cond = seg.condition("c")
    first, second = [], []

    def waiter(i):
        with cond:
            first.append(cond.wait(LONG))
            second.append(cond.wait(LONG))

    t = Threads(waiter, 5)
    wait_until(lambda: cond.waiters == 5)
    with cond:
        cond.notify(3)
    wait_until(lambda: len(first) == 3)
    # The woken wait again at once: none of them takes the two notifies'
    # worth left for the waiters still in their first wait, and nobody
    # else wakes.
    wait_until(lambda: cond.waiters == 5)
    time.sleep(0.2)
    assert (len(first), second) == (3, [])
    # Two of the five waiting (in a first or a second wait) wake.
    with cond:
        cond.notify(2)
    wait_until(lambda: len(first) + len(second) == 5)
    time.sleep(0.2)
    assert len(first) + len(second) == 5
    while t.alive():
        with cond:
            cond.notify_all()
        time.sleep(0.01)
    t.join()
    assert first == [True] * 5 and second == [True] * 5
    assert cond.waiters == 0


def test_condition_notify_one_by_one(seg):
    cond = seg.condition("c")
    woke = []

    def waiter(i):
        with cond:
            assert cond.wait(LONG)
            woke.append(i)

    t = Threads(waiter, 4)
    wait_until(lambda: cond.waiters == 4)
    for n in range(1, 5):
        with cond:
            cond.notify()
        wait_until(lambda: len(woke) == n)
        time.sleep(0.05)
        assert len(woke) == n
    t.join()
    assert sorted(woke) == [0, 1, 2, 3]


def test_condition_wait_for(seg):
    cond = seg.condition("c")
    state = []
    with cond:
        started = time.monotonic()
        assert cond.wait_for(lambda: len(state) > 0, timeout=0.1) is False
        assert time.monotonic() - started >= 0.09
        assert cond.wait_for(lambda: 42) == 42

    def producer(i):
        for k in range(5):
            time.sleep(0.01)
            with cond:
                state.append(k)
                cond.notify_all()

    t = Threads(producer, 1)
    with cond:
        assert cond.wait_for(lambda: len(state) == 5, timeout=LONG)
        assert state == [0, 1, 2, 3, 4]
    t.join()


def test_condition_producer_consumer(seg):
    cond = seg.condition("c")
    items, got = [], []

    def consumer(i):
        for _ in range(50):
            with cond:
                cond.wait_for(lambda: items, timeout=LONG)
                got.append(items.pop(0))

    t = Threads(consumer, 2)
    for k in range(100):
        with cond:
            items.append(k)
            cond.notify()
    t.join()
    assert sorted(got) == list(range(100))


# -------------------------------------------------------------- Semaphore


def test_semaphore_counts(seg):
    sem = seg.semaphore("s", 2)
    assert (sem.value, sem.initial_value, sem.bounded) == (2, 2, False)
    assert sem.acquire() and sem.acquire()
    assert sem.value == 0
    assert sem.acquire(False) is False
    started = time.monotonic()
    assert sem.acquire(timeout=0.1) is False
    assert time.monotonic() - started >= 0.09
    assert sem.acquire(timeout=0) is False and sem.acquire(timeout=-1) is False
    sem.release(2)
    assert sem.value == 2
    sem.release()  # unbounded: past the initial value
    assert sem.value == 3
    with sem as entered:
        assert entered is True and sem.value == 2
    assert sem.value == 3


def test_semaphore_arguments(seg):
    sem = seg.semaphore("s", 0)
    with pytest.raises(ValueError):
        sem.acquire(False, timeout=1)
    with pytest.raises(ValueError):
        sem.release(0)
    with pytest.raises(ValueError):
        seg.semaphore("negative", -1)
    with pytest.raises(TypeError):
        seg.bounded_semaphore("s", 0)  # an unbounded one exists
    with pytest.raises(ValueError):
        seg.semaphore("s", 5)  # exists with another value


def test_semaphore_limits_concurrency(seg):
    sem = seg.semaphore("s", 3)
    lock = threading.Lock()
    inside, most = [0], [0]

    def worker(i):
        for _ in range(20):
            with sem:
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.001)
                with lock:
                    inside[0] -= 1

    Threads(worker, 8).join()
    assert most[0] <= 3 and sem.value == 3


def test_semaphore_release_wakes_waiters(seg):
    sem = seg.semaphore("s", 0)
    t = Threads(lambda i: sem.acquire(timeout=LONG), 5)
    time.sleep(0.05)
    assert t.alive() == 5
    sem.release(2)
    wait_until(lambda: t.alive() == 3)
    time.sleep(0.05)
    assert t.alive() == 3 and sem.value == 0
    sem.release(3)
    assert t.join() == [True] * 5
    assert sem.value == 0


def test_bounded_semaphore_refuses_too_many_releases(seg):
    sem = seg.bounded_semaphore("b", 2)
    assert type(sem) is shmds.BoundedSemaphore and isinstance(sem, shmds.Semaphore)
    assert sem.bounded
    with pytest.raises(ValueError) as info:
        sem.release()
    assert isinstance(info.value, shmds.TooManyReleasesError)
    assert (info.value.value, info.value.max) == (2, 2)
    sem.acquire()
    sem.acquire()
    with pytest.raises(ValueError):
        sem.release(3)  # adds none
    assert sem.value == 0
    sem.release(2)
    assert sem.value == 2
    assert type(seg.open("b")) is shmds.BoundedSemaphore
    assert type(pickle.loads(pickle.dumps(sem))) is shmds.BoundedSemaphore
    with pytest.raises(TypeError):
        seg.semaphore("b", 2)


def test_semaphore_acquire_async(seg):
    sem = seg.semaphore("s", 1)

    async def main():
        assert await sem.acquire_async()
        assert await sem.acquire_async(timeout=0.05) is False
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sem.acquire_async(), 0.05)
        assert _aio.waits_in_threads() == 0
        threading.Timer(0.05, sem.release).start()
        assert await sem.acquire_async(timeout=LONG)

    asyncio.run(main())
    assert sem.value == 0


# ---------------------------------------------------------------- Barrier


def test_barrier_rounds(seg):
    parties, rounds = 5, 4
    barrier = seg.barrier("b", parties)
    assert (barrier.parties, barrier.n_waiting, barrier.broken) == (parties, 0, False)
    seen = [[] for _ in range(rounds)]
    lock = threading.Lock()

    def party(i):
        for r in range(rounds):
            index = barrier.wait(LONG)
            with lock:
                seen[r].append(index)
                # Nobody is in round r + 1 before everybody left round r.
                assert all(len(seen[q]) == parties for q in range(r))

    Threads(party, parties).join()
    for indices in seen:
        assert sorted(indices) == list(range(parties))
    assert barrier.n_waiting == 0 and not barrier.broken


def test_barrier_abort_and_reset(seg):
    barrier = seg.barrier("b", 3)

    def party(i):
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(LONG)
        return True

    t = Threads(party, 2)
    wait_until(lambda: barrier.n_waiting == 2)
    barrier.abort()
    assert t.join() == [True, True]
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(LONG)
    barrier.reset()
    assert not barrier.broken and barrier.n_waiting == 0
    assert sorted(Threads(lambda i: barrier.wait(LONG), 3).join()) == [0, 1, 2]


def test_barrier_timeout_breaks_it_for_everybody(seg):
    barrier = seg.barrier("b", 3)
    t = Threads(lambda i: pytest.raises(threading.BrokenBarrierError, barrier.wait, LONG), 1)
    wait_until(lambda: barrier.n_waiting == 1)
    started = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(timeout=0.1)
    assert time.monotonic() - started >= 0.09
    t.join()
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken


def test_barrier_reset_breaks_its_waiters(seg):
    barrier = seg.barrier("b", 2)
    t = Threads(lambda i: pytest.raises(threading.BrokenBarrierError, barrier.wait, LONG), 1)
    wait_until(lambda: barrier.n_waiting == 1)
    barrier.reset()
    t.join()
    assert not barrier.broken
    assert sorted(Threads(lambda i: barrier.wait(LONG), 2).join()) == [0, 1]


# ------------------------------------------------------------------ Event


def test_event_set_clear_wait(seg):
    ev = seg.event("e")
    assert not ev.is_set()
    assert ev.wait(0) is False
    started = time.monotonic()
    assert ev.wait(0.1) is False
    assert time.monotonic() - started >= 0.09
    ev.set()
    assert ev.is_set() and ev.wait() is True and ev.wait(0) is True
    ev.set()
    assert ev.is_set()
    ev.clear()
    assert not ev.is_set() and ev.wait(0.01) is False
    assert seg.open("e").is_set() is False


def test_event_wakes_every_waiter(seg):
    ev = seg.event("e")
    t = Threads(lambda i: ev.wait(LONG), 10)
    wait_until(lambda: t.started == 10)
    time.sleep(0.05)
    assert t.alive() == 10
    ev.set()
    assert t.join() == [True] * 10
    # Set then cleared before a waiter looks: a waiter with a timeout
    # sees the flag clear.
    ev.clear()
    t = Threads(lambda i: ev.wait(0.2), 5)
    assert t.join() == [False] * 5


def test_event_wait_async(seg):
    ev = seg.event("e")

    async def main():
        assert await ev.wait_async(0) is False
        assert await ev.wait_async(0.05) is False
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ev.wait_async(), 0.05)
        assert _aio.waits_in_threads() == 0
        threading.Timer(0.05, ev.set).start()
        assert await ev.wait_async(LONG)
        assert await ev.wait_async()

    asyncio.run(main())


# ------------------------------------------------------------------ Latch


def test_latch(seg):
    latch = seg.latch("l", 3)
    assert (latch.count, latch.initial_count) == (3, 3)
    assert latch.wait(0.01) is False
    t = Threads(lambda i: latch.wait(LONG), 4)
    assert latch.count_down() == 2
    assert latch.count_down(2) == 0
    assert t.join() == [True] * 4
    assert latch.wait() and latch.count == 0
    with pytest.raises(ValueError):
        latch.count_down()

    other = seg.latch("m", 1)

    async def main():
        assert await other.wait_async(0.05) is False
        threading.Timer(0.05, other.count_down).start()
        assert await other.wait_async(LONG)

    asyncio.run(main())


# ------------------------------------------------------------------- Once


def test_once_runs_once_and_again_after_a_failure(seg):
    once = seg.once("o")
    assert not once.done and once.attempts == 0
    with pytest.raises(ZeroDivisionError):
        once.call(lambda: 1 / 0)
    assert not once.done and once.attempts == 1
    ran = []
    assert once.call(lambda: ran.append(1)) is True
    assert once.call(lambda: ran.append(2)) is False
    assert ran == [1] and once.done and once.attempts == 2
    assert seg.open("o").done
    assert once.owner_died is None


def test_once_concurrent_callers_wait_for_the_runner(seg):
    once = seg.once("o")
    runs = []

    def init():
        runs.append(threading.get_ident())
        time.sleep(0.1)

    def caller(i):
        ran = once.call(init)
        assert once.done  # whoever ran it, it is done when call returns
        return ran

    results = Threads(caller, 6).join()
    assert results.count(True) == 1 and len(runs) == 1


# ------------------------------------------------------- open and errors


def test_open_gives_each_kind_its_class(seg):
    made = {
        "lock": seg.lock("lock"), "rwlock": seg.rwlock("rwlock", 8),
        "condition": seg.condition("condition"), "semaphore": seg.semaphore("semaphore", 3),
        "barrier": seg.barrier("barrier", 2), "event": seg.event("event"),
        "latch": seg.latch("latch", 2), "once": seg.once("once"),
    }
    kinds = {e.name: e.kind for e in seg.entries()}
    for name, handle in made.items():
        assert kinds[name] == name
        opened = seg.open(name)
        assert type(opened) is type(handle)
        assert repr(opened).startswith(f"<shmds.{type(handle).__name__} {name!r}")
        assert type(pickle.loads(pickle.dumps(handle))) is type(handle)
    assert seg.open("rwlock").reader_slots == 8
    assert seg.open("semaphore").initial_value == 3
    with pytest.raises(TypeError):
        seg.lock("event")  # another kind
    with pytest.raises(ValueError):
        seg.barrier("barrier", 3)
    with pytest.raises(KeyError):
        shmds.Lock(seg, "missing", create=False)


def test_erased_primitives_are_stale(seg):
    lock = seg.lock("l")
    seg.erase("l")
    with pytest.raises(shmds.StaleError):
        lock.acquire()
    with pytest.raises(shmds.StaleError):
        lock.release()


def test_exception_classes():
    assert issubclass(shmds.OwnerDiedWarning, RuntimeWarning)
    assert issubclass(shmds.OwnerDiedError, shmds.ShmdsError)
    assert issubclass(shmds.NotOwnerError, shmds.ShmdsError)
    assert issubclass(shmds.NotOwnerError, RuntimeError)
    assert issubclass(shmds.TooManyReleasesError, ValueError)
    assert issubclass(shmds.ReaderSlotsFullError, shmds.ShmdsError)


def test_the_stubs_name_what_the_coordination_classes_have():
    here = os.path.dirname(os.path.abspath(shmds.__file__))
    with open(os.path.join(here, "_shmds.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    stubbed = {node.name: {n.name for n in node.body
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
               for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    for name in ("Lock", "RwLock", "Condition", "Semaphore", "Barrier", "Event", "Latch",
                 "Once"):
        runtime = getattr(shmds._shmds, name)
        public = {a for a in vars(runtime) if not a.startswith("__") or a in (
            "__enter__", "__exit__")}
        assert public <= stubbed[name], (name, public - stubbed[name])
        assert stubbed[name] - {"__new__"} <= set(dir(runtime)), name
    for exc in ("OwnerDiedWarning", "OwnerDiedError", "NotOwnerError",
                "TooManyReleasesError", "ReaderSlotsFullError"):
        assert exc in stubbed and hasattr(shmds, exc)


# -------------------------------------------------------------- processes


def _count_under_lock(lock, counter, n):
    for _ in range(n):
        with lock:
            v = int(counter[0])
            time.sleep(0)
            counter[0] = v + 1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_processes_count_exactly_under_the_lock(seg, method):
    ctx = mp.get_context(method)
    lock = seg.lock("l")
    counter = seg.array("counter", "<i8", 1)
    n = 300
    procs = [ctx.Process(target=_count_under_lock, args=(lock, counter, n)) for _ in range(4)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(LONG)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert int(counter[0]) == 4 * n
    assert not lock.locked() and lock.owner_deaths == 0


HOLD_AND_WAIT = """
    import shmds, sys, time
    seg = shmds.Segment(sys.argv[1], create=False)
    kind = sys.argv[3]
    h = seg.open(sys.argv[2])
    if kind == "lock":
        h.acquire()
    elif kind == "write":
        h.acquire_write()
    elif kind == "condition":
        h.acquire()
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_is_taken_over_with_a_warning(seg, segname):
    lock = seg.lock("l")
    with Child(HOLD_AND_WAIT, segname, "l", "lock") as child:
        assert child.line() == "held"
        assert lock.holder[0] == child.pid
        child.kill()
    with pytest.warns(shmds.OwnerDiedWarning) as caught:
        assert lock.acquire(timeout=LONG) is True
    assert caught[0].message.pid == child.pid
    assert str(child.pid) in str(caught[0].message)
    assert lock.owner_died == child.pid and lock.owner_deaths == 1
    assert lock.holder[0] == os.getpid()
    lock.release()
    # A clean acquire through this handle clears owner_died.
    with lock:
        pass
    assert lock.owner_died is None and lock.owner_deaths == 1


def test_owner_died_warning_as_an_error_leaves_the_lock_held(seg, segname):
    lock = seg.lock("l")
    with Child(HOLD_AND_WAIT, segname, "l", "lock") as child:
        assert child.line() == "held"
        child.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("error", shmds.OwnerDiedWarning)
        with pytest.raises(shmds.OwnerDiedWarning):
            with lock:
                pytest.fail("the with block must not run")
    assert lock.owner_died == child.pid
    assert lock.holder[0] == os.getpid()  # held: repair, then release
    lock.release()


@pytest.mark.parametrize("kind", ["write", "condition"])
def test_rwlock_and_condition_take_over_a_dead_holder(seg, segname, kind):
    h = seg.rwlock("h") if kind == "write" else seg.condition("h")
    with Child(HOLD_AND_WAIT, segname, "h", kind) as child:
        assert child.line() == "held"
        child.kill()
    with pytest.warns(shmds.OwnerDiedWarning):
        if kind == "write":
            assert h.acquire_read(timeout=LONG)
            h.release_read()
        else:
            assert h.acquire(timeout=LONG)
            h.release()
    assert h.owner_died == child.pid


EVENT_WAITER = """
    import shmds, sys
    seg = shmds.Segment(sys.argv[1], create=False)
    ev, back = seg.open("go"), seg.open("back")
    print("waiting", flush=True)
    ok = ev.wait(60)
    back.set()
    print("woke" if ok else "timed out", flush=True)
"""


def test_an_event_set_in_one_process_wakes_a_waiter_in_another(seg, segname):
    ev, back = seg.event("go"), seg.event("back")
    with Child(EVENT_WAITER, segname) as child:
        assert child.line() == "waiting"
        time.sleep(0.05)
        ev.set()
        assert back.wait(LONG)
        assert child.line() == "woke"
        assert child.proc.wait(LONG) == 0


def _barrier_party(barrier, log, rounds):
    for r in range(rounds):
        index = barrier.wait(LONG)
        log[r * barrier.parties + index] = os.getpid()


def test_barrier_across_three_processes(seg):
    rounds = 5
    barrier = seg.barrier("b", 3)
    log = seg.array("log", "<i8", 3 * rounds)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_barrier_party, args=(barrier, log, rounds)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        _barrier_party(barrier, log, rounds)
        for p in procs:
            p.join(LONG)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    pids = {os.getpid(), *(p.pid for p in procs)}
    for r in range(rounds):
        assert set(np.asarray(log)[3 * r:3 * r + 3].tolist()) == pids
    assert not barrier.broken


ONCE_RUNNER = """
    import shmds, sys, time
    seg = shmds.Segment(sys.argv[1], create=False)
    once = seg.open("init")
    def init():
        print("running", flush=True)
        time.sleep(600)
    once.call(init)
"""


def test_once_whose_runner_is_killed_runs_again(seg, segname):
    once = seg.once("init")
    with Child(ONCE_RUNNER, segname) as child:
        assert child.line() == "running"
        assert not once.done and once.attempts == 1
        # A caller meanwhile waits for the runner (and takes over once it
        # is killed).
        t = Threads(lambda i: once.call(lambda: "second"), 1)
        time.sleep(0.05)
        assert t.alive() == 1
        child.kill()
    assert t.join() == [True]
    assert once.done and once.attempts == 2
    assert once.call(lambda: pytest.fail("ran twice")) is False


def _try_pickled_lock(lock):
    if lock.acquire(False):  # the parent holds it
        sys.exit(1)
    if not lock.acquire(timeout=LONG):
        sys.exit(2)
    if lock.holder[0] != os.getpid():
        sys.exit(3)
    lock.release()


def test_a_pickled_lock_in_a_child(seg):
    lock = seg.lock("l")
    lock.acquire()
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_try_pickled_lock, args=(lock,))
    p.start()
    try:
        time.sleep(0.5)
        lock.release()
        p.join(LONG)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
    assert not lock.locked()


# ----------------------------------------------------------------- Ctrl-C


CTRL_C = """
    import shmds, signal, sys
    # A shell's background job may start us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    seg = shmds.Segment(sys.argv[1], create=False)
    what = sys.argv[2]
    call = {
        "lock": lambda: seg.open("lock").acquire(),
        "rwlock": lambda: seg.open("rw").acquire_read(),
        "semaphore": lambda: seg.open("sem").acquire(),
        "event": lambda: seg.open("ev").wait(),
        "barrier": lambda: seg.open("bar").wait(),
    }.get(what)
    if what == "condition":
        cond = seg.open("cond")
        cond.acquire()
        call = cond.wait
    print("waiting", flush=True)
    try:
        call()
    except KeyboardInterrupt:
        if what == "condition":
            assert cond._is_owned()  # the lock is taken back, as threading does
            cond.release()
        print("interrupted", flush=True)
        sys.exit(3)
"""


@pytest.mark.parametrize("what", ["lock", "rwlock", "semaphore", "event", "condition",
                                  "barrier"])
def test_ctrl_c_interrupts_a_blocking_call(seg, segname, what):
    lock, rw = seg.lock("lock"), seg.rwlock("rw")
    seg.semaphore("sem", 0)
    seg.event("ev")
    cond = seg.condition("cond")
    bar = seg.barrier("bar", 2)
    lock.acquire()
    rw.acquire_write()
    with Child(CTRL_C, segname, what) as child:
        assert child.line() == "waiting"
        time.sleep(0.2)
        child.proc.send_signal(signal.SIGINT)
        assert child.proc.wait(LONG) == 3
        assert child.line() == "interrupted"
    if what == "barrier":
        assert bar.broken  # an interrupted wait breaks it, as in threading
    assert cond.acquire(timeout=LONG)
    cond.release()
    lock.release()
    rw.release_write()


def test_ctrl_c_to_self_during_a_blocking_acquire(seg):
    lock = seg.lock("l")
    lock.acquire()  # this process holds it: acquire() below waits forever
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            lock.acquire()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert lock.holder[0] == os.getpid()
    lock.release()
    assert not lock.locked()
