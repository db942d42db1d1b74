"""What each device of a cabinet is doing: its class, its state, its active alarms, its latest values.

Built from the cabinet's inventory (its latest birth), its latest point values and its alarms. Pure.
The class comes from the driver: an operator filters "every traffic controller in flashing", not
"every OPC UA server". A device's state is, in order: ``lost`` (its device_lost alarm is active),
``alarm`` (another alarm of it is active), ``degraded`` (a latest value has a bad quality), ``ok``,
or ``unknown`` (no value yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from central.store.rows import AlarmRow, PointValue
from protocols.fleet import DeviceInfo
from protocols.fleet.events import DEVICE_LOST
from protocols.quality import Quality

EquipmentClass = Literal["lighting", "traffic_controller", "camera", "other"]
EquipmentState = Literal["lost", "alarm", "degraded", "ok", "unknown"]

EQUIPMENT_CLASS: dict[str, EquipmentClass] = {
    "modbus-tcp": "lighting",
    "modbus-rtu": "lighting",
    "opcua": "traffic_controller",
    "onvif": "camera",
}


@dataclass(frozen=True, slots=True)
class EquipmentView:
    device: str
    driver: str
    equipment_class: EquipmentClass
    profile: str | None
    state: EquipmentState
    alarms: list[AlarmRow] = field(default_factory=list)
    values: list[PointValue] = field(default_factory=list)  # its points, "point" without the device


def equipment_views(
    inventory: Sequence[DeviceInfo], values: Sequence[PointValue], alarms: Sequence[AlarmRow]
) -> list[EquipmentView]:
    by_device: dict[str, list[PointValue]] = {}
    for value in values:
        owner, sep, point = value.point.partition("/")
        if sep:
            by_device.setdefault(owner, []).append(
                PointValue(point, value.ts_ms, value.value, value.quality, value.reason)
            )
    active: dict[str, list[AlarmRow]] = {}
    for alarm in alarms:
        if alarm.active:
            active.setdefault(alarm.device, []).append(alarm)
    views = []
    for device in inventory:
        own = by_device.get(device.name, [])
        raised = active.get(device.name, [])
        views.append(
            EquipmentView(
                device=device.name,
                driver=device.driver,
                equipment_class=EQUIPMENT_CLASS.get(device.driver, "other"),
                profile=device.profile,
                state=_state(own, raised),
                alarms=raised,
                values=own,
            )
        )
    return views


def _state(values: Sequence[PointValue], alarms: Sequence[AlarmRow]) -> EquipmentState:
    if any(alarm.alarm == DEVICE_LOST for alarm in alarms):
        return "lost"
    if alarms:
        return "alarm"
    if not values:
        return "unknown"
    if any(value.quality == Quality.BAD for value in values):
        return "degraded"
    return "ok"
