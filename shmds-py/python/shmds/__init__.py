"""shmds: named, typed data structures in POSIX shared memory.

Several processes (Python, Rust, C) attach to one named segment and share
the structures inside it, zero-copy::

    import shmds, numpy as np
    with shmds.Segment("sensors", size=64 << 20) as seg:    # create or open
        temps = seg.array("temps", "<f4", 1000)
        np.asarray(temps)[:] = 20.0                         # zero-copy view

    other = shmds.Segment("sensors", create=False)           # attach by name
    t = other.open("temps")                                  # type from the table
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

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

    def open(self, name: str) -> Array:
        """Open the structure ``name`` with the type recorded in the table
        (``KeyError`` if there is none)."""
        for e in self.entries():
            if e.name == name:
                if e.kind == "array":
                    return Array(self, name)
                raise TypeError(f"{name!r} is a {e.kind}, which this version of the Python package cannot open yet")
        raise KeyError(f"segment {self.name!r} has no structure {name!r}")

    def entries(self) -> list[EntryInfo]:
        """The table: name, kind, type, key type, capacity, bytes and fill."""
        return [EntryInfo(*e) for e in self._entries()]


def _attach_segment(name: str) -> Segment:
    return Segment(name, create=False)


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
