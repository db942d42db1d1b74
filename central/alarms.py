"""Which events raise or clear an alarm, and which alarm they are about. Pure.

An alarm is keyed by (cabinet, device, alarm). It is active when its newest event raised it:

    alarm_raised / alarm_cleared    data["alarm"] names it (e.g. "lamp_failure"), data["device"] the device
    device_lost / device_back       the alarm "device_lost" of the event's source device

An agent that leaves out data["device"] or data["alarm"] still gets its alarm shown, under the event's
source and "unspecified", rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.fleet import Event
from protocols.fleet.events import ALARM_KINDS, DEVICE_BACK, DEVICE_LOST

UNSPECIFIED = "unspecified"
ALARM_EVENT_KINDS = frozenset(ALARM_KINDS)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    device: str
    alarm: str
    active: bool


def alarm_change(event: Event) -> AlarmChange | None:
    """What ``event`` does to an alarm, or None when it is not about alarms."""
    raises = ALARM_KINDS.get(event.kind)
    if raises is None:
        return None
    if event.kind in (DEVICE_LOST, DEVICE_BACK):
        return AlarmChange(device=event.source, alarm=DEVICE_LOST, active=raises)
    device = event.data.get("device")
    alarm = event.data.get("alarm")
    return AlarmChange(
        device=device if isinstance(device, str) and device else event.source,
        alarm=alarm if isinstance(alarm, str) and alarm else UNSPECIFIED,
        active=raises,
    )
