"""Lighting, alarms and energy over real HTTP, fed through a real Mosquitto by a scripted edge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from central.server import CentralServer
from central.testing import TS0_MS, ScriptedEdge, wait_until
from cityedge.broker import MosquittoBroker
from protocols.fleet import DeviceInfo
from protocols.quality import Quality
from tests.integration.api_client import api_client, known_edge
from tests.integration.api_client import get_ok as get

pytestmark = pytest.mark.integration

CAB = "cab-1"
HOUR = 3_600_000


def utc_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def http(central: CentralServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(central) as client:
        yield client


@pytest.fixture
async def edge(mosquitto: MosquittoBroker, http: httpx.AsyncClient) -> AsyncIterator[ScriptedEdge]:
    async with known_edge(mosquitto.url, http, CAB) as scripted:
        yield scripted


async def test_the_lighting_view_shows_the_schedule_and_each_outputs_state(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    assert await get(http, f"/cabinets/{CAB}/lighting") == {
        "cabinet": CAB,
        "schedule": None,
        "state": None,
        "outputs": [],
        "problems": [],
    }
    schedule = {
        "latitude": 47.32,
        "longitude": 5.04,
        "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 70}],
    }

    def state(on: bool, level: int, reason: str, **extra: Any) -> dict[str, Any]:
        return {"on": on, "level_pct": level, "reason": reason, "next_change_ms": TS0_MS + 9 * HOUR} | extra

    await edge.send(
        edge.event("schedule_active", {"schedule": "", "hash": "e3b0", "source": "config"}, ts=TS0_MS),
        edge.event(
            "schedule_active",
            {"schedule": json.dumps(schedule), "hash": "ab12", "source": "command"},
            ts=TS0_MS + 1,
        ),
        edge.event(
            "lighting_state", state(True, 100, "schedule", devices="lc1"), ts=TS0_MS + 2, source="lc1"
        ),
        edge.event("lighting_state", state(True, 70, "dimming", devices="lc1"), ts=TS0_MS + 5, source="lc1"),
        edge.event(
            "lighting_state",
            state(False, 0, "override", devices="lc2", override_until_ms=TS0_MS + HOUR),
            ts=TS0_MS + 4,
            source="lc2",
        ),
    )
    view = await get(http, f"/cabinets/{CAB}/lighting")
    assert view["problems"] == []
    assert view["schedule"] == {
        "ts_ms": TS0_MS + 1,
        "hash": "ab12",
        "source": "command",
        "schedule": schedule,
        "detail": None,
    }
    assert view["state"] == {
        "ts_ms": TS0_MS + 5,
        "source": "lc1",
        "on": True,
        "level_pct": 70,
        "reason": "dimming",
        "next_change_ms": TS0_MS + 9 * HOUR,
        "devices": ["lc1"],
        "override_until_ms": None,
    }
    assert [(o["source"], o["on"], o["override_until_ms"]) for o in view["outputs"]] == [
        ("lc1", True, None),
        ("lc2", False, TS0_MS + HOUR),
    ]
    await edge.send(edge.event("lighting_state", {"on": "maybe"}, ts=TS0_MS + 6, source="lc1"))
    view = await get(http, f"/cabinets/{CAB}/lighting")
    assert [o["source"] for o in view["outputs"]] == ["lc2"]
    [problem] = view["problems"]
    assert "lighting_state" in problem and "malformed" in problem
    response = await http.get("/cabinets/nope/lighting")
    assert response.status_code == 404
    assert "cabinet 'nope' is unknown" in response.json()["detail"]


async def test_alarms_active_and_cleared(http: httpx.AsyncClient, edge: ScriptedEdge) -> None:
    await edge.send(
        edge.event(
            "alarm_raised",
            {"alarm": "lamp_failure", "device": "lc1", "power_w": 3.0},
            ts=TS0_MS + 1,
            source="lc1",
        ),
        edge.event("alarm_raised", {"alarm": "overpower", "device": "lc1"}, ts=TS0_MS + 2, source="lc1"),
        edge.event("alarm_cleared", {"alarm": "overpower", "device": "lc1"}, ts=TS0_MS + 3, source="lc1"),
        edge.event("device_lost", {"reason": "timeout"}, ts=TS0_MS + 4, source="lc2"),
        edge.event("door_open", {}, ts=TS0_MS + 5),
    )
    active = (await get(http, "/alarms", active="true"))["alarms"]
    assert [(a["cabinet"], a["device"], a["alarm"]) for a in active] == [
        (CAB, "lc2", "device_lost"),
        (CAB, "lc1", "lamp_failure"),
    ]
    assert active[1]["raised_ms"] == TS0_MS + 1 and active[1]["cleared_ms"] is None
    cleared = (await get(http, "/alarms", cabinet=CAB, active="false"))["alarms"]
    assert [(a["alarm"], a["raised_ms"], a["cleared_ms"]) for a in cleared] == [
        ("overpower", TS0_MS + 2, TS0_MS + 3)
    ]
    assert len((await get(http, "/alarms"))["alarms"]) == 3
    assert (await get(http, "/alarms", cabinet="other"))["alarms"] == []
    await edge.send(edge.event("device_back", {}, ts=TS0_MS + 6, source="lc2"))
    assert [a["alarm"] for a in (await get(http, "/alarms", active="true"))["alarms"]] == ["lamp_failure"]
    assert (await http.get("/alarms", params={"active": "perhaps"})).status_code == 422


async def test_energy_per_local_day_with_a_reset_a_gap_and_a_glitch(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    # lc1: 1 kWh every hour, readings on the hour, over the spring DST change in Paris (a 23 h day).
    start = utc_ms("2024-03-29T22:00:00")
    hourly = [edge.reading("lc1/energy_wh", start + i * HOUR, 1000.0 * i) for i in range(50)]
    meter = [
        edge.reading("meter/import_energy_wh", utc_ms("2024-03-30T00:00:00"), 500.0),
        edge.reading("meter/import_energy_wh", utc_ms("2024-03-30T06:00:00"), 800.0),
        edge.reading("meter/import_energy_wh", utc_ms("2024-03-30T07:00:00"), 99_999.0, Quality.BAD),
        edge.reading("meter/import_energy_wh", utc_ms("2024-03-30T12:00:00"), 100.0),  # reset
        edge.reading("meter/import_energy_wh", utc_ms("2024-03-31T12:00:00"), 300.0),  # a 24 h gap
    ]
    glitch = [
        edge.reading("lc2/energy_wh", utc_ms("2024-03-30T10:00:00"), 0.0),
        edge.reading("lc2/energy_wh", utc_ms("2024-03-30T10:00:01"), 1e9),  # 3.6 TW for a second
        edge.reading("lc2/energy_wh", utc_ms("2024-03-30T11:00:00"), 1e9 + 10),
    ]
    power = [edge.reading("lc1/power_w", start, 5000.0)]
    await edge.send(*hourly, *meter, *glitch, *power)

    body = await get(http, f"/cabinets/{CAB}/energy", start="2024-03-30", end="2024-03-31", tz="Europe/Paris")
    assert (body["tz"], body["start"], body["end"], body["max_power_w"]) == (
        "Europe/Paris",
        "2024-03-30",
        "2024-03-31",
        100_000.0,
    )
    points = {p["point"]: p for p in body["points"]}
    assert sorted(points) == ["lc1/energy_wh", "lc2/energy_wh", "meter/import_energy_wh"]
    lc1 = points["lc1/energy_wh"]
    assert [(d["date"], d["kwh"], d["coverage"], d["interpolated"]) for d in lc1["days"]] == [
        ("2024-03-30", 24.0, 1.0, False),
        ("2024-03-31", 23.0, 1.0, False),
    ]
    m = points["meter/import_energy_wh"]
    assert (m["resets"], m["skipped"], m["absurd"]) == (1, 1, 0)
    assert [d["kwh"] for d in m["days"]] == pytest.approx(
        [(300 + 100 + 200 * 11 / 24) / 1000, 200 * 13 / 24 / 1000],
        abs=1e-6,  # kWh to the Wh/1000
    )
    assert [(d["reset"], d["interpolated"]) for d in m["days"]] == [(True, True), (False, True)]
    lc2 = points["lc2/energy_wh"]
    assert (lc2["absurd"], lc2["total_kwh"], lc2["days"][0]["absurd"]) == (1, 0.01, True)

    day30, day31 = body["days"]
    assert day30["kwh"] == pytest.approx(24 + 0.4916667 + 0.01, abs=1e-6)
    assert day31["kwh"] == pytest.approx(23 + 0.1083333, abs=1e-6)
    assert (day30["reset"], day30["absurd"], day30["interpolated"], day31["reset"]) == (
        True,
        True,
        True,
        False,
    )
    assert body["total_kwh"] == pytest.approx(day30["kwh"] + day31["kwh"], abs=1e-5)

    utc = await get(http, f"/cabinets/{CAB}/energy", start="2024-03-30")
    assert [d["kwh"] for d in utc["points"][0]["days"]] == [24.0]  # lc1, midnight to midnight UTC


async def test_energy_refuses_bad_queries_naming_the_parameter(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    url = f"/cabinets/{CAB}/energy"
    for params, name, words in [
        ({"start": "30/03/2024"}, "start", "YYYY-MM-DD"),
        ({"start": "2024-02-30"}, "start", "not a day of the calendar"),
        ({"start": "2024-03-30", "end": "2024-03-29"}, "end", "before start"),
        ({"start": "2024-01-01", "end": "2025-12-31"}, "end", "at most 366 days"),
        ({"start": "2024-03-30", "tz": "Europe/Dijon"}, "tz", "IANA time zone"),
        ({"start": "2024-03-30", "max_power_w": 0}, "max_power_w", "greater than 0"),
        ({}, "start", "required"),
    ]:
        response = await http.get(url, params=params)
        assert response.status_code == 422, params
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name], params
        assert words in error["msg"], (params, error)
    response = await http.get("/cabinets/nope/energy", params={"start": "2024-03-30"})
    assert response.status_code == 404


async def test_the_equipment_view_shows_each_devices_class_state_and_alarms(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    inventory = [
        DeviceInfo(name="lc1", driver="modbus-tcp", profile="lighting-single-circuit", points=["power_w"]),
        DeviceInfo(name="tc1", driver="opcua", profile="traffic-controller-generic", points=["mode"]),
        DeviceInfo(name="cam1", driver="onvif", points=["reachable", "tamper"]),
        DeviceInfo(name="io1", driver="tiny", points=["x"]),
    ]
    await edge.birth(inventory=inventory, ts=TS0_MS + 1)
    await edge.send(
        edge.reading("lc1/power_w", TS0_MS + 2, 120.0),
        edge.reading("tc1/mode", TS0_MS + 2, "flashing"),
        edge.reading("cam1/reachable", TS0_MS + 2, True),
        edge.reading("cam1/tamper", TS0_MS + 2, None, Quality.BAD),
        edge.event(
            "alarm_raised",
            {"alarm": "controller_flashing", "device": "tc1", "value": "flashing"},
            ts=TS0_MS + 3,
            source="tc1",
        ),
    )

    async def equipment() -> dict[str, Any]:
        body: dict[str, Any] = await get(http, f"/cabinets/{CAB}/equipment")
        return body

    async def reported() -> bool:
        rows = (await equipment())["equipment"]
        return len(rows) == len(inventory) and bool(rows[1]["alarms"]) and bool(rows[2]["values"])

    await wait_until(reported, what="the flashing controller's alarm at central")
    body = await equipment()
    assert body["problems"] == []
    rows = {row["device"]: row for row in body["equipment"]}
    assert {name: (row["equipment_class"], row["state"]) for name, row in rows.items()} == {
        "lc1": ("lighting", "ok"),
        "tc1": ("traffic_controller", "alarm"),
        "cam1": ("camera", "degraded"),
        "io1": ("other", "unknown"),
    }
    assert [a["alarm"] for a in rows["tc1"]["alarms"]] == ["controller_flashing"]
    assert rows["tc1"]["values"] == [
        {"point": "mode", "ts_ms": TS0_MS + 2, "value": "flashing", "quality": "good", "reason": None}
    ]
    await edge.send(edge.event("device_lost", {"reason": "timeout"}, ts=TS0_MS + 4, source="cam1"))

    async def camera_lost() -> bool:
        return {r["device"]: r["state"] for r in (await equipment())["equipment"]}["cam1"] == "lost"

    await wait_until(camera_lost, what="the camera shown lost")
    assert (await http.get("/cabinets/nowhere/equipment")).status_code == 404
