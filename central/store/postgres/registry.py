"""The cabinet registry in PostgreSQL: plain functions of a cursor (writes) or connection (reads).

As on SQLite (``central.store.sqlite.registry``): the upsert changes the row only when a field other
than the times differs, never clears a broker hash nor undoes a revocation, in one statement, so two
concurrent writers of one cabinet cannot both think they changed it, nor lose the other's hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from central.store.registry_rules import check_broker_hash, check_entry, registry_params
from central.store.rows import RegistryEntry

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

COLUMNS = (
    "cabinet, town, label, latitude, longitude, rated_power_w, baseline_kwh_per_day, broker_hash,"
    " created_ms, updated_ms, revoked_ms"
)
_PLAIN = ("town", "label", "latitude", "longitude", "rated_power_w", "baseline_kwh_per_day")
_HASH = "coalesce(EXCLUDED.broker_hash, registry.broker_hash)"
_REVOKED = "coalesce(registry.revoked_ms, EXCLUDED.revoked_ms)"
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in _PLAIN)
_CURRENT = ", ".join([f"registry.{c}" for c in _PLAIN] + ["registry.broker_hash", "registry.revoked_ms"])
_GIVEN = ", ".join([f"EXCLUDED.{c}" for c in _PLAIN] + [_HASH, _REVOKED])

_UPSERT = (
    f"INSERT INTO registry ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    f" ON CONFLICT (cabinet) DO UPDATE SET {_SET}, broker_hash = {_HASH}, revoked_ms = {_REVOKED},"
    f" updated_ms = EXCLUDED.updated_ms WHERE ({_CURRENT}) IS DISTINCT FROM ({_GIVEN})"
)


async def put(cur: Cursor, entry: RegistryEntry) -> bool:
    """Insert or update ``entry`` (an existing row keeps its created_ms, its broker hash when the
    entry has none, its revocation always); True when anything changed."""
    check_entry(entry)
    await cur.execute(_UPSERT, registry_params(entry))
    return cur.rowcount > 0


async def set_broker_hash(
    cur: Cursor, cabinet: str, broker_hash: str, expected: str | None, updated_ms: int
) -> bool:
    """Replace the hash if the row is live and still holds ``expected``; True when it did."""
    check_broker_hash(cabinet, broker_hash)
    await cur.execute(
        "UPDATE registry SET broker_hash = %s, updated_ms = greatest(updated_ms, %s)"
        " WHERE cabinet = %s AND revoked_ms IS NULL AND broker_hash IS NOT DISTINCT FROM %s::text",
        (broker_hash, updated_ms, cabinet, expected),
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
