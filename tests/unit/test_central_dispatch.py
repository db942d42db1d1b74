"""CommandDispatcher over a real SQLite store, with a publisher that records what it is given."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.dispatch import CommandDispatcher
from central.store.rows import CommandRow
from central.store.sqlite import SqliteStore
from central.testing import wait_until
from protocols.fleet import decode_command

NOW = 1_714_557_600_000


class RecordingPublisher:
    """Takes every message (or refuses all while ``up`` is False) and keeps (topic, command id, expiry)."""

    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, str, int | None]] = []

    async def publish(self, topic: str, payload: bytes, *, expiry_s: int | None = None) -> bool:
        if not self.up:
            return False
        self.sent.append((topic, decode_command(payload).id, expiry_s))
        return True

    def ids(self) -> list[str]:
        return [command_id for _, command_id, _ in self.sent]


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "central.db") as s:
        yield s


def row(
    command_id: str, cabinet: str = "cab-1", *, not_after: int = NOW + 60_000, created: int = NOW
) -> CommandRow:
    return CommandRow(command_id, None, cabinet, None, "switch", {"on": True}, not_after, "ops", created)


async def test_a_sweep_expires_the_overdue_and_resends_the_due(store: SqliteStore) -> None:
    clock, publisher = Clock(), RecordingPublisher()
    dispatcher = CommandDispatcher(store=store, publisher=publisher, retry_s=5, expiry_grace_s=2, clock=clock)
    await store.add_commands(
        [
            row("fresh", created=NOW - 1_000),  # published when stored, not yet due again
            row("due", created=NOW - 6_000),
            row("late", not_after=NOW - 1_000, created=NOW - 60_000),  # past not_after, within grace
            row("overdue", not_after=NOW - 3_000, created=NOW - 60_000),
        ]
    )
    await dispatcher.sweep()
    assert publisher.sent == [("cityedge/cab-1/cmd", "due", 60)]
    assert [c.id for c in await store.commands(status="expired")] == ["overdue"]
    assert dispatcher.stats.expired == 1
    clock.ms += 5_000
    await dispatcher.sweep()
    assert publisher.ids() == ["due", "due", "fresh"]  # oldest first
    assert {c.id for c in await store.commands(status="expired")} == {"overdue", "late"}


async def test_a_sweep_with_nothing_overdue_never_takes_the_write_lock(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "central.db", busy_timeout_s=0.05) as store:
        await store.add_commands([row("due", created=NOW - 6_000)])
        publisher = RecordingPublisher()
        dispatcher = CommandDispatcher(store=store, publisher=publisher, clock=Clock())
        writer = sqlite3.connect(store.path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another worker is writing
        try:
            await dispatcher.sweep()  # would fail with "database is locked" if it tried to write
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert publisher.ids() == ["due"]


async def test_fresh_commands_and_births_are_sent_by_the_running_dispatcher(store: SqliteStore) -> None:
    clock, publisher = Clock(), RecordingPublisher()
    async with CommandDispatcher(store=store, publisher=publisher, retry_s=600, clock=clock) as dispatcher:
        await wait_until(lambda: dispatcher.stats.sweeps == 1, what="the first sweep")
        commands = [row("a"), row("b", "cab-2")]
        await store.add_commands(commands)
        dispatcher.submitted(commands)
        await wait_until(lambda: publisher.ids() == ["a", "b"], what="fresh commands published")
        dispatcher.birth("cab-2")
        await wait_until(
            lambda: publisher.ids() == ["a", "b", "b"], what="cab-2's command resent on its birth"
        )
        assert dispatcher.stats.republished == 1
        publisher.up = False
        dispatcher.birth("cab-1")
        await wait_until(lambda: dispatcher.stats.publish_failed == 1, what="a refused publication counted")


async def test_a_store_error_is_counted_and_the_dispatcher_keeps_going(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "central.db")  # never opened: every call is a StoreError
    publisher = RecordingPublisher()
    async with CommandDispatcher(store=store, publisher=publisher, retry_s=0.05) as dispatcher:
        await wait_until(lambda: dispatcher.stats.store_errors >= 2, what="two failed sweeps")
        assert dispatcher.stats.last_error is not None and "not open" in dispatcher.stats.last_error


def test_retry_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="retry_s"):
        CommandDispatcher(store=SqliteStore(tmp_path / "c.db"), publisher=RecordingPublisher(), retry_s=0)
