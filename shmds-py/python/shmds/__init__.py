"""shmds: named, typed data structures in POSIX shared memory.

Several processes (Python, Rust, C) attach to one named segment and share
the structures inside it, zero-copy::

    import shmds, numpy as np
    with shmds.Segment("sensors", size=64 << 20) as seg:    # create or open
        temps = seg.array("temps", "<f4", 1000)
        np.asarray(temps)[:] = 20.0                         # zero-copy view

        jobs = seg.queue("jobs", "<u8", capacity=4096)      # queue.Queue shape
        jobs.put(7); jobs.get(timeout=1.0)
        prices = seg.map("prices", key="S32", value="<f8", capacity=10_000)
        prices["AAPL"] = 189.5                              # a MutableMapping
        seen = seg.set("seen", key="<u8", capacity=10_000)  # a MutableSet
        raw = seg.queue("raw", "V8", capacity=16)           # 8 raw bytes each

        events = seg.channel("events", capacity=1 << 20)     # messages of any size
        events.put({"id": 1}); events.get()                 # multiprocessing.Queue shape
        events.send(b"raw"); events.recv()                  # bytes in, bytes out
        ticks = seg.topic("ticks", capacity=1 << 20)        # broadcast
        sub = ticks.subscribe(); ticks.publish(b"t1"); sub.recv()

    other = shmds.Segment("sensors", create=False)           # attach by name
    t = other.open("temps")                                  # type from the table

``"S<n>"`` is a string (Rust's ``FixedStr<n>``) and ``"V<n>"`` exactly n raw
bytes in every structure (README, "Strings and bytes").

Queues and stacks also have awaitable forms of their blocking calls
(``await q.get_async()``), ``shutdown()`` shared by every process, and
``task_done()``/``join()`` across processes (README, "asyncio, shutdown,
join").
"""

from __future__ import annotations

import os
import pickle
import queue
import struct
import time
from collections.abc import Iterable, Iterator, MutableMapping, MutableSet
from types import EllipsisType
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NamedTuple,
    Self,
    SupportsIndex,
    TypeAlias,
    TypeVar,
    overload,
)

import numpy as np

from . import _aio, _coord, _shmds
from ._coord import (
    Barrier,
    BoundedSemaphore,
    Condition,
    Event,
    Latch,
    Lock,
    Once,
    RwLock,
    Semaphore,
)
from ._shmds import (
    AlreadyAttachedError,
    BusyError,
    CorruptError,
    Disconnected,
    EntryChange,
    GcReport,
    IncompatibleError,
    Lagged,
    MessageTooLargeError,
    MessageView,
    NoSpaceError,
    NotOwnerError,
    NotReadyError,
    OwnerDiedError,
    OwnerDiedWarning,
    ReaderSlotsFullError,
    ShmdsError,
    ShutDown,
    SnapshotEntry,
    SnapshotInfo,
    StaleError,
    Subscriber,
    TooManyReleasesError,
    UnavailableError,
    VerifyReport,
    human_type,
    list_segments,
    remove,
    remove_abandoned,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from . import _typing as _t  # stub only: the element-type spellings

__all__ = [
    "Array",
    "Attacher",
    "Channel",
    "Map",
    "MessageView",
    "Queue",
    "Set",
    "Stack",
    "Subscriber",
    "Topic",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Latch",
    "Lock",
    "Once",
    "RwLock",
    "Semaphore",
    "NotOwnerError",
    "OwnerDiedError",
    "OwnerDiedWarning",
    "ReaderSlotsFullError",
    "TooManyReleasesError",
    "AlreadyAttachedError",
    "BusyError",
    "CorruptError",
    "Disconnected",
    "EntryInfo",
    "HeapStats",
    "IncompatibleError",
    "Lagged",
    "MessageTooLargeError",
    "NoSpaceError",
    "NotReadyError",
    "Segment",
    "SegmentStatus",
    "ShmdsError",
    "ShutDown",
    "StaleError",
    "Store",
    "SnapshotInfo",
    "SnapshotEntry",
    "EntryChange",
    "VerifyReport",
    "GcReport",
    "descriptor",
    "dtype_of",
    "human_type",
    "list_segments",
    "remove",
    "remove_abandoned",
    "segment_status",
    "connect",
    "remove_remote",
    "Delivery",
    "Faults",
    "RemoteArray",
    "RemoteChannel",
    "RemoteEntryInfo",
    "RemoteSubscriber",
    "RemoteTopic",
    "RemoteLock",
    "RemoteMap",
    "RemoteQueue",
    "RemoteSegment",
    "RemoteStack",
    "UnavailableError",
]

# Type parameters of the handles: T is one element (Array, Queue, Stack,
# Channel, Topic), K a key and V a value (Map, Set).
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
_D = TypeVar("_D")  # a default (Map.get, Map.pop)
_H = TypeVar("_H")  # a handle (Segment._open_as)
_I = TypeVar("_I", bound="np.integer[Any]")
_F = TypeVar("_F", bound="np.floating[Any]")
_N = TypeVar("_N", bound="np.integer[Any] | np.floating[Any]")

#: Indexes of an array other than one element's (which numpy answers).
_Indexes: TypeAlias = "slice | EllipsisType | tuple[Any, ...] | list[Any] | np.ndarray[Any, Any]"

from ._remote import (  # noqa: E402  (after the stdlib and native imports)
    Faults,
    RemoteArray,
    RemoteChannel,
    RemoteTopic,
    RemoteEntryInfo,
    RemoteLock,
    RemoteMap,
    RemoteQueue,
    RemoteSegment,
    RemoteStack,
    connect,
    remove_remote,
)
from ._shmds import Delivery, RemoteSubscriber  # noqa: E402
from ._dtypes import (
    _codec,
    _kind,
    _pack_elements,
    _sub_array,
    descriptor,
    dtype_of,
)


class EntryInfo(NamedTuple):
    """One structure in a segment's table."""

    name: str
    kind: str
    type: str
    key_type: str
    capacity: int
    bytes: int
    fill: int | None


class Attacher(NamedTuple):
    """A process attached to a segment (:attr:`Segment.attachers`)."""

    pid: int
    #: Its start time in clock ticks since boot (with the pid it names one
    #: process, so a reused pid is not taken for it); 0 if not recorded.
    start_time: int
    #: Its open segment handles (structures keep their segment's open).
    handles: int
    #: Whether it still runs; a dead one is listed until another process
    #: attaches or detaches.
    alive: bool


class SegmentStatus(NamedTuple):
    """What :func:`segment_status` tells of a segment."""

    name: str
    size: int
    temporary: bool
    creator_pid: int
    creator_alive: bool
    attachers: list[Attacher]
    #: Attached processes counted without a record (every record taken).
    overflow: int
    #: No live process is attached: ``shmds rm --abandoned`` (and
    #: :func:`remove_abandoned`) removes it.
    abandoned: bool


class HeapStats(NamedTuple):
    """The figures of a segment's heap (:attr:`Segment.heap`)."""

    size: int
    max_size: int
    heap_bytes: int
    used_bytes: int
    free_bytes: int
    largest_free: int
    used_blocks: int
    free_blocks: int
    #: 0 when the free space is one block (or none), towards 1 as it
    #: scatters: ``1 - largest_free / free_bytes``.
    fragmentation: float


def segment_status(name: str | os.PathLike[str]) -> SegmentStatus:
    """The lifetime status of the segment ``name`` (temporary or not,
    creator alive, attached processes, abandoned), read without attaching
    to it (a durable segment's file path works too). ``shmds.IncompatibleError``
    for a segment of another format version."""
    st = _shmds._segment_status(name)
    return SegmentStatus(*st[:5], [Attacher(*a) for a in st[5]], *st[6:])


class Segment(_shmds.Segment):
    """A named shared memory segment.

    ``Segment(name, size)`` opens the segment or creates it with ``size``
    bytes; ``create=True`` only creates (``FileExistsError`` if it exists),
    ``create=False`` (or no size) only opens (``FileNotFoundError``). ``mode``
    (default ``0o600``) sets the permissions of a new segment. Use it as a
    context manager to close the handle.

    Every open handle attaches this process to the segment
    (:attr:`attachers`) until it is closed (or collected); structures
    opened from it keep it open. A segment stays until :func:`remove`
    unless it is created with ``temporary=True``: it is then removed when
    the last attached process, in any language, closes it or dies. Nothing
    is left to clean up at exit and no warning is printed (there is no
    resource tracker). A dead process is noticed by the next process that
    attaches or detaches, or by :func:`remove_abandoned`; a temporary
    segment found with every attacher dead is removed by the next open,
    which then creates a fresh one (or raises ``FileNotFoundError`` for
    ``create=False``). A forked child's inherited handles do not attach
    it: open the segment again in the child.

    ``max_size`` (the largest size a new segment grows to),
    ``temporary`` and ``wipe_on_erase`` (erased structures' memory is
    zeroed) apply to a segment this call creates.

    Durable segments: a ``name`` with a ``/`` anywhere but at its start
    (``"./state.shmds"``, ``"/var/lib/app/state.shmds"``), or any
    :class:`os.PathLike` (``pathlib.Path("state.shmds")`` is
    ``"./state.shmds"``), is the path of a regular file holding the
    segment, in the same format and used the same way, which outlives a
    reboot. :meth:`flush` writes its changes to disk; ``flush_on_close=True``
    makes this handle flush when it closes. The last close in any process
    seals the file with checksums; a sealed file found damaged is refused
    with :class:`CorruptError`. :attr:`is_durable` tells which kind a
    segment is; :func:`remove` deletes the file.

    Snapshots: :meth:`snapshot` writes a consistent copy of the segment
    into a :class:`Store`; :meth:`Store.restore` makes a new segment of it.
    """

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Segment (closed)>"
        return f"<shmds.Segment {self.name!r} size={self.size}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles as "attach to this segment by name".
        return (_attach_segment, (self.name,))

    def snapshot(self, store: Store | str | os.PathLike[str]) -> SnapshotInfo:
        """Write a consistent snapshot of this segment into ``store`` (a
        :class:`Store`, or the path of its directory, opened or created):
        :meth:`Store.snapshot`."""
        if not isinstance(store, _shmds.Store):
            store = Store(store)
        return store.snapshot(self)

    # The overloads tell a type checker the element type each dtype gives
    # (shmds/_typing.pyi lists the spellings): "<u8" makes a Queue[int], a
    # Map with key="S16" a Map[str, ...]; an array's elements read back as
    # numpy scalars (Array[np.uint64]). Other dtypes (records, sub-arrays,
    # big-endian ones, a str variable) give Any.

    @overload
    def array(self, name: str, dtype: _t.U1, length: int) -> Array[np.uint8]: ...
    @overload
    def array(self, name: str, dtype: _t.U2, length: int) -> Array[np.uint16]: ...
    @overload
    def array(self, name: str, dtype: _t.U4, length: int) -> Array[np.uint32]: ...
    @overload
    def array(self, name: str, dtype: _t.U8, length: int) -> Array[np.uint64]: ...
    @overload
    def array(self, name: str, dtype: _t.I1, length: int) -> Array[np.int8]: ...
    @overload
    def array(self, name: str, dtype: _t.I2, length: int) -> Array[np.int16]: ...
    @overload
    def array(self, name: str, dtype: _t.I4, length: int) -> Array[np.int32]: ...
    @overload
    def array(self, name: str, dtype: _t.I8, length: int) -> Array[np.int64]: ...
    @overload
    def array(self, name: str, dtype: _t.F4, length: int) -> Array[np.float32]: ...
    @overload
    def array(self, name: str, dtype: _t.F8, length: int) -> Array[np.float64]: ...
    @overload
    def array(self, name: str, dtype: _t.IntPlatform,
              length: int) -> Array[np.signedinteger[Any]]: ...
    @overload
    def array(self, name: str, dtype: _t.UIntPlatform,
              length: int) -> Array[np.unsignedinteger[Any]]: ...
    @overload
    def array(self, name: str, dtype: _t.StrDtype, length: int) -> Array[str]: ...
    @overload
    def array(self, name: str, dtype: _t.BytesDtype, length: int) -> Array[bytes]: ...
    @overload
    def array(self, name: str, dtype: type[int], length: int) -> Array[np.int64]: ...  # 64-bit
    @overload
    def array(self, name: str, dtype: type[float], length: int) -> Array[np.float64]: ...
    @overload
    def array(self, name: str, dtype: type[_N] | np.dtype[_N], length: int) -> Array[_N]: ...
    @overload
    def array(self, name: str, dtype: Any, length: int) -> Array[Any]: ...

    def array(self, name: str, dtype: Any, length: int) -> Array[Any]:
        """The array ``name`` of ``length`` elements of ``dtype``, created if
        it does not exist. An existing array must hold ``dtype``
        (``TypeError`` otherwise) and ``length`` elements (``ValueError``;
        :meth:`open` takes it whatever its length). Element types are
        numpy dtypes, with ``"S<n>"`` a string and ``"V<n>"`` raw bytes
        (README, "Strings and bytes")."""
        return Array(self, name, descriptor(dtype), length)

    @overload
    def queue(self, name: str, dtype: _t.IntDtype, capacity: int) -> Queue[int]: ...
    @overload
    def queue(self, name: str, dtype: _t.FloatDtype, capacity: int) -> Queue[float]: ...
    @overload
    def queue(self, name: str, dtype: _t.StrDtype, capacity: int) -> Queue[str]: ...
    @overload
    def queue(self, name: str, dtype: _t.BytesDtype, capacity: int) -> Queue[bytes]: ...
    @overload
    def queue(self, name: str, dtype: Any, capacity: int) -> Queue[Any]: ...

    def queue(self, name: str, dtype: Any, capacity: int) -> Queue[Any]:
        """The FIFO queue ``name`` of ``capacity`` elements of ``dtype``,
        created if it does not exist (``TypeError`` if it holds another
        type, ``ValueError`` if it has another capacity). Types as for
        :meth:`array`."""
        return Queue(self, name, "queue", descriptor(dtype), capacity)

    @overload
    def stack(self, name: str, dtype: _t.IntDtype, capacity: int) -> Stack[int]: ...
    @overload
    def stack(self, name: str, dtype: _t.FloatDtype, capacity: int) -> Stack[float]: ...
    @overload
    def stack(self, name: str, dtype: _t.StrDtype, capacity: int) -> Stack[str]: ...
    @overload
    def stack(self, name: str, dtype: _t.BytesDtype, capacity: int) -> Stack[bytes]: ...
    @overload
    def stack(self, name: str, dtype: Any, capacity: int) -> Stack[Any]: ...

    def stack(self, name: str, dtype: Any, capacity: int) -> Stack[Any]:
        """The LIFO stack ``name``, like :meth:`queue`."""
        return Stack(self, name, "stack", descriptor(dtype), capacity)

    # Keys: int, str, bytes (float keys, records: Any); values: int, float,
    # str, bytes, else Any.
    @overload
    def map(self, name: str, key: _t.IntDtype, value: _t.IntDtype,
            capacity: int) -> Map[int, int]: ...
    @overload
    def map(self, name: str, key: _t.IntDtype, value: _t.FloatDtype,
            capacity: int) -> Map[int, float]: ...
    @overload
    def map(self, name: str, key: _t.IntDtype, value: _t.StrDtype,
            capacity: int) -> Map[int, str]: ...
    @overload
    def map(self, name: str, key: _t.IntDtype, value: _t.BytesDtype,
            capacity: int) -> Map[int, bytes]: ...
    @overload
    def map(self, name: str, key: _t.IntDtype, value: Any, capacity: int) -> Map[int, Any]: ...
    @overload
    def map(self, name: str, key: _t.StrDtype, value: _t.IntDtype,
            capacity: int) -> Map[str, int]: ...
    @overload
    def map(self, name: str, key: _t.StrDtype, value: _t.FloatDtype,
            capacity: int) -> Map[str, float]: ...
    @overload
    def map(self, name: str, key: _t.StrDtype, value: _t.StrDtype,
            capacity: int) -> Map[str, str]: ...
    @overload
    def map(self, name: str, key: _t.StrDtype, value: _t.BytesDtype,
            capacity: int) -> Map[str, bytes]: ...
    @overload
    def map(self, name: str, key: _t.StrDtype, value: Any, capacity: int) -> Map[str, Any]: ...
    @overload
    def map(self, name: str, key: _t.BytesDtype, value: _t.IntDtype,
            capacity: int) -> Map[bytes, int]: ...
    @overload
    def map(self, name: str, key: _t.BytesDtype, value: _t.FloatDtype,
            capacity: int) -> Map[bytes, float]: ...
    @overload
    def map(self, name: str, key: _t.BytesDtype, value: _t.StrDtype,
            capacity: int) -> Map[bytes, str]: ...
    @overload
    def map(self, name: str, key: _t.BytesDtype, value: _t.BytesDtype,
            capacity: int) -> Map[bytes, bytes]: ...
    @overload
    def map(self, name: str, key: _t.BytesDtype, value: Any,
            capacity: int) -> Map[bytes, Any]: ...
    @overload
    def map(self, name: str, key: Any, value: Any, capacity: int) -> Map[Any, Any]: ...

    def map(self, name: str, key: Any, value: Any, capacity: int) -> Map[Any, Any]:
        """The map ``name`` from ``key`` to ``value`` holding at most
        ``capacity`` keys, created if it does not exist. Key and value
        types as for :meth:`array`: ``"S<n>"`` means strings of up to n
        UTF-8 bytes (Rust's ``FixedStr<n>``), ``"V<n>"`` exactly n raw
        bytes; other types are numpy dtypes."""
        k, v = descriptor(key), descriptor(value)
        return Map(self, name, k, v, capacity, _map_codecs(k, v))

    @overload
    def set(self, name: str, key: _t.IntDtype, capacity: int) -> Set[int]: ...
    @overload
    def set(self, name: str, key: _t.FloatDtype, capacity: int) -> Set[float]: ...
    @overload
    def set(self, name: str, key: _t.StrDtype, capacity: int) -> Set[str]: ...
    @overload
    def set(self, name: str, key: _t.BytesDtype, capacity: int) -> Set[bytes]: ...
    @overload
    def set(self, name: str, key: Any, capacity: int) -> Set[Any]: ...

    def set(self, name: str, key: Any, capacity: int) -> Set[Any]:
        """The set ``name`` of at most ``capacity`` keys of type ``key``,
        created if it does not exist (``TypeError`` if it holds another key
        type or is not a set, ``ValueError`` if it has another capacity).
        Key types as for :meth:`map`."""
        k = descriptor(key)
        return Set(self, name, k, capacity, _key_codecs(k))

    def channel(self, name: str, capacity: int, max_message: int | None = None,
                spsc: bool = False, checksum: bool = False) -> Channel[Any]:
        """The channel ``name``: a bounded ring of ``capacity`` bytes
        (rounded up to a multiple of 64; each message takes whole 64-byte
        cells, at least one) carrying messages of any size up to
        ``max_message`` bytes (default: the capacity), created if it does
        not exist. ``spsc=True`` makes it single-producer single-consumer
        (faster; one sending and one receiving handle across all
        processes); ``checksum=True`` adds a CRC32C to every message. An
        existing channel must have the stated capacity, spsc and checksum
        (and max_message when given): ``ValueError`` otherwise;
        :meth:`open` takes it as it is."""
        return Channel(self, name, capacity, max_message, spsc, checksum)

    def topic(self, name: str, capacity: int, max_message: int | None = None,
              checksum: bool = False) -> Topic[Any]:
        """The topic ``name``: a broadcast ring of ``capacity`` bytes
        holding the newest messages that fit, each up to ``max_message``
        bytes (default and most: half the capacity), created if it does
        not exist. Every subscriber (:meth:`Topic.subscribe`) sees every
        message, unless it falls more than a ring behind (:class:`Lagged`).
        Shapes are checked as for :meth:`channel`."""
        return Topic(self, name, capacity, max_message, checksum)

    # Coordination primitives (shmds/_coord.py): each opened, or created
    # if it does not exist; an existing one must have the stated shape.

    def lock(self, name: str) -> Lock:
        """The lock ``name`` (a robust :class:`threading.Lock` shared by
        processes), created if it does not exist."""
        return Lock(self, name)

    def rwlock(self, name: str, reader_slots: int = 64) -> RwLock:
        """The readers-writer lock ``name``, where up to ``reader_slots``
        processes hold read locks at once, created if it does not exist."""
        return RwLock(self, name, reader_slots)

    def condition(self, name: str) -> Condition:
        """The condition variable ``name`` (with its own lock), created if
        it does not exist."""
        return Condition(self, name)

    def semaphore(self, name: str, value: int = 1) -> Semaphore:
        """The semaphore ``name`` starting with ``value`` permits, created if
        it does not exist (``TypeError`` if it is a bounded one)."""
        return Semaphore(self, name, value)

    def bounded_semaphore(self, name: str, value: int = 1) -> BoundedSemaphore:
        """The bounded semaphore ``name`` (never more than ``value``
        permits), created if it does not exist."""
        return BoundedSemaphore(self, name, value)

    def barrier(self, name: str, parties: int) -> Barrier:
        """The barrier ``name`` for ``parties`` waiters, created if it does
        not exist."""
        return Barrier(self, name, parties)

    def event(self, name: str) -> Event:
        """The event ``name``, created (clear) if it does not exist."""
        return Event(self, name)

    def latch(self, name: str, count: int) -> Latch:
        """The latch ``name`` opening after ``count`` count-downs, created if
        it does not exist."""
        return Latch(self, name, count)

    def once(self, name: str) -> Once:
        """The run-once cell ``name``, created if it does not exist."""
        return Once(self, name)

    def open(self, name: str) -> (Array[Any] | Queue[Any] | Stack[Any] | Map[Any, Any] | Set[Any]
                                  | Channel[Any] | Topic[Any] | Lock | RwLock | Condition
                                  | Semaphore | Barrier | Event | Latch | Once):
        """Open the structure ``name`` with the kind and types recorded in
        the table (``KeyError`` if there is none).

        The result is a union of every kind for a type checker. When the
        kind is known, the typed accessors return it without narrowing:
        :meth:`open_array`, :meth:`open_queue`, :meth:`open_stack`,
        :meth:`open_map`, :meth:`open_set`, :meth:`open_channel`,
        :meth:`open_topic`, :meth:`open_lock`, :meth:`open_rwlock`,
        :meth:`open_condition`, :meth:`open_semaphore`,
        :meth:`open_barrier`, :meth:`open_event`, :meth:`open_latch` and
        :meth:`open_once` open ``name`` as this does, and raise
        ``TypeError`` if it is another kind. Their element types are
        ``Any``: annotate the variable to state them
        (``jobs: shmds.Queue[int] = seg.open_queue("jobs")``)."""
        for e in self.entries():
            if e.name == name:
                if e.kind == "array":
                    return Array(self, name)
                if e.kind == "channel":
                    return Channel(self, name)
                if e.kind == "topic":
                    return Topic(self, name)
                if e.kind in ("queue", "stack"):
                    cls = Queue if e.kind == "queue" else Stack
                    return cls(self, name, e.kind, e.type)
                if e.kind == "map":
                    return Map(self, name, None, None, None, _map_codecs(e.key_type, e.type))
                if e.kind == "set":
                    return Set(self, name, None, None, _key_codecs(e.key_type))
                if e.kind in _coord.KINDS:
                    return _coord.open_kind(self, name, e.kind)
                raise TypeError(f"{name!r} is a {e.kind}, which this package cannot open")
        raise KeyError(f"segment {self.name!r} has no structure {name!r}")

    def _open_as(self, name: str, cls: type[_H]) -> _H:
        """:meth:`open` ``name``, which must be of the kind of ``cls``."""
        handle = self.open(name)
        kind, wanted = _KIND_OF[type(handle)], _KIND_OF[cls]
        if isinstance(handle, cls) and kind == wanted:
            return handle
        handle.close()
        raise TypeError(f"{name!r} is {_A_KIND[kind]}, not {_A_KIND[wanted]}")

    # The typed accessors (see open).

    def open_array(self, name: str) -> Array[Any]:
        """The existing array ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Array)

    def open_queue(self, name: str) -> Queue[Any]:
        """The existing queue ``name`` (:meth:`open`; ``TypeError`` for another kind,
        a stack included)."""
        return self._open_as(name, Queue)

    def open_stack(self, name: str) -> Stack[Any]:
        """The existing stack ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Stack)

    def open_map(self, name: str) -> Map[Any, Any]:
        """The existing map ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Map)

    def open_set(self, name: str) -> Set[Any]:
        """The existing set ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Set)

    def open_channel(self, name: str) -> Channel[Any]:
        """The existing channel ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Channel)

    def open_topic(self, name: str) -> Topic[Any]:
        """The existing topic ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Topic)

    def open_lock(self, name: str) -> Lock:
        """The existing lock ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Lock)

    def open_rwlock(self, name: str) -> RwLock:
        """The existing readers-writer lock ``name`` (:meth:`open`; ``TypeError``
        for another kind)."""
        return self._open_as(name, RwLock)

    def open_condition(self, name: str) -> Condition:
        """The existing condition ``name`` (:meth:`open`; ``TypeError`` for
        another kind)."""
        return self._open_as(name, Condition)

    def open_semaphore(self, name: str) -> Semaphore:
        """The existing semaphore ``name``, a :class:`BoundedSemaphore` if it
        is bounded (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Semaphore)

    def open_barrier(self, name: str) -> Barrier:
        """The existing barrier ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Barrier)

    def open_event(self, name: str) -> Event:
        """The existing event ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Event)

    def open_latch(self, name: str) -> Latch:
        """The existing latch ``name`` (:meth:`open`; ``TypeError`` for another kind)."""
        return self._open_as(name, Latch)

    def open_once(self, name: str) -> Once:
        """The existing run-once cell ``name`` (:meth:`open`; ``TypeError`` for
        another kind)."""
        return self._open_as(name, Once)

    def entries(self) -> list[EntryInfo]:
        """The table: name, kind, type, key type, capacity, bytes and fill."""
        return [EntryInfo(*e) for e in self._entries()]

    @property
    def attachers(self) -> list[Attacher]:
        """The processes recorded as attached, live or dead (this one
        included)."""
        return [Attacher(*a) for a in self._attachers()]

    @property
    def heap(self) -> HeapStats:
        """The heap's figures (sizes, used and free bytes and blocks,
        fragmentation)."""
        return HeapStats(*self._heap())


def _attach_segment(name: str) -> Segment:
    return Segment(name, create=False)


class Store(_shmds.Store):
    """A snapshot store: a directory of consistent copies of segments.

    ``Store(path)`` opens the store in the directory ``path`` (a ``str`` or
    :class:`os.PathLike`), creating it if the directory is missing or empty
    (``ValueError`` for a non-empty directory that is not a store). Images
    are cut into 64 KiB chunks stored once each under ``chunks/``, named by
    their BLAKE3 hash, so a snapshot of a segment that barely changed
    writes only its new chunks (:attr:`SnapshotInfo.new_chunks`); each
    snapshot is a manifest under ``snapshots/``, named by its id (a root
    hash, 64 hex digits). Every call that takes a ``snapshot_id`` takes a
    unique prefix of 4 or more hex digits too; an id that matches no
    snapshot raises ``FileNotFoundError``, one that is not 4 to 64 hex
    digits (or matches several) ``ValueError``.

    - :meth:`snapshot` (or :meth:`Segment.snapshot`): pauses the segment's
      other processes (SIGSTOP) while its bytes are copied, so the copy is
      what a crash of all of them at that instant would leave; returns a
      :class:`SnapshotInfo`;
    - :meth:`restore`: a new segment (``/dev/shm`` name or file path) with
      the snapshot's contents, every chunk re-hashed as it is read
      (:class:`CorruptError` for a damaged one);
    - :meth:`snapshots`, :meth:`resolve`, :meth:`diff` (a list of
      :class:`EntryChange`), :meth:`verify` (a :class:`VerifyReport`),
      :meth:`remove` and :meth:`gc` (a :class:`GcReport`).

    The calls run without the GIL.
    """

    def restore(self, snapshot_id: str, name: str | os.PathLike[str]) -> Segment:
        """Restore snapshot ``snapshot_id`` (an id or unique prefix) as the
        new segment ``name`` (``FileExistsError`` if it exists; a file path
        makes a durable segment) and return it, open. The snapshot's claims
        (locks held, elements half-written at the instant it was taken) are
        taken over by each structure's crash recovery, as after a crash of
        the processes it paused."""
        return Segment(name, _snapshot=(self, snapshot_id))

    def __repr__(self) -> str:
        return f"<shmds.Store {os.fspath(self.path)!r}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Store, (os.fspath(self.path),))


def _attach(segment: str, name: str) -> Any:
    return Segment(segment, create=False).open(name)


def _native(desc: str) -> bool:
    """Whether the native layer converts elements of ``desc`` itself."""
    try:
        return _kind(desc) in ("number", "str", "bytes")
    except Exception:
        return False


def _key_codecs(desc: str) -> tuple[Any, Any]:
    """The encode/decode functions the native layer needs for ``desc``
    (None, None when it converts such elements itself)."""
    return (None, None) if _native(desc) else _codec(desc)


def _map_codecs(key: str, value: str) -> tuple[Any, Any, Any, Any]:
    return (*_key_codecs(key), *_key_codecs(value))


def _is_index(index: Any) -> bool:
    """Whether ``index`` picks one element (an int, not a slice)."""
    return isinstance(index, (int, np.integer)) and not isinstance(index, bool)


def _attach_array(segment: str, name: str) -> Array[Any]:
    return Array(Segment(segment, create=False), name)


class Array(_shmds.Array, Generic[T]):
    """A fixed-length array in shared memory, made (or opened) by
    :meth:`Segment.array` or :meth:`Segment.open_array`. (The constructor,
    ``Array(segment, name, descriptor=None, length=None)``, takes a shmds
    type descriptor, not a dtype: see :func:`descriptor`.)

    ``T`` is what ``arr[i]`` reads: the numpy scalar of the element type
    (``Array[np.uint64]`` for ``"<u8"``, ``Array[np.float32]`` for
    ``"<f4"``), ``str`` for ``"S<n>"``, ``bytes`` for ``"V<n>"``; ``Any``
    for records and sub-arrays.

    It supports the buffer protocol: :meth:`numpy` (and
    ``numpy.asarray(arr)``) is a zero-copy view of the shared bytes (a
    structured array for record types and strings, ``V<n>`` for raw bytes:
    README, "Strings and bytes"). ``arr[i]`` of a string or raw-bytes array
    is a ``str`` or ``bytes``; other indexing and slicing go through the
    view. Writes convert as a queue ``put`` does, element by element for a
    slice (a float into an integer array is a ``TypeError``, an integer out
    of range an ``OverflowError``). ``close()`` raises ``BufferError`` while
    views exist.
    """

    def numpy(self) -> np.ndarray:
        """A zero-copy numpy view of the whole array, of :attr:`dtype`."""
        # Through memoryview, so that a failure (a stale or closed handle)
        # raises its own error instead of numpy falling back to iteration.
        view = np.asarray(memoryview(self))
        dt = dtype_of(self.descriptor)
        if dt.subdtype is not None:
            dt = dt.subdtype[0]  # numpy makes sub-arrays extra dimensions
        # The buffer's format says "<n>s" (bytes), which numpy reads as S<n>
        # and would strip of trailing NULs: view it as V<n>, every byte kept.
        return view if view.dtype == dt else view.view(dt)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        view = self.numpy()
        return view if dtype is None else view.astype(dtype, copy=bool(copy))

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of :meth:`numpy` (for sub-array elements, their
        base type: numpy makes the shape extra dimensions)."""
        return self.numpy().dtype

    @overload
    def __getitem__(self, index: SupportsIndex) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: _Indexes) -> Any: ...

    def __getitem__(self, index: Any) -> Any:
        if _kind(self.descriptor) in ("str", "bytes") and _is_index(index):
            return self._get(index)  # str, or exactly itemsize bytes
        return self.numpy()[index]

    # One element: an integer array takes ints (Python or numpy), a float
    # array any real number, others their T; slices and the like anything
    # numpy converts (checked at run time).
    @overload
    def __setitem__(self: Array[_I], index: SupportsIndex,
                    value: int | np.integer[Any]) -> None: ...
    @overload
    def __setitem__(self: Array[_F], index: SupportsIndex,
                    value: float | np.integer[Any] | np.floating[Any]) -> None: ...
    @overload
    def __setitem__(self, index: SupportsIndex, value: T) -> None: ...
    @overload
    def __setitem__(self, index: _Indexes, value: Any) -> None: ...

    def __setitem__(self, index: Any, value: Any) -> None:
        # Converted by the rules of a queue put, one element or many.
        desc = self.descriptor
        kind = _kind(desc)
        if kind in ("number", "str", "bytes") and _is_index(index):
            self._set(index, value)
            return
        view = self.numpy()
        if kind == "record":
            view[index] = value
            return
        if kind == "subarray":
            view[index] = _sub_array(value, view.dtype)  # numpy checks the shape
            return
        view[index] = np.frombuffer(_pack_elements(desc, value), dtype=view.dtype)

    def __iter__(self) -> Iterator[T]:
        if _kind(self.descriptor) in ("str", "bytes"):
            return (self._get(i) for i in range(len(self)))
        return iter(self.numpy())

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Array (closed)>"
        try:
            size = len(self)
        except StaleError:
            return f"<shmds.Array {self.name!r} (erased)>"
        return f"<shmds.Array {self.name!r} type={self.descriptor!r} len={size}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach_array, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Queue(_shmds.Queue, Generic[T]):
    """A bounded FIFO queue in shared memory with the :class:`queue.Queue`
    methods: ``put``/``get`` (``block=True, timeout=None``: ``None`` waits
    forever; Ctrl-C interrupts the wait), ``put_nowait``/``get_nowait``,
    ``qsize``/``empty``/``full`` (approximate), raising :class:`queue.Full`
    and :class:`queue.Empty`. ``put_many``/``get_many`` move numpy arrays
    in one call. The ``_nowait`` forms never wait for another process: one
    that holds the next position (a stack: the whole stack) for longer than
    a short spin, say because it was preempted, makes them raise
    :class:`queue.Full`/:class:`queue.Empty` too; ``put``/``get`` wait.

    Across processes, as in Python 3.13's :class:`queue.Queue`:
    :meth:`shutdown` (then ``put`` raises :class:`ShutDown`, ``get`` drains
    what is left and then raises it), and :meth:`task_done`/:meth:`join`.
    Every ``get`` from a queue (``get``, ``get_nowait``, ``get_many``, their
    ``_async`` forms, in any process) takes an unfinished task, which
    :meth:`task_done` marks done; :meth:`join` waits until the queue is
    empty and no task is unfinished. Elements taken by Rust or C pops do not
    count (they are done at once).

    Each blocking call has an awaitable form (``get_async``, ``put_async``,
    ``get_many_async``, ``put_many_async``, ``join_async``) that tries first
    without blocking, then waits in a worker thread without ever taking an
    element it could lose: cancelling it (``asyncio.wait_for``, ``asyncio.
    timeout``) wakes the worker at once and leaves no thread behind.

    :meth:`close` drops this handle; calls blocked on it in other threads
    of this process wake up and raise :class:`ValueError`.

    Make (or open) one with :meth:`Segment.queue` or
    :meth:`Segment.open_queue`; ``T`` is the type of one element
    (``Queue[int]`` for ``"<u8"``: Python ints in and out). (The
    constructor, ``Queue(segment, name, kind, desc=None, capacity=None)``
    with ``kind`` ``"queue"`` or ``"stack"``, takes a shmds type descriptor,
    not a dtype: see :func:`descriptor`.)
    """

    def __new__(cls, segment: Segment, name: str, kind: str, desc: str | None = None,
                capacity: int | None = None) -> Self:
        if desc is None:
            for e in segment.entries():
                if e.name == name:
                    desc = e.type
        codec = (None, None) if desc is None or _native(desc) else _codec(desc)
        return super().__new__(cls, segment, name, kind, desc if capacity is not None else None,
                               capacity, *codec)

    if TYPE_CHECKING:
        # The native methods, with the element type (the constructor is
        # __new__'s, above).
        def put(self, item: T, block: bool = True, timeout: float | None = None) -> None: ...
        def put_nowait(self, item: T) -> None: ...
        def get(self, block: bool = True, timeout: float | None = None) -> T: ...
        def get_nowait(self) -> T: ...
    else:
        def __init__(self, *args, **kwargs):
            pass

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the elements."""
        return dtype_of(self.descriptor)

    def put_many(self, items: Any, block: bool = True, timeout: float | None = None) -> int:
        """Put every element of ``items`` (a sequence or ndarray) in order,
        each converted as :meth:`put` converts one (nothing is put when one
        fails); returns how many were put: all, unless the wait timed out,
        ``block`` is false and the queue filled up, or it was shut down
        after some were put (with none put, :class:`ShutDown` is raised)."""
        data = _pack_elements(self.descriptor, items)
        return self._put_bytes(memoryview(data).cast("B"), block, timeout)

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> np.ndarray:
        """Take up to ``n`` elements as a numpy array, waiting (like
        :meth:`get`) for the first; raises :class:`queue.Empty` when none
        came (:class:`ShutDown` when none is left after a shutdown)."""
        out = np.empty(n, dtype=self.dtype)
        if n == 0:
            return out
        got = self._get_into(out.data.cast("B"), block, timeout)
        if got == 0:
            raise queue.Empty(f"{self.name} is empty")
        return out[:got]

    async def get_async(self, timeout: float | None = None) -> T:
        """``await`` form of :meth:`get`: an element, waiting up to
        ``timeout`` seconds (None: as long as it takes) without blocking
        the event loop; :class:`queue.Empty` once ``timeout`` passed,
        :class:`ShutDown` as for :meth:`get`. Cancellable: a cancelled call
        took nothing."""
        return await _aio.retry(self.get_nowait, queue.Empty, self._wait_get, self._wake,
                                timeout)

    async def put_async(self, item: T, timeout: float | None = None) -> None:
        """``await`` form of :meth:`put`: :class:`queue.Full` once
        ``timeout`` passed without room; cancellable (a cancelled call put
        nothing)."""
        await _aio.retry(lambda: self.put_nowait(item), queue.Full, self._wait_put, self._wake,
                         timeout)

    async def get_many_async(self, n: int, timeout: float | None = None) -> np.ndarray:
        """``await`` form of :meth:`get_many`: up to ``n`` elements, waiting
        for the first; :class:`queue.Empty` once ``timeout`` passed."""
        return await _aio.retry(lambda: self.get_many(n, block=False), queue.Empty,
                                self._wait_get, self._wake, timeout)

    async def put_many_async(self, items: Any, timeout: float | None = None) -> int:
        """``await`` form of :meth:`put_many`: puts the elements in order as
        room appears; returns how many were put (all, unless ``timeout``
        passed or the queue was shut down after some were put). Cancelling
        it stops it; the elements put until then stay put."""
        data = memoryview(_pack_elements(self.descriptor, items)).cast("B")
        size, total, done = self.itemsize, len(data) // self.itemsize, 0
        timeout = _aio.check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                done += self._put_bytes(data[done * size:], False)
            except ShutDown:
                if done == 0:
                    raise
                return done
            left = None if deadline is None else deadline - time.monotonic()
            if done == total or (left is not None and left <= 0):
                return done
            await _aio.in_thread(self._wait_put, self._wake, left)

    async def join_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`join`: True once the queue is empty and
        every task taken was marked done, False if ``timeout`` passed."""
        _aio.check_timeout(timeout)
        return await _aio.in_thread(self._join, self._wake, timeout)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmds.{type(self).__name__} (closed)>"
        try:
            size = self.qsize()
        except StaleError:
            return f"<shmds.{type(self).__name__} {self.name!r} (erased)>"
        shut = " (shut down)" if self.is_shutdown else ""
        return (f"<shmds.{type(self).__name__} {self.name!r} type={self.descriptor!r} "
                f"size={size}/{self.maxsize}{shut}>")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stack(Queue[T]):
    """A bounded LIFO stack in shared memory: the :class:`Queue` methods
    (like :class:`queue.LifoQueue`), taking the newest element first,
    including the ``_async`` forms and :meth:`shutdown`. A stack does not
    count tasks: ``task_done``, ``join``, ``join_async`` and
    ``unfinished_tasks`` raise :class:`TypeError`. Make (or open) one with
    :meth:`Segment.stack` or :meth:`Segment.open_stack`."""


class Map(_shmds.Map, MutableMapping[K, V]):
    """A fixed-capacity hash map in shared memory, a
    :class:`collections.abc.MutableMapping`: ``m[k]``, ``m[k] = v``,
    ``del m[k]``, ``in``, ``len``, ``get``, ``pop``, ``setdefault``,
    ``update``, ``items()``... plus ``fetch_add`` and ``compare_exchange``
    for integer values. ``keys()``, ``values()`` and ``items()`` are lists
    taken in one pass (a key present throughout appears exactly once).
    Raises :class:`NoSpaceError` when a new key finds the map full.

    Make (or open) one with :meth:`Segment.map` or :meth:`Segment.open_map`;
    ``Map[str, float]`` maps ``"S<n>"`` keys to ``"<f8"`` values. (The
    constructor, ``Map(segment, name, key=None, value=None, capacity=None,
    codecs=None)``, takes shmds type descriptors and internal codecs.)
    """

    if TYPE_CHECKING:
        # The native methods, with the key and value types.
        def __getitem__(self, key: K) -> V: ...
        def __setitem__(self, key: K, value: V) -> None: ...
        def __delitem__(self, key: K) -> None: ...
        def __contains__(self, key: object) -> bool: ...
        @overload
        def get(self, key: K, default: None = None) -> V | None: ...
        @overload
        def get(self, key: K, default: V) -> V: ...
        @overload
        def get(self, key: K, default: _D) -> V | _D: ...
        def get(self, key: K, default: Any = None) -> Any: ...
        @overload
        def pop(self, key: K, /) -> V: ...
        @overload
        def pop(self, key: K, default: V, /) -> V: ...
        @overload
        def pop(self, key: K, default: _D, /) -> V | _D: ...
        def pop(self, key: K, *default: Any) -> Any: ...
        def setdefault(self, key: K, default: V) -> V: ...  # the default is required
        def fetch_add(self, key: K, delta: int | None = None) -> int: ...
        def compare_exchange(self, key: K, current: int, new: int) -> int: ...
    else:
        def __init__(self, *args, **kwargs):
            pass

    def __iter__(self) -> Iterator[K]:
        return iter([k for k, _ in self._items()])

    def items(self) -> list[tuple[K, V]]:  # type: ignore[override]
        return self._items()

    def keys(self) -> list[K]:  # type: ignore[override]
        return [k for k, _ in self._items()]

    def values(self) -> list[V]:  # type: ignore[override]
        return [v for _, v in self._items()]

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Map (closed)>"
        try:
            size = len(self)
        except StaleError:
            return f"<shmds.Map {self.name!r} (erased)>"
        return (f"<shmds.Map {self.name!r} key={self.key_descriptor!r} "
                f"value={self.value_descriptor!r} len={size}/{self.capacity}>")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Set(_shmds.Set, MutableSet[K]):
    """A fixed-capacity set of keys in shared memory (the :class:`Map`'s
    sibling, with the same key types), a
    :class:`collections.abc.MutableSet`: ``add``, ``discard``, ``remove``
    (``KeyError`` when absent), ``in``, ``len``, iteration, ``pop``,
    ``clear``, plus ``insert`` (whether the key was new) and the mixin
    operators (``s <= t``, ``s == t``, ``s |= t``...; ``s | t``, ``s & t``,
    ``s - t`` and ``s ^ t`` return a builtin :class:`set`). Iteration goes
    over a list taken in one pass (a key present throughout appears exactly
    once). Raises :class:`NoSpaceError` when a new key finds the set full.

    Make (or open) one with :meth:`Segment.set` or :meth:`Segment.open_set`;
    ``Set[int]`` holds ``"<u8"`` keys. (The constructor, ``Set(segment,
    name, key=None, capacity=None, codecs=None)``, takes a shmds type
    descriptor and internal codecs.)
    """

    if TYPE_CHECKING:
        # The native methods, with the key type.
        def insert(self, key: K) -> bool: ...
        def add(self, key: K) -> None: ...
        def discard(self, key: K) -> None: ...
        def remove(self, key: K) -> None: ...
        def pop(self) -> K: ...
        def __contains__(self, key: object) -> bool: ...
    else:
        def __init__(self, *args, **kwargs):
            pass

    def __iter__(self) -> Iterator[K]:
        return iter(self._keys())

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> set[Any]:
        # The results of s | t and the like live in this process.
        return set(it)

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Set (closed)>"
        try:
            size = len(self)
        except StaleError:
            return f"<shmds.Set {self.name!r} (erased)>"
        return (f"<shmds.Set {self.name!r} key={self.key_descriptor!r} "
                f"len={size}/{self.capacity}>")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Objects in messages (Channel.put, Topic.put): a pickle (protocol 5), or,
# when the object has buffers (numpy arrays...), the pickle with those
# buffers out of band, each copied once, straight into the ring, and read
# back by get() into a bytearray of its own (so the arrays are writable and
# own their memory). The framing (shmds-py/src/pickled.rs reads it):
# b"\0OOB", u32 buffer count n, u64 pickle length, n u64 buffer lengths,
# the pickle, then each buffer at the next multiple of 64 bytes.
_OOB_MAGIC = b"\0OOB"


def _pickle_parts(obj: Any) -> tuple[bytes, list[Any] | None]:
    """``obj`` as a message: ``(pickle, None)``, or ``(pickle, parts)``
    whose concatenation is the framed message."""
    oob: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, 5, buffer_callback=oob.append)
    if not oob:
        return data, None
    try:
        raws = [buf.raw() for buf in oob]
    except BufferError:  # a buffer neither C- nor Fortran-contiguous
        return pickle.dumps(obj, 5), None
    n = len(raws)
    parts: list[Any] = [struct.pack(f"<4sIQ{n}Q", _OOB_MAGIC, n, len(data),
                                    *(raw.nbytes for raw in raws)), data]
    at = 16 + 8 * n + len(data)
    for raw in raws:
        pad = -at % 64
        if pad:
            parts.append(bytes(pad))
        parts.append(raw)
        at += pad + raw.nbytes
    return data, parts


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Channel(_shmds.Channel, Generic[T]):
    """A bounded channel of variable-length messages in shared memory,
    shared by any number of processes; each message goes to one receiver.

    Objects (a drop-in for :class:`multiprocessing.Queue`): ``put(obj,
    block=True, timeout=None)`` / ``get(...)`` pickle with protocol 5
    (``None`` waits forever, without the GIL; Ctrl-C interrupts),
    ``put_nowait``/``get_nowait``, ``qsize``/``empty``/``full``
    (approximate), ``put_many``/``get_many``, ``close``, raising
    :class:`queue.Full` / :class:`queue.Empty`. Bytes: ``send(data)`` (any
    bytes-like object), ``recv() -> bytes``, ``recv_into(buffer)`` and
    ``recv_view()``, a zero-copy view of the message in the ring.

    The end of the stream: once every sender is gone (``close()``d, or its
    process exited) and the channel is drained, receives raise
    :class:`Disconnected` (an ``EOFError``); once every receiver is gone,
    a send that finds the channel full raises it. ``shutdown()`` stops the
    channel for every process: sends raise :class:`ShutDown`, receives get
    what is left, then raise it.

    Attachment is lazy and per handle: the first send attaches this handle
    as a sender, the first receive as a receiver (threads share them). On
    an SPSC channel only one handle across all processes may send, and one
    receive (:class:`AlreadyAttachedError` for a second; ``close()`` the
    first to hand over).

    Make (or open) one with :meth:`Segment.channel` or
    :meth:`Segment.open_channel` (the constructor, ``Channel(segment, name,
    capacity=None, max_message=None, spsc=None, checksum=None)``, opens
    when ``capacity`` is None). ``T`` is the type of the objects of
    ``put``/``get``: ``Any`` unless stated
    (``events: shmds.Channel[dict[str, int]] = seg.channel(...)``).
    """

    if TYPE_CHECKING:
        # The native methods, with the object type.
        def get(self, block: bool = True, timeout: float | None = None) -> T: ...
        def get_nowait(self) -> T: ...
    else:
        def __init__(self, *args, **kwargs):
            pass

    async def recv_async(self, timeout: float | None = None) -> bytes:
        """``await`` form of :meth:`recv`: the next message, waiting up to
        ``timeout`` seconds (None: as long as it takes) without blocking
        the event loop; :class:`queue.Empty` once ``timeout`` passed,
        :class:`Disconnected` / :class:`ShutDown` as for :meth:`recv`.
        Cancellable: a cancelled call took nothing."""
        return await _aio.retry(lambda: self.recv(block=False), queue.Empty,
                                self._wait_recv, self._wake, timeout)

    async def get_async(self, timeout: float | None = None) -> T:
        """``await`` form of :meth:`get` (as :meth:`recv_async`)."""
        return await _aio.retry(lambda: self.get(block=False), queue.Empty,
                                self._wait_recv, self._wake, timeout)

    async def send_async(self, data: Buffer, timeout: float | None = None) -> None:
        """``await`` form of :meth:`send`: :class:`queue.Full` once
        ``timeout`` passed without room; cancellable (a cancelled call sent
        nothing)."""
        n = memoryview(data).nbytes
        await _aio.retry(lambda: self.send(data, block=False), queue.Full,
                         lambda left, cancel: self._wait_send(n, left, cancel),
                         self._wake, timeout)

    async def join_async(self, timeout: float | None = None) -> bool:
        """``await`` form of :meth:`join`; cancellable."""
        return await _aio.in_thread(self.join, self._wake, timeout)

    async def put_async(self, obj: T, timeout: float | None = None) -> None:
        """``await`` form of :meth:`put` (as :meth:`send_async`)."""
        await _aio.retry(lambda: self.put(obj, block=False), queue.Full,
                         lambda left, cancel: self._wait_send(0, left, cancel),
                         self._wake, timeout)

    def put(self, obj: T, block: bool = True, timeout: float | None = None) -> None:
        """Send ``obj`` pickled (protocol 5; buffers such as numpy
        arrays out of band, copied once into the ring); waits for room like
        :meth:`send`. ``MessageTooLargeError`` (a ``ValueError``) when the
        pickle is larger than :attr:`max_message`."""
        data, parts = _pickle_parts(obj)
        if parts is None:
            self.send(data, block, timeout)
        else:
            self._send_parts(parts, block, timeout)

    def put_nowait(self, obj: T) -> None:
        """``put(obj, block=False)``."""
        self.put(obj, False)

    def put_many(self, items: Iterable[T], block: bool = True,
                 timeout: float | None = None) -> int:
        """Put every object of ``items`` in order (all are pickled first:
        nothing is sent when one fails to pickle); returns how many were
        put: all, unless the wait timed out (``timeout`` is for the whole
        batch) or ``block`` is false and the channel filled up."""
        messages = [_pickle_parts(obj) for obj in items]
        deadline = None if timeout is None or not block else time.monotonic() + timeout
        for n, (data, parts) in enumerate(messages):
            left = timeout if n == 0 else _remaining(deadline)
            try:
                if parts is None:
                    self.send(data, block, left)
                else:
                    self._send_parts(parts, block, left)
            except queue.Full:
                return n
        return len(messages)

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> list[T]:
        """Up to ``n`` objects: waits (like :meth:`get`) for the first,
        then takes what is there without waiting. Raises
        :class:`queue.Empty` when none came."""
        if n <= 0:
            return []
        out = [self.get(block, timeout)]
        while len(out) < n:
            try:
                out.append(self.get_nowait())
            except (queue.Empty, Disconnected, ShutDown):
                break
        return out

    def join_thread(self) -> None:
        """Nothing to do (for :class:`multiprocessing.Queue` code): ``put``
        writes into shared memory before it returns; there is no feeder
        thread."""

    def cancel_join_thread(self) -> None:
        """Nothing to do, as :meth:`join_thread`."""

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Channel (closed)>"
        kind = "spsc" if self.spsc else "mpmc"
        return (f"<shmds.Channel {self.name!r} {kind} messages={self.qsize()} "
                f"capacity={self.capacity} max_message={self.max_message}>")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles as "attach to this channel by name" (no attachment moves).
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Topic(_shmds.Topic, Generic[T]):
    """A broadcast topic in shared memory: ``publish(data) -> seq`` sends
    bytes (``put(obj)`` a pickled object) to every subscriber, never
    waiting for them; ``subscribe()`` gives a :class:`Subscriber` with
    ``recv``/``get(block=True, timeout=None)`` (``queue.Empty`` when
    nothing came). A subscriber that falls more than the topic holds behind
    gets :class:`Lagged` (``.missed`` messages) and goes on with the oldest
    message held. ``latest()`` reads the newest message.

    Make (or open) one with :meth:`Segment.topic` or
    :meth:`Segment.open_topic` (the constructor, ``Topic(segment, name,
    capacity=None, max_message=None, checksum=None)``, opens when
    ``capacity`` is None). ``T`` is the type of the objects of ``put``
    (``Any`` unless stated); subscribers' ``get`` returns ``Any``.
    """

    if not TYPE_CHECKING:
        def __init__(self, *args, **kwargs):
            pass

    def put(self, obj: T) -> int:
        """Publish ``obj`` pickled (as :meth:`Channel.put`); returns its
        sequence number."""
        data, parts = _pickle_parts(obj)
        if parts is None:
            return self.publish(data)
        return self._publish_parts(parts)

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Topic (closed)>"
        return (f"<shmds.Topic {self.name!r} messages={len(self)} published={self.published} "
                f"capacity={self.capacity} max_message={self.max_message}>")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Segment.open_<kind>: the table's kind of each handle class, and how the
# errors name it.
_KIND_OF: dict[type, str] = {
    Array: "array", Queue: "queue", Stack: "stack", Map: "map", Set: "set",
    Channel: "channel", Topic: "topic", Lock: "lock", RwLock: "rwlock",
    Condition: "condition", Semaphore: "semaphore", BoundedSemaphore: "semaphore",
    Barrier: "barrier", Event: "event", Latch: "latch", Once: "once",
}
_A_KIND = {
    "array": "an array", "queue": "a queue", "stack": "a stack", "map": "a map",
    "set": "a set", "channel": "a channel", "topic": "a topic", "lock": "a lock",
    "rwlock": "a readers-writer lock", "condition": "a condition variable",
    "semaphore": "a semaphore", "barrier": "a barrier", "event": "an event",
    "latch": "a latch", "once": "a run-once cell",
}
