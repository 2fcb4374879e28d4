"""Element-type spellings, for type checkers only (there is no module
``shmds._typing`` at run time; ``shmds/__init__.py`` imports it under
``TYPE_CHECKING``).

``Segment.queue``, ``.stack``, ``.map``, ``.set`` and ``.array`` are
overloaded on these aliases so that a checker infers the element type from
the dtype argument: ``seg.queue("jobs", "<u8", capacity=4)`` is a
``Queue[int]``. Spellings not listed here (big-endian ``">u8"``, a ``str``
variable, records, sub-arrays, ``"<S16"``...) give ``Any``.

Every spelling below is one numpy accepts and shmds converts natively, on a
little-endian host (Linux on x86-64 or AArch64): there ``"<u8"`` is the
native order, whose elements are Python ints. On a big-endian host
``"<u8"`` would go through numpy and read back as ``np.uint64``.
"""

from typing import Any, Literal, TypeAlias

import numpy as np

# --------------------------------------- numbers, one alias per numpy scalar
# For each: the numpy name, its fixed-size C name, the kind-and-size code
# and the struct character, each code bare and with "<", "=" or "|".

#: Spellings of np.uint8 (one element: ``arr[i]`` of an array is a np.uint8).
U1: TypeAlias = Literal[
    "uint8", "ubyte", "u1", "<u1", "=u1", "|u1", "B", "<B",
    "=B", "|B",
]

#: Spellings of np.uint16 (one element: ``arr[i]`` of an array is a np.uint16).
U2: TypeAlias = Literal[
    "uint16", "ushort", "u2", "<u2", "=u2", "|u2", "H", "<H",
    "=H", "|H",
]

#: Spellings of np.uint32 (one element: ``arr[i]`` of an array is a np.uint32).
U4: TypeAlias = Literal[
    "uint32", "uintc", "u4", "<u4", "=u4", "|u4", "I", "<I",
    "=I", "|I",
]

#: Spellings of np.uint64 (one element: ``arr[i]`` of an array is a np.uint64).
U8: TypeAlias = Literal[
    "uint64", "ulonglong", "u8", "<u8", "=u8", "|u8", "Q", "<Q",
    "=Q", "|Q",
]

#: Spellings of np.int8 (one element: ``arr[i]`` of an array is a np.int8).
I1: TypeAlias = Literal[
    "int8", "byte", "i1", "<i1", "=i1", "|i1", "b", "<b",
    "=b", "|b",
]

#: Spellings of np.int16 (one element: ``arr[i]`` of an array is a np.int16).
I2: TypeAlias = Literal[
    "int16", "short", "i2", "<i2", "=i2", "|i2", "h", "<h",
    "=h", "|h",
]

#: Spellings of np.int32 (one element: ``arr[i]`` of an array is a np.int32).
I4: TypeAlias = Literal[
    "int32", "intc", "i4", "<i4", "=i4", "|i4", "i", "<i",
    "=i", "|i",
]

#: Spellings of np.int64 (one element: ``arr[i]`` of an array is a np.int64).
I8: TypeAlias = Literal[
    "int64", "longlong", "i8", "<i8", "=i8", "|i8", "q", "<q",
    "=q", "|q",
]

#: Spellings of np.float32 (one element: ``arr[i]`` of an array is a np.float32).
F4: TypeAlias = Literal[
    "float32", "single", "f4", "<f4", "=f4", "|f4", "f", "<f",
    "=f", "|f",
]

#: Spellings of np.float64 (one element: ``arr[i]`` of an array is a np.float64).
F8: TypeAlias = Literal[
    "float64", "double", "float", "f8", "<f8", "=f8", "|f8", "d",
    "<d", "=d", "|d",
]

#: Signed integers whose size is the platform's (8 bytes on 64-bit Linux).
IntPlatform: TypeAlias = Literal[
    "int", "intp", "long", "l", "<l", "=l", "|l",
]

#: Unsigned integers whose size is the platform's.
UIntPlatform: TypeAlias = Literal[
    "uintp", "ulong", "uint", "L", "<L", "=L", "|L",
]

#: "S<n>" for n = 1..64, the multiples of 8 up to 248, and 255: a string, read
#: back as str (README, "Strings and bytes"). Every n from 1 to 255 is valid;
#: the others (and "|S<n>", "<S<n>") are typed Any: listing all 255 sizes,
#: each also with "|", made a first (uncached) mypy run take a minute, for
#: the cross-product of Segment.map's overloads.
StrCode: TypeAlias = Literal[
    "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14",
    "S15", "S16", "S17", "S18", "S19", "S20", "S21", "S22", "S23", "S24", "S25", "S26",
    "S27", "S28", "S29", "S30", "S31", "S32", "S33", "S34", "S35", "S36", "S37", "S38",
    "S39", "S40", "S41", "S42", "S43", "S44", "S45", "S46", "S47", "S48", "S49", "S50",
    "S51", "S52", "S53", "S54", "S55", "S56", "S57", "S58", "S59", "S60", "S61", "S62",
    "S63", "S64", "S72", "S80", "S88", "S96", "S104", "S112", "S120", "S128", "S136",
    "S144", "S152", "S160", "S168", "S176", "S184", "S192", "S200", "S208", "S216", "S224",
    "S232", "S240", "S248", "S255",
]

#: "V<n>" for n = 1..64, the multiples of 8 up to 256 and the powers of two
#: up to 65536: exactly n raw bytes, read back as bytes. Other sizes (and
#: "|V<n>") are typed Any.
BytesCode: TypeAlias = Literal[
    "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9", "V10", "V11", "V12", "V13", "V14",
    "V15", "V16", "V17", "V18", "V19", "V20", "V21", "V22", "V23", "V24", "V25", "V26",
    "V27", "V28", "V29", "V30", "V31", "V32", "V33", "V34", "V35", "V36", "V37", "V38",
    "V39", "V40", "V41", "V42", "V43", "V44", "V45", "V46", "V47", "V48", "V49", "V50",
    "V51", "V52", "V53", "V54", "V55", "V56", "V57", "V58", "V59", "V60", "V61", "V62",
    "V63", "V64", "V72", "V80", "V88", "V96", "V104", "V112", "V120", "V128", "V136",
    "V144", "V152", "V160", "V168", "V176", "V184", "V192", "V200", "V208", "V216", "V224",
    "V232", "V240", "V248", "V256", "V512", "V1024", "V2048", "V4096", "V8192", "V16384",
    "V32768", "V65536",
]


# ------------------------------------------------------------ by Python type

#: Integer element types: values are Python ints (in queues, stacks, maps,
#: sets; ``arr[i]`` of an array is the numpy scalar).
IntCode: TypeAlias = U1 | U2 | U4 | U8 | I1 | I2 | I4 | I8 | IntPlatform | UIntPlatform
#: Float element types: values are Python floats.
FloatCode: TypeAlias = F4 | F8

#: An integer element type: a spelling, ``int``, a numpy integer type or dtype.
IntDtype: TypeAlias = IntCode | type[int] | type[np.integer[Any]] | np.dtype[np.integer[Any]]
#: A float element type: a spelling, ``float``, a numpy float type or dtype.
FloatDtype: TypeAlias = (
    FloatCode | type[float] | type[np.floating[Any]] | np.dtype[np.floating[Any]]
)
#: A string element type (Rust ``FixedStr<n>``): values are ``str`` (a string
#: that Rust or C filled with bytes that are not UTF-8 reads back as those
#: ``bytes``, which the types do not say). ``np.dtype("S16")`` is one too.
StrDtype: TypeAlias = StrCode | np.dtype[np.bytes_]
#: A raw-bytes element type: values are ``bytes`` of exactly n. (A
#: ``np.dtype("V8")`` object is not told apart from a record dtype: Any.)
BytesDtype: TypeAlias = BytesCode
