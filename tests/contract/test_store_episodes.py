"""Alarm episodes, kept at ingest from alarm events, on every backend: pairing, resends, batches out
of order, central down, operators' notes, filters, and the upgrade that pairs the events already stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from central.store import Store
from central.store.episodes import MAX_NOTE_CHARS, MAX_NOTES_PER_EPISODE, NoteRefused
from central.store.rows import AlarmEpisode, EpisodeQuery, NewNote, ReceivedBatch
from central.store.sqlite import SqliteStore
from central.store.sqlite.migrate import migrate
from central.testing import TS0_MS
from protocols.fleet import PROTOCOL_VERSION, DataBatch, Event, encode, encode_data_batch
from protocols.fleet.messages import Scalar, Severity
from tests.contract.backends import Backend, PgServer

CAB = "cab-1"
STREAM = "0123abcd"
S = 1000
HOUR = 3_600_000
RECEIVED = TS0_MS + HOUR  # when central receives, unless a test says otherwise


class Edge:
    """Numbers events like an agent's log and wraps them in batches, received when asked."""

    def __init__(self, cabinet: str = CAB, stream: str = STREAM) -> None:
        self.cabinet, self.stream, self.seq = cabinet, stream, 0

    def event(
        self, kind: str, ts: int, source: str = "agent", severity: Severity = "alarm", **data: Scalar
    ) -> Event:
        self.seq += 1
        return Event(self.seq, ts, source, kind, severity, f"{kind} at {ts}", data)

    def door(self, raised: bool, ts: int) -> Event:
        return self.event("alarm_raised" if raised else "alarm_cleared", ts, alarm="door_open")

    def batch(self, *events: Event, received_ms: int = RECEIVED) -> ReceivedBatch:
        seqs = [e.seq for e in events]
        payload = encode_data_batch(
            cabinet=self.cabinet,
            stream=self.stream,
            first=min(seqs),
            last=max(seqs),
            readings=[],
            events=[encode(e) for e in events],
        )
        batch = DataBatch(
            v=PROTOCOL_VERSION,
            cabinet=self.cabinet,
            stream=self.stream,
            first=min(seqs),
            last=max(seqs),
            events=list(events),
        )
        return ReceivedBatch(batch, received_ms, f"cityedge/{self.cabinet}/data", payload)


def spans(episodes: Sequence[AlarmEpisode]) -> list[tuple[str, str, int, int | None]]:
    """(device, alarm, raised_ms, cleared_ms) oldest first: what pairing decided."""
    return sorted((e.device, e.alarm, e.raised_ms, e.cleared_ms) for e in episodes)


async def test_a_door_opened_twice_is_two_episodes_not_one_long_alarm(store: Store) -> None:
    edge = Edge()
    await store.write(
        [
            edge.batch(
                edge.door(True, TS0_MS),
                edge.door(False, TS0_MS + 10 * S),
                edge.door(True, TS0_MS + 26 * S),
                edge.door(False, TS0_MS + 44 * S),
            )
        ]
    )
    episodes = await store.episodes(EpisodeQuery())
    assert [(e.cleared_ms - e.raised_ms) // S for e in episodes if e.cleared_ms] == [18, 10]  # newest first
    assert [(e.cabinet, e.device, e.alarm, e.state, e.severity) for e in episodes] == [
        (CAB, "agent", "door_open", "cleared", "alarm")
    ] * 2
    assert episodes[1].message == f"alarm_raised at {TS0_MS}"
    assert all(e.updated_ms == RECEIVED for e in episodes)  # central's time of the change
    # The current state beside them is one row, as the equipment view reads it.
    [alarm] = await store.alarms()
    assert (alarm.active, alarm.raised_ms, alarm.cleared_ms) == (False, TS0_MS + 26 * S, TS0_MS + 44 * S)


async def test_a_batch_stored_twice_changes_nothing(store: Store) -> None:
    edge = Edge()
    first = edge.batch(edge.door(True, TS0_MS), edge.door(False, TS0_MS + 5 * S))
    second = edge.batch(edge.door(True, TS0_MS + 9 * S))
    await store.write([first, second])
    before = await store.episodes(EpisodeQuery())
    acked = await store.add_note(before[0].id, NewNote("acknowledge", "ops", RECEIVED + 1))
    assert acked is not None
    await store.write([second, first])
    await store.write([first.__class__(first.batch, RECEIVED + HOUR, first.topic, first.payload)])
    after = await store.episodes(EpisodeQuery())
    assert after == [
        dataclasses.replace(before[0], acked_ms=RECEIVED + 1, acked_by="ops", updated_ms=RECEIVED + 1),
        before[1],
    ]
    assert spans(after) == [
        ("agent", "door_open", TS0_MS, TS0_MS + 5 * S),
        ("agent", "door_open", TS0_MS + 9 * S, None),
    ]


async def test_a_clear_that_arrives_before_its_raise_closes_it_when_the_raise_arrives(store: Store) -> None:
    edge = Edge()
    raised = edge.door(True, TS0_MS)
    cleared = edge.door(False, TS0_MS + 30 * S)
    await store.write([edge.batch(cleared)])
    assert await store.episodes(EpisodeQuery()) == []  # a clear alone is no episode
    await store.write([edge.batch(raised)])
    [episode] = await store.episodes(EpisodeQuery())
    assert (episode.raised_ms, episode.cleared_ms, episode.state) == (TS0_MS, TS0_MS + 30 * S, "cleared")


async def test_a_raise_while_one_is_open_keeps_one_episode_whatever_the_order(store: Store) -> None:
    edge = Edge()
    first = edge.door(True, TS0_MS)
    again = edge.door(True, TS0_MS + 5 * S)
    cleared = edge.door(False, TS0_MS + 20 * S)
    await store.write([edge.batch(again)])  # the second raise arrives first: it opens the episode
    [opened] = await store.episodes(EpisodeQuery())
    assert opened.raised_ms == TS0_MS + 5 * S
    noted = await store.add_note(opened.id, NewNote("comment", "ops", RECEIVED, "on my way"))
    assert noted is not None
    await store.write([edge.batch(first)])  # the first raise arrives: the same episode, raised earlier
    await store.write([edge.batch(cleared)])
    [episode] = await store.episodes(EpisodeQuery())
    assert (episode.id, episode.raised_ms, episode.cleared_ms) == (opened.id, TS0_MS, TS0_MS + 20 * S)
    assert episode.message == f"alarm_raised at {TS0_MS}"
    found = await store.episode(episode.id)
    assert found is not None and [n.text for n in found.notes] == ["on my way"]


async def test_a_late_clear_splits_an_episode_and_the_first_part_keeps_its_notes(store: Store) -> None:
    edge = Edge()
    raised = edge.door(True, TS0_MS)
    cleared = edge.door(False, TS0_MS + 10 * S)
    again = edge.door(True, TS0_MS + 26 * S)
    await store.write([edge.batch(raised), edge.batch(again)])  # the clear between is late
    [merged] = await store.episodes(EpisodeQuery())
    assert (merged.raised_ms, merged.cleared_ms) == (TS0_MS, None)
    await store.add_note(merged.id, NewNote("acknowledge", "ops", RECEIVED + 1))
    await store.write([edge.batch(cleared, received_ms=RECEIVED + 2)])
    newer, older = await store.episodes(EpisodeQuery())
    assert (older.id, older.raised_ms, older.cleared_ms, older.acked_by) == (
        merged.id,
        TS0_MS,
        TS0_MS + 10 * S,
        "ops",
    )
    assert (newer.raised_ms, newer.cleared_ms, newer.state, newer.updated_ms) == (
        TS0_MS + 26 * S,
        None,
        "raised",
        RECEIVED + 2,
    )


async def test_every_arrival_order_of_a_flapping_alarm_pairs_the_same(store: Store) -> None:
    # raise, raise, clear | clear, raise | raise, clear: three batches, in each of their 6 orders.
    orders = list(itertools.permutations(range(3)))
    for n, order in enumerate(orders):
        edge = Edge(f"cab-{n}")
        marks = [(True, 0), (True, 2), (False, 5), (False, 7), (True, 11), (True, 12), (False, 20)]
        events = [edge.door(raised, TS0_MS + at * S) for raised, at in marks]
        batches = [edge.batch(*events[0:3]), edge.batch(*events[3:5]), edge.batch(*events[5:7])]
        for i in order:
            await store.write([batches[i]])
        await store.write(batches)  # and all of them again
    for n, order in enumerate(orders):
        found = await store.episodes(EpisodeQuery(cabinets=(f"cab-{n}",)))
        assert spans(found) == [
            ("agent", "door_open", TS0_MS, TS0_MS + 5 * S),
            ("agent", "door_open", TS0_MS + 11 * S, TS0_MS + 20 * S),
        ], order


async def test_an_alarm_raised_over_and_over_is_one_episode(store: Store) -> None:
    edge = Edge()
    for part in range(20):  # 2,000 raises without a clear (a cabinet that repeats itself), then one
        await store.write([edge.batch(*(edge.door(True, TS0_MS + (part * 100 + i) * S) for i in range(100)))])
    await store.write([edge.batch(edge.door(False, TS0_MS + 3000 * S))])
    assert spans(await store.episodes(EpisodeQuery())) == [("agent", "door_open", TS0_MS, TS0_MS + 3000 * S)]


async def test_two_workers_pair_one_cabinets_batches_while_operators_write_notes(backend: Backend) -> None:
    edge = Edge()
    events = [edge.door(i % 2 == 0, TS0_MS + i * S) for i in range(40)]  # 20 episodes of one door
    batches = [edge.batch(*events[i : i + 3]) for i in range(0, 40, 3)]
    async with backend.store() as one, backend.store() as two:
        await one.write([batches[0]])
        first = (await one.episodes(EpisodeQuery()))[-1]  # the oldest: raised at TS0_MS

        async def notes() -> None:
            for i in range(20):
                await two.add_note(first.id, NewNote("comment", "ops", RECEIVED + i, f"note {i}"))

        await asyncio.gather(
            *(store.write([b]) for b, store in zip(batches[::-1], itertools.cycle((one, two)), strict=False)),
            notes(),
        )
        found = await two.episodes(EpisodeQuery(limit=100))
        detail = await one.episode(first.id)
    assert spans(found) == [
        ("agent", "door_open", TS0_MS + i * S, TS0_MS + (i + 1) * S) for i in range(0, 40, 2)
    ]
    assert detail is not None and len(detail.notes) == 20 and detail.cleared_ms == TS0_MS + S


async def test_a_lost_device_is_an_episode_until_it_is_back(store: Store) -> None:
    edge = Edge()
    await store.write(
        [
            edge.batch(
                edge.event("device_lost", TS0_MS, source="lc1", reason="timeout"),
                edge.event("device_lost", TS0_MS + S, source="lc1"),  # lost again: the same episode
                edge.event("alarm_raised", TS0_MS + 2 * S, source="lc1", alarm="lamp_failure"),
                edge.event("device_back", TS0_MS + 60 * S, source="lc1", severity="info"),
                edge.event("device_lost", TS0_MS + 90 * S, source="lc2"),
            )
        ]
    )
    assert spans(await store.episodes(EpisodeQuery())) == [
        ("lc1", "device_lost", TS0_MS, TS0_MS + 60 * S),
        ("lc1", "lamp_failure", TS0_MS + 2 * S, None),
        ("lc2", "device_lost", TS0_MS + 90 * S, None),
    ]


async def test_episodes_raised_and_cleared_while_central_was_down_keep_the_cabinets_times(
    store: Store,
) -> None:
    # Central is down for three days; the cabinet buffered. Then its backlog arrives, oldest first.
    edge = Edge()
    back = TS0_MS + 72 * HOUR
    await store.write([edge.batch(edge.door(True, TS0_MS), received_ms=back)])
    await store.write([edge.batch(edge.door(False, TS0_MS + 10 * S), received_ms=back + 1)])
    # A board at 1970 (no RTC): dated by its receipt. A stamp ahead of the receipt: not believed at all.
    await store.write([edge.batch(edge.door(True, 1_000), received_ms=back + 2)])
    await store.write([edge.batch(edge.door(False, back + 3 * HOUR), received_ms=back + 3)])
    episodes = await store.episodes(EpisodeQuery())
    assert spans(episodes) == [
        ("agent", "door_open", TS0_MS, TS0_MS + 10 * S),
        ("agent", "door_open", back + 2, None),
    ]
    assert {e.updated_ms for e in episodes} == {back + 1, back + 2}


async def test_notes_acknowledge_assign_and_comment_with_their_bounds(store: Store) -> None:
    edge = Edge()
    await store.write([edge.batch(edge.door(True, TS0_MS))])
    [episode] = await store.episodes(EpisodeQuery())
    acked = await store.add_note(episode.id, NewNote("acknowledge", "alice", RECEIVED + 1, "seen"))
    assert acked is not None
    assert (acked.state, acked.acked_ms, acked.acked_by, acked.updated_ms) == (
        "acknowledged",
        RECEIVED + 1,
        "alice",
        RECEIVED + 1,
    )
    # Acknowledged again, by another: nothing changes, nothing is recorded.
    again = await store.add_note(episode.id, NewNote("acknowledge", "bob", RECEIVED + 2, "me too"))
    assert again == acked
    assigned = await store.add_note(episode.id, NewNote("assign", "alice", RECEIVED + 3, " crew 3 "))
    assert assigned is not None and (assigned.assigned_to, assigned.assigned_ms) == ("crew 3", RECEIVED + 3)
    assert await store.add_note(episode.id, NewNote("assign", "bob", RECEIVED + 4, "crew 3")) == assigned
    commented = await store.add_note(episode.id, NewNote("comment", "bob", RECEIVED + 5, "line 1\nline 2"))
    assert commented is not None
    assert [(n.kind, n.author, n.ts_ms, n.text) for n in commented.notes] == [
        ("acknowledge", "alice", RECEIVED + 1, "seen"),
        ("assign", "alice", RECEIVED + 3, "crew 3"),
        ("comment", "bob", RECEIVED + 5, "line 1\nline 2"),
    ]
    assert all(n.episode_id == episode.id for n in commented.notes)
    assert await store.episode(episode.id) == commented
    assert await store.add_note(episode.id + 1000, NewNote("comment", "bob", RECEIVED, "x")) is None
    for bad, field in [
        (NewNote("comment", "bob", RECEIVED, "x" * (MAX_NOTE_CHARS + 1)), "text"),
        (NewNote("comment", "bob", RECEIVED, "  "), "text"),
        (NewNote("comment", "bob", RECEIVED, "bell\x07"), "text"),
        (NewNote("assign", "bob", RECEIVED, ""), "to"),
        (NewNote("assign", "bob", RECEIVED, "a\nb"), "to"),
        (NewNote("assign", "bob", RECEIVED, "x" * 65), "to"),
    ]:
        with pytest.raises(NoteRefused) as refused:
            await store.add_note(episode.id, bad)
        assert refused.value.field == field and not refused.value.full
    for i in range(MAX_NOTES_PER_EPISODE - 3):
        await store.add_note(episode.id, NewNote("comment", "bob", RECEIVED + 10 + i, f"note {i}"))
    with pytest.raises(NoteRefused, match="holds 200 notes") as full:
        await store.add_note(episode.id, NewNote("comment", "bob", RECEIVED, "one more"))
    assert full.value.full
    kept = await store.episode(episode.id)
    assert kept is not None and len(kept.notes) == MAX_NOTES_PER_EPISODE


async def test_episodes_are_filtered_and_paged(store: Store) -> None:
    a, b = Edge("cab-a"), Edge("cab-b", "feedbeef")
    await store.write(
        [
            a.batch(
                a.event("alarm_raised", TS0_MS, source="lc1", alarm="lamp_failure", severity="warning"),
                a.event("alarm_cleared", TS0_MS + S, source="lc1", alarm="lamp_failure", severity="info"),
                a.event("device_lost", TS0_MS + 2 * S, source="cam1", severity="critical"),
            ),
            b.batch(b.event("alarm_raised", TS0_MS + 3 * S, source="tc1", alarm="flashing")),
        ]
    )
    every = await store.episodes(EpisodeQuery())
    assert [e.device for e in every] == ["tc1", "cam1", "lc1"]
    tc1, cam1, lc1 = every
    acked = await store.add_note(cam1.id, NewNote("acknowledge", "ops", RECEIVED + 10))
    assert acked is not None

    async def devices(**query: object) -> list[str]:
        return [e.device for e in await store.episodes(EpisodeQuery(**query))]  # type: ignore[arg-type]

    assert await devices(cabinets=("cab-a",)) == ["cam1", "lc1"]
    assert await devices(cabinets=()) == []
    assert await devices(devices=("lc1", "tc1")) == ["tc1", "lc1"]
    assert await devices(severities=("critical", "warning")) == ["cam1", "lc1"]
    assert await devices(states=("raised",)) == ["tc1"]
    assert await devices(states=("acknowledged",)) == ["cam1"]
    assert await devices(states=("open",)) == ["tc1", "cam1"]
    assert await devices(states=("cleared", "raised")) == ["tc1", "lc1"]
    assert await devices(raised_since_ms=TS0_MS + S, raised_until_ms=TS0_MS + 3 * S) == ["cam1"]
    assert await devices(updated_since_ms=RECEIVED + 5) == ["cam1"]
    assert await devices(targets=(("cab-a", "lc1"), ("cab-b", "tc1"), ("cab-b", "lc1"))) == ["tc1", "lc1"]
    assert await devices(not_targets=(("cab-a", "lc1"),)) == ["tc1", "cam1"]
    assert await devices(targets=()) == []
    assert await devices(limit=2) == ["tc1", "cam1"]
    assert await devices(after_id=cam1.id, limit=2) == ["lc1"]
    assert await devices(after_id=lc1.id) == []
    assert tc1.state == "raised" and lc1.state == "cleared"


# -- the upgrade: the events stored before it become episodes, as ingest makes them ----------------


def _flapping(edge: Edge) -> list[ReceivedBatch]:
    """Batches out of order, a 1970 stamp, one stamped ahead, a lost device, an alarm without a name."""
    opened, closed = edge.door(True, TS0_MS), edge.door(False, TS0_MS + 10 * S)
    again, still = edge.door(True, TS0_MS + 30 * S), edge.door(True, TS0_MS + 31 * S)
    at_1970, ahead = edge.door(False, 5_000), edge.door(True, RECEIVED + HOUR)
    lost = edge.event("device_lost", TS0_MS + 40 * S, source="lc1")
    back = edge.event("device_back", TS0_MS + 50 * S, source="lc1", severity="info")
    unnamed = edge.event("alarm_raised", TS0_MS + 60 * S, source="tc1", alarm=3)
    return [
        edge.batch(again, still),
        edge.batch(closed),
        edge.batch(opened),
        edge.batch(at_1970, ahead),
        edge.batch(lost, back, unnamed),
    ]


def _paired(episodes: Sequence[AlarmEpisode]) -> list[tuple[object, ...]]:
    return sorted(
        (e.cabinet, e.device, e.alarm, e.severity, e.message, e.raised_ms, e.cleared_ms) for e in episodes
    )


async def test_the_sqlite_upgrade_pairs_the_events_already_stored(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    async with SqliteStore(db) as store:
        await store.write(_flapping(Edge()))
        ingested = await store.episodes(EpisodeQuery())
    assert len(ingested) == 4
    with sqlite3.connect(db) as conn:  # version 4 had the events, none of version 5's tables
        conn.executescript(
            "DROP TABLE alarm_notes; DROP TABLE alarm_episodes; DROP TABLE alarm_marks; DROP TABLE registry;"
            " DROP TABLE kpi_changes; DROP TABLE kpi_days; PRAGMA user_version = 4;"
        )
    said: list[str] = []
    assert migrate(db, progress=said.append) == (4, 5)
    assert "alarm episodes: 4 from the events stored" in said
    async with SqliteStore(db) as store:
        assert _paired(await store.episodes(EpisodeQuery())) == _paired(ingested)
        # And ingest goes on from them: the late clear of the open episode closes it.
        edge = Edge()
        edge.seq = 100
        await store.write([edge.batch(edge.door(False, TS0_MS + 99 * S))])
        assert len(await store.episodes(EpisodeQuery(states=("open",)))) == 1  # tc1's


@pytest.fixture
def pg_server() -> PgServer:
    server = PgServer()
    if server.unavailable is not None:
        pytest.skip(server.unavailable)
    return server


async def test_the_postgresql_migration_pairs_the_events_already_stored(pg_server: PgServer) -> None:
    import psycopg

    from central.store.postgres import PostgresStore
    from central.store.postgres.migrations import migrate_database

    name = pg_server.create_database()
    dsn = pg_server.dsn_of(name)
    try:
        async with PostgresStore(dsn, migrate=True) as store:
            await store.write(_flapping(Edge()))
            ingested = await store.episodes(EpisodeQuery())
        assert len(ingested) == 4
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(
                "DROP TABLE alarm_notes, alarm_episodes, alarm_marks, registry, kpi_changes, kpi_days"
            )
            await conn.execute("DELETE FROM schema_migrations WHERE version = 4")
        before, applied = await migrate_database(dsn)
        assert (before, [m.version for m in applied]) == (3, [4])
        async with PostgresStore(dsn) as store:
            assert _paired(await store.episodes(EpisodeQuery())) == _paired(ingested)
    finally:
        pg_server.drop_database(name)
