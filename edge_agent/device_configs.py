"""The cabinet's ``[[devices]]``: each table validated by the model its ``driver`` key names
(``protocols.registry``), its first problem said as ``devices[1].poll_interval_s: <expected> (got ...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from edge_agent.config_errors import Problem, describe_error
from protocols import registry
from protocols.device import DeviceConfig


def parse_device(table: Mapping[str, Any], is_secret: Callable[[str], bool]) -> DeviceConfig | Problem:
    """The device's typed config, or its first problem."""
    driver = table.get("driver")
    known = ", ".join(sorted(registry.DRIVERS))
    if driver is None:
        return "driver", f"missing, this key is required: one of {known}"
    if not isinstance(driver, str) or driver not in registry.DRIVERS:
        return "driver", f"unknown driver {driver!r}: expected one of {known}"
    model = registry.config_model(driver)
    try:
        return msgspec.convert(table, model, strict=True)
    except msgspec.ValidationError as exc:
        return describe_error(str(exc), table, is_secret, model)


def duplicate_name(devices: Sequence[DeviceConfig]) -> tuple[int, str] | None:
    """``(index, problem)`` for the first device whose name another already has."""
    seen: dict[str, int] = {}
    for index, device in enumerate(devices):
        if device.name in seen:
            return index, f"device name {device.name!r} is used twice (devices[{seen[device.name]}] has it)"
        seen[device.name] = index
    return None
