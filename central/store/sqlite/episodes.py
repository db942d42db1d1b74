"""Alarm episodes in SQLite: kept at ingest in the batch's transaction, listed, annotated.

``unseen_alarm_events`` and ``apply_episodes`` run on the writer thread inside a batch's SAVEPOINT
(``central.store.sqlite.writer``); ``add_note`` in a transaction of its own on that thread; the
others are reads. The pairing rules are ``central.store.episodes``'s, shared with PostgreSQL.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from central.alarms import ALARM_EVENT_KINDS
from central.store import episodes as ep
from central.store.codec import json_text
from central.store.rows import AlarmEpisode, AlarmNote, EpisodeQuery, NewNote
from protocols.fleet import Event
from protocols.fleet.messages import ScalarMap

_KEY = "cabinet = ? AND device = ? AND alarm = ?"
_INSERT_MARK = "INSERT OR IGNORE INTO alarm_marks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_FIELDS = "stream_pk, raised_seq, raised_ms, severity, message, cleared_stream, cleared_seq, cleared_ms"
_STORED = f"id, {_FIELDS}, acked_ms, acked_by, assigned_to, assigned_ms"
EPISODE_COLUMNS = (
    "id, cabinet, device, alarm, severity, message, raised_ms, cleared_ms, acked_ms, acked_by,"
    " assigned_to, assigned_ms, updated_ms"
)
NOTE_COLUMNS = "id, episode_id, ts_ms, author, kind, text"
_UPDATE = f"""
UPDATE alarm_episodes SET
    {", ".join(f"{c.strip()} = ?" for c in _FIELDS.split(","))},
    acked_ms = ?, acked_by = ?, assigned_to = ?, assigned_ms = ?, updated_ms = ?
WHERE id = ?
"""
_INSERT = f"""
INSERT INTO alarm_episodes (cabinet, device, alarm, {_FIELDS}, updated_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def unseen_alarm_events(cur: sqlite3.Cursor, stream_pk: int, events: Sequence[Event]) -> list[Event]:
    """The batch's alarm events not stored yet (the first of a seq sent twice in one batch): call it
    before the events are inserted. Only those add marks, so a batch stored twice changes nothing."""
    alarms = [e for e in events if e.kind in ALARM_EVENT_KINDS]
    if not alarms:
        return []
    seqs = json_text(sorted({e.seq for e in alarms}))
    stored = {
        int(seq)
        for (seq,) in cur.execute(
            "SELECT seq FROM events WHERE stream_pk = ? AND seq IN (SELECT value FROM json_each(?))",
            (stream_pk, seqs),
        )
    }
    unseen: list[Event] = []
    for event in alarms:
        if event.seq not in stored:
            stored.add(event.seq)
            unseen.append(event)
    return unseen


def apply_episodes(
    cur: sqlite3.Cursor, stream_pk: int, cabinet: str, events: Iterable[Event], received_ms: int
) -> None:
    """Store the marks of the batch's new alarm events and bring their keys' episodes in line."""
    for key, marks in ep.marks_of(cabinet, stream_pk, events, received_ms).items():
        k = (key.cabinet, key.device, key.alarm)
        cur.executemany(
            _INSERT_MARK,
            [(m.stream_pk, m.seq, *k, int(m.raises), m.ts_ms, m.severity, m.message) for m in marks],
        )
        after = _clear(cur, k, marks[0].pos, before=True)
        through = _clear(cur, k, marks[-1].pos, before=False)
        window = _window(cur, k, after, through)
        within, params = ep.between(after, through, "stream_pk", "raised_seq")
        stored = [
            ep.stored_of(r)
            for r in cur.execute(f"SELECT {_STORED} FROM alarm_episodes WHERE {_KEY}{within}", (*k, *params))
        ]
        _apply(cur, k, ep.plan(window, stored), received_ms)


_MARK = "SELECT stream_pk, seq, raises, ts_ms, severity, message FROM alarm_marks"


def _window(
    cur: sqlite3.Cursor, key: tuple[str, str, str], after: ep.Pos | None, through: ep.Pos | None
) -> list[ep.Mark]:
    """The marks that decide the window's episodes: its clears, and the first raise after each of
    them (the raises after it, while open, change nothing). A cabinet raising an alarm over and over
    without clearing it costs a few lookups per batch, not a read of the whole run."""
    within, params = ep.between(after, through, "stream_pk", "seq")
    clears = [_mark(r) for r in cur.execute(f"{_MARK} WHERE {_KEY} AND raises = 0{within}", (*key, *params))]
    # The gaps between clears; the one after the window's last clear only when the window is open-ended.
    gaps = list(zip([after, *(c.pos for c in clears)], [*(c.pos for c in clears), None], strict=True))
    if through is not None:
        gaps.pop()
    window = list(clears)
    for start, end in gaps:
        within, params = ep.between(start, end, "stream_pk", "seq", inclusive=False)
        first = cur.execute(
            f"{_MARK} WHERE {_KEY} AND raises = 1{within} ORDER BY stream_pk, seq LIMIT 1", (*key, *params)
        ).fetchone()
        if first is not None:
            window.append(_mark(first))
    return window


def _mark(row: Sequence[Any]) -> ep.Mark:
    return ep.Mark(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


def _clear(cur: sqlite3.Cursor, key: tuple[str, str, str], pos: ep.Pos, *, before: bool) -> ep.Pos | None:
    """The last stored clear of ``key`` before ``pos``, or the first one after it."""
    sign, order = ("<", "DESC") if before else (">", "ASC")
    found = cur.execute(
        f"SELECT stream_pk, seq FROM alarm_marks WHERE {_KEY} AND (stream_pk, seq) {sign} (?, ?)"
        f" AND raises = 0 ORDER BY stream_pk {order}, seq {order} LIMIT 1",
        (*key, *pos),
    ).fetchone()
    return None if found is None else (int(found[0]), int(found[1]))


def _apply(cur: sqlite3.Cursor, key: tuple[str, str, str], plan: ep.Plan, now_ms: int) -> None:
    for source, target in plan.moves:
        cur.execute("UPDATE alarm_notes SET episode_id = ? WHERE episode_id = ?", (target, source))
    for episode_id in plan.deletes:
        cur.execute("DELETE FROM alarm_episodes WHERE id = ?", (episode_id,))
    for w in plan.updates:
        cur.execute(_UPDATE, ep.update_params(w, now_ms))
    for w in plan.inserts:
        cur.execute(_INSERT, ep.insert_params(key, w, now_ms))


# -- the upgrade to version 5 ---------------------------------------------------------------------

_CHUNK = 10_000
_data = msgspec.json.Decoder(ScalarMap)


def fill_episodes(cur: sqlite3.Cursor, *, now_ms: int) -> int:
    """Marks and episodes from the alarm events a database already holds, as ingest would have made
    them (``central.migrate``'s step to version 5); how many episodes."""
    kinds = json_text(sorted(ALARM_EVENT_KINDS))
    after = (-1, -1)
    while True:
        rows = cur.connection.execute(
            "SELECT e.stream_pk, e.seq, e.cabinet, e.ts, e.source, e.kind, e.severity, e.message, e.data,"
            " t.received_ms FROM events AS e"
            " LEFT JOIN time_suspect AS t ON (t.stream_pk, t.seq) = (e.stream_pk, e.seq)"
            " WHERE e.kind IN (SELECT value FROM json_each(?)) AND (e.stream_pk, e.seq) > (?, ?)"
            " ORDER BY e.stream_pk, e.seq LIMIT ?",
            (kinds, *after, _CHUNK),
        ).fetchall()
        if not rows:
            break
        for stream_pk, seq, cabinet, ts, source, kind, severity, message, data, received in rows:
            try:
                decoded = _data.decode(data)
            except msgspec.DecodeError:
                decoded = {}
            event = Event(seq, ts, source, kind, severity, message, decoded)
            # A record not flagged at receipt was believed then: its own stamp stands for its receipt.
            marks = ep.marks_of(cabinet, stream_pk, [event], ts if received is None else received)
            for key, (mark,) in marks.items():
                cur.execute(
                    _INSERT_MARK,
                    (
                        stream_pk,
                        seq,
                        key.cabinet,
                        key.device,
                        key.alarm,
                        int(mark.raises),
                        mark.ts_ms,
                        mark.severity,
                        mark.message,
                    ),
                )
        after = (rows[-1][0], rows[-1][1])
    rows_by_key = cur.connection.execute(
        "SELECT cabinet, device, alarm, stream_pk, seq, raises, ts_ms, severity, message FROM alarm_marks"
        " ORDER BY cabinet, device, alarm, stream_pk, seq"
    )
    made = 0
    for k, group in itertools.groupby(rows_by_key, key=lambda r: (str(r[0]), str(r[1]), str(r[2]))):
        spans = ep.pair(ep.Mark(r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in group)
        inserts = tuple(ep.EpisodeWrite(None, ep.fields_of(span)) for span in spans)
        _apply(cur, k, ep.Plan(inserts=inserts), now_ms)
        made += len(spans)
    return made


# -- reads ------------------------------------------------------------------------------------------


def _in(column: str, values: Sequence[str]) -> tuple[str, object]:
    return f"{column} IN (SELECT value FROM json_each(?))", json_text(list(values))


def episodes(conn: sqlite3.Connection, query: EpisodeQuery) -> list[AlarmEpisode]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (
        ("cabinet", query.cabinets),
        ("device", query.devices),
        ("severity", query.severities),
    ):
        if values is not None:
            clause, param = _in(column, values)
            clauses.append(clause)
            params.append(param)
    pairs = "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
    if query.targets is not None:
        clauses.append(f"(cabinet, device) IN {pairs}")
        params.append(json_text(list(query.targets)))
    if query.not_targets:
        clauses.append(f"(cabinet, device) NOT IN {pairs}")
        params.append(json_text(list(query.not_targets)))
    if query.states is not None:
        clauses.append(f"({' OR '.join(STATE_SQL[s] for s in query.states) or '0'})")
    for clause, value in (
        ("raised_ms >= ?", query.raised_since_ms),
        ("raised_ms < ?", query.raised_until_ms),
        ("updated_ms >= ?", query.updated_since_ms),
        ("id < ?", query.after_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    sql = (
        f"SELECT {EPISODE_COLUMNS} FROM alarm_episodes WHERE {' AND '.join(clauses) or '1'}"
        " ORDER BY id DESC LIMIT ?"
    )
    return [ep.episode_of(row) for row in conn.execute(sql, (*params, query.limit))]


STATE_SQL = {
    "raised": "(cleared_seq IS NULL AND acked_ms IS NULL)",
    "acknowledged": "(cleared_seq IS NULL AND acked_ms IS NOT NULL)",
    "cleared": "(cleared_seq IS NOT NULL)",
    "open": "(cleared_seq IS NULL)",
}


def episode(conn: sqlite3.Connection | sqlite3.Cursor, episode_id: int) -> AlarmEpisode | None:
    row = conn.execute(f"SELECT {EPISODE_COLUMNS} FROM alarm_episodes WHERE id = ?", (episode_id,)).fetchone()
    if row is None:
        return None
    notes = [
        AlarmNote(*r)
        for r in conn.execute(
            f"SELECT {NOTE_COLUMNS} FROM alarm_notes WHERE episode_id = ? ORDER BY id", (episode_id,)
        )
    ]
    return ep.episode_of(row, notes)


def add_note(cur: sqlite3.Cursor, episode_id: int, note: NewNote) -> AlarmEpisode | None:
    """Record ``note`` by the rules of ``central.store.episodes`` (``NoteRefused`` when they refuse
    it); the episode with its notes, or None when there is no such episode."""
    found = episode(cur, episode_id)
    if found is None:
        return None
    changed = ep.after_note(found, len(found.notes), note)
    if changed is None:
        return found
    cur.execute(
        "UPDATE alarm_episodes SET acked_ms = ?, acked_by = ?, assigned_to = ?, assigned_ms = ?,"
        " updated_ms = ? WHERE id = ?",
        (
            changed.acked_ms,
            changed.acked_by,
            changed.assigned_to,
            changed.assigned_ms,
            changed.updated_ms,
            episode_id,
        ),
    )
    cur.execute(
        "INSERT INTO alarm_notes (episode_id, ts_ms, author, kind, text) VALUES (?, ?, ?, ?, ?)",
        (episode_id, note.ts_ms, note.author, note.kind, ep.stored_text(note)),
    )
    return episode(cur, episode_id)
