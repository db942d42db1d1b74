"""The KPI report's JSON body, written straight from the figures (``central.api.kpi_models`` says
what each field is and is the OpenAPI schema of it).

A month of a city is tens of thousands of cabinet-days: made into pydantic models and validated
again on the way out, it costs over a second. The per-day energy figures are written here as plain
dicts, encoded by msgspec, with the models' own rounding (``EnergyFiguresOut.of``); the small parts
(period, availability, delays) are the models themselves. ``report_out`` (the models) and
``report_json`` give the same JSON (tests/unit/test_kpi_days.py holds them to it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from central.api import kpi_models as m
from central.api.kpi_models import finite
from central.kpi.availability import AvailabilityReport
from central.kpi.delays import DelayReport
from central.kpi.energy import CabinetEnergy, DayFigures, EnergyFigures
from central.kpi.report import GroupEnergy, KpiReport

_encoder = msgspec.json.Encoder()


def period_out(report: KpiReport) -> m.PeriodOut:
    period = report.period
    return m.PeriodOut(from_ms=period.start_ms, to_ms=period.end_ms, tz=report.tz, days=len(period.days))


def availability_out(a: AvailabilityReport) -> m.AvailabilitiesOut:
    return m.AvailabilitiesOut(
        classes=[m.AvailabilityOut.of(name, None, f) for name, f in a.by_class.items()],
        towns=[m.AvailabilityOut.of(name, town, f) for (town, name), f in a.by_town.items()],
    )


def delays_out(d: DelayReport) -> m.DelaysOut:
    return m.DelaysOut(
        total=m.DelayOut.of(None, None, d.total),
        severities=[m.DelayOut.of(s, None, f) for s, f in d.by_severity.items()],
        towns=[m.DelayOut.of(None, t, f) for t, f in d.by_town.items()]
        + [m.DelayOut.of(s, t, f) for (t, s), f in d.by_town_severity.items()],
    )


def figures_json(f: EnergyFigures) -> dict[str, Any]:
    """``EnergyFiguresOut.of(f)`` as a dict, in its fields' order."""
    return {
        "kwh": finite(f.kwh, 6) or 0.0,
        "lit_hours": finite(f.lit_hours) or 0.0,
        "lit_known_hours": finite(f.lit_known_hours) or 0.0,
        "full_power_kwh": finite(f.full_power_kwh, 6),
        "full_power_saved_pct": finite(f.full_power_saved_pct, 2),
        "historical_kwh": finite(f.historical_kwh, 6),
        "historical_saved_pct": finite(f.historical_saved_pct, 2),
        "coverage": finite(f.coverage, 4) or 0.0,
        "reset": f.reset,
        "interpolated": f.interpolated,
        "absurd": f.absurd,
    }


def _days_json(days: Sequence[DayFigures]) -> list[dict[str, Any]]:
    out = []
    for d in days:
        one = figures_json(d.figures)
        one["date"] = d.date.isoformat()
        out.append(one)
    return out


def cabinet_json(c: CabinetEnergy) -> dict[str, Any]:
    return {
        "cabinet": c.cabinet,
        "town": c.town,
        "counters": c.counters,
        "resets": c.resets,
        "total": figures_json(c.total),
        "days": _days_json(c.days),
    }


def _town_json(group: GroupEnergy) -> dict[str, Any]:
    return {
        "town": group.town,
        "cabinets": group.total.cabinets,
        "total": figures_json(group.total),
        "days": _days_json(group.days),
    }


def _encoded(c: CabinetEnergy, encoded: Mapping[str, msgspec.Raw] | None) -> dict[str, Any] | msgspec.Raw:
    found = None if encoded is None else encoded.get(c.cabinet)
    return cabinet_json(c) if found is None else found


def report_json(report: KpiReport, encoded: Mapping[str, msgspec.Raw] | None = None) -> bytes:
    """The body of ``report_out(report)``, as JSON; ``encoded``: cabinets' entries of the energy
    already encoded, by cabinet (``cabinet_json`` of each)."""
    energy = report.energy
    body = {
        "period": period_out(report).model_dump(mode="json"),
        "energy": {
            "cabinets": [_encoded(c, encoded) for c in energy.cabinets],
            "towns": [_town_json(t) for t in energy.towns],
            "total": _town_json(energy.total),
        },
        "availability": availability_out(report.availability).model_dump(mode="json"),
        "delays": delays_out(report.delays).model_dump(mode="json"),
    }
    return _encoder.encode(body)
