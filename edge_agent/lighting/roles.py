"""Which points of a device are lighting outputs, by the role its driver declares: writable ``relay``
points are switched on and off, writable ``dim_level`` points get the level. Pure.

A relay is written true/false, so it must be a ``bool`` point; a dimming point is written a number.
``role_problem`` says what is wrong, so that ``agent check`` refuses a device the lighting could not
drive instead of saying ok.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.driver import PointSpec


def relay_points(points: Sequence[PointSpec]) -> list[PointSpec]:
    return [p for p in points if p.writable and p.role == "relay"]


def dim_points(points: Sequence[PointSpec]) -> list[PointSpec]:
    return [p for p in points if p.writable and p.role == "dim_level"]


def role_problem(points: Sequence[PointSpec]) -> tuple[str, str] | None:
    """``(where, problem)`` for the first lighting point that cannot take what the lighting writes."""
    index = {point.name: i for i, point in enumerate(points)}
    for point in relay_points(points):
        if point.type != "bool":
            return (
                f"points[{index[point.name]}] ({point.name}).type",
                f"a lighting relay is switched on and off: expected a bool point, got {point.type!r}",
            )
    for point in dim_points(points) if relay_points(points) else ():
        if point.type == "bool":
            return (
                f"points[{index[point.name]}] ({point.name}).type",
                "a dimming level is a percentage: expected a number point, got 'bool'",
            )
    return None
