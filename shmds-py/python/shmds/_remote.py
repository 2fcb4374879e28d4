"""Remote segments: the same named structures on a Redis server.

``shmds.connect("redis://host:6379/0", "jobs")`` gives a
:class:`RemoteSegment` whose ``queue``, ``stack``, ``map``, ``array`` and
``lock`` have the shapes of a local :class:`shmds.Segment`'s, with the same
element types and bytes (Rust's ``shmds::remote`` does the work, so a Rust
process and a Python one share them). Any loss of the server raises
:class:`shmds.UnavailableError` (a :class:`ConnectionError`); the next call
reconnects. ``get`` is at most once; ``take`` + ``Delivery.ack()`` is at
least once (README, "Remote segments").
"""

from __future__ import annotations

import pickle
import queue
from collections.abc import Iterator, MutableMapping
from typing import Any, Generic, NamedTuple, Self, TypeVar

import numpy as np

from . import _shmds
from ._dtypes import _codec, _pack_elements, descriptor, dtype_of

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


def _native(desc: str) -> bool:
    try:
        _shmds._pack(desc, [])
        return True
    except (ValueError, TypeError):
        return False


def _codecs(desc: str) -> tuple[Any, Any]:
    return (None, None) if _native(desc) else _codec(desc)


class RemoteEntryInfo(NamedTuple):
    """One structure of a remote segment."""

    name: str
    kind: str
    type: str
    key_type: str
    capacity: int


class Faults:
    """Failure injection for tests (``seg.faults``): make every call of this
    segment's handles fail, slow down, fail at random, or run and then lose
    its reply, without touching the server."""

    def __init__(self, seg: RemoteSegment) -> None:
        self._seg = seg

    def make_unavailable(self) -> None:
        """Every call raises :class:`UnavailableError` (not sent) until
        :meth:`clear`."""
        self._seg._fault_unavailable()

    def delay(self, seconds: float) -> None:
        """Every call first waits ``seconds``."""
        self._seg._fault_delay(seconds)

    def flaky(self, p: float, seed: int = 0) -> None:
        """Each call fails before it is sent with probability ``p``."""
        self._seg._fault_flaky(p, seed)

    def lose_replies(self, p: float, seed: int = 0) -> None:
        """Each call runs on the server, then with probability ``p`` raises
        :class:`UnavailableError` as if its reply were lost."""
        self._seg._fault_lose_replies(p, seed)

    def clear(self) -> None:
        """Back to normal."""
        self._seg._fault_clear()

    @property
    def injected(self) -> int:
        """How many calls failed by injection so far."""
        return self._seg._faults_injected()


class RemoteSegment(_shmds.RemoteSegment):
    """A segment on a Redis server (make one with :func:`connect`). Cheap:
    it holds a pool of connections; ``with`` closes nothing on the server."""

    @property
    def faults(self) -> Faults:
        """Failure injection (:class:`Faults`)."""
        return Faults(self)

    def entries(self) -> list[RemoteEntryInfo]:
        """Every structure, sorted by name."""
        return [RemoteEntryInfo(*e) for e in self._entries()]

    def queue(self, name: str, dtype: Any, capacity: int) -> RemoteQueue[Any]:
        """The FIFO queue ``name``, created if it does not exist (types as
        for :meth:`shmds.Segment.queue`)."""
        desc = descriptor(dtype)
        return RemoteQueue(self, name, "queue", desc, capacity, *_codecs(desc))

    def stack(self, name: str, dtype: Any, capacity: int) -> RemoteStack[Any]:
        """The LIFO stack ``name``, like :meth:`queue`."""
        desc = descriptor(dtype)
        return RemoteStack(self, name, "stack", desc, capacity, *_codecs(desc))

    def map(self, name: str, key: Any, value: Any, capacity: int) -> RemoteMap[Any, Any]:
        """The map ``name`` from ``key`` to ``value`` elements."""
        k, v = descriptor(key), descriptor(value)
        return RemoteMap(self, name, k, v, capacity, (*_codecs(k), *_codecs(v)))

    def array(self, name: str, dtype: Any, length: int) -> RemoteArray[Any]:
        """The array ``name`` of ``length`` elements, zeroed when created."""
        desc = descriptor(dtype)
        return RemoteArray(self, name, desc, length, *_codecs(desc))

    def channel(self, name: str, capacity: int, max_message: int = 1 << 20) -> RemoteChannel:
        """The channel ``name`` of at most ``capacity`` messages of at most
        ``max_message`` bytes: ``send``/``recv`` bytes, ``put``/``get``
        objects (pickled), ``take`` at least once."""
        return RemoteChannel(self, name, capacity, max_message)

    def topic(self, name: str, capacity: int, max_message: int = 1 << 20) -> RemoteTopic:
        """The broadcast topic ``name`` keeping the last ``capacity``
        messages: ``publish(data)``, ``subscribe()``."""
        return RemoteTopic(self, name, capacity, max_message)

    def lock(self, name: str) -> RemoteLock:
        """The lock ``name`` (:class:`threading.Lock`'s methods, with a
        lease: ``Options.lease`` of :func:`connect`)."""
        return RemoteLock(self, name)

    def _find(self, name: str, kind: str) -> RemoteEntryInfo:
        for e in self.entries():
            if e.name == name:
                if e.kind != kind:
                    raise TypeError(f"entry {name!r} is a {e.kind}, not a {kind}")
                return e
        raise KeyError(f"no entry named {name!r} in remote segment {self.name!r}")

    def open_queue(self, name: str) -> RemoteQueue[Any]:
        """The existing queue ``name``, whatever it holds."""
        e = self._find(name, "queue")
        return RemoteQueue(self, name, "queue", None, None, *_codecs(e.type))

    def open_stack(self, name: str) -> RemoteStack[Any]:
        """The existing stack ``name``, whatever it holds."""
        e = self._find(name, "stack")
        return RemoteStack(self, name, "stack", None, None, *_codecs(e.type))

    def open_map(self, name: str) -> RemoteMap[Any, Any]:
        """The existing map ``name``, whatever it holds."""
        e = self._find(name, "map")
        return RemoteMap(self, name, None, None, None, (*_codecs(e.key_type), *_codecs(e.type)))

    def open_array(self, name: str) -> RemoteArray[Any]:
        """The existing array ``name``, whatever it holds."""
        e = self._find(name, "array")
        return RemoteArray(self, name, None, None, *_codecs(e.type))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"<shmds.RemoteSegment {self.name!r} at {self.url}>"


def connect(url: str, name: str, *, timeout: float = 2.0, connect_timeout: float = 2.0,
            lease: float = 30.0, cache: float | None = None) -> RemoteSegment:
    """The segment ``name`` on the Redis server at ``url``
    (``redis://[user:password@]host:port/db``), created if it does not
    exist. ``timeout`` bounds each call (then :class:`UnavailableError`);
    ``lease`` is how long a lock holder or a ``take``-ing consumer stays the
    owner without renewing. ``cache`` (seconds) turns on the coherent read
    cache: map and array reads are served locally, each value at most that
    old, and dropped as soon as the server announces a change anywhere
    (``CLIENT TRACKING``); one server only."""
    return RemoteSegment(url, name, timeout, connect_timeout, lease, cache)


def remove_remote(url: str, name: str) -> bool:
    """Delete every key of the remote segment ``name``; whether it existed."""
    return _shmds.remote_remove(url, name)


class RemoteQueue(_shmds.RemoteQueue, Generic[T]):
    """A bounded FIFO queue on a Redis server with :class:`queue.Queue`'s
    methods (``put``/``get``/``_nowait``/``qsize``/``empty``/``full``),
    ``put_many``/``get_many`` with numpy arrays, and ``take()`` for at least
    once delivery: ``d = q.take(); handle(d.value); d.ack()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the elements."""
        return dtype_of(self.descriptor)

    def put_many(self, items: Any, block: bool = True, timeout: float | None = None) -> int:
        """Put every element of ``items`` in order; returns how many were
        put (all, unless the wait timed out or ``block`` is false)."""
        data = bytes(memoryview(_pack_elements(self.descriptor, items)).cast("B"))
        return self._put_bytes(data, block, timeout)

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> np.ndarray:
        """Up to ``n`` elements as a numpy array, waiting for the first;
        :class:`queue.Empty` when none came."""
        data = self._get_bytes(n, block, timeout)
        if n and not data:
            raise queue.Empty(f"{self.name} is empty")
        return np.frombuffer(data, dtype=self.dtype).copy()

    def __repr__(self) -> str:
        return f"<shmds.{type(self).__name__} {self.name!r} type={self.descriptor!r}>"


class RemoteStack(RemoteQueue[T]):
    """A bounded LIFO stack on a Redis server (:class:`RemoteQueue`'s
    methods, newest first)."""


class RemoteMap(_shmds.RemoteMap, MutableMapping[K, V]):
    """A bounded map on a Redis server, a
    :class:`collections.abc.MutableMapping`, plus ``fetch_add`` and
    ``compare_exchange`` for integer values. ``items()``, ``keys()`` and
    ``values()`` are lists from one atomic read. :class:`NoSpaceError` when
    a new key finds it full."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __iter__(self) -> Iterator[K]:
        return iter([k for k, _ in super().items()])

    def keys(self) -> list[K]:  # type: ignore[override]
        return [k for k, _ in super().items()]

    def values(self) -> list[V]:  # type: ignore[override]
        return [v for _, v in super().items()]

    def items(self) -> list[tuple[K, V]]:  # type: ignore[override]
        return super().items()

    def __repr__(self) -> str:
        return f"<shmds.RemoteMap {self.name!r} capacity={self.capacity}>"


class RemoteArray(_shmds.RemoteArray, Generic[T]):
    """A fixed-length array on a Redis server: ``a[i]``, ``a[i] = v``,
    ``len(a)``, ``read(start, n)``, ``write(start, items)``, ``tolist()``,
    ``numpy()`` (a copy), and ``fetch_add``/``compare_exchange`` for
    integers. Every call is one atomic round trip."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def numpy(self) -> np.ndarray:
        """A numpy copy of the whole array."""
        return np.array(self.tolist(), dtype=dtype_of(self.descriptor))

    def __repr__(self) -> str:
        return f"<shmds.RemoteArray {self.name!r} len={len(self)}>"


class RemoteChannel(_shmds.RemoteChannel):
    """A bounded channel of messages on a Redis server (a stream and a
    consumer group): ``send(bytes)``/``recv()`` at most once,
    ``put(obj)``/``get()`` the same with pickled objects, and ``take()`` at
    least once (``Delivery.ack()``; a message not acknowledged within the
    lease is delivered again). :class:`queue.Full`/:class:`queue.Empty` as
    for a queue."""

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Send ``obj`` pickled."""
        self.send(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Receive a pickled object (at most once). Only receive from
        channels whose senders you trust: unpickling runs their code."""
        return pickle.loads(self.recv(block, timeout))

    def __repr__(self) -> str:
        return f"<shmds.RemoteChannel {self.name!r} maxsize={self.maxsize}>"


class RemoteTopic(_shmds.RemoteTopic):
    """A broadcast topic on a Redis server: every subscriber gets every
    message published after it subscribed; one that falls more than the
    capacity behind gets :class:`Lagged` (with ``missed``) once."""

    def __repr__(self) -> str:
        return f"<shmds.RemoteTopic {self.name!r}>"


class RemoteLock(_shmds.RemoteLock):
    """A lock on a Redis server with :class:`threading.Lock`'s methods and
    a lease: a holder that does not release (or ``extend()``) within it is
    taken over by the next acquire, with an :class:`OwnerDiedWarning` and
    :attr:`owner_died` set, as for a dead holder of a local lock."""

    def __repr__(self) -> str:
        return f"<shmds.RemoteLock {self.name!r}>"
