"""Coordination primitives in shared memory, in the shapes of ``threading``'s:
:class:`Lock`, :class:`RwLock`, :class:`Condition`, :class:`Semaphore`,
:class:`BoundedSemaphore`, :class:`Barrier`, :class:`Event`, :class:`Latch`
and :class:`Once`, named entries of a segment (``seg.lock("ledger")``), so
that code written for ``threading`` or ``multiprocessing`` primitives works
across processes that never shared a parent.

Ownership is per process: any thread of the process holding a lock may
release it, and a second acquire by the same process waits (the locks are
not reentrant). Blocking calls release the GIL; Ctrl-C interrupts them.

A process that dies holding a lock does not block the others: the next
acquire takes the lock over, sets :attr:`Lock.owner_died` to the dead pid
and issues an :class:`OwnerDiedWarning` (``with lock:`` goes on; the
warnings filter ``"error"`` makes it an exception, the lock then held).
What the lock guarded may be half-updated.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, TypeAlias, TypeVar

from . import _aio, _shmds
from ._shmds import StaleError

if TYPE_CHECKING:
    from . import Segment

T = TypeVar("T")

#: The kinds of this module, as the segment's table names them.
KINDS = ("lock", "rwlock", "condition", "semaphore", "barrier", "event", "latch", "once")


def _reopen(segment: str, name: str) -> Any:
    """Unpickle: open ``name`` in the segment ``segment`` by name."""
    from . import Segment

    return Segment(segment, create=False).open(name)


#: A handle of this module.
Primitive: TypeAlias = "Lock | RwLock | Condition | Semaphore | Barrier | Event | Latch | Once"


def open_kind(segment: Segment, name: str, kind: str) -> Primitive:
    """The handle of the primitive ``name`` of ``kind`` (``Segment.open``)."""
    if kind == "semaphore":
        sem = Semaphore(segment, name)
        return BoundedSemaphore(segment, name) if sem.bounded else sem
    classes: dict[str, type[Primitive]] = {
        "lock": Lock, "rwlock": RwLock, "condition": Condition, "barrier": Barrier,
        "event": Event, "latch": Latch, "once": Once}
    return classes[kind](segment, name)


class _WouldBlock(Exception):
    """An attempt of an ``await`` form could not take what it wanted now."""


async def _acquire(attempt: Callable[[], bool], wait: Callable[..., bool],
                   wake: Callable[[], None], timeout: float | None) -> bool:
    """``attempt()`` (a non-blocking acquire) until it succeeds, waiting in
    a worker thread (``wait(seconds_left, token)``, which takes nothing) in
    between; False once ``timeout`` passed."""

    def once() -> bool:
        if not attempt():
            raise _WouldBlock
        return True

    try:
        return await _aio.retry(once, _WouldBlock, wait, wake, timeout)
    except _WouldBlock:
        return False


def _state(handle: Any, describe: Callable[[], str]) -> str:
    kind = type(handle).__name__
    if handle.closed:
        return f"<shmds.{kind} (closed)>"
    try:
        text = describe()
    except StaleError:
        return f"<shmds.{kind} {handle.name!r} (erased)>"
    return f"<shmds.{kind} {handle.name!r} {text}>"


class _Named:
    """Pickles as "open this primitive by name" (in any process)."""

    name: str
    segment_name: str

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (self.segment_name, self.name))


class Lock(_Named, _shmds.Lock):
    """A lock shared by processes, with :class:`threading.Lock`'s methods:
    ``acquire(blocking=True, timeout=-1)``, ``release()``, ``locked()`` and
    ``with lock:``; ``await lock.acquire_async()``. Robust: a holder that
    dies is taken over by the next acquire (:attr:`owner_died`,
    :class:`OwnerDiedWarning`). :attr:`holder` names the holding process
    and thread. Pickles by name. ``Lock(segment, name, create=True)`` is
    ``segment.lock(name)``; ``create=False`` only opens (``KeyError``)."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    def __repr__(self) -> str:
        def describe() -> str:
            holder = self.holder
            return "unlocked" if holder is None else f"locked by pid {holder[0]}"

        return _state(self, describe)

    async def acquire_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`acquire`: True once taken, False if
        ``timeout`` seconds (None: no limit) passed. The waiting is done in
        a worker thread that takes nothing: a cancelled call holds nothing."""
        return await _acquire(lambda: self.acquire(False), self._wait_acquire, self._wake,
                              timeout)


class _Held:
    """``with rw.read():`` / ``with rw.write():``."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire: Callable[[], bool], release: Callable[[], None]) -> None:
        self._acquire = acquire
        self._release = release

    def __enter__(self) -> bool:
        return self._acquire()

    def __exit__(self, *exc: object) -> None:
        self._release()


class RwLock(_Named, _shmds.RwLock):
    """A readers-writer lock shared by processes: many readers or one writer,
    writer-preferring (a waiting writer keeps new readers out).
    ``acquire_read``/``release_read``, ``acquire_write``/``release_write``
    (arguments as :meth:`Lock.acquire`), ``with rw.read():``, ``with
    rw.write():``, their ``_async`` forms. Read locks are counted per
    process, in one of ``reader_slots`` slots (:class:`ReaderSlotsFullError`
    when all are taken by live processes). A dead writer is taken over as a
    :class:`Lock`'s holder is; dead readers' read locks are taken back.
    ``RwLock(segment, name, reader_slots=None)``: ``segment.rwlock(name,
    reader_slots)``, or, without ``reader_slots``, open only."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    def read(self) -> _Held:
        """A context manager holding a read lock."""
        return _Held(self.acquire_read, self.release_read)

    def write(self) -> _Held:
        """A context manager holding the write lock."""
        return _Held(self.acquire_write, self.release_write)

    async def acquire_read_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`acquire_read` (see :meth:`Lock.acquire_async`)."""
        return await _acquire(lambda: self.acquire_read(False), self._wait_read, self._wake,
                              timeout)

    async def acquire_write_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`acquire_write`. Unlike a blocking
        acquire, it does not keep new readers out while it waits, so readers
        that keep overlapping delay it."""
        return await _acquire(lambda: self.acquire_write(False), self._wait_write, self._wake,
                              timeout)

    def __repr__(self) -> str:
        def describe() -> str:
            writer = self.writer
            if writer is not None:
                return f"write-locked by pid {writer}"
            return f"readers={self.readers}"

        return _state(self, describe)


class Condition(_Named, _shmds.Condition):
    """A condition variable shared by processes, with its own robust lock,
    and :class:`threading.Condition`'s methods: ``acquire``/``release``/
    ``with cond:``, ``wait(timeout=None)``, ``wait_for(predicate,
    timeout=None)``, ``notify(n=1)``, ``notify_all()``. ``wait`` and
    ``notify`` need the lock held by this process (RuntimeError otherwise).
    ``notify(n)`` wakes at most ``n`` of the waits in progress, in any
    process. A dead holder is taken over as a :class:`Lock`'s is.
    ``Condition(segment, name, create=True)``, as :class:`Lock`'s."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """Wait until ``predicate()`` (called with the lock held) is true,
        at most ``timeout`` seconds (None: no limit); its last result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if deadline is None:
                self.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            result = predicate()
        return result

    def notifyAll(self) -> None:  # noqa: N802 (threading's old name)
        """Deprecated alias of :meth:`notify_all`, as threading has it."""
        self.notify_all()

    def __repr__(self) -> str:
        return _state(self, lambda: f"waiters={self.waiters}")


class Semaphore(_Named, _shmds.Semaphore):
    """A counting semaphore shared by processes, with
    :class:`threading.Semaphore`'s methods: ``acquire(blocking=True,
    timeout=None)``, ``release(n=1)``, ``with sem:``, and
    ``await sem.acquire_async()``; :attr:`value` is the number of permits
    free. Permits have no owner: a process that dies holding some does not
    give them back. ``Semaphore(segment, name, value=None, bounded=False)``:
    ``segment.semaphore(name, value)``, or, without ``value``, open only."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    async def acquire_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`acquire` (see :meth:`Lock.acquire_async`)."""
        return await _acquire(lambda: self.acquire(False), self._wait_acquire, self._wake,
                              timeout)

    def __repr__(self) -> str:
        return _state(self, lambda: f"value={self.value}/{self.initial_value}")


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` that refuses to hold more permits than it was
    created with: such a ``release`` raises ``ValueError``
    (:class:`TooManyReleasesError`), as :class:`threading.BoundedSemaphore`."""

    def __new__(cls, segment: Segment, name: str, value: int | None = None) -> BoundedSemaphore:
        return super().__new__(cls, segment, name, value, True)


class Barrier(_Named, _shmds.Barrier):
    """A barrier for ``parties`` waiters in any processes, with
    :class:`threading.Barrier`'s methods: ``wait(timeout=None)`` returns the
    arrival index; :class:`threading.BrokenBarrierError` once it is broken
    (a wait timed out or was interrupted, a waiting process died, or
    ``abort()``) until ``reset()``. ``Barrier(segment, name, parties=None)``:
    ``segment.barrier(name, parties)``, or, without ``parties``, open only."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    def __repr__(self) -> str:
        def describe() -> str:
            broken = " broken" if self.broken else ""
            return f"waiters={self.n_waiting}/{self.parties}{broken}"

        return _state(self, describe)


class Event(_Named, _shmds.Event):
    """An event flag shared by processes, with :class:`threading.Event`'s
    methods: ``is_set()``, ``set()``, ``clear()``, ``wait(timeout=None)``,
    and ``await event.wait_async()``. ``Event(segment, name, create=True)``,
    as :class:`Lock`'s."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    async def wait_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`wait`: the flag, once set or after
        ``timeout`` seconds (None: no limit). Cancellable."""
        timeout = _aio.check_timeout(timeout)
        if self.is_set():
            return True
        if timeout == 0:
            return False
        return await _aio.in_thread(self._wait, self._wake, timeout)

    def __repr__(self) -> str:
        return _state(self, lambda: "set" if self.is_set() else "clear")


class Latch(_Named, _shmds.Latch):
    """A count-down latch shared by processes (C++'s ``std::latch``):
    ``count_down(n=1)`` from any process, ``wait(timeout=None)`` until the
    count reaches 0, ``await latch.wait_async()``. It opens once and stays
    open. ``Latch(segment, name, count=None)``: ``segment.latch(name,
    count)``, or, without ``count``, open only."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    async def wait_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`wait`. Cancellable."""
        timeout = _aio.check_timeout(timeout)
        if self.count == 0:
            return True
        if timeout == 0:
            return False
        return await _aio.in_thread(self._wait, self._wake, timeout)

    def __repr__(self) -> str:
        return _state(self, lambda: f"count={self.count}/{self.initial_count}")


class Once(_Named, _shmds.Once):
    """Run a function once among all processes: ``once.call(fn)`` runs
    ``fn()`` unless it has run to completion (True if this call ran it).
    While another caller runs it, ``call`` waits. If ``fn`` raises, or the
    process running it dies, the next caller runs it (which must cope with
    what a dead run left half done). ``Once(segment, name, create=True)``,
    as :class:`Lock`'s."""

    if not TYPE_CHECKING:  # the constructor is the native __new__'s
        def __init__(self, *args, **kwargs):
            pass

    def __repr__(self) -> str:
        return _state(self, lambda: "done" if self.done else f"not done, {self.attempts} runs")
