"""Commands, groups, alarms and the new reads of SqliteStore, against real SQLite files."""

from __future__ import annotations

import pytest

from central.store import Store
from central.store.rows import CommandRow, GroupCommandRow, GroupMember, GroupRow, ReceivedBatch
from central.testing import TS0_MS
from protocols.fleet import (
    PROTOCOL_VERSION,
    CommandResult,
    DataBatch,
    Event,
    Reading,
    encode,
    encode_data_batch,
)
from protocols.fleet.messages import CommandStatus, Scalar
from protocols.quality import Quality

CAB = "cab-1"
STREAM = "0123abcd"


class Edge:
    """Numbers records like an agent's log and wraps them in batches."""

    def __init__(self, cabinet: str = CAB, stream: str = STREAM) -> None:
        self.cabinet, self.stream, self.seq = cabinet, stream, 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def result(
        self, command_id: str, status: CommandStatus, reason: str | None = None, ts: int = TS0_MS
    ) -> CommandResult:
        return CommandResult(self._next(), ts, command_id, status, reason)

    def event(self, kind: str, ts: int, source: str = "lc1", **data: Scalar) -> Event:
        return Event(self._next(), ts, source, kind, "alarm", f"{kind} at {ts}", data)

    def reading(self, point: str, ts: int, value: Scalar, quality: Quality = Quality.GOOD) -> Reading:
        return Reading(
            self._next(), point, ts, value, quality, None if quality == Quality.GOOD else "timeout"
        )

    def batch(self, *records: Reading | Event | CommandResult) -> ReceivedBatch:
        seqs = [r.seq for r in records]
        readings = [r for r in records if isinstance(r, Reading)]
        events = [r for r in records if isinstance(r, Event)]
        results = [r for r in records if isinstance(r, CommandResult)]
        payload = encode_data_batch(
            cabinet=self.cabinet,
            stream=self.stream,
            first=min(seqs),
            last=max(seqs),
            readings=[encode(r) for r in readings],
            events=[encode(e) for e in events],
            results=[encode(r) for r in results],
        )
        batch = DataBatch(
            v=PROTOCOL_VERSION,
            cabinet=self.cabinet,
            stream=self.stream,
            first=min(seqs),
            last=max(seqs),
            readings=readings,
            events=events,
            results=results,
        )
        return ReceivedBatch(batch, TS0_MS + 3_600_000, f"cityedge/{self.cabinet}/data", payload)


def command(
    command_id: str, *, cabinet: str = CAB, not_after: int = TS0_MS + 60_000, created: int = TS0_MS
) -> CommandRow:
    return CommandRow(command_id, None, cabinet, "lc1", "dim", {"level_pct": 40}, not_after, "ops", created)


async def status(store: Store, command_id: str) -> CommandRow:
    row = await store.command(command_id)
    assert row is not None
    return row


async def test_a_command_moves_forward_only(store: Store) -> None:
    await store.add_commands([command("c1")])
    edge = Edge()
    assert (await status(store, "c1")).status == "pending"
    await store.write([edge.batch(edge.result("c1", "accepted", ts=TS0_MS + 5))])
    row = await status(store, "c1")
    assert (row.status, row.delivered_ms, row.finished_ms) == ("delivered", TS0_MS + 5, None)
    await store.write([edge.batch(edge.result("c1", "executed", ts=TS0_MS + 9))])
    await store.write(
        [edge.batch(edge.result("c1", "accepted", ts=TS0_MS + 20), edge.result("c1", "failed", "x"))]
    )
    row = await status(store, "c1")
    assert (row.status, row.delivered_ms, row.finished_ms, row.reason, row.finished_by) == (
        "executed",
        TS0_MS + 5,
        TS0_MS + 9,
        None,
        "cabinet",
    )


async def test_results_in_one_batch_apply_in_seq_order_and_replaying_it_changes_nothing(
    store: Store,
) -> None:
    await store.add_commands([command("c1")])
    edge = Edge()
    batch = edge.batch(
        edge.result("c1", "accepted", ts=TS0_MS + 1), edge.result("c1", "failed", "jammed", ts=TS0_MS + 2)
    )
    [outcome] = await store.write([batch])
    assert outcome.results_new == 2
    [again] = await store.write([batch])
    assert (again.results_new, again.duplicates) == (0, 2)
    row = await status(store, "c1")
    assert (row.status, row.reason, row.delivered_ms, row.finished_ms) == (
        "failed",
        "jammed",
        TS0_MS + 1,
        TS0_MS + 2,
    )
    assert (await store.totals()).results == 2


async def test_an_executed_without_accepted_still_counts_as_delivered(store: Store) -> None:
    await store.add_commands([command("c1"), command("c2")])
    edge = Edge()
    await store.write(
        [edge.batch(edge.result("c1", "executed", ts=TS0_MS + 3), edge.result("c2", "rejected", "bad"))]
    )
    assert (await status(store, "c1")).delivered_ms == TS0_MS + 3
    assert (await status(store, "c2")).delivered_ms is None  # refused on arrival: never accepted


async def test_a_cabinet_cannot_move_another_cabinets_command(store: Store) -> None:
    await store.add_commands([command("c1")])
    intruder = Edge("cab-2")
    await store.write(
        [intruder.batch(intruder.result("c1", "executed"), intruder.result("unknown", "executed"))]
    )
    assert (await status(store, "c1")).status == "pending"


async def test_central_expires_pending_commands_and_the_cabinet_can_correct_it(store: Store) -> None:
    await store.add_commands(
        [
            command("old", not_after=TS0_MS + 10),
            command("new", not_after=TS0_MS + 1_000),
            command("done", not_after=TS0_MS),
        ]
    )
    edge = Edge()
    await store.write([edge.batch(edge.result("done", "accepted"))])
    assert [c.id for c in await store.pending_commands(not_after_from_ms=TS0_MS + 5)] == [
        "new",
        "old",
    ]
    assert await store.expire_commands(before_ms=TS0_MS + 100, now_ms=TS0_MS + 200) == 1
    old = await status(store, "old")
    assert (old.status, old.finished_ms, old.finished_by) == ("expired", TS0_MS + 200, "central")
    assert (await status(store, "done")).status == "delivered"  # accepted in time: not central's to expire
    assert await store.expire_commands(before_ms=TS0_MS + 100, now_ms=TS0_MS + 300) == 0  # idempotent
    await store.write([edge.batch(edge.result("old", "accepted", ts=TS0_MS + 8))])
    old = await status(store, "old")
    assert (old.status, old.finished_ms, old.finished_by, old.reason) == ("delivered", None, None, None)


async def test_pending_commands_by_deadline_and_cabinet(store: Store) -> None:
    await store.add_commands(
        [
            command("a", not_after=TS0_MS + 10, created=TS0_MS + 2),
            command("b", cabinet="cab-2", not_after=TS0_MS + 50, created=TS0_MS + 1),
            command("c", not_after=TS0_MS + 50, created=TS0_MS + 3),
        ]
    )
    assert [c.id for c in await store.pending_commands(not_after_from_ms=TS0_MS)] == ["b", "a", "c"]
    assert [c.id for c in await store.pending_commands(not_after_from_ms=TS0_MS + 11)] == ["b", "c"]
    assert [c.id for c in await store.pending_commands(not_after_from_ms=0, cabinets=[CAB])] == ["a", "c"]
    assert await store.pending_commands(not_after_from_ms=0, cabinets=[]) == []
    many = [f"x-{i}" for i in range(2_000)] + ["cab-2"]  # more than one statement's parameters
    assert [c.id for c in await store.pending_commands(not_after_from_ms=0, cabinets=many)] == ["b"]


async def test_listing_commands_newest_first_with_filters(store: Store) -> None:
    await store.add_commands([command(f"c{i}", cabinet=f"cab-{i % 2}", created=TS0_MS + i) for i in range(5)])
    assert [c.id for c in await store.commands()] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.id for c in await store.commands(cabinet="cab-1", limit=1)] == ["c3"]
    assert await store.commands(status="executed") == []


async def test_a_group_command_and_its_children_are_stored_together(store: Store) -> None:
    parent = GroupCommandRow("p1", "north", "switch", {"on": True}, TS0_MS + 60_000, "ops", TS0_MS)
    children = [
        CommandRow(f"k{i}", "p1", f"cab-{i}", None, "switch", {"on": True}, TS0_MS + 60_000, "ops", TS0_MS)
        for i in range(3)
    ]
    await store.add_commands(children, parent)
    assert await store.group_command("p1") == parent
    assert [c.id for c in await store.child_commands("p1")] == ["k0", "k1", "k2"]
    assert await store.group_command("k0") is None


async def test_a_failed_insert_stores_neither_parent_nor_children(store: Store) -> None:
    await store.add_commands([command("dup")])
    parent = GroupCommandRow("p1", "north", "switch", "{}", TS0_MS, "ops", TS0_MS)
    with pytest.raises(Exception, match="UNIQUE"):
        await store.add_commands([command("fresh"), command("dup")], parent)
    assert await store.group_command("p1") is None
    assert await store.command("fresh") is None


async def test_groups_are_created_replaced_and_deleted(store: Store) -> None:
    north = GroupRow("north", (GroupMember(CAB, "lc1"), GroupMember("cab-2")), 10)
    assert await store.put_group(north) is True
    assert await store.group("north") == north
    replaced = GroupRow("north", (GroupMember("cab-3"),), 20)
    assert await store.put_group(replaced) is False
    await store.put_group(GroupRow("east", (GroupMember(CAB),), 30))
    assert [g.name for g in await store.groups()] == ["east", "north"]
    assert await store.group("north") == replaced
    assert await store.delete_group("north") is True
    assert await store.delete_group("north") is False
    assert await store.group("north") is None


async def test_alarms_follow_the_newest_event_whatever_the_arrival_order(store: Store) -> None:
    edge = Edge()
    raised = edge.event("alarm_raised", TS0_MS + 10, alarm="lamp_failure", device="lc1")
    cleared = edge.event("alarm_cleared", TS0_MS + 20, alarm="lamp_failure", device="lc1")
    await store.write([edge.batch(cleared)])
    await store.write([edge.batch(raised)])  # older: must not reactivate
    [alarm] = await store.alarms()
    assert (alarm.device, alarm.alarm, alarm.active, alarm.cleared_ms) == (
        "lc1",
        "lamp_failure",
        False,
        TS0_MS + 20,
    )
    again = edge.event("alarm_raised", TS0_MS + 30, alarm="lamp_failure", device="lc1")
    lost = edge.event("device_lost", TS0_MS + 40, source="lc2")
    other = Edge("cab-2", "feedbeef")
    door = other.event("alarm_raised", TS0_MS + 5, source="agent", alarm="door_open")  # no device: the source
    await store.write([edge.batch(again, lost), other.batch(door)])
    await store.write([edge.batch(again, lost)])  # a duplicate changes nothing
    active = await store.alarms(active=True)
    assert [(a.cabinet, a.device, a.alarm) for a in active] == [
        (CAB, "lc2", "device_lost"),
        (CAB, "lc1", "lamp_failure"),
        ("cab-2", "agent", "door_open"),
    ]
    assert active[1].raised_ms == TS0_MS + 30 and active[1].cleared_ms is None
    back = edge.event("device_back", TS0_MS + 50, source="lc2")
    await store.write([edge.batch(back)])
    assert [a.alarm for a in await store.alarms(cabinet=CAB, active=True)] == ["lamp_failure"]
    assert [(a.alarm, a.raised_ms) for a in await store.alarms(active=False)] == [
        ("device_lost", TS0_MS + 40)
    ]
    assert len(await store.alarms(limit=1)) == 1


async def test_the_latest_event_of_a_kind_from_each_source(store: Store) -> None:
    edge = Edge()
    await store.write(
        [
            edge.batch(
                edge.event("lighting_state", TS0_MS + 2, source="lc1", on=True),
                edge.event("lighting_state", TS0_MS + 1, source="lc1", on=False),
                edge.event("lighting_state", TS0_MS + 5, source="lc2", on=False),
                edge.event("lighting_state", TS0_MS + 3, source="lc3", on=True),
                edge.event("door_open", TS0_MS + 9, source="lc1"),
            )
        ]
    )
    other = Edge("cab-2", "feedbeef")
    await store.write([other.batch(other.event("lighting_state", TS0_MS + 99, source="lc1", on=False))])
    latest = await store.latest_events(CAB, "lighting_state")
    # lc1's newest is the last it appended, although stamped earlier (its clock was stepped back).
    assert [(e.source, e.ts_ms - TS0_MS, e.data) for e in latest] == [
        ("lc2", 5, {"on": False}),
        ("lc3", 3, {"on": True}),
        ("lc1", 1, {"on": False}),
    ]
    assert await store.latest_events(CAB, "schedule_active") == []
    assert await store.latest_events("cab-3", "lighting_state") == []


async def test_reading_chunks_stream_the_range_and_its_good_neighbours(store: Store) -> None:
    edge = Edge()
    values = [
        edge.reading("m/energy_wh", TS0_MS + 1, 1.0),
        edge.reading("m/energy_wh", TS0_MS + 2, 2.0),
        edge.reading("m/energy_wh", TS0_MS + 3, 3.0, Quality.BAD),
        edge.reading("m/energy_wh", TS0_MS + 4, 4.0),
        edge.reading("m/energy_wh", TS0_MS + 5, 5.0),
        edge.reading("m/energy_wh", TS0_MS + 6, 6.0, Quality.BAD),
        edge.reading("m/energy_wh", TS0_MS + 7, 7.0),
        edge.reading("m/x_energy_wh", TS0_MS, 0.0),
        edge.reading("m/Energy_Wh", TS0_MS, 0.0),
        edge.reading("m/energy_wh_total", TS0_MS, 0.0),
    ]
    await store.write([edge.batch(*values)])

    async def ts(start: int, end: int, *, neighbours: bool = False, point: str = "m/energy_wh") -> list[int]:
        chunks = store.reading_chunks(CAB, point, start_ms=start, end_ms=end, neighbours=neighbours)
        return [r.ts_ms - TS0_MS async for chunk in chunks for r in chunk]

    assert await ts(TS0_MS + 3, TS0_MS + 6) == [3, 4, 5]
    # the bad readings at 3 and 6 are not neighbours
    assert await ts(TS0_MS + 4, TS0_MS + 6, neighbours=True) == [2, 4, 5, 7]
    assert await ts(0, 2**53, neighbours=True, point="no/such") == []
    assert await store.points_ending_with(CAB, "energy_wh") == ["m/energy_wh", "m/x_energy_wh"]


async def test_reading_chunks_walk_thousands_of_readings_that_share_one_timestamp(store: Store) -> None:
    # A hostile cabinet may stamp every reading alike: paging must neither stall nor repeat.
    edge = Edge()
    same = [edge.reading("m/energy_wh", TS0_MS, float(i)) for i in range(25_000)]
    for i in range(0, len(same), 5_000):
        await store.write([edge.batch(*same[i : i + 5_000])])
    chunks = [chunk async for chunk in store.reading_chunks(CAB, "m/energy_wh", start_ms=0, end_ms=2**53)]
    assert sorted(r.value for chunk in chunks for r in chunk) == [float(i) for i in range(25_000)]
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 10_000
