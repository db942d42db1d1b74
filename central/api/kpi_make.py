"""A KPI report's body, made once: from the memo when nothing it is made from changed, else from the
cabinets' parts (``central.api.kpi_parts``), the few that changed computed again.

Used by ``GET /api/v1/kpi`` and by the task that makes the operator page's report ahead
(``central.kpi_ahead``). A report asked while the same one is being made waits for it instead of
making it a second time (an operator opening the page while it is made ahead, several operators at
the start of a quarter).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from typing import NamedTuple

from fastapi import FastAPI, HTTPException

from central.api.app_state import made_once
from central.api.kpi_fetch import Scope, outages_by_device, read_episodes, scope_episodes, scope_of
from central.api.kpi_json import report_json
from central.api.kpi_memo import Body, digest, report_memo
from central.api.kpi_parts import cabinet_keys, encoded_energy, part_memo, report_parts
from central.kpi.availability import Outage
from central.kpi.period import QUARTER_MS, Period, settled_end
from central.kpi.report import (
    CsvTable,
    EnergyReport,
    KpiReport,
    csv_cell,
    csv_table,
    energy_report,
    kpi_report,
)
from central.store import Store
from central.store.kpi_days import CounterEdge, utc_days_of
from central.store.rows import EpisodeTimes

logger = logging.getLogger(__name__)

# Reports computed at once per process: one reads every cabinet's days over the period (seconds for
# a city's month when nothing is kept), so more callers than this get a 429 rather than a store
# loaded by all of them.
MAX_CONCURRENT_REPORTS = 2
# What every report reads first (the registry, the cabinets, the counters' edges, the episodes), to
# find it made or know what to make: this many at once, this many more waiting, the others a 429.
MAX_CONCURRENT_READS = 4
MAX_WAITING_READS = 32
RETRY_AFTER_S = 30
_GATE = "kpi_reports"
_READS = "kpi_reads"
_MAKING = "kpi_making"
_RECENT = "kpi_recent"
# Bodies of reports to the last settled quarter kept per (zone, town, format) to stand in.
RECENT_KEPT = 4


class TooManyReports(HTTPException):
    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            429,
            detail or f"{MAX_CONCURRENT_REPORTS} KPI reports are being computed: retry in a moment",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class _Reads:
    """The reads of reports under way and waiting, bounded (made on first use: one loop per app)."""

    def __init__(self) -> None:
        self.gate = asyncio.Semaphore(MAX_CONCURRENT_READS)
        self.asked = 0  # under way and waiting


def _reads(app: FastAPI) -> _Reads:
    return made_once(app, _READS, _Reads, _Reads)


def report_gate(app: FastAPI) -> asyncio.Semaphore:
    """The app's count of reports under way (made on first use: one event loop per app)."""
    return made_once(app, _GATE, asyncio.Semaphore, lambda: asyncio.Semaphore(MAX_CONCURRENT_REPORTS))


def _making(app: FastAPI) -> dict[tuple[str, str], asyncio.Task[Body]]:
    making: dict[tuple[str, str], asyncio.Task[Body]] = made_once(app, _MAKING, dict, dict)
    return making


def csv_text(report: KpiReport, table: CsvTable) -> str:
    header, rows = csv_table(report, table)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


class Inputs(NamedTuple):
    """What a report of a period is made of, as read now, and each cabinet's key."""

    scope: Scope
    edges: list[CounterEdge]
    raised: list[EpisodeTimes]  # the episodes raised in the period
    overlapping: list[EpisodeTimes]  # those and the ones that may overlap it
    lost: dict[tuple[str, str], list[Outage]]
    keys: dict[str, bytes]


async def read_inputs(store: Store, period: Period, town: str | None) -> Inputs:
    # Read side by side (the store reads on several threads).
    scope, edges, totals, episodes = await asyncio.gather(
        scope_of(store, town),
        store.kpi_counter_edges(start_ms=period.start_ms, end_ms=period.end_ms),
        store.kpi_change_totals(*utc_days_of(period.start_ms, period.end_ms)),
        read_episodes(store, period),
    )
    raised, overlapping = scope_episodes(episodes, scope, period)
    lost = outages_by_device(overlapping)
    keys = cabinet_keys(scope, totals=totals, edges=edges, lost=lost)
    return Inputs(scope, edges, raised, overlapping, lost, keys)


async def energy_of_period(app: FastAPI, store: Store, period: Period, tz: str) -> EnergyReport:
    """The whole city's energy over ``period`` (the open data's), from the parts kept for it, the
    cabinets that changed computed again: the figures of the KPI report of that period."""
    scope, edges, _, _, lost, keys = await read_inputs(store, period, None)
    kept = part_memo(app).of(period, tz, None)
    parts = await report_parts(
        store, scope, period, tz, keys=keys, kept=kept.cabinets, lost=lost, edges=edges
    )
    cabinets = [p.figures.energy for p in parts if p.figures.energy is not None]
    return energy_report(cabinets, period, town_sums=kept.town_sums(keys))


class _Recent:
    """The last bodies made of reports to the last settled quarter, by (zone, town, format): what is
    given while the report of the quarter just settled (or of a change) is being made."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str | None, str], list[tuple[int, int, Body]]] = {}

    def put(self, key: tuple[str, str | None, str], period: Period, body: Body) -> None:
        kept = self._kept.setdefault(key, [])
        kept.insert(0, (period.start_ms, period.end_ms, body))
        del kept[RECENT_KEPT:]

    def stand_in(self, key: tuple[str, str | None, str], period: Period) -> Body | None:
        """The freshest body of the same period (made before a change), or of the period one
        quarter earlier: the same start (this month) or a start a quarter earlier (the last days)."""
        start, end = period.start_ms, period.end_ms
        for s, e, body in self._kept.get(key, ()):
            if (s, e) == (start, end) or (e == end - QUARTER_MS and s in (start, start - QUARTER_MS)):
                return body
        return None


def _recent(app: FastAPI) -> _Recent:
    return made_once(app, _RECENT, _Recent, _Recent)


async def _make(
    app: FastAPI, store: Store, period: Period, tz: str, *, table: CsvTable | None, inputs: Inputs
) -> Body:
    scope, edges, raised, _, lost, keys = inputs
    async with report_gate(app):
        kept = part_memo(app).of(period, tz, scope.town_asked)
        parts = await report_parts(
            store, scope, period, tz, keys=keys, kept=kept.cabinets, lost=lost, edges=edges
        )
        towns = scope.towns
        report = kpi_report(
            period,
            tz,
            cabinets=[p.figures.energy for p in parts if p.figures.energy is not None],
            devices=[d for p in parts for d in p.figures.devices],
            episodes=raised,
            towns=towns,
            town_sums=kept.town_sums(keys),
            delay_report=kept.delay_report(raised, towns, period),
        )
        if table is None:
            return Body(report_json(report, encoded_energy(parts)))
        return Body(csv_text(report, table).encode())


async def report_body(
    app: FastAPI,
    store: Store,
    period: Period,
    tz: str,
    *,
    town: str | None,
    table: CsvTable | None,
    now_ms: int | None = None,
) -> Body:
    """The report's body: JSON, or the CSV ``table``. Raises ``TooManyReports`` when it must be made
    and as many as ``MAX_CONCURRENT_REPORTS`` are being made.

    A report is made by a task of its own, which a caller that leaves does not stop: the next finds
    it made. With ``now_ms``, a report to the last settled quarter that is being made (the quarter
    just settled: seconds for a city's month, once a quarter) is answered at once with the last one
    made of it, or of the period a quarter earlier (its ``period`` says which), if there is one."""
    reads = _reads(app)
    if reads.asked >= MAX_CONCURRENT_READS + MAX_WAITING_READS:
        raise TooManyReports(f"{reads.asked} KPI reports are being read: retry in a moment")
    reads.asked += 1
    try:
        async with reads.gate:
            inputs = await read_inputs(store, period, town)
    finally:
        reads.asked -= 1
    body_key = "json" if table is None else f"csv:{table}"
    made = (digest(period, tz, inputs.scope, cabinets=inputs.keys, episodes=inputs.overlapping), body_key)
    memo = report_memo(app)
    body = memo.get(*made)
    if body is not None:
        return body
    recent_key = (tz, inputs.scope.town_asked, body_key)
    to_now = now_ms is not None and period.end_ms == settled_end(now_ms)
    stand_in = _recent(app).stand_in(recent_key, period) if to_now else None
    making = _making(app)
    underway = making.get(made)
    if underway is None:
        if report_gate(app).locked():
            if stand_in is not None:
                return stand_in
            raise TooManyReports
        underway = making[made] = asyncio.create_task(
            _make(app, store, period, tz, table=table, inputs=inputs), name="central-kpi-report"
        )

        def done(task: asyncio.Task[Body]) -> None:
            del making[made]
            if task.cancelled():
                return
            if (failure := task.exception()) is not None:  # the waiters have it too
                logger.warning("KPI report of %s-%s not made: %s", period.start_ms, period.end_ms, failure)
                return
            memo.put(*made, task.result())
            if to_now:
                _recent(app).put(recent_key, period, task.result())

        underway.add_done_callback(done)
    if stand_in is not None:
        return stand_in
    try:
        return await asyncio.shield(underway)
    except asyncio.CancelledError:
        if not underway.cancelled():
            raise  # this request was cancelled
        raise TooManyReports from None  # the one making it was stopped: ask again
