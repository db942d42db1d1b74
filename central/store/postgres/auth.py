"""API tokens and the audit log in PostgreSQL: plain functions of a cursor (writes) or connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from central.store.auth_rows import AuditEntry, AuditRow, TokenRow
from central.store.postgres.values import pg_text

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_TOKEN_COLUMNS = "key_id, name, role, digest, created_ms, revoked_ms"
_AUDIT_COLUMNS = "id, ts_ms, who, role, method, path, summary, client, status"


async def insert_token(cur: Cursor, row: TokenRow) -> bool:
    """False (nothing written) when a live token already has this name (checked by the unique
    index on live names, so two concurrent creations cannot both succeed)."""
    await cur.execute(
        f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (name) WHERE revoked_ms IS NULL DO NOTHING",
        (row.key_id, row.name, row.role, row.digest, row.created_ms, row.revoked_ms),
    )
    return cur.rowcount > 0


async def revoke_tokens(cur: Cursor, name: str, revoked_ms: int) -> int:
    await cur.execute(
        "UPDATE api_tokens SET revoked_ms = %s WHERE name = %s AND revoked_ms IS NULL", (revoked_ms, name)
    )
    return cur.rowcount


async def insert_audit(cur: Cursor, entry: AuditEntry) -> None:
    await cur.execute(
        "INSERT INTO audit (ts_ms, who, role, method, path, summary, client, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            entry.ts_ms,
            None if entry.who is None else pg_text(entry.who),
            entry.role,
            pg_text(entry.method),
            pg_text(entry.path),
            pg_text(entry.summary),
            None if entry.client is None else pg_text(entry.client),
            entry.status,
        ),
    )


async def token(conn: Conn, key_id: str) -> TokenRow | None:
    cur = await conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE key_id = %s", (key_id,))
    row = await cur.fetchone()
    return None if row is None else TokenRow(*row)


async def tokens(conn: Conn) -> list[TokenRow]:
    cur = await conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY name, created_ms")
    return [TokenRow(*r) for r in await cur.fetchall()]


async def audit(conn: Conn, since_ms: int | None, limit: int) -> list[AuditRow]:
    cur = await conn.execute(
        f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE (%(since)s::int8 IS NULL OR ts_ms >= %(since)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"since": since_ms, "limit": limit},
    )
    return [_audit_row(r) for r in await cur.fetchall()]


def _audit_row(row: Sequence[Any]) -> AuditRow:
    return AuditRow(id=row[0], entry=AuditEntry(*row[1:]))
