"""Session-local stage tables: how a write transaction sends the rows it merges into ``rollups`` and
``latest_readings``.

As statement parameters those rows would travel as typed arrays, which psycopg dumps element by
element in Python (about a millisecond per column of 700 rows, 25 columns for a rollup: more than
the merge itself costs the server). A binary COPY into a temporary table is formatted in C; one
statement then merges the stage into the real table and empties the stage (a group may merge more
than once in its transaction: batch by batch when it is written the slower ways).

The tables are temporary (no WAL, local buffers, dropped with the session) and ``ON COMMIT DELETE
ROWS``: whatever a rolled-back transaction staged is gone with it. Each connection creates them once,
outside any transaction (``ensure``). They belong to the session: a pooler between central and
PostgreSQL must keep a client on one session (PgBouncer's session mode, not its transaction mode).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import psycopg

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

ROLLUP_STAGE = "pg_temp.cityedge_rollup_stage"  # pg_temp: never a table of the same name elsewhere
LATEST_STAGE = "pg_temp.cityedge_latest_stage"

_CREATE = f"""
CREATE TEMP TABLE IF NOT EXISTS {ROLLUP_STAGE} (
    res int4, point_pk int4, bucket int8, count int8, good int8, min float8, max float8, sum float8,
    last_ts int8, last_stream int4, last_seq int8, last_vf float8, last_vi int8, last_vb bool,
    last_vs text COLLATE "C", last_quality int2, counted int8, first_wh_ts int8, first_wh float8,
    last_wh_ts int8, last_wh float8, energy_wh float8, energy_ms int8, resets int8, absurd int8
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {LATEST_STAGE} (
    point_pk int4, stream_pk int4, seq int8, ts int8, quality int2, reason text COLLATE "C",
    vf float8, vi int8, vb bool, vs text COLLATE "C"
) ON COMMIT DELETE ROWS;
"""

# The connections that have their stage tables (a connection the pool replaces is a new object).
_ready: weakref.WeakSet[Conn] = weakref.WeakSet()


async def ensure(conn: Conn) -> None:
    """Create this session's stage tables if it has none yet (``conn`` in autocommit, outside a
    transaction: a rollback must not take them back while this process believes they exist)."""
    if conn in _ready:
        return
    await conn.execute(_CREATE)
    _ready.add(conn)


async def put(
    cur: Cursor, table: str, columns: str, types: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """Stage ``rows`` (in ``columns`` order, of ``types``) by one binary COPY."""
    async with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        format_row = copy.formatter.write_row
        for row in rows:
            if data := format_row(row):
                await copy.write(data)
