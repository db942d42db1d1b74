"""What the aggregator needs from a database, as small interfaces by use.

A component asks for the narrowest one it needs: ingest writes batches (``IngestStore``), the API reads
the fleet (``FleetReads``), command handling keeps commands and groups (``CommandStore``), the alarm
views read alarm state (``AlarmStore``), the alarm board its episodes (``EpisodeStore``),
authentication keeps tokens and the audit log (``AuthStore``),
long ranges are read from rollups (``RollupStore``), old raw readings deleted (``RetentionStore``),
provisioned cabinets kept (``RegistryStore``), the KPI report's figures per day cached
(``KpiDayStore``).
A backend implements them all: ``Store``. SQLite (``central.store.sqlite``) is the embedded default;
PostgreSQL (``central.store.postgres``) serves fleets that outgrow one machine. The contract test suite
(tests/contract) holds every backend to the same behaviour.

Every method is async, so a backend may run its I/O on a thread (SQLite) or on a network driver
(PostgreSQL) without the caller knowing. Methods raise ``StoreError`` when the database fails.

Idempotency is the store's job: a record is keyed by (cabinet, stream, seq), and writing it again is
counted as a duplicate, never stored twice. So is what a batch implies: a command result moves its
command's status, an alarm event its alarm's state, in the transaction that stores the batch. The rules
for those moves are plain Python shared by every backend (``central.store.rules``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self

from central.store.auth_rows import AuditEntry, AuditRow, TokenRow
from central.store.kpi_days import CounterEdge, KpiDayRow
from central.store.rows import (
    AlarmEpisode,
    AlarmRow,
    BatchOutcome,
    CabinetRow,
    CommandRow,
    EpisodeQuery,
    EpisodeTimes,
    EventRow,
    GroupCommandRow,
    GroupRow,
    NewNote,
    PointValue,
    Purged,
    QuarantineCounts,
    QuarantineEntry,
    QuarantineRow,
    ReadingRow,
    ReceivedBatch,
    ReceivedStatus,
    RegistryEntry,
    Resolution,
    Rollup,
    Totals,
)


class Lifecycle(Protocol):
    async def open(self) -> None:
        """Connect, and check that the schema is at this version (creating it where that is safe)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""


class IngestStore(Lifecycle, Protocol):
    async def write(
        self,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus] = (),
        quarantine: Sequence[QuarantineEntry] = (),
    ) -> list[BatchOutcome]:
        """Store everything in ONE transaction; one outcome per batch, in order.

        Only after this returns may the batches be acknowledged. A batch the database refuses (a
        value it cannot represent) is quarantined in the same transaction and reported
        ``unstorable``; the others are still stored.
        """
        ...


class FleetReads(Lifecycle, Protocol):
    async def cabinets(self) -> list[CabinetRow]: ...

    async def cabinet(self, cabinet: str) -> CabinetRow | None: ...

    async def latest_values(self, cabinet: str) -> list[PointValue]: ...

    async def has_point(self, cabinet: str, point: str) -> bool: ...

    async def points_ending_with(self, cabinet: str, suffix: str) -> list[str]:
        """Names of the cabinet's points that end with ``suffix`` (case-sensitive)."""
        ...

    async def readings(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, limit: int
    ) -> list[ReadingRow]:
        """Readings of a point with start_ms <= ts < end_ms, oldest first, at most ``limit``."""
        ...

    def reading_chunks(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, neighbours: bool = False
    ) -> AsyncIterator[Sequence[ReadingRow]]:
        """All readings of a point with start_ms <= ts < end_ms, oldest first, in bounded chunks.

        For computations over long periods: months of readings are never held in memory at once.
        ``neighbours`` adds the last good reading before the range and the first good one after it
        (what a computation over intervals needs to cover the edges).
        """
        ...

    async def events(
        self, *, cabinet: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[EventRow]:
        """Events newest first, optionally of one cabinet and with ts >= since_ms."""
        ...

    async def latest_events(self, cabinet: str, kind: str) -> list[EventRow]:
        """The newest event of ``kind`` from each source of ``cabinet`` in sequence order, newest first."""
        ...

    async def quarantine(self, *, limit: int = 100) -> list[QuarantineRow]:
        """Quarantined messages, newest first, without their payload."""
        ...

    async def quarantine_payload(self, entry_id: int) -> bytes | None: ...

    async def quarantine_counts(self) -> QuarantineCounts: ...

    async def totals(self) -> Totals: ...


class CommandStore(Lifecycle, Protocol):
    async def add_commands(
        self, commands: Sequence[CommandRow], parent: GroupCommandRow | None = None
    ) -> None:
        """Store new commands (and the group command they fan out of) in one transaction."""

    async def command(self, command_id: str) -> CommandRow | None: ...

    async def group_command(self, command_id: str) -> GroupCommandRow | None: ...

    async def child_commands(self, parent_id: str) -> list[CommandRow]: ...

    async def commands(
        self, *, cabinet: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[CommandRow]:
        """Commands to cabinets, newest first."""
        ...

    async def pending_commands(
        self, *, not_after_from_ms: int, cabinets: Sequence[str] | None = None
    ) -> list[CommandRow]:
        """Commands still pending whose not_after is not before ``not_after_from_ms``, oldest first."""
        ...

    async def expire_commands(self, *, before_ms: int, now_ms: int) -> int:
        """Mark pending commands with not_after < before_ms expired (by central); how many were."""
        ...

    async def put_group(self, group: GroupRow) -> bool:
        """Create or replace a group; True when it was created."""
        ...

    async def group(self, name: str) -> GroupRow | None: ...

    async def groups(self) -> list[GroupRow]: ...

    async def delete_group(self, name: str) -> bool:
        """False when there was no such group."""
        ...


class AlarmStore(Lifecycle, Protocol):
    async def alarms(
        self, *, cabinet: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[AlarmRow]:
        """The current state of each alarm, active ones first, then the most recently changed."""
        ...


class EpisodeStore(Lifecycle, Protocol):
    """Alarm episodes, kept at ingest from alarm events in the batch's transaction
    (``central.store.episodes`` pairs them), with the notes operators add."""

    async def episodes(self, query: EpisodeQuery) -> list[AlarmEpisode]:
        """Episodes that match ``query``, newest first (by id), without their notes."""
        ...

    async def episode(self, episode_id: int) -> AlarmEpisode | None:
        """One episode with its notes, oldest first."""
        ...

    async def add_note(self, episode_id: int, note: NewNote) -> AlarmEpisode | None:
        """Acknowledge, assign or comment, by ``central.store.episodes.after_note`` (which raises
        ``NoteRefused``), in one transaction; the episode with its notes, None when there is none."""
        ...


class AuthStore(Lifecycle, Protocol):
    async def add_token(self, token: TokenRow) -> bool:
        """Store a new token; False (nothing stored) when a live token already has its name."""
        ...

    async def token(self, key_id: str) -> TokenRow | None:
        """The token with this key id, live or revoked."""
        ...

    async def tokens(self) -> list[TokenRow]:
        """Every token, live and revoked, by name."""
        ...

    async def revoke_tokens(self, name: str, *, revoked_ms: int) -> int:
        """Revoke the live tokens of ``name``; how many were."""
        ...

    async def add_audit(self, entry: AuditEntry) -> None: ...

    async def audit(self, *, since_ms: int | None = None, limit: int = 100) -> list[AuditRow]:
        """Audit entries newest first, optionally with ts_ms >= since_ms."""
        ...


class RollupStore(Lifecycle, Protocol):
    """15-minute and daily rollups of each point (``central.store.rollups``), kept as data arrives.

    They are written in the transaction that stores the readings: a reading acknowledged is a reading
    counted, a duplicate is never counted twice, and a late reading updates the bucket it belongs to.
    They outlive the raw readings (``RetentionStore``).
    """

    async def rollups(
        self,
        cabinet: str,
        point: str,
        *,
        resolution: Resolution,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> list[Rollup]:
        """Buckets of a point that start in [start_ms, end_ms), oldest first, at most ``limit``."""
        ...

    async def rollup_neighbours(
        self, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int
    ) -> tuple[Rollup | None, Rollup | None]:
        """The nearest buckets before ``start_ms`` and from ``end_ms`` that hold a counted reading of
        an energy counter (what the energy across a period's edges needs); None where there is none."""
        ...


class RetentionStore(Lifecycle, Protocol):
    async def purge_readings(self, *, before_ms: int, limit: int) -> Purged:
        """Delete about ``limit`` raw readings stamped before ``before_ms`` (whole batches: one batch's
        readings more at most). A backend may keep those that share its unit of storage with
        ``before_ms`` (SQLite: the 15-minute bucket; PostgreSQL: the day's partition).

        Call it until it says ``done``: each call is one short transaction, so ingest goes on between
        them. Rollups, events and each point's latest reading are kept. Idempotent, and safe when two
        processes run it at once (both delete, neither fails).
        """
        ...


class RegistryStore(Lifecycle, Protocol):
    """The cabinets a city provisioned (``cityedge provision``): where each stands, its broker account.

    An entry is checked against ``central.store.registry_rules`` (bounds of every field) before it is
    written: one out of bounds raises ``RegistryEntryError`` and nothing is written.
    """

    async def put_registry(self, entry: RegistryEntry) -> bool:
        """Insert or replace the cabinet's entry, keeping an existing row's ``created_ms``; True when
        something other than the times changed (the same entry twice: False, and updated_ms kept).

        Atomically, an existing row keeps its ``broker_hash`` when the entry's is None, and its
        ``revoked_ms`` always: a write never loses credentials issued meanwhile, nor undoes a
        revocation (a revoked cabinet stays revoked)."""
        ...

    async def set_broker_hash(
        self, cabinet: str, broker_hash: str, *, expected: str | None, updated_ms: int
    ) -> bool:
        """Set the cabinet's broker hash if it is registered, not revoked, and its hash is still
        ``expected`` (None: it had none); True when it was set. Two requests issuing credentials at
        once: one wins, the other learns it lost."""
        ...

    async def registry_entry(self, cabinet: str) -> RegistryEntry | None: ...

    async def registry(self, *, include_revoked: bool = False) -> list[RegistryEntry]:
        """Every entry, by cabinet id (byte order); revoked ones only when asked."""
        ...

    async def revoke_cabinet(self, cabinet: str, *, revoked_ms: int) -> bool:
        """Mark the cabinet revoked (its row is kept); True when it was registered and not revoked."""
        ...


class KpiDayStore(Lifecycle, Protocol):
    """The KPI report's figures of each cabinet and local day (``central.store.kpi_days``): the
    writer counts the changes of each (cabinet, UTC day) in the transaction of the readings."""

    async def kpi_days(
        self, tz: str, first: dt.date, last: dt.date, *, cabinets: Sequence[str] | None = None
    ) -> list[KpiDayRow]:
        """The rows of ``tz`` for the days first..last that are still current (no change counted on
        their UTC days since they were computed), of these cabinets (None: every cabinet)."""
        ...

    async def kpi_changes(self, cabinet: str, first_utc_day: int, last_utc_day: int) -> dict[int, int]:
        """The change count of each of the cabinet's UTC days in first..last that has one."""
        ...

    async def kpi_change_totals(self, first_utc_day: int, last_utc_day: int) -> dict[str, int]:
        """Each cabinet's sum of change counts over UTC days first..last (cabinets with none are
        absent): a cabinet's sum grows whenever a batch stores readings of it on those days late, in
        a quarter already settled (``central.store.kpi_days``)."""
        ...

    async def kpi_zones(self) -> list[str]:
        """The time zones the cache holds days of, sorted."""
        ...

    async def put_kpi_days(self, rows: Sequence[KpiDayRow]) -> None:
        """Insert or replace these rows (keyed by tz, date, cabinet)."""
        ...

    async def kpi_episodes(self, *, since_ms: int, until_ms: int, limit: int) -> list[EpisodeTimes]:
        """The times of the episodes raised in [since_ms, until_ms) and of those raised before
        ``since_ms`` still open, by id, at most ``limit``."""
        ...

    async def kpi_counter_edges(self, *, start_ms: int, end_ms: int) -> list[CounterEdge]:
        """Every energy counter point of every cabinet (by cabinet, then point), with its last counted
        reading before ``start_ms`` and its first from ``end_ms`` (from the 15-minute rollups)."""
        ...


class Store(
    IngestStore,
    FleetReads,
    CommandStore,
    AlarmStore,
    EpisodeStore,
    AuthStore,
    RollupStore,
    RetentionStore,
    RegistryStore,
    KpiDayStore,
    Protocol,
):
    """Everything a backend offers; ``async with store:`` opens and closes it."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
