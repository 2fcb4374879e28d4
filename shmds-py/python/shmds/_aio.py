"""Awaitable forms of blocking calls, shared by every shmds kind.

A kind offers ``await x.get_async()`` (and the like) by providing, for each
blocking operation:

- a non-blocking *attempt* that raises a "would block" exception
  (``queue.Empty``, ``queue.Full``) when it cannot proceed now;
- a native *wait* ``_wait_xxx(timeout, cancel)`` that blocks without the GIL
  until the attempt may succeed (True) or ``timeout`` passed (False). It
  takes nothing, so abandoning it loses nothing. It returns early (raising
  ``_shmds.WaitCancelled``) once ``cancel``, a ``_shmds.CancelToken``, is
  cancelled and the waiters were woken;
- ``_wake()``, which wakes the structure's waiters (in every process) so
  that each looks at its token again.

:func:`retry` alternates attempts (in the event loop's thread, nanoseconds)
with waits run by :func:`in_thread` in a worker thread. If the awaiting task
is cancelled (``asyncio.wait_for``, ``asyncio.timeout``, ``Task.cancel``,
the end of ``asyncio.run``), :func:`in_thread` cancels the token, wakes the
waiters and waits for the worker to come back before re-raising: no thread
is left blocked, and the loop can close. (``loop.run_in_executor(None,
q.get)`` leaves its thread in ``get()`` instead, and ``asyncio.run`` then
never returns.)

The workers are daemon threads of a small pool of this module, started on
demand and stopped after some idle seconds; the loop's default executor is
not used, so waits never starve other ``run_in_executor`` users.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, TypeVar

from . import _shmds

T = TypeVar("T")

#: Seconds an idle worker thread waits for another job before it exits.
IDLE_SECONDS = 10.0


class _Workers:
    """Daemon threads that run one job at a time; a job never waits for a
    free thread (an idle one takes it, else a new one starts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None:
            worker = _Worker(self)
            worker.give(job)
            threading.Thread(target=worker.run, name="shmds-wait", daemon=True).start()
        else:
            worker.give(job)

    def _finished(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def _retire(self, worker: _Worker) -> bool:
        """Whether an idle ``worker`` may exit: not if a submitter just took
        it off the idle list (a job is then on its way)."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False


class _Worker:
    def __init__(self, pool: _Workers) -> None:
        self._pool = pool
        self._ready = threading.Condition(threading.Lock())
        self._job: Callable[[], None] | None = None

    def give(self, job: Callable[[], None]) -> None:
        with self._ready:
            self._job = job
            self._ready.notify()

    def _take(self, timeout: float | None) -> Callable[[], None] | None:
        with self._ready:
            if self._job is None:
                self._ready.wait(timeout)
            job, self._job = self._job, None
            return job

    def run(self) -> None:
        job = self._take(None)
        while True:
            assert job is not None
            job()
            self._pool._finished(self)
            job = self._take(IDLE_SECONDS)
            if job is None:
                if self._pool._retire(self):
                    return
                job = self._take(None)  # handed one just as we timed out


_workers = _Workers()
_count_lock = threading.Lock()
_waiting = 0


def _count(delta: int) -> None:
    global _waiting
    with _count_lock:
        _waiting += delta


def waits_in_threads() -> int:
    """Waits running in worker threads on behalf of awaiting tasks right
    now: 0 once every such task has finished or was cancelled (a cancelled
    task resumes only after its wait returned)."""
    return _waiting


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


async def in_thread(wait: Callable[..., T], wake: Callable[[], None], *args: Any) -> T:
    """Run ``wait(*args, token)`` in a worker thread and await its result.

    If the awaiting task is cancelled, cancel ``token``, call ``wake()`` and
    wait for the worker to return (promptly: it was woken), then re-raise
    the cancellation. ``wait`` must return at once once its token is
    cancelled and ``wake()`` was called, and must take nothing.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    token = _shmds.CancelToken()

    def job() -> None:
        try:
            result, error = wait(*args, token), None
        except BaseException as e:  # delivered to the awaiting task
            result, error = None, e
        _count(-1)  # before the task can resume
        try:
            loop.call_soon_threadsafe(_settle, fut, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody awaits this any more

    _count(1)
    _workers.submit(job)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        token.cancel()
        wake()
        await _until_done(fut)
        raise


async def _until_done(fut: asyncio.Future[Any]) -> None:
    """Wait for ``fut`` whatever happens to the current task meanwhile
    (it is being cancelled already), and consume its outcome."""
    while not fut.done():
        try:
            await asyncio.wait((fut,))
        except asyncio.CancelledError:
            pass
    if not fut.cancelled():
        fut.exception()  # retrieved: no "exception was never retrieved"


async def retry(
    attempt: Callable[[], T],
    would_block: type[BaseException] | tuple[type[BaseException], ...],
    wait: Callable[..., bool],
    wake: Callable[[], None],
    timeout: float | None,
) -> T:
    """``attempt()`` until it does not raise ``would_block``, awaiting
    ``wait(seconds_left, token)`` in a worker thread in between (see
    :func:`in_thread`). After ``timeout`` seconds (None: no limit; 0: one
    attempt) the last ``would_block`` exception propagates. Any other
    exception of ``attempt`` or ``wait`` (ShutDown, ValueError for a closed
    handle...) propagates at once."""
    timeout = check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except would_block:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise
        await in_thread(wait, wake, left)


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` as the blocking calls take it: None or >= 0."""
    if timeout is not None and not timeout >= 0:
        raise ValueError("'timeout' must be a non-negative number")
    return timeout
