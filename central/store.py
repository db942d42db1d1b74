"""What the aggregator needs from a database: the ``Store`` interface and the rows it speaks in.

SQLite implements it (``central.sqlite_store``); PostgreSQL will, for fleets that outgrow one machine.
Every method is async so that a store may run its I/O on a thread (SQLite) or a network driver
(PostgreSQL) without the caller knowing. Methods raise ``StoreError`` when the database fails.

Idempotency is the store's job: a record is keyed by (cabinet, stream, seq), and writing it again is
counted as a duplicate, never stored twice. So is what a batch implies: a command result moves its
command's status, an alarm event its alarm's state, in the transaction that stores the batch.

Commands, groups and alarms speak in the rows of ``central.store_rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from central.auth_rows import AuditEntry, AuditRow, TokenRow
from central.store_rows import AlarmRow, CommandRow, GroupCommandRow, GroupRow
from protocols.fleet import DataBatch, Status
from protocols.fleet.messages import Scalar

_T = TypeVar("_T")

# A quarantined payload keeps at most this many bytes (the size column says how large it was).
QUARANTINE_PAYLOAD_BYTES = 64 * 1024
# The quarantine keeps the newest rows; older ones are deleted and counted.
QUARANTINE_MAX_ROWS = 10_000


class ReceivedBatch(NamedTuple):
    """A validated batch with what came with it; the raw payload is kept in case it cannot be stored."""

    batch: DataBatch
    received_ms: int
    topic: str
    payload: bytes


class ReceivedStatus(NamedTuple):
    status: Status
    received_ms: int
    topic: str = ""
    payload: bytes = b""


class QuarantineEntry(NamedTuple):
    """A refused message, kept for inspection. ``reason`` is a short word (``FleetError.reason``)."""

    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: bytes


class BatchOutcome(NamedTuple):
    """What writing one batch did. ``unstorable`` says why a batch was quarantined instead."""

    cabinet: str
    stream: str
    first: int
    last: int
    readings_new: int
    events_new: int
    results_new: int
    duplicates: int
    unstorable: str | None = None

    @property
    def new(self) -> int:
        return self.readings_new + self.events_new + self.results_new


@dataclass(frozen=True, slots=True)
class CabinetRow:
    id: str
    online: bool
    last_seen_ms: int | None
    status_ts_ms: int | None
    version: str
    config_hash: str
    stream: str | None
    boot_count: int
    backlog: int
    inventory_json: str


@dataclass(frozen=True, slots=True)
class PointValue:
    """The latest reading of one point."""

    point: str
    ts_ms: int
    value: Scalar
    quality: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReadingRow:
    ts_ms: int
    value: Scalar
    quality: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    cabinet: str
    stream: str
    seq: int
    ts_ms: int
    source: str
    kind: str
    severity: str
    message: str
    data_json: str


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    size: int


@dataclass(frozen=True, slots=True)
class QuarantineCounts:
    """Rows kept per reason, and how many old rows were deleted to respect the cap."""

    by_reason: Mapping[str, int]
    evicted: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Records stored since the database was created (kept as counters, not counted on demand)."""

    cabinets: int
    readings: int
    events: int
    results: int
    quarantined: int


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""

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

    async def cabinets(self) -> list[CabinetRow]: ...

    async def cabinet(self, cabinet: str) -> CabinetRow | None: ...

    async def latest_values(self, cabinet: str) -> list[PointValue]: ...

    async def has_point(self, cabinet: str, point: str) -> bool: ...

    async def readings(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, limit: int
    ) -> list[ReadingRow]:
        """Readings of a point with start_ms <= ts < end_ms, oldest first, at most ``limit``."""
        ...

    async def events(
        self, *, cabinet: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[EventRow]:
        """Events newest first, optionally of one cabinet and with ts >= since_ms."""
        ...

    async def quarantine(self, *, limit: int = 100) -> list[QuarantineRow]:
        """Quarantined messages, newest first, without their payload."""
        ...

    async def quarantine_payload(self, entry_id: int) -> bytes | None: ...

    async def quarantine_counts(self) -> QuarantineCounts: ...

    async def totals(self) -> Totals: ...

    # -- commands and groups ------------------------------------------------------------------

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

    # -- views --------------------------------------------------------------------------------

    async def latest_events(self, cabinet: str, kind: str) -> list[EventRow]:
        """The newest event of ``kind`` from each source of ``cabinet``, newest first."""
        ...

    async def alarms(
        self, *, cabinet: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[AlarmRow]:
        """The current state of each alarm, active ones first, then the most recently changed."""
        ...

    async def points_ending_with(self, cabinet: str, suffix: str) -> list[str]:
        """Names of the cabinet's points that end with ``suffix`` (case-sensitive)."""
        ...

    async def fold_readings(
        self,
        cabinet: str,
        point: str,
        *,
        start_ms: int,
        end_ms: int,
        fold: Callable[[Iterator[ReadingRow]], _T],
        neighbours: bool = False,
    ) -> _T:
        """Run ``fold`` over the readings with start_ms <= ts < end_ms, oldest first, streamed.

        ``fold`` runs on the store's thread, so months of readings are never held in memory; it
        must not touch the event loop. ``neighbours`` adds the last good reading before the range
        and the first good one after it.
        """
        ...

    # -- API tokens and audit -----------------------------------------------------------------

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
