"""GET /api/v1/stream: what changes, heard on any worker, whichever worker (or cabinet) changed it.

Two real central workers share one SQLite file and one Mosquitto. The page's stream is opened on the
second; commands are posted to the first and a scripted cabinet answers them, raises an alarm, is
registered and goes offline: the stream hears each change (never a broker hash), because it reads
the store, not its own worker's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from central.api import live
from central.auth import Tokens
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import RegistryEntry
from central.testing import ScriptedEdge, status_payload, wait_until
from central.times import now_ms
from cityedge.broker import MosquittoBroker
from tests.integration.api_client import bearer, local_api, new_token
from tests.integration.sse import event_stream

pytestmark = pytest.mark.integration

CAB = "cab-live"


@contextlib.asynccontextmanager
async def two_workers(db: Path, broker_url: str) -> AsyncIterator[tuple[CentralServer, CentralServer]]:
    async with (
        CentralServer(db=db, broker_url=broker_url, http_port=0) as first,
        CentralServer(db=db, broker_url=broker_url, http_port=0) as second,
    ):
        async with asyncio.timeout(10):
            await first.ingestor.wait_subscribed()
            await second.ingestor.wait_subscribed()
        yield first, second


def _has_command(command_id: str, status: str) -> object:
    def match(event: str, data: dict[str, list[dict[str, object]]]) -> bool:
        return event == "commands" and any(
            c["id"] == command_id and c["status"] == status for c in data["commands"]
        )

    return match


async def test_a_stream_on_one_worker_hears_what_happens_through_the_other(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with two_workers(tmp_path / "central.db", mosquitto.url) as (first, second):
        operator = await new_token(first.store, Role.OPERATOR, "op-1")
        viewer = await new_token(first.store, Role.VIEWER, "screen-1")
        async with (
            ScriptedEdge(mosquitto.url, CAB) as edge,
            httpx.AsyncClient(base_url=f"{first.url}/api/v1", headers=bearer(operator)) as api,
        ):
            await edge.birth(ts=now_ms())
            await wait_until_online(api)
            async with event_stream(second.url, viewer) as stream:
                _, hello = await stream.wait_for(lambda e, _: e == "hello", what="hello")
                assert (hello["name"], hello["role"]) == ("screen-1", "viewer")

                posted = await api.post(
                    "/commands", json={"target": {"cabinet": CAB}, "action": "dim", "args": {"level_pct": 40}}
                )
                assert posted.status_code == 201, posted.text
                command_id = posted.json()["id"]
                await stream.wait_for(_has_command(command_id, "pending"), what="the command, pending")
                await edge.wait_command(command_id)
                await edge.send(edge.result(command_id, "accepted", ts=now_ms()))
                await stream.wait_for(_has_command(command_id, "delivered"), what="the command delivered")
                await edge.send(edge.result(command_id, "executed", ts=now_ms()))
                _, data = await stream.wait_for(_has_command(command_id, "executed"), what="executed")
                executed = next(c for c in data["commands"] if c["id"] == command_id)
                assert executed["issued_by"] == "op-1" and executed["args"] == {"level_pct": 40}

                raised = edge.event("alarm_raised", {"alarm": "door_open", "device": "lc1"}, ts=now_ms())
                await edge.send(raised)
                _, data = await stream.wait_for(
                    lambda e, d: e == "episodes" and any(x["alarm"] == "door_open" for x in d["episodes"]),
                    what="the door's alarm episode",
                )
                episode = next(x for x in data["episodes"] if x["alarm"] == "door_open")
                assert (episode["cabinet"], episode["device"], episode["state"]) == (CAB, "lc1", "raised")

                entry = RegistryEntry(
                    cabinet=CAB, town="Talant", label="Talant 1", latitude=47.337, longitude=5.005,
                    rated_power_w=300.0, baseline_kwh_per_day=None, broker_hash="$7$secret-hash",
                    created_ms=now_ms(), updated_ms=now_ms(), revoked_ms=None,
                )  # fmt: skip
                await first.store.put_registry(entry)
                _, data = await stream.wait_for(lambda e, _: e == "registry", what="the cabinet registered")
                assert data["cabinets"] == [
                    {"id": CAB, "town": "Talant", "label": "Talant 1", "latitude": 47.337,
                     "longitude": 5.005, "registered": True, "revoked": False}
                ]  # fmt: skip
                await _go_offline(edge)
                await stream.wait_for(
                    lambda e, d: (
                        e == "cabinets"
                        and any(c["id"] == CAB and c["online"] is False for c in d["cabinets"])
                    ),
                    what=f"{CAB} offline",
                )
                # Each change once: the command's three states, not one per poll.
                assert "secret-hash" not in str(stream.events)
                statuses = [
                    c["status"]
                    for e, d in stream.events
                    if e == "commands"
                    for c in d["commands"]
                    if c["id"] == command_id
                ]
                assert statuses == ["pending", "delivered", "executed"], statuses
                feed = live.feed_of_app(second._http.config.app)  # type: ignore[union-attr]
                assert feed.listeners == 1 and feed.polling
            # The page went away: its listener goes, and with the last one the worker stops polling.
            await wait_until(lambda: feed.listeners == 0, timeout=5, what="the listener gone")
            await wait_until(lambda: not feed.polling, timeout=5, what="the poller stopped")


async def wait_until_online(api: httpx.AsyncClient) -> None:
    async def online() -> bool:
        response = await api.get(f"/cabinets/{CAB}")
        return response.status_code == 200 and response.json()["online"] is True

    await wait_until(online, timeout=10, what=f"{CAB} online")


async def _go_offline(edge: ScriptedEdge) -> None:
    """What the broker publishes for a cabinet that drops: its last will, the retained offline status."""
    payload = status_payload(CAB, online=False, ts=now_ms())
    await edge._connected().publish(edge.topics.status, payload, qos=1, retain=True)


async def test_the_stream_is_bounded_and_asks_for_a_token_and_the_right_accept(tmp_path: Path) -> None:
    async with local_api(tmp_path / "central.db") as api:
        async with api.client(Role.VIEWER) as client:
            response = await client.get("/api/v1/stream")
            assert response.status_code == 406 and "text/event-stream" in response.json()["detail"]
        async with api.client() as anonymous:
            response = await anonymous.get("/api/v1/stream", headers={"Accept": "text/event-stream"})
            assert response.status_code == 401
        feed = live.feed_of_app(api.app)
        feed.max_listeners = 1
        async with feed.listen(), api.client(Role.VIEWER) as client:
            response = await client.get("/api/v1/stream", headers={"Accept": "text/event-stream"})
            assert response.status_code == 503 and response.headers["retry-after"] == "30"
            assert "1 listeners" in response.json()["detail"]
        assert feed.listeners == 0


async def test_a_revoked_token_ends_its_stream(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.2)
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        token = await Tokens(server.store).create("wall-screen", Role.VIEWER)
        async with event_stream(server.url, token) as stream:
            await stream.wait_for(lambda e, _: e == "hello", what="hello")
            await wait_until(lambda: stream.comments >= 1, timeout=5, what="a keep-alive")
            await Tokens(server.store).revoke("wall-screen")
            _, bye = await stream.wait_for(lambda e, _: e == "bye", what="bye")
            assert "revoked" in bye["reason"]
            await wait_until(lambda: stream.ended, timeout=5, what="the stream's end")


async def test_a_revoked_token_ends_its_stream_while_changes_keep_flowing(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A busy fleet changes something every poll: the stream never idles for a whole heartbeat, and
    # the token must still be checked that often.
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.5)
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        live.feed_of_app(server._http.config.app).poll_s = 0.05  # type: ignore[union-attr]
        token = await Tokens(server.store).create("wall-screen", Role.VIEWER)

        async def keep_moving() -> None:
            for n in range(10_000):
                entry = RegistryEntry(
                    cabinet=CAB, town="Talant", label=f"move {n}", latitude=47.3, longitude=5.0,
                    rated_power_w=None, baseline_kwh_per_day=None, broker_hash=None,
                    created_ms=1, updated_ms=now_ms() + n, revoked_ms=None,
                )  # fmt: skip
                await server.store.put_registry(entry)
                await asyncio.sleep(0.05)

        async with event_stream(server.url, token) as stream:
            await stream.wait_for(lambda e, _: e == "hello", what="hello")
            mover = asyncio.create_task(keep_moving())
            try:
                await stream.wait_for(lambda e, _: e == "registry", what="a registry change")
                await Tokens(server.store).revoke("wall-screen")
                _, bye = await stream.wait_for(lambda e, _: e == "bye", what="bye", timeout=5)
                assert "revoked" in bye["reason"]
            finally:
                mover.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mover


CAMERA_CONFIG = (
    f'[cabinet]\nid = "{CAB}"\n[broker]\nurl = "mqtts://broker.city.example:8883"\n'
    '[[devices]]\nname = "cam1"\ndriver = "onvif"\nhost = "10.20.30.40"\nusername = "cityedge"\n'
    'password_file = "cam1.password"\n'
)


async def test_a_set_config_text_is_read_by_admins_only(tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    # A whole agent config names the cabinet's cameras and controllers (addresses, accounts): a wall
    # screen's viewer token, or the page's stream, gets its hash, not its text.
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        admin = await new_token(server.store, Role.ADMIN, "admin-1")
        viewer = await new_token(server.store, Role.VIEWER, "screen-1")
        async with (
            ScriptedEdge(mosquitto.url, CAB) as edge,
            httpx.AsyncClient(base_url=f"{server.url}/api/v1", headers=bearer(admin)) as as_admin,
            httpx.AsyncClient(base_url=f"{server.url}/api/v1", headers=bearer(viewer)) as as_viewer,
        ):
            await edge.birth(ts=now_ms())
            await wait_until_online(as_admin)
            async with event_stream(server.url, viewer) as stream:
                await stream.wait_for(lambda e, _: e == "hello", what="hello")
                digest = hashlib.sha256(CAMERA_CONFIG.encode()).hexdigest()
                posted = await as_admin.post(
                    "/commands",
                    json={
                        "target": {"cabinet": CAB},
                        "action": "set_config",
                        "args": {"config": CAMERA_CONFIG, "sha256": digest},
                    },
                )
                assert posted.status_code == 201, posted.text
                command_id = posted.json()["id"]
                _, data = await stream.wait_for(_has_command(command_id, "pending"), what="the command")
                shown = [
                    (await as_viewer.get(f"/commands/{command_id}")).json(),
                    (await as_viewer.get("/commands")).json()["commands"][0],
                    next(c for c in data["commands"] if c["id"] == command_id),
                ]
                for command in shown:
                    assert command["args"]["sha256"] == digest
                    assert "10.20.30.40" not in str(command), command
                full = (await as_admin.get(f"/commands/{command_id}")).json()
                assert full["args"]["config"] == CAMERA_CONFIG


async def test_a_reader_that_stops_reading_gives_its_place_back(
    tmp_path: Path, mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that stops reading (a frozen tab, a hostile one holding a TCP window shut) blocks the
    # stream's writes, and with them its loop (token checks, the hour's cap): it must not keep one of
    # the worker's places past the send timeout.
    monkeypatch.setattr(live, "SEND_TIMEOUT_S", 1.0)
    async with CentralServer(
        db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0, durable=False
    ) as server:
        feed = live.feed_of_app(server._http.config.app)  # type: ignore[union-attr]
        feed.poll_s = 0.05
        token = await new_token(server.store, Role.VIEWER, "frozen-tab")
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        request = (
            f"GET /api/v1/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        )
        await asyncio.get_running_loop().sock_sendall(sock, request.encode())

        async def keep_moving() -> None:
            for n in range(10_000):
                for k in range(500):
                    entry = RegistryEntry(
                        cabinet=f"cab-{k}", town="Talant", label=f"{n} " + "x" * 190, latitude=47.3,
                        longitude=5.0, rated_power_w=None, baseline_kwh_per_day=None, broker_hash=None,
                        created_ms=1, updated_ms=now_ms() + n, revoked_ms=None,
                    )  # fmt: skip
                    await server.store.put_registry(entry)
                await asyncio.sleep(0.01)

        mover = asyncio.create_task(keep_moving())
        try:
            await wait_until(lambda: feed.listeners == 1, timeout=5, what="the stream open")
            # Its token stays valid and the hour is far: only a write that was not taken ends it.
            await wait_until(lambda: feed.listeners == 0, timeout=20, what="the frozen reader's place back")
        finally:
            mover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mover
            sock.close()


async def test_one_token_cannot_take_every_place_on_a_worker(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    # A wall screen's viewer token opening streams in a loop must not leave the control room's
    # operators without theirs.
    per_token = live.MAX_STREAMS_PER_TOKEN
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        feed = live.feed_of_app(server._http.config.app)  # type: ignore[union-attr]
        feed.max_listeners = per_token + 2
        greedy = await new_token(server.store, Role.VIEWER, "wall-screen")
        operator = await new_token(server.store, Role.OPERATOR, "op-1")
        async with contextlib.AsyncExitStack() as held:
            for _ in range(per_token):
                stream = await held.enter_async_context(event_stream(server.url, greedy))
                await stream.wait_for(lambda e, _: e == "hello", what="hello")
            headers = {**bearer(greedy), "Accept": "text/event-stream"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                response = await client.get("/api/v1/stream", headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "30" and "wall-screen" in response.json()["detail"]
            assert feed.listeners == per_token
            theirs = await held.enter_async_context(event_stream(server.url, operator))
            await theirs.wait_for(lambda e, _: e == "hello", what="the operator's hello")


async def test_streams_of_one_token_opened_at_once_are_bounded_too(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    # Sent together, the requests may all pass the route's early count (no listener is added until
    # a stream starts): the feed's own bound, where the listener is added, still holds. Each one
    # beyond it is refused, with a 503 or, past the route's check, a "bye" naming the token.
    per_token = live.MAX_STREAMS_PER_TOKEN
    async with CentralServer(db=tmp_path / "central.db", broker_url=mosquitto.url, http_port=0) as server:
        feed = live.feed_of_app(server._http.config.app)  # type: ignore[union-attr]
        greedy = await new_token(server.store, Role.VIEWER, "wall-screen")
        headers = {**bearer(greedy), "Accept": "text/event-stream"}

        async def first_event(client: httpx.AsyncClient, held: contextlib.AsyncExitStack) -> str:
            response = await held.enter_async_context(client.stream("GET", "/api/v1/stream", headers=headers))
            if response.status_code != 200:
                assert response.status_code == 503 and "wall-screen" in (await response.aread()).decode()
                return "503"
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event:
                    assert event != "bye" or "wall-screen" in line, line
                    return event
            return "ended"

        async with (
            contextlib.AsyncExitStack() as held,
            httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=10)) as client,
        ):
            firsts = await asyncio.gather(*(first_event(client, held) for _ in range(per_token + 5)))
            assert firsts.count("hello") <= per_token, firsts
            assert firsts.count("503") + firsts.count("bye") >= 5, firsts
            assert feed.listeners_of("wall-screen") <= per_token
