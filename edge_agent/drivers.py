"""Build the field driver of each configured device. The only place that knows driver names."""

from __future__ import annotations

from edge_agent.config import DeviceSection
from protocols.driver import FieldDriver
from protocols.modbus.client import ModbusTcpDriver
from protocols.modbus.profile import Profile


def build_driver(device: DeviceSection, profile: Profile) -> FieldDriver:
    match device.driver:
        case "modbus-tcp":
            return ModbusTcpDriver(
                device=device.name,
                host=device.host,
                port=device.port,
                unit=device.unit,
                profile=profile,
                timeout=device.timeout_s,
            )
