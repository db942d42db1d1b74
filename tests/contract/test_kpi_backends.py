"""The KPI report and open data give the same figures on every backend (the city of kpi_city)."""

from __future__ import annotations

import csv
import io

import httpx

from central.api import create_app
from central.store import Store
from central.store.auth_rows import Role
from tests.integration.api_client import bearer, new_token
from tests.integration.kpi_city import NOW, build_city


async def test_the_kpi_report_and_open_data_are_the_same_on_every_backend(store: Store) -> None:
    await build_city(store)
    token = await new_token(store, Role.VIEWER)
    app = create_app(store=store, clock=lambda: NOW)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://central.test", headers=bearer(token)
    ) as http:
        response = await http.get(
            "/api/v1/kpi", params={"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        lighting = await http.get("/opendata/lighting-energy-daily.csv")
    total = body["energy"]["total"]["total"]
    # See tests/integration/test_kpi_api.py for the arithmetic.
    assert (total["kwh"], total["full_power_kwh"], total["historical_saved_pct"]) == (19.0, 22.25, 58.7)
    classes = {c["equipment_class"]: c["available_h"] for c in body["availability"]["classes"]}
    assert classes == {"lighting": 29.25, "traffic_controller": 47.0, "camera": 48.0}
    warning = next(d for d in body["delays"]["severities"] if d["severity"] == "warning")
    assert (warning["clear_median_s"], warning["clear_p90_s"], warning["ack_median_s"]) == (10.0, 18.0, 120.0)
    rows = {(r["town"], r["date"]): r["kwh"] for r in csv.DictReader(io.StringIO(lighting.text))}
    assert (rows[("Dijon", "2024-05-01")], rows[("Chenôve", "2024-05-02")]) == ("11.7", "2.4")
