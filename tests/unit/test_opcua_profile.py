"""Node-map profiles of OPC UA controllers, and decoding node values: parsing, checks, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from protocols.driver import AlarmRule, PointValue
from protocols.errors import ProfileError
from protocols.modbus.profile import default_profile_dirs
from protocols.opcua.codec import check_write, decode
from protocols.opcua.profile import OpcuaProfile, find_profile, parse_profile
from protocols.quality import Quality

HEADER = """
[profile]
name = "traffic-test"
description = "test controller"
namespace = "urn:test"
"""


def profile(points: str) -> OpcuaProfile:
    return parse_profile(HEADER + points, "traffic-test.toml")


def problem(points: str) -> str:
    with pytest.raises(ProfileError) as raised:
        profile(points)
    return str(raised.value)


MODE = """
[[points]]
name = "mode"
node = "s=Controller.Mode"
type = "int"
enumeration = { 0 = "normal", 1 = "flashing" }
"""


def test_shipped_profile_declares_the_traffic_alarms() -> None:
    _, shipped = find_profile("traffic-controller-generic", default_profile_dirs())

    alarms = {p.name: p.spec().alarm for p in shipped.points if p.alarm is not None}
    assert alarms["mode"] == AlarmRule(
        name="controller_flashing",
        when_in=("flashing",),
        description="The junction flashes amber: signals are not controlling traffic",
    )
    assert alarms["mode_dark"] is not None and alarms["mode_dark"].when_in == ("dark",)
    assert alarms["fault"] is not None and alarms["fault"].when_true
    assert {a.name for a in alarms.values() if a is not None} >= {f"detector_fault_d{i}" for i in range(1, 5)}
    roles = {p.role for p in shipped.points}
    assert roles >= {"mode", "signal_plan", "cycle_time", "cycle_second", "fault", "detector_count"}
    assert shipped.point("mode").spec().type == "str"
    assert not shipped.point("d1_count").subscribe


def test_enumeration_maps_numbers_to_labels() -> None:
    mode = profile(MODE).point("mode")

    assert decode(mode, 1) == PointValue("mode", "flashing")
    assert decode(mode, 9) == PointValue("mode", None, Quality.BAD, "enum_out_of_range: 9 is none of [0, 1]")
    assert decode(mode, "1").reason == "wrong_type: expected int, got str"
    assert decode(mode, True).reason == "wrong_type: expected int, got bool"


def test_decode_refuses_non_finite_and_long_values() -> None:
    points = profile(
        '[[points]]\nname = "occ"\nnode = "i=5"\ntype = "float"\n'
        '[[points]]\nname = "text"\nnode = "i=6"\ntype = "str"\n'
    )
    assert decode(points.point("occ"), math.nan).reason == "not_finite: nan"
    assert decode(points.point("occ"), 3) == PointValue("occ", 3.0)
    assert decode(points.point("text"), "x" * 300).reason == "too_long: 300 characters, at most 256"
    assert decode(points.point("text"), None).reason == "wrong_type: expected str, got nothing"


def test_check_write_bounds() -> None:
    plan = profile(
        '[[points]]\nname = "plan"\nnode = "i=1"\ntype = "int"\nwritable = true\nmin = 0\nmax = 8\n'
    )
    point = plan.point("plan")
    assert check_write(point, 3.0) == 3
    for bad in (9, -1, 2.5, True):
        with pytest.raises(ValueError, match="plan takes"):
            check_write(point, bad)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        (
            MODE.replace('type = "int"', 'type = "float"'),
            "points[0] (mode).type: expected int for a point with an enumeration",
        ),
        (
            MODE.replace('"s=Controller.Mode"', '"ns=2;s=Controller.Mode"'),
            "points[0] (mode).node: expected an identifier",
        ),
        (MODE.replace("0 = ", "zero = "), "points[0] (mode).enumeration.zero: expected an integer key"),
        (
            MODE + 'alarm = { name = "x", when_in = ["dark"] }',
            "(mode).alarm.when_in: expected labels of the enumeration (flashing, normal), got 'dark'",
        ),
        (
            MODE + 'alarm = { name = "x", when_true = true }',
            "points[0] (mode).alarm.when_true: expected a bool point, this one is str",
        ),
        (MODE + 'alarm = { name = "x" }', "points[0] (mode).alarm: expected exactly one condition"),
        (
            MODE + "wirtable = true",
            "points[0] (mode): object contains unknown field `wirtable`; check its spelling",
        ),
        (MODE + 'role = "colour"', "points[0] (mode).role: expected one of"),
        (MODE + MODE, "points[1] (mode).name: duplicate name; points[0] already uses it"),
        (
            '[[points]]\nname = "t"\nnode = "i=1"\ntype = "str"\nwritable = true\n',
            "points[0] (t).writable: expected false",
        ),
        (
            '[[points]]\nname = "Mode"\nnode = "i=1"\ntype = "int"\n',
            "points[0] (Mode).name: expected `str` matching regex",
        ),
    ],
)
def test_errors_name_the_file_the_point_and_the_fix(points: str, expected: str) -> None:
    message = problem(points)

    assert message.startswith("traffic-test.toml: ")
    assert expected in message


def test_missing_namespace_and_bad_toml() -> None:
    with pytest.raises(ProfileError, match=r"profile: object missing required field `namespace`"):
        parse_profile(HEADER.replace('namespace = "urn:test"', "") + MODE, "p.toml")
    with pytest.raises(ProfileError, match=r"p.toml: \(file\): not valid TOML"):
        parse_profile("[profile", "p.toml")


def test_find_profile_names_what_is_available(tmp_path: Path) -> None:
    (tmp_path / "traffic-test.toml").write_text(HEADER + MODE)

    assert find_profile("traffic-test", [tmp_path])[1].name == "traffic-test"
    with pytest.raises(ProfileError, match="unknown profile; OPC UA profiles available: traffic-test"):
        find_profile("traffic-other", [tmp_path])
