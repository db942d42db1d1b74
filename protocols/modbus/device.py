"""The device configs of the Modbus drivers, and their builders (registered in ``protocols.registry``).

This module imports no pymodbus at load time: validating a cabinet config needs only the models; the
builders import the drivers when a configured device uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from protocols.device import BuildContext, BuildError, DeviceConfig, field_problem

if TYPE_CHECKING:
    from protocols.modbus.client import ModbusTcpDriver
    from protocols.modbus.rtu_driver import ModbusRtuDriver
    from protocols.modbus.serial_line import SerialLine

ProfileName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class ModbusTcpDevice(DeviceConfig, frozen=True, tag="modbus-tcp"):
    """One Modbus TCP unit: ``address = "host:port"``, read with ``profile``."""

    address: Annotated[str, msgspec.Meta(max_length=260)]
    profile: ProfileName
    unit: Annotated[int, msgspec.Meta(ge=0, le=247)] = 1

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise field_problem("address", f"expected host:port, e.g. 192.168.1.20:502, got {self.address!r}")

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def tcp_port(self) -> int:
        return int(self.address.rpartition(":")[2])


class ModbusRtuDevice(DeviceConfig, frozen=True, tag="modbus-rtu"):
    """One unit on a serial (RS-485) line: ``port = "/dev/ttyUSB0"``; devices on one port share it."""

    port: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    profile: ProfileName
    baudrate: Annotated[int, msgspec.Meta(ge=300, le=1_000_000)] = 19200
    parity: Literal["N", "E", "O"] = "E"  # the Modbus standard's default is 8E1
    stopbits: Literal[1, 2] = 1
    # Modbus over serial line v1.02, 2.2: 0 is broadcast (never answered), 248-255 are reserved.
    unit: Annotated[int, msgspec.Meta(ge=1, le=247)] = 1

    @property
    def line_settings(self) -> tuple[int, str, int]:
        return (self.baudrate, self.parity, self.stopbits)


def build_tcp(device: ModbusTcpDevice, context: BuildContext) -> ModbusTcpDriver:
    from protocols.modbus.client import ModbusTcpDriver
    from protocols.modbus.profile import find_profile

    _, profile = find_profile(device.profile, context.profile_dirs)
    return ModbusTcpDriver(
        device=device.name,
        host=device.host,
        port=device.tcp_port,
        unit=device.unit,
        profile=profile,
        timeout=device.timeout_s,
    )


def build_rtu(device: ModbusRtuDevice, context: BuildContext) -> ModbusRtuDriver:
    """Devices on one port share one ``SerialLine``: requests on an RS-485 line are serialised, and
    the line keeps a dead unit from stalling the others. One line has one setting."""
    from protocols.modbus.profile import find_profile
    from protocols.modbus.rtu_driver import ModbusRtuDriver
    from protocols.modbus.serial_line import SerialLine

    _, profile = find_profile(device.profile, context.profile_dirs)
    lines: dict[str, tuple[ModbusRtuDevice, SerialLine]] = context.shared.setdefault("modbus-rtu", {})
    first, line = lines.get(device.port, (device, None))
    if first.line_settings != device.line_settings:
        raise BuildError(
            "port",
            f"devices {first.name!r} and {device.name!r} share {device.port} with different "
            "baudrate/parity/stopbits: one serial line has one setting",
        )
    if line is None:
        line = SerialLine(
            port=device.port, baudrate=device.baudrate, parity=device.parity, stopbits=device.stopbits
        )
        lines[device.port] = (device, line)
    return ModbusRtuDriver(
        device=device.name, line=line, unit=device.unit, profile=profile, timeout=device.timeout_s
    )
