"""Event kinds and the shape of their data: what an agent says happened, as central reads it.

An ``Event``'s ``data`` is a flat map of scalars (``messages.ScalarMap``); each kind below gives it a
typed shape. ``event_data`` writes one (the agent), ``read_event_data`` reads one back (central): an
event whose data does not have its kind's shape raises ``EventDataError`` naming the field, so a reader
can show what is wrong with it instead of failing. Kinds not listed here carry free-form data.

    kind                   severity         data
    agent_started          info             boot_count, config_hash
    device_lost            alarm            reason                          source: the device
    device_back            info             -                               source: the device
    alarm_raised           per alarm        alarm, device, and readings of the moment (e.g. power_w)
    alarm_cleared          info             alarm, device, ...
    lighting_state         info             on, level_pct, reason, next_change_ms, devices ("lc1,lc2"),
                                            override_until_ms (optional)    source: the output
    schedule_active        info             schedule (JSON text; "" when none, null when too large
                                            for an event), hash, source ("config" | "command")
    lighting_released      info             devices
    lighting_write_failed  alarm            reason
    lighting_left_changed  warning          devices, points, reason
    settings_unreadable    alarm            -
    command_refused        warning          reason (a FleetError's reason word)
    evicted                warning          seq_ranges ("1-5,9"), count, first_ts, last_ts, stream
    record_refused         warning          -   (the agent's own record that the protocol refused:
                                                 its message says which and why)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from protocols.fleet.errors import FleetError
from protocols.fleet.limits import MAX_MESSAGE_CHARS, MAX_NAME_CHARS, MAX_SHORT_TEXT_CHARS
from protocols.fleet.messages import Count, Name, Scalar, ShortText, TimestampMs
from protocols.fleet.problems import problem_of

AGENT_STARTED: Final = "agent_started"
DEVICE_LOST: Final = "device_lost"
DEVICE_BACK: Final = "device_back"
ALARM_RAISED: Final = "alarm_raised"
ALARM_CLEARED: Final = "alarm_cleared"
LIGHTING_STATE: Final = "lighting_state"
SCHEDULE_ACTIVE: Final = "schedule_active"
LIGHTING_RELEASED: Final = "lighting_released"
LIGHTING_WRITE_FAILED: Final = "lighting_write_failed"
LIGHTING_LEFT_CHANGED: Final = "lighting_left_changed"
SETTINGS_UNREADABLE: Final = "settings_unreadable"
COMMAND_REFUSED: Final = "command_refused"
EVICTED: Final = "evicted"
RECORD_REFUSED: Final = "record_refused"

EVENT_KINDS: Final = (
    AGENT_STARTED,
    DEVICE_LOST,
    DEVICE_BACK,
    ALARM_RAISED,
    ALARM_CLEARED,
    LIGHTING_STATE,
    SCHEDULE_ACTIVE,
    LIGHTING_RELEASED,
    LIGHTING_WRITE_FAILED,
    LIGHTING_LEFT_CHANGED,
    SETTINGS_UNREADABLE,
    COMMAND_REFUSED,
    EVICTED,
    RECORD_REFUSED,
)

# Kinds that raise (True) or clear (False) an alarm. device_lost/device_back are the alarm
# "device_lost" of their source; alarm_raised/alarm_cleared name theirs in their data.
ALARM_KINDS: Final[Mapping[str, bool]] = {
    ALARM_RAISED: True,
    ALARM_CLEARED: False,
    DEVICE_LOST: True,
    DEVICE_BACK: False,
}

# An event's data travels in a record of at most MAX_RECORD_BYTES: a schedule longer than this goes
# by its hash only (``ScheduleActive.schedule`` is None).
MAX_SCHEDULE_IN_EVENT_CHARS = 6000
# The free texts of event data, within one record.
MAX_REASON_CHARS = 200
MAX_POINTS_CHARS = 1000

_Devices = Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)]
_Schedule = Annotated[str, msgspec.Meta(max_length=MAX_SCHEDULE_IN_EVENT_CHARS)]


class EventDataError(FleetError):
    """An event's data does not have the shape of its kind; ``field`` and ``problem`` say how."""

    reason = "bad_event_data"

    def __init__(self, kind: str, field: str, problem: str) -> None:
        super().__init__(f"{kind} data: {field}: {problem}")
        self.kind = kind
        self.field = field
        self.problem = problem


class _Data(msgspec.Struct, frozen=True):
    """Unknown keys are kept out, not refused: a newer agent may say more than this side reads."""


class AgentStarted(_Data, frozen=True):
    boot_count: Count
    config_hash: ShortText


class DeviceLost(_Data, frozen=True):
    reason: ShortText = ""


class AlarmChanged(_Data, frozen=True):
    """alarm_raised / alarm_cleared; an agent that left out ``alarm`` or ``device`` still gets its
    alarm shown (under the event's source and "unspecified"), so both may be absent."""

    alarm: Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)] = ""
    device: Annotated[str, msgspec.Meta(max_length=MAX_NAME_CHARS)] = ""


class LightingStateData(_Data, frozen=True):
    on: bool
    level_pct: Annotated[int, msgspec.Meta(ge=0, le=100)]
    reason: Annotated[str, msgspec.Meta(max_length=MAX_SHORT_TEXT_CHARS)] = ""
    next_change_ms: TimestampMs | None = None
    devices: _Devices = ""
    override_until_ms: TimestampMs | None = None

    @property
    def device_list(self) -> list[str]:
        return [name.strip() for name in self.devices.split(",") if name.strip()]


class ScheduleActive(_Data, frozen=True):
    schedule: _Schedule | None
    hash: ShortText = ""
    source: Literal["config", "command"] | None = None


class LightingLeftChanged(_Data, frozen=True):
    devices: _Devices
    points: Annotated[str, msgspec.Meta(max_length=MAX_POINTS_CHARS)] = ""
    reason: ShortText = ""


class Evicted(_Data, frozen=True):
    seq_ranges: Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_CHARS)]
    count: Count
    first_ts: TimestampMs | None = None
    last_ts: TimestampMs | None = None
    stream: Name | None = None


_D = TypeVar("_D", bound=_Data)

DATA_OF: Final[Mapping[str, type[_Data]]] = {
    AGENT_STARTED: AgentStarted,
    DEVICE_LOST: DeviceLost,
    ALARM_RAISED: AlarmChanged,
    ALARM_CLEARED: AlarmChanged,
    LIGHTING_STATE: LightingStateData,
    SCHEDULE_ACTIVE: ScheduleActive,
    LIGHTING_LEFT_CHANGED: LightingLeftChanged,
    EVICTED: Evicted,
}


def event_data(data: _Data) -> dict[str, Scalar]:
    """The data map of an event, without the fields left unset (None)."""
    return {name: value for name in data.__struct_fields__ if (value := getattr(data, name)) is not None}


def read_event_data(kind: str, data: Mapping[str, object], shape: type[_D]) -> _D:
    """``data`` (of an event of ``kind``) read as ``shape``; EventDataError naming the field if it is not."""
    try:
        return msgspec.convert(dict(data), shape)
    except msgspec.ValidationError as exc:
        field, problem = problem_of(exc, "", dict(data), shape)
        raise EventDataError(kind, field or "data", problem) from exc
