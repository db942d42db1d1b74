"""Readings as PostgreSQL binary COPY data (``writer_sql.COPY_READINGS``'s columns), a batch at a time.

psycopg's formatter takes one row per call, a tuple made for it: about a microsecond of this process
per reading, as much as the rest of the write. A group of usual batches (every value a float, no
reason: ``floats_only``) is copied into ``FLOAT_COLUMNS`` only (the others are NULL: 60 bytes a row,
not 76), rows of one fixed layout: made from a template, each column's bytes filled in by a strided
slice assignment, in C, whatever the number of rows. Any other group is packed row by row, all ten
columns (``writer_sql.COPY_READINGS``').

The data is what psycopg's binary formatter sends (tests/integration/test_postgres_copy_rows.py reads
it back through PostgreSQL): the signature once (``SIGNATURE``), the rows, ``TRAILER``. An integer
out of its column's range raises OverflowError before anything is sent, as psycopg's does.
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import cast

from protocols.fleet import Reading
from protocols.fleet.messages import Scalar

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # flags and header extension: none
TRAILER = struct.pack(">h", -1)
FIELDS = 10  # stream_pk, seq, point_pk, ts, quality, reason, vf, vi, vb, vs
FLOAT_COLUMNS = "stream_pk, seq, point_pk, ts, quality, vf"

_NULL = struct.pack(">i", -1)
# A row of FLOAT_COLUMNS, its variable parts zero: (field count, then per field its length and value).
_FLOAT_ROW = struct.Struct(">h ii iq ii iq ih id")
_FLOAT_ROW_SIZE = _FLOAT_ROW.size
# Offsets of the values in that row.
_SEQ, _POINT, _TS, _QUALITY, _VF = 14, 26, 34, 46, 52
_value_of = operator.attrgetter("value")
_reason_of = operator.attrgetter("reason")
_BIG_ENDIAN = sys.byteorder == "big"
assert array("i").itemsize == 4 and array("q").itemsize == 8 and array("h").itemsize == 2

_INT4 = struct.Struct(">ii")
_INT8 = struct.Struct(">iq")
_INT2 = struct.Struct(">ih")
_FLOAT8 = struct.Struct(">id")
_COUNT = struct.pack(">h", FIELDS)
_TRUE, _FALSE = struct.pack(">ib", 1, 1), struct.pack(">ib", 1, 0)


def floats_only(readings: Sequence[Reading]) -> bool:
    """Every value a float and no reason: rows of ``FLOAT_COLUMNS``."""
    return not readings or (
        set(map(type, map(_value_of, readings))) == {float} and set(map(_reason_of, readings)) == {None}
    )


def encode(readings: Sequence[Reading], stream_pk: int, points: dict[str, int], *, floats: bool) -> bytes:
    """The COPY rows of ``readings`` of the stream ``stream_pk`` (``points``: point name -> id): of
    ``FLOAT_COLUMNS`` when ``floats`` (the caller checked ``floats_only``), else of all ten."""
    if not readings:
        return b""
    if floats:
        return _float_rows(readings, stream_pk, points)
    try:
        return b"".join(_row(r, stream_pk, points[r.point]) for r in readings)
    except struct.error as exc:  # an integer past its column's range
        raise OverflowError(f"a number too large for its column: {exc}") from None


def _float_rows(readings: Sequence[Reading], stream_pk: int, points: dict[str, int]) -> bytes:
    n = len(readings)
    template = _FLOAT_ROW.pack(6, 4, stream_pk, 8, 0, 4, 0, 8, 0, 2, 0, 8, 0.0)
    out = bytearray(template * n)
    get = points.__getitem__
    _fill(out, _SEQ, array("q", [r.seq for r in readings]))
    _fill(out, _POINT, array("i", [get(r.point) for r in readings]))
    _fill(out, _TS, array("q", [r.ts for r in readings]))
    _fill(out, _QUALITY, array("h", [r.quality for r in readings]))
    _fill(out, _VF, array("d", cast("list[float]", [r.value for r in readings])))  # floats: checked
    return bytes(out)


def _fill(out: bytearray, offset: int, column: array[int] | array[float]) -> None:
    """Write ``column``'s values, big-endian, at ``offset`` of every row of ``out``."""
    if not _BIG_ENDIAN:
        column.byteswap()
    data = column.tobytes()
    size = column.itemsize
    for k in range(size):
        out[offset + k :: _FLOAT_ROW_SIZE] = data[k::size]


def _row(r: Reading, stream_pk: int, point_pk: int) -> bytes:
    return b"".join(
        (
            _COUNT,
            _INT4.pack(4, stream_pk),
            _INT8.pack(8, r.seq),
            _INT4.pack(4, point_pk),
            _INT8.pack(8, r.ts),
            _INT2.pack(2, r.quality),
            _NULL if r.reason is None else _text(r.reason),
            *_value(r.value),
        )
    )


def _value(value: Scalar) -> tuple[bytes, bytes, bytes, bytes]:
    """The four value columns (vf, vi, vb, vs, as ``values.split_one``): one holds it, or none."""
    if value is None:
        return _NULL, _NULL, _NULL, _NULL
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return _NULL, _NULL, _TRUE if value else _FALSE, _NULL
    if isinstance(value, int):
        return _NULL, _INT8.pack(8, value), _NULL, _NULL
    if isinstance(value, float):
        return _FLOAT8.pack(8, value), _NULL, _NULL, _NULL
    return _NULL, _NULL, _NULL, _text(value)


def _text(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">i", len(data)) + data
