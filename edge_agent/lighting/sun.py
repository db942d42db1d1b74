"""When the lights of one location are on, from the sun's elevation (astral 3.2, no I/O, no clock).

Levels. ``sunset``/``sunrise`` is the sun's centre at -0.833 degrees (upper limb on the horizon with
standard refraction, the almanac definition); ``civil_dusk``/``civil_dawn`` is -6 degrees. Elevations are
geometric (astral's ``elevation(..., with_refraction=False)``), so these are the published definitions.

The rule, per *solar day*: a solar day runs from one solar noon to the next (astral's ``noon`` of
consecutive UTC dates) and its solar midnight, halfway, splits it into two halves where the elevation only
goes down (evening) or only up (morning).

- Evening half: the lights are on once the sun is below the switch-on level; the crossing is moved by the
  switch-on offset. If the sun was already below that level at noon, the lights are on from noon.
- Morning half: the lights are on until the sun rises through the switch-off level; the crossing is moved
  by the switch-off offset. If the sun is still below that level at the next noon, they stay on through it.
- When both halves are lit at midnight, they form one night, from the (offset) switch-on to the (offset)
  switch-off; if offsets make it empty or negative, that night has no lighting. Nights that touch or
  overlap (offsets on a very short day) merge.

Consequences, worth knowing at high latitude:
- polar night (sun below the switch-on level at noon, and below the switch-off level at the next noon):
  the lights stay on continuously, day after day;
- midnight sun (sun above both levels at midnight): the lights stay off;
- with mixed levels (e.g. ``sunset`` on, ``civil_dawn`` off), on a night when the sun gets below one
  level but not the other, the lights switch at solar midnight; in polar twilight (sun between the levels
  at noon) they switch at solar noon. Choosing matching events avoids both.

The evening is found by time, not by calendar date, so far-east or far-west longitudes relative to the time
zone (solar times near local midnight) and high latitudes (sunset after local midnight) pick the right one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from astral import Observer
from astral.sun import elevation, noon

from protocols.fleet.schedule import SwitchOffEvent, SwitchOnEvent

SUNSET_DEG = -0.833
CIVIL_TWILIGHT_DEG = -6.0


def event_elevation(event: SwitchOnEvent | SwitchOffEvent) -> float:
    """The sun's geometric elevation, in degrees, at which ``event`` happens."""
    return SUNSET_DEG if event in ("sunset", "sunrise") else CIVIL_TWILIGHT_DEG


@dataclass(frozen=True, slots=True)
class NightRule:
    """When a night starts and ends: a level (degrees) and an offset (seconds) each way."""

    on_deg: float
    on_offset_s: int
    off_deg: float
    off_offset_s: int


class SolarClock:
    """The sun at one location. Caches solar noons per UTC date for its own lifetime (one computation)."""

    def __init__(self, latitude: float, longitude: float) -> None:
        self._observer = Observer(latitude, longitude)
        self._noons: dict[date, int] = {}

    def elevation(self, second: int) -> float:
        """The sun's geometric elevation in degrees at a POSIX second."""
        when = datetime.fromtimestamp(second, UTC)
        return float(elevation(self._observer, when, with_refraction=False))

    def noon(self, day: date) -> int:
        """Solar noon (POSIX seconds) of the UTC date ``day``."""
        if day not in self._noons:
            self._noons[day] = int(noon(self._observer, day).timestamp())
        return self._noons[day]

    def lit_intervals(self, rule: NightRule, first: date, last: date) -> list[tuple[datetime, datetime]]:
        """The lit intervals (UTC, unmerged) of the solar days starting at the noons of ``first..last``."""
        intervals: list[tuple[datetime, datetime]] = []
        for day in _days(first, last):
            intervals.extend(
                (datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC))
                for a, b in self._solar_day(rule, day)
            )
        return intervals

    def _solar_day(self, rule: NightRule, day: date) -> list[tuple[int, int]]:
        noon0, noon1 = self.noon(day), self.noon(day + timedelta(days=1))
        midnight = (noon0 + noon1) // 2
        at_midnight = self.elevation(midnight)
        lit_evening, lit_morning = at_midnight < rule.on_deg, at_midnight < rule.off_deg
        start = end = midnight
        if lit_evening:
            if self.elevation(noon0) < rule.on_deg:
                start = noon0
            else:
                below = self._first(noon0, midnight, lambda s: self.elevation(s) < rule.on_deg)
                start = below + rule.on_offset_s
        if lit_morning:
            if self.elevation(noon1) < rule.off_deg:
                end = noon1
            else:
                above = self._first(midnight, noon1, lambda s: self.elevation(s) >= rule.off_deg)
                end = above + rule.off_offset_s
        return [(start, end)] if end > start else []

    @staticmethod
    def _first(false_at: int, true_at: int, holds: Callable[[int], bool]) -> int:
        """The first whole second in ``(false_at, true_at]`` where a monotonic condition holds."""
        while true_at - false_at > 1:
            middle = (false_at + true_at) // 2
            if holds(middle):
                true_at = middle
            else:
                false_at = middle
        return true_at


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
