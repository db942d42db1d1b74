"""Device profiles: the register map of one controller model, read from ``<name>.toml``.

The file format is documented in ``config/profiles/README.md``. Every problem is reported as a
``ProfileError`` naming the file, the point (``points[3] (power_w).type``) and what was expected.

A profile is looked for in a search path, first match wins: the cabinet config's ``profiles_dir``,
then ``/etc/cityedge/profiles`` (a technician's own profiles, which no upgrade touches), then the
profiles packaged with cityedge (``profile_search_path``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from protocols.errors import ProfileError
from protocols.modbus.codec import (
    BIT_TABLES,
    REGISTER_TYPES,
    WRITABLE_TABLES,
    PointType,
    Table,
    WordOrder,
    register_count,
)
from protocols.profiles import (
    PROFILE_NAME_PATTERN,
    SYSTEM_PROFILE_DIR,
    available_profiles,
    default_profile_dirs,
    find_profile_file,
    profile_search_path,
    profile_table,
    read_profile_text,
)

# Re-exported: the search path is shared by every protocol's profiles (``protocols.profiles``).
__all__ = [
    "SYSTEM_PROFILE_DIR",
    "Point",
    "Profile",
    "available_profiles",
    "default_profile_dirs",
    "find_profile",
    "load_profile",
    "parse_profile",
    "profile_search_path",
    "read_profile",
]

_NAME = PROFILE_NAME_PATTERN
_SNAKE = r"^[a-z][a-z0-9_]*$"
Severity = Literal["info", "warning", "alarm", "critical"]
SnakeName = Annotated[str, msgspec.Meta(pattern=_SNAKE, max_length=64)]
Text = Annotated[str, msgspec.Meta(max_length=500)]


class PointAlarm(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The alarm a point's value raises (``protocols.driver.AlarmRule``): exactly one condition."""

    name: SnakeName
    severity: Severity = "alarm"
    when_true: bool = False
    when_in: Annotated[tuple[str | int, ...], msgspec.Meta(max_length=32)] = ()
    above: float | None = None
    below: float | None = None
    hysteresis_pct: Annotated[float, msgspec.Meta(ge=0, le=50)] = 10.0
    description: Annotated[str, msgspec.Meta(max_length=200)] | None = None

    @property
    def conditions(self) -> int:
        return sum((self.when_true, bool(self.when_in), self.above is not None, self.below is not None))


class Point(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One quantity of the device: where it lives and how to turn its registers into a value."""

    name: SnakeName
    table: Table
    address: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
    # ``type`` in the file; its default depends on the table (``Point.type``).
    declared_type: PointType | None = msgspec.field(default=None, name="type")
    word_order: WordOrder = "big"
    scale: float = 1.0
    unit: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    writable: bool = False
    min: float | None = None
    max: float | None = None
    # [low, high] in scaled units: a value read outside is flagged implausible (bad quality).
    plausible: list[float] | None = None
    # What the agent does with the point (``protocols.driver.LIGHTING_ROLES``: relay, dim_level, ...).
    role: Annotated[str, msgspec.Meta(pattern=_SNAKE, max_length=32)] | None = None
    alarm: PointAlarm | None = None
    description: Text | None = None

    @property
    def type(self) -> PointType:
        """The declared type, else bool for a coil or discrete input and uint16 for a register."""
        if self.declared_type is not None:
            return self.declared_type
        return "bool" if self.table in BIT_TABLES else "uint16"

    @property
    def size(self) -> int:
        """Registers (or bits) occupied."""
        return register_count(self.type)

    @property
    def end(self) -> int:
        """First address after this point."""
        return self.address + self.size

    @property
    def named_role(self) -> str | None:
        """The role its name implies, for profiles that declare none (written before roles existed)."""
        name = self.name
        if name == "relay" or name.startswith("relay_"):
            return "relay"
        if name.startswith("dim") and name.endswith("_pct"):
            return "dim_level"
        if name.startswith("power") and name.endswith("_w"):
            return "power"
        if name.startswith("current") and name.endswith("_a"):
            return "current"
        if name == "lamp_failure" or name.startswith("lamp_failure_"):
            return "lamp_failure"
        if name == "door_open" or name.startswith("door_open_"):
            return "door"
        return None

    def implausible(self, value: float | bool) -> bool:
        """``value`` lies outside the point's plausible range (never, without one)."""
        if self.plausible is None or isinstance(value, bool):
            return False
        low, high = self.plausible
        return not low <= value <= high


class ProfileHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=_NAME, max_length=128)]
    vendor: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    description: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    # Largest run of unused registers a single read may span; 0 for devices that reject reads
    # touching unmapped addresses.
    max_gap: Annotated[int, msgspec.Meta(ge=0, le=125)] = 16


class _Invalid(ValueError):
    """A check spanning fields or points; msgspec keeps it as its error's cause."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A parsed, checked profile. Points keep the file's order."""

    profile: ProfileHeader
    points: Annotated[tuple[Point, ...], msgspec.Meta(min_length=1)]

    def __post_init__(self) -> None:
        problem = _first_problem(self.points)
        if problem is not None:
            raise _Invalid(*problem)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def declares_roles(self) -> bool:
        """Some point has a ``role``; otherwise roles are taken from names (``Point.named_role``)."""
        return any(point.role is not None for point in self.points)

    def role_of(self, point: Point) -> str | None:
        return point.role if self.declares_roles else point.named_role

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(point.name for point in self.points)

    def point(self, quantity: str) -> Point:
        """The point named ``quantity``; KeyError when the profile has none."""
        for point in self.points:
            if point.name == quantity:
                return point
        raise KeyError(quantity)


def parse_profile(text: str, path: str) -> Profile:
    """Parse and check a profile's TOML text. ``path`` is only used in error messages."""
    data = profile_table(text, path)
    try:
        return msgspec.convert(data, Profile)
    except msgspec.ValidationError as exc:
        where, problem = _describe(exc, data)
        raise ProfileError(path, where, problem) from exc


def read_profile(path: Path) -> Profile:
    """Read and check one profile file."""
    return parse_profile(read_profile_text(path), str(path))


def load_profile(name: str, search_dirs: Sequence[Path]) -> Profile:
    """Find ``<name>.toml`` in the first of ``search_dirs`` that has it, and read it."""
    return find_profile(name, search_dirs)[1]


def find_profile(name: str, search_dirs: Sequence[Path]) -> tuple[Path, Profile]:
    """The file ``<name>.toml`` in the first of ``search_dirs`` that has it, and its profile."""
    candidate = find_profile_file(name, search_dirs)
    profile = read_profile(candidate)
    if profile.name != name:
        raise ProfileError(
            str(candidate),
            "profile.name",
            f"expected {name!r} (the file's name), got {profile.name!r}",
        )
    return candidate, profile


def _first_problem(points: Sequence[Point]) -> tuple[str, str] | None:
    """Checks that span fields or points, as (where, problem): the first one found."""
    seen: dict[str, int] = {}
    declares_roles = any(point.role is not None for point in points)
    for index, point in enumerate(points):
        label = f"points[{index}] ({point.name})"
        if point.name in seen:
            return f"{label}.name", f"duplicate name; points[{seen[point.name]}] already uses it"
        seen[point.name] = index
        role = point.role if declares_roles else point.named_role
        if problem := _point_problem(point) or _role_problem(point, role):
            field, text = problem
            return f"{label}.{field}", text
        for other_index, other in enumerate(points[:index]):
            if other.table == point.table and other.address < point.end and point.address < other.end:
                overlapped = f"points[{other_index}] ({other.name}) at {_span(other)}"
                return f"{label}.address", f"{point.table} {_span(point)} overlaps {overlapped}"
    return None


def _point_problem(point: Point) -> tuple[str, str] | None:
    bits = point.table in BIT_TABLES
    if bits and point.type != "bool":
        return "type", f"expected bool for a {point.table} point, got {point.type!r}"
    if point.writable and point.table not in WRITABLE_TABLES:
        return "writable", f"expected false: {point.table} points are read-only"
    if point.end > 0x10000:
        return "address", f"expected the point to end at or before 65535, got {point.end - 1}"
    if not math.isfinite(point.scale) or point.scale == 0:
        return "scale", f"expected a finite, non-zero number, got {point.scale!r}"
    if bits and point.scale != 1:
        return "scale", f"expected 1 (or no scale) for a {point.table} point, got {point.scale!r}"
    if point.min is not None and point.max is not None and point.min > point.max:
        return "min", f"expected min <= max, got {point.min!r} > {point.max!r}"
    return _plausible_problem(point) or _alarm_problem(point)


def _role_problem(point: Point, role: str | None) -> tuple[str, str] | None:
    """A lighting output that cannot take what the lighting writes (true/false, a percentage)."""
    if not point.writable:
        return None
    if role == "relay" and point.type != "bool":
        return "type", (
            'a lighting relay is switched on and off: expected type = "bool" (a coil, or a '
            f"{point.table} register written 1/0), got {point.type!r}"
        )
    if role == "dim_level" and point.type == "bool":
        return "type", "a dimming level is a percentage: expected a number type (e.g. uint16), got 'bool'"
    return None


def _alarm_problem(point: Point) -> tuple[str, str] | None:
    alarm = point.alarm
    if alarm is None:
        return None
    if alarm.conditions != 1:
        return "alarm", "expected exactly one of when_true, when_in, above, below"
    if alarm.when_true and point.type != "bool":
        return "alarm.when_true", f"expected a bool point for when_true, got type {point.type!r}"
    if (alarm.above is not None or alarm.below is not None) and point.type == "bool":
        return "alarm", "expected when_true (or when_in) for a bool point, not above/below"
    return None


def _plausible_problem(point: Point) -> tuple[str, str] | None:
    if point.plausible is None:
        return None
    if point.type == "bool":
        return "plausible", "expected no plausible range for a bool point (every value is plausible)"
    if len(point.plausible) != 2 or not all(math.isfinite(bound) for bound in point.plausible):
        got = point.plausible
        return "plausible", f"expected [low, high], two finite numbers, e.g. [0, 500], got {got!r}"
    low, high = point.plausible
    if low > high:
        return "plausible", f"expected low <= high, got [{low!r}, {high!r}]"
    return None


def _span(point: Point) -> str:
    return str(point.address) if point.size == 1 else f"{point.address}..{point.end - 1}"


# msgspec's messages: "<message> - at `$.points[1].type`" (no suffix at the top of the file).
_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_EXPECTED = re.compile(r"^Expected `(?P<kinds>[^`]+)`(?P<rest>.*?)(?:, got `[^`]+`)?$", re.DOTALL)
_LENGTH = re.compile(r"^ of length (?P<op>[<>]=) (?P<n>\d+)$")
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "array": "an array",
    "object": "a table",
}
# The fields that take one of a few words, and those words.
_CHOICES: dict[str, tuple[str, ...]] = {
    "table": get_args(Table),
    "type": get_args(PointType),
    "word_order": get_args(WordOrder),
    "severity": get_args(Severity),
}
_PATTERNS = {
    _SNAKE: "snake_case like 'power_w'",
    _NAME: "a profile name like 'lighting-single-circuit' (letters, digits, '.', '_', '-')",
}

Loc = tuple[str | int, ...]


def _describe(exc: msgspec.ValidationError, data: Mapping[str, Any]) -> tuple[str, str]:
    """msgspec's error, as (where, problem) in the profile's own terms."""
    if isinstance(exc.__cause__, _Invalid):  # raised by Profile's own checks
        return exc.__cause__.where, exc.__cause__.problem
    message, loc = str(exc), Loc()
    if (at := _AT.match(message)) is not None:
        message, loc = at["message"], _loc(at["path"])
    if (missing := _MISSING.match(message)) is not None:
        return _where((*loc, missing["field"]), data), "missing; this field is required"
    if (unknown := _UNKNOWN.match(message)) is not None:
        where = _where((*loc, unknown["field"]), data)
        return where, "unknown field; check its spelling against config/profiles/README.md"
    return _where(loc, data), _problem(message, loc, data)


def _loc(path: str) -> Loc:
    return tuple(key if key else int(index) for key, index in _STEP.findall(path))


def _problem(message: str, loc: Loc, data: Mapping[str, Any]) -> str:
    given = _value_at(data, loc)
    got = f", got {_shown(given)}"
    field = loc[-1] if loc else ""
    if isinstance(field, str) and field in _CHOICES and isinstance(given, str | int | float):
        choices = _CHOICES[field]
        if field == "type":  # only the types the point's table allows, not every PointType
            point = _value_at(data, loc[:-1])
            table = point.get("table") if isinstance(point, dict) else None
            choices = ("bool",) if table in BIT_TABLES else (*REGISTER_TYPES, "bool")
        return f"expected one of {', '.join(choices)}{got}"
    if field == "points" and message == "Expected `array` of length >= 1":
        return "expected at least one [[points]] table"
    expected = _EXPECTED.match(message)
    if expected is None:  # e.g. "Number out of range"
        return f"{message[0].lower()}{message[1:]}{got}"
    kinds = [kind for kind in expected["kinds"].split(" | ") if kind != "null"]
    words = " or ".join(_KINDS.get(kind, kind) for kind in kinds)
    if field == "points" and kinds == ["array"]:
        words = "an array of tables ([[points]])"
    elif field == "plausible" and kinds == ["array"]:
        words = "an array, e.g. [0, 500]"
    rest = expected["rest"]
    if rest.startswith(" matching regex "):
        pattern = rest.removeprefix(" matching regex ")[1:-1]
        rest = f" like {pattern!r}" if pattern not in _PATTERNS else ""
        words = _PATTERNS.get(pattern, words)
    elif (length := _LENGTH.match(rest)) is not None:
        unit = "characters" if kinds == ["str"] else "items"
        bound = f"{'at most' if length['op'] == '<=' else 'at least'} {length['n']} {unit}"
        rest = " (not empty)" if bound.startswith("at least 1 ") else f" of {bound}"
    return f"expected {words}{rest}{got}"


def _shown(value: Any) -> str:
    """The value given, short: a whole table or array is only named."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and len(value) > 8:
        return "an array"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _value_at(data: Mapping[str, Any], loc: Loc) -> Any:
    node: Any = data
    for key in loc:
        if isinstance(key, int):
            node = node[key] if isinstance(node, list) and key < len(node) else None
        else:
            node = node.get(key) if isinstance(node, dict) else None
    return node


def _where(loc: Loc, data: Mapping[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for key in loc:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts[-1] += f" ({node['name']})"
        else:
            parts.append(key)
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "(file)"
