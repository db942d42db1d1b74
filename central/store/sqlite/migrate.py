"""``cityedge central migrate`` on a SQLite file: bring it to this version's schema, in place.

The schema script is idempotent (every statement ``IF NOT EXISTS``, the one-time fills guarded), so
one transaction of it upgrades any older file. From version 2 to 3 the rollups are new: they are
computed from the raw readings already there, one point and one UTC day at a time (bounded memory),
with the same maths as ingest (``central.store.rollups``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from central.store.rollups import Sample, is_counter
from central.store.sqlite.rollups import apply_rollups
from central.store.sqlite.schema import COUNTERS, SCHEMA, SCHEMA_VERSION, connect

_DAY_MS = 86_400_000
_ROLLUPS_SINCE = 3


def migrate(path: Path) -> tuple[int, int]:
    """Upgrade the file at ``path`` (created when missing): (the version it was at, the version now).

    Refuses a file newer than this version. Run it with every central on the file stopped: the
    upgrade is one write transaction over all readings.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        (before,) = conn.execute("PRAGMA user_version").fetchone()
        if before > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the database is at schema version {before}, newer than this version of cityedge"
                f" ({SCHEMA_VERSION}): run the cityedge that wrote it, or a newer one"
            )
        if before == SCHEMA_VERSION:
            return before, before
        conn.execute("PRAGMA journal_mode = WAL")
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(SCHEMA):
                cur.execute(statement)
            cur.executemany("INSERT OR IGNORE INTO counters VALUES (?, 0)", [(n,) for n in COUNTERS])
            if before < _ROLLUPS_SINCE:
                _fill_rollups(conn, cur)
            cur.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            cur.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return before, SCHEMA_VERSION
    finally:
        conn.close()


def _statements(script: str) -> list[str]:
    """The statements of a script (executescript would commit the transaction we are in)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def _fill_rollups(conn: sqlite3.Connection, cur: sqlite3.Cursor) -> None:
    points = conn.execute("SELECT id, name FROM points ORDER BY id").fetchall()
    for pk, name in points:
        counter = is_counter(str(name))
        day: int | None = None
        samples: list[Sample] = []
        rows = conn.execute(
            "SELECT ts, stream_pk, seq, value, quality FROM readings WHERE point_pk = ? ORDER BY ts", (pk,)
        )
        for ts, stream_pk, seq, value, quality in rows:
            this_day = ts // _DAY_MS
            if this_day != day and samples:
                apply_rollups(cur, {int(pk): (counter, samples)})
                samples = []
            day = this_day
            samples.append(Sample(ts, stream_pk, seq, value, quality))
        if samples:
            apply_rollups(cur, {int(pk): (counter, samples)})
