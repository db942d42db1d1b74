"""The lighting schedule a cabinet runs on its own: switching at dusk and dawn, dimming, exceptions, override.

Central checks it when an operator posts it (a ``set_schedule`` command); the agent checks it again on
receipt, persists it as JSON and evaluates it locally (``edge_agent.lighting.state``) for as long as the
network is away. One model, one validation: what central accepts, a cabinet accepts. JSON shape::

    {
      "latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris",
      "switch_on": {"event": "sunset", "offset_min": 10},
      "switch_off": {"event": "sunrise", "offset_min": -10},
      "default_level_pct": 100,
      "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 70}],
      "exceptions": [
        {"date": "2026-12-24", "mode": "level", "level_pct": 100, "note": "festival"},
        {"date": "2026-07-14", "until": "2026-07-15", "mode": "off", "note": "fireworks"}
      ],
      "override": {"level_pct": 0, "until": "2026-03-29T01:00:00Z", "issued_by": "ops"}
    }

Everything but the location has a default. Semantics:

- ``switch_on``/``switch_off``: the sun events and offsets (minutes, -240..240) bounding each night
  (sunset/sunrise -0.833 degrees, civil -6 degrees). The default, sunset+10min .. sunrise-10min, puts the
  sun near -2 to -3 degrees at mid latitudes, where most cities switch.
- ``dimming``: periods of local wall-clock time (``end`` earlier than ``start`` crosses midnight), applied
  only while the lights are on; elsewhere in the night the level is ``default_level_pct``. Periods must not
  overlap. A boundary in a skipped daylight-saving hour takes effect at the jump, one in the repeated hour
  at its first occurrence.
- ``exceptions``: an exception dated D (through ``until``, inclusive) governs the local *lighting days*
  from 12:00 on D to 12:00 on the day after its last date. A night therefore belongs to the date on which
  it starts (the evening): the 2026-12-24 exception covers the night of the 24th to the 25th, not the
  early hours of the 24th. Modes: ``off``: no lighting during those nights; ``level``: the lights switch
  at dusk and dawn as usual but at ``level_pct`` all night, without dimming; ``on``: lit for the whole
  window, day included (burn tests, daytime events), at ``level_pct`` (default 100). Exceptions must not
  overlap.
- ``override``: an operator's level (0 = off) that wins over everything until ``until`` (UTC); after it
  the schedule resumes by itself. The agent can leave an expired override in place.

Each top-level field is checked on its own, so that one error report names a problem in each of them
(within one field, the first problem found).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from protocols.fleet.errors import FleetError
from protocols.fleet.json_schema import inline_schema
from protocols.fleet.limits import (
    MAX_DIMMING_PERIODS,
    MAX_EXCEPTIONS,
    MAX_ISSUED_BY_CHARS,
    MAX_NOTE_CHARS,
    MAX_ZONE_CHARS,
)
from protocols.fleet.problems import Problem, brief, loc_of, problem_of

SwitchOnEvent = Literal["sunset", "civil_dusk"]
SwitchOffEvent = Literal["sunrise", "civil_dawn"]

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_HHMM_EXPECTED = "expected HH:MM (00:00 to 23:59)"
_ZONE_EXPECTED = "expected an IANA time zone name such as 'Europe/Paris'"
_TOO_DEEP = "nested too deeply to be read: a lighting schedule is 3 levels deep"
MINUTES_PER_DAY = 24 * 60


class ScheduleError(FleetError):
    """``problems`` holds ``(field, problem)`` pairs, e.g. ``("dimming[0].start", "expected HH:MM ...")``."""

    reason = "invalid_schedule"

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid lighting schedule: " + "; ".join(f"{f}: {m}" for f, m in self.problems))


class WallTime(dt.time):
    """A local wall-clock time to the minute, "HH:MM" in JSON."""

    @classmethod
    def parse(cls, value: object) -> WallTime:
        if isinstance(value, dt.time) and value.tzinfo is None and value.second == value.microsecond == 0:
            return cls(value.hour, value.minute)
        match = _HHMM.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"{_HHMM_EXPECTED}, got {brief(value)}")
        return cls(int(match[1]), int(match[2]))

    def __repr__(self) -> str:
        return f"WallTime({self:%H:%M})"


class ZoneName(str):
    """An IANA time zone name this machine's zone database knows."""

    __slots__ = ()

    @classmethod
    def parse(cls, value: object) -> ZoneName:
        if not isinstance(value, str) or len(value) > MAX_ZONE_CHARS:
            raise ValueError(f"{_ZONE_EXPECTED}, got {brief(value)}")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{_ZONE_EXPECTED}, got {brief(value)}") from exc
        return cls(value)


Level = Annotated[int, msgspec.Meta(ge=0, le=100)]
OffsetMin = Annotated[int, msgspec.Meta(ge=-240, le=240)]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
UtcDatetime = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class SwitchOn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: SwitchOnEvent = "sunset"
    offset_min: OffsetMin = 10


class SwitchOff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event: SwitchOffEvent = "sunrise"
    offset_min: OffsetMin = -10


class DimmingPeriod(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: WallTime
    end: WallTime
    level_pct: Level

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start:%H:%M}: expected different times "
                "(end earlier than start crosses midnight)"
            )

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def minutes(self) -> set[int]:
        """The minutes of the day (0..1439) the period covers on the wall clock."""
        start, end = _minute(self.start), _minute(self.end)
        if end > start:
            return set(range(start, end))
        return set(range(start, MINUTES_PER_DAY)) | set(range(end))


class CalendarException(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    date: dt.date
    until: dt.date | None = None
    mode: Literal["off", "on", "level"]
    level_pct: Level | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None

    def __post_init__(self) -> None:
        if self.until is not None and self.until < self.date:
            raise ValueError(f"until ({self.until}) must be on or after date ({self.date})")
        if self.mode == "level" and self.level_pct is None:
            raise ValueError("level_pct is required when mode is 'level' (0..100)")
        if self.mode == "off" and self.level_pct is not None:
            raise ValueError("level_pct must be absent when mode is 'off'")
        if self.mode == "on" and self.level_pct == 0:
            raise ValueError("level_pct must be 1..100 when mode is 'on' (use mode 'off' for 0)")

    @property
    def last_date(self) -> dt.date:
        return self.until if self.until is not None else self.date

    @property
    def level(self) -> int:
        """The level while the exception lights the lamps (0 for ``off``)."""
        if self.mode == "off":
            return 0
        return 100 if self.level_pct is None else self.level_pct

    @property
    def reason(self) -> str:
        span = str(self.date) if self.until in (None, self.date) else f"{self.date}..{self.until}"
        return f"exception {span}" + (f" {self.note}" if self.note else "")


class Override(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level_pct: Level
    until: UtcDatetime
    issued_by: Annotated[str, msgspec.Meta(max_length=MAX_ISSUED_BY_CHARS)] | None = None

    def __post_init__(self) -> None:
        # One instant, one form: stored, hashed and compared in UTC.
        if self.until.tzinfo is not dt.UTC:
            msgspec.structs.force_setattr(self, "until", self.until.astimezone(dt.UTC))

    @property
    def reason(self) -> str:
        by = f" by {self.issued_by}" if self.issued_by else ""
        return f"override until {self.until:%Y-%m-%dT%H:%M:%S}Z{by}"


class LightingSchedule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The lighting schedule the cabinet runs on its own from now on (see this module's doc)."""

    latitude: Latitude
    longitude: Longitude
    timezone: ZoneName
    switch_on: SwitchOn = SwitchOn()
    switch_off: SwitchOff = SwitchOff()
    default_level_pct: Level = 100
    dimming: Annotated[tuple[DimmingPeriod, ...], msgspec.Meta(max_length=MAX_DIMMING_PERIODS)] = ()
    exceptions: Annotated[tuple[CalendarException, ...], msgspec.Meta(max_length=MAX_EXCEPTIONS)] = ()
    override: Override | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def night_reason(self) -> str:
        on, off = self.switch_on, self.switch_off
        return f"night ({on.event}{_offset(on.offset_min)} .. {off.event}{_offset(off.offset_min)})"

    def with_override(self, override: Override | None) -> LightingSchedule:
        """This schedule with ``override`` set (or cleared with None)."""
        return msgspec.structs.replace(self, override=override)


_CUSTOM: dict[type, Any] = {WallTime: WallTime.parse, ZoneName: ZoneName.parse}
_FIELDS = {field.encode_name: field for field in msgspec.structs.fields(LightingSchedule)}
_ORDER = {name: i for i, name in enumerate(_FIELDS)}
_decode_json = msgspec.json.Decoder(dict[str, Any])


def _decode_custom(kind: type, value: object) -> object:
    parse = _CUSTOM.get(kind)
    if parse is None:
        raise NotImplementedError(f"no decoder for {kind!r}")
    return parse(value)


def _encode_custom(value: object) -> object:
    if isinstance(value, WallTime):
        return f"{value:%H:%M}"
    if isinstance(value, ZoneName):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_encode_custom)


def parse_schedule(data: str | bytes | Mapping[str, object]) -> LightingSchedule:
    """Validate a schedule from JSON text or a decoded mapping; raise ScheduleError naming each field."""
    if isinstance(data, str | bytes):
        try:
            data = _decode_json.decode(data)
        except msgspec.ValidationError as exc:  # JSON, but not an object
            raise ScheduleError([("schedule", "expected a JSON object")]) from exc
        except msgspec.DecodeError as exc:
            raise ScheduleError([("schedule", f"Invalid JSON: {exc}")]) from exc
        except RecursionError as exc:  # a hostile text, thousands of levels deep
            raise ScheduleError([("schedule", _TOO_DEEP)]) from exc
    if not isinstance(data, Mapping):
        raise ScheduleError([("schedule", f"expected an object, got {type(data).__name__}")])
    values: dict[str, object] = {}
    problems: list[Problem] = []
    for key, value in data.items():
        field = _FIELDS.get(key) if isinstance(key, str) else None
        if field is None:
            problems.append((str(key), "unknown key"))
            continue
        try:
            values[field.name] = msgspec.convert(value, field.type, dec_hook=_decode_custom)
        except msgspec.ValidationError as exc:
            problems.append(problem_of(exc, key, value, field.type))
    problems += [(name, "required") for name, field in _FIELDS.items() if field.required and name not in data]
    problems += _dimming_overlaps(cast(tuple[DimmingPeriod, ...], values.get("dimming", ())))
    problems += _exception_overlaps(cast(tuple[CalendarException, ...], values.get("exceptions", ())))
    if problems:
        problems.sort(key=_declared_order)
        raise ScheduleError(problems)
    return LightingSchedule(**values)  # type: ignore[arg-type]


def _declared_order(problem: Problem) -> int:
    """Problems in the order of the fields they are about (unknown keys last), whatever the input's."""
    top = loc_of(problem[0])[0]
    return _ORDER.get(top, len(_ORDER)) if isinstance(top, str) else len(_ORDER)


def schedule_json(schedule: LightingSchedule | Override) -> bytes:
    """The schedule (or an override) as compact JSON, fields in their declared order: stable, hashable."""
    return _encoder.encode(schedule)


def schedule_builtins(schedule: LightingSchedule | Override) -> dict[str, Any]:
    """The schedule (or an override) as JSON-ready dicts, lists and texts."""
    result: dict[str, Any] = _decode_json.decode(schedule_json(schedule))
    return result


def parse_override(data: Mapping[str, object]) -> Override:
    """An override as stored by the agent; ScheduleError naming the field when it is not one."""
    try:
        return msgspec.convert(data, Override, dec_hook=_decode_custom)
    except msgspec.ValidationError as exc:
        raise ScheduleError([problem_of(exc, "override", data, Override)]) from exc


def schedule_json_schema() -> dict[str, Any]:
    """The JSON Schema of a schedule, self-contained, for API documents."""
    return inline_schema(LightingSchedule, schema_hook=_schema_of)


def _schema_of(kind: type) -> dict[str, Any]:
    if kind is WallTime:
        return {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}
    if kind is ZoneName:
        return {"type": "string", "maxLength": MAX_ZONE_CHARS, "examples": ["Europe/Paris"]}
    raise NotImplementedError(f"no schema for {kind!r}")


def _dimming_overlaps(periods: tuple[DimmingPeriod, ...]) -> list[Problem]:
    for i, period in enumerate(periods):
        for j, other in enumerate(periods[:i]):
            if period.minutes() & other.minutes():
                return [
                    (
                        "dimming",
                        f"dimming[{i}] ({period.label}) overlaps dimming[{j}] ({other.label}): "
                        "expected periods that do not overlap",
                    )
                ]
    return []


def _exception_overlaps(exceptions: tuple[CalendarException, ...]) -> list[Problem]:
    by_date = sorted(enumerate(exceptions), key=lambda item: item[1].date)
    for (j, earlier), (i, later) in itertools.pairwise(by_date):
        if later.date <= earlier.last_date:
            return [
                (
                    "exceptions",
                    f"exceptions[{i}] ({later.reason}) overlaps exceptions[{j}] ({earlier.reason}): "
                    "expected exceptions on distinct dates",
                )
            ]
    return []


def _minute(at: dt.time) -> int:
    return at.hour * 60 + at.minute


def _offset(minutes: int) -> str:
    return f"{minutes:+d}min" if minutes else ""
