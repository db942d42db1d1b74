"""Each cabinet's part of a KPI report, kept per process while nothing it is made from has changed.

A report is asked again once anything in it changed: a batch landing on one cabinet's day, one
registry entry edited, one alarm acknowledged. Made again from every cabinet's cached days, a month
of a city is seconds of arithmetic; made from the parts kept here, only the cabinets whose inputs
changed are computed, and the rest is the sums per town and in total. A part is found by a key of
everything the cabinet's figures are made from, read again for every report:
- the sum of the cabinet's change counts over the period's UTC days (``kpi_change_totals``): any
  batch that stores readings of it on them grows it;
- its counters' readings nearest the period's ends (``kpi_counter_edges``);
- its inventory, and its registry entry's town, rated power and baseline;
- its devices' device_lost episodes overlapping the period.
A part also holds the cabinet's entry of the JSON body, encoded once. Kept beside the parts: each
town's sums (found by its cabinets' keys: a backlog in one town sums that town again, and the total
from the towns) and the delays (found by the episodes they are made from).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from fastapi import FastAPI

from central.api.app_state import made_once
from central.api.kpi_days import cached_figures, settled_now
from central.api.kpi_fetch import CabinetFigures, Scope
from central.api.kpi_json import cabinet_json
from central.kpi.availability import Outage
from central.kpi.delays import DelayReport, delays
from central.kpi.energy import CabinetEnergy
from central.kpi.period import Period
from central.kpi.report import GroupEnergy, TownSums, town_energy
from central.store import Store
from central.store.kpi_days import CounterEdge
from central.store.rows import EpisodeTimes

PARTS_STATE = "kpi_parts"
# Periods (with their zone and town) whose parts are kept: the KPI page's month, the month before,
# a town's, a CSV download. A month of 1,000 cabinets is about 10 MB of parts.
MAX_PERIODS = 4

_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class CabinetPart:
    figures: CabinetFigures
    energy_json: msgspec.Raw | None  # its entry of ``energy.cabinets`` (None: no energy counter)


def cabinet_keys(
    scope: Scope,
    *,
    totals: Mapping[str, int],
    edges: Sequence[CounterEdge],
    lost: Mapping[tuple[str, str], Sequence[Outage]],
) -> dict[str, bytes]:
    """Each cabinet's key: a digest of what its figures over the period are made from."""
    by_cabinet: dict[str, list[CounterEdge]] = {}
    for e in edges:
        by_cabinet.setdefault(e.cabinet, []).append(e)
    outages: dict[str, list[tuple[str, list[tuple[int, int | None]]]]] = {}
    for (cabinet, device), found in sorted(lost.items()):
        outages.setdefault(cabinet, []).append((device, [(o.raised_ms, o.cleared_ms) for o in found]))
    keys = {}
    for c in scope.cabinets:
        entry = scope.registry.get(c.id)
        parts = (
            totals.get(c.id, 0),
            by_cabinet.get(c.id, ()),  # dataclasses: msgspec encodes their fields
            [(d.name, d.driver, d.points) for d in c.inventory],
            None if entry is None else (entry.town, entry.rated_power_w, entry.baseline_kwh_per_day),
            outages.get(c.id, ()),
        )
        keys[c.id] = hashlib.blake2b(_encoder.encode(parts), digest_size=16).digest()
    return keys


@dataclass(slots=True)
class PeriodParts:
    """What is kept of one period's reports: each cabinet's part, each town's sums, the delays,
    each by the key of what it was made from."""

    cabinets: dict[str, tuple[bytes, CabinetPart]] = field(default_factory=dict)
    towns: dict[str | None, tuple[bytes, GroupEnergy]] = field(default_factory=dict)
    delays: tuple[bytes, DelayReport] | None = None

    def town_sums(self, keys: Mapping[str, bytes]) -> TownSums:
        """``energy_report``'s ``town_sums``: a town's kept sums while its cabinets' keys are the same
        (``keys``: every cabinet's), else summed again and kept."""

        def sums(town: str | None, cabinets: Sequence[CabinetEnergy], period: Period) -> GroupEnergy:
            key = hashlib.blake2b(b"".join(keys[c.cabinet] for c in cabinets), digest_size=16).digest()
            found = self.towns.get(town)
            if found is not None and found[0] == key:
                return found[1]
            group = town_energy(town, cabinets, period)
            self.towns[town] = (key, group)
            return group

        return sums

    def delay_report(
        self, raised: Sequence[EpisodeTimes], towns: Mapping[str, str | None], period: Period
    ) -> DelayReport:
        """The delays of the episodes raised in the period, kept while they and their towns are the same."""
        # Named tuples: msgspec encodes each as its fields.
        key = hashlib.blake2b(_encoder.encode((raised, sorted(towns.items()))), digest_size=16).digest()
        if self.delays is not None and self.delays[0] == key:
            return self.delays[1]
        report = delays(raised, towns, period.start_ms, period.end_ms)
        self.delays = (key, report)
        return report


class PartMemo:
    """What is kept of the reports of the last ``periods`` periods (start, end, zone, town asked)."""

    def __init__(self, periods: int = MAX_PERIODS) -> None:
        self._periods = periods
        self._kept: OrderedDict[tuple[int, int, str, str | None], PeriodParts] = OrderedDict()

    def of(self, period: Period, tz: str, town: str | None) -> PeriodParts:
        """What is kept for this period (nothing the first time); the least recently used goes first."""
        key = (period.start_ms, period.end_ms, tz, town)
        parts = self._kept.get(key)
        if parts is None:
            parts = self._kept[key] = PeriodParts()
            while len(self._kept) > self._periods:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        return parts


def part_memo(app: FastAPI) -> PartMemo:
    """The app's memo of parts (made on first use)."""
    return made_once(app, PARTS_STATE, PartMemo, PartMemo)


def _part(figures: CabinetFigures) -> CabinetPart:
    energy = figures.energy
    return CabinetPart(figures, None if energy is None else msgspec.Raw(_json.encode(cabinet_json(energy))))


def encoded_energy(parts: Sequence[CabinetPart]) -> dict[str, msgspec.Raw]:
    """The parts' cabinet entries of the energy, encoded, by cabinet (``report_json`` takes them)."""
    return {
        p.figures.energy.cabinet: p.energy_json
        for p in parts
        if p.figures.energy is not None and p.energy_json is not None
    }


async def report_parts(
    store: Store,
    scope: Scope,
    period: Period,
    tz: str,
    *,
    keys: Mapping[str, bytes],
    kept: dict[str, tuple[bytes, CabinetPart]],  # ``PeriodParts.cabinets``
    lost: Mapping[tuple[str, str], Sequence[Outage]],
    edges: Sequence[CounterEdge],
) -> list[CabinetPart]:
    """Every cabinet's part, in the scope's order: those of ``kept`` whose key is the same, the
    others computed (from the day cache, ``central.api.kpi_days``) and put in ``kept`` when the
    period has settled.

    The parts used are those found before computing and those computed here: another report of the
    period made meanwhile from other inputs may replace entries of ``kept``, never this one's."""
    mine: dict[str, CabinetPart] = {}
    changed = []
    for c in scope.cabinets:
        found = kept.get(c.id)
        if found is not None and found[0] == keys[c.id]:
            mine[c.id] = found[1]
        else:
            changed.append(c)
    if changed:
        wanted = {c.id for c in changed}
        figures = await cached_figures(
            store,
            Scope(tuple(changed), scope.registry, scope.town_asked),
            period,
            tz,
            lost=lost,
            counter_edges=[e for e in edges if e.cabinet in wanted],
        )
        # A period not settled yet (open data's just after midnight): readings still in flight
        # would change its parts without a change counted.
        keeping = period.end_ms <= settled_now()
        for cabinet, one in zip(changed, figures, strict=True):
            part = mine[cabinet.id] = _part(one)
            if keeping:
                kept[cabinet.id] = (keys[cabinet.id], part)
    known = {c.id for c in scope.cabinets}
    for gone in [cabinet for cabinet in kept if cabinet not in known]:
        del kept[gone]
    return [mine[c.id] for c in scope.cabinets]
