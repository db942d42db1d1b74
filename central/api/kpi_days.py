"""The KPI report's figures from the day cache (``central.store.kpi_days``), filled as it goes.

A report reads the period's cached days of every cabinet in one query and the counters' readings
nearest the period's ends in another; a whole day missing from the cache, or stale (readings arrived
on it since), or made for another inventory, is computed from the cabinet's 15-minute rollups, a
few cabinets at once, and stored. The parts of days at the period's ends are computed each time
(they are never cached). A device with a device_lost episode in the period is computed from its
probe's quarters, as ``central.api.kpi_fetch`` does. ``fill_days`` is what the leader's task runs
ahead of the reports (``central.kpi_warm``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from central.api.kpi_fetch import CabinetFigures, Scope, each_cabinet, equipment_class, scope_of
from central.kpi.availability import (
    DeviceAvailability,
    DeviceInput,
    Outage,
    device_availability,
    lost_intervals,
)
from central.kpi.days import (
    CabinetDay,
    CabinetPlan,
    ProbedDevice,
    cabinet_day,
    cabinet_energy_of_days,
    decode_day,
    device_available_of_days,
    encode_day,
    in_day,
)
from central.kpi.energy import CabinetMeta, is_relay
from central.kpi.period import QUARTER_MS, KpiDay, Period, kpi_period, settled_end
from central.store import Store
from central.store.kpi_days import CounterEdge, KpiDayRow, gen_of, utc_days_of
from central.store.rollups import COUNTER_SUFFIX
from central.store.rows import CabinetRow, Rollup

# Time zones whose days are cached: the city's own and UTC are two; a report in any other zone beyond
# these is computed from the rollups every time.
MAX_CACHED_ZONES = 4
# Up to this many cabinets, their cached days are asked for by name; more: every cabinet's are read.
FEW_CABINETS = 200
PUT_ROWS = 2_000


def plan_of(cabinet: CabinetRow) -> CabinetPlan:
    points = [f"{d.name}/{p}" for d in cabinet.inventory for p in d.points]
    return CabinetPlan(
        relays=tuple(p for p in points if is_relay(p)),
        devices=tuple(
            ProbedDevice(d.name, f"{d.name}/{d.points[0]}", equipment_class(d))
            for d in cabinet.inventory
            if d.points
        ),
    )


def settled_now() -> int:
    """The end of the last settled quarter by this host's clock: the writer's clock, which judges
    which batches count as changes (``central.store.kpi_days.changed_days``)."""
    return settled_end(time.time_ns() // 1_000_000)


def is_whole(day: KpiDay) -> bool:
    return day.length_ms == day.full_ms


@dataclass(slots=True)
class FillCount:
    """What filling did: cabinet-days found current, computed (and stored)."""

    cached: int = 0
    computed: int = 0


async def _quarters(store: Store, cabinet: str, point: str, start_ms: int, end_ms: int) -> list[Rollup]:
    limit = (end_ms - start_ms) // QUARTER_MS + 1
    return await store.rollups(
        cabinet, point, resolution="15m", start_ms=start_ms, end_ms=end_ms, limit=limit
    )


def runs_of(days: Sequence[KpiDay]) -> list[tuple[int, int]]:
    """[start_ms, end_ms) of each run of days that follow one another (sorted by start)."""
    runs: list[tuple[int, int]] = []
    for day in sorted(days, key=lambda d: d.start_ms):
        if runs and runs[-1][1] == day.start_ms:
            runs[-1] = (runs[-1][0], day.end_ms)
        else:
            runs.append((day.start_ms, day.end_ms))
    return runs


async def compute_days(
    store: Store,
    tz: str,
    cabinet: CabinetRow,
    plan: CabinetPlan,
    days: Sequence[KpiDay],
    *,
    settled_ms: int,
) -> tuple[dict[int, CabinetDay], list[KpiDayRow]]:
    """The figures of ``days`` (indices into them) from the cabinet's rollups, and the cache rows of
    the whole ones ended by ``settled_ms``. Their change counts are read first: a batch committed
    later makes them stale.
    Only the quarters of those days are read (the two ends of a period: two parts of days, not the
    month between them)."""
    if not days:
        return {}, []
    start, end = min(d.start_ms for d in days), max(d.end_ms for d in days)
    first_utc, last_utc = utc_days_of(start, end)
    gens = await store.kpi_changes(cabinet.id, first_utc, last_utc)
    computed_ms = time.time_ns() // 1_000_000
    names = await store.points_ending_with(cabinet.id, COUNTER_SUFFIX)
    wanted = {*plan.relays, *(d.probe for d in plan.devices)}
    counters: dict[str, list[Rollup]] = {name: [] for name in names}
    points: dict[str, list[Rollup]] = {p: [] for p in sorted(wanted)}
    for run_start, run_end in runs_of(days):
        for name in names:
            counters[name] += await _quarters(store, cabinet.id, name, run_start, run_end)
        for p in points:
            points[p] += await _quarters(store, cabinet.id, p, run_start, run_end)
    figures: dict[int, CabinetDay] = {}
    rows: list[KpiDayRow] = []
    shape = plan.shape
    for i, day in enumerate(days):
        one = cabinet_day(
            day,
            plan,
            {name: in_day(q, day) for name, q in counters.items()},
            {p: in_day(q, day) for p, q in points.items()},
        )
        figures[i] = one
        if is_whole(day) and day.end_ms <= settled_ms:
            fu, lu = utc_days_of(day.start_ms, day.end_ms)
            rows.append(
                KpiDayRow(
                    tz,
                    cabinet.id,
                    day.date,
                    fu,
                    lu,
                    gen_of(gens, fu, lu),
                    shape,
                    encode_day(one),
                    computed_ms,
                )
            )
    return figures, rows


async def _cached(store: Store, tz: str, period: Period, scope: Scope) -> dict[tuple[str, int], KpiDayRow]:
    whole = [i for i, d in enumerate(period.days) if is_whole(d)]
    if not whole:
        return {}
    index = {period.days[i].date: i for i in whole}
    # A few cabinets (those whose figures changed since the last report): only their rows.
    few = [c.id for c in scope.cabinets] if len(scope.cabinets) <= FEW_CABINETS else None
    rows = await store.kpi_days(tz, period.days[whole[0]].date, period.days[whole[-1]].date, cabinets=few)
    return {(r.cabinet, index[r.date]): r for r in rows if r.date in index}


async def may_cache(store: Store, tz: str, cached: Mapping[tuple[str, int], KpiDayRow]) -> bool:
    """Whether days of ``tz`` may be stored: a zone the cache holds already, or one more while it
    holds fewer than ``MAX_CACHED_ZONES`` (any caller may ask for any zone: the table stays bounded)."""
    if cached:
        return True
    zones = await store.kpi_zones()
    return tz in zones or len(zones) < MAX_CACHED_ZONES


async def days_of_cabinets(
    store: Store, scope: Scope, period: Period, tz: str, count: FillCount | None = None
) -> dict[str, list[CabinetDay]]:
    """Every cabinet's figures for each day of the period, from the cache or computed (and cached,
    but for a zone beyond ``MAX_CACHED_ZONES``)."""
    cached = await _cached(store, tz, period, scope)
    storing = await may_cache(store, tz, cached)
    # Only days already settled: readings of one still in flight would not count as a change
    # (``central.store.kpi_days``), and the row would stay current without them.
    settled = settled_now()
    count = count if count is not None else FillCount()
    # Rows stored a few thousand at a time: a transaction each cabinet would be a commit (a sync of
    # the disk) each, on the writer that ingest uses.
    pending: list[KpiDayRow] = []

    async def flush(at_least: int) -> None:
        if len(pending) >= at_least:
            rows = pending[:]
            pending.clear()
            await store.put_kpi_days(rows)

    async def one(cabinet: CabinetRow) -> tuple[str, list[CabinetDay]]:
        plan = plan_of(cabinet)
        shape = plan.shape
        found: dict[int, CabinetDay] = {}
        for i in range(len(period.days)):
            row = cached.get((cabinet.id, i))
            day = None if row is None or row.shape != shape else decode_day(row.figures)
            if day is not None:
                found[i] = day
        missing = [i for i in range(len(period.days)) if i not in found]
        count.cached += len(found)
        if missing:
            figures, rows = await compute_days(
                store, tz, cabinet, plan, [period.days[i] for i in missing], settled_ms=settled
            )
            for k, i in enumerate(missing):
                found[i] = figures[k]
            if storing:
                pending.extend(rows)
                await flush(PUT_ROWS)
            count.computed += len(rows)
        return cabinet.id, [found[i] for i in range(len(period.days))]

    found = dict(await each_cabinet(scope, one))
    await flush(1)
    return found


def _edges_by_cabinet(edges: Sequence[CounterEdge]) -> dict[str, list[CounterEdge]]:
    found: dict[str, list[CounterEdge]] = {}
    for e in edges:
        found.setdefault(e.cabinet, []).append(e)
    return found


async def cached_figures(
    store: Store,
    scope: Scope,
    period: Period,
    tz: str,
    *,
    lost: Mapping[tuple[str, str], Sequence[Outage]],
    counter_edges: Sequence[CounterEdge],
) -> list[CabinetFigures]:
    """Every cabinet's energy and devices' availability over the period, as
    ``central.api.kpi_fetch.cabinet_figures`` gives them, from the day cache; ``counter_edges`` are
    the store's ``kpi_counter_edges`` of the period."""
    edges = _edges_by_cabinet(counter_edges)
    days = await days_of_cabinets(store, scope, period, tz)
    out: list[CabinetFigures] = []
    for cabinet in scope.cabinets:
        plan = plan_of(cabinet)
        its_days = days[cabinet.id]
        entry = scope.registry.get(cabinet.id)
        town = scope.town(cabinet.id)
        counters = edges.get(cabinet.id, [])
        energy = (
            cabinet_energy_of_days(
                CabinetMeta(
                    cabinet.id,
                    town,
                    None if entry is None else entry.rated_power_w,
                    None if entry is None else entry.baseline_kwh_per_day,
                ),
                counters,
                its_days,
                len(plan.relays),
                period,
            )
            if counters
            else None
        )
        devices: list[DeviceAvailability] = []
        for d in plan.devices:
            outages = lost.get((cabinet.id, d.device), ())
            if lost_intervals(outages, period.start_ms, period.end_ms):
                probe = await _quarters(store, cabinet.id, d.probe, period.start_ms, period.end_ms)
                device = DeviceInput(cabinet.id, town, d.device, d.equipment_class, probe, outages)
                devices.append(device_availability(device, period.start_ms, period.end_ms))
            else:
                available = device_available_of_days(d.device, its_days)
                devices.append(DeviceAvailability(cabinet.id, town, d.device, d.equipment_class, available))
        out.append(CabinetFigures(energy, devices))
    return out


async def fill_days(store: Store, tz: str, start_ms: int, end_ms: int, *, now_ms: int) -> FillCount:
    """Compute and cache every cabinet's days of ``tz`` in [start_ms, end_ms) that are missing or
    stale (what the leader's task does ahead of the reports)."""
    period = kpi_period(start_ms, end_ms, ZoneInfo(tz), now_ms=now_ms)
    whole = [d for d in period.days if is_whole(d)]
    count = FillCount()
    if not whole:
        return count
    period = Period(whole[0].start_ms, whole[-1].end_ms, tuple(whole))
    await days_of_cabinets(store, await scope_of(store, None), period, tz, count)
    return count
