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

#: Every "S<n>" shmds accepts (1 <= n <= 255), with and without "|": a string,
#: read back as str (README, "Strings and bytes").
StrCode: TypeAlias = Literal[
    "S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12",
    "S13", "S14", "S15", "S16", "S17", "S18", "S19", "S20", "S21", "S22", "S23", "S24",
    "S25", "S26", "S27", "S28", "S29", "S30", "S31", "S32", "S33", "S34", "S35", "S36",
    "S37", "S38", "S39", "S40", "S41", "S42", "S43", "S44", "S45", "S46", "S47", "S48",
    "S49", "S50", "S51", "S52", "S53", "S54", "S55", "S56", "S57", "S58", "S59", "S60",
    "S61", "S62", "S63", "S64", "S65", "S66", "S67", "S68", "S69", "S70", "S71", "S72",
    "S73", "S74", "S75", "S76", "S77", "S78", "S79", "S80", "S81", "S82", "S83", "S84",
    "S85", "S86", "S87", "S88", "S89", "S90", "S91", "S92", "S93", "S94", "S95", "S96",
    "S97", "S98", "S99", "S100", "S101", "S102", "S103", "S104", "S105", "S106", "S107", "S108",
    "S109", "S110", "S111", "S112", "S113", "S114", "S115", "S116", "S117", "S118", "S119", "S120",
    "S121", "S122", "S123", "S124", "S125", "S126", "S127", "S128", "S129", "S130", "S131", "S132",
    "S133", "S134", "S135", "S136", "S137", "S138", "S139", "S140", "S141", "S142", "S143", "S144",
    "S145", "S146", "S147", "S148", "S149", "S150", "S151", "S152", "S153", "S154", "S155", "S156",
    "S157", "S158", "S159", "S160", "S161", "S162", "S163", "S164", "S165", "S166", "S167", "S168",
    "S169", "S170", "S171", "S172", "S173", "S174", "S175", "S176", "S177", "S178", "S179", "S180",
    "S181", "S182", "S183", "S184", "S185", "S186", "S187", "S188", "S189", "S190", "S191", "S192",
    "S193", "S194", "S195", "S196", "S197", "S198", "S199", "S200", "S201", "S202", "S203", "S204",
    "S205", "S206", "S207", "S208", "S209", "S210", "S211", "S212", "S213", "S214", "S215", "S216",
    "S217", "S218", "S219", "S220", "S221", "S222", "S223", "S224", "S225", "S226", "S227", "S228",
    "S229", "S230", "S231", "S232", "S233", "S234", "S235", "S236", "S237", "S238", "S239", "S240",
    "S241", "S242", "S243", "S244", "S245", "S246", "S247", "S248", "S249", "S250", "S251", "S252",
    "S253", "S254", "S255", "|S1", "|S2", "|S3", "|S4", "|S5", "|S6", "|S7", "|S8", "|S9",
    "|S10", "|S11", "|S12", "|S13", "|S14", "|S15", "|S16", "|S17", "|S18", "|S19", "|S20", "|S21",
    "|S22", "|S23", "|S24", "|S25", "|S26", "|S27", "|S28", "|S29", "|S30", "|S31", "|S32", "|S33",
    "|S34", "|S35", "|S36", "|S37", "|S38", "|S39", "|S40", "|S41", "|S42", "|S43", "|S44", "|S45",
    "|S46", "|S47", "|S48", "|S49", "|S50", "|S51", "|S52", "|S53", "|S54", "|S55", "|S56", "|S57",
    "|S58", "|S59", "|S60", "|S61", "|S62", "|S63", "|S64", "|S65", "|S66", "|S67", "|S68", "|S69",
    "|S70", "|S71", "|S72", "|S73", "|S74", "|S75", "|S76", "|S77", "|S78", "|S79", "|S80", "|S81",
    "|S82", "|S83", "|S84", "|S85", "|S86", "|S87", "|S88", "|S89", "|S90", "|S91", "|S92", "|S93",
    "|S94", "|S95", "|S96", "|S97", "|S98", "|S99", "|S100", "|S101", "|S102", "|S103", "|S104", "|S105",
    "|S106", "|S107", "|S108", "|S109", "|S110", "|S111", "|S112", "|S113", "|S114", "|S115", "|S116", "|S117",
    "|S118", "|S119", "|S120", "|S121", "|S122", "|S123", "|S124", "|S125", "|S126", "|S127", "|S128", "|S129",
    "|S130", "|S131", "|S132", "|S133", "|S134", "|S135", "|S136", "|S137", "|S138", "|S139", "|S140", "|S141",
    "|S142", "|S143", "|S144", "|S145", "|S146", "|S147", "|S148", "|S149", "|S150", "|S151", "|S152", "|S153",
    "|S154", "|S155", "|S156", "|S157", "|S158", "|S159", "|S160", "|S161", "|S162", "|S163", "|S164", "|S165",
    "|S166", "|S167", "|S168", "|S169", "|S170", "|S171", "|S172", "|S173", "|S174", "|S175", "|S176", "|S177",
    "|S178", "|S179", "|S180", "|S181", "|S182", "|S183", "|S184", "|S185", "|S186", "|S187", "|S188", "|S189",
    "|S190", "|S191", "|S192", "|S193", "|S194", "|S195", "|S196", "|S197", "|S198", "|S199", "|S200", "|S201",
    "|S202", "|S203", "|S204", "|S205", "|S206", "|S207", "|S208", "|S209", "|S210", "|S211", "|S212", "|S213",
    "|S214", "|S215", "|S216", "|S217", "|S218", "|S219", "|S220", "|S221", "|S222", "|S223", "|S224", "|S225",
    "|S226", "|S227", "|S228", "|S229", "|S230", "|S231", "|S232", "|S233", "|S234", "|S235", "|S236", "|S237",
    "|S238", "|S239", "|S240", "|S241", "|S242", "|S243", "|S244", "|S245", "|S246", "|S247", "|S248", "|S249",
    "|S250", "|S251", "|S252", "|S253", "|S254", "|S255",
]

#: "V<n>" for n = 1..256 and the powers of two up to 65536, with and without
#: "|": exactly n raw bytes, read back as bytes. Other sizes are typed Any.
BytesCode: TypeAlias = Literal[
    "V1", "V2", "V3", "V4", "V5", "V6", "V7", "V8", "V9", "V10", "V11", "V12",
    "V13", "V14", "V15", "V16", "V17", "V18", "V19", "V20", "V21", "V22", "V23", "V24",
    "V25", "V26", "V27", "V28", "V29", "V30", "V31", "V32", "V33", "V34", "V35", "V36",
    "V37", "V38", "V39", "V40", "V41", "V42", "V43", "V44", "V45", "V46", "V47", "V48",
    "V49", "V50", "V51", "V52", "V53", "V54", "V55", "V56", "V57", "V58", "V59", "V60",
    "V61", "V62", "V63", "V64", "V65", "V66", "V67", "V68", "V69", "V70", "V71", "V72",
    "V73", "V74", "V75", "V76", "V77", "V78", "V79", "V80", "V81", "V82", "V83", "V84",
    "V85", "V86", "V87", "V88", "V89", "V90", "V91", "V92", "V93", "V94", "V95", "V96",
    "V97", "V98", "V99", "V100", "V101", "V102", "V103", "V104", "V105", "V106", "V107", "V108",
    "V109", "V110", "V111", "V112", "V113", "V114", "V115", "V116", "V117", "V118", "V119", "V120",
    "V121", "V122", "V123", "V124", "V125", "V126", "V127", "V128", "V129", "V130", "V131", "V132",
    "V133", "V134", "V135", "V136", "V137", "V138", "V139", "V140", "V141", "V142", "V143", "V144",
    "V145", "V146", "V147", "V148", "V149", "V150", "V151", "V152", "V153", "V154", "V155", "V156",
    "V157", "V158", "V159", "V160", "V161", "V162", "V163", "V164", "V165", "V166", "V167", "V168",
    "V169", "V170", "V171", "V172", "V173", "V174", "V175", "V176", "V177", "V178", "V179", "V180",
    "V181", "V182", "V183", "V184", "V185", "V186", "V187", "V188", "V189", "V190", "V191", "V192",
    "V193", "V194", "V195", "V196", "V197", "V198", "V199", "V200", "V201", "V202", "V203", "V204",
    "V205", "V206", "V207", "V208", "V209", "V210", "V211", "V212", "V213", "V214", "V215", "V216",
    "V217", "V218", "V219", "V220", "V221", "V222", "V223", "V224", "V225", "V226", "V227", "V228",
    "V229", "V230", "V231", "V232", "V233", "V234", "V235", "V236", "V237", "V238", "V239", "V240",
    "V241", "V242", "V243", "V244", "V245", "V246", "V247", "V248", "V249", "V250", "V251", "V252",
    "V253", "V254", "V255", "V256", "V512", "V1024", "V2048", "V4096", "V8192", "V16384", "V32768", "V65536",
    "|V1", "|V2", "|V3", "|V4", "|V5", "|V6", "|V7", "|V8", "|V9", "|V10", "|V11", "|V12",
    "|V13", "|V14", "|V15", "|V16", "|V17", "|V18", "|V19", "|V20", "|V21", "|V22", "|V23", "|V24",
    "|V25", "|V26", "|V27", "|V28", "|V29", "|V30", "|V31", "|V32", "|V33", "|V34", "|V35", "|V36",
    "|V37", "|V38", "|V39", "|V40", "|V41", "|V42", "|V43", "|V44", "|V45", "|V46", "|V47", "|V48",
    "|V49", "|V50", "|V51", "|V52", "|V53", "|V54", "|V55", "|V56", "|V57", "|V58", "|V59", "|V60",
    "|V61", "|V62", "|V63", "|V64", "|V65", "|V66", "|V67", "|V68", "|V69", "|V70", "|V71", "|V72",
    "|V73", "|V74", "|V75", "|V76", "|V77", "|V78", "|V79", "|V80", "|V81", "|V82", "|V83", "|V84",
    "|V85", "|V86", "|V87", "|V88", "|V89", "|V90", "|V91", "|V92", "|V93", "|V94", "|V95", "|V96",
    "|V97", "|V98", "|V99", "|V100", "|V101", "|V102", "|V103", "|V104", "|V105", "|V106", "|V107", "|V108",
    "|V109", "|V110", "|V111", "|V112", "|V113", "|V114", "|V115", "|V116", "|V117", "|V118", "|V119", "|V120",
    "|V121", "|V122", "|V123", "|V124", "|V125", "|V126", "|V127", "|V128", "|V129", "|V130", "|V131", "|V132",
    "|V133", "|V134", "|V135", "|V136", "|V137", "|V138", "|V139", "|V140", "|V141", "|V142", "|V143", "|V144",
    "|V145", "|V146", "|V147", "|V148", "|V149", "|V150", "|V151", "|V152", "|V153", "|V154", "|V155", "|V156",
    "|V157", "|V158", "|V159", "|V160", "|V161", "|V162", "|V163", "|V164", "|V165", "|V166", "|V167", "|V168",
    "|V169", "|V170", "|V171", "|V172", "|V173", "|V174", "|V175", "|V176", "|V177", "|V178", "|V179", "|V180",
    "|V181", "|V182", "|V183", "|V184", "|V185", "|V186", "|V187", "|V188", "|V189", "|V190", "|V191", "|V192",
    "|V193", "|V194", "|V195", "|V196", "|V197", "|V198", "|V199", "|V200", "|V201", "|V202", "|V203", "|V204",
    "|V205", "|V206", "|V207", "|V208", "|V209", "|V210", "|V211", "|V212", "|V213", "|V214", "|V215", "|V216",
    "|V217", "|V218", "|V219", "|V220", "|V221", "|V222", "|V223", "|V224", "|V225", "|V226", "|V227", "|V228",
    "|V229", "|V230", "|V231", "|V232", "|V233", "|V234", "|V235", "|V236", "|V237", "|V238", "|V239", "|V240",
    "|V241", "|V242", "|V243", "|V244", "|V245", "|V246", "|V247", "|V248", "|V249", "|V250", "|V251", "|V252",
    "|V253", "|V254", "|V255", "|V256", "|V512", "|V1024", "|V2048", "|V4096", "|V8192", "|V16384", "|V32768", "|V65536",
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
