"""The alarm board: episodes listed with their town and device class, acknowledged, assigned and
commented in the caller's name.

Episodes themselves are made at ingest (``central.store.episodes``). Here they get what the board
shows beside them: the cabinet's town, from the cabinet registry when the store keeps one
(``registry()``), and the device's class, from the cabinet's latest inventory as
``central.equipment_view`` classifies it (a device the inventory does not name is ``other``). Filters
by town and class become filters by cabinet and by (cabinet, device), so that the store pages them.

Errors are the domain's (``central.errors``): an unknown episode, a wrong field, a full episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from central.auth import Identity
from central.equipment_view import EQUIPMENT_CLASS, EquipmentClass
from central.errors import Conflict, InvalidRequest, UnknownTarget
from central.store import Store
from central.store import episodes as rules
from central.store.rows import (
    AlarmEpisode,
    EpisodeFilter,
    EpisodeQuery,
    NewNote,
    NoteKind,
    RegistryEntry,
)
from central.times import now_ms

MAX_FILTER_VALUES = 100
MAX_FILTER_CHARS = 128
MAX_PAGE = 1000


@runtime_checkable
class _Registry(Protocol):
    """What the board reads of the cabinet registry (``RegistryStore``) where the store keeps one."""

    async def registry(self, *, include_revoked: bool = False) -> list[RegistryEntry]: ...


@runtime_checkable
class _RegistryEntries(Protocol):
    async def registry_entry(self, cabinet: str) -> RegistryEntry | None: ...


async def registered_town(store: object, cabinet: str) -> str | None:
    """The cabinet's town; None when it is not registered or the store keeps no registry."""
    if not isinstance(store, _RegistryEntries):
        return None
    entry = await store.registry_entry(cabinet)
    return None if entry is None else entry.town


async def registered_towns(store: object) -> dict[str, str] | None:
    """Each registered cabinet's town (revoked ones too: their history keeps its town); None when
    the store keeps no registry."""
    if not isinstance(store, _Registry):
        return None
    return {entry.cabinet: entry.town for entry in await store.registry(include_revoked=True)}


@dataclass(frozen=True, slots=True)
class BoardEpisode:
    episode: AlarmEpisode
    town: str | None
    device_class: EquipmentClass


@dataclass(frozen=True, slots=True)
class EpisodeFilters:
    """What the board asks for: each tuple, when given, keeps episodes matching one of its values."""

    cabinets: tuple[str, ...] | None = None
    towns: tuple[str, ...] | None = None
    device_classes: tuple[EquipmentClass, ...] | None = None
    severities: tuple[str, ...] | None = None
    states: tuple[EpisodeFilter, ...] | None = None
    raised_since_ms: int | None = None
    raised_until_ms: int | None = None
    after_id: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class EpisodePage:
    episodes: list[BoardEpisode]
    next_after: int | None  # the ``after_id`` of the next page; None when this one is the last


def _bounded(name: str, values: Sequence[str] | None) -> None:
    if values is None:
        return
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidRequest.field(
            ("query", name), f"at most {MAX_FILTER_VALUES} values of {name} at once", len(values)
        )
    for value in values:
        if len(value) > MAX_FILTER_CHARS:
            raise InvalidRequest.field(
                ("query", name), f"a {name} is at most {MAX_FILTER_CHARS} characters", value
            )


class EpisodeService:
    def __init__(self, store: Store, *, clock: Callable[[], int] = now_ms) -> None:
        self._store = store
        self._clock = clock

    async def list(self, filters: EpisodeFilters) -> EpisodePage:
        for name, values in (
            ("cabinet", filters.cabinets),
            ("town", filters.towns),
            ("device_class", filters.device_classes),
            ("severity", filters.severities),
            ("state", filters.states),
        ):
            _bounded(name, values)
        if filters.limit < 1 or filters.limit > MAX_PAGE:
            raise InvalidRequest.field(("query", "limit"), f"limit is 1 to {MAX_PAGE}", filters.limit)
        towns = await registered_towns(self._store)
        classes = await self._classes()
        cabinets = filters.cabinets
        if filters.towns is not None:
            if towns is None:
                raise InvalidRequest.field(
                    ("query", "town"),
                    "this central keeps no cabinet registry, so no cabinet has a town to filter on",
                    list(filters.towns),
                )
            wanted = {t.casefold() for t in filters.towns}
            in_towns = {c for c, town in towns.items() if town.casefold() in wanted}
            chosen = in_towns if cabinets is None else in_towns & set(cabinets)
            cabinets = tuple(sorted(chosen))
        targets: tuple[tuple[str, str], ...] | None = None
        not_targets: tuple[tuple[str, str], ...] = ()
        if filters.device_classes is not None:
            asked = set(filters.device_classes)
            if "other" in asked:  # everything but the devices of the classes not asked for
                not_targets = tuple(sorted(pair for pair, c in classes.items() if c not in asked))
            else:
                targets = tuple(sorted(pair for pair, c in classes.items() if c in asked))
        found = await self._store.episodes(
            EpisodeQuery(
                cabinets=cabinets,
                targets=targets,
                not_targets=not_targets,
                severities=filters.severities,
                states=filters.states,
                raised_since_ms=filters.raised_since_ms,
                raised_until_ms=filters.raised_until_ms,
                after_id=filters.after_id,
                limit=filters.limit,
            )
        )
        page = [self._board(e, towns, classes) for e in found]
        return EpisodePage(page, found[-1].id if len(found) == filters.limit else None)

    async def get(self, episode_id: int) -> BoardEpisode:
        found = await self._store.episode(episode_id)
        if found is None:
            raise _unknown(episode_id)
        return await self._placed(found)

    async def acknowledge(self, episode_id: int, identity: Identity, comment: str | None) -> BoardEpisode:
        return await self._note(episode_id, identity, "acknowledge", comment or "", "comment")

    async def assign(self, episode_id: int, identity: Identity, to: str) -> BoardEpisode:
        return await self._note(episode_id, identity, "assign", to, "to")

    async def comment(self, episode_id: int, identity: Identity, text: str) -> BoardEpisode:
        return await self._note(episode_id, identity, "comment", text, "text")

    async def _note(
        self, episode_id: int, identity: Identity, kind: NoteKind, text: str, field: str
    ) -> BoardEpisode:
        note = NewNote(kind=kind, author=identity.name, ts_ms=self._clock(), text=text)
        try:
            rules.check_note(note)
            found = await self._store.add_note(episode_id, note)
        except rules.NoteRefused as refused:
            if refused.full:
                raise Conflict("alarm episode", str(episode_id), refused.problem) from None
            raise InvalidRequest.field(("body", field), refused.problem, text) from None
        if found is None:
            raise _unknown(episode_id)
        return await self._placed(found)

    async def _placed(self, episode: AlarmEpisode) -> BoardEpisode:
        town = await registered_town(self._store, episode.cabinet)
        cabinet = await self._store.cabinet(episode.cabinet)
        inventory = {} if cabinet is None else {d.name: d.driver for d in cabinet.inventory}
        driver = inventory.get(episode.device)
        device_class: EquipmentClass = "other" if driver is None else EQUIPMENT_CLASS.get(driver, "other")
        return BoardEpisode(episode, town, device_class)

    async def _classes(self) -> dict[tuple[str, str], EquipmentClass]:
        """The class of every device of every cabinet's latest inventory."""
        return {
            (row.id, device.name): EQUIPMENT_CLASS.get(device.driver, "other")
            for row in await self._store.cabinets()
            for device in row.inventory
        }

    @staticmethod
    def _board(
        episode: AlarmEpisode,
        towns: dict[str, str] | None,
        classes: dict[tuple[str, str], EquipmentClass],
    ) -> BoardEpisode:
        return BoardEpisode(
            episode,
            None if towns is None else towns.get(episode.cabinet),
            classes.get((episode.cabinet, episode.device), "other"),
        )


def _unknown(episode_id: int) -> UnknownTarget:
    return UnknownTarget(
        "alarm episode", str(episode_id), "does not exist", "GET /api/v1/alarm-episodes lists them"
    )
