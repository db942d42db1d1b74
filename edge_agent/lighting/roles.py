"""Which points of a profile are lighting outputs, by name: writable ``relay`` / ``relay_*`` points are
switched on and off, writable ``dim*_pct`` points get the level. Pure.

A relay is written true/false, so it must be a ``bool`` point (a coil, or a register written 1/0); a
dimming point is written a number. ``role_problem`` says what is wrong, so that ``agent check`` refuses
a profile the lighting could not drive instead of saying ok.
"""

from __future__ import annotations

from protocols.modbus.profile import Point, Profile


def relay_points(profile: Profile) -> list[Point]:
    return [p for p in profile.points if p.writable and (p.name == "relay" or p.name.startswith("relay_"))]


def dim_points(profile: Profile) -> list[Point]:
    return [p for p in profile.points if p.writable and p.name.startswith("dim") and p.name.endswith("_pct")]


def role_problem(profile: Profile) -> tuple[str, str] | None:
    """``(where, problem)`` for the first lighting point that cannot take what the lighting writes."""
    index = {point.name: i for i, point in enumerate(profile.points)}
    for point in relay_points(profile):
        if point.type != "bool":
            return (
                f"points[{index[point.name]}] ({point.name}).type",
                f'a lighting relay is switched on and off: expected type = "bool" (a coil, or a '
                f"{point.table} register written 1/0), got {point.type!r}",
            )
    for point in dim_points(profile) if relay_points(profile) else ():
        if point.type == "bool":
            return (
                f"points[{index[point.name]}] ({point.name}).type",
                "a dimming level is a percentage: expected a number type (e.g. uint16), got 'bool'",
            )
    return None
