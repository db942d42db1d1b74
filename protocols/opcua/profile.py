"""Node-map profiles: where a traffic-light controller model keeps each quantity in its OPC UA server.

A profile is ``config/profiles/<name>.toml`` (format in ``config/profiles/README.md``, section "OPC
UA"), found on the same search path as every profile (``protocols.modbus.profile.profile_search_path``,
first match wins). Nodes are named inside the model's namespace URI, not by namespace index: a server
may renumber its namespaces at a restart or a firmware update, its URI stays. Every problem is one
``ProfileError`` naming the file, the point (``points[2] (mode).enumeration``) and what was expected.
Imports no asyncua.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from protocols.driver import AlarmRule, PointSpec, PointType, Severity
from protocols.errors import ProfileError
from protocols.profiles import profile_table, read_profile_text

Role = Literal[
    "mode",
    "signal_plan",
    "requested_plan",
    "cycle_time",
    "cycle_second",
    "phase",
    "fault",
    "alarm",
    "detector_count",
    "detector_occupancy",
    "detector_fault",
    "door",
]
ROLES: tuple[str, ...] = get_args(Role)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# An identifier inside the profile's namespace: numeric, string, GUID or opaque (base64), as in OPC UA's
# own NodeId text form without the "ns=" part.
_NODE = re.compile(
    r"^(i=[0-9]{1,10}|s=[^\x00-\x1f]{1,256}|g=[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12}|b=[A-Za-z0-9+/=]{1,344})$"
)
Text = Annotated[str, msgspec.Meta(max_length=200)]
Snake = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class AlarmTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A point's ``alarm = {...}``: the alarm its value raises (``protocols.driver.AlarmRule``)."""

    name: Snake
    severity: Severity = "alarm"
    when_true: bool = False
    when_in: Annotated[list[str | int], msgspec.Meta(max_length=32)] = []
    above: float | None = None
    below: float | None = None
    hysteresis_pct: Annotated[float, msgspec.Meta(ge=0, le=50)] = 10.0
    description: Text = ""

    def rule(self) -> AlarmRule:
        return AlarmRule(
            name=self.name,
            severity=self.severity,
            when_true=self.when_true,
            when_in=tuple(self.when_in),
            above=self.above,
            below=self.below,
            hysteresis_pct=self.hysteresis_pct,
            description=self.description,
        )


class Point(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One quantity: its node, the type the node holds, and what the agent makes of it.

    With an ``enumeration`` (raw integer -> label) the node holds an int and the agent gets the label.
    """

    name: Snake
    node: Annotated[str, msgspec.Meta(max_length=400)]
    type: PointType
    unit: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    role: Role | None = None
    enumeration: Annotated[dict[str, Snake], msgspec.Meta(max_length=256)] | None = None
    alarm: AlarmTable | None = None
    # A monitored item (pushed as it changes); false: only read with the poll (fast counters).
    subscribe: bool = True
    writable: bool = False
    min: float | None = None
    max: float | None = None
    description: Text | None = None

    @property
    def labels(self) -> dict[int, str]:
        """The enumeration with integer keys (checked by ``parse_profile``)."""
        return {int(raw): label for raw, label in (self.enumeration or {}).items()}

    @property
    def value_type(self) -> PointType:
        """The type of the value the agent gets (an enumeration's label is a str)."""
        return "str" if self.enumeration else self.type

    def spec(self) -> PointSpec:
        return PointSpec(
            name=self.name,
            type=self.value_type,
            unit=self.unit,
            writable=self.writable,
            role=self.role,
            alarm=self.alarm.rule() if self.alarm else None,
            description=self.description,
        )


class ProfileHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=_NAME, max_length=100)]
    vendor: Text | None = None
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # The controller model's namespace URI; every point's node is an identifier inside it.
    namespace: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class OpcuaProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A parsed, checked node-map profile. Points keep the file's order."""

    profile: ProfileHeader
    points: Annotated[list[Point], msgspec.Meta(min_length=1, max_length=500)]

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def namespace(self) -> str:
        return self.profile.namespace

    def point(self, quantity: str) -> Point:
        """The point named ``quantity``; KeyError when the profile has none."""
        for point in self.points:
            if point.name == quantity:
                return point
        raise KeyError(quantity)


def parse_profile(text: str, path: str) -> OpcuaProfile:
    """Parse and check a profile's TOML text. ``path`` is only used in error messages."""
    data = profile_table(text, path)
    try:
        profile = msgspec.convert(data, OpcuaProfile)
    except msgspec.ValidationError as exc:
        where, problem = _describe(str(exc), data)
        raise ProfileError(path, where, problem) from exc
    found = _first_problem(profile.points)
    if found is not None:
        raise ProfileError(path, *found)
    return profile


def read_profile(path: Path) -> OpcuaProfile:
    return parse_profile(read_profile_text(path), str(path))


def find_profile(name: str, search_dirs: Sequence[Path]) -> tuple[Path, OpcuaProfile]:
    """The file ``<name>.toml`` in the first of ``search_dirs`` that has it, and its profile."""
    searched = ", ".join(str(d) for d in search_dirs) or "(no profile directories)"
    where = f"profile {name!r}"
    if not re.match(_NAME, name):
        raise ProfileError(searched, where, "expected a profile name like 'traffic-controller-generic'")
    for directory in search_dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            profile = read_profile(candidate)
            if profile.name != name:
                raise ProfileError(
                    str(candidate),
                    "profile.name",
                    f"expected {name!r} (the file's name), got {profile.name!r}",
                )
            return candidate, profile
    available = sorted({p.stem for d in search_dirs if d.is_dir() for p in d.glob("traffic-*.toml")})
    raise ProfileError(
        searched, where, f"unknown profile; OPC UA profiles available: {', '.join(available) or 'none'}"
    )


def _first_problem(points: Sequence[Point]) -> tuple[str, str] | None:
    """Checks that span fields or points, as (where, problem): the first one found."""
    seen: dict[str, int] = {}
    for index, point in enumerate(points):
        label = f"points[{index}] ({point.name})"
        if point.name in seen:
            return f"{label}.name", f"duplicate name; points[{seen[point.name]}] already uses it"
        seen[point.name] = index
        problem = _point_problem(point)
        if problem is not None:
            return f"{label}.{problem[0]}", problem[1]
    return None


def _point_problem(point: Point) -> tuple[str, str] | None:
    if _NODE.match(point.node) is None:
        return "node", (
            f"expected an identifier inside the profile's namespace: 's=Controller.Mode', 'i=1001', "
            f"'g=<guid>' or 'b=<base64>', got {point.node!r}"
        )
    if point.enumeration is not None and (problem := _enumeration_problem(point, point.enumeration)):
        return problem
    if point.writable and point.type == "str":
        return "writable", "expected false: only bool, int and float points can be written"
    if (point.min is not None or point.max is not None) and point.type not in ("int", "float"):
        return "min", f"expected no min/max for a {point.type} point"
    if point.min is not None and point.max is not None and point.min > point.max:
        return "min", f"expected min <= max, got {point.min!r} > {point.max!r}"
    if point.alarm is not None:
        return _alarm_problem(point, point.alarm)
    return None


def _enumeration_problem(point: Point, enumeration: Mapping[str, str]) -> tuple[str, str] | None:
    if point.type != "int":
        return (
            "type",
            f"expected int for a point with an enumeration (the node holds the number), got {point.type!r}",
        )
    if not enumeration:
        return "enumeration", 'expected at least one entry, e.g. { 0 = "normal", 1 = "flashing" }'
    for raw in enumeration:
        if re.fullmatch(r"-?[0-9]{1,10}", raw) is None:
            return f"enumeration.{raw}", 'expected an integer key, e.g. { 0 = "normal" }'
    if point.writable:
        return "writable", "expected false: a point with an enumeration is read-only"
    return None


def _alarm_problem(point: Point, alarm: AlarmTable) -> tuple[str, str] | None:
    conditions = [alarm.when_true, bool(alarm.when_in), alarm.above is not None, alarm.below is not None]
    if sum(conditions) != 1:
        return "alarm", "expected exactly one condition: when_true, when_in, above or below"
    if alarm.when_true and point.value_type != "bool":
        return "alarm.when_true", f"expected a bool point, this one is {point.value_type}"
    if alarm.when_in and point.enumeration is not None:
        labels = set(point.labels.values())
        unknown = [value for value in alarm.when_in if value not in labels]
        if unknown:
            return (
                "alarm.when_in",
                f"expected labels of the enumeration ({', '.join(sorted(labels))}), got {unknown[0]!r}",
            )
    for field, limit in (("above", alarm.above), ("below", alarm.below)):
        if limit is None:
            continue
        if point.value_type not in ("int", "float"):
            return f"alarm.{field}", f"expected a number point for a limit, this one is {point.value_type}"
        if not math.isfinite(limit):
            return f"alarm.{field}", f"expected a finite number, got {limit!r}"
    return None


_AT = re.compile(r"^(?P<problem>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)


def _describe(message: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """A msgspec error, as (where, problem) in the profile's own terms."""
    match = _AT.match(message)
    if match is None:
        return "(file)", _problem(message)
    where = match.group("path").lstrip(".")
    point = re.match(r"^points\[(\d+)\]", where)
    points = data.get("points")
    if point is not None and isinstance(points, list) and int(point.group(1)) < len(points):
        raw = points[int(point.group(1))]
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where = where.replace(point.group(0), f"{point.group(0)} ({raw['name']})", 1)
    return where or "(file)", _problem(match.group("problem"), where.rpartition(".")[2])


_CHOICES = {
    "role": ROLES,
    "type": ("bool", "int", "float", "str"),
    "severity": ("info", "warning", "alarm", "critical"),
}


def _problem(text: str, field: str = "") -> str:
    enum = re.match(r"^Invalid enum value (?P<got>.*)$", text)
    if enum is not None and field in _CHOICES:
        return f"expected one of {', '.join(_CHOICES[field])}, got {enum.group('got')}"
    if text.startswith("Object contains unknown field"):
        return f"{text[0].lower()}{text[1:]}; check its spelling against config/profiles/README.md"
    return f"{text[0].lower()}{text[1:]}" if text else text
