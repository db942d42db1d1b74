"""Alarm episodes in PostgreSQL: kept at ingest in the batch's transaction, listed, annotated.

The same steps as SQLite's (``central.store.sqlite.episodes``) with the rules of
``central.store.episodes``. Ingest runs them holding the cabinet's row (``central.store.postgres
.writer``: the lock order of every worker), and locks the episodes of its window, so an operator's
note and a batch that merges its episode into another never interleave: the note waits for the
batch, then finds the episode it names, or none (merged away).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from central.alarms import ALARM_EVENT_KINDS
from central.store import episodes as ep
from central.store.rows import AlarmEpisode, AlarmNote, EpisodeQuery, NewNote
from protocols.fleet import Event

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

_KEY = "cabinet = %s AND device = %s AND alarm = %s"
_FIELDS = "stream_pk, raised_seq, raised_ms, severity, message, cleared_stream, cleared_seq, cleared_ms"
_STORED = f"id, {_FIELDS}, acked_ms, acked_by, assigned_to, assigned_ms"
EPISODE_COLUMNS = (
    "id, cabinet, device, alarm, severity, message, raised_ms, cleared_ms, acked_ms, acked_by,"
    " assigned_to, assigned_ms, updated_ms"
)
NOTE_COLUMNS = "id, episode_id, ts_ms, author, kind, text"
_INSERT_MARKS = """
INSERT INTO alarm_marks (stream_pk, seq, cabinet, device, alarm, raises, ts_ms, severity, message)
SELECT %s, u.seq, %s, %s, %s, u.raises, u.ts_ms, u.severity, u.message
FROM unnest(%s::int8[], %s::bool[], %s::int8[], %s::text[], %s::text[])
    AS u (seq, raises, ts_ms, severity, message)
ON CONFLICT DO NOTHING
"""
_UPDATE = f"""
UPDATE alarm_episodes SET
    {", ".join(f"{c.strip()} = %s" for c in _FIELDS.split(","))},
    acked_ms = %s, acked_by = %s, assigned_to = %s, assigned_ms = %s, updated_ms = %s
WHERE id = %s
"""
_INSERT = f"""
INSERT INTO alarm_episodes (cabinet, device, alarm, {_FIELDS}, updated_ms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
STATE_SQL = {
    "raised": "(cleared_seq IS NULL AND acked_ms IS NULL)",
    "acknowledged": "(cleared_seq IS NULL AND acked_ms IS NOT NULL)",
    "cleared": "(cleared_seq IS NOT NULL)",
    "open": "(cleared_seq IS NULL)",
}


async def unseen_alarm_events(cur: Cursor, stream_pk: int, events: Sequence[Event]) -> list[Event]:
    """The batch's alarm events not stored yet: call it before the events are inserted."""
    alarms = [e for e in events if e.kind in ALARM_EVENT_KINDS]
    if not alarms:
        return []
    await cur.execute(
        "SELECT seq FROM events WHERE stream_pk = %s AND seq = ANY(%s::int8[])",
        (stream_pk, sorted({e.seq for e in alarms})),
    )
    stored = {int(seq) for (seq,) in await cur.fetchall()}
    unseen: list[Event] = []
    for event in alarms:
        if event.seq not in stored:
            stored.add(event.seq)
            unseen.append(event)
    return unseen


async def apply_episodes(
    cur: Cursor, stream_pk: int, cabinet: str, events: Iterable[Event], received_ms: int
) -> None:
    """Store the marks of the batch's new alarm events and bring their keys' episodes in line."""
    for key, marks in ep.marks_of(cabinet, stream_pk, events, received_ms).items():
        k = (key.cabinet, key.device, key.alarm)
        await cur.execute(
            _INSERT_MARKS,
            (
                stream_pk,
                *k,
                [m.seq for m in marks],
                [m.raises for m in marks],
                [m.ts_ms for m in marks],
                [m.severity for m in marks],
                [m.message for m in marks],
            ),
        )
        after = await _clear(cur, k, marks[0].pos, before=True)
        through = await _clear(cur, k, marks[-1].pos, before=False)
        window = await _window(cur, k, after, through)
        within, params = ep.between(after, through, "stream_pk", "raised_seq", mark="%s")
        await cur.execute(
            f"SELECT {_STORED} FROM alarm_episodes WHERE {_KEY}{within} ORDER BY id FOR UPDATE",
            (*k, *params),
        )
        stored = [ep.stored_of(r) for r in await cur.fetchall()]
        await _apply(cur, k, ep.plan(window, stored), received_ms)


_MARK = "SELECT stream_pk, seq, raises, ts_ms, severity, message FROM alarm_marks"


async def _window(
    cur: Cursor, key: tuple[str, str, str], after: ep.Pos | None, through: ep.Pos | None
) -> list[ep.Mark]:
    """The window's clears and the first raise after each (``central.store.sqlite.episodes``)."""
    within, params = ep.between(after, through, "stream_pk", "seq", mark="%s")
    await cur.execute(f"{_MARK} WHERE {_KEY} AND NOT raises{within}", (*key, *params))
    clears = [_mark(r) for r in await cur.fetchall()]
    gaps = list(zip([after, *(c.pos for c in clears)], [*(c.pos for c in clears), None], strict=True))
    if through is not None:
        gaps.pop()
    window = list(clears)
    for start, end in gaps:
        within, params = ep.between(start, end, "stream_pk", "seq", inclusive=False, mark="%s")
        await cur.execute(
            f"{_MARK} WHERE {_KEY} AND raises{within} ORDER BY stream_pk, seq LIMIT 1", (*key, *params)
        )
        first = await cur.fetchone()
        if first is not None:
            window.append(_mark(first))
    return window


def _mark(row: Sequence[Any]) -> ep.Mark:
    return ep.Mark(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


async def _clear(cur: Cursor, key: tuple[str, str, str], pos: ep.Pos, *, before: bool) -> ep.Pos | None:
    sign, order = ("<", "DESC") if before else (">", "ASC")
    await cur.execute(
        f"SELECT stream_pk, seq FROM alarm_marks WHERE {_KEY} AND (stream_pk, seq) {sign} (%s, %s)"
        f" AND NOT raises ORDER BY stream_pk {order}, seq {order} LIMIT 1",
        (*key, *pos),
    )
    found = await cur.fetchone()
    return None if found is None else (int(found[0]), int(found[1]))


async def _apply(cur: Cursor, key: tuple[str, str, str], plan: ep.Plan, now_ms: int) -> None:
    for source, target in plan.moves:
        await cur.execute("UPDATE alarm_notes SET episode_id = %s WHERE episode_id = %s", (target, source))
    if plan.deletes:
        await cur.execute("DELETE FROM alarm_episodes WHERE id = ANY(%s::int8[])", (list(plan.deletes),))
    for w in plan.updates:
        await cur.execute(_UPDATE, ep.update_params(w, now_ms))
    if plan.inserts:
        await cur.executemany(_INSERT, [ep.insert_params(key, w, now_ms) for w in plan.inserts])


# -- reads ------------------------------------------------------------------------------------------


async def episodes(conn: Conn, query: EpisodeQuery) -> list[AlarmEpisode]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (
        ("cabinet", query.cabinets),
        ("device", query.devices),
        ("severity", query.severities),
    ):
        if values is not None:
            clauses.append(f"{column} = ANY(%s::text[])")
            params.append(list(values))
    pairs = "(SELECT * FROM unnest(%s::text[], %s::text[]))"
    if query.targets is not None:
        clauses.append(f"(cabinet, device) IN {pairs}")
        params += [[c for c, _ in query.targets], [d for _, d in query.targets]]
    if query.not_targets:
        clauses.append(f"(cabinet, device) NOT IN {pairs}")
        params += [[c for c, _ in query.not_targets], [d for _, d in query.not_targets]]
    if query.states is not None:
        clauses.append(f"({' OR '.join(STATE_SQL[s] for s in query.states) or 'false'})")
    for clause, value in (
        ("raised_ms >= %s", query.raised_since_ms),
        ("raised_ms < %s", query.raised_until_ms),
        ("updated_ms >= %s", query.updated_since_ms),
        ("id < %s", query.after_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT {EPISODE_COLUMNS} FROM alarm_episodes WHERE {' AND '.join(clauses) or 'true'}"
            " ORDER BY id DESC LIMIT %s",
            (*params, query.limit),
        )
        return [ep.episode_of(row) for row in await cur.fetchall()]


async def _read(cur: Cursor, episode_id: int, *, lock: bool = False) -> AlarmEpisode | None:
    await cur.execute(
        f"SELECT {EPISODE_COLUMNS} FROM alarm_episodes WHERE id = %s{' FOR UPDATE' if lock else ''}",
        (episode_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    await cur.execute(
        f"SELECT {NOTE_COLUMNS} FROM alarm_notes WHERE episode_id = %s ORDER BY id", (episode_id,)
    )
    return ep.episode_of(row, [AlarmNote(*r) for r in await cur.fetchall()])


async def episode(conn: Conn, episode_id: int) -> AlarmEpisode | None:
    async with conn.transaction(), conn.cursor() as cur:  # the episode and its notes, one snapshot
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return await _read(cur, episode_id)


async def add_note(cur: Cursor, episode_id: int, note: NewNote) -> AlarmEpisode | None:
    """Record ``note`` by the rules of ``central.store.episodes`` (``NoteRefused`` when they refuse
    it), holding the episode's row; the episode with its notes, or None when there is none."""
    found = await _read(cur, episode_id, lock=True)
    if found is None:
        return None
    changed = ep.after_note(found, len(found.notes), note)
    if changed is None:
        return found
    await cur.execute(
        "UPDATE alarm_episodes SET acked_ms = %s, acked_by = %s, assigned_to = %s, assigned_ms = %s,"
        " updated_ms = %s WHERE id = %s",
        (
            changed.acked_ms,
            changed.acked_by,
            changed.assigned_to,
            changed.assigned_ms,
            changed.updated_ms,
            episode_id,
        ),
    )
    await cur.execute(
        "INSERT INTO alarm_notes (episode_id, ts_ms, author, kind, text) VALUES (%s, %s, %s, %s, %s)",
        (episode_id, note.ts_ms, note.author, note.kind, ep.stored_text(note)),
    )
    return await _read(cur, episode_id)
