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

    other = shmds.Segment("sensors", create=False)           # attach by name
    t = other.open("temps")                                  # type from the table
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from typing import Any, Iterator, NamedTuple

import numpy as np

from . import _shmds
from ._shmds import (
    BusyError,
    CorruptError,
    IncompatibleError,
    NoSpaceError,
    NotReadyError,
    ShmdsError,
    StaleError,
    list_segments,
    remove,
)

__all__ = [
    "Array",
    "Map",
    "Queue",
    "Stack",
    "BusyError",
    "CorruptError",
    "EntryInfo",
    "IncompatibleError",
    "NoSpaceError",
    "NotReadyError",
    "Segment",
    "ShmdsError",
    "StaleError",
    "descriptor",
    "dtype_of",
    "list_segments",
    "remove",
]

_CODES = {
    ("u", 1): "B",
    ("i", 1): "b",
    ("u", 2): "H",
    ("i", 2): "h",
    ("u", 4): "I",
    ("i", 4): "i",
    ("u", 8): "Q",
    ("i", 8): "q",
    ("f", 4): "f",
    ("f", 8): "d",
}


def descriptor(dtype: Any) -> str:
    """The shmds type descriptor (a PEP 3118 format, as Rust and C write it)
    of a numpy dtype: ``"<f4"`` gives ``"<f"``, ``"S16"`` gives ``"16s"``,
    ``[("ts", "<u8"), ("price", "<f8")]`` gives ``"T{<Q:ts:<d:price:}"``.

    Raises ``ValueError`` for dtypes shmds cannot share (objects, strings of
    code points, datetimes, booleans, complex numbers).
    """
    dt = np.dtype(dtype)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return "(" + ",".join(str(n) for n in shape) + ")" + descriptor(base)
    if dt.names is not None:
        fields = sorted(
            ((info[1], name, info[0]) for name, info in dt.fields.items()),
            key=lambda f: f[0],
        )
        out, cursor = [], 0
        for offset, name, fdt in fields:
            if offset > cursor:
                out.append(f"{offset - cursor}x")
            out.append(f"{descriptor(fdt)}:{name}:")
            cursor = offset + fdt.itemsize
        if dt.itemsize > cursor:
            out.append(f"{dt.itemsize - cursor}x")
        return "T{" + "".join(out) + "}"
    if dt.kind == "S" or (dt.kind == "V" and dt.itemsize > 0):
        return f"{dt.itemsize}s"
    code = _CODES.get((dt.kind, dt.itemsize))
    if code is None:
        raise ValueError(f"shmds cannot store numpy dtype {dt!r}")
    if dt.itemsize == 1:
        return code
    big = dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder == "big")
    return (">" if big else "<") + code


_FIXED_STR = re.compile(r"T\{B:len:(\d+)s:bytes:\}")


def _map_descriptor(spec: Any) -> str:
    """A map key or value type: ``"S<n>"`` is a string of up to n UTF-8
    bytes (Rust's ``FixedStr<n>``); anything else is a numpy dtype."""
    if isinstance(spec, str):
        m = re.fullmatch(r"S(\d+)", spec)
        if m:
            n = int(m.group(1))
            if not 1 <= n <= 255:
                raise ValueError(f"string keys and values hold 1 to 255 bytes, not {n}")
            return f"T{{B:len:{n}s:bytes:}}"
    return descriptor(spec)


def dtype_of(desc: str) -> np.dtype:
    """The numpy dtype for a shmds type descriptor (the inverse of
    :func:`descriptor`). Strings (``FixedStr``) come out as their record of
    a length byte and the bytes."""
    try:
        from numpy._core._internal import _dtype_from_pep3118  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core._internal import _dtype_from_pep3118
    return _dtype_from_pep3118(desc)


def _codec(desc: str) -> tuple[Any, Any]:
    """Encode/decode functions for elements the native layer does not
    convert itself (records, byte strings): through numpy."""
    dt = dtype_of(desc)

    def encode(value: Any) -> bytes:
        return np.asarray(value, dtype=dt).tobytes()

    def decode(data: bytes) -> Any:
        return np.frombuffer(data, dtype=dt)[0]

    return encode, decode


class EntryInfo(NamedTuple):
    """One structure in a segment's table."""

    name: str
    kind: str
    type: str
    key_type: str
    capacity: int
    bytes: int
    fill: int | None


class Segment(_shmds.Segment):
    """A named shared memory segment.

    ``Segment(name, size)`` opens the segment or creates it with ``size``
    bytes; ``create=True`` only creates (``FileExistsError`` if it exists),
    ``create=False`` (or no size) only opens (``FileNotFoundError``). ``mode``
    (default ``0o600``) sets the permissions of a new segment. Use it as a
    context manager to close the handle; the segment itself stays until
    :func:`remove`.
    """

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Segment (closed)>"
        return f"<shmds.Segment {self.name!r} size={self.size}>"

    def __reduce__(self) -> tuple:
        # Pickles as "attach to this segment by name".
        return (_attach_segment, (self.name,))

    def array(self, name: str, dtype: Any, length: int) -> Array:
        """The array ``name`` of ``length`` elements of ``dtype``, created if
        it does not exist. An existing array must hold ``dtype``
        (``TypeError`` otherwise)."""
        return Array(self, name, descriptor(dtype), length)

    def queue(self, name: str, dtype: Any, capacity: int) -> Queue:
        """The FIFO queue ``name`` of ``capacity`` elements of ``dtype``,
        created if it does not exist (``TypeError`` if it holds another
        type)."""
        return Queue(self, name, "queue", descriptor(dtype), capacity)

    def stack(self, name: str, dtype: Any, capacity: int) -> Stack:
        """The LIFO stack ``name``, like :meth:`queue`."""
        return Stack(self, name, "stack", descriptor(dtype), capacity)

    def map(self, name: str, key: Any, value: Any, capacity: int) -> Map:
        """The map ``name`` from ``key`` to ``value`` holding at most
        ``capacity`` keys, created if it does not exist. ``"S<n>"`` as a
        key or value type means strings of up to n UTF-8 bytes (Rust's
        ``FixedStr<n>``); other types are numpy dtypes."""
        k, v = _map_descriptor(key), _map_descriptor(value)
        return Map(self, name, k, v, capacity, _map_codecs(k, v))

    def open(self, name: str) -> Array | Queue | Stack | Map:
        """Open the structure ``name`` with the kind and types recorded in
        the table (``KeyError`` if there is none)."""
        for e in self.entries():
            if e.name == name:
                if e.kind == "array":
                    return Array(self, name)
                if e.kind in ("queue", "stack"):
                    cls = Queue if e.kind == "queue" else Stack
                    return cls(self, name, e.kind, e.type)
                if e.kind == "map":
                    return Map(self, name, None, None, None, _map_codecs(e.key_type, e.type))
                raise TypeError(f"{name!r} is a {e.kind}, which this package cannot open")
        raise KeyError(f"segment {self.name!r} has no structure {name!r}")

    def entries(self) -> list[EntryInfo]:
        """The table: name, kind, type, key type, capacity, bytes and fill."""
        return [EntryInfo(*e) for e in self._entries()]


def _attach_segment(name: str) -> Segment:
    return Segment(name, create=False)


def _attach(segment: str, name: str) -> Any:
    return Segment(segment, create=False).open(name)


def _native(desc: str) -> bool:
    """Whether the native layer converts elements of ``desc`` itself."""
    if _FIXED_STR.fullmatch(desc) or re.fullmatch(r"\d+s", desc):
        return True
    try:
        dt = dtype_of(desc)
    except Exception:
        return False
    return dt.names is None and dt.subdtype is None and dt.kind in "iuf" and dt.isnative


def _map_codecs(key: str, value: str) -> tuple[Any, Any, Any, Any]:
    ke, kd = (None, None) if _native(key) else _codec(key)
    ve, vd = (None, None) if _native(value) else _codec(value)
    return ke, kd, ve, vd


def _attach_array(segment: str, name: str) -> Array:
    return Array(Segment(segment, create=False), name)


class Array(_shmds.Array):
    """A fixed-length array in shared memory.

    It supports the buffer protocol: ``numpy.asarray(arr)`` is a zero-copy
    view of the shared bytes (a structured array for record types).
    Indexing and slicing go through such a view. ``close()`` raises
    ``BufferError`` while views exist.
    """

    def numpy(self) -> np.ndarray:
        """A zero-copy numpy view of the whole array."""
        # Through memoryview, so that a failure (a stale or closed handle)
        # raises its own error instead of numpy falling back to iteration.
        return np.asarray(memoryview(self))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        view = self.numpy()
        return view if dtype is None else view.astype(dtype, copy=bool(copy))

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the elements."""
        return self.numpy().dtype

    def __getitem__(self, index: Any) -> Any:
        return self.numpy()[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.numpy()[index] = value

    def __iter__(self):
        return iter(self.numpy())

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Array (closed)>"
        return f"<shmds.Array {self.name!r} type={self.descriptor!r} len={len(self)}>"

    def __reduce__(self) -> tuple:
        return (_attach_array, (self.segment_name, self.name))

    def __enter__(self) -> Array:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Queue(_shmds.Queue):
    """A bounded FIFO queue in shared memory with the :class:`queue.Queue`
    methods: ``put``/``get`` (``block=True, timeout=None``: ``None`` waits
    forever; Ctrl-C interrupts the wait), ``put_nowait``/``get_nowait``,
    ``qsize``/``empty``/``full`` (approximate), raising :class:`queue.Full`
    and :class:`queue.Empty`. ``put_many``/``get_many`` move numpy arrays
    in one call.
    """

    def __new__(cls, segment: Segment, name: str, kind: str, desc: str | None = None,
                capacity: int | None = None) -> Queue:
        if desc is None:
            for e in segment.entries():
                if e.name == name:
                    desc = e.type
        codec = (None, None) if desc is None or _native(desc) else _codec(desc)
        return super().__new__(cls, segment, name, kind, desc if capacity is not None else None,
                               capacity, *codec)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the elements."""
        return dtype_of(self.descriptor)

    def put_many(self, items: Any, block: bool = True, timeout: float | None = None) -> int:
        """Put every element of ``items`` (an array-like, converted to this
        queue's dtype) in order; returns how many were put: all, unless the
        wait timed out or ``block`` is false and the queue filled up."""
        data = np.ascontiguousarray(items, dtype=self.dtype).reshape(-1)
        return self._put_bytes(memoryview(data).cast("B"), block, timeout)

    def get_many(self, n: int, block: bool = True, timeout: float | None = None) -> np.ndarray:
        """Take up to ``n`` elements as a numpy array, waiting (like
        :meth:`get`) for the first; raises :class:`queue.Empty` when none
        came."""
        out = np.empty(n, dtype=self.dtype)
        if n == 0:
            return out
        got = self._get_into(memoryview(out).cast("B"), block, timeout)
        if got == 0:
            import queue

            raise queue.Empty(f"{self.name} is empty")
        return out[:got]

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmds.{type(self).__name__} (closed)>"
        return (f"<shmds.{type(self).__name__} {self.name!r} type={self.descriptor!r} "
                f"size={self.qsize()}/{self.maxsize}>")

    def __reduce__(self) -> tuple:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stack(Queue):
    """A bounded LIFO stack in shared memory: the :class:`Queue` methods
    (like :class:`queue.LifoQueue`), taking the newest element first."""


class Map(_shmds.Map, MutableMapping):
    """A fixed-capacity hash map in shared memory, a
    :class:`collections.abc.MutableMapping`: ``m[k]``, ``m[k] = v``,
    ``del m[k]``, ``in``, ``len``, ``get``, ``pop``, ``setdefault``,
    ``update``, ``items()``... plus ``fetch_add`` and ``compare_exchange``
    for integer values. ``keys()``, ``values()`` and ``items()`` are lists
    taken in one pass (a key present throughout appears exactly once).
    Raises :class:`NoSpaceError` when a new key finds the map full.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter([k for k, _ in self._items()])

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        return self._items()

    def keys(self) -> list[Any]:  # type: ignore[override]
        return [k for k, _ in self._items()]

    def values(self) -> list[Any]:  # type: ignore[override]
        return [v for _, v in self._items()]

    def __repr__(self) -> str:
        if self.closed:
            return "<shmds.Map (closed)>"
        return (f"<shmds.Map {self.name!r} key={self.key_descriptor!r} "
                f"value={self.value_descriptor!r} len={len(self)}/{self.capacity}>")

    def __reduce__(self) -> tuple:
        return (_attach, (self.segment_name, self.name))

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
