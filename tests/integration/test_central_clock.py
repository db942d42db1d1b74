"""Central is not fooled by a cabinet's clock: order is by sequence, a stamp ahead of receipt is flagged.

Fed through a real Mosquitto by a scripted edge, read over real HTTP and from the real SQLite file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from central.record_time import AHEAD_BOUND_MS
from central.server import CentralServer
from central.store.auth_rows import Role
from central.testing import ScriptedEdge
from cityedge.broker import MosquittoBroker
from tests.integration.api_client import api_client, known_edge
from tests.integration.api_client import get_ok as get

pytestmark = pytest.mark.integration

CAB = "cab-clock"
AT_2099 = int(datetime(2099, 6, 21, 10, tzinfo=UTC).timestamp() * 1000)
AT_1970 = 15_000_000_000  # 1970-06-23: a board without RTC, booted


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
async def http(central: CentralServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(central, Role.VIEWER) as client:
        yield client


@pytest.fixture
async def edge(mosquitto: MosquittoBroker, http: httpx.AsyncClient) -> AsyncIterator[ScriptedEdge]:
    async with known_edge(mosquitto.url, http, CAB, birth_ts=now_ms()) as scripted:
        yield scripted


async def latest(http: httpx.AsyncClient) -> dict[str, tuple[int, Any]]:
    points = (await get(http, f"/cabinets/{CAB}/points"))["points"]
    return {p["point"]: (p["ts_ms"], p["value"]) for p in points}


async def test_a_reading_stamped_2099_never_becomes_the_latest_value(
    http: httpx.AsyncClient, edge: ScriptedEdge, central: CentralServer
) -> None:
    right = now_ms()
    await edge.send(edge.reading("lc1/power_w", right, 100.0))
    wrong = edge.reading("lc1/power_w", AT_2099, 200.0)  # the board lost its clock
    await edge.send(wrong)
    assert await latest(http) == {"lc1/power_w": (right, 100.0)}
    await edge.send(edge.reading("lc1/power_w", right + 1_000, 300.0))  # the clock is fixed
    assert await latest(http) == {"lc1/power_w": (right + 1_000, 300.0)}

    # Stored all the same, and flagged: nothing a cabinet sends is lost.
    rows = await get(http, f"/cabinets/{CAB}/points/lc1/power_w/readings", start=0, end=2**53)
    assert [r["value"] for r in rows["readings"]] == [100.0, 300.0, 200.0]
    with sqlite3.connect(f"file:{central.store.path}?mode=ro", uri=True) as db:
        flagged = db.execute("SELECT seq, ts, received_ms FROM time_suspect").fetchall()
    [(seq, ts, received_ms)] = flagged
    assert (seq, ts) == (wrong.seq, AT_2099) and ts > received_ms + AHEAD_BOUND_MS


async def test_a_reading_a_little_ahead_or_days_old_is_a_latest_value(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    # A clock a few minutes fast is within the bound; a backlog three days old is old in sequence.
    three_days_ago = now_ms() - 3 * 86_400_000
    await edge.send(*(edge.reading("lc1/energy_wh", three_days_ago + i * 60_000, float(i)) for i in range(5)))
    assert await latest(http) == {"lc1/energy_wh": (three_days_ago + 4 * 60_000, 4.0)}
    fast = now_ms() + AHEAD_BOUND_MS // 2
    await edge.send(edge.reading("lc1/energy_wh", fast, 5.0))
    assert await latest(http) == {"lc1/energy_wh": (fast, 5.0)}


async def test_a_reading_stamped_1970_never_becomes_the_latest_value(
    http: httpx.AsyncClient, edge: ScriptedEdge, central: CentralServer
) -> None:
    """A board that booted without a real-time clock: no backlog is older than the protocol."""
    right = now_ms()
    await edge.send(edge.reading("lc1/power_w", right, 100.0))
    wrong = edge.reading("lc1/power_w", AT_1970, 0.0)
    await edge.send(wrong)
    assert await latest(http) == {"lc1/power_w": (right, 100.0)}
    with sqlite3.connect(f"file:{central.store.path}?mode=ro", uri=True) as db:
        flagged = db.execute("SELECT seq, ts FROM time_suspect").fetchall()
    assert flagged == [(wrong.seq, AT_1970)]


async def test_an_alarm_raised_then_cleared_with_a_1970_stamp_is_inactive(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    about = {"alarm": "lamp_failure", "device": "lc1"}
    await edge.send(edge.event("alarm_raised", about, ts=now_ms(), source="lc1"))
    assert [a["alarm"] for a in (await get(http, "/alarms", active="true"))["alarms"]] == ["lamp_failure"]
    # The board rebooted without RTC, then saw the lamp back: the clear comes later in sequence.
    await edge.send(edge.event("alarm_cleared", about, ts=AT_1970, source="lc1"))
    [alarm] = (await get(http, "/alarms", cabinet=CAB))["alarms"]
    assert (alarm["alarm"], alarm["active"], alarm["cleared_ms"]) == ("lamp_failure", False, AT_1970)


async def test_an_alarm_event_stamped_ahead_changes_no_alarm(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    lamp = {"alarm": "lamp_failure", "device": "lc1"}
    await edge.send(edge.event("alarm_raised", lamp, ts=now_ms(), source="lc1"))
    await edge.send(
        edge.event("alarm_cleared", lamp, ts=AT_2099, source="lc1"),
        edge.event("alarm_raised", {"alarm": "overpower", "device": "lc1"}, ts=AT_2099, source="lc1"),
    )
    alarms = (await get(http, "/alarms", cabinet=CAB))["alarms"]
    assert [(a["alarm"], a["active"]) for a in alarms] == [("lamp_failure", True)]
    events = (await get(http, "/events", cabinet=CAB))["events"]
    assert sum(e["ts_ms"] == AT_2099 for e in events) == 2  # stored, and shown as they came


async def test_the_lighting_view_shows_the_newest_state_in_sequence_not_one_stamped_2099(
    http: httpx.AsyncClient, edge: ScriptedEdge
) -> None:
    def state(on: bool, reason: str) -> dict[str, Any]:
        return {"on": on, "level_pct": 100 if on else 0, "reason": reason, "devices": "lc1"}

    right = now_ms()
    await edge.send(edge.event("lighting_state", state(True, "night"), ts=AT_2099, source="lc1"))
    await edge.send(edge.event("lighting_state", state(False, "day"), ts=right, source="lc1"))
    view = await get(http, f"/cabinets/{CAB}/lighting")
    assert [(o["source"], o["ts_ms"], o["on"]) for o in view["outputs"]] == [("lc1", right, False)]
