"""Open data under /opendata/: no token, GET only, computed from the store and cached.

    /opendata/catalog.json                        the DCAT catalogue of the datasets below
    /opendata/lighting-energy-daily.csv|.geojson  energy and hours lit per town and local day
    /opendata/traffic-controllers-daily.csv|.geojson  hours per controller state per town and day
    /opendata/equipment.csv|.geojson              each provisioned cabinet: town, coordinates, counts

Anyone may call these, so no caller sets what is computed: the period is fixed (the last
``OpenDataSettings.days`` whole local days), and each dataset is built at most once per
``refresh_s`` per process (a burst of callers waits for the one build, then shares it). What goes
out is chosen field by field (``central.kpi.opendata``): nothing of cameras, operators or credentials.
Licence: Etalab Open Licence 2.0.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, Response

from central.api.deps import services_of
from central.api.kpi_fetch import (
    Scope,
    equipment_class,
    quarters,
    scope_of,
)
from central.api.kpi_make import energy_of_period
from central.energy import local_days
from central.kpi import opendata as od
from central.kpi.period import Period, days_of, settled_end
from central.kpi.report import Cell, csv_cell
from central.kpi.traffic import FAULT_POINT, MODE_POINT, StateHours, controller_hours
from central.store import Store

MAX_DAYS = 90
_STATE = "opendata"


@dataclass(frozen=True, slots=True)
class OpenDataSettings:
    """``days`` whole local days of ``tz`` before today; each dataset rebuilt at most every ``refresh_s``."""

    days: int = 31
    refresh_s: float = 900.0
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"open data covers 1 to {MAX_DAYS} days, got {self.days}")
        if not self.refresh_s >= 1:
            raise ValueError(f"refresh_s must be at least 1 s, got {self.refresh_s}")
        ZoneInfo(self.tz)  # raises for an unknown zone


@dataclass(slots=True)
class _Built:
    files: dict[str, bytes]  # format -> body
    built_ms: int
    fresh_until: float  # monotonic


@dataclass(slots=True)
class OpenData:
    settings: OpenDataSettings
    built: dict[str, _Built] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


def install(app: FastAPI, settings: OpenDataSettings | None = None) -> None:
    setattr(app.state, _STATE, OpenData(settings or OpenDataSettings()))


def _open_data(request: Request) -> OpenData:
    found = getattr(request.app.state, _STATE, None)
    if not isinstance(found, OpenData):
        raise RuntimeError("open data is not installed: build the app with create_app")
    return found


def window(settings: OpenDataSettings, now_ms: int) -> Period:
    """The last ``days`` whole local days before today; in the minute after midnight, yesterday up
    to its last settled quarter (``central.kpi.period``: its last readings are in flight)."""
    zone = ZoneInfo(settings.tz)
    today = dt.datetime.fromtimestamp(now_ms / 1000, zone).date()
    days = local_days(today - dt.timedelta(days=settings.days), today - dt.timedelta(days=1), zone)
    start, end = days[0].start_ms, min(days[-1].end_ms, settled_end(now_ms))
    return Period(start, end, tuple(days_of(start, end, zone)))


def _where(scope: Scope) -> dict[str, od.Coordinates | None]:
    return {e.cabinet: od.valid_coordinates(e.latitude, e.longitude) for e in scope.registry.values()}


def _town_points(scope: Scope) -> dict[str, od.Coordinates]:
    where = _where(scope)
    return od.town_points((e.town, where[e.cabinet]) for e in scope.registry.values() if e.revoked_ms is None)


@dataclass(frozen=True, slots=True)
class _Build:
    """What a dataset is built from."""

    app: FastAPI
    store: Store
    scope: Scope
    period: Period
    tz: str


async def _lighting(b: _Build) -> tuple[list[dict[str, Cell]], Mapping[str, Any]]:
    # The KPI report's energy of the same days: its cached days and parts (central.api.kpi_make).
    report = await energy_of_period(b.app, b.store, b.period, b.tz)
    return od.lighting_rows(report.towns), _town_points(b.scope)


async def _traffic(b: _Build) -> tuple[list[dict[str, Cell]], Mapping[str, Any]]:
    store, scope, period = b.store, b.scope, b.period
    hours: dict[tuple[str, dt.date], StateHours] = {}
    for cabinet in scope.cabinets:
        town = scope.town(cabinet.id)
        if town is None:
            continue
        for device in cabinet.inventory:
            if equipment_class(device) != "traffic_controller" or MODE_POINT not in device.points:
                continue
            mode = await quarters(store, cabinet.id, f"{device.name}/{MODE_POINT}", period)
            fault = (
                await quarters(store, cabinet.id, f"{device.name}/{FAULT_POINT}", period)
                if FAULT_POINT in device.points
                else []
            )
            for day, h in zip(period.days, controller_hours(mode, fault, period.days), strict=True):
                hours.setdefault((town, day.date), StateHours(controllers=0)).add(h)
    return od.traffic_rows(hours), _town_points(scope)


async def _equipment(b: _Build) -> tuple[list[dict[str, Cell]], Mapping[str, Any]]:
    scope = b.scope  # the inventory now, whatever the period
    known = {c.id: c for c in scope.cabinets}
    items = []
    for entry in scope.registry.values():
        if entry.revoked_ms is not None:
            continue
        counts: dict[str, int] = {}
        if (cabinet := known.get(entry.cabinet)) is not None:
            for device in cabinet.inventory:
                name = equipment_class(device)
                counts[name] = counts.get(name, 0) + 1
        items.append(
            od.CabinetItem(
                entry.cabinet, entry.town, od.valid_coordinates(entry.latitude, entry.longitude), counts
            )
        )
    return od.equipment_rows(items), _where(scope)


_BUILDERS = {
    od.LIGHTING.name: (_lighting, "town"),
    od.TRAFFIC.name: (_traffic, "town"),
    od.EQUIPMENT.name: (_equipment, "cabinet"),
}


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, Cell]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([csv_cell(row[c]) for c in columns] for row in rows)
    return out.getvalue().encode()


async def _dataset(request: Request, name: str) -> _Built:
    state = _open_data(request)
    built = state.built.get(name)
    if built is not None and time.monotonic() < built.fresh_until:
        return built
    async with state.locks.setdefault(name, asyncio.Lock()):
        built = state.built.get(name)
        if built is not None and time.monotonic() < built.fresh_until:  # built while this one waited
            return built
        services = services_of(request)
        now = services.clock()
        period = window(state.settings, now)
        scope = await scope_of(services.store, None)
        builder, key = _BUILDERS[name]
        rows, where = await builder(_Build(request.app, services.store, scope, period, state.settings.tz))
        dataset = od.DATASETS[name]
        files = {
            "csv": _csv(dataset.columns, rows),
            "geojson": json.dumps(od.feature_collection(rows, where, key), ensure_ascii=False).encode(),
        }
        built = _Built(files, now, time.monotonic() + state.settings.refresh_s)
        state.built[name] = built
        return built


def _headers(settings: OpenDataSettings, built_ms: int) -> dict[str, str]:
    return {
        "Cache-Control": f"public, max-age={int(settings.refresh_s)}",
        "Last-Modified": dt.datetime.fromtimestamp(built_ms / 1000, dt.UTC).strftime(
            "%a, %d %b %Y %H:%M:%S GMT"
        ),
        "Link": f'<{od.LICENCE_URL}>; rel="license"',
        "Access-Control-Allow-Origin": "*",
    }


router = APIRouter(prefix=od.PREFIX, tags=["open data"])


@router.get("/catalog.json", summary="The DCAT catalogue of the open datasets (no token)")
async def catalog(request: Request) -> Response:
    """Each dataset with its description, licence (Etalab Open Licence 2.0), update time, period and
    its CSV and GeoJSON distributions. No token needed."""
    state = _open_data(request)
    now = services_of(request).clock()
    period = window(state.settings, now)
    modified = {name: built.built_ms if (built := state.built.get(name)) else now for name in od.DATASETS}
    body = od.catalog(
        modified_ms=modified,
        first=period.days[0].date,
        last=period.days[-1].date,
        tz=state.settings.tz,
        refresh_s=state.settings.refresh_s,
    )
    return Response(
        json.dumps(body, ensure_ascii=False),
        media_type="application/ld+json",
        headers=_headers(state.settings, now),
    )


@router.get("/{file}", summary="One open dataset as CSV or GeoJSON (no token)")
async def dataset(
    request: Request, file: Annotated[str, Path(max_length=64, description="e.g. equipment.csv")]
) -> Response:
    """``<dataset>.csv`` or ``<dataset>.geojson``, for a dataset of the catalogue. No token needed."""
    name, _, fmt = file.rpartition(".")
    if name not in od.DATASETS or fmt not in od.FORMATS:
        raise HTTPException(
            404,
            f"no open dataset {file!r}: /opendata/catalog.json lists them"
            f" ({', '.join(od.DATASETS)}; .csv or .geojson)",
        )
    built = await _dataset(request, name)
    media = od.FORMATS[fmt] + ("; charset=utf-8" if fmt == "csv" else "")
    return Response(
        built.files[fmt], media_type=media, headers=_headers(_open_data(request).settings, built.built_ms)
    )
