"""The SQLite schema of the aggregator and how its connections are opened.

Records are keyed by (stream_pk, seq): the edge's sequence number within one stream of one cabinet.
Events and command results are rows keyed so (``INSERT OR IGNORE`` makes them idempotent); readings
are stored as blocks, one per batch and 15-minute bucket, and ``held`` says which seqs of a stream
central holds (``central.store.sqlite.blocks``): what a disk pays per reading is what sets the
limit at a few thousand cabinets (bench/central_wear.py).

Versions: 2 (readings one row each), 3 (rollups), 4 (blocks, held, latest_readings with their
values), 5 (the cabinet registry, alarm episodes and their notes; the installer and monitor roles of
tokens; the KPI report's day cache).
``central.store.sqlite.migrate`` upgrades a file in place (``cityedge central migrate``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from central.store.sqlite.blocks import BLOCKS_SCHEMA
from central.store.sqlite.kpi_days import KPI_DAYS_SCHEMA

SCHEMA_VERSION = 5
MIGRATE_COMMAND = "cityedge central migrate"
BUSY_TIMEOUT_S = 5.0
WAL_AUTOCHECKPOINT_PAGES = 10_000
WRITER_CACHE_KIB = 64 * 1024

COUNTERS = ("readings", "events", "results", "quarantined", "quarantine_evicted")

# A row per reading, as versions 2 and 3 kept them (``migrate`` reads that table): bench/ingest.py
# inserts into it as the raw reference of this machine's SQLite insert rate.
READINGS_TABLE = """
CREATE TABLE IF NOT EXISTS readings (
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    point_pk INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    quality INTEGER NOT NULL,
    reason TEXT,
    PRIMARY KEY (stream_pk, seq)
) {options};
CREATE INDEX IF NOT EXISTS readings_point_ts ON readings (point_pk, ts);
"""
INSERT_READING = "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)"

# Commands live in central (created by the API); their status moves with the CommandResults that
# arrive in data batches, in the transaction that stores the batch.
COMMANDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    cabinet TEXT NOT NULL,
    device TEXT,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    issued_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'delivered', 'executed', 'failed', 'expired', 'rejected')
    ),
    delivered_ms INTEGER,
    finished_ms INTEGER,
    reason TEXT,
    finished_by TEXT CHECK (finished_by IN ('cabinet', 'central'))
);
-- Every worker looks for pending commands every few seconds: with this index that costs the number
-- of pending commands, not the size of the history.
CREATE INDEX IF NOT EXISTS commands_status ON commands (status, not_after);
CREATE INDEX IF NOT EXISTS commands_cabinet_created ON commands (cabinet, created_ms);
CREATE INDEX IF NOT EXISTS commands_created ON commands (created_ms);
CREATE INDEX IF NOT EXISTS commands_parent ON commands (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS group_commands (
    id TEXT PRIMARY KEY,
    group_name TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    not_after INTEGER NOT NULL,
    issued_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    members TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
-- The current state of each (cabinet, device, alarm), kept up to date from alarm events at ingest so
-- that "which alarms are active" never scans the event history. updated_* orders events: the newest
-- one wins whatever order batches arrive in.
CREATE TABLE IF NOT EXISTS alarms (
    cabinet TEXT NOT NULL,
    device TEXT NOT NULL,
    alarm TEXT NOT NULL,
    active INTEGER NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_ms INTEGER,
    cleared_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    updated_stream INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL,
    PRIMARY KEY (cabinet, device, alarm)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (active, updated_ms);
"""

# API tokens and the audit log of state-changing requests (central.auth, central.api_audit). A token
# keeps only its digest; its key id (public) finds it. One live token per name.
AUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin', 'installer', 'monitor')),
    digest TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_live_name ON api_tokens (name) WHERE revoked_ms IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    who TEXT,
    role TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    summary TEXT NOT NULL,
    client TEXT,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ms);
"""

# Order by sequence, not by time (``central.record_time``). ``latest_readings`` holds each point's
# newest reading in (stream, seq) order that was not stamped ahead: one upsert per point per batch,
# read with one probe per point. ``time_suspect`` lists the records stamped ahead of their receive
# time: written only for them, so it costs nothing while clocks are right.
RECORD_TIME_SCHEMA = """
CREATE TABLE IF NOT EXISTS time_suspect (
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (stream_pk, seq)
) WITHOUT ROWID;
-- The reading itself, not a reference to it: raw readings go after the retention period, a point's
-- current value stays.
CREATE TABLE IF NOT EXISTS latest_readings (
    point_pk INTEGER PRIMARY KEY,
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    quality INTEGER NOT NULL,
    reason TEXT
);
-- The newest event of one kind from each source of a cabinet, in sequence order (the lighting view:
-- one lighting_state per output) costs one probe of this index per source, whatever the length of the
-- history. It replaces the index by time of the same events.
CREATE INDEX IF NOT EXISTS events_cabinet_kind_source_seq ON events (cabinet, kind, source, stream_pk, seq);
DROP INDEX IF EXISTS events_cabinet_kind_source_ts;
"""

# 15-minute and daily rollups of every point (central.store.sqlite.rollups), kept for the contract's
# life. Keyed by (res, bucket, point_pk): a batch's points of one bucket sit side by side.
ROLLUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollups (
    res INTEGER NOT NULL,  -- bucket width in ms
    bucket INTEGER NOT NULL,
    point_pk INTEGER NOT NULL,
    count INTEGER NOT NULL,
    good INTEGER NOT NULL,
    min REAL,
    max REAL,
    sum REAL NOT NULL,
    last_ts INTEGER NOT NULL,
    last_stream INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_value,
    last_quality INTEGER NOT NULL,
    counted INTEGER NOT NULL,
    first_wh_ts INTEGER,
    first_wh REAL,
    last_wh_ts INTEGER,
    last_wh REAL,
    energy_wh REAL NOT NULL,
    energy_ms INTEGER NOT NULL,
    resets INTEGER NOT NULL,
    absurd INTEGER NOT NULL,
    PRIMARY KEY (res, bucket, point_pk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_point ON rollups (point_pk, res, bucket);
"""

# The cabinets a city has provisioned (``cityedge provision``): where each stands, what its lamps draw
# at full power (the energy baseline), and its broker account as Mosquitto hashes it (PBKDF2-SHA512:
# never the password). A revoked cabinet keeps its row, with revoked_ms set, so its history keeps its
# town. A cabinet that sends data without being registered is still stored (it has no town).
REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry (
    cabinet TEXT PRIMARY KEY,
    town TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    latitude REAL,
    longitude REAL,
    rated_power_w REAL,
    baseline_kwh_per_day REAL,
    broker_hash TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    revoked_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS registry_town ON registry (town);
"""

# Every alarm episode is its own row: raised by one event, cleared by the next clearing event of the
# same (cabinet, device, alarm) in (stream, seq) order, so a door opened twice is two episodes
# (central.store.episodes). alarm_marks holds every alarm event of each key in that order: what lets a
# late batch pair with what came before it. Operators' acknowledgements, assignments and comments
# are notes of an episode.
EPISODES_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm_marks (
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    cabinet TEXT NOT NULL,
    device TEXT NOT NULL,
    alarm TEXT NOT NULL,
    raises INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (stream_pk, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alarm_marks_key ON alarm_marks (cabinet, device, alarm, stream_pk, seq, raises);
CREATE TABLE IF NOT EXISTS alarm_episodes (
    id INTEGER PRIMARY KEY,
    cabinet TEXT NOT NULL,
    device TEXT NOT NULL,
    alarm TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    stream_pk INTEGER NOT NULL,
    raised_seq INTEGER NOT NULL,
    raised_ms INTEGER NOT NULL,
    cleared_stream INTEGER,
    cleared_seq INTEGER,
    cleared_ms INTEGER,
    acked_ms INTEGER,
    acked_by TEXT,
    assigned_to TEXT,
    assigned_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    UNIQUE (stream_pk, raised_seq)
);
CREATE INDEX IF NOT EXISTS alarm_episodes_key
    ON alarm_episodes (cabinet, device, alarm, stream_pk, raised_seq);
CREATE INDEX IF NOT EXISTS alarm_episodes_raised ON alarm_episodes (raised_ms);
CREATE INDEX IF NOT EXISTS alarm_episodes_updated ON alarm_episodes (updated_ms);
CREATE INDEX IF NOT EXISTS alarm_episodes_open ON alarm_episodes (id) WHERE cleared_seq IS NULL;
CREATE TABLE IF NOT EXISTS alarm_notes (
    id INTEGER PRIMARY KEY,
    episode_id INTEGER NOT NULL REFERENCES alarm_episodes (id),
    ts_ms INTEGER NOT NULL,
    author TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('acknowledge', 'assign', 'comment')),
    text TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alarm_notes_episode ON alarm_notes (episode_id, id);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS cabinets (
    id TEXT PRIMARY KEY,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen_ms INTEGER,
    status_ts_ms INTEGER,
    version TEXT NOT NULL DEFAULT '',
    config_hash TEXT NOT NULL DEFAULT '',
    stream TEXT,
    boot_count INTEGER NOT NULL DEFAULT 0,
    backlog INTEGER NOT NULL DEFAULT 0,
    inventory TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    cabinet TEXT NOT NULL,
    stream TEXT NOT NULL,
    UNIQUE (cabinet, stream)
);
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,
    cabinet TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (cabinet, name)
);
"""
    + BLOCKS_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS events (
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    cabinet TEXT NOT NULL,
    ts INTEGER NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (stream_pk, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_cabinet_ts ON events (cabinet, ts);
CREATE TABLE IF NOT EXISTS command_results (
    stream_pk INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    cabinet TEXT NOT NULL,
    ts INTEGER NOT NULL,
    command_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (stream_pk, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS command_results_id ON command_results (cabinet, command_id);
"""
    + COMMANDS_SCHEMA
    + RECORD_TIME_SCHEMA
    + """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_reason ON quarantine (reason);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""
    + AUTH_SCHEMA
    + ROLLUPS_SCHEMA
    + REGISTRY_SCHEMA
    + EPISODES_SCHEMA
    + KPI_DAYS_SCHEMA
)


def connect(
    path: Path, *, readonly: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE."""
    # check_same_thread=False: each connection is used by one thread at a time, but is closed from
    # the thread that shuts the store down.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Waits this long for another writer (another worker process) before "database is locked".
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


def create_schema(conn: sqlite3.Connection, *, durable: bool = False) -> None:
    # WAL: readers (the API) never block the writer, and a commit is one sequential append.
    # synchronous=NORMAL skips the fsync per commit: a crash of this process loses nothing
    # committed, but an OS crash or power cut can roll back the last commits, some of which may
    # already be acknowledged (and so deleted at the edge). durable=True (FULL) closes that window
    # at the cost of one fsync per group commit.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    # A page that many commits touch (a block index's tail, a cabinet's latest values) is written to
    # the WAL at each commit but to the file once per checkpoint: checkpoint every ~40 MB of WAL
    # instead of 4 MB (bench/central_wear.py: it cuts the bytes written per reading by a third).
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    check_version(conn)
    seed = "".join(f"INSERT OR IGNORE INTO counters VALUES ('{name}', 0);" for name in COUNTERS)
    # One script, one transaction: several workers starting at once on one file is safe.
    conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} {seed} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


def check_version(conn: sqlite3.Connection) -> None:
    """Refuse a database made by another version: an older one needs ``cityedge central migrate``.

    A new, empty file (version 0, no tables) is created at this version.
    """
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
    if version == 0 and tables == 0:
        return
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"the database is at schema version {version}, newer than this version of cityedge"
            f" ({SCHEMA_VERSION}): run the cityedge that wrote it, or a newer one"
        )
    raise sqlite3.DatabaseError(
        f"the database is at schema version {version}; this version of cityedge needs"
        f" {SCHEMA_VERSION}: stop every central on it and run `{MIGRATE_COMMAND}` (it upgrades the"
        " file in place)"
    )
