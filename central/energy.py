"""Energy per local day from cumulative energy counters (Wh). Pure: no I/O, no clock.

A counter's reading is how many Wh it has counted since it was last reset. Between two consecutive
good readings (t0, v0) and (t1, v1):

- v1 >= v0: v1 - v0 Wh were consumed during [t0, t1];
- v1 < v0: the counter was reset (meter replaced, controller rebooted, rolled over). What was consumed
  between t0 and the reset is lost; v1 was consumed since the reset and is counted. Flagged ``reset``.
- more than ``max_power_w`` x (t1 - t0) is not consumption but a glitch (a misread register, a counter
  that jumped): not counted, flagged ``absurd``.

An interval's energy is spread evenly over its duration: one across midnight gives each day its share
by time. When such an interval is longer than ``flag_gap_ms`` (readings were missing), the share is an
estimate and the days it lands on are flagged ``interpolated``. The short interval that every polled
counter has across midnight is split the same way but not flagged: its error is seconds of power.

Readings of bad or uncertain quality, and values that are not finite non-negative numbers, are skipped
(counted in ``skipped``): the interval then runs from the previous good reading to the next.
A day's flags say that its total is affected; ``covered_ms`` how much of it readings account for.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from protocols.quality import Quality

MS_PER_HOUR = 3_600_000
DEFAULT_MAX_POWER_W = 100_000.0
DEFAULT_FLAG_GAP_MS = 15 * 60 * 1000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)

# (ts_ms, value, quality) of one reading, as stored.
Sample = tuple[int, object, int]


@dataclass(frozen=True, slots=True)
class EnergySettings:
    max_power_w: float = DEFAULT_MAX_POWER_W
    flag_gap_ms: int = DEFAULT_FLAG_GAP_MS

    def __post_init__(self) -> None:
        if not self.max_power_w > 0:
            raise ValueError(f"max_power_w must be positive, got {self.max_power_w}")
        if self.flag_gap_ms < 0:
            raise ValueError(f"flag_gap_ms must not be negative, got {self.flag_gap_ms}")


@dataclass(frozen=True, slots=True)
class Day:
    """One local calendar day as a UTC range [start_ms, end_ms): 23 or 25 h when clocks change."""

    date: dt.date
    start_ms: int
    end_ms: int


@dataclass(slots=True)
class DayEnergy:
    date: dt.date
    wh: float = 0.0
    covered_ms: int = 0
    interpolated: bool = False
    reset: bool = False
    absurd: bool = False


@dataclass(slots=True)
class PointEnergy:
    """One counter over a range of days; ``resets``/``absurd``/``skipped`` count intervals/readings."""

    days: list[DayEnergy]
    resets: int = 0
    absurd: int = 0
    skipped: int = 0
    readings: int = 0

    @property
    def total_wh(self) -> float:
        return math.fsum(day.wh for day in self.days)


def local_days(first: dt.date, last: dt.date, tz: dt.tzinfo) -> list[Day]:
    """The days first..last (inclusive) of the time zone ``tz``."""
    if last < first:
        raise ValueError(f"the last day {last} is before the first {first}")
    days: list[Day] = []
    date, start = first, _midnight_ms(first, tz)
    while date <= last:
        following = date + dt.timedelta(days=1)
        end = _midnight_ms(following, tz)
        days.append(Day(date, start, end))
        date, start = following, end
    return days


def _midnight_ms(date: dt.date, tz: dt.tzinfo) -> int:
    return (dt.datetime.combine(date, dt.time(0), tzinfo=tz) - _EPOCH) // _MS


def point_energy(
    readings: Iterable[Sample], days: Sequence[Day], settings: EnergySettings | None = None
) -> PointEnergy:
    """Energy of one counter per day of ``days`` (contiguous, in order) from readings sorted by time.

    Readings outside the days count for the intervals they bound: give the last good reading before
    the first day and the first one after the last day to account for the edges.
    """
    meter = EnergyMeter(days, settings)
    meter.add(readings)
    return meter.result


class EnergyMeter:
    """``point_energy`` fed piece by piece: readings arrive in chunks from a long read."""

    def __init__(self, days: Sequence[Day], settings: EnergySettings | None = None) -> None:
        self._spreader = _Spreader(days, settings or EnergySettings())
        self._previous: tuple[int, float] | None = None

    @property
    def result(self) -> PointEnergy:
        return self._spreader.result

    def add(self, readings: Iterable[Sample]) -> None:
        """More readings, later than (or as late as) the ones already added."""
        spreader = self._spreader
        result = spreader.result
        previous = self._previous
        for ts, value, quality in readings:
            result.readings += 1
            counter = counter_value(value, quality)
            if counter is None:
                result.skipped += 1
                continue
            if previous is not None:
                if ts < previous[0]:
                    raise ValueError(f"readings must be sorted by time: {ts} comes after {previous[0]}")
                spreader.interval(previous[0], previous[1], ts, counter)
            previous = (ts, counter)
        self._previous = previous

    def add_summary(
        self,
        *,
        first: tuple[int, float] | None,
        last: tuple[int, float] | None,
        wh: float,
        covered_ms: int,
        resets: int,
        absurd: int,
        readings: int,
        skipped: int,
    ) -> None:
        """A summary of consecutive readings instead of the readings (a 15-minute rollup), later than
        those already added: its first and last counted readings, what the intervals between its
        counted readings gave (``wh`` over ``covered_ms``; glitches counted 0) and how many of them
        were resets or glitches. All its readings lie within one day of the meter's days.

        The interval from the previous counted reading to ``first`` is spread as ``add`` spreads it:
        fed summaries of every quarter, the meter gives what ``add`` gives fed the readings.
        """
        spreader = self._spreader
        result = spreader.result
        result.readings += readings
        result.skipped += skipped
        if first is None or last is None:
            return
        previous = self._previous
        if previous is not None:
            if first[0] < previous[0]:
                raise ValueError(f"summaries must be sorted by time: {first[0]} comes after {previous[0]}")
            spreader.interval(previous[0], previous[1], first[0], first[1])
        spreader.inside(first[0], wh=wh, covered_ms=covered_ms, resets=resets, absurd=absurd)
        self._previous = last


def counter_value(value: object, quality: int) -> float | None:
    """The counter's value in Wh, or None when the reading does not count (bad, not a number)."""
    if quality != Quality.GOOD or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def interval_energy(t0: int, v0: float, t1: int, v1: float, max_power_w: float) -> tuple[float, bool, bool]:
    """(Wh, reset, absurd) of the interval between two good readings; an absurd one counts 0 Wh."""
    reset = v1 < v0
    wh = v1 if reset else v1 - v0
    if wh > max_power_w * (t1 - t0) / MS_PER_HOUR:
        return 0.0, reset, True
    return wh, reset, False


class _Spreader:
    """Spreads the energy of each interval over the days it overlaps."""

    def __init__(self, days: Sequence[Day], settings: EnergySettings) -> None:
        for before, after in pairwise(days):
            if before.end_ms != after.start_ms:
                raise ValueError(f"days must be contiguous: {before.date} then {after.date}")
        self._days = days
        self._starts = [day.start_ms for day in days]
        self._settings = settings
        self.result = PointEnergy([DayEnergy(day.date) for day in days])

    def interval(self, t0: int, v0: float, t1: int, v1: float) -> None:
        wh, reset, absurd = interval_energy(t0, v0, t1, v1, self._settings.max_power_w)
        pieces = self._pieces(t0, t1)
        if absurd:
            self.result.absurd += 1
            for i, _ in pieces or self._day_of(t1):
                self.result.days[i].absurd = True
            return
        if reset:
            self.result.resets += 1
        split = len(pieces) > 1 or (len(pieces) == 1 and pieces[0][1] < t1 - t0)
        interpolated = split and t1 - t0 > self._settings.flag_gap_ms
        for i, overlap in pieces:
            day = self.result.days[i]
            day.wh += wh * overlap / (t1 - t0)
            day.covered_ms += overlap
            day.interpolated |= interpolated
            day.reset |= reset

    def inside(self, ts: int, *, wh: float, covered_ms: int, resets: int, absurd: int) -> None:
        """What intervals that all lie in the day of ``ts`` gave."""
        self.result.resets += resets
        self.result.absurd += absurd
        for i, _ in self._day_of(ts):
            day = self.result.days[i]
            day.wh += wh
            day.covered_ms += covered_ms
            day.reset |= resets > 0
            day.absurd |= absurd > 0

    def _pieces(self, t0: int, t1: int) -> list[tuple[int, int]]:
        """(day index, overlap in ms) for each day that [t0, t1] overlaps."""
        days = self._days
        pieces: list[tuple[int, int]] = []
        i = max(bisect_right(self._starts, t0) - 1, 0)
        while i < len(days) and days[i].start_ms < t1:
            overlap = min(t1, days[i].end_ms) - max(t0, days[i].start_ms)
            if overlap > 0:
                pieces.append((i, overlap))
            i += 1
        return pieces

    def _day_of(self, ts: int) -> list[tuple[int, int]]:
        i = bisect_right(self._starts, ts) - 1
        return [(i, 0)] if 0 <= i < len(self._days) and ts < self._days[i].end_ms else []
