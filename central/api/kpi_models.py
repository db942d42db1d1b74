"""Response bodies of the KPI report (``GET /api/v1/kpi``): the OpenAPI schema says what each figure is.

Built from ``central.kpi``'s results; every float is finite (JSON has no infinity) and rounded.
"""

from __future__ import annotations

import datetime as dt
import math

from pydantic import BaseModel, Field

from central.kpi.availability import AvailabilityFigures
from central.kpi.delays import DelayFigures
from central.kpi.energy import EnergyFigures


def finite(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


class PeriodOut(BaseModel):
    from_ms: int = Field(description="start of the period (inclusive), snapped down to a quarter hour")
    to_ms: int = Field(
        description="end of the period (exclusive), snapped up to a quarter hour and at most the end of"
        " the last quarter that ended a minute ago (settled: its readings in flight have arrived)"
    )
    tz: str = Field(description="the time zone of the days")
    days: int = Field(description="local days the period overlaps (the first and last may be parts of days)")


class EnergyFiguresOut(BaseModel):
    kwh: float = Field(description="energy measured by the cabinets' counters (kWh)")
    lit_hours: float = Field(
        description="hours the lamps were lit (mean over a cabinet's relays; summed over cabinets)"
    )
    lit_known_hours: float = Field(description="hours for which the relays' state is known (good readings)")
    full_power_kwh: float | None = Field(
        description="baseline: rated power x hours lit, without dimming (kWh); null without a rated power"
    )
    full_power_saved_pct: float | None = Field(
        description="(full_power_kwh - measured kWh of the same cabinets) / full_power_kwh x 100"
    )
    historical_kwh: float | None = Field(
        description="baseline: the registry's baseline_kwh_per_day, prorated for part days (kWh)"
    )
    historical_saved_pct: float | None = Field(
        description="(historical_kwh - measured kWh of the same cabinets) / historical_kwh x 100"
    )
    coverage: float = Field(
        description="share of the time (cabinet x time) that counter readings account for"
    )
    reset: bool = Field(description="a counter went backwards (reset, replaced): energy before it is lost")
    interpolated: bool = Field(description="readings were missing: energy across the gap is spread by time")
    absurd: bool = Field(description="a counter jump beyond 100 kW was ignored as a glitch")

    @classmethod
    def of(cls, f: EnergyFigures) -> EnergyFiguresOut:
        return cls(
            kwh=finite(f.kwh, 6) or 0.0,
            lit_hours=finite(f.lit_hours) or 0.0,
            lit_known_hours=finite(f.lit_known_hours) or 0.0,
            full_power_kwh=finite(f.full_power_kwh, 6),
            full_power_saved_pct=finite(f.full_power_saved_pct, 2),
            historical_kwh=finite(f.historical_kwh, 6),
            historical_saved_pct=finite(f.historical_saved_pct, 2),
            coverage=finite(f.coverage, 4) or 0.0,
            reset=f.reset,
            interpolated=f.interpolated,
            absurd=f.absurd,
        )


class EnergyDayOut(EnergyFiguresOut):
    date: dt.date = Field(description="the local day (YYYY-MM-DD)")


class CabinetEnergyOut(BaseModel):
    cabinet: str
    town: str | None = Field(description="from the registry; null when the cabinet is not registered")
    counters: list[str] = Field(description="the energy counters summed (points named ...energy_wh)")
    resets: int = Field(description="counter resets in the period")
    total: EnergyFiguresOut
    days: list[EnergyDayOut]


class TownEnergyOut(BaseModel):
    town: str | None = Field(description="null: the cabinets not registered (no town)")
    cabinets: int
    total: EnergyFiguresOut
    days: list[EnergyDayOut]


class EnergyOut(BaseModel):
    cabinets: list[CabinetEnergyOut] = Field(description="each cabinet with an energy counter, by id")
    towns: list[TownEnergyOut] = Field(description="the cabinets summed per town, by name")
    total: TownEnergyOut = Field(description="every cabinet of the report summed (town null)")


class AvailabilityOut(BaseModel):
    equipment_class: str = Field(description="lighting, traffic_controller, camera (or other)")
    town: str | None = Field(
        default=None, description="the town; null in the per-class list, or not registered"
    )
    devices: int
    period_h: float = Field(description="devices x hours of the period")
    available_h: float = Field(description="device-hours available (online and reading good)")
    availability_pct: float | None = Field(description="available_h / period_h x 100; null without devices")

    @classmethod
    def of(cls, name: str, town: str | None, f: AvailabilityFigures) -> AvailabilityOut:
        share = f.share
        return cls(
            equipment_class=name,
            town=town,
            devices=f.devices,
            period_h=finite(f.period_ms / 3_600_000) or 0.0,
            available_h=finite(f.available_ms / 3_600_000) or 0.0,
            availability_pct=None if share is None else finite(share * 100),
        )


class AvailabilitiesOut(BaseModel):
    classes: list[AvailabilityOut] = Field(description="per equipment class, over every town")
    towns: list[AvailabilityOut] = Field(description="per town and equipment class")


class DelayOut(BaseModel):
    severity: str | None = Field(default=None, description="null: every severity")
    town: str | None = Field(default=None, description="null: every town (or, in towns, not registered)")
    episodes: int = Field(description="alarm episodes raised in the period")
    acknowledged: int = Field(description="of those, acknowledged by an operator")
    ack_median_s: float | None = Field(description="median raised -> acknowledged (s, nearest rank)")
    ack_p90_s: float | None = Field(description="90th percentile raised -> acknowledged (s, nearest rank)")
    cleared: int = Field(description="of those, cleared")
    clear_median_s: float | None = Field(description="median raised -> cleared (s, nearest rank)")
    clear_p90_s: float | None = Field(description="90th percentile raised -> cleared (s, nearest rank)")

    @classmethod
    def of(cls, severity: str | None, town: str | None, f: DelayFigures) -> DelayOut:
        return cls(
            severity=severity,
            town=town,
            episodes=f.episodes,
            acknowledged=len(f.to_ack_s),
            ack_median_s=finite(f.percentile("ack", 50)),
            ack_p90_s=finite(f.percentile("ack", 90)),
            cleared=len(f.to_clear_s),
            clear_median_s=finite(f.percentile("clear", 50)),
            clear_p90_s=finite(f.percentile("clear", 90)),
        )


class DelaysOut(BaseModel):
    total: DelayOut = Field(description="every episode raised in the period")
    severities: list[DelayOut] = Field(description="per severity")
    towns: list[DelayOut] = Field(description="per town (severity null), then per town and severity")


class KpiOut(BaseModel):
    period: PeriodOut
    energy: EnergyOut
    availability: AvailabilitiesOut
    delays: DelaysOut
