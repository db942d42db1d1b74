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
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class PointAlarm(BaseModel):
    """The alarm a point's value raises (``protocols.driver.AlarmRule``): exactly one condition."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    severity: Literal["info", "warning", "alarm", "critical"] = "alarm"
    when_true: bool = False
    when_in: tuple[str | int, ...] = Field(default=(), strict=False, max_length=32)
    above: float | None = None
    below: float | None = None
    hysteresis_pct: float = Field(default=10.0, ge=0, le=50)
    description: str | None = Field(default=None, max_length=200)

    @property
    def conditions(self) -> int:
        return sum((self.when_true, bool(self.when_in), self.above is not None, self.below is not None))


class Point(BaseModel):
    """One quantity of the device: where it lives and how to turn its registers into a value."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    table: Table
    address: int = Field(ge=0, le=0xFFFF)
    type: PointType
    word_order: WordOrder = "big"
    scale: float = 1.0
    unit: str | None = None
    writable: bool = False
    min: float | None = None
    max: float | None = None
    # [low, high] in scaled units: a value read outside is flagged implausible (bad quality).
    plausible: list[float] | None = None
    # What the agent does with the point (``protocols.driver.LIGHTING_ROLES``: relay, dim_level, ...).
    role: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    alarm: PointAlarm | None = None
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        # The default type depends on the table, so it is filled in before field validation.
        if isinstance(data, dict) and "type" not in data:
            return {**data, "type": "bool" if data.get("table") in BIT_TABLES else "uint16"}
        return data

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


class ProfileHeader(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=_NAME)
    vendor: str | None = None
    description: str = Field(min_length=1)
    # Largest run of unused registers a single read may span; 0 for devices that reject reads
    # touching unmapped addresses.
    max_gap: int = Field(default=16, ge=0, le=125)


class Profile(BaseModel):
    """A parsed, checked profile. Points keep the file's order."""

    model_config = _STRICT

    profile: ProfileHeader
    # Lax only here: TOML arrays arrive as lists; each Point is still validated strictly.
    points: tuple[Point, ...] = Field(min_length=1, strict=False)

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

    @model_validator(mode="after")
    def _check(self) -> Self:
        # Raised as ValueError so pydantic reports it; parse_profile turns it into a ProfileError.
        problem = _first_problem(self.points)
        if problem is not None:
            raise ValueError(problem)
        return self


def parse_profile(text: str, path: str) -> Profile:
    """Parse and check a profile's TOML text. ``path`` is only used in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "(file)", f"not valid TOML: {exc}") from exc
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        where, problem = _describe(exc, data)
        raise ProfileError(path, where, problem) from exc


def read_profile(path: Path) -> Profile:
    """Read and check one profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(str(path), "(file)", f"cannot read: {exc}") from exc
    return parse_profile(text, str(path))


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


def _first_problem(points: Sequence[Point]) -> str | None:
    """Checks that span fields or points, as ``<where>: <problem>`` (the first one found)."""
    seen: dict[str, int] = {}
    declares_roles = any(point.role is not None for point in points)
    for index, point in enumerate(points):
        label = f"points[{index}] ({point.name})"
        if point.name in seen:
            return f"{label}.name: duplicate name; points[{seen[point.name]}] already uses it"
        seen[point.name] = index
        role = point.role if declares_roles else point.named_role
        if problem := _point_problem(point) or _role_problem(point, role):
            field, text = problem
            return f"{label}.{field}: {text}"
        for other_index, other in enumerate(points[:index]):
            if other.table == point.table and other.address < point.end and point.address < other.end:
                return (
                    f"{label}.address: {point.table} {_span(point)} overlaps "
                    f"points[{other_index}] ({other.name}) at {_span(other)}"
                )
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


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> tuple[str, str]:
    """The first pydantic error, as (where, problem) in the profile's own terms."""
    error = exc.errors()[0]
    if error["type"] == "value_error":
        # Raised by Profile._check, already "<where>: <problem>".
        where, _, problem = str(error["ctx"]["error"]).partition(": ")
        return where, problem
    loc = error["loc"]
    return _where(loc, data), _problem(error, _raw_point(loc, data))


def _raw_point(loc: Sequence[int | str], data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The point as written in the file, when the error is inside one."""
    points = data.get("points")
    if len(loc) > 1 and loc[0] == "points" and isinstance(loc[1], int) and isinstance(points, list):
        point = points[loc[1]]
        return point if isinstance(point, dict) else None
    return None


def _where(loc: Sequence[int | str], data: Mapping[str, Any]) -> str:
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


_EXPECTED = {
    "missing": "missing; this field is required",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected an array of tables ([[points]])",
    "list_type": "expected an array, e.g. [0, 500]",
    "model_type": "expected a table",
}


def _problem(error: Mapping[str, Any], point: Mapping[str, Any] | None) -> str:
    kind, field = error["type"], error["loc"][-1]
    got = f", got {error['input']!r}" if kind not in ("missing", "extra_forbidden") else ""
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against config/profiles/README.md"
    if kind == "literal_error" and field == "type" and point is not None:
        # Only the types the point's table allows, not every PointType.
        if point.get("table") in BIT_TABLES:
            return f"expected bool{got}"
        return f"expected one of {', '.join(REGISTER_TYPES)}, bool{got}"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", str(error["ctx"]["expected"])))
        return f"expected one of {choices}{got}"
    if kind == "string_pattern_mismatch" and point is not None:
        return f"expected snake_case like 'power_w'{got}"
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    return f"{error['msg'][0].lower()}{error['msg'][1:]}{got}"
