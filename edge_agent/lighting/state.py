"""What the lights should do at an instant, and every change over a range: pure functions of the instant.

Precedence, highest first:

1. ``override`` until its ``until``;
2. an exception in mode ``on`` (lit all window);
3. day (outside every night): off;
4. an exception in mode ``off`` or ``level`` (the night's level, no dimming);
5. a dimming period;
6. ``default_level_pct``.

A level of 0 means off (``on`` is False), whatever gave it. A *change* is a change of ``on``,
``level_pct`` or ``reason``; the reason never names a particular night's times, so two consecutive
nights are not a change.

Both functions look at most ``HORIZON`` either side of the instants they are given: ``since`` is None
when the state began longer ago than that (polar night, an override with no start), and ``next_change``
is at most ``HORIZON`` ahead (then it is a time to look again, not a change). Within that, the two agree
exactly: ``desired_state(schedule, t) == state`` for every ``(t, state)`` that ``transitions`` lists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from edge_agent.lighting.spans import Span, Spans, union
from edge_agent.lighting.sun import NightRule, SolarClock, event_elevation
from edge_agent.lighting.wallclock import local_date, wall_to_utc
from protocols.fleet.schedule import DimmingPeriod, LightingSchedule

HORIZON = timedelta(hours=36)
_NOON = time(12, 0)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class LightingState:
    on: bool
    level_pct: int
    reason: str
    since: datetime | None
    next_change: datetime


def desired_state(schedule: LightingSchedule, now: datetime) -> LightingState:
    """The state ``schedule`` asks for at ``now`` (an aware datetime; the result is in UTC)."""
    now = _utc(now, "now")
    segment = next(s for s in _Plan(schedule, now - HORIZON, now + HORIZON).segments() if s.end > now)
    return segment.state_at(now)


def transitions(
    schedule: LightingSchedule, start: datetime, end: datetime
) -> list[tuple[datetime, LightingState]]:
    """The state in force at ``start``, then every change in ``(start, end)``, in order (UTC)."""
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        return []
    segments = _Plan(schedule, start - HORIZON, end + HORIZON).segments()
    return [
        (max(s.start, start), s.state_at(max(s.start, start)))
        for s in segments
        if s.end > start and s.start < end
    ]


@dataclass(frozen=True, slots=True)
class _Segment:
    """A maximal stretch of one state; ``start``/``end`` are clipped to the plan's window."""

    start: datetime
    end: datetime
    on: bool
    level_pct: int
    reason: str

    def state_at(self, instant: datetime) -> LightingState:
        since = self.start if self.start > instant - HORIZON else None
        return LightingState(self.on, self.level_pct, self.reason, since, min(self.end, instant + HORIZON))


class _Plan:
    """Everything ``schedule`` says about the window ``[lo, hi]``, as UTC spans."""

    def __init__(self, schedule: LightingSchedule, lo: datetime, hi: datetime) -> None:
        self._schedule, self._lo, self._hi = schedule, lo, hi
        zone = schedule.zone
        first_day, last_day = local_date(lo, zone) - _DAY, local_date(hi, zone) + _DAY
        self._nights = Spans(Span(a, b, True) for a, b in _nights(schedule, lo, hi))
        self._dimming = Spans(
            _dimming_span(period, day, zone)
            for day in _dates(first_day, last_day)
            for period in schedule.dimming
        )
        self._exceptions = Spans(
            Span(wall_to_utc(e.date, _NOON, zone), wall_to_utc(e.last_date + _DAY, _NOON, zone), e)
            for e in schedule.exceptions
            if e.date <= last_day and e.last_date >= first_day
        )

    def segments(self) -> list[_Segment]:
        edges = itertools.chain(self._nights.edges(), self._dimming.edges(), self._exceptions.edges())
        cuts = {t for t in edges if self._lo < t < self._hi}
        if self._schedule.override is not None and self._lo < self._schedule.override.until < self._hi:
            cuts.add(self._schedule.override.until)
        bounds = [self._lo, *sorted(cuts), self._hi]
        merged: list[_Segment] = []
        for start, end in itertools.pairwise(bounds):
            on, level, reason = self._state(start)
            if merged and (merged[-1].on, merged[-1].level_pct, merged[-1].reason) == (on, level, reason):
                merged[-1] = _Segment(merged[-1].start, end, on, level, reason)
            else:
                merged.append(_Segment(start, end, on, level, reason))
        return merged

    def _state(self, instant: datetime) -> tuple[bool, int, str]:
        schedule = self._schedule
        override = schedule.override
        if override is not None and instant < override.until:
            return _lit(override.level_pct, override.reason)
        exception = self._exceptions.at(instant)
        if exception is not None and exception.mode == "on":
            return _lit(exception.level, exception.reason)
        if self._nights.at(instant) is None:
            return False, 0, "day"
        if exception is not None:
            return _lit(exception.level, exception.reason)
        period = self._dimming.at(instant)
        if period is not None:
            return _lit(period.level_pct, f"dimming {period.label}")
        return _lit(schedule.default_level_pct, schedule.night_reason)


def _nights(schedule: LightingSchedule, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
    """The merged lit intervals around ``[lo, hi]``; padded so a night reaching into it is whole."""
    on, off = schedule.switch_on, schedule.switch_off
    rule = NightRule(
        event_elevation(on.event), on.offset_min * 60, event_elevation(off.event), off.offset_min * 60
    )
    clock = SolarClock(schedule.latitude, schedule.longitude)
    # The night of the solar day starting at the noon of UTC date k lies within [k - 4h16, k + 2d + 4h16]
    # (noons drift +-16 min from 12:00 at the local meridian; offsets are at most 4 h): these days cover it.
    return union(clock.lit_intervals(rule, lo.date() - 2 * _DAY, hi.date() + _DAY))


def _dimming_span(period: DimmingPeriod, day: date, zone: ZoneInfo) -> Span[DimmingPeriod]:
    """The period starting on local date ``day`` (ending the next day if it crosses midnight)."""
    end_day = day + _DAY if period.crosses_midnight else day
    return Span(wall_to_utc(day, period.start, zone), wall_to_utc(end_day, period.end, zone), period)


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _lit(level: int, reason: str) -> tuple[bool, int, str]:
    return level > 0, level, reason


def _utc(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC), got naive {instant.isoformat()}")
    return instant.astimezone(UTC)
