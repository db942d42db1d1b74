"""Spot changes between two polls of the store. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from central.store.rows import AlarmEpisode, CabinetRow, CommandRow, RegistryEntry

# How far behind the newest change an episode poll looks: longer than ingest holds a group before it
# commits (its batches are stamped on receipt) and than workers' clocks differ.
EPISODE_SLACK_MS = 60_000

Row = TypeVar("Row")
# last_seen moves with every batch: a listener hears of it once a minute per cabinet, not per batch.
LAST_SEEN_STEP_MS = 60_000


def cabinet_key(row: CabinetRow) -> Hashable:
    seen = None if row.last_seen_ms is None else row.last_seen_ms // LAST_SEEN_STEP_MS
    return (row.online, row.backlog, row.version, row.stream, seen)


def registry_key(entry: RegistryEntry) -> Hashable:
    return (entry.updated_ms, entry.revoked_ms)


def command_key(row: CommandRow) -> Hashable:
    return (row.status, row.delivered_ms, row.finished_ms, row.reason)


class SnapshotWatch(Generic[Row]):
    """The rows whose key differs from the previous poll's (new rows included). The first poll only
    sets the baseline: a listener loads the current state itself, then hears of what changes."""

    def __init__(self, key_of: Callable[[Row], Hashable], id_of: Callable[[Row], str]) -> None:
        self._key_of = key_of
        self._id_of = id_of
        self._seen: dict[str, Hashable] | None = None

    def changed(self, rows: Iterable[Row]) -> list[Row]:
        now: dict[str, Hashable] = {}
        out: list[Row] = []
        for row in rows:
            ident, key = self._id_of(row), self._key_of(row)
            now[ident] = key
            if self._seen is not None and self._seen.get(ident) != key:
                out.append(row)
        first, self._seen = self._seen is None, now
        return [] if first else out


@dataclass
class EpisodeWatch:
    """Episodes by ``updated_ms`` high-water mark, looking back ``slack_ms`` behind it, and dropping
    the (episode, updated_ms) pairs already heard of in that window: none lost, none repeated.

    The look-back is for rows committed after newer ones: ingest stamps an episode with its batch's
    receipt and commits it with its group, later, while an acknowledgement (stamped now) may commit
    in between and move the mark past it; another worker's commits land late the same way."""

    since_ms: int | None = None
    slack_ms: int = EPISODE_SLACK_MS
    _seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def query_since_ms(self) -> int | None:
        return None if self.since_ms is None else self.since_ms - self.slack_ms

    def changed(self, episodes: Iterable[AlarmEpisode]) -> list[AlarmEpisode]:
        fresh = [e for e in episodes if (e.id, e.updated_ms) not in self._seen]
        if not fresh:
            return []
        mark = max(e.updated_ms for e in fresh)
        if self.since_ms is None or mark > self.since_ms:
            self.since_ms = mark
        floor = self.since_ms - self.slack_ms
        self._seen = {pair for pair in self._seen if pair[1] >= floor}
        self._seen |= {(e.id, e.updated_ms) for e in fresh if e.updated_ms >= floor}
        return fresh
