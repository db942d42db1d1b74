"""Commands and groups in PostgreSQL: plain functions of a cursor (writes, inside a transaction the
caller opened) or of a connection (reads). Status moves follow ``central.store.rules``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from central.store import codec
from central.store.rows import CommandRow, GroupCommandRow, GroupRow
from central.store.rules import EXPIRED_BY_CENTRAL, after_result, results_in_order
from protocols.fleet import CommandResult

Cursor = psycopg.AsyncCursor[tuple[Any, ...]]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

_COLUMNS = codec.COMMAND_COLUMNS
_INSERT = f"INSERT INTO commands ({_COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"
_INSERT_PARENT = "INSERT INTO group_commands VALUES (%s, %s, %s, %s, %s, %s, %s)"
_UPDATE = """
UPDATE commands SET status = %s, delivered_ms = %s, finished_ms = %s, reason = %s, finished_by = %s
WHERE id = %s
"""
_EXPIRE = """
UPDATE commands
SET status = 'expired', finished_ms = %s, finished_by = 'central', reason = %s
WHERE status = 'pending' AND not_after < %s
"""
_PUT_GROUP = """
INSERT INTO groups (name, members, updated_ms) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET members = excluded.members, updated_ms = excluded.updated_ms
RETURNING (xmax = 0)
"""

# -- writes (inside a transaction) -------------------------------------------------------------------


async def insert_commands(
    cur: Cursor, commands: Sequence[CommandRow], parent: GroupCommandRow | None
) -> None:
    if parent is not None:
        await cur.execute(
            _INSERT_PARENT,
            codec.group_command_values(parent),
        )
    if commands:
        await cur.executemany(_INSERT, [codec.command_values(c) for c in commands])


async def apply_results(cur: Cursor, cabinet: str, results: list[CommandResult]) -> None:
    """Move commands of ``cabinet`` along with what it reported; another cabinet's ids are ignored."""
    for result in results_in_order(results):
        await cur.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE id = %s AND cabinet = %s FOR UPDATE",
            (result.command_id, cabinet),
        )
        found = await cur.fetchone()
        if found is None:
            continue
        moved = after_result(codec.command_row(found), result)
        if moved is not None:
            await cur.execute(
                _UPDATE,
                (
                    moved.status,
                    moved.delivered_ms,
                    moved.finished_ms,
                    moved.reason,
                    moved.finished_by,
                    moved.id,
                ),
            )


async def expire_commands(cur: Cursor, *, before_ms: int, now_ms: int) -> int:
    await cur.execute(_EXPIRE, (now_ms, EXPIRED_BY_CENTRAL, before_ms))
    return cur.rowcount


async def put_group(cur: Cursor, group: GroupRow) -> bool:
    """Create or replace; True when it did not exist."""
    await cur.execute(_PUT_GROUP, (group.name, codec.members_text(group), group.updated_ms))
    row = await cur.fetchone()
    return bool(row is not None and row[0])


async def delete_group(cur: Cursor, name: str) -> bool:
    await cur.execute("DELETE FROM groups WHERE name = %s", (name,))
    return cur.rowcount > 0


# -- reads -------------------------------------------------------------------------------------------


async def command(conn: Conn, command_id: str) -> CommandRow | None:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM commands WHERE id = %s", (command_id,))
    row = await cur.fetchone()
    return None if row is None else codec.command_row(row)


async def group_command(conn: Conn, command_id: str) -> GroupCommandRow | None:
    cur = await conn.execute(
        "SELECT id, group_name, action, args, not_after, issued_by, created_ms"
        " FROM group_commands WHERE id = %s",
        (command_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return codec.group_command_row(row)


async def child_commands(conn: Conn, parent_id: str) -> list[CommandRow]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE parent_id = %s ORDER BY cabinet, device NULLS FIRST",
        (parent_id,),
    )
    return [codec.command_row(r) for r in await cur.fetchall()]


async def commands(conn: Conn, cabinet: str | None, status: str | None, limit: int) -> list[CommandRow]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM commands"
        " WHERE (%(cabinet)s::text IS NULL OR cabinet = %(cabinet)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " ORDER BY created_ms DESC, id LIMIT %(limit)s",
        {"cabinet": cabinet, "status": status, "limit": limit},
    )
    return [codec.command_row(r) for r in await cur.fetchall()]


async def pending_commands(
    conn: Conn, not_after_from_ms: int, cabinets: Sequence[str] | None
) -> list[CommandRow]:
    """Pending commands still sendable (not_after >= ``not_after_from_ms``), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM commands WHERE status = 'pending' AND not_after >= %s"
    if cabinets is None:
        cur = await conn.execute(sql + " ORDER BY created_ms, id", (not_after_from_ms,))
    else:
        cur = await conn.execute(
            sql + " AND cabinet = ANY(%s::text[]) ORDER BY created_ms, id",
            (not_after_from_ms, list(cabinets)),
        )
    return [codec.command_row(r) for r in await cur.fetchall()]


async def group(conn: Conn, name: str) -> GroupRow | None:
    cur = await conn.execute("SELECT name, members, updated_ms FROM groups WHERE name = %s", (name,))
    row = await cur.fetchone()
    return None if row is None else _group(row)


async def groups(conn: Conn) -> list[GroupRow]:
    cur = await conn.execute("SELECT name, members, updated_ms FROM groups ORDER BY name")
    return [_group(r) for r in await cur.fetchall()]


def _group(row: Sequence[Any]) -> GroupRow:
    return codec.group_row(row)
