"""The cabinet's ``[[devices]]``: each table validated by the model its ``driver`` key names
(``protocols.registry``), its first problem said as ``devices[1].poll_interval_s: <expected> (got ...)``.

msgspec's errors say what was expected and where (``- at `$.alarms.raise_after```); the value given
is read back from the table, and shown only when it is a scalar of a key that holds no secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from protocols import registry
from protocols.device import DeviceConfig

# (where, problem): where is the dotted key inside the device (``alarms.raise_after``), "" for the table.
Problem = tuple[str, str]

_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")
_EXPECTED = {
    "`float`": "a number",
    "`int`": "an integer",
    "`str`": "a string",
    "`bool`": "true or false",
    "`object`": "a table",
    "`array`": "an array",
}
_FIELD_PROBLEM = re.compile(r"^(?P<field>[a-z_][a-z0-9_.]*): (?P<problem>.+)$", re.DOTALL)


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
        return _describe(str(exc), table, is_secret)


def _describe(message: str, table: Mapping[str, Any], is_secret: Callable[[str], bool]) -> Problem:
    path = ""
    if (at := _AT.match(message)) is not None:
        message, path = at["message"], _dotted(at["path"])
    if (missing := _MISSING.match(message)) is not None:
        return _join(path, missing["field"]), "missing, this key is required"
    if (unknown := _UNKNOWN.match(message)) is not None:
        return _join(path, unknown["field"]), "unknown key (check its spelling and section)"
    if not path and (own := _FIELD_PROBLEM.match(message)) is not None:
        return own["field"], own["problem"]  # a model's own check (``protocols.device.field_problem``)
    shown = _value_at(table, path)
    if message.startswith("Invalid enum value") or not path or is_secret(path):
        return path, _expected(message)
    if isinstance(shown, dict | list | type(None)):
        return path, _expected(message)
    return path, f"{_expected(message.partition(', got ')[0])} (got {shown!r})"


def _expected(message: str) -> str:
    text = message.removeprefix("Expected ")
    for name, words in _EXPECTED.items():
        text = text.replace(name, words)
    text = text.replace("`", "")
    return "expected " + text if message.startswith("Expected ") else text[0].lower() + text[1:]


def _dotted(path: str) -> str:
    return path.removeprefix(".")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _value_at(table: Mapping[str, Any], path: str) -> Any:
    node: Any = table
    for part in re.findall(r"[^.\[\]]+", path):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def duplicate_name(devices: Sequence[DeviceConfig]) -> tuple[int, str] | None:
    """``(index, problem)`` for the first device whose name another already has."""
    seen: dict[str, int] = {}
    for index, device in enumerate(devices):
        if device.name in seen:
            return index, f"device name {device.name!r} is used twice (devices[{seen[device.name]}] has it)"
        seen[device.name] = index
    return None
