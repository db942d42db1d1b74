"""Commands and groups in SQLite: plain functions of a cursor or connection.

Write functions run on the store's writer thread inside a transaction the caller opened; read
functions run on a read-only connection.

Status only moves forward: pending -> delivered -> one final state (executed, failed, expired,
rejected). Each UPDATE says in its WHERE clause which states it may leave, so applying the same result
twice, or an old result after a newer one, changes nothing. The one exception is a final state central
set itself (``finished_by = 'central'``: no answer before not_after): it was a guess, and a result from
the cabinet replaces it, because the cabinet is the one that knows whether the lights switched.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from central.store_rows import CommandRow, GroupCommandRow, GroupMember, GroupRow
from protocols.fleet import CommandResult

_COLUMNS = """
    id, parent_id, cabinet, device, action, args, not_after, issued_by, created_ms, status,
    delivered_ms, finished_ms, reason, finished_by
"""
_INSERT = f"INSERT INTO commands ({_COLUMNS}) VALUES ({', '.join('?' * 14)})"
_INSERT_PARENT = "INSERT INTO group_commands VALUES (?, ?, ?, ?, ?, ?, ?)"

# The states a cabinet's word may move a command out of.
_REPLACEABLE = "(status = 'pending' OR (status = 'expired' AND finished_by = 'central'))"
_ACCEPTED = f"""
UPDATE commands
SET status = 'delivered', delivered_ms = coalesce(delivered_ms, ?),
    finished_ms = NULL, finished_by = NULL, reason = NULL
WHERE id = ? AND cabinet = ? AND {_REPLACEABLE}
"""
# executed and failed imply that the cabinet accepted it: delivered_ms is set if the accepted result
# never came (or comes later). rejected and expired were refused on arrival: never delivered.
_FINAL = f"""
UPDATE commands
SET status = ?, reason = ?, finished_ms = ?, finished_by = 'cabinet',
    delivered_ms = coalesce(delivered_ms, CASE WHEN ? IN ('executed', 'failed') THEN ? END)
WHERE id = ? AND cabinet = ? AND (status = 'delivered' OR {_REPLACEABLE})
"""
_EXPIRE = """
UPDATE commands
SET status = 'expired', finished_ms = ?, finished_by = 'central', reason = ?
WHERE status = 'pending' AND not_after < ?
"""
_CHUNK = 500
EXPIRED_BY_CENTRAL = "no answer from the cabinet before not_after (marked expired by central)"

_members = msgspec.json.Decoder(list[GroupMember])
_json = msgspec.json.Encoder()


def _row(values: Sequence[Any]) -> CommandRow:
    return CommandRow(*values)


def _values(row: CommandRow) -> tuple[object, ...]:
    return (
        row.id,
        row.parent_id,
        row.cabinet,
        row.device,
        row.action,
        row.args_json,
        row.not_after_ms,
        row.issued_by,
        row.created_ms,
        row.status,
        row.delivered_ms,
        row.finished_ms,
        row.reason,
        row.finished_by,
    )


# -- writes (writer thread, inside a transaction) ----------------------------------------------------


def insert_commands(
    cur: sqlite3.Cursor, commands: Sequence[CommandRow], parent: GroupCommandRow | None
) -> None:
    if parent is not None:
        cur.execute(
            _INSERT_PARENT,
            (
                parent.id,
                parent.group,
                parent.action,
                parent.args_json,
                parent.not_after_ms,
                parent.issued_by,
                parent.created_ms,
            ),
        )
    cur.executemany(_INSERT, [_values(c) for c in commands])


def apply_results(cur: sqlite3.Cursor, cabinet: str, results: Iterable[CommandResult]) -> None:
    """Move commands of ``cabinet`` along with what it reported; another cabinet's ids are ignored.

    Results of unknown ids (sent before central knew them, or from another central) change nothing:
    they stay in command_results.
    """
    for result in sorted(results, key=lambda r: r.seq):
        if result.status == "accepted":
            cur.execute(_ACCEPTED, (result.ts, result.command_id, cabinet))
        else:
            status = result.status
            cur.execute(
                _FINAL,
                (status, result.reason, result.ts, status, result.ts, result.command_id, cabinet),
            )


def expire_commands(cur: sqlite3.Cursor, *, before_ms: int, now_ms: int) -> int:
    cur.execute(_EXPIRE, (now_ms, EXPIRED_BY_CENTRAL, before_ms))
    return cur.rowcount


def put_group(cur: sqlite3.Cursor, group: GroupRow) -> bool:
    """Create or replace; True when it did not exist."""
    existed = cur.execute("SELECT 1 FROM groups WHERE name = ?", (group.name,)).fetchone() is not None
    cur.execute(
        "INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
        (group.name, _json.encode(list(group.members)).decode(), group.updated_ms),
    )
    return not existed


def delete_group(cur: sqlite3.Cursor, name: str) -> bool:
    cur.execute("DELETE FROM groups WHERE name = ?", (name,))
    return cur.rowcount > 0


# -- reads -------------------------------------------------------------------------------------------


def command(conn: sqlite3.Connection, command_id: str) -> CommandRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM commands WHERE id = ?", (command_id,)).fetchone()
    return None if row is None else _row(row)


def group_command(conn: sqlite3.Connection, command_id: str) -> GroupCommandRow | None:
    row = conn.execute("SELECT * FROM group_commands WHERE id = ?", (command_id,)).fetchone()
    return None if row is None else GroupCommandRow(*row)


def child_commands(conn: sqlite3.Connection, parent_id: str) -> list[CommandRow]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE parent_id = ? ORDER BY cabinet, device", (parent_id,)
    )
    return [_row(r) for r in rows]


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
    return [_row(r) for r in conn.execute(sql, (*params, limit))]


def pending_commands(
    conn: sqlite3.Connection, not_after_from_ms: int, cabinets: Sequence[str] | None
) -> list[CommandRow]:
    """Pending commands still sendable (not_after >= ``not_after_from_ms``), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM commands WHERE status = 'pending' AND not_after >= ?"
    if cabinets is None:
        return [_row(r) for r in conn.execute(sql + " ORDER BY created_ms, id", (not_after_from_ms,))]
    found: list[CommandRow] = []
    # In chunks: SQLite caps the number of parameters of one statement.
    for i in range(0, len(cabinets), _CHUNK):
        chunk = cabinets[i : i + _CHUNK]
        rows = conn.execute(
            f"{sql} AND cabinet IN ({', '.join('?' * len(chunk))})", (not_after_from_ms, *chunk)
        )
        found.extend(_row(r) for r in rows)
    return sorted(found, key=lambda c: (c.created_ms, c.id))


def group(conn: sqlite3.Connection, name: str) -> GroupRow | None:
    row = conn.execute("SELECT name, members, updated_ms FROM groups WHERE name = ?", (name,)).fetchone()
    return None if row is None else _group(row)


def groups(conn: sqlite3.Connection) -> list[GroupRow]:
    return [_group(r) for r in conn.execute("SELECT name, members, updated_ms FROM groups ORDER BY name")]


def _group(row: Sequence[Any]) -> GroupRow:
    return GroupRow(name=row[0], members=tuple(_members.decode(row[1])), updated_ms=row[2])
