"""Open data end to end: the city of kpi_city through a real SQLite store, read with no token.

Every dataset parses as CSV (the csv module) and as GeoJSON (RFC 7946's structure, checked here), none
holds a field or a value from the deny list, the catalogue is DCAT with the licence, and nothing but
GET is answered.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.kpi.opendata import DATASETS, LICENCE_TITLE, LICENCE_URL
from tests.integration.api_client import LocalApi, local_api
from tests.integration.kpi_city import MAY1, NOW, SECRETS, Feed, build_city

pytestmark = pytest.mark.integration

FILES = [f"{name}.{fmt}" for name in DATASETS for fmt in ("csv", "geojson")]
# Words a key may not hold (split on _ - : and camelCase): credentials, network addresses, people.
DENIED = {
    "password", "passwd", "token", "secret", "hash", "url", "uri", "rtsp", "username", "user", "ip",
    "address", "host", "acked", "assigned", "author", "operator", "label", "email", "login", "credential",
}  # fmt: skip
IPV4 = re.compile(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db", clock=lambda: NOW) as api:
        await build_city(api.store)
        yield api


@pytest.fixture
async def public(api: LocalApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as client:  # no token at all
        yield client


def words(key: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", key)
    return {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}


def walk(doc: Any) -> Iterator[tuple[str | None, Any]]:
    """Every (key, value) of a JSON document, and every bare value (key None) of its lists."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield k, v
            yield from walk(v)
    elif isinstance(doc, list):
        for v in doc:
            yield None, v
            yield from walk(v)


PUBLIC_LINKS = ("https://www.etalab.gouv.fr/", "http://www.w3.org/", "http://purl.org/")


def check_clean(keys: list[str], values: list[Any], where: str, *, links_ok: bool = False) -> None:
    """No denied word in a key, no IP address, link (but the catalogue's public ones) or planted
    secret in a value."""
    for key in keys:
        bad = words(key) & DENIED
        assert not bad or (links_ok and key in ("dcat:accessURL", "dcat:downloadURL")), (where, key)
    for value in values:
        if isinstance(value, dict | list):  # walk gives their contents too
            continue
        text = str(value)
        assert not IPV4.search(text), (where, text)
        assert "://" not in text or (links_ok and text.startswith(PUBLIC_LINKS)), (where, text)
        for secret in SECRETS:
            assert secret not in text, (where, secret)


def check_geojson(doc: Any) -> None:
    """RFC 7946: a FeatureCollection of Features, each a null geometry or a Point [lon, lat] in range."""
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert isinstance(doc["features"], list) and doc["features"]
    for feature in doc["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        if geometry is None:
            continue
        assert geometry["type"] == "Point"
        lon, lat = geometry["coordinates"]
        assert all(isinstance(x, int | float) and not isinstance(x, bool) for x in (lon, lat))
        assert -180 <= lon <= 180 and -90 <= lat <= 90


async def get(public: httpx.AsyncClient, file: str) -> httpx.Response:
    response = await public.get(f"/opendata/{file}")
    assert response.status_code == 200, (file, response.text)
    assert response.headers["link"] == f'<{LICENCE_URL}>; rel="license"'
    return response


async def test_every_dataset_parses_as_csv_and_geojson_and_leaks_nothing(public: httpx.AsyncClient) -> None:
    for name, dataset in DATASETS.items():
        text = (await get(public, f"{name}.csv")).text
        reader = csv.reader(io.StringIO(text))
        header = next(reader)
        rows = list(reader)
        assert tuple(header) == dataset.columns and rows, name
        assert all(len(row) == len(header) for row in rows), name
        check_clean(header, [cell for row in rows for cell in row], f"{name}.csv")

        response = await get(public, f"{name}.geojson")
        assert response.headers["content-type"] == "application/geo+json"
        doc = response.json()
        check_geojson(doc)
        pairs = list(walk(doc))
        check_clean([k for k, _ in pairs if k is not None], [v for _, v in pairs], f"{name}.geojson")


async def test_the_datasets_hold_the_hand_checked_figures(public: httpx.AsyncClient) -> None:
    lighting = list(csv.DictReader(io.StringIO((await get(public, "lighting-energy-daily.csv")).text)))
    # The last 31 whole days before 2024-05-03 (UTC): 2024-04-02 .. 2024-05-02, two towns.
    assert len(lighting) == 2 * 31
    assert (lighting[0]["town"], lighting[0]["date"], lighting[-1]["date"]) == (
        "Chenôve",
        "2024-04-02",
        "2024-05-02",
    )
    dijon = {r["date"]: r for r in lighting if r["town"] == "Dijon"}
    # May 1: 11.7 kWh measured, 2 kW x 6.125 h = 12.25 kWh at full power: 4.49 % saved.
    may1 = dijon["2024-05-01"]
    assert (may1["kwh"], may1["full_power_kwh"], may1["full_power_saved_pct"], may1["lit_hours_mean"]) == (
        "11.7", "12.25", "4.49", "6.125",
    )  # fmt: skip
    chenove = {r["date"]: r["kwh"] for r in lighting if r["town"] == "Chenôve"}
    assert (chenove["2024-05-01"], chenove["2024-05-02"], chenove["2024-04-30"]) == ("2.4", "2.4", "0.0")

    traffic = {
        (r["town"], r["date"]): r
        for r in csv.DictReader(io.StringIO((await get(public, "traffic-controllers-daily.csv")).text))
    }
    # tc1: normal all day but the lost hour (bad readings: unknown); the day after, normal 24 h.
    day = traffic[("Dijon", "2024-05-01")]
    assert (day["controllers"], day["hours_normal"], day["hours_unknown"], day["hours_fault"]) == (
        "1",
        "23.0",
        "1.0",
        "0.0",
    )
    assert traffic[("Dijon", "2024-05-02")]["hours_normal"] == "24.0"
    assert traffic[("Dijon", "2024-04-30")]["hours_unknown"] == "24.0"
    assert ("Chenôve", "2024-05-01") not in traffic  # no controller there

    equipment = (await get(public, "equipment.geojson")).json()
    by_id = {f["properties"]["cabinet"]: f for f in equipment["features"]}
    a = by_id["cab-a"]
    assert a["geometry"] == {"type": "Point", "coordinates": [5.0415, 47.322]}  # [lon, lat]
    assert {k: a["properties"][k] for k in ("town", "lighting", "traffic_controller", "camera", "other")} == {
        "town": "Dijon", "lighting": 1, "traffic_controller": 1, "camera": 1, "other": 0,
    }  # fmt: skip
    towns = (await get(public, "lighting-energy-daily.geojson")).json()
    chenove_point = next(f for f in towns["features"] if f["properties"]["town"] == "Chenôve")
    assert chenove_point["geometry"]["coordinates"] == [5.005, 47.29]


async def test_the_catalogue_is_dcat_with_the_licence_and_working_links(public: httpx.AsyncClient) -> None:
    response = await public.get("/opendata/catalog.json")
    assert response.status_code == 200
    catalog = json.loads(response.text)
    assert catalog["@type"] == "dcat:Catalog" and catalog["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    datasets = catalog["dcat:dataset"]
    assert sorted(d["dct:identifier"] for d in datasets) == sorted(DATASETS)
    for d in datasets:
        assert d["@type"] == "dcat:Dataset" and d["dct:description"] and d["dct:title"]
        assert d["dct:license"]["@id"] == LICENCE_URL and d["dct:license"]["dct:title"] == LICENCE_TITLE
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["dct:modified"])
        formats = {x["dct:format"]: x for x in d["dcat:distribution"]}
        assert sorted(formats) == ["CSV", "GEOJSON"]
        for distribution in formats.values():
            assert (
                distribution["@type"] == "dcat:Distribution"
                and distribution["dct:license"]["@id"] == LICENCE_URL
            )
            assert (await public.get(distribution["dcat:downloadURL"])).status_code == 200
    lighting = next(d for d in datasets if d["dct:identifier"] == "lighting-energy-daily")
    assert lighting["dct:temporal"] == {
        "@type": "dct:PeriodOfTime",
        "dcat:startDate": "2024-04-02",
        "dcat:endDate": "2024-05-02",
    }
    pairs = list(walk(catalog))
    check_clean([k for k, _ in pairs if k is not None], [v for _, v in pairs], "catalog.json", links_ok=True)


async def test_open_data_is_read_only_needs_no_token_and_is_cached(
    public: httpx.AsyncClient, api: LocalApi
) -> None:
    for file in ["catalog.json", *FILES]:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = await public.request(method, f"/opendata/{file}", content=b"{}")
            assert response.status_code == 405, (method, file)
    assert (await public.get("/opendata/cameras.csv")).status_code == 404
    assert (await public.get("/opendata/equipment.xlsx")).status_code == 404
    async with api.client(token="not-a-token") as stranger:  # a bad token is not even looked at
        assert (await stranger.get("/opendata/equipment.csv")).status_code == 200

    first = await get(public, "lighting-energy-daily.csv")
    assert first.headers["cache-control"] == "public, max-age=900"
    feed = Feed(api.store, "cab-b")
    feed.seq = 100
    await feed.send([feed.reading("m/import_energy_wh", MAY1 + 12 * 3_600_000, 1000.0)])
    again = await get(public, "lighting-energy-daily.csv")
    assert again.content == first.content  # built once per refresh period, whatever callers ask
    assert again.headers["last-modified"] == first.headers["last-modified"]
