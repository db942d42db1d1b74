"""The three-phase cabinet profile loads, plans into few reads, and decodes its little-endian points."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.modbus.codec import decode_point, encode_point, encode_registers, plan_reads
from protocols.modbus.profile import Profile, load_profile

REPO_PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"


@pytest.fixture(scope="module")
def cabinet() -> Profile:
    return load_profile("lighting-cabinet-3phase", [REPO_PROFILES])


def test_loads_with_circuits_phases_and_alarms(cabinet: Profile) -> None:
    quantities = set(cabinet.quantities)
    for circuit in range(1, 5):
        assert {f"relay_c{circuit}", f"dim_level_c{circuit}_pct", f"lamp_failure_c{circuit}"} <= quantities
        relay = cabinet.point(f"relay_c{circuit}")
        assert (relay.table, relay.writable) == ("coil", True)
        dim = cabinet.point(f"dim_level_c{circuit}_pct")
        assert (dim.table, dim.writable, dim.min, dim.max) == ("holding", True, 0, 100)
    for phase in range(1, 4):
        assert {
            f"voltage_l{phase}_v",
            f"current_l{phase}_a",
            f"power_l{phase}_w",
            f"power_factor_l{phase}",
        } <= quantities
    assert {"power_w", "energy_wh", "frequency_hz", "door_open"} <= quantities
    assert not any(p.writable for p in cabinet.points if p.table in ("input", "discrete"))


def test_reads_in_one_request_per_table(cabinet: Profile) -> None:
    blocks = plan_reads(cabinet.points, max_gap=cabinet.profile.max_gap)
    assert sorted((b.table, b.address, b.count) for b in blocks) == [
        ("coil", 0, 4),
        ("discrete", 0, 9),
        ("holding", 0, 4),
        ("input", 0, 20),
    ]


def test_decodes_a_register_image(cabinet: Profile) -> None:
    meter = {
        "voltage_l1_v": 231.4,
        "voltage_l2_v": 229.8,
        "voltage_l3_v": 230.0,
        "current_l1_a": 13.72,
        "current_l2_a": 6.85,
        "current_l3_a": 0.0,
        "power_l1_w": 3001.5,
        "power_l2_w": 1500.25,
        "power_l3_w": 0.0,
        "power_factor_l1": 0.951,
        "power_factor_l2": -0.948,
        "power_factor_l3": 1.0,
        "frequency_hz": 49.98,
        "power_w": 4501.75,
        "energy_wh": 123_456_789,
    }
    image = [0] * 20
    for quantity, value in meter.items():
        point = cabinet.point(quantity)
        image[point.address : point.end] = [int(w) for w in encode_point(point, value)]
    (block,) = [b for b in plan_reads(cabinet.points) if b.table == "input"]
    decoded = {p.name: decode_point(p, block.words_of(p, image)) for p in block.points}
    assert decoded == meter


def test_little_word_order_puts_the_low_word_first(cabinet: Profile) -> None:
    energy = cabinet.point("energy_wh")
    assert (energy.type, energy.word_order) == ("uint32", "little")
    assert encode_point(energy, 0x0001_0002) == [0x0002, 0x0001]
    assert decode_point(energy, [0x0002, 0x0001]) == 0x0001_0002
    power = cabinet.point("power_w")
    assert (power.type, power.word_order) == ("float32", "little")
    big = encode_registers(1500.0, data_type="float32")
    assert encode_point(power, 1500.0) == list(reversed(big))
    assert cabinet.point("power_l1_w").word_order == "big"
