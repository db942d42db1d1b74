"""Turning a node's value into a point's value, and a written value into what the node takes. Pure.

A controller may serve anything at a node (a firmware bug, a profile for another model): a value of
the wrong type, an enumeration number the profile does not know, a non-finite float or an endless
string gives that point bad quality with a reason, never an exception.
"""

from __future__ import annotations

import math

from protocols.driver import PointValue
from protocols.opcua.profile import Point
from protocols.quality import Quality

MAX_TEXT = 256


def bad(point: Point, reason: str) -> PointValue:
    return PointValue(point.name, None, Quality.BAD, reason)


def decode(point: Point, raw: object) -> PointValue:
    """The point's value for the node value ``raw`` (the Python value of a good OPC UA variant)."""
    kind = point.type
    if kind == "bool":
        if not isinstance(raw, bool):
            return bad(point, f"wrong_type: expected bool, got {_kind(raw)}")
        return PointValue(point.name, raw)
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            return bad(point, f"wrong_type: expected int, got {_kind(raw)}")
        if point.enumeration is None:
            return PointValue(point.name, raw)
        label = point.labels.get(raw)
        if label is None:
            return bad(point, f"enum_out_of_range: {raw} is none of {sorted(point.labels)}")
        return PointValue(point.name, label)
    if kind == "float":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return bad(point, f"wrong_type: expected float, got {_kind(raw)}")
        if not math.isfinite(raw):
            return bad(point, f"not_finite: {raw!r}")
        return PointValue(point.name, float(raw))
    if not isinstance(raw, str):
        return bad(point, f"wrong_type: expected str, got {_kind(raw)}")
    if len(raw) > MAX_TEXT:
        return bad(point, f"too_long: {len(raw)} characters, at most {MAX_TEXT}")
    return PointValue(point.name, raw)


def check_write(point: Point, value: float | int | bool) -> float | int | bool:
    """``value`` as the point takes it; ValueError naming the point and what it takes otherwise."""
    if not point.writable:
        raise ValueError(f"{point.name} is not writable")
    if point.type == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{point.name} takes true or false, got {value!r}")
        return value
    if isinstance(value, bool):
        raise ValueError(f"{point.name} takes a number, got {value!r}")
    if point.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{point.name} takes an integer, got {value!r}")
        number: float | int = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{point.name} takes a finite number, got {value!r}")
    if (point.min is not None and number < point.min) or (point.max is not None and number > point.max):
        raise ValueError(f"{point.name} takes {point.min}..{point.max}, got {value!r}")
    return number


def _kind(raw: object) -> str:
    return "nothing" if raw is None else type(raw).__name__
