"""Commands over real HTTP, a real Mosquitto and real SQLite: an edge played by ``ScriptedEdge``."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.command_args import ARGS_NOT_SHOWN
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import CommandRow, CommandStatus
from central.testing import ScriptedEdge, wait_until
from central.times import now_ms
from cityedge.broker import MosquittoBroker
from protocols.fleet import DeviceInfo
from protocols.fleet.commands import CommandArgsError, parse_wire
from protocols.fleet.limits import MAX_SCHEDULE_DEPTH
from protocols.fleet.schedule import ScheduleError, parse_schedule
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

OPERATOR = "control-room"
CAB = "cab-1"
DIJON = {"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"}
INVENTORY = [DeviceInfo(name="lc1", driver="modbus"), DeviceInfo(name="lc2", driver="modbus")]


async def start_central(tmp_path: Path, broker_url: str, *, retry_s: float) -> CentralServer:
    server = CentralServer(
        db=tmp_path / "central.db",
        broker_url=broker_url,
        http_port=0,
        command_retry_s=retry_s,
        command_expiry_grace_s=0.0,
    )
    await server.__aenter__()
    async with asyncio.timeout(10):
        await server.ingestor.wait_subscribed()
    return server


@pytest.fixture
async def central(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[CentralServer]:
    server = await start_central(tmp_path, mosquitto.url, retry_s=0.2)
    try:
        yield server
    finally:
        await server.__aexit__(None, None, None)


@pytest.fixture
async def http(central: CentralServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(central, name=OPERATOR) as client:
        yield client


async def born(edge: ScriptedEdge, http: httpx.AsyncClient) -> ScriptedEdge:
    """The edge says its birth; return once central knows the cabinet as online."""
    await edge.birth(inventory=INVENTORY)

    async def online() -> bool:
        response = await http.get(f"/cabinets/{edge.cabinet}")
        return response.status_code == 200 and response.json()["online"] is True

    await wait_until(online, what=f"{edge.cabinet} online")
    return edge


@pytest.fixture
async def edge(mosquitto: MosquittoBroker, http: httpx.AsyncClient) -> AsyncIterator[ScriptedEdge]:
    async with ScriptedEdge(mosquitto.url, CAB) as scripted:
        yield await born(scripted, http)


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": {"cabinet": CAB, "device": "lc1"},
        "action": "dim",
        "args": {"level_pct": 40},
    }
    return base | fields


async def post(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post("/commands", json=body(**fields))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def status_of(http: httpx.AsyncClient, command_id: str) -> dict[str, Any]:
    response = await http.get(f"/commands/{command_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_a_command_is_published_then_delivered_then_executed(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    until = now_ms() + 3_600_000
    created = await post(http, args={"level_pct": 40, "until": until})
    assert re.fullmatch(r"[0-9a-f]{32}", created["id"])
    assert created["status"] == "pending" and created["kind"] == "cabinet"
    assert created["target"] == {"cabinet": CAB, "device": "lc1", "group": None}
    assert created["not_after_ms"] - created["created_ms"] == 5 * 60 * 1000  # the default

    command = await edge.wait_command(created["id"])
    assert (command.cabinet, command.device, command.action, command.issued_by) == (
        CAB,
        "lc1",
        "dim",
        OPERATOR,  # the name of the token that sent it
    )
    assert command.args == {"level_pct": 40, "until": until}
    assert command.not_after == created["not_after_ms"]

    await edge.send(edge.result(created["id"], "accepted", ts=created["created_ms"] + 10))
    delivered = await status_of(http, created["id"])
    assert (delivered["status"], delivered["delivered_ms"]) == ("delivered", created["created_ms"] + 10)

    await edge.send(edge.result(created["id"], "executed", ts=created["created_ms"] + 20))
    executed = await status_of(http, created["id"])
    assert executed["status"] == "executed"
    assert (executed["finished_ms"], executed["finished_by"]) == (created["created_ms"] + 20, "cabinet")

    # A late duplicate of "accepted", and a contradicting result: a final status never changes.
    await edge.send(edge.result(created["id"], "accepted"), edge.result(created["id"], "failed", "late"))
    assert (await status_of(http, created["id"]))["status"] == "executed"

    listed = (await http.get("/commands", params={"cabinet": CAB, "status": "executed"})).json()
    assert [c["id"] for c in listed["commands"]] == [created["id"]]
    assert (await http.get("/commands", params={"status": "pending"})).json() == {"commands": []}


async def test_failed_and_rejected_keep_the_cabinets_reason(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    switch = await post(http, action="switch", args={"on": True})
    dim = await post(http, args={"level_pct": 0})
    await edge.wait_command(switch["id"])
    await edge.send(
        edge.result(switch["id"], "accepted"),
        edge.result(switch["id"], "failed", "relay K2 did not close"),
        edge.result(dim["id"], "rejected", "lc1 is in manual mode"),
    )
    failed = await status_of(http, switch["id"])
    assert (failed["status"], failed["reason"]) == ("failed", "relay K2 did not close")
    rejected = await status_of(http, dim["id"])
    assert (rejected["status"], rejected["reason"], rejected["delivered_ms"]) == (
        "rejected",
        "lc1 is in manual mode",
        None,
    )


async def test_central_expires_an_unanswered_command_and_the_cabinets_word_wins(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    created = await post(http, not_after=now_ms() + 1_500)

    async def expired() -> bool:
        return (await status_of(http, created["id"]))["status"] == "expired"

    await wait_until(expired, what="central marking the command expired")
    row = await status_of(http, created["id"])
    assert row["finished_by"] == "central"
    assert "not_after" in row["reason"]
    # The cabinet did run it in time after all (its result was stuck in its buffer): it knows better.
    await edge.send(edge.result(created["id"], "executed"))
    row = await status_of(http, created["id"])
    assert (row["status"], row["finished_by"], row["reason"]) == ("executed", "cabinet", None)


async def test_the_cabinet_refusing_a_late_command_is_final(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    created = await post(http)
    await edge.send(edge.result(created["id"], "expired", "received after not_after"))
    row = await status_of(http, created["id"])
    assert (row["status"], row["finished_by"], row["reason"]) == (
        "expired",
        "cabinet",
        "received after not_after",
    )


async def test_a_pending_command_is_resent_until_the_cabinet_accepts_it(
    central: CentralServer, http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    created = await post(http)
    await edge.wait_command(created["id"], count=3)  # sent, then resent every 0.2 s
    await edge.send(edge.result(created["id"], "accepted"))
    stats = central.dispatcher.stats

    async def sweeps_past(n: int) -> bool:
        return stats.sweeps >= n

    start = stats.sweeps
    await wait_until(lambda: sweeps_past(start + 3), what="three sweeps")
    received = sum(c.id == created["id"] for c in edge.commands)
    await wait_until(lambda: sweeps_past(start + 6), what="three more sweeps")
    assert sum(c.id == created["id"] for c in edge.commands) == received  # delivered: no more resends


async def test_a_command_sent_while_the_cabinet_was_away_arrives_with_its_birth(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    # Resending every minute: only the birth can bring the command to the cabinet within the test.
    server = await start_central(tmp_path, mosquitto.url, retry_s=60)
    try:
        async with api_client(server) as http:
            async with ScriptedEdge(mosquitto.url, CAB) as before:
                await born(before, http)
            # The cabinet is gone (no session at the broker): the first publication is lost.
            created = await post(http)
            await wait_until(lambda: server.dispatcher.stats.published >= 1, what="the first publication")
            async with ScriptedEdge(mosquitto.url, CAB) as back:
                assert back.commands == []
                await back.birth()
                command = await back.wait_command(created["id"])
                assert command.action == "dim"
            assert server.dispatcher.stats.republished >= 1
    finally:
        await server.__aexit__(None, None, None)


async def test_set_schedule_travels_as_json_text_and_reads_back_as_an_object(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    schedule = {**DIJON, "dimming": [{"start": "22:00", "end": "05:00", "level_pct": 70}]}
    created = await post(http, target={"cabinet": CAB}, action="set_schedule", args={"schedule": schedule})
    command = await edge.wait_command(created["id"])
    assert command.device is None
    assert isinstance(command.args["schedule"], str)
    # What travels is the schedule as validated, defaults filled in: what the cabinet will run.
    assert parse_schedule(command.args["schedule"]) == parse_schedule(schedule)
    sent = json.loads(command.args["schedule"])
    assert (
        sent["switch_on"] == {"event": "sunset", "offset_min": 10} and sent["dimming"] == schedule["dimming"]
    )
    assert created["args"] == {"schedule": sent}
    assert (await status_of(http, created["id"]))["args"] == {"schedule": sent}


async def test_a_bad_schedule_is_a_422_naming_the_field_with_the_problem_the_cabinet_would_give(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    bad = {**DIJON, "dimming": [{"start": "22:00", "end": "24:30", "level_pct": 70}]}
    response = await http.post(
        "/commands", json=body(target={"cabinet": CAB}, action="set_schedule", args={"schedule": bad})
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "args", "schedule", "dimming", 0, "end"]
    assert error["msg"] == "expected HH:MM (00:00 to 23:59), got '24:30'"
    # The cabinet's own parsers refuse it with the same words: as a schedule, and as a command's args.
    with pytest.raises(ScheduleError) as refused:
        parse_schedule(bad)
    assert refused.value.problems == (("dimming[0].end", error["msg"]),)
    with pytest.raises(CommandArgsError) as rejected:
        parse_wire("set_schedule", {"schedule": json.dumps(bad)})
    assert rejected.value.problems == (("schedule.dimming[0].end", error["msg"]),)
    listed = await http.get("/commands")
    assert listed.status_code == 200 and listed.json() == {"commands": []}
    assert edge.commands == []


def nested(depth: int) -> dict[str, Any]:
    """A JSON object ``depth`` levels deep: ``{}`` is 1, ``{"a": {}}`` is 2."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def test_a_schedule_nested_too_deeply_is_a_422_naming_the_field_and_is_never_sent(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    for depth in (MAX_SCHEDULE_DEPTH + 1, 300):
        response = await http.post(
            "/commands",
            json=body(target={"cabinet": CAB}, action="set_schedule", args={"schedule": nested(depth)}),
        )
        assert response.status_code == 422, (depth, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "args", "schedule"]
        assert f"more than {MAX_SCHEDULE_DEPTH} levels" in error["msg"]
    # As deep as allowed is read as a schedule, and refused as one, naming the key it does not know.
    response = await http.post(
        "/commands",
        json=body(
            target={"cabinet": CAB}, action="set_schedule", args={"schedule": nested(MAX_SCHEDULE_DEPTH)}
        ),
    )
    assert response.status_code == 422, response.text
    assert ["body", "args", "schedule", "a"] in [error["loc"] for error in response.json()["detail"]]
    listed = await http.get("/commands")
    assert listed.status_code == 200 and listed.json() == {"commands": []}
    assert edge.commands == []


@pytest.mark.usefixtures("edge")
@pytest.mark.parametrize(
    ("row", "why"),
    [
        # What central stored, and sent, before a schedule's depth was bounded.
        (("set_schedule", json.dumps({"schedule": json.dumps(nested(300))}), "pending"), "nested more than"),
        (("set_schedule", json.dumps({"schedule": "{not json"}), "failed"), "schedule that is not a JSON"),
        (("set_schedule", json.dumps({"schedule": "[1, 2]"}), "failed"), "schedule that is not a JSON"),
        (("dim", "[1, 2]", "failed"), "not a JSON object of fleet scalars"),
    ],
    ids=["deep-schedule", "schedule-not-json", "schedule-not-object", "args-not-object"],
)
async def test_a_stored_command_whose_args_cannot_be_shown_is_listed_without_them(
    central: CentralServer, http: httpx.AsyncClient, row: tuple[str, str, CommandStatus], why: str
) -> None:
    action, args_json, status = row
    good = await post(http)
    now = now_ms()
    stored = CommandRow(
        id=uuid.uuid4().hex,
        parent_id=None,
        cabinet=CAB,
        device=None,
        action=action,
        args={},
        not_after_ms=now + 60_000,
        issued_by=OPERATOR,
        created_ms=now + 1,
        status=status,
    )
    await central.store.add_commands([stored])
    # What an older central left in the file: the args text exactly as it stored it.
    with sqlite3.connect(central.store.path) as db:  # type: ignore[attr-defined]
        db.execute("UPDATE commands SET args = ? WHERE id = ?", (args_json, stored.id))
    async with api_client(central, Role.VIEWER) as viewer:
        for client in (http, viewer):
            response = await client.get("/commands")
            assert response.status_code == 200, response.text
            listed = {command["id"]: command for command in response.json()["commands"]}
            assert listed[good["id"]]["args"] == good["args"]
            [(key, note)] = listed[stored.id]["args"].items()
            assert key == ARGS_NOT_SHOWN and why in note
            assert listed[stored.id]["status"] == status
            one = await client.get(f"/commands/{stored.id}")
            assert one.status_code == 200 and one.json() == listed[stored.id]


async def test_a_group_command_fans_out_to_each_member(
    mosquitto: MosquittoBroker, http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    async with ScriptedEdge(mosquitto.url, "cab-2") as other:
        await born(other, http)
        members = [{"cabinet": CAB, "device": "lc1"}, {"cabinet": "cab-2"}]
        created = await http.put("/groups/north", json={"members": members})
        assert created.status_code == 201, created.text
        assert created.json()["members"] == [
            {"cabinet": CAB, "device": "lc1"},
            {"cabinet": "cab-2", "device": None},
        ]
        assert (await http.put("/groups/north", json={"members": members})).status_code == 200
        assert [g["name"] for g in (await http.get("/groups")).json()["groups"]] == ["north"]
        assert (await http.get("/groups/north")).json()["members"] == created.json()["members"]

        parent = await post(http, target={"group": "north"}, action="switch", args={"on": False})
        assert (parent["kind"], parent["target"]["group"], parent["status"]) == ("group", "north", "open")
        assert parent["summary"]["pending"] == 2
        children = {c["target"]["cabinet"]: c for c in parent["children"]}
        assert {c["parent_id"] for c in children.values()} == {parent["id"]}
        assert children[CAB]["target"]["device"] == "lc1"

        mine = await edge.wait_command(children[CAB]["id"])
        theirs = await other.wait_command(children["cab-2"]["id"])
        assert (mine.device, theirs.device, mine.args, theirs.args) == (
            "lc1",
            None,
            {"on": False},
            {"on": False},
        )
        await edge.send(edge.result(mine.id, "accepted"), edge.result(mine.id, "executed"))
        half = await status_of(http, parent["id"])
        assert (half["status"], half["summary"]["executed"], half["summary"]["pending"]) == ("open", 1, 1)
        await other.send(other.result(theirs.id, "rejected", "no such schedule slot"))
        done = await status_of(http, parent["id"])
        assert done["status"] == "done"
        assert {k: v for k, v in done["summary"].items() if v} == {"executed": 1, "rejected": 1}
        assert (await status_of(http, theirs.id))["parent_id"] == parent["id"]

    assert (await http.delete("/groups/north")).status_code == 204
    assert (await http.get("/groups/north")).status_code == 404
    assert (await http.delete("/groups/north")).status_code == 404
    gone = await http.post("/commands", json=body(target={"group": "north"}))
    assert gone.status_code == 404
    assert "group 'north' is unknown" in gone.json()["detail"]
    assert (await status_of(http, parent["id"]))["status"] == "done"  # history outlives the group


async def test_a_schedule_to_a_group_goes_once_to_each_cabinet(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    members = [{"cabinet": CAB, "device": "lc1"}, {"cabinet": CAB, "device": "lc2"}]
    assert (await http.put("/groups/both", json={"members": members})).status_code == 201
    parent = await post(http, target={"group": "both"}, action="set_schedule", args={"schedule": DIJON})
    [child] = parent["children"]
    assert child["target"] == {"cabinet": CAB, "device": None, "group": None}
    assert (await edge.wait_command(child["id"])).device is None


WHOLE = {"cabinet": CAB}
# A valid schedule too large for one command: 200 exceptions with long notes.
LONG = [
    {"date": f"2027-{1 + i // 28:02d}-{1 + i % 28:02d}", "mode": "off", "note": "n" * 150} for i in range(200)
]
BAD_BODIES: list[tuple[dict[str, Any], list[str], str]] = [
    ({"args": {"level_pct": 150}}, ["body", "args", "level_pct"], "less than or equal to 100"),
    ({"args": {"level_pct": "50"}}, ["body", "args", "level_pct"], "expected an integer, got '50'"),
    ({"args": {"level_pct": 50, "until": 1}}, ["body", "args", "until"], "in the past"),
    ({"args": {}}, ["body", "args", "level_pct"], "required"),
    (
        {"action": "explode"},
        ["body", "action"],
        "'switch', 'dim', 'set_schedule', 'clear_override' or 'set_config'",
    ),
    ({"action": "switch", "args": {"on": "yes"}}, ["body", "args", "on"], "expected true or false"),
    ({"action": "switch", "args": {"on": True, "level_pct": 50}}, ["body", "args", "level_pct"], "dim"),
    ({"action": "clear_override", "args": {"x": 1}}, ["body", "args", "x"], "unknown key"),
    (
        {"action": "set_schedule", "target": WHOLE, "args": {"schedule": [1]}},
        ["body", "args", "schedule"],
        "expected a JSON object",
    ),
    (
        {"action": "set_schedule", "target": WHOLE, "args": {"schedule": {**DIJON, "exceptions": LONG}}},
        ["body", "args", "schedule"],
        "limit is 16384",
    ),
    ({"not_after": 1_000}, ["body", "not_after"], "in the past"),
    ({"not_after": "2024-05-01T10:00:00Z"}, ["body", "not_after"], "in the past"),
    ({"not_after": "2999-01-01T00:00:00Z"}, ["body", "not_after"], "7 days"),
    ({"not_after": "tomorrow"}, ["body", "not_after"], "ISO 8601"),
    ({"target": None}, ["body", "target"], "Field required"),  # None: left out
    ({"target": {}}, ["body", "target"], 'either "cabinet"'),
    ({"target": {"cabinet": CAB, "group": "g"}}, ["body", "target"], 'either "cabinet"'),
    ({"target": {"cabinet": "bad id!"}}, ["body", "target", "cabinet"], "a cabinet id is"),
    ({"issued_by": "someone-else"}, ["body", "issued_by"], "the name of the API token"),
    ({"issued_by": OPERATOR}, ["body", "issued_by"], "leave it out of the body"),
    ({"action": "set_schedule", "args": {"schedule": DIJON}}, ["body", "target", "device"], "whole cabinet"),
]


async def test_a_bad_body_is_a_422_naming_the_field(http: httpx.AsyncClient, edge: ScriptedEdge) -> None:
    for fields, loc, words in BAD_BODIES:
        request = body(**fields)
        if fields.get("target", "") is None:
            del request["target"]
        response = await http.post("/commands", json=request)
        assert response.status_code == 422, (fields, response.text)
        errors = response.json()["detail"]
        assert errors[0]["loc"] == loc, (fields, errors)
        assert words in errors[0]["msg"], (fields, errors)
    assert (await http.get("/commands")).json() == {"commands": []}


async def test_unknown_things_are_404_naming_them(http: httpx.AsyncClient, edge: ScriptedEdge) -> None:
    for target, words in [
        ({"cabinet": "nope"}, "cabinet 'nope' is unknown"),
        ({"cabinet": CAB, "device": "lc9"}, "device 'lc9' is not in cabinet 'cab-1' (its devices: lc1, lc2)"),
        ({"group": "nowhere"}, "group 'nowhere' is unknown"),
    ]:
        response = await http.post("/commands", json=body(target=target))
        assert response.status_code == 404, target
        assert words in response.json()["detail"]
    response = await http.get("/commands/0123456789abcdef")
    assert response.status_code == 404
    assert "command '0123456789abcdef' is unknown" in response.json()["detail"]
    response = await http.put("/groups/g", json={"members": [{"cabinet": CAB}, {"cabinet": "ghost"}]})
    assert response.status_code == 404
    assert "cabinet 'ghost' is unknown" in response.json()["detail"]


async def test_bad_group_bodies_and_queries_are_422(http: httpx.AsyncClient, edge: ScriptedEdge) -> None:
    for path, payload, loc in [
        ("/groups/g", {"members": []}, ["body", "members"]),
        ("/groups/g", {"members": [{"cabinet": CAB}, {"cabinet": CAB}]}, ["body", "members"]),
        ("/groups/bad name", {"members": [{"cabinet": CAB}]}, ["path", "name"]),
        ("/groups/g", {"members": [{"cabinet": CAB, "devise": "lc1"}]}, ["body", "members", 0, "devise"]),
    ]:
        response = await http.put(path, json=payload)
        assert response.status_code == 422, payload
        assert response.json()["detail"][0]["loc"] == loc
    response = await http.get("/commands", params={"status": "done"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "status"]


async def test_two_workers_on_one_database_the_leader_resends_and_both_see_the_result(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    central: CentralServer,
    http: httpx.AsyncClient,
    edge: ScriptedEdge,
) -> None:
    other = CentralServer(
        db=central.store.path,
        broker_url=mosquitto.url,
        http_port=0,
        group="cityedge-central",
        command_retry_s=0.2,
    )
    async with other, api_client(other) as http_other:
        async with asyncio.timeout(10):
            await other.ingestor.wait_subscribed()
        # The first worker took the dispatch lock beside the database; the other follows.
        assert central.leadership.is_leader() and not other.leadership.is_leader()
        created = await post(http_other, not_after=now_ms() + 60_000)
        # The leader never heard of this command but resends it: it is pending in the database.
        await wait_until(lambda: central.dispatcher.stats.republished >= 1, what="a resend by the leader")
        await edge.wait_command(created["id"], count=2)
        assert other.dispatcher.stats.sweeps == 0 and other.dispatcher.stats.republished == 0
        await edge.send(edge.result(created["id"], "accepted"), edge.result(created["id"], "executed"))
        for client in (http, http_other):
            assert (await status_of(client, created["id"]))["status"] == "executed"
