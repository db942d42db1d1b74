"""API tokens and the audit log in SQLite: plain functions of a cursor (writes) or connection (reads).

Write functions run on the store's writer thread inside a transaction the caller opened.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.store.auth_rows import AuditEntry, AuditRow, TokenRow

_TOKEN_COLUMNS = "key_id, name, role, digest, created_ms, revoked_ms"
_AUDIT_COLUMNS = "id, ts_ms, who, role, method, path, summary, client, status"


def insert_token(cur: sqlite3.Cursor, row: TokenRow) -> bool:
    """False (nothing written) when a live token already has this name."""
    live = cur.execute(
        "SELECT 1 FROM api_tokens WHERE name = ? AND revoked_ms IS NULL", (row.name,)
    ).fetchone()
    if live is not None:
        return False
    cur.execute(
        f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (row.key_id, row.name, row.role, row.digest, row.created_ms, row.revoked_ms),
    )
    return True


def revoke_tokens(cur: sqlite3.Cursor, name: str, revoked_ms: int) -> int:
    cur.execute(
        "UPDATE api_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL", (revoked_ms, name)
    )
    return cur.rowcount


def insert_audit(cur: sqlite3.Cursor, entry: AuditEntry) -> None:
    cur.execute(
        "INSERT INTO audit (ts_ms, who, role, method, path, summary, client, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.ts_ms,
            entry.who,
            entry.role,
            entry.method,
            entry.path,
            entry.summary,
            entry.client,
            entry.status,
        ),
    )


def token(conn: sqlite3.Connection, key_id: str) -> TokenRow | None:
    row = conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE key_id = ?", (key_id,)).fetchone()
    return None if row is None else TokenRow(*row)


def tokens(conn: sqlite3.Connection) -> list[TokenRow]:
    rows = conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY name, created_ms")
    return [TokenRow(*r) for r in rows]


def audit(conn: sqlite3.Connection, since_ms: int | None, limit: int) -> list[AuditRow]:
    where, params = ("WHERE ts_ms >= ?", [since_ms]) if since_ms is not None else ("", [])
    rows = conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit)
    )
    return [_audit_row(r) for r in rows]


def _audit_row(row: Sequence[Any]) -> AuditRow:
    return AuditRow(id=row[0], entry=AuditEntry(*row[1:]))
