"""The lighting schedule a cabinet runs on its own: switching at dusk and dawn, dimming, exceptions, override.

Central sends it in a ``set_schedule`` command; the agent persists it as JSON and evaluates it locally
(see ``state.py``) for as long as the network is away. JSON shape::

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

- ``switch_on``/``switch_off``: the sun events and offsets (minutes, -240..240) bounding each night; see
  ``sun.py`` for the levels (sunset/sunrise -0.833 degrees, civil -6 degrees) and polar behaviour. The
  default, sunset+10min .. sunrise-10min, puts the sun near -2 to -3 degrees at mid latitudes, where most
  cities switch.
- ``dimming``: periods of local wall-clock time (``end`` earlier than ``start`` crosses midnight), applied
  only while the lights are on; elsewhere in the night the level is ``default_level_pct``. Periods must not
  overlap. Daylight-saving transitions follow ``wallclock.py``: a boundary in the skipped hour takes effect
  at the jump, one in the repeated hour at its first occurrence.
- ``exceptions``: an exception dated D (through ``until``, inclusive) governs the local *lighting days*
  from 12:00 on D to 12:00 on the day after its last date. A night therefore belongs to the date on which
  it starts (the evening): the 2026-12-24 exception covers the night of the 24th to the 25th, not the
  early hours of the 24th. Modes: ``off``: no lighting during those nights; ``level``: the lights switch
  at dusk and dawn as usual but at ``level_pct`` all night, without dimming; ``on``: lit for the whole
  window, day included (burn tests, daytime events), at ``level_pct`` (default 100). Exceptions must not
  overlap.
- ``override``: an operator's level (0 = off) that wins over everything until ``until`` (UTC); after it
  the schedule resumes by itself. The agent can leave an expired override in place.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Mapping
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from edge_agent.lighting.errors import ScheduleError
from edge_agent.lighting.sun import SwitchOffEvent, SwitchOnEvent

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_HHMM_EXPECTED = "expected HH:MM (00:00 to 23:59)"
MINUTES_PER_DAY = 24 * 60
_SCALARS = (str, int, float, bool)


def _parse_wall_time(value: object) -> dt.time:
    if isinstance(value, dt.time) and value.tzinfo is None and value.second == value.microsecond == 0:
        return value
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{_HHMM_EXPECTED}, got {value!r}")
    return dt.time(int(match[1]), int(match[2]))


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"expected an IANA time zone name such as 'Europe/Paris', got {name!r}") from exc
    return name


def _to_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


WallTime = Annotated[
    dt.time,
    PlainValidator(_parse_wall_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}),
]
Level = Annotated[int, Field(ge=0, le=100, strict=True)]
OffsetMin = Annotated[int, Field(ge=-240, le=240, strict=True)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, strict=True, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, strict=True, allow_inf_nan=False)]
TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SwitchOn(_Model):
    event: SwitchOnEvent = "sunset"
    offset_min: OffsetMin = 10


class SwitchOff(_Model):
    event: SwitchOffEvent = "sunrise"
    offset_min: OffsetMin = -10


class DimmingPeriod(_Model):
    start: WallTime
    end: WallTime
    level_pct: Level

    @model_validator(mode="after")
    def _has_duration(self) -> Self:
        if self.start == self.end:
            raise ValueError(
                f"start and end are both {self.start:%H:%M}: expected different times "
                "(end earlier than start crosses midnight)"
            )
        return self

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


class CalendarException(_Model):
    date: dt.date
    until: dt.date | None = None
    mode: Literal["off", "on", "level"]
    level_pct: Level | None = None
    note: Annotated[str, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.until is not None and self.until < self.date:
            raise ValueError(f"until ({self.until}) must be on or after date ({self.date})")
        if self.mode == "level" and self.level_pct is None:
            raise ValueError("level_pct is required when mode is 'level' (0..100)")
        if self.mode == "off" and self.level_pct is not None:
            raise ValueError("level_pct must be absent when mode is 'off'")
        if self.mode == "on" and self.level_pct == 0:
            raise ValueError("level_pct must be 1..100 when mode is 'on' (use mode 'off' for 0)")
        return self

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


class Override(_Model):
    level_pct: Level
    until: UtcDatetime
    issued_by: Annotated[str, Field(max_length=100)] | None = None

    @property
    def reason(self) -> str:
        by = f" by {self.issued_by}" if self.issued_by else ""
        return f"override until {self.until:%Y-%m-%dT%H:%M:%S}Z{by}"


class LightingSchedule(_Model):
    latitude: Latitude
    longitude: Longitude
    timezone: TimeZoneName
    switch_on: SwitchOn = SwitchOn()
    switch_off: SwitchOff = SwitchOff()
    default_level_pct: Level = 100
    dimming: Annotated[tuple[DimmingPeriod, ...], Field(max_length=24)] = ()
    exceptions: Annotated[tuple[CalendarException, ...], Field(max_length=1000)] = ()
    override: Override | None = None

    @field_validator("dimming")
    @classmethod
    def _dimming_apart(cls, periods: tuple[DimmingPeriod, ...]) -> tuple[DimmingPeriod, ...]:
        for i, period in enumerate(periods):
            for j, other in enumerate(periods[:i]):
                if period.minutes() & other.minutes():
                    raise ValueError(
                        f"dimming[{i}] ({period.label}) overlaps dimming[{j}] ({other.label}): "
                        "expected periods that do not overlap"
                    )
        return periods

    @field_validator("exceptions")
    @classmethod
    def _exceptions_apart(cls, exceptions: tuple[CalendarException, ...]) -> tuple[CalendarException, ...]:
        by_date = sorted(enumerate(exceptions), key=lambda item: item[1].date)
        for (j, earlier), (i, later) in itertools.pairwise(by_date):
            if later.date <= earlier.last_date:
                raise ValueError(
                    f"exceptions[{i}] ({later.reason}) overlaps exceptions[{j}] ({earlier.reason}): "
                    "expected exceptions on distinct dates"
                )
        return exceptions

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def night_reason(self) -> str:
        on, off = self.switch_on, self.switch_off
        return f"night ({on.event}{_offset(on.offset_min)} .. {off.event}{_offset(off.offset_min)})"

    def with_override(self, override: Override | None) -> LightingSchedule:
        """This schedule with ``override`` set (or cleared with None)."""
        return self.model_copy(update={"override": override})


def parse_schedule(data: str | bytes | Mapping[str, object]) -> LightingSchedule:
    """Validate a schedule from JSON text or a decoded mapping; raise ScheduleError naming every field."""
    try:
        if isinstance(data, str | bytes):
            return LightingSchedule.model_validate_json(data)
        return LightingSchedule.model_validate(data)
    except ValidationError as exc:
        raise ScheduleError([_problem(error) for error in exc.errors()]) from exc


def _problem(error: ErrorDetails) -> tuple[str, str]:
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    kind, message = error["type"], error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        message = "required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind != "json_invalid" and "got " not in message and isinstance(error["input"], _SCALARS):
        message += f", got {_brief(error['input'])}"
    return where or "schedule", message


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _minute(at: dt.time) -> int:
    return at.hour * 60 + at.minute


def _offset(minutes: int) -> str:
    return f"{minutes:+d}min" if minutes else ""
