"""``LiveFeed``: one poll of the store about every second while anyone listens, heard by all.

Each listener has a bounded queue of encoded updates. One that does not keep up (its queue full)
loses what was queued and gets a single "resync" instead: it reloads the state it shows rather than
holding this worker's memory hostage. The number of listeners is bounded too (``FeedFull``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from central.errors import CentralError, StoreError
from central.live.watch import EpisodeWatch, SnapshotWatch, cabinet_key, command_key, registry_key
from central.store.interfaces import CommandStore, EpisodeStore, FleetReads, RegistryStore
from central.store.rows import AlarmEpisode, CabinetRow, CommandRow, EpisodeQuery, RegistryEntry

logger = logging.getLogger(__name__)

POLL_S = 1.0
MAX_LISTENERS = 100
QUEUE_UPDATES = 32
RECENT_COMMANDS = 200  # commands older than the newest 200 are not watched
MAX_CABINET_CHANGES = 2000  # more in one poll: a resync, cheaper than a huge event
MAX_EPISODE_CHANGES = 500
# Episodes one poll reads: the changes since the mark and the look-back behind it (already told).
MAX_EPISODE_WINDOW = 5_000


class FeedStore(FleetReads, CommandStore, EpisodeStore, RegistryStore, Protocol):
    """What the feed reads."""


class FeedFull(CentralError):
    def __init__(self, limit: int, *, owner: str | None = None, per_owner: int | None = None) -> None:
        if owner is not None:
            super().__init__(
                f"token {owner!r} already has {per_owner} streams open on this worker: close a page,"
                " or give each screen a token of its own"
            )
        else:
            super().__init__(f"this worker already streams to {limit} listeners: try again in a minute")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Update:
    cabinets: tuple[CabinetRow, ...] = ()
    commands: tuple[CommandRow, ...] = ()
    episodes: tuple[AlarmEpisode, ...] = ()
    registry: tuple[RegistryEntry, ...] = ()  # entries made, moved or revoked
    resync: bool = False

    def __bool__(self) -> bool:
        return bool(self.cabinets or self.commands or self.episodes or self.registry or self.resync)


class Listener:
    def __init__(self, resync: bytes, owner: str = "") -> None:
        self.owner = owner  # the name of the token it streams to
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_UPDATES)
        self._resync = resync
        self.lagged = 0  # times it fell behind

    def offer(self, frames: bytes) -> None:
        try:
            self.queue.put_nowait(frames)
        except asyncio.QueueFull:
            self.lagged += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(self._resync)


class LiveFeed:
    def __init__(
        self,
        store: FeedStore,
        *,
        encode: Callable[[Update], bytes],
        clock: Callable[[], int],
        poll_s: float = POLL_S,
        max_listeners: int = MAX_LISTENERS,
    ) -> None:
        self._store = store
        self._encode = encode
        self._clock = clock
        self.poll_s = poll_s
        self.max_listeners = max_listeners
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._start = asyncio.Lock()
        self._reset()

    def _reset(self) -> None:
        self._cabinets = SnapshotWatch[CabinetRow](cabinet_key, lambda row: row.id)
        self._commands = SnapshotWatch[CommandRow](command_key, lambda row: row.id)
        self._registry = SnapshotWatch[RegistryEntry](registry_key, lambda entry: entry.cabinet)
        self._episode_watch = EpisodeWatch()

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def listeners_of(self, owner: str) -> int:
        return sum(listener.owner == owner for listener in self._listeners)

    @property
    def polling(self) -> bool:
        """True while the store is polled (someone listens)."""
        return self._task is not None and not self._task.done()

    @contextlib.asynccontextmanager
    async def listen(self, owner: str = "", *, per_owner: int | None = None) -> AsyncIterator[Listener]:
        """A listener until the block ends; ``FeedFull`` when this worker has enough of them, or
        ``owner`` has ``per_owner`` already (checked here, with no await before the listener is
        added: requests arriving together cannot all pass).

        The first listener's entry takes the baseline poll, so that whatever the listener loads
        after entering is older than the first change it will hear of."""
        if len(self._listeners) >= self.max_listeners:
            raise FeedFull(self.max_listeners)
        if per_owner is not None and self.listeners_of(owner) >= per_owner:
            raise FeedFull(self.max_listeners, owner=owner, per_owner=per_owner)
        listener = Listener(self._encode(Update(resync=True)), owner)
        self._listeners.add(listener)
        try:
            async with self._start:
                if self._task is None or self._task.done():
                    await self.baseline()
                    self._task = asyncio.create_task(self._run(), name="live-feed")
            yield listener
        finally:
            self._listeners.discard(listener)
            if not self._listeners and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    async def baseline(self) -> None:
        """Forget what was seen and take the first poll: changes after it are told, none before."""
        self._reset()
        self._episode_watch.since_ms = self._clock()
        await self._poll_quietly()

    async def poll_once(self) -> Update:
        """Read the store once and say what changed since the previous poll."""
        cabinets = self._cabinets.changed(await self._store.cabinets())
        commands = self._commands.changed(await self._store.commands(limit=RECENT_COMMANDS))
        registry = self._registry.changed(await self._store.registry(include_revoked=True))
        episodes: list[AlarmEpisode] = []
        if self._episode_watch.since_ms is not None:
            query = EpisodeQuery(
                updated_since_ms=self._episode_watch.query_since_ms, limit=MAX_EPISODE_WINDOW + 1
            )
            window = await self._store.episodes(query)
            if len(window) > MAX_EPISODE_WINDOW:  # more in the look-back than one read holds
                return Update(resync=True)
            episodes = self._episode_watch.changed(window)
        if (
            len(cabinets) > MAX_CABINET_CHANGES
            or len(registry) > MAX_CABINET_CHANGES
            or len(episodes) > MAX_EPISODE_CHANGES
        ):
            return Update(resync=True)
        return Update(tuple(cabinets), tuple(commands), tuple(episodes), tuple(registry))

    async def _poll_quietly(self) -> Update:
        try:
            return await self.poll_once()
        except StoreError as exc:  # the database is away: ingest and /health say so too
            logger.warning("live feed: the store did not answer: %s", exc)
            return Update()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            update = await self._poll_quietly()
            if update:
                frames = self._encode(update)
                for listener in list(self._listeners):
                    listener.offer(frames)
