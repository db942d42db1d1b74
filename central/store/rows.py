"""The rows the store speaks in: plain typed values, decoded (no JSON text for callers to decode).

Every backend returns these; the domain rules that move them (``central.store.rules``) are shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from protocols.fleet import DataBatch, DeviceInfo, Status
from protocols.fleet.messages import Scalar

# Args of a command and data of an event: fleet scalars by name (a schedule travels as JSON text).
ScalarArgs = Mapping[str, Scalar]


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
    inventory: tuple[DeviceInfo, ...]


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
    data: ScalarArgs


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


CommandStatus = Literal["pending", "delivered", "executed", "failed", "expired", "rejected"]
COMMAND_STATUSES: tuple[CommandStatus, ...] = get_args(CommandStatus)
FINAL_STATUSES: frozenset[str] = frozenset({"executed", "failed", "expired", "rejected"})
OPEN_STATUSES: frozenset[str] = frozenset({"pending", "delivered"})

# Who put a command in its final state: its cabinet (a CommandResult), or central (no answer before
# not_after). Central's word is a guess, so a later word from the cabinet replaces it.
FinishedBy = Literal["cabinet", "central"]


@dataclass(frozen=True, slots=True)
class CommandRow:
    """A command to one cabinet. ``args`` are the args exactly as sent (fleet scalars)."""

    id: str
    parent_id: str | None
    cabinet: str
    device: str | None
    action: str
    args: ScalarArgs
    not_after_ms: int
    issued_by: str
    created_ms: int
    status: CommandStatus = "pending"
    delivered_ms: int | None = None
    finished_ms: int | None = None
    reason: str | None = None
    finished_by: FinishedBy | None = None
    # Set (and ``args`` empty) when the stored args cannot be read back: such a command is never sent.
    args_unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class GroupCommandRow:
    """A command to a group: it is never sent itself; each member gets a child ``CommandRow``."""

    id: str
    group: str
    action: str
    args: ScalarArgs
    not_after_ms: int
    issued_by: str
    created_ms: int
    args_unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class GroupMember:
    cabinet: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class GroupRow:
    name: str
    members: tuple[GroupMember, ...]
    updated_ms: int


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """The current state of one (cabinet, device, alarm), from the newest event about it."""

    cabinet: str
    device: str
    alarm: str
    active: bool
    severity: str
    message: str
    raised_ms: int | None
    cleared_ms: int | None
    updated_ms: int


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """A provisioned cabinet: where it stands and what its lamps draw (``cityedge provision``).

    ``broker_hash`` is its broker password as Mosquitto's dynamic-security stores it (the JSON of
    ``cityedge.broker_accounts.password_hash``), never the password; no API answer carries it.
    """

    cabinet: str
    town: str
    label: str
    latitude: float | None
    longitude: float | None
    rated_power_w: float | None  # its lamps at full power: the KPI baseline without dimming
    baseline_kwh_per_day: float | None  # a configured historical baseline, when the city has one
    broker_hash: str | None
    created_ms: int
    updated_ms: int
    revoked_ms: int | None


class EpisodeTimes(NamedTuple):
    """What the KPI report reads of an alarm episode (``KpiDayStore.kpi_episodes``): its times."""

    id: int
    cabinet: str
    device: str
    alarm: str
    severity: str
    raised_ms: int
    acked_ms: int | None
    cleared_ms: int | None


EpisodeState = Literal["raised", "acknowledged", "cleared"]
NoteKind = Literal["acknowledge", "assign", "comment"]


@dataclass(frozen=True, slots=True)
class AlarmNote:
    id: int
    episode_id: int
    ts_ms: int
    author: str  # the caller's token name
    kind: NoteKind
    text: str


@dataclass(frozen=True, slots=True)
class AlarmEpisode:
    """One episode of one (cabinet, device, alarm): from the event raising it to the one clearing it.

    ``raised_ms`` and ``cleared_ms`` are the cabinet's stamps where believed (``central.record_time``),
    so an episode raised and cleared while central was down keeps its real times. ``updated_ms`` is
    central's time of its last change (a batch's receipt, a note): what a poller asks "since" of.
    How events pair into episodes: ``central.store.episodes``.
    """

    id: int
    cabinet: str
    device: str
    alarm: str
    severity: str
    message: str
    raised_ms: int
    cleared_ms: int | None
    acked_ms: int | None
    acked_by: str | None
    assigned_to: str | None
    assigned_ms: int | None
    updated_ms: int
    notes: tuple[AlarmNote, ...] = ()

    @property
    def state(self) -> EpisodeState:
        if self.cleared_ms is not None:
            return "cleared"
        return "acknowledged" if self.acked_ms is not None else "raised"


EpisodeFilter = Literal["raised", "acknowledged", "cleared", "open"]  # open: raised or acknowledged
EPISODE_FILTERS: tuple[EpisodeFilter, ...] = get_args(EpisodeFilter)
NOTE_KINDS: tuple[NoteKind, ...] = get_args(NoteKind)
MAX_EPISODES_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class EpisodeQuery:
    """Which episodes to list, newest first (by id): each field set narrows, None means any.

    ``targets`` keeps only those (cabinet, device) pairs, ``not_targets`` leaves those out (a device
    class is a set of pairs: ``central.alarm_episodes``). ``raised_since_ms`` <= raised_ms <
    ``raised_until_ms``; ``updated_since_ms`` <= updated_ms (what changed since a poll). Keyset
    paging: ``after_id`` continues below that id.
    """

    cabinets: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    targets: tuple[tuple[str, str], ...] | None = None
    not_targets: tuple[tuple[str, str], ...] = ()
    severities: tuple[str, ...] | None = None
    states: tuple[EpisodeFilter, ...] | None = None
    raised_since_ms: int | None = None
    raised_until_ms: int | None = None
    updated_since_ms: int | None = None
    after_id: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class NewNote:
    """An operator's note to record: ``text`` is the comment, or for ``assign`` the assignee."""

    kind: NoteKind
    author: str
    ts_ms: int
    text: str = ""


# -- rollups -----------------------------------------------------------------------------------------

# Bucket widths: 15 minutes and one UTC day. Rollups are kept for the contract's life.
Resolution = Literal["15m", "1d"]
RESOLUTIONS: tuple[Resolution, ...] = get_args(Resolution)


@dataclass(frozen=True, slots=True)
class Rollup:
    """What one bucket of one point's readings adds up to (``central.store.rollups`` does the maths).

    ``count`` counts every reading, whatever its quality; ``good`` the good numeric ones (a bool is 0
    or 1), the only ones ``min``, ``max`` and ``sum`` (so ``mean``) are over. ``last_*`` is the newest
    reading by time (ties: by stream, then seq), whatever its quality.

    For an energy counter (a point named ``…energy_wh``), ``counted`` readings count as the counter
    (``central.energy.counter_value``); ``energy_wh`` is what the intervals between consecutive such
    readings inside the bucket consumed (resets and glitches as ``central.energy`` says), covering
    ``energy_ms``. The interval from a bucket's last counted reading to the next bucket's first is
    nobody's: it is spread over both when the energy of a period is computed
    (``rollups.period_energy``). For other points those fields stay 0 / None.
    """

    bucket_ms: int
    count: int
    good: int
    min: float | None
    max: float | None
    sum: float
    last_ts_ms: int
    last_stream: int
    last_seq: int
    last_value: Scalar
    last_quality: int
    counted: int = 0
    first_wh_ts_ms: int | None = None
    first_wh: float | None = None
    last_wh_ts_ms: int | None = None
    last_wh: float | None = None
    energy_wh: float = 0.0
    energy_ms: int = 0
    resets: int = 0
    absurd: int = 0

    @property
    def mean(self) -> float | None:
        return self.sum / self.good if self.good else None


class Purged(NamedTuple):
    """What one call of ``purge_readings`` did; ``done``: nothing older is left (until more arrives)."""

    deleted: int
    done: bool
