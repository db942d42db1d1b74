"""Each cabinet's KPI figures per local day, and the period's figures put together from them. Pure.

A day's figures (``CabinetDay``) are what the report needs of that day alone, before the registry:
- per energy counter, a summary of the day's counted readings, as a 15-minute rollup summarises its
  quarter: the first and last, what the intervals between them gave (Wh over ms), their resets and
  glitches. The intervals across midnight and across the period's ends are spread when the days are
  put together (``cabinet_energy_of_days``), by ``central.energy``'s meter fed the day summaries as
  ``central.kpi.energy`` feeds it the quarters: the same figures;
- the hours lit and known, summed over the relays (``central.kpi.energy.lit_hours`` divides by their
  count);
- per device, the time its probe point read good before any device_lost episode cuts it (an episode
  is applied when a report is made: a device with one in the period is computed from its quarters).

What the registry says (town, rated power, historical baseline) is applied when a report is made, so
a registry change never makes a cached day wrong. A day's figures serve the cabinet's inventory they
were computed for (``CabinetPlan.shape``).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from central.energy import Day, EnergyMeter, EnergySettings, counter_value, interval_energy
from central.kpi.availability import available_ms
from central.kpi.energy import QUARTER_H, CabinetEnergy, CabinetMeta, CounterDays, energy_of
from central.kpi.period import KpiDay, Period
from central.store.kpi_days import CounterEdge
from central.store.rollups import counted_ends, meter_quarters
from central.store.rows import Rollup
from protocols.quality import Quality


class CounterDay(msgspec.Struct, frozen=True, array_like=True):
    """An energy counter's day, summarised as ``EnergyMeter.add_summary`` takes it."""

    point: str
    first: tuple[int, float] | None
    last: tuple[int, float] | None
    wh: float
    covered_ms: int
    resets: int
    absurd: int
    readings: int
    skipped: int


class DeviceDay(msgspec.Struct, frozen=True, array_like=True):
    device: str
    available_ms: float  # not rounded: the period's sum is


class CabinetDay(msgspec.Struct, frozen=True, array_like=True):
    counters: tuple[CounterDay, ...] = ()
    lit_hours: float = 0.0  # summed over the relays
    known_hours: float = 0.0
    devices: tuple[DeviceDay, ...] = ()

    def counter(self, point: str) -> CounterDay | None:
        for c in self.counters:
            if c.point == point:
                return c
        return None

    def device(self, name: str) -> float:
        for d in self.devices:
            if d.device == name:
                return d.available_ms
        return 0.0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CabinetDay)


def encode_day(day: CabinetDay) -> bytes:
    return _encoder.encode(day)


def decode_day(data: bytes) -> CabinetDay | None:
    """The figures of a cached row; None when they do not read (then the day is computed again)."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True, slots=True)
class ProbedDevice:
    device: str
    probe: str  # its first point
    equipment_class: str


@dataclass(frozen=True, slots=True)
class CabinetPlan:
    """What the figures of a cabinet's day are made of, from its inventory."""

    relays: tuple[str, ...]
    devices: tuple[ProbedDevice, ...]

    @property
    def shape(self) -> str:
        text = msgspec.json.encode(
            [self.relays, [(d.device, d.probe, d.equipment_class) for d in self.devices]]
        )
        return hashlib.sha256(text).hexdigest()[:24]


def in_day(quarters: Sequence[Rollup], day: KpiDay) -> Sequence[Rollup]:
    """The quarters (sorted by bucket) of [day.start_ms, day.end_ms)."""
    buckets = [r.bucket_ms for r in quarters]
    return quarters[bisect.bisect_left(buckets, day.start_ms) : bisect.bisect_left(buckets, day.end_ms)]


def counter_day(point: str, quarters: Sequence[Rollup], day: KpiDay) -> CounterDay:
    """The counter's day from its quarters in it, summed as ``central.kpi.energy`` sums them."""
    meter = EnergyMeter([Day(day.date, day.start_ms, day.end_ms)])
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None
    for r in quarters:
        f, la = counted_ends(r)
        meter_quarters(meter, (r,))
        if f is not None and la is not None:
            first = first or f
            last = la
    result = meter.result
    d = result.days[0]
    return CounterDay(
        point, first, last, d.wh, d.covered_ms, result.resets, result.absurd, result.readings, result.skipped
    )


def relay_hours(relays: Sequence[Sequence[Rollup]]) -> tuple[float, float]:
    """(hours lit, hours known) of one day summed over the relays, in ``lit_hours``'s order."""
    lit = known = 0.0
    for quarters in relays:
        for r in quarters:
            mean = r.mean
            if mean is None or not math.isfinite(mean):
                continue
            lit += min(max(mean, 0.0), 1.0) * QUARTER_H
            known += QUARTER_H
    return lit, known


def cabinet_day(
    day: KpiDay,
    plan: CabinetPlan,
    counters: Mapping[str, Sequence[Rollup]],
    points: Mapping[str, Sequence[Rollup]],
) -> CabinetDay:
    """The day's figures from the quarters of its counters and of the plan's points (each cut to
    the day with ``in_day``)."""
    lit, known = relay_hours([points.get(p, ()) for p in plan.relays])
    return CabinetDay(
        counters=tuple(counter_day(name, q, day) for name, q in counters.items() if q),
        lit_hours=lit,
        known_hours=known,
        devices=tuple(
            DeviceDay(d.device, available_ms(points.get(d.probe, ()), (), day.start_ms, day.end_ms))
            for d in plan.devices
        ),
    )


def cabinet_energy_of_days(
    cabinet: CabinetMeta,
    edges: Sequence[CounterEdge],
    days: Sequence[CabinetDay],
    relays: int,
    period: Period,
    *,
    settings: EnergySettings | None = None,
) -> CabinetEnergy:
    """The cabinet's energy over ``period`` from its days' figures (one per day of the period) and
    its counters' readings nearest the period's ends: what ``central.kpi.energy.cabinet_energy``
    gives from the quarters."""
    spreader = _DaySpreader(period, settings or EnergySettings())
    results = [spreader.counter(edge, [day.counter(edge.point) for day in days]) for edge in edges]
    lit = [d.lit_hours / relays if relays else 0.0 for d in days]
    known = [d.known_hours / relays if relays else 0.0 for d in days]
    return energy_of(cabinet, [e.point for e in edges], results, lit=lit, known=known, period=period)


class _DaySpreader:
    """``EnergyMeter`` fed a counter's readings before the period, its day summaries and its reading
    after it (``add``, ``add_summary``, ``add``), written out flat: the same operations on the same
    numbers in the same order (tests/unit/test_kpi_days.py holds it to the meter), without a meter
    and its days as objects for each of a city's counters."""

    def __init__(self, period: Period, settings: EnergySettings) -> None:
        self._starts = [d.start_ms for d in period.days]
        self._ends = [d.end_ms for d in period.days]
        self._settings = settings

    def _day_of(self, ts: int) -> int | None:
        i = bisect.bisect_right(self._starts, ts) - 1
        return i if 0 <= i < len(self._starts) and ts < self._ends[i] else None

    def _interval(self, out: CounterDays, t0: int, v0: float, t1: int, v1: float) -> None:
        """``central.energy``'s spreading of one interval between counted readings over the days."""
        starts, ends, n = self._starts, self._ends, len(self._starts)
        energy, is_reset, is_absurd = interval_energy(t0, v0, t1, v1, self._settings.max_power_w)
        pieces: list[tuple[int, int]] = []
        i = max(bisect.bisect_right(starts, t0) - 1, 0)
        while i < n and starts[i] < t1:
            overlap = min(t1, ends[i]) - max(t0, starts[i])
            if overlap > 0:
                pieces.append((i, overlap))
            i += 1
        if is_absurd:
            out.absurd_count += 1
            if pieces:
                for k, _ in pieces:
                    out.absurd[k] = True
            elif (k_end := self._day_of(t1)) is not None:
                out.absurd[k_end] = True
            return
        if is_reset:
            out.resets += 1
        span = t1 - t0
        split = len(pieces) > 1 or (len(pieces) == 1 and pieces[0][1] < span)
        interpolated = split and span > self._settings.flag_gap_ms
        wh, covered, reset, gap = out.wh, out.covered_ms, out.reset, out.interpolated
        for k, overlap in pieces:
            wh[k] += energy * overlap / span
            covered[k] += overlap
            gap[k] |= interpolated
            reset[k] |= is_reset

    def counter(self, edge: CounterEdge, summaries: Sequence[CounterDay | None]) -> CounterDays:
        starts, ends = self._starts, self._ends
        n = len(starts)
        out = CounterDays([0.0] * n, [0] * n, [False] * n, [False] * n, [False] * n)
        previous: tuple[int, float] | None = None
        if edge.before is not None and (v := counter_value(edge.before[1], Quality.GOOD)) is not None:
            previous = (edge.before[0], v)
        for k, s in enumerate(summaries):
            if s is None or s.first is None or s.last is None:
                continue
            first = s.first
            if previous is not None:
                if first[0] < previous[0]:
                    raise ValueError(
                        f"summaries must be sorted by time: {first[0]} comes after {previous[0]}"
                    )
                self._interval(out, previous[0], previous[1], first[0], first[1])
            out.resets += s.resets
            out.absurd_count += s.absurd
            d = k if starts[k] <= first[0] < ends[k] else self._day_of(first[0])
            if d is not None:
                out.wh[d] += s.wh
                out.covered_ms[d] += s.covered_ms
                out.reset[d] |= s.resets > 0
                out.absurd[d] |= s.absurd > 0
            previous = s.last
        after = edge.after
        v = None if after is None else counter_value(after[1], Quality.GOOD)
        if after is not None and v is not None and previous is not None:
            if after[0] < previous[0]:
                raise ValueError(f"readings must be sorted by time: {after[0]} comes after {previous[0]}")
            self._interval(out, previous[0], previous[1], after[0], v)
        return out


def device_available_of_days(device: str, days: Sequence[CabinetDay]) -> int:
    """The device's available ms over the days (no device_lost episode in them)."""
    return round(sum(d.device(device) for d in days))
