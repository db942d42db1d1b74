"""msgspec's validation errors in a technician's terms: ``devices[1].poll_interval_s: expected a number
(got 'often')``, ``broker.keepalive_s: expected an integer >= 5``.

msgspec says what was expected and where (``- at `$.alarms.raise_after```); the value given is read
back from the table, and shown only when it is a scalar of a key that holds no secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec.inspect

# (where, problem): where is the dotted key from the table's top (``alarms.raise_after``), "" for it.
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


def describe_error(
    message: str, table: Mapping[str, Any], is_secret: Callable[[str], bool], model: type | None = None
) -> Problem:
    """msgspec's message as ``(key, problem)``, the key dotted from ``table``'s top. ``model`` (what
    ``table`` was converted to) lets a wrong choice list the right ones."""
    path = ""
    if (at := _AT.match(message)) is not None:
        message, path = at["message"], _dotted(at["path"])
    if (missing := _MISSING.match(message)) is not None:
        return _join(path, missing["field"]), "missing, this key is required"
    if (unknown := _UNKNOWN.match(message)) is not None:
        return _join(path, unknown["field"]), "unknown key (check its spelling and section)"
    if (own := _FIELD_PROBLEM.match(message)) is not None:
        # A model's own check of one field (``protocols.device.field_problem``): it shows what it may.
        return _join(path, own["field"]), own["problem"]
    shown = _value_at(table, path)
    choices = _choices(model, path) if model is not None and message.startswith("Invalid enum") else None
    if choices is not None:
        got = "" if is_secret(path) else f" (got {shown!r})"
        return path, f"expected one of {', '.join(str(choice) for choice in choices)}{got}"
    if message.startswith("Invalid enum value") or not path or is_secret(path):
        return path, _expected(message)
    if isinstance(shown, dict | list | type(None)):
        return path, _expected(message)
    return path, f"{_expected(message.partition(', got ')[0])} (got {shown!r})"


def _choices(model: type, path: str) -> tuple[object, ...] | None:
    """The values a ``Literal`` field at ``path`` allows."""
    node: Any = msgspec.inspect.type_info(model)
    for part in path.split("."):
        if not isinstance(node, msgspec.inspect.StructType):
            return None
        node = next((field.type for field in node.fields if field.encode_name == part), None)
        if isinstance(node, msgspec.inspect.UnionType):  # X | None
            node = next((t for t in node.types if not isinstance(t, msgspec.inspect.NoneType)), None)
    return node.values if isinstance(node, msgspec.inspect.LiteralType) else None


def _expected(message: str) -> str:
    text = message.removeprefix("Expected ").replace(" | null`", "`")
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
