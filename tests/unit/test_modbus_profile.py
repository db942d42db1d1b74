"""Device profiles: the shipped ones load, and every mistake names the file, the point and the field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from protocols.errors import ProfileError
from protocols.modbus.codec import REGISTER_TYPES
from protocols.modbus.profile import (
    available_profiles,
    default_profile_dirs,
    find_profile,
    load_profile,
    parse_profile,
    profile_search_path,
    read_profile,
)

REPO_PROFILES = Path(__file__).resolve().parents[2] / "config" / "profiles"

HEADER = """
[profile]
name = "test-device"
description = "A device for tests"
"""

RELAY = """
[[points]]
name = "relay"
table = "coil"
address = 0
writable = true
"""

POWER = """
[[points]]
name = "power_w"
table = "input"
address = 0
type = "float32"
unit = "W"
"""


def profile_error(tmp_path: Path, text: str) -> ProfileError:
    path = tmp_path / "test-device.toml"
    path.write_text(text)
    with pytest.raises(ProfileError) as caught:
        read_profile(path)
    error = caught.value
    assert error.path == str(path)
    assert str(error) == f"{path}: {error.where}: {error.problem}"
    return error


def test_lighting_profile_loads_from_the_default_dirs() -> None:
    assert REPO_PROFILES.resolve() in default_profile_dirs()
    profile = load_profile("lighting-single-circuit", default_profile_dirs())
    assert profile.name == "lighting-single-circuit"
    assert set(profile.quantities) >= {
        "relay",
        "dim_level_pct",
        "power_w",
        "voltage_v",
        "current_a",
        "energy_wh",
        "lamp_failure",
        "door_open",
    }
    relay = profile.point("relay")
    assert (relay.table, relay.address, relay.type, relay.writable) == ("coil", 0, "bool", True)
    dim = profile.point("dim_level_pct")
    assert (dim.table, dim.type, dim.writable, dim.min, dim.max) == ("holding", "uint16", True, 0, 100)
    assert profile.point("power_w").type == "float32"
    assert profile.point("voltage_v").scale == 0.1
    assert profile.point("current_a").scale == 0.01
    assert profile.point("energy_wh").type == "uint32"
    assert profile.point("lamp_failure").table == "discrete"
    assert profile.point("door_open").table == "discrete"
    assert not any(p.writable for p in profile.points if p.table in ("input", "discrete"))


def test_every_shipped_profile_loads() -> None:
    # OPC UA node maps share the directory; they name a namespace (config/profiles/README.md, "OPC UA").
    names = [
        name
        for name in available_profiles([REPO_PROFILES])
        if "namespace" not in tomllib.loads((REPO_PROFILES / f"{name}.toml").read_text())["profile"]
    ]
    assert "lighting-single-circuit" in names
    for name in names:
        assert load_profile(name, [REPO_PROFILES]).name == name


def test_readme_example_is_a_valid_profile() -> None:
    readme = (REPO_PROFILES / "README.md").read_text()
    example = re.search(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    profile = parse_profile(example.group(1), "README.md")
    energy = profile.point("energy_wh")
    assert (energy.type, energy.word_order, energy.address) == ("uint32", "CDAB", 10)
    assert profile.point("voltage_v").type == "uint16"
    assert profile.point("voltage_v").plausible == [180, 260]
    alarm = profile.point("voltage_v").alarm
    assert alarm is not None and (alarm.name, alarm.severity, alarm.below) == ("undervoltage", "warning", 207)
    assert profile.point("relay").role == "relay" and profile.point("heater").role is None
    heater = profile.point("heater")
    assert (heater.table, heater.type, heater.writable) == ("holding", "bool", True)


def test_defaults(tmp_path: Path) -> None:
    profile = parse_profile(HEADER + RELAY + POWER.replace('type = "float32"\n', ""), "x.toml")
    relay, power = profile.points
    assert (relay.type, relay.scale, relay.unit) == ("bool", 1.0, None)
    assert (power.type, power.word_order, power.writable) == ("uint16", "big", False)
    assert profile.profile.max_gap == 16


def test_wrong_type_names_point_and_choices(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY + POWER.replace("float32", "int8"))
    assert error.where == "points[1] (power_w).type"
    assert error.problem == (
        "expected one of int16, uint16, int32, uint32, float32, int64, uint64, float64, bool, got 'int8'"
    )


def test_an_on_off_output_in_a_holding_register() -> None:
    relay = RELAY.replace('table = "coil"', 'table = "holding"\ntype = "bool"')
    profile = parse_profile(HEADER + relay, "x.toml")
    point = profile.point("relay")
    assert (point.table, point.type, point.writable, point.size) == ("holding", "bool", True, 1)


def test_64_bit_points_and_the_manuals_word_orders() -> None:
    energy = POWER.replace('"float32"', '"uint64"\nword_order = "DCBA"')
    point = parse_profile(HEADER + energy, "x.toml").point("power_w")
    assert (point.type, point.word_order, point.size, point.end) == ("uint64", "DCBA", 4, 4)


@pytest.mark.parametrize(
    ("plausible", "where", "problem"),
    [
        ("[500, 0]", "plausible", "expected low <= high, got [500.0, 0.0]"),
        ("[0]", "plausible", "expected [low, high], two finite numbers, e.g. [0, 500], got [0.0]"),
        ("500", "plausible", "expected an array, e.g. [0, 500], got 500"),
        ('["0", 500]', "plausible[0]", "expected a number, got '0'"),
    ],
)
def test_plausible_range_errors(tmp_path: Path, plausible: str, where: str, problem: str) -> None:
    error = profile_error(tmp_path, HEADER + POWER.replace('unit = "W"', f"plausible = {plausible}"))
    assert (error.where, error.problem) == (f"points[0] (power_w).{where}", problem)


def test_plausible_range_of_a_point() -> None:
    point = parse_profile(HEADER + POWER.replace('unit = "W"', "plausible = [0, 500]"), "x.toml").points[0]
    assert point.plausible == [0.0, 500.0]
    assert [point.implausible(v) for v in (0, 250.5, 500, -2.4e-41, 500.1)] == [False] * 3 + [True] * 2


def test_no_plausible_range_on_a_bool_point(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY + "plausible = [0, 1]\n")
    assert error.where == "points[0] (relay).plausible"


def test_register_type_on_a_bit_table(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY.replace("address = 0", 'address = 0\ntype = "uint16"'))
    assert error.where == "points[0] (relay).type"
    assert "expected bool for a coil point" in error.problem


def test_missing_address(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY + POWER.replace("address = 0\n", ""))
    assert error.where == "points[1] (power_w).address"
    assert "missing" in error.problem


def test_address_of_wrong_kind(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + POWER.replace("address = 0", 'address = "40001"'))
    assert error.where == "points[0] (power_w).address"
    assert error.problem == "expected an integer, got '40001'"


def test_unknown_field(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY.replace("writable", "wirtable"))
    assert error.where == "points[0] (relay).wirtable"
    assert "unknown field" in error.problem


def test_duplicate_name(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + RELAY + RELAY.replace("address = 0", "address = 1"))
    assert error.where == "points[1] (relay).name"
    assert "duplicate" in error.problem
    assert "points[0]" in error.problem


def test_overlapping_registers(tmp_path: Path) -> None:
    voltage = POWER.replace("power_w", "voltage_v").replace("float32", "uint16")
    error = profile_error(tmp_path, HEADER + POWER + voltage.replace("address = 0", "address = 1"))
    assert error.where == "points[1] (voltage_v).address"
    assert error.problem == "input 1 overlaps points[0] (power_w) at 0..1"


def test_same_address_in_different_tables_is_fine() -> None:
    profile = parse_profile(HEADER + RELAY + POWER, "x.toml")
    assert [p.address for p in profile.points] == [0, 0]


def test_writable_read_only_table(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + POWER.replace('unit = "W"', "writable = true"))
    assert error.where == "points[0] (power_w).writable"
    assert "input points are read-only" in error.problem


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (("address = 0", "address = 65535"), "address", "end at or before 65535"),
        (("address = 0", "address = -1"), "address", "expected an integer >= 0, got -1"),
        (('unit = "W"', "scale = 0.0"), "scale", "non-zero"),
        (('unit = "W"', 'word_order = "middle"'), "word_order", "one of ABCD, CDAB, BADC, DCBA, big"),
        (('unit = "W"', "min = 10\nmax = 1"), "min", "min <= max"),
        (('unit = "W"', "unit = 5"), "unit", "expected a string, got 5"),
    ],
)
def test_point_field_errors(tmp_path: Path, change: tuple[str, str], where: str, problem: str) -> None:
    error = profile_error(tmp_path, HEADER + POWER.replace(*change))
    assert error.where == f"points[0] (power_w).{where}"
    assert problem in error.problem


@pytest.mark.parametrize(
    ("change", "where", "problem"),
    [
        (("power_w", "Power"), "name", "expected snake_case like 'power_w', got 'Power'"),
        (("power_w", "p" * 65), "name", "expected a string of at most 64 characters, got '" + "p" * 65 + "'"),
        (('unit = "W"', "scale = true"), "scale", "expected a number, got True"),
        (('unit = "W"', 'min = "low"'), "min", "expected a number, got 'low'"),
        (
            ('type = "float32"', "type = 16"),
            "type",
            f"expected one of {', '.join(REGISTER_TYPES)}, bool, got 16",
        ),
        (
            ('table = "input"', 'table = "inputs"'),
            "table",
            "expected one of holding, input, coil, discrete, got 'inputs'",
        ),
        (('unit = "W"', "alarm = 3"), "alarm", "expected a table, got 3"),
        (
            ('unit = "W"', '[points.alarm]\nname = "hot"\nabove = 1.0\nseverity = "loud"'),
            "alarm.severity",
            "expected one of info, warning, alarm, critical, got 'loud'",
        ),
        (
            ('unit = "W"', '[points.alarm]\nname = "x"\nwhen_in = [1.5]'),
            "alarm.when_in[0]",
            "expected an integer or a string, got 1.5",
        ),
        (
            ('unit = "W"', '[points.alarm]\nname = "x"\nwhen_in = ' + str(list(range(33)))),
            "alarm.when_in",
            "expected an array of at most 32 items, got an array",
        ),
    ],
)
def test_wrong_kinds_name_the_field_what_it_takes_and_what_was_given(
    tmp_path: Path, change: tuple[str, str], where: str, problem: str
) -> None:
    error = profile_error(tmp_path, HEADER + POWER.replace(*change))
    name = "power_w" if change[0] != "power_w" else change[1]
    assert (error.where, error.problem) == (f"points[0] ({name}).{where}", problem)


def test_wrong_points_and_header_kinds(tmp_path: Path) -> None:
    cases = [
        ("points = []\n" + HEADER, "points", "expected at least one [[points]] table"),
        ("points = 1\n" + HEADER, "points", "expected an array of tables ([[points]]), got 1"),
        ("points = [1]\n" + HEADER, "points[0]", "expected a table, got 1"),
        ("profile = 1\n" + RELAY, "profile", "expected a table, got 1"),
        (
            HEADER.replace("test-device", "a/b") + RELAY,
            "profile.name",
            "expected a profile name like 'lighting-single-circuit' (letters, digits, '.', '_', '-'), "
            "got 'a/b'",
        ),
        (
            HEADER.replace("test-device", "x") + "max_gap = 126\n" + RELAY,
            "profile.max_gap",
            "expected an integer <= 125, got 126",
        ),
        (
            HEADER.replace('"A device for tests"', '""') + RELAY,
            "profile.description",
            "expected a string (not empty), got ''",
        ),
    ]
    for text, where, problem in cases:
        error = profile_error(tmp_path, text)
        assert (error.where, error.problem) == (where, problem)


def test_header_errors(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER.replace('description = "A device for tests"', "") + RELAY)
    assert (error.where, "missing" in error.problem) == ("profile.description", True)
    error = profile_error(tmp_path, HEADER.replace("[profile]", "[profile]\ncolour = 1") + RELAY)
    assert error.where == "profile.colour"


def test_no_points(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER)
    assert error.where == "points"


def test_invalid_toml(tmp_path: Path) -> None:
    error = profile_error(tmp_path, HEADER + "[[points]\nname = ")
    assert error.where == "(file)"
    assert "not valid TOML" in error.problem


def test_unknown_profile_lists_the_available_ones(tmp_path: Path) -> None:
    for name in ("b-model", "a-model"):
        (tmp_path / f"{name}.toml").write_text(HEADER.replace("test-device", name) + RELAY)
    assert load_profile("a-model", [tmp_path]).name == "a-model"
    with pytest.raises(ProfileError) as caught:
        load_profile("c-model", [tmp_path])
    assert caught.value.path == str(tmp_path)
    assert caught.value.where == "profile 'c-model'"
    assert caught.value.problem == "unknown profile; available: a-model, b-model"


def test_profile_name_must_match_its_file(tmp_path: Path) -> None:
    (tmp_path / "other.toml").write_text(HEADER + RELAY)
    with pytest.raises(ProfileError) as caught:
        load_profile("other", [tmp_path])
    assert caught.value.where == "profile.name"
    assert "expected 'other'" in caught.value.problem


def test_profile_name_cannot_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="expected a profile name"):
        load_profile("../etc/passwd", [tmp_path])


def test_first_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory, description in ((first, "first"), (second, "second")):
        directory.mkdir()
        text = HEADER.replace("A device for tests", description) + RELAY
        (directory / "test-device.toml").write_text(text)
    assert load_profile("test-device", [first, second]).profile.description == "first"


def test_the_search_path_puts_the_cabinets_then_the_technicians_profiles_first(tmp_path: Path) -> None:
    own, system = tmp_path / "own", tmp_path / "etc"
    assert profile_search_path(own, system_dir=system) == [own, system, *default_profile_dirs()]
    assert profile_search_path() == [Path("/etc/cityedge/profiles"), *default_profile_dirs()]
    name = "lighting-single-circuit"
    packaged = default_profile_dirs()[0] / f"{name}.toml"
    assert find_profile(name, profile_search_path(own, system_dir=system))[0] == packaged
    for directory in (system, own):  # a technician's copy wins over the packaged one, the cabinet's over both
        directory.mkdir()
        (directory / f"{name}.toml").write_text(packaged.read_text())
        path, profile = find_profile(name, profile_search_path(own, system_dir=system))
        assert (path, profile.name) == (directory / f"{name}.toml", name)
