"""The open datasets' tables and features, and the DCAT catalogue that lists them. Pure.

Only what the public may see: towns, days, energy, hours per state, cabinet ids, coordinates and
counts of equipment per class. Never a camera's data, an operator's name, an address, a label (it may
be one), a network address, a username, a hash or anything else of a cabinet's configuration.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from central.kpi.energy import EnergyFigures
from central.kpi.report import Cell, GroupEnergy, rounded
from central.kpi.traffic import STATES, StateHours

LICENCE_URL = "https://www.etalab.gouv.fr/licence-ouverte-open-licence"
LICENCE_TITLE = "Licence Ouverte / Open Licence version 2.0"
LICENCE_ID = "etalab-2.0"
PREFIX = "/opendata"
EQUIPMENT_CLASSES = ("lighting", "traffic_controller", "camera", "other")

Coordinates = tuple[float, float]  # (longitude, latitude), as GeoJSON orders them


LIGHTING_COLUMNS = (
    "town", "date", "cabinets", "kwh", "full_power_kwh", "full_power_saved_pct", "lit_hours_mean", "coverage",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    title: str
    description: str
    keywords: tuple[str, ...]
    columns: tuple[str, ...]
    location: str  # what a GeoJSON feature's point is


LIGHTING = Dataset(
    name="lighting-energy-daily",
    title="Street lighting: energy and hours lit per town and day",
    description=(
        "For each town and local day of the period: the cabinets counted, the energy their meters"
        " measured (kWh), the energy the same lamps would have used at full power for the same hours"
        " without dimming (kWh), the share saved (%), and the mean hours lit per cabinet."
    ),
    keywords=("street lighting", "energy", "dimming"),
    columns=(
        "town",
        "date",
        "cabinets",
        "kwh",
        "full_power_kwh",
        "full_power_saved_pct",
        "lit_hours_mean",
        "coverage",
    ),
    location="the mean of the coordinates of the town's cabinets",
)
TRAFFIC = Dataset(
    name="traffic-controllers-daily",
    title="Traffic-light controllers: hours per state per town and day",
    description=(
        "For each town and local day: the traffic-light controllers counted and the hours they spent"
        " summed over them, in normal operation, flashing amber, dark, manual control, in fault, in"
        " another mode, or unknown (no reading), at 15-minute resolution."
    ),
    keywords=("traffic lights", "signalised intersections", "availability"),
    columns=("town", "date", "controllers", *(f"hours_{state}" for state in STATES)),
    location="the mean of the coordinates of the town's cabinets",
)
EQUIPMENT = Dataset(
    name="equipment",
    title="Street cabinets and their equipment",
    description=(
        "Each provisioned street cabinet: its id, town and coordinates, and how many devices of each"
        " class it drives (street lighting, traffic-light controllers, cameras, other)."
    ),
    keywords=("street furniture", "inventory"),
    columns=("cabinet", "town", "latitude", "longitude", *EQUIPMENT_CLASSES),
    location="the cabinet",
)
DATASETS: dict[str, Dataset] = {d.name: d for d in (LIGHTING, TRAFFIC, EQUIPMENT)}
FORMATS = {"csv": "text/csv", "geojson": "application/geo+json"}


def valid_coordinates(latitude: float | None, longitude: float | None) -> Coordinates | None:
    if latitude is None or longitude is None:
        return None
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return round(longitude, 6), round(latitude, 6)


def town_points(cabinets: Iterable[tuple[str, Coordinates | None]]) -> dict[str, Coordinates]:
    """Each town's point: the mean of its cabinets' coordinates (towns span a few km: no wrap-around)."""
    found: dict[str, list[Coordinates]] = {}
    for town, where in cabinets:
        if where is not None:
            found.setdefault(town, []).append(where)
    return {
        town: (
            round(math.fsum(p[0] for p in ps) / len(ps), 6),
            round(math.fsum(p[1] for p in ps) / len(ps), 6),
        )
        for town, ps in found.items()
    }


def lighting_rows(towns: Sequence[GroupEnergy]) -> list[dict[str, Cell]]:
    rows: list[dict[str, Cell]] = []
    for group in towns:
        if group.town is None:  # cabinets not registered: no town to publish them under
            continue
        for day in group.days:
            f: EnergyFigures = day.figures
            rows.append(
                {
                    "town": group.town,
                    "date": day.date.isoformat(),
                    "cabinets": f.cabinets,
                    "kwh": rounded(f.kwh, 3),
                    "full_power_kwh": rounded(f.full_power_kwh, 3),
                    "full_power_saved_pct": rounded(f.full_power_saved_pct, 2),
                    "lit_hours_mean": rounded(f.lit_hours / f.cabinets, 3) if f.cabinets else None,
                    "coverage": rounded(f.coverage, 4),
                }
            )
    return rows


def traffic_rows(hours: Mapping[tuple[str, dt.date], StateHours]) -> list[dict[str, Cell]]:
    rows: list[dict[str, Cell]] = []
    for (town, date), h in sorted(hours.items()):
        row: dict[str, Cell] = {"town": town, "date": date.isoformat(), "controllers": h.controllers}
        row |= {f"hours_{state}": round(h.hours[state], 3) for state in STATES}
        rows.append(row)
    return rows


@dataclass(frozen=True, slots=True)
class CabinetItem:
    cabinet: str
    town: str
    where: Coordinates | None
    counts: Mapping[str, int]


def equipment_rows(items: Sequence[CabinetItem]) -> list[dict[str, Cell]]:
    rows: list[dict[str, Cell]] = []
    for item in sorted(items, key=lambda i: i.cabinet):
        row: dict[str, Cell] = {
            "cabinet": item.cabinet,
            "town": item.town,
            "latitude": None if item.where is None else item.where[1],
            "longitude": None if item.where is None else item.where[0],
        }
        row |= {name: item.counts.get(name, 0) for name in EQUIPMENT_CLASSES}
        rows.append(row)
    return rows


def feature_collection(
    rows: Sequence[Mapping[str, Cell]], where: Mapping[str, Coordinates | None], key: str
) -> dict[str, Any]:
    """RFC 7946: one Feature per row, a Point at ``where[row[key]]`` ([lon, lat]) or a null geometry."""
    features = []
    for row in rows:
        point = where.get(str(row[key]))
        geometry = None if point is None else {"type": "Point", "coordinates": [point[0], point[1]]}
        properties = {k: v for k, v in row.items() if k not in ("latitude", "longitude")}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def catalog(
    *,
    modified_ms: Mapping[str, int],
    first: dt.date,
    last: dt.date,
    tz: str,
    refresh_s: float,
) -> dict[str, Any]:
    """A DCAT catalogue (JSON-LD keys) of the datasets, their distributions and licence. Links are
    relative to this document (never built from a request's Host header: the answer is cached)."""
    licence = {"@id": LICENCE_URL, "dct:title": LICENCE_TITLE, "dct:identifier": LICENCE_ID}
    datasets = []
    for d in DATASETS.values():
        temporal = (
            None
            if d is EQUIPMENT
            else {
                "@type": "dct:PeriodOfTime",
                "dcat:startDate": first.isoformat(),
                "dcat:endDate": last.isoformat(),
            }
        )
        entry: dict[str, Any] = {
            "@type": "dcat:Dataset",
            "@id": f"{PREFIX}/catalog.json#{d.name}",
            "dct:identifier": d.name,
            "dct:title": d.title,
            "dct:description": f"{d.description} GeoJSON features are points at {d.location}."
            + ("" if d is EQUIPMENT else f" Days are calendar days in the {tz} time zone."),
            "dcat:keyword": list(d.keywords),
            "dct:license": licence,
            "dct:modified": iso(modified_ms[d.name]),
            "dct:accrualPeriodicity": {"@id": "http://purl.org/cld/freq/daily"},
            "dcat:distribution": [
                {
                    "@type": "dcat:Distribution",
                    "dct:title": f"{d.title} ({fmt.upper()})",
                    "dcat:accessURL": f"{PREFIX}/{d.name}.{fmt}",
                    "dcat:downloadURL": f"{PREFIX}/{d.name}.{fmt}",
                    "dcat:mediaType": media,
                    "dct:format": fmt.upper(),
                    "dct:license": licence,
                }
                for fmt, media in FORMATS.items()
            ],
        }
        if temporal is not None:
            entry["dct:temporal"] = temporal
        datasets.append(entry)
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
        },
        "@type": "dcat:Catalog",
        "@id": f"{PREFIX}/catalog.json",
        "dct:title": "cityedge open data",
        "dct:description": (
            "Open data of the city's street cabinets: lighting energy, traffic-light controller states,"
            f" equipment. Computed from the control room's store and refreshed every {refresh_s:g} s at"
            " most. No camera data, no personal data."
        ),
        "dct:license": licence,
        "dcat:dataset": datasets,
    }
