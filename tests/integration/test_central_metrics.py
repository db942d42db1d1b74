"""/metrics of a running central fed over a real Mosquitto: names, labels, and values that move.

A scrape is parsed with prometheus-client's own parser, so what is checked is what Prometheus reads.
"""

from __future__ import annotations

from pathlib import Path

import aiomqtt
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from central.metrics import CentralMetrics
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import ReceivedStatus
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS, AckListener, ScriptedEdge, batch_payload, status_payload, wait_until
from cityedge.broker import MosquittoBroker
from protocols.fleet import PROTOCOL_VERSION, Status
from tests.integration.api_client import bearer, local_api, new_token

pytestmark = pytest.mark.integration

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def labelled(series: Series, name: str, label: str) -> dict[str, float]:
    """The values of ``name`` by the value of its one ``label``."""
    found: dict[str, float] = {}
    for (sample, labels), number in series.items():
        if sample == name:
            found[dict(labels)[label]] = number
    return found


async def scrape(http: httpx.AsyncClient) -> Series:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def test_a_scrape_follows_ingest_commands_the_fleet_and_the_api(
    central: CentralServer, mosquitto: MosquittoBroker
) -> None:
    admin = await new_token(central.store, Role.ADMIN)
    async with (
        httpx.AsyncClient(base_url=central.url, headers=bearer(admin), timeout=10) as http,
        AckListener(mosquitto.url) as acks,
        ScriptedEdge(mosquitto.url, "cab-a") as edge_a,
        ScriptedEdge(mosquitto.url, "cab-b") as edge_b,
        aiomqtt.Client(mosquitto.host, mosquitto.port) as raw,
    ):
        before = await scrape(http)
        assert value(before, "cityedge_ingest_records_total", kind="readings") == 0
        assert value(before, "cityedge_cabinets_online") == 0
        assert value(before, "cityedge_mqtt_connected") == 1
        assert value(before, "cityedge_store_up") == 1

        await edge_a.birth()
        await edge_b.birth()
        await edge_a.send(edge_a.reading("lc1/power_w", TS0_MS, 10.0), edge_a.event("door_opened", {}))
        # Batches that say how much their cabinet still holds: the backlog gauges.
        await raw.publish("cityedge/cab-a/data", batch_payload("cab-a", "ffff0001", 1, 4, backlog=500), qos=1)
        await raw.publish("cityedge/cab-b/data", batch_payload("cab-b", "ffff0002", 1, 3, backlog=70), qos=1)
        await raw.publish("cityedge/cab-a/data", b"\x00 not msgpack", qos=1)
        await raw.publish("cityedge/cab-b/data", batch_payload("cab-a", "ffff0003", 1, 1), qos=1)
        await wait_until(lambda: len(acks.acks) == 3, what="three batches acked")
        await wait_until(lambda: sum(central.ingestor.stats.rejected.values()) == 2, what="two quarantined")

        posted = await http.post(
            "/api/v1/commands",
            json={"target": {"cabinet": "cab-a"}, "action": "dim", "args": {"level_pct": 40}},
        )
        assert posted.status_code == 201, posted.text
        await edge_a.wait_command(posted.json()["id"])
        assert (await http.get("/api/v1/cabinets/cab-b")).status_code == 200
        assert (await http.get("/no/such/path-4242")).status_code == 404
        await raw.publish(
            "cityedge/cab-b/status",
            status_payload("cab-b", online=False, ts=TS0_MS + 60_000),
            qos=1,
            retain=True,
        )

        async def offline() -> bool:
            row = await central.store.cabinet("cab-b")
            return row is not None and not row.online

        await wait_until(offline, what="cab-b's last will stored")
        await wait_until(
            lambda: central.dispatcher.stats.published == 1, what="the command counted as published"
        )
        after = await scrape(http)

    assert labelled(after, "cityedge_ingest_records_total", "kind") == {
        "readings": 8,
        "events": 1,
        "results": 0,
    }
    assert value(after, "cityedge_ingest_batches_stored_total") == 3
    assert labelled(after, "cityedge_ingest_quarantined_total", "reason") == {
        "malformed": 1,
        "wrong_cabinet": 1,
    }
    assert value(after, "cityedge_ingest_acks_total", outcome="sent") == 3
    assert value(after, "cityedge_command_publishes_total", outcome="sent") == 1

    assert value(after, "cityedge_cabinets") == 2
    assert value(after, "cityedge_cabinets_online") == 1
    assert labelled(after, "cityedge_cabinet_backlog_records", "cabinet") == {"cab-a": 500, "cab-b": 70}

    # Each acked batch's latency, from its receipt: a few milliseconds, far below a second here.
    assert value(after, "cityedge_ingest_ack_latency_seconds_count") == 3
    assert 0 < value(after, "cityedge_ingest_ack_latency_seconds_sum") < 3
    assert value(after, "cityedge_store_operation_seconds_count", operation="write") >= 3
    assert value(after, "cityedge_store_operation_seconds_count", operation="cabinets") == 2  # one a scrape

    routes = labelled(after, "cityedge_api_request_seconds_count", "route")
    assert {"/api/v1/cabinets/{cabinet}", "/api/v1/commands", "/metrics", "unmatched"} <= set(routes)
    assert not [route for route in routes if "cab-" in route or "4242" in route], routes
    assert (
        value(
            after, "cityedge_api_request_seconds_count", method="POST", route="/api/v1/commands", status="2xx"
        )
        == 1
    )
    assert value(after, "process_resident_memory_bytes") > 0


async def test_metrics_need_a_monitor_token_which_may_read_nothing_else(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api:
        for role, status in (
            (None, 401),
            (Role.VIEWER, 403),
            (Role.OPERATOR, 403),
            (Role.INSTALLER, 403),
            (Role.MONITOR, 200),
            (Role.ADMIN, 200),
        ):
            async with api.client(role) as http:
                response = await http.get("/metrics")
            assert response.status_code == status, (role, response.text)
        async with api.client(Role.MONITOR) as http:
            assert (await http.get("/api/v1/cabinets")).status_code == 403
            assert (await http.post("/api/v1/commands", json={})).status_code == 403
        async with api.client(token="not-a-token") as http:
            assert (await http.get("/metrics")).status_code == 401


async def _status(store: SqliteStore, cabinet: str, backlog: int) -> None:
    status = Status(v=PROTOCOL_VERSION, cabinet=cabinet, online=True, ts=TS0_MS, backlog=backlog)
    await store.write([], [ReceivedStatus(status, TS0_MS)])


async def test_only_the_largest_backlogs_are_series_and_each_central_has_its_own(tmp_path: Path) -> None:
    one, other = CentralMetrics(top_backlogs=3), CentralMetrics(top_backlogs=3)
    async with SqliteStore(tmp_path / "central.db", durable=False) as store:
        for i, backlog in enumerate([5, 900, 0, 40, 7000, 300]):
            await _status(store, f"cab-{i}", backlog)
        first = parse((await one.exposition(store)).decode())
        assert labelled(first, "cityedge_cabinet_backlog_records", "cabinet") == {
            "cab-4": 7000,
            "cab-1": 900,
            "cab-5": 300,
        }
        await _status(store, "cab-4", 0)  # drained: it leaves the top, and cab-3 comes in
        second = parse((await one.exposition(store)).decode())
        assert labelled(second, "cityedge_cabinet_backlog_records", "cabinet") == {
            "cab-1": 900,
            "cab-5": 300,
            "cab-3": 40,
        }
        one.ack_latency.observe(0.5)
        timed = one.timed(store)
        await timed.cabinets()
        mine = parse((await one.exposition(store)).decode())
        theirs = parse((await other.exposition(store)).decode())
    assert value(mine, "cityedge_ingest_ack_latency_seconds_count") == 1
    assert value(theirs, "cityedge_ingest_ack_latency_seconds_count") == 0
    assert value(mine, "cityedge_store_operation_seconds_count", operation="cabinets") == 1
    assert ("cityedge_store_operation_seconds_count", frozenset({("operation", "cabinets")})) not in theirs


async def test_metrics_answer_while_the_store_is_down(tmp_path: Path) -> None:
    metrics = CentralMetrics()
    store = SqliteStore(tmp_path / "central.db", durable=False)
    async with store:
        await _status(store, "cab-1", 12)
        assert value(parse((await metrics.exposition(store)).decode()), "cityedge_store_up") == 1
    down = parse((await metrics.exposition(store)).decode())  # closed: every call fails
    assert value(down, "cityedge_store_up") == 0
    assert value(down, "cityedge_cabinets_online") == 1  # the last read's, said stale by store_up


async def test_requests_are_labelled_by_route_template_never_by_their_path(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api:
        async with api.client(Role.VIEWER) as viewer:
            assert (await viewer.get("/api/v1/cabinets/cab-9/points")).status_code == 404
            assert (await viewer.get("/api/v1/cabinets/cab-9/points/lc1/power_w/readings")).status_code == 404
            assert (await viewer.get("/docs/assets/swagger-ui.css")).status_code == 200
            assert (await viewer.get("/walking/random/paths")).status_code == 404
        async with api.client() as anonymous:  # a body without a token: refused before routing
            assert (await anonymous.post("/api/v1/commands", json={})).status_code == 401
        async with api.client(Role.ADMIN) as admin:
            series = await scrape(admin)
    counts = {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): number
        for (name, labels), number in series.items()
        if name == "cityedge_api_request_seconds_count"
    }
    assert counts == {
        ("GET", "/api/v1/cabinets/{cabinet}/points", "4xx"): 1,
        ("GET", "/api/v1/cabinets/{cabinet}/points/{point}/readings", "4xx"): 1,
        ("GET", "/docs/assets/{path}", "2xx"): 1,
        ("GET", "unmatched", "4xx"): 1,
        ("POST", "unmatched", "4xx"): 1,
    }
