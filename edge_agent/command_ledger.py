"""Which commands this cabinet has seen, persisted so that each id runs at most once, across restarts.

A command is claimed (stored with its payload) before anything is done with it; a second delivery of
the same id finds the claim and is ignored. States: ``accepted`` (claimed, not started: a restart runs
it), ``executing`` (started: a restart reports it failed rather than risk running it twice), ``trial``
(a config on trial, concluded by ``edge_agent.remote_config``), and the final ``executed``, ``failed``,
``expired``, ``rejected``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from edge_agent.buffer import Buffer

SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""
# Forget final commands this long after their not_after: a redelivery then is refused as expired anyway.
KEEP_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Unfinished:
    id: str
    state: str
    payload: bytes


class CommandLedger:
    def __init__(self, buffer: Buffer) -> None:
        self._buffer = buffer

    async def open(self) -> None:
        await self._buffer.transact(lambda db: db.executescript(SCHEMA) and None)

    async def claim(self, command_id: str, not_after: int, received_ms: int, payload: bytes) -> bool:
        """Record a new command as accepted; False when this id was seen before."""

        def claim(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO commands VALUES (?, 'accepted', ?, ?, ?)",
                (command_id, not_after, received_ms, payload),
            )
            return cursor.rowcount == 1

        return await self._buffer.transact(claim)

    async def set_state(self, command_id: str, state: str) -> None:
        await self._buffer.transact(
            lambda db: db.execute("UPDATE commands SET state = ? WHERE id = ?", (state, command_id)) and None
        )

    async def state(self, command_id: str) -> str | None:
        """The state of ``command_id``, None when this ledger has never seen it."""

        def select(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT state FROM commands WHERE id = ?", (command_id,)).fetchone()
            return None if row is None else str(row[0])

        return await self._buffer.transact(select)

    async def unfinished(self) -> list[Unfinished]:
        def select(db: sqlite3.Connection) -> list[Unfinished]:
            rows = db.execute(
                "SELECT id, state, payload FROM commands WHERE state IN ('accepted', 'executing') "
                "ORDER BY received_ms"
            ).fetchall()
            return [Unfinished(row[0], row[1], bytes(row[2])) for row in rows]

        return await self._buffer.transact(select)

    async def prune(self, now_ms: int) -> int:
        def prune(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "DELETE FROM commands WHERE state NOT IN ('accepted', 'executing', 'trial')"
                " AND not_after < ?",
                (now_ms - KEEP_MS,),
            )
            return cursor.rowcount

        return await self._buffer.transact(prune)
