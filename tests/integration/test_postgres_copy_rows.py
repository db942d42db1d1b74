"""The writer's own binary COPY encoding (central.store.postgres.copy_rows): the bytes psycopg's
formatter makes for the same rows, and what PostgreSQL reads back from them.

Each test gets a database of its own on the server of tests/contract/backends.py (skipped, saying
why, when there is none), dropped at the end.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import psycopg
import pytest
from psycopg.copy import Copy, FileWriter

from central.store.postgres import copy_rows
from central.store.postgres import writer_sql as q
from central.store.postgres.values import split_one
from protocols.fleet import Reading
from protocols.quality import Quality
from tests.contract.backends import PgServer

pytestmark = pytest.mark.integration

_COLUMNS = "stream_pk, seq, point_pk, ts, quality, reason, vf, vi, vb, vs"
_TYPES = ["int4", "int8", "int4", "int8", "int2", "text", "float8", "int8", "bool", "text"]
_FLOAT_TYPES = ["int4", "int8", "int4", "int8", "int2", "float8"]
POINTS = {"lc1/power_w": 7, "lc1/on": 2**31 - 1, "lc1/label": 1}
STREAM_PK = 42

FLOATS = [
    Reading(seq=1, point="lc1/power_w", ts=1_714_557_600_001, value=12.5, quality=Quality.GOOD),
    Reading(seq=2, point="lc1/on", ts=-5, value=-0.0, quality=Quality.BAD),
    Reading(seq=2**63 - 1, point="lc1/label", ts=2**63 - 1, value=1.797e308, quality=Quality.BAD),
    Reading(seq=-(2**63), point="lc1/power_w", ts=-(2**63), value=-5e-324, quality=Quality.GOOD),
]
MIXED = [
    *FLOATS[:2],
    Reading(seq=10, point="lc1/on", ts=10, value=True, quality=Quality.GOOD),
    Reading(seq=11, point="lc1/on", ts=11, value=False, quality=Quality.GOOD),
    Reading(seq=12, point="lc1/power_w", ts=12, value=-(2**63), quality=Quality.GOOD),
    Reading(seq=13, point="lc1/power_w", ts=13, value=2**63 - 1, quality=Quality.GOOD),
    Reading(seq=14, point="lc1/label", ts=14, value="façade ☀ 日本", quality=Quality.GOOD),
    Reading(seq=15, point="lc1/label", ts=15, value="", quality=Quality.GOOD),
    Reading(seq=16, point="lc1/label", ts=16, value=None, quality=Quality.UNCERTAIN, reason="timeout"),
    Reading(seq=17, point="lc1/power_w", ts=17, value=3.25, quality=Quality.GOOD, reason="é"),
]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    server = PgServer()
    if server.unavailable is not None:
        pytest.skip(server.unavailable)
    name = server.create_database("cityedge_copytest")
    try:
        yield server.dsn_of(name)
    finally:
        server.drop_database(name)


def _rows(readings: Sequence[Reading]) -> list[tuple[object, ...]]:
    return [
        (STREAM_PK, r.seq, POINTS[r.point], r.ts, int(r.quality), r.reason, *split_one(r.value))
        for r in readings
    ]


def _float_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """A row of FLOAT_COLUMNS (no reason, vi, vb, vs)."""
    return (*row[:5], row[6])


def psycopg_bytes(dsn: str, readings: Sequence[Reading], *, floats: bool) -> bytes:
    """What psycopg's binary formatter makes of the same rows (written to a file, not sent)."""
    out = io.BytesIO()
    with (
        psycopg.connect(dsn) as conn,
        conn.cursor() as cur,
        Copy(cur, binary=True, writer=FileWriter(out)) as copy,
    ):
        copy.set_types(_FLOAT_TYPES if floats else _TYPES)
        for row in _rows(readings):
            copy.write_row(_float_row(row) if floats else row)
    return out.getvalue()


def read_back(dsn: str, data: bytes, *, floats: bool) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE r (stream_pk int4, seq int8, point_pk int4, ts int8, quality int2,"
            " reason text, vf float8, vi int8, vb bool, vs text)"
        )
        columns = copy_rows.FLOAT_COLUMNS if floats else _COLUMNS
        with cur.copy(f"COPY r ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        cur.execute(f"SELECT {_COLUMNS} FROM r ORDER BY seq")
        return cur.fetchall()


@pytest.mark.parametrize(
    ("readings", "floats"),
    [(FLOATS, True), (FLOATS, False), (MIXED, False)],
    ids=["floats", "floats as any", "mixed"],
)
def test_the_rows_are_psycopg_s_and_postgresql_reads_them_back(
    dsn: str, readings: list[Reading], floats: bool
) -> None:
    assert copy_rows.floats_only(readings) == (readings is FLOATS)
    rows = copy_rows.encode(readings, STREAM_PK, POINTS, floats=floats)
    data = copy_rows.SIGNATURE + rows + copy_rows.TRAILER
    assert data == psycopg_bytes(dsn, readings, floats=floats)
    expected = sorted(_rows(readings), key=lambda row: int(str(row[1])))
    assert read_back(dsn, data, floats=floats) == expected
    assert q.COPY_READINGS.startswith(f"COPY readings ({_COLUMNS})")
    assert q.COPY_FLOAT_READINGS.startswith(f"COPY readings ({copy_rows.FLOAT_COLUMNS})")


def test_batches_encoded_apart_make_one_copy(dsn: str) -> None:
    data = b"".join(
        [
            copy_rows.SIGNATURE,
            copy_rows.encode(FLOATS[:2], STREAM_PK, POINTS, floats=False),
            copy_rows.encode([], STREAM_PK, POINTS, floats=False),
            copy_rows.encode(MIXED[2:], STREAM_PK, POINTS, floats=False),
            copy_rows.TRAILER,
        ]
    )
    assert len(read_back(dsn, data, floats=False)) == 2 + len(MIXED) - 2


def test_a_reason_or_a_value_of_another_type_is_no_float_row() -> None:
    base = FLOATS[0]
    assert copy_rows.floats_only([base]) and copy_rows.floats_only([])
    for other in (
        Reading(seq=1, point=base.point, ts=1, value=1.0, quality=Quality.BAD, reason=""),
        Reading(seq=1, point=base.point, ts=1, value=1, quality=Quality.GOOD),
        Reading(seq=1, point=base.point, ts=1, value=None, quality=Quality.GOOD),
    ):
        assert not copy_rows.floats_only([base, other])


@pytest.mark.parametrize(
    ("seq", "value"), [(2**63, 1.0), (1, 2**63)], ids=["seq past int8, floats", "value past int8"]
)
def test_an_integer_past_its_column_is_refused_before_sending(seq: int, value: float | int) -> None:
    reading = Reading(seq=seq, point="lc1/power_w", ts=1, value=value, quality=Quality.GOOD)
    with pytest.raises(OverflowError):
        copy_rows.encode([reading], STREAM_PK, POINTS, floats=copy_rows.floats_only([reading]))
