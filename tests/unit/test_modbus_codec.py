"""The pure Modbus codec: register decoding/encoding and read planning."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus.codec import (
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    REGISTER_TYPES,
    WORD_ORDERS,
    RegisterType,
    WordOrder,
    bytes_to_registers,
    decode_point,
    decode_registers,
    encode_point,
    encode_registers,
    plan_reads,
    register_count,
    registers_to_bytes,
)
from protocols.modbus.profile import Point, default_profile_dirs, load_profile

SCALES = (1.0, 0.1, 0.01, 0.001, 0.5, 10.0, 0.37)
INTEGER_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
FLOAT_TYPES = {"float32": ">f", "float64": ">d"}


def point(name: str = "p", **fields: Any) -> Point:
    fields.setdefault("table", "holding")
    fields.setdefault("address", 0)
    return msgspec.convert({"name": name, **fields}, Point)


@pytest.mark.parametrize(
    ("words", "data_type", "word_order", "expected"),
    [
        ([0xFFFF], "int16", "big", -1),
        ([0xFFFF], "uint16", "big", 65535),
        ([0x8000], "int16", "big", -32768),
        ([0xFFFF, 0xFFFE], "int32", "big", -2),
        ([0xFFFE, 0xFFFF], "int32", "little", -2),
        ([0x0001, 0x0000], "uint32", "big", 65536),
        ([0x0000, 0x0001], "uint32", "little", 65536),
        ([0x4316, 0x4CCD], "float32", "big", 150.3),
        ([0x4CCD, 0x4316], "float32", "little", 150.3),
        ([0xC2F6, 0xE979], "float32", "big", -123.456),
    ],
)
def test_decode_known_values(
    words: list[int], data_type: RegisterType, word_order: WordOrder, expected: float
) -> None:
    assert decode_registers(words, data_type=data_type, word_order=word_order) == expected


def test_decode_applies_scale_without_float_noise() -> None:
    assert decode_registers([2301], data_type="uint16", scale=0.1) == 230.1
    assert decode_registers([65], data_type="uint16", scale=0.01) == 0.65
    assert decode_registers([0xFFF6], data_type="int16", scale=10) == -100


def test_integer_types_decode_to_int_without_scale() -> None:
    value = decode_registers([0, 150], data_type="uint32")
    assert value == 150
    assert isinstance(value, int)


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]])
def test_non_finite_float_is_a_decode_error(words: list[int]) -> None:
    with pytest.raises(ValueError, match="finite"):
        decode_registers(words, data_type="float32")


def test_decode_rejects_wrong_register_count_and_non_16_bit_words() -> None:
    with pytest.raises(ValueError, match="needs 2 register"):
        decode_registers([1], data_type="uint32")
    with pytest.raises(ValueError, match="16-bit"):
        decode_registers([0x10000], data_type="uint16")


def test_encode_known_values() -> None:
    assert encode_registers(230.1, data_type="uint16", scale=0.1) == [2301]
    assert encode_registers(-1, data_type="int16") == [0xFFFF]
    assert encode_registers(65536, data_type="uint32", word_order="little") == [0, 1]
    assert encode_registers(150.3, data_type="float32") == [0x4316, 0x4CCD]
    assert encode_registers(0.655, data_type="uint16", scale=0.01) == [66]


@pytest.mark.parametrize(
    ("value", "data_type", "scale"),
    [
        (65536, "uint16", 1.0),
        (-1, "uint16", 1.0),
        (32768, "int16", 1.0),
        (6553.6, "uint16", 0.1),
        (2**32, "uint32", 1.0),
        (-(2**31) - 1, "int32", 1.0),
        (1e39, "float32", 1.0),
    ],
)
def test_encode_out_of_range_names_the_point(value: float, data_type: RegisterType, scale: float) -> None:
    with pytest.raises(ValueError, match=r"dim_level_pct: .* out of range"):
        encode_registers(value, data_type=data_type, scale=scale, name="dim_level_pct")


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "12"])
def test_encode_refuses_non_numbers(value: Any) -> None:
    with pytest.raises(ValueError, match="power_w"):
        encode_registers(value, data_type="float32", name="power_w")


def test_encode_point_checks_min_and_max() -> None:
    dim = point("dim_level_pct", type="uint16", min=0, max=100, writable=True)
    assert encode_point(dim, 40) == [40]
    with pytest.raises(ValueError, match=r"dim_level_pct: 101 is out of range 0\.0\.\.100\.0"):
        encode_point(dim, 101)


def test_bool_points() -> None:
    relay = point("relay", table="coil")
    assert relay.type == "bool"
    assert encode_point(relay, True) == [True]
    assert encode_point(relay, 0) == [False]
    assert decode_point(relay, [True]) is True
    for bad in (2, 0.5, "on"):
        with pytest.raises(ValueError, match="relay: expected true or false"):
            encode_point(relay, bad)  # type: ignore[arg-type]


@given(data=st.data(), data_type=st.sampled_from(REGISTER_TYPES))
def test_registers_round_trip_through_values(data: st.DataObject, data_type: RegisterType) -> None:
    """decode then encode gives the same registers, for every type, word order and scale."""
    word_order = data.draw(st.sampled_from(WORD_ORDERS))
    scale = data.draw(st.sampled_from(SCALES))
    words = data.draw(
        st.lists(
            st.integers(0, 0xFFFF),
            min_size=register_count(data_type),
            max_size=register_count(data_type),
        )
    )
    layout = (STRUCT | FLOAT_TYPES)[data_type]
    raw = struct.unpack(layout, registers_to_bytes(words, word_order))[0]
    if not math.isfinite(raw):
        return
    if scale != 1 and data_type.endswith("64") and (data_type == "float64" or abs(raw) > 2**50):
        # A scaled 64-bit value is a float64: scaling and unscaling round twice (up to raw * 2**-52
        # together), so only integers below 2**51 are sure to round back exactly.
        return
    value = decode_registers(words, data_type=data_type, word_order=word_order, scale=scale)
    encoded = encode_registers(value, data_type=data_type, word_order=word_order, scale=scale)
    assert encoded == words


@given(data=st.data(), data_type=st.sampled_from(REGISTER_TYPES))
def test_values_round_trip_through_registers(data: st.DataObject, data_type: RegisterType) -> None:
    """encode then decode gives the value back (to float32 precision for floats)."""
    word_order = data.draw(st.sampled_from(WORD_ORDERS))
    if data_type in FLOAT_TYPES:
        width = 32 if data_type == "float32" else 64
        value: float = data.draw(st.floats(width=width, allow_nan=False, allow_infinity=False))
    else:
        value = data.draw(st.integers(*INTEGER_RANGES[data_type]))
    words = encode_registers(value, data_type=data_type, word_order=word_order)
    decoded = decode_registers(words, data_type=data_type, word_order=word_order)
    if data_type in FLOAT_TYPES:
        # Decoding picks the shortest decimal of the same float32 (150.3, not 150.30000305).
        assert struct.pack(FLOAT_TYPES[data_type], decoded) == struct.pack(FLOAT_TYPES[data_type], value)
    else:
        assert decoded == value


STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q", "uint64": ">Q"}


def lighting_points() -> tuple[Point, ...]:
    return load_profile("lighting-single-circuit", default_profile_dirs()).points


def test_plan_reads_one_request_per_table_for_the_lighting_profile() -> None:
    blocks = plan_reads(lighting_points())
    assert [(b.table, b.address, b.count) for b in blocks] == [
        ("holding", 0, 1),
        ("input", 0, 6),
        ("coil", 0, 1),
        ("discrete", 0, 2),
    ]


def test_plan_reads_splits_on_gaps_larger_than_max_gap() -> None:
    points = [
        point("a", address=0),
        point("b", address=5, type="float32"),
        point("c", address=30),
    ]
    assert [(b.address, b.count) for b in plan_reads(points, max_gap=16)] == [(0, 7), (30, 1)]
    assert [(b.address, b.count) for b in plan_reads(points, max_gap=0)] == [
        (0, 1),
        (5, 2),
        (30, 1),
    ]


def test_plan_reads_respects_protocol_limits() -> None:
    registers = [point(f"r{i}", address=i) for i in range(MAX_REGISTERS_PER_READ - 1)]
    registers.append(point("wide", address=MAX_REGISTERS_PER_READ - 1, type="uint32"))
    blocks = plan_reads(registers)
    assert [(b.address, b.count) for b in blocks] == [(0, MAX_REGISTERS_PER_READ - 1), (124, 2)]
    bits = [point(f"b{i}", table="discrete", address=i) for i in range(MAX_BITS_PER_READ + 1)]
    assert [b.count for b in plan_reads(bits)] == [MAX_BITS_PER_READ, 1]


def test_block_slices_each_point_from_the_response() -> None:
    power = point("power_w", table="input", address=10, type="float32")
    volts = point("voltage_v", table="input", address=12, scale=0.1)
    (block,) = plan_reads([volts, power])
    data = [0x4316, 0x4CCD, 2301]
    assert decode_point(power, block.words_of(power, data)) == 150.3
    assert decode_point(volts, block.words_of(volts, data)) == 230.1


@st.composite
def point_layouts(draw: st.DrawFn) -> list[Point]:
    """Non-overlapping points of random tables, sizes and gaps."""
    points: list[Point] = []
    next_free = {"holding": 0, "input": 0, "coil": 0, "discrete": 0}
    for index in range(draw(st.integers(1, 60))):
        table = draw(st.sampled_from(sorted(next_free)))
        if table in ("coil", "discrete"):
            fields: dict[str, Any] = {"table": table}
        else:
            fields = {"table": table, "type": draw(st.sampled_from(REGISTER_TYPES))}
        address = next_free[table] + draw(st.integers(0, 40))
        p = point(f"p{index}", address=address, **fields)
        next_free[table] = p.end
        points.append(p)
    return points


@given(points=point_layouts(), max_gap=st.integers(0, 20))
def test_plan_reads_covers_every_point_once_in_few_requests(points: list[Point], max_gap: int) -> None:
    blocks = plan_reads(points, max_gap=max_gap)
    planned = [p.name for b in blocks for p in b.points]
    assert sorted(planned) == sorted(p.name for p in points)
    for block in blocks:
        limit = MAX_BITS_PER_READ if block.table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
        assert 1 <= block.count <= limit
        for p in block.points:
            assert p.table == block.table
            assert block.address <= p.address and p.end <= block.address + block.count
    # No two neighbouring requests could have been one.
    for first, second in itertools.pairwise(blocks):
        if first.table == second.table:
            gap = second.address - (first.address + first.count)
            span = second.address + second.count - first.address
            limit = MAX_BITS_PER_READ if first.table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
            assert gap > max_gap or span > limit


# The value 0x01020304 (bytes A=01 B=02 C=03 D=04) and 0x0102030405060708 (A..H) as each word order
# puts them in the registers, as controller manuals draw them.
@pytest.mark.parametrize(
    ("word_order", "registers_32", "registers_64"),
    [
        ("ABCD", [0x0102, 0x0304], [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0304, 0x0102], [0x0708, 0x0506, 0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403], [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0403, 0x0201], [0x0807, 0x0605, 0x0403, 0x0201]),
        ("big", [0x0102, 0x0304], [0x0102, 0x0304, 0x0506, 0x0708]),
        ("little", [0x0304, 0x0102], [0x0708, 0x0506, 0x0304, 0x0102]),
    ],
)
def test_the_four_word_orders_of_the_manuals(
    word_order: WordOrder, registers_32: list[int], registers_64: list[int]
) -> None:
    assert encode_registers(0x01020304, data_type="uint32", word_order=word_order) == registers_32
    assert decode_registers(registers_32, data_type="uint32", word_order=word_order) == 0x01020304
    assert encode_registers(0x0102030405060708, data_type="uint64", word_order=word_order) == registers_64
    assert decode_registers(registers_64, data_type="uint64", word_order=word_order) == 0x0102030405060708
    assert registers_to_bytes(registers_64, word_order) == bytes(range(1, 9))
    assert bytes_to_registers(bytes(range(1, 9)), word_order) == registers_64


@pytest.mark.parametrize(
    ("words", "data_type", "word_order", "expected"),
    [
        ([0x4316, 0x4CCD], "float32", "ABCD", 150.3),
        ([0x4CCD, 0x4316], "float32", "CDAB", 150.3),
        ([0x1643, 0xCD4C], "float32", "BADC", 150.3),
        ([0xCD4C, 0x1643], "float32", "DCBA", 150.3),
        ([0x406C, 0xD000, 0x0000, 0x0000], "float64", "ABCD", 230.5),
        ([0x0000, 0x0000, 0xD000, 0x406C], "float64", "CDAB", 230.5),
        ([0x0000, 0x0000, 0x00D0, 0x6C40], "float64", "DCBA", 230.5),
        ([0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], "int64", "ABCD", -2),
        ([0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF], "int64", "DCBA", -2),
        ([0x3412], "uint16", "BADC", 0x1234),
        ([0x3412], "uint16", "DCBA", 0x1234),
        ([0x1234], "uint16", "CDAB", 0x1234),
    ],
)
def test_word_orders_of_floats_and_64_bit_types(
    words: list[int], data_type: RegisterType, word_order: WordOrder, expected: float
) -> None:
    assert decode_registers(words, data_type=data_type, word_order=word_order) == expected
    assert encode_registers(expected, data_type=data_type, word_order=word_order) == words


def test_a_wrong_word_order_reads_a_tiny_voltage() -> None:
    """The defect a plausible range catches: 231.5 V written ABCD, read CDAB, is -2.4e-41 V."""
    words = encode_registers(231.5, data_type="float32", word_order="ABCD")
    misread = decode_registers(words, data_type="float32", word_order="CDAB")
    assert misread == pytest.approx(-2.41794e-41)


def test_64_bit_integers_stay_exact() -> None:
    big = 2**63 - 1
    assert decode_registers(encode_registers(big, data_type="int64"), data_type="int64") == big
    counter = 2**60 + 1  # 1 Wh steps of a 64-bit counter are not lost through a float
    assert encode_registers(counter, data_type="uint64") == [0x1000, 0, 0, 1]
    with pytest.raises(ValueError, match="out of range for uint64"):
        encode_registers(2**64, data_type="uint64", name="energy_wh")
    with pytest.raises(ValueError, match="finite"):
        decode_registers([0x7FF0, 0, 0, 0], data_type="float64")


@pytest.mark.parametrize("table", ["holding", "input"])
def test_a_bool_point_in_a_register_table(table: str) -> None:
    """An on/off output held in a register: nonzero reads true, writing gives 1 or 0."""
    relay = point("relay", table=table, type="bool")
    assert [decode_point(relay, [word]) for word in (0, 1, 0xFF00, 0xFFFF)] == [False, True, True, True]
    for value, register in ((True, 1), (False, 0), (1, 1), (0, 0)):
        [word] = encode_point(relay, value)
        assert (type(word), word) == (int, register)  # a register value, not a coil's bit
    for bad in (2, 0.5, "on"):
        with pytest.raises(ValueError, match="relay: expected true or false"):
            encode_point(relay, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected 1 register"):
        decode_point(relay, [0, 1])


def test_word_orders_cover_the_manuals_names_and_the_aliases() -> None:
    assert WORD_ORDERS == ("ABCD", "CDAB", "BADC", "DCBA", "big", "little")
