"""The cabinet registry in SQLite: plain functions of a cursor (writes) or connection (reads).

An upsert changes the row only when a field other than the times differs (``WHERE ... IS NOT``),
so writing the same entry twice is a no-op that says so, and ``updated_ms`` keeps the real change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.store.registry_rules import check_entry
from central.store.rows import RegistryEntry

COLUMNS = (
    "cabinet, town, label, latitude, longitude, rated_power_w, baseline_kwh_per_day, broker_hash,"
    " created_ms, updated_ms, revoked_ms"
)
# What "changed" means: every field but the cabinet and the times it was created and updated.
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
_SET = ", ".join(f"{c} = excluded.{c}" for c in (*_CONTENT, "updated_ms"))
_DIFFERS = " OR ".join(f"registry.{c} IS NOT excluded.{c}" for c in _CONTENT)

_UPSERT = (
    f"INSERT INTO registry ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (cabinet) DO UPDATE SET {_SET} WHERE {_DIFFERS}"
)


def put(cur: sqlite3.Cursor, entry: RegistryEntry) -> bool:
    """Insert or update ``entry`` (an existing row keeps its created_ms); True when anything changed."""
    check_entry(entry)
    cur.execute(
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
