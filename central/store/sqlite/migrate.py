"""Upgrading a SQLite file of an older schema version in place (``cityedge central migrate``).

    from central.store.sqlite.migrate import migrate
    before, after = migrate(Path("central.db"))     # (2, 5): done; (5, 5): nothing to do

From 4 to 5: the cabinet registry, alarm episodes and the KPI day cache (``_to_v5``), the episodes
paired from the alarm events already stored, as ingest pairs them (history from before the upgrade is
kept).

From 2 (a row per reading, keyed by (stream_pk, seq), indexed by (point_pk, ts)) or 3 (the same,
with rollups) to 4 and on, in ONE transaction (a failure leaves the file as it was):
- each stream's readings become blocks (one per 15-minute bucket and at most ``BLOCK_ROWS``);
- ``held`` gets the seq ranges of every record already stored (readings, events, results);
- ``latest_readings`` gets the values of the readings it named;
- the rollups are counted from the readings, point by point;
- the old readings table goes. The file does not shrink: ``VACUUM`` it afterwards if that matters.

Central must be stopped on the file meanwhile (the transaction holds the write lock; another central
would wait, then fail to open an older version anyway).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from central.store import rollups as ru
from central.store.sqlite.blocks import BLOCKS_SCHEMA, QUARTER_MS, insert_blocks
from central.store.sqlite.episodes import fill_episodes
from central.store.sqlite.kpi_days import KPI_DAYS_SCHEMA
from central.store.sqlite.rollups import insert_rollups
from central.store.sqlite.schema import (
    AUTH_SCHEMA,
    EPISODES_SCHEMA,
    REGISTRY_SCHEMA,
    ROLLUPS_SCHEMA,
    SCHEMA_VERSION,
    connect,
)
from protocols.fleet.messages import Scalar

BLOCK_ROWS = 1000
_CHUNK = 50_000

_OLD_LATEST = """
CREATE TABLE latest_readings (
    point_pk INTEGER PRIMARY KEY,
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    quality INTEGER NOT NULL,
    reason TEXT
);
"""

# Runs of consecutive seqs of each stream ("gaps and islands"): one held range each.
_HELD = """
INSERT INTO held (stream_pk, lo, hi)
SELECT stream_pk, min(seq), max(seq) FROM (
    SELECT stream_pk, seq, seq - row_number() OVER (PARTITION BY stream_pk ORDER BY seq) AS island
    FROM (
        SELECT stream_pk, seq FROM readings
        UNION SELECT stream_pk, seq FROM events
        UNION SELECT stream_pk, seq FROM command_results
    )
)
GROUP BY stream_pk, island
"""


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def migrate(path: Path, *, progress: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Upgrade ``path`` to this version's schema; (version before, version after).

    Raises sqlite3.DatabaseError naming the file's version when it is not one this code upgrades.
    """
    say = progress or (lambda _: None)
    conn = connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return version, version
        if version not in (2, 3, 4):
            raise sqlite3.DatabaseError(
                f"{path}: schema version {version}; this cityedge upgrades versions 2 to 4 to"
                f" {SCHEMA_VERSION} (a newer file needs a newer cityedge)"
            )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version < 4:
                _to_v4(conn, say)
            _to_v5(conn, say)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return version, SCHEMA_VERSION
    finally:
        conn.close()


def _to_v5(conn: sqlite3.Connection, say: Callable[[str], None]) -> None:
    say("registry and alarm episodes")
    for statement in (
        _statements(REGISTRY_SCHEMA) + _statements(EPISODES_SCHEMA) + _statements(KPI_DAYS_SCHEMA)
    ):
        conn.execute(statement)
    say("tokens: the installer role")  # a CHECK constraint changes only with its table
    had_tokens = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'api_tokens'").fetchone()
    if had_tokens:
        conn.execute("ALTER TABLE api_tokens RENAME TO api_tokens_v4")
        conn.execute("DROP INDEX IF EXISTS api_tokens_live_name")
    for statement in _statements(AUTH_SCHEMA):
        conn.execute(statement)
    if had_tokens:
        conn.execute(
            "INSERT INTO api_tokens (key_id, name, role, digest, created_ms, revoked_ms)"
            " SELECT key_id, name, role, digest, created_ms, revoked_ms FROM api_tokens_v4"
        )
        conn.execute("DROP TABLE api_tokens_v4")
    episodes = fill_episodes(conn.cursor(), now_ms=time.time_ns() // 1_000_000)
    say(f"alarm episodes: {episodes} from the events stored")


def _to_v4(conn: sqlite3.Connection, say: Callable[[str], None]) -> None:
    conn.execute("DROP TABLE IF EXISTS rollups")  # version 3's: counted again below, the same way
    for statement in _statements(BLOCKS_SCHEMA) + _statements(ROLLUPS_SCHEMA):
        conn.execute(statement)
    say("latest values")
    conn.execute("ALTER TABLE latest_readings RENAME TO latest_readings_v2")
    conn.execute(_OLD_LATEST)
    conn.execute(
        "INSERT INTO latest_readings SELECT l.point_pk, l.stream_pk, l.seq, r.ts, r.value, r.quality,"
        " r.reason FROM latest_readings_v2 AS l"
        " JOIN readings AS r ON (r.stream_pk, r.seq) = (l.stream_pk, l.seq)"
    )
    conn.execute("DROP TABLE latest_readings_v2")
    say("held seq ranges")
    conn.execute(_HELD)
    say("blocks")
    cur = conn.cursor()
    moved = 0
    for stream_pk, rows in _stream_rows(conn):
        for start in range(0, len(rows), BLOCK_ROWS):
            insert_blocks(cur, stream_pk, rows[start : start + BLOCK_ROWS])
        moved += len(rows)
    say(f"blocks: {moved} readings")
    say("rollups")
    points = [(int(pk), str(name)) for pk, name in conn.execute("SELECT id, name FROM points")]
    for pk, name in points:
        _roll_up_point(cur, pk, ru.is_counter(name))
    conn.execute("DROP TABLE readings")


def _stream_rows(
    conn: sqlite3.Connection,
) -> Iterator[tuple[int, list[tuple[int, int, int, Scalar, int, str | None]]]]:
    """Each stream's readings in seq order, in runs of one 15-minute bucket (bounded chunks)."""
    after = (-1, -1)
    current: tuple[int, int] | None = None
    run: list[tuple[int, int, int, Scalar, int, str | None]] = []
    while True:
        rows = conn.execute(
            "SELECT stream_pk, seq, point_pk, ts, value, quality, reason FROM readings"
            " WHERE (stream_pk, seq) > (?, ?) ORDER BY stream_pk, seq LIMIT ?",
            (*after, _CHUNK),
        ).fetchall()
        if not rows:
            break
        for stream_pk, seq, point_pk, ts, value, quality, reason in rows:
            key = (stream_pk, ts - ts % QUARTER_MS)
            if key != current or len(run) >= BLOCK_ROWS:
                if run and current is not None:
                    yield current[0], run
                current, run = key, []
            run.append((seq, point_pk, ts, value, quality, reason))
        after = (rows[-1][0], rows[-1][1])
    if run and current is not None:
        yield current[0], run


def _roll_up_point(cur: sqlite3.Cursor, pk: int, counter: bool) -> None:
    """The point's rollups from its readings in time order, a UTC day at a time (bounded memory)."""
    rows = cur.connection.execute(
        "SELECT ts, stream_pk, seq, value, quality FROM readings WHERE point_pk = ? ORDER BY ts", (pk,)
    )
    day: list[ru.Sample] = []
    current: int | None = None
    while chunk := rows.fetchmany(_CHUNK):
        for row in chunk:
            sample = ru.Sample(*row)
            bucket = ru.bucket_of(sample.ts, "1d")
            if bucket != current:
                _roll_up_day(cur, pk, counter, day)
                current, day = bucket, []
            day.append(sample)
    _roll_up_day(cur, pk, counter, day)


def _roll_up_day(cur: sqlite3.Cursor, pk: int, counter: bool, day: list[ru.Sample]) -> None:
    """The day's quarters (days are merged from them when read)."""
    if not day:
        return
    rollups = [
        ru.summarise(bucket, part, counter=counter) for bucket, part in ru.by_bucket(day, "15m").items()
    ]
    insert_rollups(cur, "15m", pk, rollups)
