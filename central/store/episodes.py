"""Alarm episodes: how alarm events pair into episodes, and what an operator's note does to one. Pure.

Every alarm event (``central.alarms.alarm_change``) is a **mark** of its (cabinet, device, alarm):
it raises or clears. A key's marks, in the cabinet's order (stream, in the order central first saw
it, then seq: never by stamp, see ``central.record_time``), make its episodes:

- an episode opens at a raise while none is open, and closes at the first clear after it;
- a raise while one is open belongs to that episode (one open episode per alarm, never two);
- a clear while none is open closes nothing (it stays a mark: a raise that arrives later, because
  batches came out of order, finds it and closes on it).

Marks are kept by the store beside the events (``alarm_marks``), so that a batch changes only the
episodes around its own marks (its window): from just after the last clear before its first mark to
the first clear after its last one. Before that clear and after this one nothing can change, since a
clear closes whatever was open. Within it, only its clears and the first raise after each decide the
episodes: the store reads those, so a long run of raises costs a few lookups per batch.

``plan`` compares the episodes a window should hold with those it holds and says what to write: an
episode keeps its id and its notes whatever arrives later (a late raise moves its start earlier, a
late clear splits it: the first part keeps the id). Marks are only ever added, so two episodes never
become one; should a database hold two where one belongs, the older id stays and takes the other's
notes.

Times are the cabinet's stamps where central believes them; a record stamped before the protocol
existed (a board at 1970) is dated by its receipt instead, and one stamped ahead of its receipt
changes nothing (as for the alarm's current state). A clear is never dated before its raise.

Keyed by (stream, seq) of the marks, a batch stored twice adds no mark the second time and changes
nothing.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from central.alarms import alarm_change
from central.record_time import stamped_ahead, time_suspect
from central.store.rows import AlarmEpisode, AlarmNote, NewNote
from protocols.fleet import Event

Pos = tuple[int, int]  # (stream_pk, seq): the order of a cabinet's records

# Bounds of what operators write (the API checks them first, with errors naming the field).
MAX_NOTE_CHARS = 2000
MAX_NOTES_PER_EPISODE = 200
MAX_ASSIGNEE_CHARS = 64


@dataclass(frozen=True, slots=True)
class AlarmKey:
    cabinet: str
    device: str
    alarm: str


@dataclass(frozen=True, slots=True)
class Mark:
    """One alarm event of one key: where it stands, whether it raises, when (as believed)."""

    stream_pk: int
    seq: int
    raises: bool
    ts_ms: int
    severity: str
    message: str

    @property
    def pos(self) -> Pos:
        return (self.stream_pk, self.seq)


def marks_of(
    cabinet: str, stream_pk: int, events: Iterable[Event], received_ms: int
) -> dict[AlarmKey, list[Mark]]:
    """The marks of a batch's newly stored events, by key, in seq order."""
    found: dict[AlarmKey, list[Mark]] = {}
    for event in events:
        change = alarm_change(event)
        if change is None or stamped_ahead(event.ts, received_ms):
            continue
        ts = received_ms if time_suspect(event.ts, received_ms) else event.ts
        mark = Mark(stream_pk, event.seq, change.active, ts, event.severity, event.message)
        found.setdefault(AlarmKey(cabinet, change.device, change.alarm), []).append(mark)
    for marks in found.values():
        marks.sort(key=lambda m: m.seq)
    return found


@dataclass(frozen=True, slots=True)
class Span:
    """An episode as the marks make it: its first raise, and the clear that closes it (if any)."""

    raised: Mark
    cleared: Mark | None


def pair(marks: Iterable[Mark]) -> list[Span]:
    """The episodes of one key's marks, nothing being open before the first of them."""
    spans: list[Span] = []
    opened: Mark | None = None
    for mark in sorted(marks, key=lambda m: m.pos):
        if mark.raises:
            opened = opened or mark
        elif opened is not None:
            spans.append(Span(opened, mark))
            opened = None
    if opened is not None:
        spans.append(Span(opened, None))
    return spans


@dataclass(frozen=True, slots=True)
class EpisodeFields:
    """What the marks decide of an episode."""

    stream_pk: int
    raised_seq: int
    raised_ms: int
    severity: str
    message: str
    cleared_stream: int | None
    cleared_seq: int | None
    cleared_ms: int | None


@dataclass(frozen=True, slots=True)
class StoredEpisode:
    """An episode row as a window's plan needs it."""

    id: int
    fields: EpisodeFields
    acked_ms: int | None
    acked_by: str | None
    assigned_to: str | None
    assigned_ms: int | None

    @property
    def raised_pos(self) -> Pos:
        return (self.fields.stream_pk, self.fields.raised_seq)


@dataclass(frozen=True, slots=True)
class EpisodeWrite:
    """An episode to write: ``id`` None inserts one."""

    id: int | None
    fields: EpisodeFields
    acked_ms: int | None = None
    acked_by: str | None = None
    assigned_to: str | None = None
    assigned_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """In this order: move notes (from, to), delete episodes, update, insert."""

    moves: tuple[tuple[int, int], ...] = ()
    deletes: tuple[int, ...] = ()
    updates: tuple[EpisodeWrite, ...] = ()
    inserts: tuple[EpisodeWrite, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.moves or self.deletes or self.updates or self.inserts)


def update_params(write: EpisodeWrite, now_ms: int) -> tuple[Any, ...]:
    """The parameters of both backends' UPDATE of an episode row, in their statements' order."""
    f = write.fields
    return (
        f.stream_pk,
        f.raised_seq,
        f.raised_ms,
        f.severity,
        f.message,
        f.cleared_stream,
        f.cleared_seq,
        f.cleared_ms,
        write.acked_ms,
        write.acked_by,
        write.assigned_to,
        write.assigned_ms,
        now_ms,
        write.id,
    )


def insert_params(key: tuple[str, str, str], write: EpisodeWrite, now_ms: int) -> tuple[Any, ...]:
    """The parameters of both backends' INSERT of a new episode row (``key``: cabinet, device, alarm)."""
    f = write.fields
    return (
        *key,
        f.stream_pk,
        f.raised_seq,
        f.raised_ms,
        f.severity,
        f.message,
        f.cleared_stream,
        f.cleared_seq,
        f.cleared_ms,
        now_ms,
    )


def between(
    after: Pos | None,
    through: Pos | None,
    stream: str,
    seq: str,
    *,
    inclusive: bool = True,
    mark: str = "?",
) -> tuple[str, list[int]]:
    """SQL for the positions after ``after`` and up to ``through`` (before it, unless ``inclusive``);
    ``mark`` is the backend's parameter placeholder."""
    sql, params = "", list[int]()
    if after is not None:
        sql += f" AND ({stream}, {seq}) > ({mark}, {mark})"
        params += after
    if through is not None:
        sql += f" AND ({stream}, {seq}) {'<=' if inclusive else '<'} ({mark}, {mark})"
        params += through
    return sql, params


def stored_of(row: Sequence[Any]) -> StoredEpisode:
    """A stored episode from a row of (id, the eight EpisodeFields, acked_ms, acked_by, assigned_to,
    assigned_ms), as both backends select it."""
    return StoredEpisode(row[0], EpisodeFields(*row[1:9]), *row[9:13])


def fields_of(span: Span) -> EpisodeFields:
    raised, cleared = span.raised, span.cleared
    return EpisodeFields(
        stream_pk=raised.stream_pk,
        raised_seq=raised.seq,
        raised_ms=raised.ts_ms,
        severity=raised.severity,
        message=raised.message,
        cleared_stream=None if cleared is None else cleared.stream_pk,
        cleared_seq=None if cleared is None else cleared.seq,
        cleared_ms=None if cleared is None else max(cleared.ts_ms, raised.ts_ms),
    )


def plan(marks: Sequence[Mark], stored: Sequence[StoredEpisode]) -> Plan:
    """What to write so that a window holding ``stored`` holds the episodes of its ``marks``.

    Each stored episode belongs to the span its raise falls in; a span without one is a new
    episode; a span with several (a late raise joined them) keeps the oldest, with the earliest
    acknowledgement and the latest assignment among them, and takes the others' notes.
    """
    spans = pair(marks)
    if not spans:
        return Plan()
    starts = [s.raised.pos for s in spans]
    members: list[list[StoredEpisode]] = [[] for _ in spans]
    for episode in stored:
        at = max(bisect.bisect_right(starts, episode.raised_pos) - 1, 0)
        members[at].append(episode)
    moves: list[tuple[int, int]] = []
    deletes: list[int] = []
    updates: list[EpisodeWrite] = []
    inserts: list[EpisodeWrite] = []
    for span, group in zip(spans, members, strict=True):
        fields = fields_of(span)
        if not group:
            inserts.append(EpisodeWrite(None, fields))
            continue
        group.sort(key=lambda e: e.id)
        keep = group[0]
        acked = min((e for e in group if e.acked_ms is not None), key=lambda e: e.acked_ms or 0, default=None)
        assigned = max(
            (e for e in group if e.assigned_ms is not None), key=lambda e: e.assigned_ms or 0, default=None
        )
        write = EpisodeWrite(
            keep.id,
            fields,
            acked_ms=None if acked is None else acked.acked_ms,
            acked_by=None if acked is None else acked.acked_by,
            assigned_to=None if assigned is None else assigned.assigned_to,
            assigned_ms=None if assigned is None else assigned.assigned_ms,
        )
        for other in group[1:]:
            moves.append((other.id, keep.id))
            deletes.append(other.id)
        current = EpisodeWrite(
            keep.id, keep.fields, keep.acked_ms, keep.acked_by, keep.assigned_to, keep.assigned_ms
        )
        if write != current:
            updates.append(write)
    return Plan(tuple(moves), tuple(deletes), tuple(updates), tuple(inserts))


# -- operators' notes -----------------------------------------------------------------------------


class NoteRefused(Exception):
    """A note the rules refuse. ``field`` names what is wrong (``text``, ``to``, ``notes``)."""

    def __init__(self, field: str, problem: str, *, full: bool = False) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem
        self.full = full  # the episode holds as many notes as it may: not the note's fault


def text_problem(text: str, *, limit: int, required: bool, one_line: bool = False) -> str | None:
    """Why ``text`` cannot be a note's text, or None."""
    if required and not text.strip():
        return "must not be empty"
    if len(text) > limit:
        return f"is {len(text)} characters long: at most {limit}"
    allowed = "" if one_line else "\n\t"
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text):
        return "holds control characters" + ("" if one_line else " (only newlines and tabs may be used)")
    return None


def check_note(note: NewNote) -> None:
    """Raise ``NoteRefused`` unless the note's text fits its kind."""
    if note.kind == "assign":
        problem = text_problem(note.text, limit=MAX_ASSIGNEE_CHARS, required=True, one_line=True)
        field = "to"
    else:
        problem = text_problem(note.text, limit=MAX_NOTE_CHARS, required=note.kind == "comment")
        field = "comment" if note.kind == "acknowledge" else "text"
    if problem is not None:
        raise NoteRefused(field, f"{field} {problem}")


def after_note(episode: AlarmEpisode, notes: int, note: NewNote) -> AlarmEpisode | None:
    """The episode once ``note`` is recorded; None when the note changes nothing (an acknowledged
    episode acknowledged again, an assignment to whom it is assigned already): nothing is stored.

    ``notes``: how many the episode holds. Raises ``NoteRefused``.
    """
    check_note(note)
    if note.kind == "acknowledge" and episode.acked_ms is not None:
        return None
    if note.kind == "assign" and episode.assigned_to == note.text.strip():
        return None
    # The acknowledgement (once per episode, so one note over the cap at most) is always taken: it is
    # the raised -> acknowledged delay the contract is judged on, whatever was written before it.
    if notes >= MAX_NOTES_PER_EPISODE and note.kind != "acknowledge":
        raise NoteRefused(
            "notes",
            f"alarm episode {episode.id} holds {notes} notes, the most one keeps: write what is"
            " left to say in a note of its next episode",
            full=True,
        )
    changed = dataclasses.replace(episode, updated_ms=max(episode.updated_ms, note.ts_ms))
    if note.kind == "acknowledge":
        return dataclasses.replace(changed, acked_ms=note.ts_ms, acked_by=note.author)
    if note.kind == "assign":
        return dataclasses.replace(changed, assigned_to=note.text.strip(), assigned_ms=note.ts_ms)
    return changed


def stored_text(note: NewNote) -> str:
    """The text a note is stored with (an assignee's name without surrounding blanks)."""
    return note.text.strip() if note.kind == "assign" else note.text


def episode_of(row: Sequence[Any], notes: Sequence[AlarmNote] = ()) -> AlarmEpisode:
    """An episode from a row of (id, cabinet, device, alarm, severity, message, raised_ms, cleared_ms,
    acked_ms, acked_by, assigned_to, assigned_ms, updated_ms), as both backends select it."""
    (id_, cabinet, device, alarm, severity, message, raised_ms, cleared_ms) = row[:8]
    acked_ms, acked_by, assigned_to, assigned_ms, updated_ms = row[8:13]
    return AlarmEpisode(
        id_,
        cabinet,
        device,
        alarm,
        severity,
        message,
        raised_ms,
        cleared_ms,
        acked_ms,
        acked_by,
        assigned_to,
        assigned_ms,
        updated_ms,
        notes=tuple(notes),
    )
