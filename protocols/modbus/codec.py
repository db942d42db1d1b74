"""Pure Modbus codec: registers <-> engineering values, and read planning. No sockets, no clocks.

A register point occupies one (16-bit types), two (32-bit) or four (64-bit) consecutive registers, or
one bit of a bit table. ``word_order`` names where the bytes of the value go, as controller manuals
name it: the value's bytes, most significant first, are A B C D (for 64-bit types A..H), and

    ABCD   registers most significant first, bytes in a register big-endian (Modbus's own order)
    CDAB   registers least significant first (word swap), bytes in a register big-endian
    BADC   registers most significant first, the two bytes of each register swapped (byte swap)
    DCBA   registers least significant first, bytes swapped: the whole value little-endian

``big`` is another name for ABCD and ``little`` for CDAB (low word first, as it always meant here).
For 64-bit types "word swap" reverses all four registers; for 16-bit types only the byte swap
(BADC, DCBA) changes anything.

A ``bool`` point in a register table reads true for any nonzero register and writes 1 or 0.
The engineering value is ``raw * scale``; writing divides by ``scale`` and rounds to the nearest raw
integer.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, Literal, Protocol, TypeVar, get_args

Table = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
PointType = Literal["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64", "bool"]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA", "big", "little"]

TABLES: tuple[Table, ...] = get_args(Table)
REGISTER_TYPES: tuple[RegisterType, ...] = get_args(RegisterType)
WORD_ORDERS: tuple[WordOrder, ...] = get_args(WordOrder)
BYTE_ORDERS: tuple[ByteOrder, ...] = get_args(ByteOrder)
_BYTE_ORDER: Mapping[WordOrder, ByteOrder] = {
    "ABCD": "ABCD",
    "CDAB": "CDAB",
    "BADC": "BADC",
    "DCBA": "DCBA",
    "big": "ABCD",
    "little": "CDAB",
}
BIT_TABLES: frozenset[Table] = frozenset({"coil", "discrete"})
WRITABLE_TABLES: frozenset[Table] = frozenset({"holding", "coil"})

# Protocol limits for one read request (Modbus application protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000

_STRUCT: Mapping[RegisterType, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "int64": "q",
    "uint64": "Q",
    "float64": "d",
}
_FLOAT_MAX: Mapping[RegisterType, float] = {"float32": 3.4028234663852886e38, "float64": sys.float_info.max}


def register_count(data_type: PointType) -> int:
    """How many registers (or bits, for ``bool``) a value of ``data_type`` occupies."""
    return 1 if data_type == "bool" else struct.calcsize(_STRUCT[data_type]) // 2


def raw_range(data_type: RegisterType) -> tuple[int, int]:
    """The smallest and largest raw integer a register type holds (floats: their finite range)."""
    if data_type in _FLOAT_MAX:
        return -math.floor(_FLOAT_MAX[data_type]), math.floor(_FLOAT_MAX[data_type])
    bits = 16 * register_count(data_type)
    if data_type.startswith("u"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def decode_registers(
    registers: Sequence[int],
    *,
    data_type: RegisterType,
    word_order: WordOrder = "big",
    scale: float = 1.0,
) -> int | float:
    """Decode one value. Raises ValueError for a wrong register count or a non-finite float."""
    expected = register_count(data_type)
    if len(registers) != expected:
        raise ValueError(f"{data_type} needs {expected} register(s), got {len(registers)}")
    raw = struct.unpack(f">{_STRUCT[data_type]}", registers_to_bytes(registers, word_order))[0]
    if data_type in _FLOAT_MAX:
        if not math.isfinite(raw):
            raise ValueError(f"{data_type} is not a finite number ({raw})")
        value: int | float = _shortest_float32(raw) if data_type == "float32" else float(raw)
    else:
        value = int(raw)
    if scale == 1:
        return value
    # Decimal keeps 2301 * 0.1 at 230.1 instead of 230.10000000000002.
    return float(Decimal(repr(value)) * Decimal(repr(scale)))


def encode_registers(
    value: float,
    *,
    data_type: RegisterType,
    word_order: WordOrder = "big",
    scale: float = 1.0,
    name: str = "value",
) -> list[int]:
    """Encode one value for writing. Raises ValueError naming ``name`` when it does not fit."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    raw: int | float
    if data_type in _FLOAT_MAX:
        raw = value / scale
    else:
        # Same Decimal path as decoding, so that 230.1 / 0.1 rounds to 2301, not 2300; an integer
        # stays exact (a 64-bit counter does not go through a float).
        exact = Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))
        raw = round(exact / Decimal(repr(scale)))
    try:
        # struct range-checks every type (floats: what does not round to a finite float).
        packed = struct.pack(f">{_STRUCT[data_type]}", raw)
        if data_type in _FLOAT_MAX and not math.isfinite(struct.unpack(f">{_STRUCT[data_type]}", packed)[0]):
            raise OverflowError(raw)
    except (struct.error, OverflowError) as exc:
        low, high = sorted(bound * scale for bound in raw_range(data_type))
        raise ValueError(
            f"{name}: {value!r} is out of range for {data_type} with scale {scale} "
            f"(allowed {low:g}..{high:g})"
        ) from exc
    return bytes_to_registers(packed, word_order)


def byte_order(word_order: WordOrder) -> ByteOrder:
    """The manual's name of ``word_order`` (``big`` is ABCD, ``little`` CDAB)."""
    return _BYTE_ORDER[word_order]


def registers_to_bytes(registers: Sequence[int], word_order: WordOrder = "ABCD") -> bytes:
    """The value's bytes, most significant first, from its registers as the device sends them."""
    if any(not 0 <= word <= 0xFFFF for word in registers):
        raise ValueError(f"registers must be 16-bit unsigned integers, got {list(registers)}")
    return _reorder(struct.pack(f">{len(registers)}H", *registers), byte_order(word_order))


def bytes_to_registers(value: bytes, word_order: WordOrder = "ABCD") -> list[int]:
    """The registers a device holds for a value's bytes (most significant first)."""
    if len(value) % 2:
        raise ValueError(f"a register value has an even number of bytes, got {len(value)}")
    return list(struct.unpack(f">{len(value) // 2}H", _reorder(value, byte_order(word_order))))


def _reorder(data: bytes, order: ByteOrder) -> bytes:
    """Swap words and/or bytes: each swap is its own inverse, so this maps both ways."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [word[::-1] for word in words]
    return b"".join(words)


def _shortest_float32(value: float) -> float:
    """The shortest decimal that is the same float32: 150.3, not 150.3000030517578."""
    bits = struct.pack(">f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == bits:
            return candidate
    return value


class PointSpec(Protocol):
    """What the codec needs to know about a point (a profile's ``Point`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def table(self) -> Table: ...
    @property
    def address(self) -> int: ...
    @property
    def type(self) -> PointType: ...
    @property
    def word_order(self) -> WordOrder: ...
    @property
    def scale(self) -> float: ...
    @property
    def min(self) -> float | None: ...
    @property
    def max(self) -> float | None: ...


def decode_point(point: PointSpec, words: Sequence[int] | Sequence[bool]) -> int | float | bool:
    """Decode a point from exactly its own registers (or its one bit). Raises ValueError."""
    if point.type == "bool":
        if len(words) != 1:
            what = "bit" if point.table in BIT_TABLES else "register"
            raise ValueError(f"{point.name}: expected 1 {what}, got {len(words)}")
        return bool(words[0])  # a register: any nonzero value is true
    return decode_registers(
        [int(word) for word in words],
        data_type=point.type,
        word_order=point.word_order,
        scale=point.scale,
    )


def encode_point(point: PointSpec, value: float | bool) -> list[int] | list[bool]:
    """Encode a value for writing to ``point``; checks its type range and its min/max."""
    if point.type == "bool":
        if value not in (0, 1) or isinstance(value, float):
            raise ValueError(f"{point.name}: expected true or false, got {value!r}")
        # A coil takes a bit; a register holding an on/off output takes 1 or 0.
        return [bool(value)] if point.table in BIT_TABLES else [int(bool(value))]
    if isinstance(value, bool):
        raise ValueError(f"{point.name}: expected a number, got {value!r}")
    low = -math.inf if point.min is None else point.min
    high = math.inf if point.max is None else point.max
    if isinstance(value, int | float) and not low <= value <= high:
        raise ValueError(f"{point.name}: {value!r} is out of range {point.min}..{point.max}")
    return encode_registers(
        value,
        data_type=point.type,
        word_order=point.word_order,
        scale=point.scale,
        name=point.name,
    )


P = TypeVar("P", bound=PointSpec)


@dataclass(frozen=True, slots=True)
class ReadBlock(Generic[P]):
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    points: tuple[P, ...]

    def words_of(
        self, point: PointSpec, data: Sequence[int] | Sequence[bool]
    ) -> Sequence[int] | Sequence[bool]:
        """The part of this block's response that belongs to ``point``."""
        start = point.address - self.address
        return data[start : start + register_count(point.type)]


def plan_reads(points: Sequence[P], *, max_gap: int = 16) -> list[ReadBlock[P]]:
    """Group points into as few read requests as possible.

    Points of one table are merged while the unused span between them is at most ``max_gap``
    registers (bits) and the request stays within the protocol limit. Greedy merging in address
    order is optimal here: a request covers a run of consecutive points.
    """
    blocks: list[ReadBlock[P]] = []
    for table in TABLES:
        limit = MAX_BITS_PER_READ if table in BIT_TABLES else MAX_REGISTERS_PER_READ
        run: list[P] = []
        run_end = 0
        for point in sorted((p for p in points if p.table == table), key=lambda p: p.address):
            end = point.address + register_count(point.type)
            if run and (point.address - run_end > max_gap or end - run[0].address > limit):
                blocks.append(_block(table, run, run_end))
                run = []
            run.append(point)
            run_end = max(run_end, end) if len(run) > 1 else end
        if run:
            blocks.append(_block(table, run, run_end))
    return blocks


def _block(table: Table, run: Sequence[P], end: int) -> ReadBlock[P]:
    start = run[0].address
    return ReadBlock(table=table, address=start, count=end - start, points=tuple(run))


# Function codes of the requests the drivers send (Modbus application protocol v1.1b3, 6.1-6.12).
READ_FUNCTION: Mapping[Table, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
WRITE_SINGLE_COIL = 5
WRITE_SINGLE_REGISTER = 6
WRITE_MULTIPLE_REGISTERS = 16


@dataclass(frozen=True, slots=True)
class Request:
    """One Modbus request, whatever carries it: read ``count`` values, or write ``values``, at ``address``."""

    function: int
    address: int
    count: int
    values: tuple[int, ...] = ()

    @property
    def is_write(self) -> bool:
        return bool(self.values)


def read_request(table: Table, address: int, count: int) -> Request:
    """The request reading ``count`` registers (bits) of ``table`` from ``address``."""
    return Request(function=READ_FUNCTION[table], address=address, count=count)


def write_request(point: PointSpec, words: Sequence[int] | Sequence[bool]) -> Request:
    """The request writing a point's encoded ``words`` (``encode_point``'s result)."""
    values = tuple(int(word) for word in words)
    if point.table == "coil":
        return Request(function=WRITE_SINGLE_COIL, address=point.address, count=1, values=values[:1])
    if point.table != "holding":
        raise ValueError(f"{point.name}: {point.table} points cannot be written")
    if len(values) == 1:
        return Request(function=WRITE_SINGLE_REGISTER, address=point.address, count=1, values=values)
    return Request(function=WRITE_MULTIPLE_REGISTERS, address=point.address, count=len(values), values=values)
