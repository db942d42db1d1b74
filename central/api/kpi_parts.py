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
A part also holds the cabinet's entry of the JSON body, encoded once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
from fastapi import FastAPI

from central.api.kpi_days import cached_figures
from central.api.kpi_fetch import CabinetFigures, Scope
from central.api.kpi_json import cabinet_json
from central.kpi.availability import Outage
from central.kpi.period import Period
from central.store import Store
from central.store.kpi_days import CounterEdge

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


class PartMemo:
    """Cabinets' parts by period (start, end, zone, town asked), the last ``periods`` periods."""

    def __init__(self, periods: int = MAX_PERIODS) -> None:
        self._periods = periods
        self._kept: OrderedDict[tuple[int, int, str, str | None], dict[str, tuple[bytes, CabinetPart]]] = (
            OrderedDict()
        )

    def of(self, period: Period, tz: str, town: str | None) -> dict[str, tuple[bytes, CabinetPart]]:
        """The parts kept for this period (a new, empty set the first time), most recent first."""
        key = (period.start_ms, period.end_ms, tz, town)
        parts = self._kept.get(key)
        if parts is None:
            parts = self._kept[key] = {}
            while len(self._kept) > self._periods:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        return parts


def part_memo(app: FastAPI) -> PartMemo:
    """The app's memo of parts (made on first use)."""
    memo = getattr(app.state, PARTS_STATE, None)
    if not isinstance(memo, PartMemo):
        memo = PartMemo()
        setattr(app.state, PARTS_STATE, memo)
    return memo


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
    kept: dict[str, tuple[bytes, CabinetPart]],
    lost: Mapping[tuple[str, str], Sequence[Outage]],
    edges: Sequence[CounterEdge],
) -> list[CabinetPart]:
    """Every cabinet's part, in the scope's order: those of ``kept`` whose key is the same, the
    others computed (from the day cache, ``central.api.kpi_days``) and put in ``kept``."""
    changed = [c for c in scope.cabinets if (found := kept.get(c.id)) is None or found[0] != keys[c.id]]
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
        for cabinet, one in zip(changed, figures, strict=True):
            kept[cabinet.id] = (keys[cabinet.id], _part(one))
    known = {c.id for c in scope.cabinets}
    for gone in [cabinet for cabinet in kept if cabinet not in known]:
        del kept[gone]
    return [kept[c.id][1] for c in scope.cabinets]
