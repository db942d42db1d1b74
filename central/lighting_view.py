"""What a cabinet's lighting is doing, read from the newest events its agent sent. Pure.

The events' data shapes are the fleet's (``protocols.fleet.events``):

    schedule_active   data: schedule (JSON text; "" when none, null when too large for an event),
                      hash, source ("config" | "command")
    lighting_state    data: on, level_pct, reason, next_change_ms, devices ("lc1,lc2"),
                      override_until_ms (optional); one event per output (its source) that changed,
                      and one for an output that a failed write left changed: then on/level_pct are
                      what it holds, and reason names its points ("left by a failed write: relay=on,
                      dim_level_pct=50"); a write that failed and was undone changes nothing, so no
                      event: the view still shows what the output holds

An event that does not have that shape is not an error of the API: the view says what is wrong with it
(``problem``) and shows what it can, so an operator sees that the agent sent something odd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from central.store.rows import EventRow
from protocols.fleet.events import (
    LIGHTING_STATE,
    SCHEDULE_ACTIVE,
    EventDataError,
    LightingStateData,
    ScheduleActive,
    read_event_data,
)

_object = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class ScheduleView:
    ts_ms: int
    hash: str
    source: str | None
    schedule: dict[str, Any] | None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class StateView:
    ts_ms: int
    source: str
    on: bool
    level_pct: int
    reason: str
    next_change_ms: int | None
    devices: list[str]
    override_until_ms: int | None


def schedule_view(event: EventRow) -> tuple[ScheduleView | None, str | None]:
    """(the view, None), or (what could be read, the problem) when the event is malformed."""
    try:
        data = read_event_data(SCHEDULE_ACTIVE, event.data, ScheduleActive)
    except (EventDataError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return None, f"the {SCHEDULE_ACTIVE} event at {event.ts_ms} is malformed: {exc}"
    view = ScheduleView(event.ts_ms, data.hash, data.source, None)
    if data.schedule is None:
        # The agent sends a schedule too large for one record by its hash only.
        return _with(view, "the schedule is too large to travel in an event: only its hash is known"), None
    if data.schedule == "":
        return _with(view, "the cabinet runs no schedule"), None
    try:
        return _with(view, None, _object.decode(data.schedule)), None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        problem = (
            f"the {SCHEDULE_ACTIVE} event at {event.ts_ms} has a schedule that is not a JSON object: {exc}"
        )
        return view, problem


def _with(view: ScheduleView, detail: str | None, schedule: dict[str, Any] | None = None) -> ScheduleView:
    return ScheduleView(view.ts_ms, view.hash, view.source, schedule, detail)


def state_view(event: EventRow) -> tuple[StateView | None, str | None]:
    try:
        data = read_event_data(LIGHTING_STATE, event.data, LightingStateData)
    except (EventDataError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        return None, f"the {LIGHTING_STATE} event at {event.ts_ms} is malformed: {exc}"
    view = StateView(
        ts_ms=event.ts_ms,
        source=event.source,
        on=data.on,
        level_pct=data.level_pct,
        reason=data.reason,
        next_change_ms=data.next_change_ms,
        devices=data.device_list,
        override_until_ms=data.override_until_ms,
    )
    return view, None
