"""One problem of a fleet document as ``(field, problem)``: where it is (``dimming[0].start``) and what
was expected, from msgspec's validation errors, with the value that was given when it is short."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect

Problem = tuple[str, str]
Loc = tuple[str | int, ...]

_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_NAMED_FIELD = re.compile(r"^Object (?P<what>missing required|contains unknown) field `(?P<name>[^`]*)`$")
_SCALARS = (str, int, float, bool)
_BRIEF_CHARS = 60


def brief(value: object) -> str:
    """A value as shown in an error: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= _BRIEF_CHARS else text[: _BRIEF_CHARS - 3] + "..."


def path_of(loc: Loc) -> str:
    """``("dimming", 0, "start")`` as ``dimming[0].start``."""
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    return where


def loc_of(path: str) -> Loc:
    """``dimming[0].start`` as ``("dimming", 0, "start")``: for an HTTP error's ``loc``."""
    parts: list[str | int] = []
    for name, index in _PART.findall("." + path if path and path[0] != "[" else path):
        parts.append(int(index) if index else name)
    return tuple(parts)


def problem_of(exc: msgspec.ValidationError, field: str, value: object, kind: Any = None) -> Problem:
    """The problem msgspec found converting ``value`` (of type ``kind``), the content of ``field``."""
    text = str(exc)
    found = _AT.match(text)
    message, path = (found["message"], found["path"]) if found else (text, "")
    inner = loc_of(path)
    named = _NAMED_FIELD.match(message)
    if named:
        where = path_of((field, *inner, named["name"]))
        return where, "required" if named["what"] == "missing required" else "unknown key"
    given = value_at(value, inner)
    message = _readable(message, _literal_values(kind, inner))
    if isinstance(given, _SCALARS) and "got " not in message:
        message += f", got {brief(given)}"
    return path_of((field, *inner)), message


_KINDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a text",
    "bool": "true or false",
    "object": "an object",
    "array": "a list",
    "null": "null",
    "date": "a date (YYYY-MM-DD)",
    "datetime": "a date and time",
}
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Expected `(\w+)` >= (\S+)$"), "expected {kind} greater than or equal to {bound}"),
    (re.compile(r"^Expected `(\w+)` <= (\S+)$"), "expected {kind} less than or equal to {bound}"),
    (re.compile(r"^Expected `(\w+)` of length <= (\d+)$"), "expected {kind} of at most {bound} items"),
    (re.compile(r"^Expected `(\w+)`, got `\w+`$"), "expected {kind}"),
    (re.compile(r"^Expected `(\w+) \| (\w+)`, got `\w+`$"), "expected {kind} or {bound}"),
)
_SPECIAL = {
    "Expected `datetime` with a timezone component": "expected a date and time with timezone info"
    " (its UTC offset, e.g. 2026-03-29T01:00:00Z)",
    "Invalid RFC3339 encoded date": "expected a valid date (YYYY-MM-DD)",
    "Invalid RFC3339 encoded datetime": "expected a valid date and time (e.g. 2026-03-29T01:00:00Z)",
}


def _readable(message: str, literals: tuple[object, ...] | None) -> str:
    """msgspec's terse messages in the words of the project's other errors."""
    if message.startswith("Invalid enum value") and literals:
        return "expected " + " or ".join(repr(v) for v in literals)
    if message in _SPECIAL:
        return _SPECIAL[message]
    for pattern, template in _RULES:
        found = pattern.match(message)
        if found:
            kind, *rest = found.groups()
            bound = rest[0] if rest else ""
            if kind == "str" and "length" in message:
                return f"expected a text of at most {bound} characters"
            bound = bound.removesuffix(".0") if kind == "float" else bound
            return template.format(kind=_KINDS.get(kind, kind), bound=_KINDS.get(bound, bound))
    return message


def _literal_values(kind: Any, loc: Loc) -> tuple[object, ...] | None:
    """The values a Literal field allows, found by walking ``kind`` along ``loc``."""
    if kind is None:
        return None
    info = msgspec.inspect.type_info(kind)
    for part in loc:
        info = _without_none(info)
        if isinstance(info, msgspec.inspect.StructType) and isinstance(part, str):
            fields = {f.encode_name: f.type for f in info.fields}
            if part not in fields:
                return None
            info = fields[part]
        elif isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
            info = info.item_type
        else:
            return None
    info = _without_none(info)
    return tuple(info.values) if isinstance(info, msgspec.inspect.LiteralType) else None


def _without_none(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.UnionType):
        rest = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(rest) == 1:
            return rest[0]
    if isinstance(info, msgspec.inspect.Metadata):
        return _without_none(info.type)
    return info


def value_at(value: object, loc: Loc) -> object:
    """What ``value`` holds at ``loc``; None when nothing is there."""
    for part in loc:
        if isinstance(part, int) and isinstance(value, list | tuple) and part < len(value):
            value = value[part]
        elif isinstance(part, str) and isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value
