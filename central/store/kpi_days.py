"""The KPI report's cache of each cabinet's figures per local day, as every backend keeps it.

``kpi_days`` holds one row per (time zone, local day, cabinet): what ``central.kpi.days`` summed from
the cabinet's 15-minute rollups of that day, encoded by it (the store never reads ``figures``).
``kpi_changes`` counts, per (cabinet, UTC day), the batches whose new readings fell on that day: the
writer bumps it in the batch's transaction. A row is current while the sum of those counts over the
UTC days it overlaps is the ``gen`` it was computed with (counts only grow); the figures are computed
after that sum is read, so a batch committed meanwhile makes the row stale, never wrong.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from central.store.rows import BatchOutcome, ReceivedBatch

DAY_MS = 86_400_000
# A batch's readings spanning more UTC days than this are marked day by day from the set of their
# days (a cabinet's backlog), not from the range between the first and the last.
_RANGE_DAYS = 2


@dataclass(frozen=True, slots=True)
class KpiDayRow:
    """One cabinet's figures of one local day of ``tz``, overlapping UTC days first..last_utc_day."""

    tz: str
    cabinet: str
    date: dt.date
    first_utc_day: int
    last_utc_day: int
    gen: int
    shape: str  # what the figures were computed for (points and devices): they serve that only
    figures: bytes
    computed_ms: int


@dataclass(frozen=True, slots=True)
class CounterEdge:
    """An energy counter of a cabinet, and its counted readings nearest a period's two ends: the last
    one before it (a 15-minute rollup's last) and the first one from its end (a rollup's first)."""

    cabinet: str
    point: str
    before: tuple[int, float] | None
    after: tuple[int, float] | None


def utc_day(ms: int) -> int:
    return ms // DAY_MS


def changed_days(batches: Sequence[ReceivedBatch], outcomes: Sequence[BatchOutcome]) -> list[tuple[str, int]]:
    """(cabinet, UTC day) of every batch that stored new readings, sorted (the lock order)."""
    days: set[tuple[str, int]] = set()
    for received, outcome in zip(batches, outcomes, strict=True):
        if outcome.readings_new <= 0:
            continue
        batch = received.batch
        stamps = [r.ts for r in batch.readings]
        first, last = utc_day(min(stamps)), utc_day(max(stamps))
        cabinet = batch.cabinet
        if last - first <= _RANGE_DAYS:
            days.update((cabinet, d) for d in range(first, last + 1))
        else:
            days.update((cabinet, utc_day(ts)) for ts in stamps)
    return sorted(days)


def gen_of(gens: dict[int, int], first_utc_day: int, last_utc_day: int) -> int:
    """The change count of a local day from its UTC days' counts (none: 0)."""
    return sum(gens.get(d, 0) for d in range(first_utc_day, last_utc_day + 1))


def utc_days_of(start_ms: int, end_ms: int) -> tuple[int, int]:
    """The UTC days [start_ms, end_ms) overlaps."""
    return utc_day(start_ms), utc_day(end_ms - 1)
