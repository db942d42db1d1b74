"""A fleet scalar as four typed columns (vf float, vi integer, vb boolean, vs text) and back.

Exactly one column holds a value, or none (a reading without a value): a value comes back with the
type it was sent with (1, 1.0 and True stay distinct), without JSON to parse.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocols.fleet.messages import Scalar

VALUE_COLUMNS = "vf, vi, vb, vs"

# One list per column; a column no value uses is an empty list: unnest() pads it with NULLs.
Columns = tuple[list[float | None], list[int | None], list[bool | None], list[str | None]]


def split(values: Sequence[Scalar]) -> Columns:
    floats = [v if type(v) is float else None for v in values]
    ints = [v if type(v) is int else None for v in values]
    bools = [v if type(v) is bool else None for v in values]
    texts = [v if type(v) is str else None for v in values]
    return (
        floats if any(v is not None for v in floats) else [],
        ints if any(v is not None for v in ints) else [],
        bools if any(v is not None for v in bools) else [],
        texts if any(v is not None for v in texts) else [],
    )


def split_one(value: Scalar) -> tuple[float | None, int | None, bool | None, str | None]:
    return (
        value if type(value) is float else None,
        value if type(value) is int else None,
        value if type(value) is bool else None,
        value if type(value) is str else None,
    )


def join(vf: float | None, vi: int | None, vb: bool | None, vs: str | None) -> Scalar:
    if vf is not None:
        return vf
    if vi is not None:
        return vi
    if vb is not None:
        return vb
    return vs


def pg_text(text: str) -> str:
    """``text`` as PostgreSQL can hold it: a NUL (valid in a Python or SQLite string, refused in a
    PostgreSQL text) becomes U+FFFD. For what central writes about a message (the quarantine's topic
    and detail, the audit log), never for a cabinet's data: a batch holding one is quarantined whole."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
