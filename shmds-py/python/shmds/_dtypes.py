"""Element types: numpy dtypes to and from the type descriptors shmds
stores (PEP 3118 formats, as Rust and C write them), and the conversions
of values that go through numpy (records, sub-arrays, other byte orders)."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from . import _shmds
from ._shmds import human_type


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
    of an element type: ``"<f4"`` gives ``"<f"``, ``"S16"`` gives
    ``"T{B:len:16s:bytes:}"`` (a string, Rust's ``FixedStr<16>``), ``"V16"``
    gives ``"16s"`` (16 raw bytes, Rust's ``[u8; 16]``),
    ``[("ts", "<u8"), ("price", "<f8")]`` gives ``"T{<Q:ts:<d:price:}"``.
    See README, "Strings and bytes".

    Raises ``ValueError`` for types shmds cannot share (objects, strings of
    code points, datetimes, booleans, complex numbers).
    """
    if isinstance(dtype, str):
        m = re.fullmatch(r"\|?S(\d+)", dtype)
        if m:
            return _fixed_str(int(m.group(1)))
    dt = np.dtype(dtype)
    if dt.kind == "S" and dt.names is None and dt.subdtype is None:
        return _fixed_str(dt.itemsize)  # np.dtype("S8") is spelled "S8" too
    return _pep3118(dt)


def _fixed_str(n: int) -> str:
    if not 1 <= n <= 255:
        raise ValueError(f'strings ("S<n>") hold 1 to 255 bytes, not {n}')
    return f"T{{B:len:{n}s:bytes:}}"


def _pep3118(dt: np.dtype) -> str:
    """The descriptor of a numpy dtype, laid out as numpy lays it out
    (inside records an ``S<n>`` field is n raw bytes, ``<n>s``)."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return "(" + ",".join(str(n) for n in shape) + ")" + _pep3118(base)
    if dt.names is not None:
        fields = sorted(
            ((info[1], name, info[0]) for name, info in _fields(dt).items()),
            key=lambda f: f[0],
        )
        out, cursor = [], 0
        for offset, name, fdt in fields:
            if offset > cursor:
                out.append(f"{offset - cursor}x")
            out.append(f"{_pep3118(fdt)}:{name}:")
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


def _fields(dt: np.dtype) -> Mapping[str, tuple[Any, ...]]:
    """The fields of ``dt``, a record (``dt.names`` is not None)."""
    return dt.fields or {}


_FIXED_STR = re.compile(r"T\{B:len:(\d+)s:bytes:\}")


def dtype_of(desc: str) -> np.dtype:
    """The numpy dtype for a shmds type descriptor (the inverse of
    :func:`descriptor`). Raw bytes (``<n>s``) are ``V<n>``, which keeps every
    byte (numpy's ``S<n>`` would drop trailing NULs); strings
    (``FixedStr<n>``) are their record ``[("len", "u1"), ("bytes", "V<n>")]``."""
    return _dtype_of(desc)


@functools.lru_cache(maxsize=256)
def _dtype_of(desc: str) -> np.dtype:
    try:
        from numpy._core._internal import (  # type: ignore[attr-defined]  # numpy >= 2
            _dtype_from_pep3118,
        )
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core._internal import _dtype_from_pep3118
    return _raw_bytes_as_void(_dtype_from_pep3118(desc))


def _raw_bytes_as_void(dt: np.dtype) -> np.dtype:
    """``dt`` with every ``S<n>`` (numpy's reading of ``<n>s``) made ``V<n>``."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        new = _raw_bytes_as_void(base)
        return dt if new == base else np.dtype((new, shape))
    if dt.names is not None:
        fields = _fields(dt)
        formats = [_raw_bytes_as_void(fields[n][0]) for n in dt.names]
        if all(f == fields[n][0] for f, n in zip(formats, dt.names)):
            return dt
        spec: Any = {"names": list(dt.names), "formats": formats,
                     "offsets": [fields[n][1] for n in dt.names],
                     "itemsize": dt.itemsize}
        record: np.dtype = np.dtype(spec, align=dt.isalignedstruct)
        return record
    if dt.kind == "S":
        return np.dtype(f"V{dt.itemsize}")
    return dt


@functools.lru_cache(maxsize=256)
def _kind(desc: str) -> str:
    """How elements of ``desc`` are converted: "number" (a native-order
    int or float), "str" (FixedStr), "bytes" (raw bytes) natively;
    "subarray" or "record" through numpy."""
    if _FIXED_STR.fullmatch(desc):
        return "str"
    if re.fullmatch(r"\d+s", desc):
        return "bytes"
    dt = dtype_of(desc)
    if dt.subdtype is not None:
        return "subarray"
    if _is_number(dt):
        return "number"
    return "record"


def _is_number(dt: np.dtype) -> bool:
    return dt.names is None and dt.subdtype is None and dt.kind in "iuf" and dt.isnative


def _convert(value: Any, dt: np.dtype) -> np.ndarray:
    """``value`` (a number, a nested sequence, an ndarray) as an ndarray of
    the native number dtype ``dt``, every element converted by the rules of
    a single ``put``: a float for an integer type is a TypeError, an integer
    out of range an OverflowError."""
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        if a.dtype == dt:
            return a
        src = a.dtype.kind
        if dt.kind in "iu" and src in "iu":
            if a.size:
                info = np.iinfo(dt)
                for v in (int(a.min()), int(a.max())):
                    if v < info.min or v > info.max:
                        sign = " signed" if dt.kind == "i" else "n unsigned"
                        raise OverflowError(
                            f"{v} is out of range for a{sign} {8 * dt.itemsize}-bit integer")
            return a.astype(dt)
        if dt.kind == "f" and src in "iuf":
            return a.astype(dt)
        if src != "O":
            what = "an integer" if dt.kind in "iu" else "a number"
            raise TypeError(f"expected {what}, not numpy {a.dtype} values")
        value = a.tolist()
    elif not isinstance(value, (str, bytes, list, tuple)) and hasattr(value, "__iter__"):
        value = list(value)
    a = np.array(value, dtype=object)
    packed = _shmds._pack(_pep3118(dt), a.reshape(-1).tolist())
    return np.frombuffer(packed, dtype=dt).reshape(a.shape)


def _sub_array(value: Any, base: np.dtype) -> np.ndarray:
    """The values of one or more sub-arrays as an ndarray of ``base``."""
    if _is_number(base):
        return _convert(value, base)
    return np.asarray(value, dtype=base)


def _pack_elements(desc: str, items: Any) -> Any:
    """The elements ``items`` of type ``desc`` as a C-contiguous buffer,
    each converted as a single element would be."""
    dt = dtype_of(desc)
    kind = _kind(desc)
    if isinstance(items, np.ndarray) and items.dtype == dt:
        return np.ascontiguousarray(items).reshape(-1)
    if kind == "number":
        return np.ascontiguousarray(_convert(items, dt)).reshape(-1)
    if kind in ("str", "bytes"):
        if isinstance(items, (str, bytes)):
            items = [items]  # one element, not its characters
        elif isinstance(items, np.ndarray):
            items = items.reshape(-1).tolist()
        return _shmds._pack(desc, items)
    if kind == "subarray":
        base, shape = cast("tuple[np.dtype, tuple[int, ...]]", dt.subdtype)
        a = _sub_array(items, base)
        if a.shape[a.ndim - len(shape):] != shape:
            raise ValueError(f"elements of type {human_type(desc)} have shape {shape}; "
                             f"got values of shape {a.shape}")
        return np.ascontiguousarray(a).reshape(-1)
    if isinstance(items, list):
        items = [tuple(v) if isinstance(v, list) else v for v in items]
    return np.ascontiguousarray(items, dtype=dt).reshape(-1)


def _codec(desc: str) -> tuple[Any, Any]:
    """Encode/decode functions for elements the native layer does not
    convert itself (records, sub-arrays, other byte orders): through numpy.
    A sub-array takes any sequence or ndarray of its shape; a record a
    tuple, a list or a value read back."""
    dt = dtype_of(desc)
    if dt.subdtype is not None:
        base, shape = dt.subdtype

        def encode(value: Any) -> bytes:
            a = _sub_array(value, base)
            if a.shape != shape:
                raise ValueError(f"a value of type {human_type(desc)} must have shape {shape}, "
                                 f"not {a.shape}")
            return np.ascontiguousarray(a).tobytes()

        def decode(data: bytes) -> Any:
            return np.frombuffer(data, dtype=base).reshape(shape).copy()

        return encode, decode

    def encode_record(value: Any) -> bytes:
        if isinstance(value, list):
            value = tuple(value)
        a = np.asarray(value, dtype=dt)
        if a.shape != ():
            raise ValueError(f"one element of type {human_type(desc)} is one record, "
                             f"not an array of shape {a.shape}")
        return a.tobytes()

    def decode_record(data: bytes) -> Any:
        return np.frombuffer(data, dtype=dt)[0]

    return encode_record, decode_record
