"""The cabinet registry in SQLite: plain functions of a cursor (writes) or connection (reads).

An upsert changes the row only when a field other than the times differs (``WHERE ... IS NOT``),
so writing the same entry twice is a no-op that says so, and ``updated_ms`` keeps the real change.
It never clears a broker hash nor undoes a revocation, in the same statement: a PUT racing an
issue of credentials or a revocation cannot lose it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.store.registry_rules import check_broker_hash, check_entry, registry_params
from central.store.rows import RegistryEntry

COLUMNS = (
    "cabinet, town, label, latitude, longitude, rated_power_w, baseline_kwh_per_day, broker_hash,"
    " created_ms, updated_ms, revoked_ms"
)
# Fields a PUT replaces; the broker hash and the revocation have rules of their own (``put``).
_PLAIN = ("town", "label", "latitude", "longitude", "rated_power_w", "baseline_kwh_per_day")
_HASH = "coalesce(excluded.broker_hash, registry.broker_hash)"
_REVOKED = "coalesce(registry.revoked_ms, excluded.revoked_ms)"
_SET = ", ".join(f"{c} = excluded.{c}" for c in _PLAIN)
_DIFFERS = " OR ".join(
    [f"registry.{c} IS NOT excluded.{c}" for c in _PLAIN]
    + [f"{_HASH} IS NOT registry.broker_hash", f"{_REVOKED} IS NOT registry.revoked_ms"]
)

_UPSERT = (
    f"INSERT INTO registry ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (cabinet) DO UPDATE SET {_SET}, broker_hash = {_HASH}, revoked_ms = {_REVOKED},"
    f" updated_ms = excluded.updated_ms WHERE {_DIFFERS}"
)


def put(cur: sqlite3.Cursor, entry: RegistryEntry) -> bool:
    """Insert or update ``entry`` (an existing row keeps its created_ms, its broker hash when the
    entry has none, its revocation always); True when anything changed."""
    check_entry(entry)
    cur.execute(_UPSERT, registry_params(entry))
    return cur.rowcount > 0


def set_broker_hash(
    cur: sqlite3.Cursor, cabinet: str, broker_hash: str, expected: str | None, updated_ms: int
) -> bool:
    """Replace the hash if the row is live and still holds ``expected``; True when it did."""
    check_broker_hash(cabinet, broker_hash)
    cur.execute(
        "UPDATE registry SET broker_hash = ?, updated_ms = max(updated_ms, ?)"
        " WHERE cabinet = ? AND revoked_ms IS NULL AND broker_hash IS ?",
        (broker_hash, updated_ms, cabinet, expected),
    )
    return cur.rowcount > 0


def revoke(cur: sqlite3.Cursor, cabinet: str, revoked_ms: int) -> bool:
    """True when the cabinet was registered and not yet revoked."""
    cur.execute(
        "UPDATE registry SET revoked_ms = ?, updated_ms = max(updated_ms, ?)"
        " WHERE cabinet = ? AND revoked_ms IS NULL",
        (revoked_ms, revoked_ms, cabinet),
    )
    return cur.rowcount > 0


def entry(conn: sqlite3.Connection, cabinet: str) -> RegistryEntry | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM registry WHERE cabinet = ?", (cabinet,)).fetchone()
    return None if row is None else _entry(row)


def entries(conn: sqlite3.Connection, include_revoked: bool) -> list[RegistryEntry]:
    where = "" if include_revoked else "WHERE revoked_ms IS NULL"
    rows = conn.execute(f"SELECT {COLUMNS} FROM registry {where} ORDER BY cabinet")
    return [_entry(r) for r in rows]


def _entry(row: Sequence[Any]) -> RegistryEntry:
    return RegistryEntry(*row)
