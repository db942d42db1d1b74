"""The HTTP API over real HTTP (httpx -> uvicorn), fed through a real Mosquitto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from central.errors import ServerError
from central.server import CentralServer
from central.testing import TS0_MS, AckListener, batch_payload, status_payload, wait_until
from cityedge.broker import MosquittoBroker
from protocols.fleet import DeviceInfo, Event
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

CAB = "cab-1"
STREAM = "0123abcd"
POINTS = ("lc1/power_w", "lc1/dim_level")


@pytest.fixture
async def http(central: CentralServer, mosquitto: MosquittoBroker) -> AsyncIterator[httpx.AsyncClient]:
    """An API over a cabinet that said its birth and sent 100 readings and 3 events."""
    events = [
        Event(
            seq=100 + i,
            ts=TS0_MS + 1000 * i,
            source="lc1",
            kind="lamp_failed",
            severity="alarm",
            message=f"m{i}",
        )
        for i in range(3)
    ]
    inventory = [DeviceInfo(name="lc1", driver="modbus", points=["power_w", "dim_level"])]
    async with AckListener(mosquitto.url) as acks, aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        await edge.publish(
            f"cityedge/{CAB}/status",
            status_payload(CAB, online=True, version="2.0.1", stream=STREAM, inventory=inventory),
            qos=1,
            retain=True,
        )
        await edge.publish(
            f"cityedge/{CAB}/data", batch_payload(CAB, STREAM, 1, 99, points=POINTS, events=events), qos=1
        )
        await wait_until(lambda: len(acks.acks) == 1, what="the batch's ack")
    await wait_until(lambda: central.ingestor.stats.statuses == 1, what="the birth")
    async with api_client(central) as client:
        await wait_until(
            lambda: _is_online(client),
            what="the birth applied",
        )
        yield client


async def _is_online(client: httpx.AsyncClient) -> bool:
    response = await client.get(f"/cabinets/{CAB}")
    return response.status_code == 200 and response.json()["online"] is True


async def test_cabinets(http: httpx.AsyncClient) -> None:
    [cabinet] = (await http.get("/cabinets")).json()
    assert cabinet["id"] == CAB
    assert (cabinet["online"], cabinet["agent_version"], cabinet["stream"]) == (True, "2.0.1", STREAM)
    assert isinstance(cabinet["last_seen_ms"], int)
    detail = (await http.get(f"/cabinets/{CAB}")).json()
    assert detail["inventory"][0]["points"] == ["power_w", "dim_level"]


async def test_unknown_cabinet_and_point_are_404_with_a_message(http: httpx.AsyncClient) -> None:
    for path in ("/cabinets/nope", "/cabinets/nope/points", "/cabinets/nope/points/lc1/power_w/readings"):
        response = await http.get(path)
        assert response.status_code == 404
        assert "'nope' is unknown" in response.json()["detail"]
    response = await http.get(f"/cabinets/{CAB}/points/lc9/none/readings")
    assert response.status_code == 404
    assert "no point 'lc9/none'" in response.json()["detail"]


async def test_latest_value_of_each_point(http: httpx.AsyncClient) -> None:
    body = (await http.get(f"/cabinets/{CAB}/points")).json()
    assert body["points"] == [
        {"point": "lc1/dim_level", "ts_ms": TS0_MS + 98, "value": 98.0, "quality": "good", "reason": None},
        {"point": "lc1/power_w", "ts_ms": TS0_MS + 99, "value": 99.0, "quality": "good", "reason": None},
    ]


async def test_readings_by_ms_or_iso_8601(http: httpx.AsyncClient) -> None:
    url = f"/cabinets/{CAB}/points/lc1/power_w/readings"
    by_ms = (await http.get(url, params={"start": TS0_MS + 10, "end": TS0_MS + 20})).json()
    assert [r["ts_ms"] - TS0_MS for r in by_ms["readings"]] == [11, 13, 15, 17, 19]
    assert by_ms["truncated"] is False
    by_iso = (
        await http.get(
            url, params={"start": "2024-05-01T10:00:00.010Z", "end": "2024-05-01T12:00:00.020+02:00"}
        )
    ).json()
    assert by_iso["readings"] == by_ms["readings"]
    limited = (await http.get(url, params={"start": 0, "limit": 3})).json()
    assert (len(limited["readings"]), limited["truncated"]) == (3, True)
    default_window = (await http.get(url)).json()  # the last 24 h: this data is from 2024
    assert default_window["readings"] == []


async def test_bad_query_parameters_are_422_naming_the_parameter(http: httpx.AsyncClient) -> None:
    url = f"/cabinets/{CAB}/points/lc1/power_w/readings"
    for params, name, words in [
        ({"start": "last tuesday"}, "start", "ISO 8601"),
        ({"end": "2024-13-01"}, "end", "ISO 8601"),
        ({"start": 20, "end": 10}, "start", "before end"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
    ]:
        response = await http.get(url, params=params)
        assert response.status_code == 422, params
        [error] = response.json()["detail"]
        assert error["loc"] == ["query", name]
        assert words in error["msg"]
    response = await http.get("/events", params={"since": "soon"})
    assert response.status_code == 422


async def test_events_newest_first_with_filters(http: httpx.AsyncClient) -> None:
    events = (await http.get("/events")).json()["events"]
    assert [e["message"] for e in events] == ["m2", "m1", "m0"]
    assert events[0] | {"data": {}} == {
        "cabinet": CAB,
        "stream": STREAM,
        "seq": 102,
        "ts_ms": TS0_MS + 2000,
        "source": "lc1",
        "kind": "lamp_failed",
        "severity": "alarm",
        "message": "m2",
        "data": {},
    }
    since = (await http.get("/events", params={"since": TS0_MS + 1000, "cabinet": CAB, "limit": 1})).json()
    assert [e["message"] for e in since["events"]] == ["m2"]
    assert (await http.get("/events", params={"cabinet": "other"})).json() == {"events": []}


async def test_health_and_openapi(http: httpx.AsyncClient) -> None:
    health = await http.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["healthy"] is True
    assert body["store"]["readings"] == 99
    assert body["ingest"]["mqtt_connected"] is True
    assert body["ingest"]["acks_sent"] == 1
    schema = (await http.get("/../../openapi.json")).json()
    assert {
        "CabinetSummary",
        "CabinetDetail",
        "ReadingsPage",
        "EventsPage",
        "QuarantinePage",
        "Health",
    } <= set(schema["components"]["schemas"])
    assert "/api/v1/cabinets/{cabinet}/points/{point}/readings" in schema["paths"]


async def test_the_http_address_in_use_is_a_clear_error(tmp_path: Path, central: CentralServer) -> None:
    with pytest.raises(ServerError, match=f"127.0.0.1:{central.http_port}.*cannot listen"):
        async with CentralServer(
            db=tmp_path / "other.db", broker_url="mqtt://127.0.0.1:1", http_port=central.http_port
        ):
            pass
