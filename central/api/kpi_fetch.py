"""What the KPI report and the open data read from the store, as the plain rows ``central.kpi`` takes.

Everything comes from rollups (kept for the contract's life), the registry and alarm episodes, each
read bounded: a period of at most ``MAX_PERIOD_DAYS``, at most ``MAX_EPISODES`` episodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from central.equipment_view import EQUIPMENT_CLASS
from central.errors import InvalidRequest
from central.kpi.availability import DeviceAvailability, DeviceInput, Outage, device_availability
from central.kpi.energy import CabinetEnergy, CabinetEnergyInput, CounterQuarters, cabinet_energy, is_relay
from central.kpi.period import QUARTER_MS, Period
from central.store import Store
from central.store.rollups import COUNTER_SUFFIX
from central.store.rows import CabinetRow, EpisodeTimes, RegistryEntry, Rollup
from protocols.fleet import DeviceInfo
from protocols.fleet.events import DEVICE_LOST

MAX_EPISODES = 200_000
EPISODE_PAGE = 10_000
# A device_lost episode that began this long before the period and ended in it still cuts its start
# (the readings of a lost device are bad anyway: this only sharpens the edge).
OUTAGE_LOOKBACK_MS = 7 * 86_400_000
# Cabinets read at once: the SQLite store reads on 4 threads; PostgreSQL on its pool.
CONCURRENT_CABINETS = 4
MAX_CABINETS_ASKED = 500

_T = TypeVar("_T")
_Reads = Callable[[str], Awaitable[list[Rollup]]]


@dataclass(frozen=True, slots=True)
class Scope:
    """The cabinets a report covers (those central knows, of one town when asked) and their registry."""

    cabinets: tuple[CabinetRow, ...]
    registry: dict[str, RegistryEntry]
    town_asked: str | None = None

    def town(self, cabinet: str) -> str | None:
        entry = self.registry.get(cabinet)
        return None if entry is None else entry.town

    @property
    def towns(self) -> dict[str, str | None]:
        return {c.id: self.town(c.id) for c in self.cabinets}


async def scope_of(store: Store, town: str | None) -> Scope:
    """The cabinets of ``town`` (every one when None); InvalidRequest naming ``town`` when none is."""
    # Revoked cabinets keep their row, so their history keeps its town.
    entries, cabinets = await asyncio.gather(store.registry(include_revoked=True), store.cabinets())
    registry = {e.cabinet: e for e in entries}
    if town is not None:
        if not any(e.town == town for e in registry.values()):
            raise InvalidRequest.field(
                ("query", "town"), f"no registered cabinet is in the town {town!r}: check its spelling", town
            )
        cabinets = [c for c in cabinets if (e := registry.get(c.id)) is not None and e.town == town]
    return Scope(tuple(sorted(cabinets, key=lambda c: c.id)), registry, town)


async def quarters(store: Store, cabinet: str, point: str, period: Period) -> list[Rollup]:
    limit = period.length_ms // QUARTER_MS + 1
    return await store.rollups(
        cabinet, point, resolution="15m", start_ms=period.start_ms, end_ms=period.end_ms, limit=limit
    )


def _points(cabinet: CabinetRow) -> list[str]:
    return [f"{device.name}/{point}" for device in cabinet.inventory for point in device.points]


def equipment_class(device: DeviceInfo) -> str:
    return EQUIPMENT_CLASS.get(device.driver, "other")


@dataclass(frozen=True, slots=True)
class CabinetFigures:
    energy: CabinetEnergy | None  # None: the cabinet has no energy counter
    devices: list[DeviceAvailability]


async def each_cabinet(
    scope: Scope, figures: Callable[[CabinetRow], Awaitable[_T]], *, concurrency: int = CONCURRENT_CABINETS
) -> list[_T]:
    """``figures`` of every cabinet of ``scope``, a few at once (the store reads on several threads);
    each cabinet's rollups are dropped once its figures are made."""
    gate = asyncio.Semaphore(concurrency)

    async def one(cabinet: CabinetRow) -> _T:
        async with gate:
            return await figures(cabinet)

    return list(await asyncio.gather(*(one(c) for c in scope.cabinets)))


async def cabinet_energy_of(
    store: Store, scope: Scope, cabinet: CabinetRow, period: Period, read: _Reads
) -> CabinetEnergy | None:
    """The cabinet's energy (counters, relays, registry figures), or None without an energy counter."""
    names = await store.points_ending_with(cabinet.id, COUNTER_SUFFIX)
    if not names:
        return None
    counters = []
    for name in names:
        before, after = await store.rollup_neighbours(
            cabinet.id, name, resolution="15m", start_ms=period.start_ms, end_ms=period.end_ms
        )
        counters.append(CounterQuarters(name, await read(name), before, after))
    relays = [await read(p) for p in _points(cabinet) if is_relay(p)]
    entry = scope.registry.get(cabinet.id)
    energy_input = CabinetEnergyInput(
        cabinet=cabinet.id,
        town=scope.town(cabinet.id),
        counters=counters,
        relays=relays,
        rated_power_w=None if entry is None else entry.rated_power_w,
        baseline_kwh_per_day=None if entry is None else entry.baseline_kwh_per_day,
    )
    return cabinet_energy(energy_input, period)


async def devices_of(
    scope: Scope,
    cabinet: CabinetRow,
    period: Period,
    lost: Mapping[tuple[str, str], Sequence[Outage]],
    read: _Reads,
) -> list[DeviceAvailability]:
    """Each device of the cabinet's inventory that has points: how long it was available, from its
    probe point's quarters (its first point) and its device_lost episodes."""
    found = []
    for device in cabinet.inventory:
        if not device.points:
            continue
        probe = DeviceInput(
            cabinet=cabinet.id,
            town=scope.town(cabinet.id),
            device=device.name,
            equipment_class=equipment_class(device),
            probe=await read(f"{device.name}/{device.points[0]}"),
            outages=lost.get((cabinet.id, device.name), ()),
        )
        found.append(device_availability(probe, period.start_ms, period.end_ms))
    return found


def outages_by_device(episodes: Sequence[EpisodeTimes]) -> dict[tuple[str, str], list[Outage]]:
    lost: dict[tuple[str, str], list[Outage]] = {}
    for e in episodes:
        if e.alarm == DEVICE_LOST:
            lost.setdefault((e.cabinet, e.device), []).append(Outage(e.raised_ms, e.cleared_ms))
    return lost


def reader(store: Store, cabinet: str, period: Period) -> _Reads:
    """Reads a point's quarters once per cabinet (a relay is both a baseline and a probe)."""
    memo: dict[str, list[Rollup]] = {}

    async def read(point: str) -> list[Rollup]:
        if point not in memo:
            memo[point] = await quarters(store, cabinet, point, period)
        return memo[point]

    return read


async def cabinet_figures(
    store: Store, scope: Scope, period: Period, lost: Mapping[tuple[str, str], Sequence[Outage]]
) -> list[CabinetFigures]:
    """Every cabinet's energy and devices' availability over the period, from all their quarters: what
    the report gave before the day cache (``central.api.kpi_days``), and what that cache is held to."""

    async def figures(cabinet: CabinetRow) -> CabinetFigures:
        read = reader(store, cabinet.id, period)
        energy = await cabinet_energy_of(store, scope, cabinet, period, read)
        return CabinetFigures(energy, await devices_of(scope, cabinet, period, lost, read))

    return await each_cabinet(scope, figures)


async def read_episodes(store: Store, period: Period) -> list[EpisodeTimes]:
    """The times of every episode that may overlap the period (raised in it, a little before it, or
    earlier and still open), by id; InvalidRequest when there are more than MAX_EPISODES."""
    found = await store.kpi_episodes(
        since_ms=period.start_ms - OUTAGE_LOOKBACK_MS, until_ms=period.end_ms, limit=MAX_EPISODES + 1
    )
    if len(found) > MAX_EPISODES:
        raise InvalidRequest.field(
            ("query", "from"),
            f"more than {MAX_EPISODES} alarm episodes in the period: ask for a shorter period",
            None,
        )
    return found


def scope_episodes(
    found: Sequence[EpisodeTimes], scope: Scope, period: Period
) -> tuple[list[EpisodeTimes], list[EpisodeTimes]]:
    """(those of ``found`` raised in the period, all of them), of the scope's cabinets."""
    known = {c.id for c in scope.cabinets}
    overlapping = [e for e in found if e.cabinet in known]
    start, end = period.start_ms, period.end_ms
    return [e for e in overlapping if start <= e.raised_ms < end], overlapping


async def episodes_of(
    store: Store, scope: Scope, period: Period
) -> tuple[list[EpisodeTimes], list[EpisodeTimes]]:
    """(the episodes raised in the period, those that may overlap it: also the ones raised a little
    before it, and the ones raised earlier still open), of the scope's cabinets, by id."""
    if not scope.cabinets:
        return [], []
    return scope_episodes(await read_episodes(store, period), scope, period)
