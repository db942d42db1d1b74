"""Request and response bodies of /alarm-episodes: the alarm board and an operator's notes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from central.alarm_episodes import BoardEpisode
from central.equipment_view import EquipmentClass
from central.store.episodes import MAX_ASSIGNEE_CHARS, MAX_NOTE_CHARS
from central.store.rows import EpisodeState, NoteKind


class NoteOut(BaseModel):
    id: int
    ts_ms: int = Field(description="when central recorded it")
    author: str = Field(description="the name of the token that wrote it")
    kind: NoteKind
    text: str = Field(description="the comment; for assign, whom the episode was assigned to")


class EpisodeOut(BaseModel):
    id: int
    cabinet: str
    town: str | None = Field(description="from the cabinet registry; null when it is not registered")
    device: str
    device_class: EquipmentClass = Field(description="from the cabinet's inventory; other when not in it")
    alarm: str = Field(description='e.g. "lamp_failure"; "device_lost" while a device does not answer')
    severity: str = Field(description="of the event that raised it")
    message: str = Field(description="of the event that raised it")
    state: EpisodeState = Field(description="raised, acknowledged (and not cleared), or cleared")
    raised_ms: int = Field(description="the cabinet's stamp (its receipt when the stamp is not believed)")
    cleared_ms: int | None = Field(description="null while it lasts")
    acked_ms: int | None
    acked_by: str | None = Field(description="the name of the token that acknowledged it")
    assigned_to: str | None
    assigned_ms: int | None
    updated_ms: int = Field(description="central's time of its last change (ingest or a note)")

    @classmethod
    def of(cls, board: BoardEpisode) -> EpisodeOut:
        return cls(**_fields(board))


class EpisodeDetail(EpisodeOut):
    notes: list[NoteOut] = Field(description="acknowledgement, assignments and comments, oldest first")

    @classmethod
    def of(cls, board: BoardEpisode) -> EpisodeDetail:
        notes = [
            NoteOut(id=n.id, ts_ms=n.ts_ms, author=n.author, kind=n.kind, text=n.text)
            for n in board.episode.notes
        ]
        return cls(**_fields(board), notes=notes)


def _fields(board: BoardEpisode) -> dict[str, object]:
    e = board.episode
    return {
        "id": e.id,
        "cabinet": e.cabinet,
        "town": board.town,
        "device": e.device,
        "device_class": board.device_class,
        "alarm": e.alarm,
        "severity": e.severity,
        "message": e.message,
        "state": e.state,
        "raised_ms": e.raised_ms,
        "cleared_ms": e.cleared_ms,
        "acked_ms": e.acked_ms,
        "acked_by": e.acked_by,
        "assigned_to": e.assigned_to,
        "assigned_ms": e.assigned_ms,
        "updated_ms": e.updated_ms,
    }


class EpisodesPage(BaseModel):
    episodes: list[EpisodeOut] = Field(description="newest first (by id)")
    next_after: int | None = Field(description="pass as ``after`` for the next page; null: this is the last")


StateFilter = Literal["raised", "acknowledged", "cleared", "open"]


class _Body(BaseModel):
    # Who writes a note is the caller's token, never a field: unknown fields are refused.
    model_config = ConfigDict(extra="forbid")


class AcknowledgeIn(_Body):
    comment: str | None = Field(
        default=None,
        max_length=MAX_NOTE_CHARS,
        description="kept as the acknowledgement's note; acknowledging an acknowledged episode changes"
        " nothing",
    )


class AssignIn(_Body):
    to: str = Field(
        min_length=1, max_length=MAX_ASSIGNEE_CHARS, description="a crew or person, one line of text"
    )


class CommentIn(_Body):
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS, description="newlines and tabs allowed")
