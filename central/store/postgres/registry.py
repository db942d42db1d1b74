"""The cabinet registry in PostgreSQL: plain functions of a cursor (writes) or connection (reads).

As on SQLite (``central.store.sqlite.registry``): the upsert changes the row only when a field other
than the times differs, in one statement, so two concurrent writers of one cabinet cannot both think
they changed it to the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from central.store.registry_rules import check_entry
from central.store.rows import RegistryEntry

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

COLUMNS = (
    "cabinet, town, label, latitude, longitude, rated_power_w, baseline_kwh_per_day, broker_hash,"
    " created_ms, updated_ms, revoked_ms"
)
_CONTENT = (
    "town",
    "label",
    "latitude",
    "longitude",
    "rated_power_w",
    "baseline_kwh_per_day",
    "broker_hash",
    "revoked_ms",
)
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_CONTENT, "updated_ms"))
_CURRENT = ", ".join(f"registry.{c}" for c in _CONTENT)
_GIVEN = ", ".join(f"EXCLUDED.{c}" for c in _CONTENT)

_UPSERT = (
    f"INSERT INTO registry ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    f" ON CONFLICT (cabinet) DO UPDATE SET {_SET} WHERE ({_CURRENT}) IS DISTINCT FROM ({_GIVEN})"
)


async def put(cur: Cursor, entry: RegistryEntry) -> bool:
    """Insert or update ``entry`` (an existing row keeps its created_ms); True when anything changed."""
    check_entry(entry)
    await cur.execute(
        _UPSERT,
        (
            entry.cabinet,
            entry.town,
            entry.label,
            entry.latitude,
            entry.longitude,
            entry.rated_power_w,
            entry.baseline_kwh_per_day,
            entry.broker_hash,
            entry.created_ms,
            entry.updated_ms,
            entry.revoked_ms,
        ),
    )
    return cur.rowcount > 0


async def revoke(cur: Cursor, cabinet: str, revoked_ms: int) -> bool:
    """True when the cabinet was registered and not yet revoked."""
    await cur.execute(
        "UPDATE registry SET revoked_ms = %s, updated_ms = greatest(updated_ms, %s)"
        " WHERE cabinet = %s AND revoked_ms IS NULL",
        (revoked_ms, revoked_ms, cabinet),
    )
    return cur.rowcount > 0


async def entry(conn: Conn, cabinet: str) -> RegistryEntry | None:
    cur = await conn.execute(f"SELECT {COLUMNS} FROM registry WHERE cabinet = %s", (cabinet,))
    row = await cur.fetchone()
    return None if row is None else _entry(row)


async def entries(conn: Conn, include_revoked: bool) -> list[RegistryEntry]:
    where = "" if include_revoked else "WHERE revoked_ms IS NULL"
    cur = await conn.execute(f'SELECT {COLUMNS} FROM registry {where} ORDER BY cabinet COLLATE "C"')
    return [_entry(r) for r in await cur.fetchall()]


def _entry(row: Sequence[Any]) -> RegistryEntry:
    return RegistryEntry(*row)
