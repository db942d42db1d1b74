"""Commands and groups in SQLite: plain functions of a cursor or connection.

Write functions run on the store's writer thread inside a transaction the caller opened; read
functions run on a read-only connection.

The rules of how a status moves are ``central.store.rules``: a result is applied by reading the
command, asking the rule, and writing what it says (results are few; commands are keyed by id).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from central.store import codec
from central.store.rows import CommandRow, GroupCommandRow, GroupRow
from central.store.rules import EXPIRED_BY_CENTRAL, after_result, results_in_order
from protocols.fleet import CommandResult

_COLUMNS = codec.COMMAND_COLUMNS
_INSERT = f"INSERT INTO commands ({_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_INSERT_PARENT = "INSERT INTO group_commands VALUES (?, ?, ?, ?, ?, ?, ?)"

_UPDATE = """
UPDATE commands SET status = ?, delivered_ms = ?, finished_ms = ?, reason = ?, finished_by = ?
WHERE id = ?
"""
# Only pending commands expire, in bulk: the rule of ``rules.expired_by_central`` as one statement.
_EXPIRE = """
UPDATE commands
SET status = 'expired', finished_ms = ?, finished_by = 'central', reason = ?
WHERE status = 'pending' AND not_after < ?
"""
_CHUNK = 500

# -- writes (writer thread, inside a transaction) ----------------------------------------------------


def insert_commands(
    cur: sqlite3.Cursor, commands: Sequence[CommandRow], parent: GroupCommandRow | None
) -> None:
    if parent is not None:
        cur.execute(
            _INSERT_PARENT,
            codec.group_command_values(parent),
        )
    cur.executemany(_INSERT, [codec.command_values(c) for c in commands])


def apply_results(cur: sqlite3.Cursor, cabinet: str, results: list[CommandResult]) -> None:
    """Move commands of ``cabinet`` along with what it reported; another cabinet's ids are ignored.

    Results of unknown ids (sent before central knew them, or from another central) change nothing:
    they stay in command_results.
    """
    for result in results_in_order(results):
        found = cur.execute(
            f"SELECT {_COLUMNS} FROM commands WHERE id = ? AND cabinet = ?", (result.command_id, cabinet)
        ).fetchone()
        if found is None:
            continue
        moved = after_result(codec.command_row(found), result)
        if moved is not None:
            cur.execute(
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


def expire_commands(cur: sqlite3.Cursor, *, before_ms: int, now_ms: int) -> int:
    cur.execute(_EXPIRE, (now_ms, EXPIRED_BY_CENTRAL, before_ms))
    return cur.rowcount


def put_group(cur: sqlite3.Cursor, group: GroupRow) -> bool:
    """Create or replace; True when it did not exist."""
    existed = cur.execute("SELECT 1 FROM groups WHERE name = ?", (group.name,)).fetchone() is not None
    cur.execute(
        "INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
        (group.name, codec.members_text(group), group.updated_ms),
    )
    return not existed


def delete_group(cur: sqlite3.Cursor, name: str) -> bool:
    cur.execute("DELETE FROM groups WHERE name = ?", (name,))
    return cur.rowcount > 0


# -- reads -------------------------------------------------------------------------------------------


def command(conn: sqlite3.Connection, command_id: str) -> CommandRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
    return None if row is None else codec.command_row(row)


def group_command(conn: sqlite3.Connection, command_id: str) -> GroupCommandRow | None:
    row = conn.execute("SELECT * FROM group_commands WHERE id = ?", (command_id,)).fetchone()
    if row is None:
        return None
    return codec.group_command_row(row)


def child_commands(conn: sqlite3.Connection, parent_id: str) -> list[CommandRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE parent_id = ? ORDER BY cabinet, device", (parent_id,)
    )
    return [codec.command_row(r) for r in rows]


def commands(
    conn: sqlite3.Connection, cabinet: str | None, status: str | None, limit: int
) -> list[CommandRow]:
    clauses: list[str] = []
    params: list[object] = []
    if cabinet is not None:
        clauses.append("cabinet = ?")
        params.append(cabinet)
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    where = " AND ".join(clauses) or "1"
    sql = f"SELECT {_COLUMNS} FROM commands WHERE {where} ORDER BY created_ms DESC, id LIMIT ?"
    return [codec.command_row(r) for r in conn.execute(sql, (*params, limit))]


def pending_commands(
    conn: sqlite3.Connection, not_after_from_ms: int, cabinets: Sequence[str] | None
) -> list[CommandRow]:
    """Pending commands still sendable (not_after >= ``not_after_from_ms``), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM commands WHERE status = 'pending' AND not_after >= ?"
    if cabinets is None:
        return [
            codec.command_row(r) for r in conn.execute(sql + " ORDER BY created_ms, id", (not_after_from_ms,))
        ]
    found: list[CommandRow] = []
    # In chunks: SQLite caps the number of parameters of one statement.
    for i in range(0, len(cabinets), _CHUNK):
        chunk = cabinets[i : i + _CHUNK]
        rows = conn.execute(
            f"{sql} AND cabinet IN ({', '.join('?' * len(chunk))})", (not_after_from_ms, *chunk)
        )
        found.extend(codec.command_row(r) for r in rows)
    return sorted(found, key=lambda c: (c.created_ms, c.id))


def group(conn: sqlite3.Connection, name: str) -> GroupRow | None:
    row = conn.execute("SELECT name, members, updated_ms FROM groups WHERE name = ?", (name,)).fetchone()
    return None if row is None else _group(row)


def groups(conn: sqlite3.Connection) -> list[GroupRow]:
    return [_group(r) for r in conn.execute("SELECT name, members, updated_ms FROM groups ORDER BY name")]


def _group(row: Sequence[Any]) -> GroupRow:
    return codec.group_row(row)
