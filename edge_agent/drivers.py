"""Build the field driver of each configured device. The only place that knows driver names.

Devices on the same serial port share one ``SerialLine``: requests on an RS-485 line are serialised,
and the line keeps a dead unit from stalling the others.
"""

from __future__ import annotations

from edge_agent.config import DeviceSection
from protocols.driver import FieldDriver
from protocols.modbus.client import ModbusTcpDriver
from protocols.modbus.profile import Profile
from protocols.modbus.rtu_driver import ModbusRtuDriver
from protocols.modbus.serial_line import SerialLine


class DriverBuilder:
    def __init__(self) -> None:
        self.lines: dict[str, SerialLine] = {}

    def __call__(self, device: DeviceSection, profile: Profile) -> FieldDriver:
        match device.driver:
            case "modbus-tcp":
                return ModbusTcpDriver(
                    device=device.name,
                    host=device.host,
                    port=device.tcp_port,
                    unit=device.unit,
                    profile=profile,
                    timeout=device.timeout_s,
                )
            case "modbus-rtu":
                assert device.port is not None  # checked by the config
                line = self.lines.get(device.port)
                if line is None:
                    line = self.lines[device.port] = SerialLine(
                        port=device.port,
                        baudrate=device.baudrate,
                        parity=device.parity,
                        stopbits=device.stopbits,
                    )
                return ModbusRtuDriver(
                    device=device.name, line=line, unit=device.unit, profile=profile, timeout=device.timeout_s
                )
