"""The live feed's reads on every backend: what changed in the store between two polls, once each."""

from __future__ import annotations

from central.live.feed import LiveFeed, Update
from central.store import Store
from central.store.rows import CommandRow, EpisodeQuery, NewNote, ReceivedStatus, RegistryEntry
from central.testing import TS0_MS
from protocols.fleet import PROTOCOL_VERSION, Status
from tests.contract.test_store_episodes import RECEIVED, Edge

CAB = "cab-1"


def _entry(town: str, updated_ms: int) -> RegistryEntry:
    return RegistryEntry(
        cabinet=CAB, town=town, label="", latitude=47.3, longitude=5.0, rated_power_w=None,
        baseline_kwh_per_day=None, broker_hash=None, created_ms=TS0_MS, updated_ms=updated_ms,
        revoked_ms=None,
    )  # fmt: skip


async def test_each_change_is_heard_once_from_the_store(store: Store) -> None:
    feed = LiveFeed(store, encode=lambda update: b"", clock=lambda: RECEIVED - 1)
    status = Status(v=PROTOCOL_VERSION, cabinet=CAB, online=True, ts=TS0_MS)
    await store.write([], [ReceivedStatus(status, TS0_MS)])
    await feed.baseline()

    command = CommandRow("c0ffee01", None, CAB, None, "dim", {"level_pct": 40}, TS0_MS + 60_000, "op", TS0_MS)
    await store.add_commands([command])
    edge = Edge(CAB)
    await store.write([edge.batch(edge.door(True, TS0_MS))])
    await store.put_registry(_entry("Dijon", TS0_MS))
    changed = await feed.poll_once()
    assert [c.id for c in changed.commands] == ["c0ffee01"]
    assert [(e.alarm, e.state) for e in changed.episodes] == [("door_open", "raised")]
    assert [(r.cabinet, r.town) for r in changed.registry] == [(CAB, "Dijon")]
    # The batch came an hour after the birth: last seen moved (told once a minute at most).
    assert [(c.id, c.last_seen_ms) for c in changed.cabinets] == [(CAB, RECEIVED)]
    assert await feed.poll_once() == Update()  # nothing new: nothing told

    (episode,) = await store.episodes(EpisodeQuery())
    await store.add_note(episode.id, NewNote(kind="acknowledge", author="op", ts_ms=RECEIVED + 5))
    offline = Status(v=PROTOCOL_VERSION, cabinet=CAB, online=False, ts=TS0_MS + 1)
    await store.write([], [ReceivedStatus(offline, TS0_MS + 1)])
    changed = await feed.poll_once()
    assert [(e.id, e.state) for e in changed.episodes] == [(episode.id, "acknowledged")]
    assert [(c.id, c.online) for c in changed.cabinets] == [(CAB, False)]
    assert changed.commands == () and changed.registry == ()
