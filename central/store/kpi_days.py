"""The KPI report's cache of each cabinet's figures per local day, as every backend keeps it.

``kpi_days`` holds one row per (time zone, local day, cabinet): what ``central.kpi.days`` summed from
the cabinet's 15-minute rollups of that day, encoded by it (the store never reads ``figures``).
``kpi_changes`` counts, per (cabinet, UTC day), the batches that stored new readings on that day
late, in a quarter already settled: the writer bumps it in the batch's transaction. A row is current
while the sum of those counts over the UTC days it overlaps is the ``gen`` it was computed with
(counts only grow); the figures are computed after that sum is read, so a batch committed meanwhile
makes the row stale, never wrong.

Why only those: a KPI report ends at the last quarter settled a minute ago (``central.kpi.period``:
``SETTLE_MS``), so a batch whose readings are all newer than the quarter under way ``LATE_MARGIN_MS``
ago changes nothing a report made before it holds: the quarter they fall in settles after it is
written. Any batch that changes a figure already made holds a reading older than that, since
``LATE_MARGIN_MS`` is less than ``SETTLE_MS`` by more than the clocks of central's hosts differ
and a batch takes from this judgement to its commit (30 s: central's hosts keep NTP time). Counting
only those, a live cabinet's batch (its readings seconds old) costs the writer no bump, and a report
of the last 30 days stays current while the city keeps sending, until its period moves on.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass

from central.store.rollups import WIDTH_MS
from central.store.rows import BatchOutcome, ReceivedBatch

DAY_MS = 86_400_000
QUARTER_MS = WIDTH_MS["15m"]
LATE_MARGIN_MS = 30_000
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


def changed_days(
    batches: Sequence[ReceivedBatch], outcomes: Sequence[BatchOutcome], *, now_ms: int | None = None
) -> list[tuple[str, int]]:
    """(cabinet, UTC day) of every batch that stored new readings and holds one older than the
    quarter under way ``LATE_MARGIN_MS`` before ``now_ms`` (default: now), sorted (the lock order)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    under_way = (now - LATE_MARGIN_MS) // QUARTER_MS * QUARTER_MS
    days: set[tuple[str, int]] = set()
    for received, outcome in zip(batches, outcomes, strict=True):
        if outcome.readings_new <= 0:
            continue
        batch = received.batch
        stamps = [r.ts for r in batch.readings]
        oldest = min(stamps)
        if oldest >= under_way:
            continue  # all in a quarter not settled yet, or later: no figure made yet holds them
        first, last = utc_day(oldest), utc_day(max(stamps))
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
