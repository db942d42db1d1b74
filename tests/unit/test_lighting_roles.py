"""Lighting outputs are found by name; a profile whose lighting points cannot take what the lighting
writes is refused when the config is checked, not at dusk."""

from __future__ import annotations

from edge_agent.lighting.roles import dim_points, relay_points, role_problem
from protocols.modbus.profile import Profile, parse_profile

HEADER = '[profile]\nname = "t"\ndescription = "test"\n'


def profile(relay: str, dim: str = 'table = "holding"\naddress = 1\ntype = "uint16"') -> Profile:
    return parse_profile(
        f'{HEADER}[[points]]\nname = "relay"\nwritable = true\n{relay}\n'
        f'[[points]]\nname = "dim_level_pct"\nwritable = true\n{dim}\n',
        "t.toml",
    )


def test_relays_and_dimming_points_are_found_by_name() -> None:
    found = profile('table = "coil"\naddress = 0')
    assert [p.name for p in relay_points(found)] == ["relay"]
    assert [p.name for p in dim_points(found)] == ["dim_level_pct"]
    assert role_problem(found) is None


def test_an_on_off_register_is_a_relay() -> None:
    assert role_problem(profile('table = "holding"\naddress = 0\ntype = "bool"')) is None


def test_a_numeric_relay_is_refused_with_the_fix() -> None:
    problem = role_problem(profile('table = "holding"\naddress = 0\ntype = "uint16"'))
    assert problem == (
        "points[0] (relay).type",
        'a lighting relay is switched on and off: expected type = "bool" (a coil, or a holding '
        "register written 1/0), got 'uint16'",
    )


def test_an_on_off_dimming_point_is_refused() -> None:
    problem = role_problem(profile('table = "coil"\naddress = 0', 'table = "coil"\naddress = 1'))
    assert problem is not None and problem[0] == "points[1] (dim_level_pct).type"
