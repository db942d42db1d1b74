"""Lighting outputs are found by the role a driver declares; a device whose lighting points cannot
take what the lighting writes is refused when the config is checked, not at dusk. A Modbus profile
declares roles per point, or (written before roles existed) has them taken from its points' names."""

from __future__ import annotations

import pytest

from edge_agent.lighting.roles import dim_points, relay_points, role_problem
from protocols.driver import PointSpec
from protocols.errors import ProfileError
from protocols.modbus.base import point_spec
from protocols.modbus.profile import Profile, parse_profile

HEADER = '[profile]\nname = "t"\ndescription = "test"\n'


def profile(
    relay: str, dim: str = 'table = "holding"\naddress = 1\ntype = "uint16"', roles: bool = False
) -> Profile:
    relay_role, dim_role = ('role = "relay"\n', 'role = "dim_level"\n') if roles else ("", "")
    return parse_profile(
        f'{HEADER}[[points]]\nname = "relay"\nwritable = true\n{relay_role}{relay}\n'
        f'[[points]]\nname = "dim_level_pct"\nwritable = true\n{dim_role}{dim}\n',
        "t.toml",
    )


def specs(found: Profile) -> list[PointSpec]:
    return [point_spec(point, found.role_of(point)) for point in found.points]


def test_relays_and_dimming_points_are_found_by_role() -> None:
    points = [
        PointSpec("contactor", "bool", writable=True, role="relay"),
        PointSpec("relay", "bool", writable=True),  # a name is not a role
        PointSpec("level", "int", writable=True, role="dim_level"),
        PointSpec("relay_feedback", "bool", role="relay"),  # read-only: not an output
    ]
    assert [p.name for p in relay_points(points)] == ["contactor"]
    assert [p.name for p in dim_points(points)] == ["level"]
    assert role_problem(points) is None


def test_a_profile_without_roles_takes_them_from_names() -> None:
    found = profile('table = "coil"\naddress = 0')
    assert not found.declares_roles
    assert [p.name for p in relay_points(specs(found))] == ["relay"]
    assert [p.name for p in dim_points(specs(found))] == ["dim_level_pct"]


def test_a_profile_with_roles_uses_only_those() -> None:
    text = (
        f'{HEADER}[[points]]\nname = "k1"\ntable = "coil"\naddress = 0\nwritable = true\nrole = "relay"\n'
        '[[points]]\nname = "relay_spare"\ntable = "coil"\naddress = 1\nwritable = true\n'
    )
    assert [p.name for p in relay_points(specs(parse_profile(text, "t.toml")))] == ["k1"]


def test_an_on_off_register_is_a_relay() -> None:
    assert role_problem(specs(profile('table = "holding"\naddress = 0\ntype = "bool"'))) is None


@pytest.mark.parametrize("roles", [False, True], ids=["by-name", "declared"])
def test_a_numeric_relay_is_refused_by_the_profile_with_the_fix(roles: bool) -> None:
    with pytest.raises(ProfileError) as caught:
        profile('table = "holding"\naddress = 0\ntype = "uint16"', roles=roles)
    assert (caught.value.where, caught.value.problem) == (
        "points[0] (relay).type",
        'a lighting relay is switched on and off: expected type = "bool" (a coil, or a holding '
        "register written 1/0), got 'uint16'",
    )


def test_an_on_off_dimming_point_is_refused_by_the_profile() -> None:
    with pytest.raises(ProfileError) as caught:
        profile('table = "coil"\naddress = 0', 'table = "coil"\naddress = 1', roles=True)
    assert caught.value.where == "points[1] (dim_level_pct).type"


def test_any_driver_s_numeric_relay_or_on_off_dimming_is_refused() -> None:
    relay = PointSpec("k1", "int", writable=True, role="relay")
    assert role_problem([relay]) == (
        "points[0] (k1).type",
        "a lighting relay is switched on and off: expected a bool point, got 'int'",
    )
    dim = [
        PointSpec("k1", "bool", writable=True, role="relay"),
        PointSpec("d", "bool", writable=True, role="dim_level"),
    ]
    assert role_problem(dim) == (
        "points[1] (d).type",
        "a dimming level is a percentage: expected a number point, got 'bool'",
    )
