"""The KPI report of the performance contract (``GET /api/v1/kpi``): reads the store, maps the figures.

The maths is ``central.kpi`` (pure); what is read is ``central.api.kpi_fetch``; the bodies are
``central.api.kpi_models``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from central.api import kpi_models as m
from central.api.deps import ServicesDep, StoreDep
from central.api.json_route import StrictJsonRoute
from central.api.kpi_json import availability_out, delays_out, period_out
from central.api.kpi_make import report_body
from central.api.models import ErrorBody
from central.api.params import parse_time, parse_zone
from central.errors import InvalidRequest
from central.kpi.energy import CabinetEnergy
from central.kpi.period import MAX_PERIOD_DAYS, PeriodError, kpi_period
from central.kpi.report import CSV_TABLES, CsvTable, GroupEnergy, KpiReport

MAX_TOWN_CHARS = 200
MAX_TZ_CHARS = 64

DESCRIPTION = f"""The contract's three figures over a period: energy, availability, intervention delays.

**Period**: `from` (inclusive) and `to` (exclusive), milliseconds since 1970 UTC or ISO 8601, snapped
outwards to the 15-minute grid of the rollups, `to` cut at the end of the last quarter that ended a
minute ago (a settled quarter: the quarter under way is not complete, and the one just ended still
has readings in flight); at most
{MAX_PERIOD_DAYS} days. Days are the local days of `tz`. `town` keeps the cabinets the registry puts
in that town.

While a report to the last settled quarter is being made (seconds, after a quarter settles or its
inputs changed), it is answered at once with the last one made of the same period, or of the period
a quarter earlier: its `period` says which.

**Energy** (kWh per cabinet, per town, per local day): every energy counter of a cabinet (points
named `...energy_wh`) from its 15-minute rollups, with the rules of the energy endpoint (a counter
that goes back was reset: what it counted since is kept, what came before the reset is lost; readings
missing: the energy across the gap is spread by time and the day flagged `interpolated`; a jump beyond
100 kW is a glitch, ignored and flagged `absurd`). Two baselines, each compared with the measured
energy of the cabinets that have it:
- `full_power_kwh`: the registry's `rated_power_w` x the hours the lamps were lit, as if never dimmed.
  Hours lit come from the relay points (`<device>/relay`, `<device>/relay_<n>`): a quarter's share lit
  is the mean of its good relay readings; a cabinet's several relays count equally. A quarter without
  a good relay reading adds nothing (`lit_known_hours` tells how much was known), so gaps never
  overstate the saving.
- `historical_kwh`: the registry's `baseline_kwh_per_day`, prorated for part days.
`*_saved_pct` = (baseline - measured) / baseline x 100.

**Availability** per equipment class (lighting, traffic_controller, camera, as the equipment view
classifies drivers), per town too: the share of device x time the device was online and reading good.
Per 15-minute quarter, a device's share is that of good readings of its probe point (the first point
of its inventory; a text point: 1 when its last reading in the quarter was good), never more than the
part of the quarter outside its `device_lost` episodes (device_lost to device_back, the cabinet's
clock). Central keeps no history of a cabinet's link, and an offline cabinet keeps polling and
buffering: a link outage costs nothing once its data arrives, and a quarter from which nothing arrived
(cabinet down, data evicted, not yet delivered) counts as unavailable.

**Delays** per severity, per town, per both: alarm episodes raised in the period; raised ->
acknowledged (by an operator) and raised -> cleared (by the cabinet's clearing event), in seconds,
median and 90th percentile by **nearest rank** (the p-th percentile of n sorted delays is the one of
rank ceil(p/100 x n), counted from 1: a delay that happened, never an interpolation; the median of an
even count is the lower middle one). Episodes not yet acknowledged or cleared count in `episodes`
only. A negative delay (clocks of cabinet and central differ) counts as 0.

**CSV** (`format=csv`): one table per request, `table=energy|availability|delays`, a header row then
one row per figure (empty cell: no figure):
- energy: scope (cabinet|town|total), cabinet, town, date (empty: the whole period), kwh, lit_hours,
  lit_known_hours, full_power_kwh, full_power_saved_pct, historical_kwh, historical_saved_pct,
  coverage, reset, interpolated, absurd (0/1);
- availability: scope (class|town), town, equipment_class, devices, period_h, available_h,
  availability_pct;
- delays: scope (total|severity|town|town_severity), town, severity, episodes, acknowledged,
  ack_median_s, ack_p90_s, cleared, clear_median_s, clear_p90_s.
"""

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV"},
    422: {"model": ErrorBody, "description": "a parameter is wrong: the error names it"},
    429: {"model": ErrorBody, "description": "as many reports as central computes at once are under way"},
}

router = APIRouter(tags=["kpi"], route_class=StrictJsonRoute)


def _days_out(group: GroupEnergy | CabinetEnergy) -> list[m.EnergyDayOut]:
    return [m.EnergyDayOut(date=d.date, **m.EnergyFiguresOut.of(d.figures).model_dump()) for d in group.days]


def _town_out(group: GroupEnergy) -> m.TownEnergyOut:
    return m.TownEnergyOut(
        town=group.town,
        cabinets=group.total.cabinets,
        total=m.EnergyFiguresOut.of(group.total),
        days=_days_out(group),
    )


def report_out(report: KpiReport) -> m.KpiOut:
    a, d = report.availability, report.delays
    return m.KpiOut(
        period=period_out(report),
        energy=m.EnergyOut(
            cabinets=[
                m.CabinetEnergyOut(
                    cabinet=c.cabinet,
                    town=c.town,
                    counters=c.counters,
                    resets=c.resets,
                    total=m.EnergyFiguresOut.of(c.total),
                    days=_days_out(c),
                )
                for c in report.energy.cabinets
            ],
            towns=[_town_out(t) for t in report.energy.towns],
            total=_town_out(report.energy.total),
        ),
        availability=availability_out(a),
        delays=delays_out(d),
    )


@router.get("/kpi", response_model=m.KpiOut, responses=_RESPONSES, description=DESCRIPTION)
async def kpi(
    *,
    request: Request,
    services: ServicesDep,
    store: StoreDep,
    start: Annotated[
        str, Query(alias="from", max_length=40, description="start: ms since 1970 UTC or ISO 8601")
    ],
    end: Annotated[str, Query(alias="to", max_length=40, description="end (exclusive): ms or ISO 8601")],
    town: Annotated[
        str | None, Query(max_length=MAX_TOWN_CHARS, description="only this town's cabinets")
    ] = None,
    tz: Annotated[str, Query(max_length=MAX_TZ_CHARS, description="IANA time zone of the days")] = "UTC",
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
    table: Annotated[
        CsvTable | None, Query(description="with format=csv: energy, availability or delays")
    ] = None,
) -> m.KpiOut | Response:
    """The KPI report (see the description)."""
    start_ms, end_ms = parse_time("from", start), parse_time("to", end)
    if format == "csv" and table is None:
        raise InvalidRequest.field(
            ("query", "table"), f"format=csv gives one table: add table={'|'.join(CSV_TABLES)}", None
        )
    zone_info = parse_zone(tz)
    try:
        period = kpi_period(start_ms, end_ms, zone_info, now_ms=services.clock())
    except PeriodError as exc:
        given = {"from": start, "to": end, "tz": tz}.get(exc.field)
        raise InvalidRequest.field(("query", exc.field), exc.problem, given) from None
    made = await report_body(
        request.app,
        store,
        period,
        tz,
        town=town,
        table=table if format == "csv" else None,
        now_ms=services.clock(),
    )
    headers: dict[str, str] = {}
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        # Given compressed, the gzip middleware passes it as it is (it adds Vary to the others).
        body = made.gzipped()
        headers |= {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    else:
        body = made.raw
    if format == "csv" and table is not None:
        name = f"kpi-{table}-{period.start_ms}-{period.end_ms}.csv"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether the gzip middleware would compress for this Accept-Encoding header (it looks for
    "gzip" in it, q-values aside): then the body compressed once is given instead."""
    return "gzip" in accept_encoding.lower()
