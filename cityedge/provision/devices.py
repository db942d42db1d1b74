"""The devices column of the inventory: one device per word, as a URL.

    NAME=DRIVER://LOCATION[/PROFILE][?KEY=VALUE&KEY=VALUE...]

    lc1=modbus-tcp://10.0.0.5:502/lighting-single-circuit?unit=1
    cab1=modbus-rtu:///dev/ttyUSB0/lighting-cabinet-3phase?unit=7&baudrate=19200&parity=E
    tc1=opcua://192.168.10.30:4840/traffic-controller-generic?poll_interval_s=10
    cam1=onvif://192.168.10.40:80?username=cityedge&password_file=cam1.password

LOCATION is host:port (modbus-tcp, onvif; opcua becomes ``opc.tcp://host:port``) or the serial port's
path (modbus-rtu: everything before the last "/", which is the profile). Every query key is a key of
the driver's device table (``config/cabinets/example.toml`` shows them), its value a number when it
reads as one, ``true``/``false``, else text (percent-encoded where it must be). The driver's own
model checks the table when the whole config is validated.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote

from protocols import registry
from protocols.device import DEVICE_NAME_PATTERN

MAX_DEVICES = 256  # edge_agent.config.MAX_DEVICES
MAX_DEVICE_CHARS = 1000
_DEVICE = re.compile(r"(?P<name>[^=\s]+)=(?P<driver>[a-z0-9-]+)://(?P<rest>\S*)")
_NAME = re.compile(DEVICE_NAME_PATTERN)
_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
_HOST_PORT = re.compile(r"[^/?#\s]+:\d{1,5}")
# Keys the URL itself sets: given again in the query they would be ambiguous.
_FROM_URL = frozenset({"name", "driver", "address", "port", "endpoint", "profile"})
DRIVERS = tuple(sorted(registry.DRIVERS))


class DeviceSpecError(ValueError):
    """One device word cannot be read: ``device`` is the word (cut short), the message says why."""

    def __init__(self, device: str, problem: str) -> None:
        shown = device if len(device) <= 80 else device[:79] + "…"
        super().__init__(f"device {shown!r}: {problem}")
        self.device = shown


def parse_devices(cell: str) -> list[dict[str, Any]]:
    """The device tables of one inventory cell (words separated by spaces); [] for an empty cell."""
    words = cell.split()
    if len(words) > MAX_DEVICES:
        raise DeviceSpecError(cell, f"a cabinet has at most {MAX_DEVICES} devices, this cell {len(words)}")
    tables = [parse_device(word) for word in words]
    seen: set[str] = set()
    for table in tables:
        if table["name"] in seen:
            raise DeviceSpecError(table["name"], "two devices have this name: names are unique in a cabinet")
        seen.add(table["name"])
    return tables


def parse_device(word: str) -> dict[str, Any]:
    if len(word) > MAX_DEVICE_CHARS:
        raise DeviceSpecError(word, f"over {MAX_DEVICE_CHARS} characters")
    found = _DEVICE.fullmatch(word)
    if found is None:
        raise DeviceSpecError(
            word,
            "expected NAME=DRIVER://HOST:PORT/PROFILE, e.g. lc1=modbus-tcp://10.0.0.5:502/lighting-basic",
        )
    name, driver, rest = found["name"], found["driver"], found["rest"]
    if not _NAME.fullmatch(name):
        raise DeviceSpecError(word, f"the name {name!r} must be 1-64 letters, digits, '_', '-' or '.'")
    if driver not in DRIVERS:
        raise DeviceSpecError(word, f"unknown driver {driver!r}: expected one of {', '.join(DRIVERS)}")
    location, _, query = rest.partition("?")
    table: dict[str, Any] = {"name": name, "driver": driver}
    table.update(_location(word, driver, unquote(location)))
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if not _KEY.fullmatch(key) or key in _FROM_URL:
            raise DeviceSpecError(word, f"?{key}= is not a key a device table may take from the query")
        if key in table:
            raise DeviceSpecError(word, f"?{key}= is given twice")
        table[key] = _value(raw)
    return table


def _location(word: str, driver: str, location: str) -> dict[str, Any]:
    if driver == "modbus-rtu":
        port, _, profile = location.rpartition("/")
        if not port.startswith("/") or not profile:
            raise DeviceSpecError(
                word, "expected modbus-rtu:///dev/ttyUSB0/PROFILE (the serial port, then the profile)"
            )
        return {"port": port, "profile": profile}
    address, _, profile = location.partition("/")
    if not _HOST_PORT.fullmatch(address):
        raise DeviceSpecError(
            word, f"expected HOST:PORT after {driver}://, e.g. 10.0.0.5:502, got {address!r}"
        )
    if "/" in profile:
        raise DeviceSpecError(word, f"the profile {profile!r} is one name, without '/'")
    if driver == "onvif":
        if profile:
            raise DeviceSpecError(word, "an onvif camera takes no profile: onvif://HOST:PORT?username=...")
        return {"address": address}
    if not profile:
        raise DeviceSpecError(word, f"a {driver} device needs its profile: {driver}://{address}/PROFILE")
    if driver == "opcua":
        return {"endpoint": f"opc.tcp://{address}", "profile": profile}
    return {"address": address, "profile": profile}


def _value(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    if re.fullmatch(r"-?\d{1,18}", raw):
        return int(raw)
    if re.fullmatch(r"-?\d{1,18}\.\d{1,18}", raw):
        return float(raw)
    return raw
