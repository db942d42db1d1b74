"""The KPI report end to end: a city written through a real SQLite store's ingest, read over the API
as JSON and CSV. Known answers, checked by hand in the comments (see kpi_city for the fixture)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI

from central.api import kpi as kpi_api
from central.api import kpi_make
from central.kpi.period import SETTLE_MS, settled_end
from central.kpi_ahead import AFTER_SETTLED_MS, KpiAhead, month_start
from central.store import Store
from central.store.auth_rows import Role
from tests.integration.api_client import LocalApi, local_api
from tests.integration.kpi_city import NOW, build_city

pytestmark = pytest.mark.integration

PERIOD = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[LocalApi]:
    async with local_api(tmp_path / "central.db", clock=lambda: NOW) as api:
        await build_city(api.store)
        yield api


@pytest.fixture
async def http(api: LocalApi) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(Role.VIEWER) as client:
        yield client


async def kpi(http: httpx.AsyncClient, **params: str) -> Any:
    response = await http.get("/api/v1/kpi", params=PERIOD | params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_kpi_report_as_json_has_the_hand_checked_figures(http: httpx.AsyncClient) -> None:
    body = await kpi(http)
    assert body["period"] == {
        "from_ms": 1_714_521_600_000,
        "to_ms": 1_714_694_400_000,
        "tz": "UTC",
        "days": 2,
    }

    energy = body["energy"]
    cab_a, cab_b = energy["cabinets"]
    assert (cab_a["cabinet"], cab_a["town"], cab_a["counters"], cab_a["resets"]) == (
        "cab-a", "Dijon", ["lc1/energy_wh"], 1,
    )  # fmt: skip
    # May 1: 500 + 500 + 200 (reset) + 500 + 10 000 (20 h of the 24 h gap's 12 000) = 11.7 kWh;
    # May 2: 2 000 + 500 = 2.5 kWh. Full power 2 kW x 6.125 h = 12.25, 2 kW x 5 h = 10 kWh.
    assert [
        (d["date"], d["kwh"], d["full_power_kwh"], d["reset"], d["interpolated"]) for d in cab_a["days"]
    ] == [
        ("2024-05-01", 11.7, 12.25, True, True),
        ("2024-05-02", 2.5, 10.0, False, True),
    ]
    total_a = cab_a["total"]
    assert (total_a["kwh"], total_a["full_power_kwh"], total_a["historical_kwh"]) == (14.2, 22.25, 40.0)
    assert total_a["full_power_saved_pct"] == 36.18  # (22.25 - 14.2) / 22.25
    assert total_a["historical_saved_pct"] == 64.5  # (40 - 14.2) / 40
    # cab-b: 4.8 kWh over the two days, no rated power: no full-power baseline.
    b = cab_b["total"]
    assert (b["kwh"], b["full_power_kwh"], b["historical_saved_pct"]) == (4.8, None, 20.0)
    assert [(t["town"], t["cabinets"], t["total"]["kwh"]) for t in energy["towns"]] == [
        ("Chenôve", 1, 4.8),
        ("Dijon", 1, 14.2),
    ]
    total = energy["total"]["total"]
    # 14.2 + 4.8 = 19 kWh; historical 40 + 6 = 46 kWh: (46 - 19) / 46 = 58.70 %; full power: cab-a's only.
    assert (total["kwh"], total["historical_kwh"], total["historical_saved_pct"]) == (19.0, 46.0, 58.7)
    assert (total["full_power_kwh"], total["full_power_saved_pct"]) == (22.25, 36.18)

    classes = {c["equipment_class"]: c for c in body["availability"]["classes"]}
    # tc1: 48 h minus the lost hour (bad readings, device_lost 10:00-11:00) = 47 h.
    assert (classes["traffic_controller"]["available_h"], classes["traffic_controller"]["period_h"]) == (
        47.0,
        48.0,
    )
    assert classes["traffic_controller"]["availability_pct"] == 97.917  # 47 / 48
    # Lighting: lc1's probe (relay) read 96 + 20 quarters = 29 h; cab-b's m (its counter) one quarter:
    # 0.25 h. 29.25 of 2 x 48 = 96 device-hours: 30.469 %.
    assert (classes["lighting"]["devices"], classes["lighting"]["available_h"]) == (2, 29.25)
    assert classes["lighting"]["availability_pct"] == 30.469
    assert (classes["camera"]["availability_pct"], classes["camera"]["devices"]) == (100.0, 1)
    assert [(t["town"], t["equipment_class"], t["available_h"]) for t in body["availability"]["towns"]] == [
        ("Chenôve", "lighting", 0.25),
        ("Dijon", "camera", 48.0),
        ("Dijon", "lighting", 29.0),
        ("Dijon", "traffic_controller", 47.0),
    ]

    delays = body["delays"]
    severities = {d["severity"]: d for d in delays["severities"]}
    # The door opened twice: two episodes, 10 s and 18 s; nearest rank of 2: median 10, p90 18.
    warning = severities["warning"]
    assert (warning["episodes"], warning["cleared"], warning["clear_median_s"], warning["clear_p90_s"]) == (
        2, 2, 10.0, 18.0,
    )  # fmt: skip
    assert (warning["acknowledged"], warning["ack_median_s"], warning["ack_p90_s"]) == (1, 120.0, 120.0)
    # tc1 lost for an hour: one "alarm" episode of 3600 s, not acknowledged.
    assert (severities["alarm"]["episodes"], severities["alarm"]["clear_median_s"]) == (1, 3600.0)
    assert severities["alarm"]["ack_median_s"] is None
    assert (delays["total"]["episodes"], delays["total"]["clear_p90_s"]) == (3, 3600.0)
    assert [(d["town"], d["severity"], d["episodes"]) for d in delays["towns"]] == [
        ("Dijon", None, 3),
        ("Dijon", "alarm", 1),
        ("Dijon", "warning", 2),
    ]


async def test_the_report_of_one_town_and_in_local_days(http: httpx.AsyncClient) -> None:
    body = await kpi(http, town="Chenôve", tz="Europe/Paris")
    assert [c["cabinet"] for c in body["energy"]["cabinets"]] == ["cab-b"]
    # UTC midnight is 02:00 in Paris: the period is 22 h of May 1, May 2, and 2 h of May 3, local.
    days = body["energy"]["total"]["days"]
    assert [(d["date"], d["kwh"]) for d in days] == [
        ("2024-05-01", 2.2),
        ("2024-05-02", 2.4),
        ("2024-05-03", 0.2),
    ]
    assert body["delays"]["total"]["episodes"] == 0


async def test_the_report_as_csv_tables(http: httpx.AsyncClient) -> None:
    tables: dict[str, list[dict[str, str]]] = {}
    for table in ("energy", "availability", "delays"):
        response = await http.get("/api/v1/kpi", params=PERIOD | {"format": "csv", "table": table})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert f"kpi-{table}-" in response.headers["content-disposition"]
        tables[table] = list(csv.DictReader(io.StringIO(response.text)))
    total = next(r for r in tables["energy"] if r["scope"] == "total" and r["date"] == "")
    assert (total["kwh"], total["historical_saved_pct"], total["full_power_kwh"]) == ("19.0", "58.7", "22.25")
    cab_b = next(r for r in tables["energy"] if r["cabinet"] == "cab-b" and r["date"] == "2024-05-01")
    assert (cab_b["kwh"], cab_b["full_power_kwh"], cab_b["interpolated"]) == ("2.4", "", "1")
    assert len(tables["energy"]) == 2 * 3 + 2 * 3 + 3  # cabinets, towns, total: each a total row and 2 days
    tc = next(
        r
        for r in tables["availability"]
        if r["scope"] == "class" and r["equipment_class"] == "traffic_controller"
    )
    assert (tc["available_h"], tc["availability_pct"]) == ("47.0", "97.917")
    warning = next(r for r in tables["delays"] if r["scope"] == "severity" and r["severity"] == "warning")
    w = warning
    assert (w["episodes"], w["clear_median_s"], w["clear_p90_s"], w["ack_median_s"]) == (
        "2",
        "10.0",
        "18.0",
        "120.0",
    )


async def test_bad_queries_get_a_422_naming_the_parameter(http: httpx.AsyncClient, api: LocalApi) -> None:
    for params, name, words in [
        ({"format": "csv"}, "table", "table=energy|availability|delays"),
        ({"tz": "Europe/Dijon"}, "tz", "IANA time zone"),
        ({"town": "Atlantis"}, "town", "no registered cabinet"),
        ({"from": "yesterday"}, "from", "ISO 8601"),
        ({"to": "2024-04-01T00:00:00Z"}, "to", "after from"),
        ({"from": "2023-01-01T00:00:00Z"}, "to", "at most 366 days"),
        ({"table": "secrets", "format": "csv"}, "table", ""),
    ]:
        response = await http.get("/api/v1/kpi", params=PERIOD | params)
        assert response.status_code == 422, (params, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name], params
        assert words in error["msg"], (params, error)
    async with api.client() as anonymous:
        assert (await anonymous.get("/api/v1/kpi", params=PERIOD)).status_code == 401


async def test_a_report_beyond_those_under_way_is_refused_with_a_retry_after(
    http: httpx.AsyncClient, api: LocalApi
) -> None:
    made = await http.get("/api/v1/kpi", params=PERIOD)
    assert made.status_code == 200
    gate = kpi_make.report_gate(api.app)
    for _ in range(kpi_make.MAX_CONCURRENT_REPORTS):  # as if that many reports were under way
        await gate.acquire()
    # The report made already is given as it is (nothing it is made from changed); another must be
    # made, and waits for a free slot.
    again = await http.get("/api/v1/kpi", params=PERIOD)
    assert again.status_code == 200 and again.content == made.content
    busy = await http.get("/api/v1/kpi", params=PERIOD | {"tz": "Europe/Paris"})
    assert (busy.status_code, busy.headers["retry-after"]) == (429, "30")
    assert "being computed" in busy.json()["detail"]
    gate.release()
    assert (await http.get("/api/v1/kpi", params=PERIOD | {"tz": "Europe/Paris"})).status_code == 200


async def test_callers_asking_the_same_report_at_once_get_it_made_once(
    http: httpx.AsyncClient, api: LocalApi
) -> None:
    """More callers than the reports made at once, asking the same one: none is refused, all get the
    same body, and it was made once (the cabinets' days were read once)."""
    reads = 0
    kpi_days = api.store.kpi_days

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)  # long enough for every caller to arrive while it is made
        return await kpi_days(*args, **kwargs)

    api.store.kpi_days = counted  # type: ignore[method-assign]
    answers = await asyncio.gather(
        *(http.get("/api/v1/kpi", params=PERIOD) for _ in range(kpi_make.MAX_CONCURRENT_REPORTS + 2))
    )
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert len({a.content for a in answers}) == 1
    assert reads == 1


async def test_the_pages_report_is_made_ahead_as_each_quarter_settles(
    http: httpx.AsyncClient, api: LocalApi
) -> None:
    """The page's period (the last 30 days to the last settled quarter, UTC) made by the task: the
    page's request then reads no cabinet's days."""
    ahead = KpiAhead(api.app, api.store, clock=lambda: NOW)
    # NOW is 12:00:00: 11:45-12:00 settles at 12:01, made 2 s later.
    assert ahead.seconds_to_next_run() == (SETTLE_MS + AFTER_SETTLED_MS) / 1000
    await ahead.make_once()
    reads = 0
    kpi_days = api.store.kpi_days

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await kpi_days(*args, **kwargs)

    api.store.kpi_days = counted  # type: ignore[method-assign]
    end = settled_end(NOW)
    assert end == NOW - 15 * 60_000
    page = await http.get("/api/v1/kpi", params={"from": str(end - 30 * 86_400_000), "to": str(NOW)})
    assert page.status_code == 200, page.text
    assert page.json()["period"]["to_ms"] == end
    month = await http.get("/api/v1/kpi", params={"from": "2024-05-01T00:00:00Z", "to": str(NOW)})
    assert month.status_code == 200, month.text
    assert reads == 0
    assert sum(c["total"]["kwh"] for c in page.json()["energy"]["cabinets"]) > 0
    assert ahead.made == 2


def test_the_month_made_ahead_is_the_one_before_until_a_quarter_of_this_one_settled() -> None:
    june = 1_717_200_000_000  # 2024-06-01T00:00:00Z
    assert month_start(june + 5 * 86_400_000, ZoneInfo("UTC"), months_back=0) == june
    assert month_start(june, ZoneInfo("UTC"), months_back=6) == 1_701_388_800_000  # 2023-12-01
    ahead = KpiAhead(FastAPI(), cast(Store, None), clock=lambda: june)
    _, month = ahead.periods(june + 30_000)  # 23:45-00:00 is settling
    assert (month.start_ms, month.end_ms) == (1_714_521_600_000, june - 15 * 60_000)  # May 1 - 23:45
    _, month = ahead.periods(june + 10 * 60_000)  # May is whole
    assert (month.start_ms, month.end_ms) == (1_714_521_600_000, june)
    _, month = ahead.periods(june + 17 * 60_000)
    assert (month.start_ms, month.end_ms) == (june, june + 15 * 60_000)


async def test_the_report_is_given_compressed_to_who_takes_gzip(http: httpx.AsyncClient) -> None:
    plain = await http.get("/api/v1/kpi", params=PERIOD, headers={"accept-encoding": "identity"})
    packed = await http.get("/api/v1/kpi", params=PERIOD, headers={"accept-encoding": "br, gzip;q=0.5"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip" and packed.headers["vary"] == "Accept-Encoding"
    assert packed.content == plain.content  # httpx took the gzip off
    # As the middleware judges it for every other answer (q-values aside).
    assert kpi_api.accepts_gzip("br, GZIP") and not kpi_api.accepts_gzip("deflate, br")


async def test_the_openapi_schema_documents_the_figures(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/kpi"]["get"]
    assert "nearest rank" in operation["description"]
    assert "device_lost" in operation["description"]
    props = schema["components"]["schemas"]["EnergyFiguresOut"]["properties"]
    assert "rated power" in props["full_power_kwh"]["description"]
