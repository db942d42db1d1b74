"""Energy per cabinet and local day, against two baselines. Pure: rollups in, figures out.

Measured: every energy counter of the cabinet (a point named ``…energy_wh``), from its 15-minute
rollups, with ``central.energy``'s rules (resets, glitches, gaps spread by time and flagged), exactly
as the energy endpoint reads them (``EnergyMeter.add_summary``).

Baselines:
- full power: the cabinet's lamps at their rated power (``rated_power_w``, from the registry) for every
  hour they were lit, without dimming. Hours lit come from the relay points (``<device>/relay`` or
  ``<device>/relay_<circuit>``: the lighting outputs the agent switches): a quarter's share lit is
  the mean of the relay's good readings in it (true = 1). With several relays, each counts for an
  equal share of the rated power. A quarter without a good relay reading adds no lit time (it is
  unknown: ``lit_known_hours`` says how much was known), so a gap lowers the baseline and the saving
  is never overstated.
- historical: the registry's ``baseline_kwh_per_day``, prorated for a part of a day.

Percent saved is (baseline - measured) / baseline x 100, over the cabinets that have that baseline.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from central.energy import EnergyMeter, PointEnergy
from central.kpi.period import QUARTER_MS, KpiDay, Period, day_index
from central.store.rollups import meter_quarters
from central.store.rows import Rollup

QUARTER_H = QUARTER_MS / 3_600_000
RELAY_NAME = "relay"


def is_relay(point: str) -> bool:
    """Whether ``point`` (``device/quantity``) is a lighting output's relay, by the profiles' names."""
    quantity = point.rpartition("/")[2]
    return quantity == RELAY_NAME or quantity.startswith(RELAY_NAME + "_")


@dataclass(frozen=True, slots=True)
class CounterQuarters:
    """One energy counter's 15-minute rollups in the period, and the nearest buckets outside it that
    hold a counted reading (``RollupStore.rollup_neighbours``): the intervals across the edges."""

    point: str
    quarters: Sequence[Rollup]
    before: Rollup | None = None
    after: Rollup | None = None


@dataclass(frozen=True, slots=True)
class CabinetEnergyInput:
    cabinet: str
    town: str | None
    counters: Sequence[CounterQuarters]
    relays: Sequence[Sequence[Rollup]] = ()  # each relay point's 15-minute rollups in the period
    rated_power_w: float | None = None
    baseline_kwh_per_day: float | None = None


@dataclass(slots=True)
class EnergyFigures:
    """Energy over a day or a period, summed over cabinets. kWh; None where no cabinet had that baseline.

    ``*_compared_kwh`` is the measured energy of the cabinets that have the baseline: the figure
    the baseline is compared with.
    """

    kwh: float = 0.0
    lit_hours: float = 0.0
    lit_known_hours: float = 0.0
    full_power_kwh: float | None = None
    full_power_compared_kwh: float = 0.0
    historical_kwh: float | None = None
    historical_compared_kwh: float = 0.0
    covered_ms: int = 0
    length_ms: int = 0
    cabinets: int = 0
    reset: bool = False
    interpolated: bool = False
    absurd: bool = False

    @property
    def full_power_saved_pct(self) -> float | None:
        return saved_pct(self.full_power_kwh, self.full_power_compared_kwh)

    @property
    def historical_saved_pct(self) -> float | None:
        return saved_pct(self.historical_kwh, self.historical_compared_kwh)

    @property
    def coverage(self) -> float:
        """The share of the time (cabinet x ms) that counter readings account for."""
        return self.covered_ms / self.length_ms if self.length_ms > 0 else 0.0

    def add(self, other: EnergyFigures) -> None:
        self.kwh += other.kwh
        self.lit_hours += other.lit_hours
        self.lit_known_hours += other.lit_known_hours
        self.full_power_kwh = _plus(self.full_power_kwh, other.full_power_kwh)
        self.full_power_compared_kwh += other.full_power_compared_kwh
        self.historical_kwh = _plus(self.historical_kwh, other.historical_kwh)
        self.historical_compared_kwh += other.historical_compared_kwh
        self.covered_ms += other.covered_ms
        self.length_ms += other.length_ms
        self.cabinets += other.cabinets
        self.reset |= other.reset
        self.interpolated |= other.interpolated
        self.absurd |= other.absurd


@dataclass(slots=True)
class DayFigures:
    date: dt.date
    figures: EnergyFigures = field(default_factory=EnergyFigures)


@dataclass(slots=True)
class CabinetEnergy:
    cabinet: str
    town: str | None
    counters: list[str]
    resets: int
    absurd: int
    total: EnergyFigures
    days: list[DayFigures]


def saved_pct(baseline_kwh: float | None, measured_kwh: float) -> float | None:
    if baseline_kwh is None or baseline_kwh <= 0:
        return None
    return (baseline_kwh - measured_kwh) / baseline_kwh * 100


def _plus(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else a + b


def cabinet_energy(cabinet: CabinetEnergyInput, period: Period) -> CabinetEnergy:
    """The cabinet's energy per day of ``period`` and over it, with its baselines."""
    meters = [_metered(counter, period) for counter in cabinet.counters]
    lit, known = lit_hours(cabinet.relays, period.days)
    return energy_of(
        CabinetMeta(cabinet.cabinet, cabinet.town, cabinet.rated_power_w, cabinet.baseline_kwh_per_day),
        [c.point for c in cabinet.counters],
        [CounterDays.of(m.result) for m in meters],
        lit=lit,
        known=known,
        period=period,
    )


@dataclass(frozen=True, slots=True)
class CabinetMeta:
    """What the registry says of a cabinet that its energy figures use."""

    cabinet: str
    town: str | None
    rated_power_w: float | None = None
    baseline_kwh_per_day: float | None = None


@dataclass(slots=True)
class CounterDays:
    """One counter's energy per day of a period, as lists indexed by day (``PointEnergy`` in columns)."""

    wh: list[float]
    covered_ms: list[int]
    reset: list[bool]
    interpolated: list[bool]
    absurd: list[bool]
    resets: int = 0
    absurd_count: int = 0

    @classmethod
    def of(cls, p: PointEnergy) -> CounterDays:
        days = p.days
        return cls(
            [d.wh for d in days],
            [d.covered_ms for d in days],
            [d.reset for d in days],
            [d.interpolated for d in days],
            [d.absurd for d in days],
            p.resets,
            p.absurd,
        )


def energy_of(
    cabinet: CabinetMeta,
    counters: Sequence[str],
    results: Sequence[CounterDays],
    *,
    lit: Sequence[float],
    known: Sequence[float],
    period: Period,
) -> CabinetEnergy:
    """The cabinet's figures from each counter's energy per day and the hours lit and known per day."""
    out: list[DayFigures] = []
    total = EnergyFigures()
    n = len(period.days)
    # Per day, the counters' figures side by side (none: no energy, no coverage).
    empty: list[tuple[()]] = [()] * n
    whs = list(zip(*(r.wh for r in results), strict=True)) if results else empty
    covered = list(zip(*(r.covered_ms for r in results), strict=True)) if results else empty
    resets = list(zip(*(r.reset for r in results), strict=True)) if results else empty
    gaps = list(zip(*(r.interpolated for r in results), strict=True)) if results else empty
    glitches = list(zip(*(r.absurd for r in results), strict=True)) if results else empty
    rated, baseline = cabinet.rated_power_w, cabinet.baseline_kwh_per_day
    for i, day in enumerate(period.days):
        kwh = math.fsum(whs[i]) / 1000
        figures = EnergyFigures(
            kwh=kwh,
            lit_hours=lit[i],
            lit_known_hours=known[i],
            covered_ms=min(covered[i], default=0),
            length_ms=day.length_ms,
            cabinets=1,
            reset=any(resets[i]),
            interpolated=any(gaps[i]),
            absurd=any(glitches[i]),
        )
        if rated is not None:
            figures.full_power_kwh = rated * lit[i] / 1000
            figures.full_power_compared_kwh = kwh
        if baseline is not None:
            figures.historical_kwh = baseline * day.share
            figures.historical_compared_kwh = kwh
        out.append(DayFigures(day.date, figures))
        total.add(figures)
    total.cabinets = 1
    return CabinetEnergy(
        cabinet=cabinet.cabinet,
        town=cabinet.town,
        counters=list(counters),
        resets=sum(r.resets for r in results),
        absurd=sum(r.absurd_count for r in results),
        total=total,
        days=out,
    )


def _metered(counter: CounterQuarters, period: Period) -> EnergyMeter:
    """The counter's energy per day, from its rollups as the energy endpoint adds them."""
    meter = EnergyMeter(period.energy_days())
    meter_quarters(meter, counter.quarters, before=counter.before, after=counter.after)
    return meter


def lit_hours(relays: Sequence[Sequence[Rollup]], days: Sequence[KpiDay]) -> tuple[list[float], list[float]]:
    """(hours lit, hours known) per day: the mean over the relays of each relay's hours."""
    lit = [0.0] * len(days)
    known = [0.0] * len(days)
    if not relays:
        return lit, known
    for quarters in relays:
        for r in quarters:
            i = day_index(days, r.bucket_ms)
            mean = r.mean
            if i is None or mean is None or not math.isfinite(mean):
                continue
            lit[i] += min(max(mean, 0.0), 1.0) * QUARTER_H
            known[i] += QUARTER_H
    n = len(relays)
    return [h / n for h in lit], [h / n for h in known]
