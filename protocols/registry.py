"""The one place that maps driver names to their device-config model and their builder.

Entries are ``module:attribute`` paths, imported on first use: the config model's module imports no
protocol library (validating a config loads no asyncua or zeep), and the builder's module is imported
only when a configured device uses that driver. A new driver is its own package plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from protocols.device import Builder, DeviceConfig


@dataclass(frozen=True, slots=True)
class DriverEntry:
    config: str  # "package.module:Model", a DeviceConfig subclass tagged with the driver name
    builder: str  # "package.module:function", (device config, BuildContext) -> FieldDriver


DRIVERS: dict[str, DriverEntry] = {
    "modbus-tcp": DriverEntry("protocols.modbus.device:ModbusTcpDevice", "protocols.modbus.device:build_tcp"),
    "modbus-rtu": DriverEntry("protocols.modbus.device:ModbusRtuDevice", "protocols.modbus.device:build_rtu"),
    "opcua": DriverEntry("protocols.opcua.config:OpcuaDevice", "protocols.opcua.driver:build"),
    "onvif": DriverEntry("protocols.onvif.config:OnvifDevice", "protocols.onvif.driver:build"),
}


class UnknownDriver(LookupError):
    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(DRIVERS))
        super().__init__(f"unknown driver {name!r}: expected one of {known}")
        self.name = name


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def config_model(driver: str) -> type[DeviceConfig]:
    entry = DRIVERS.get(driver)
    if entry is None:
        raise UnknownDriver(driver)
    model = _load(entry.config)
    if not (isinstance(model, type) and issubclass(model, DeviceConfig)):
        raise TypeError(f"{entry.config} is not a DeviceConfig subclass")
    if model.__struct_config__.tag != driver:
        raise TypeError(f"{entry.config} is tagged {model.__struct_config__.tag!r}, registered as {driver!r}")
    return model


def builder(driver: str) -> Builder:
    entry = DRIVERS.get(driver)
    if entry is None:
        raise UnknownDriver(driver)
    build: Builder = _load(entry.builder)
    return build
