"""TOML text of what ``tomllib`` reads: tables, arrays of tables, strings, numbers, booleans, dates.

The standard library reads TOML but does not write it. ``dumps(document)`` is checked by
``tomllib.loads(dumps(document)) == document`` (tests/unit/test_provision_parts.py). Key order is
kept: scalars and arrays of a table first, then its sub-tables, then its arrays of tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(document: Mapping[str, Any]) -> str:
    lines: list[str] = []
    _table(lines, (), document)
    return "\n".join(lines).strip("\n") + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(lines: list[str], path: tuple[str, ...], table: Mapping[str, Any]) -> None:
    for key, value in table.items():
        if not isinstance(value, Mapping) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        if isinstance(value, Mapping):
            lines.extend(["", f"[{_dotted((*path, key))}]"])
            _table(lines, (*path, key), value)
    for key, value in table.items():
        if _is_table_array(value):
            for item in value:
                lines.extend(["", f"[[{_dotted((*path, key))}]]"])
                _table(lines, (*path, key), item)


def _dotted(path: Sequence[str]) -> str:
    return ".".join(_key(part) for part in path)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


_RAW_CONTROLS = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _string(text: str) -> str:
    # JSON's escapes (\" \\ \b \f \n \r \t \uXXXX) are all TOML's, and JSON escapes every control
    # character TOML refuses raw but DEL. The C1 controls (U+0080-U+009F) TOML allows raw, but a
    # terminal showing the file (or a dry run's diff) obeys them (U+009B starts an escape sequence);
    # bidirectional overrides would show a value as another.
    return _RAW_CONTROLS.sub(lambda m: f"\\u{ord(m[0]):04x}", json.dumps(text, ensure_ascii=False))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return (
            "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"TOML has no value of type {type(value).__name__}")
