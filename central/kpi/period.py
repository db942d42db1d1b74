"""The period of a KPI report: [start_ms, end_ms) on the 15-minute grid, cut into the city's local days.

The figures come from 15-minute rollups (``central.store.rollups``), kept for the contract's life, so
the period's ends are snapped outwards to that grid, and its end is cut at the last quarter that
ended at least ``SETTLE_MS`` before now: the quarter under way is not complete, and the one just
ended still has readings in flight (a cabinet sends every 10 to 60 s). Settled quarters change only
when late data lands on them, which is what the KPI day cache counts (``central.store.kpi_days``).
A local day cut by an end is a part of a day:
``full_ms`` is the length of the whole day (23, 24 or 25 h), what a per-day baseline is prorated by.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from central.energy import Day, local_days
from central.store.rollups import WIDTH_MS

QUARTER_MS = WIDTH_MS["15m"]
SETTLE_MS = 60_000
MAX_PERIOD_DAYS = 366
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class PeriodError(ValueError):
    """A period the report cannot be made for; ``field`` names the query parameter to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class KpiDay:
    """A local day, or the part of it inside the period: [start_ms, end_ms), the whole day ``full_ms``."""

    date: dt.date
    start_ms: int
    end_ms: int
    full_ms: int

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms

    @property
    def share(self) -> float:
        """The part of the whole day inside the period (1.0 for a whole day)."""
        return self.length_ms / self.full_ms if self.full_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Period:
    start_ms: int
    end_ms: int
    days: tuple[KpiDay, ...]

    @property
    def length_ms(self) -> int:
        return self.end_ms - self.start_ms

    def energy_days(self) -> list[Day]:
        """The days as ``central.energy`` takes them (contiguous, cut to the period)."""
        return [Day(d.date, d.start_ms, d.end_ms) for d in self.days]


def floor_quarter(ms: int) -> int:
    return ms - ms % QUARTER_MS


def ceil_quarter(ms: int) -> int:
    return -(-ms // QUARTER_MS) * QUARTER_MS


def settled_end(now_ms: int) -> int:
    """The end of the last settled quarter at ``now_ms``: the latest end a report has."""
    return floor_quarter(now_ms - SETTLE_MS)


def kpi_period(start_ms: int, end_ms: int, tz: dt.tzinfo, *, now_ms: int) -> Period:
    """The period [start_ms, end_ms) snapped outwards to whole quarters, its end at most the start of
    the quarter under way ``SETTLE_MS`` before ``now_ms`` (``settled_end``), cut into the local days of
    ``tz``."""
    if end_ms <= start_ms:
        raise PeriodError("to", "to must be after from (from is inclusive, to exclusive)")
    if end_ms - start_ms > MAX_PERIOD_DAYS * 86_400_000:
        raise PeriodError("to", f"a report covers at most {MAX_PERIOD_DAYS} days: ask for a shorter period")
    start, end = floor_quarter(start_ms), min(ceil_quarter(end_ms), settled_end(now_ms))
    if end <= start:
        problem = "from must be before the last quarter that ended a minute ago: the period has no data yet"
        raise PeriodError("from", problem)
    return Period(start, end, tuple(days_of(start, end, tz)))


def days_of(start_ms: int, end_ms: int, tz: dt.tzinfo) -> list[KpiDay]:
    """The local days of ``tz`` that [start_ms, end_ms) overlaps, each cut to it."""
    first, last = _local_date(start_ms, tz), _local_date(end_ms - 1, tz)
    days: list[KpiDay] = []
    for day in local_days(first, last, tz):
        if day.start_ms % QUARTER_MS or day.end_ms % QUARTER_MS:
            problem = f"{tz} has a day ({day.date}) that does not start on a quarter hour"
            raise PeriodError("tz", problem + ": use a zone in use today")
        full = day.end_ms - day.start_ms
        cut = KpiDay(day.date, max(day.start_ms, start_ms), min(day.end_ms, end_ms), full)
        if cut.length_ms > 0:
            days.append(cut)
    return days


def day_index(days: Sequence[KpiDay], ts_ms: int) -> int | None:
    """The index of the day holding ``ts_ms`` (a bisection), or None outside the days."""
    lo, hi = 0, len(days)
    while lo < hi:
        mid = (lo + hi) // 2
        if days[mid].end_ms <= ts_ms:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(days) and days[lo].start_ms <= ts_ms else None


def _local_date(ms: int, tz: dt.tzinfo) -> dt.date:
    return (_EPOCH + dt.timedelta(milliseconds=ms)).astimezone(tz).date()
