"""The PostgreSQL schema, as ordered migrations recorded in ``schema_migrations``.

Each migration is one SQL script with a version; ``migrate`` applies the missing ones in order, in one
transaction, under an advisory lock (two hosts running ``cityedge central migrate`` at once: the
second waits, then finds nothing to do). ``central serve`` only checks the version (``schema_version``)
and refuses a database that is behind: the operator runs the migration, on purpose, once.

Layout, and why it differs from SQLite's:
- ``readings`` is partitioned by day on ``ts`` (``central.store.postgres.partitions``): retention
  drops a whole day, and a range read touches only its days. A unique key on a partitioned table must
  hold the partition key, so it is (stream_pk, seq, ts); exactly-once by (stream, seq) is kept by
  ``held`` (seq ranges of each stream, ``central.store.postgres.held``), whatever a re-sent record's
  stamp.
- A value is one of four typed columns (float, integer, boolean, text; the others NULL, which costs a
  bit in the row's null bitmap): no JSON to parse, and a value keeps its Python type.
- ``latest_readings`` holds each point's latest value itself, so reading the latest values never
  probes the partitions.
- Text sorts by code point (``COLLATE "C"``), as SQLite's does, whatever the database's locale.
- ``latest_readings`` and ``rollups`` are rewritten by every batch of their point: pages left part
  empty (fillfactor) let an update stay on its page without touching the indexes (a HOT update).
- ``counters`` has one row per shard: concurrent workers add to different rows instead of queueing on
  one row lock until their commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from central.alarms import UNSPECIFIED
from central.record_time import AHEAD_BOUND_MS
from central.store.postgres.kpi_days import KPI_DAYS_SCHEMA
from protocols.fleet.events import ALARM_KINDS, DEVICE_BACK, DEVICE_LOST
from protocols.release import PROTOCOL_EPOCH_MS

# Taken by ``migrate`` (transaction-scoped): one migration at a time, across hosts.
MIGRATION_LOCK = 0x63697479_6D696772  # "citymigr"
COUNTER_SHARDS = 16
COUNTERS = ("readings", "events", "results", "quarantined", "quarantine_evicted")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_V1 = """
CREATE TABLE cabinets (
    id text COLLATE "C" PRIMARY KEY,
    online boolean NOT NULL DEFAULT false,
    last_seen_ms bigint,
    status_ts_ms bigint,
    version text COLLATE "C" NOT NULL DEFAULT '',
    config_hash text COLLATE "C" NOT NULL DEFAULT '',
    stream text COLLATE "C",
    boot_count bigint NOT NULL DEFAULT 0,
    backlog bigint NOT NULL DEFAULT 0,
    inventory text COLLATE "C" NOT NULL DEFAULT '[]'
);
CREATE TABLE streams (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cabinet text COLLATE "C" NOT NULL,
    stream text COLLATE "C" NOT NULL,
    UNIQUE (cabinet, stream)
);
CREATE TABLE points (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cabinet text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    UNIQUE (cabinet, name)
);
CREATE TABLE readings (
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    point_pk integer NOT NULL,
    ts bigint NOT NULL,
    vf double precision,
    vi bigint,
    vb boolean,
    vs text COLLATE "C",
    quality smallint NOT NULL,
    reason text COLLATE "C",
    UNIQUE (stream_pk, seq, ts)
) PARTITION BY RANGE (ts);
CREATE INDEX readings_point_ts ON readings (point_pk, ts);
-- Stamps outside the window of day partitions (a board at 1970 or 2099): one table, not thousands.
CREATE TABLE readings_default PARTITION OF readings DEFAULT;
CREATE TABLE latest_readings (
    point_pk integer PRIMARY KEY,
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    ts bigint NOT NULL,
    vf double precision,
    vi bigint,
    vb boolean,
    vs text COLLATE "C",
    quality smallint NOT NULL,
    reason text COLLATE "C"
) WITH (fillfactor = 50);
CREATE TABLE events (
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    cabinet text COLLATE "C" NOT NULL,
    ts bigint NOT NULL,
    source text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    severity text COLLATE "C" NOT NULL,
    message text COLLATE "C" NOT NULL,
    data text COLLATE "C" NOT NULL,
    PRIMARY KEY (stream_pk, seq)
);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX events_cabinet_ts ON events (cabinet, ts);
CREATE INDEX events_cabinet_kind_source_seq ON events (cabinet, kind, source, stream_pk, seq);
CREATE TABLE command_results (
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    cabinet text COLLATE "C" NOT NULL,
    ts bigint NOT NULL,
    command_id text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    reason text COLLATE "C",
    PRIMARY KEY (stream_pk, seq)
);
CREATE INDEX command_results_id ON command_results (cabinet, command_id);
CREATE TABLE time_suspect (
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    ts bigint NOT NULL,
    received_ms bigint NOT NULL,
    PRIMARY KEY (stream_pk, seq)
);
CREATE TABLE commands (
    id text COLLATE "C" PRIMARY KEY,
    parent_id text COLLATE "C",
    cabinet text COLLATE "C" NOT NULL,
    device text COLLATE "C",
    action text COLLATE "C" NOT NULL,
    args text COLLATE "C" NOT NULL,
    not_after bigint NOT NULL,
    issued_by text COLLATE "C" NOT NULL,
    created_ms bigint NOT NULL,
    status text COLLATE "C" NOT NULL CHECK (
        status IN ('pending', 'delivered', 'executed', 'failed', 'expired', 'rejected')
    ),
    delivered_ms bigint,
    finished_ms bigint,
    reason text COLLATE "C",
    finished_by text COLLATE "C" CHECK (finished_by IN ('cabinet', 'central'))
);
CREATE INDEX commands_status ON commands (status, not_after);
CREATE INDEX commands_cabinet_created ON commands (cabinet, created_ms);
CREATE INDEX commands_created ON commands (created_ms);
CREATE INDEX commands_parent ON commands (parent_id) WHERE parent_id IS NOT NULL;
CREATE TABLE group_commands (
    id text COLLATE "C" PRIMARY KEY,
    group_name text COLLATE "C" NOT NULL,
    action text COLLATE "C" NOT NULL,
    args text COLLATE "C" NOT NULL,
    not_after bigint NOT NULL,
    issued_by text COLLATE "C" NOT NULL,
    created_ms bigint NOT NULL
);
CREATE TABLE groups (
    name text COLLATE "C" PRIMARY KEY,
    members text COLLATE "C" NOT NULL,
    updated_ms bigint NOT NULL
);
CREATE TABLE alarms (
    cabinet text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL,
    alarm text COLLATE "C" NOT NULL,
    active boolean NOT NULL,
    severity text COLLATE "C" NOT NULL,
    message text COLLATE "C" NOT NULL,
    raised_ms bigint,
    cleared_ms bigint,
    updated_ms bigint NOT NULL,
    updated_stream integer NOT NULL,
    updated_seq bigint NOT NULL,
    PRIMARY KEY (cabinet, device, alarm)
);
CREATE INDEX alarms_active ON alarms (active, updated_ms);
CREATE TABLE quarantine (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ms bigint NOT NULL,
    topic text COLLATE "C" NOT NULL,
    reason text COLLATE "C" NOT NULL,
    detail text COLLATE "C" NOT NULL,
    size bigint NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX quarantine_reason ON quarantine (reason);
CREATE TABLE counters (
    shard integer PRIMARY KEY,
    readings bigint NOT NULL DEFAULT 0,
    events bigint NOT NULL DEFAULT 0,
    results bigint NOT NULL DEFAULT 0,
    quarantined bigint NOT NULL DEFAULT 0,
    quarantine_evicted bigint NOT NULL DEFAULT 0
);
CREATE TABLE api_tokens (
    key_id text COLLATE "C" PRIMARY KEY,
    name text COLLATE "C" NOT NULL,
    role text COLLATE "C" NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    digest text COLLATE "C" NOT NULL,
    created_ms bigint NOT NULL,
    revoked_ms bigint
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_ms IS NULL;
CREATE TABLE audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts_ms bigint NOT NULL,
    who text COLLATE "C",
    role text COLLATE "C",
    method text COLLATE "C" NOT NULL,
    path text COLLATE "C" NOT NULL,
    summary text COLLATE "C" NOT NULL,
    client text COLLATE "C",
    status integer NOT NULL
);
CREATE INDEX audit_ts ON audit (ts_ms);
"""

# 15-minute and daily rollups of every point (central.store.postgres.rollups), kept for the
# contract's life; keyed by (res, bucket, point_pk), res being the bucket's width in ms.
_V2 = """
CREATE TABLE rollups (
    res integer NOT NULL,
    bucket bigint NOT NULL,
    point_pk integer NOT NULL,
    count bigint NOT NULL,
    good bigint NOT NULL,
    min double precision,
    max double precision,
    sum double precision NOT NULL,
    last_ts bigint NOT NULL,
    last_stream integer NOT NULL,
    last_seq bigint NOT NULL,
    last_vf double precision,
    last_vi bigint,
    last_vb boolean,
    last_vs text COLLATE "C",
    last_quality smallint NOT NULL,
    counted bigint NOT NULL,
    first_wh_ts bigint,
    first_wh double precision,
    last_wh_ts bigint,
    last_wh double precision,
    energy_wh double precision NOT NULL,
    energy_ms bigint NOT NULL,
    resets bigint NOT NULL,
    absurd bigint NOT NULL,
    PRIMARY KEY (res, bucket, point_pk)
) WITH (fillfactor = 70);
CREATE INDEX rollups_point ON rollups (point_pk, res, bucket);
"""

# Exactly-once by (stream, seq) whatever the stamp (central.store.postgres.held): the seq ranges of
# each stream held, filled from what a database holds already as runs of consecutive seqs ("gaps
# and islands") of its readings, events and results.
_V3 = """
CREATE TABLE held (
    stream_pk integer NOT NULL,
    lo bigint NOT NULL,
    hi bigint NOT NULL,
    PRIMARY KEY (stream_pk, lo)
) WITH (fillfactor = 70);
INSERT INTO held (stream_pk, lo, hi)
SELECT stream_pk, min(seq), max(seq) FROM (
    SELECT stream_pk, seq, seq - row_number() OVER (PARTITION BY stream_pk ORDER BY seq) AS island
    FROM (
        SELECT stream_pk, seq FROM readings
        UNION SELECT stream_pk, seq FROM events
        UNION SELECT stream_pk, seq FROM command_results
    ) AS records
) AS numbered
GROUP BY stream_pk, island;
"""

# The alarm events stored before migration 4, as marks and episodes: what ingest makes of them
# (central.store.episodes, where SQLite's upgrade runs the same rules in Python): a mark per alarm
# event not stamped ahead of its receipt, dated by its receipt when stamped before the protocol
# existed; an episode from each raise while none is open to the first clear after it (the k-th such
# raise of a key pairs with its k-th closing clear).
_DEVICE_KINDS = f"'{DEVICE_LOST}', '{DEVICE_BACK}'"
_RAISING_KINDS = ", ".join(f"'{kind}'" for kind, raises in ALARM_KINDS.items() if raises)
_ALARM_KINDS = ", ".join(f"'{kind}'" for kind in ALARM_KINDS)
_FILL_EPISODES = f"""
INSERT INTO alarm_marks (stream_pk, seq, cabinet, device, alarm, raises, ts_ms, severity, message)
SELECT e.stream_pk, e.seq, e.cabinet,
    CASE WHEN e.kind IN ({_DEVICE_KINDS}) THEN e.source
        WHEN json_typeof(e.data::json -> 'device') = 'string' AND e.data::json ->> 'device' <> ''
            THEN e.data::json ->> 'device'
        ELSE e.source END,
    CASE WHEN e.kind IN ({_DEVICE_KINDS}) THEN '{DEVICE_LOST}'
        WHEN json_typeof(e.data::json -> 'alarm') = 'string' AND e.data::json ->> 'alarm' <> ''
            THEN e.data::json ->> 'alarm'
        ELSE '{UNSPECIFIED}' END,
    e.kind IN ({_RAISING_KINDS}),
    CASE WHEN t.received_ms IS NOT NULL AND e.ts < {PROTOCOL_EPOCH_MS} THEN t.received_ms ELSE e.ts END,
    e.severity, e.message
FROM events AS e
LEFT JOIN time_suspect AS t ON (t.stream_pk, t.seq) = (e.stream_pk, e.seq)
WHERE e.kind IN ({_ALARM_KINDS})
    AND NOT (t.received_ms IS NOT NULL AND e.ts > t.received_ms + {AHEAD_BOUND_MS});
WITH ordered AS (
    SELECT m.*, coalesce(lag(raises) OVER (
        PARTITION BY cabinet, device, alarm ORDER BY stream_pk, seq
    ), false) AS open_before
    FROM alarm_marks AS m
), edges AS (
    SELECT o.*, row_number() OVER (
        PARTITION BY cabinet, device, alarm, raises ORDER BY stream_pk, seq
    ) AS n
    FROM ordered AS o WHERE raises <> open_before
)
INSERT INTO alarm_episodes (cabinet, device, alarm, severity, message, stream_pk, raised_seq, raised_ms,
                            cleared_stream, cleared_seq, cleared_ms, updated_ms)
SELECT r.cabinet, r.device, r.alarm, r.severity, r.message, r.stream_pk, r.seq, r.ts_ms,
    -- greatest() passes over a NULL: an episode still open has no clear time
    c.stream_pk, c.seq, CASE WHEN c.seq IS NOT NULL THEN greatest(c.ts_ms, r.ts_ms) END,
    (extract(epoch FROM now()) * 1000)::bigint
FROM edges AS r
LEFT JOIN edges AS c ON (c.cabinet, c.device, c.alarm, c.n) = (r.cabinet, r.device, r.alarm, r.n)
    AND NOT c.raises
WHERE r.raises
ORDER BY r.stream_pk, r.seq;
"""

# The cabinet registry and alarm episodes, as on SQLite (central.store.sqlite.schema says why), and
# the installer and monitor roles of tokens (central.store.auth_rows.Role), the KPI report's day cache
# (central.store.kpi_days).
_V4 = (
    """
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check,
    ADD CONSTRAINT api_tokens_role_check
        CHECK (role IN ('viewer', 'operator', 'admin', 'installer', 'monitor'));
CREATE TABLE registry (
    cabinet text PRIMARY KEY,
    town text NOT NULL,
    label text NOT NULL DEFAULT '',
    latitude double precision,
    longitude double precision,
    rated_power_w double precision,
    baseline_kwh_per_day double precision,
    broker_hash text,
    created_ms bigint NOT NULL,
    updated_ms bigint NOT NULL,
    revoked_ms bigint
);
CREATE INDEX registry_town ON registry (town);
CREATE TABLE alarm_marks (
    stream_pk integer NOT NULL,
    seq bigint NOT NULL,
    cabinet text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL,
    alarm text COLLATE "C" NOT NULL,
    raises boolean NOT NULL,
    ts_ms bigint NOT NULL,
    severity text COLLATE "C" NOT NULL,
    message text COLLATE "C" NOT NULL,
    PRIMARY KEY (stream_pk, seq)
);
CREATE INDEX alarm_marks_key ON alarm_marks (cabinet, device, alarm, stream_pk, seq) INCLUDE (raises);
CREATE TABLE alarm_episodes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cabinet text COLLATE "C" NOT NULL,
    device text COLLATE "C" NOT NULL,
    alarm text COLLATE "C" NOT NULL,
    severity text COLLATE "C" NOT NULL,
    message text COLLATE "C" NOT NULL,
    stream_pk integer NOT NULL,
    raised_seq bigint NOT NULL,
    raised_ms bigint NOT NULL,
    cleared_stream integer,
    cleared_seq bigint,
    cleared_ms bigint,
    acked_ms bigint,
    acked_by text COLLATE "C",
    assigned_to text COLLATE "C",
    assigned_ms bigint,
    updated_ms bigint NOT NULL,
    UNIQUE (stream_pk, raised_seq)
);
CREATE INDEX alarm_episodes_key ON alarm_episodes (cabinet, device, alarm, stream_pk, raised_seq);
CREATE INDEX alarm_episodes_raised ON alarm_episodes (raised_ms);
CREATE INDEX alarm_episodes_updated ON alarm_episodes (updated_ms);
CREATE INDEX alarm_episodes_open ON alarm_episodes (id) WHERE cleared_seq IS NULL;
CREATE TABLE alarm_notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    episode_id bigint NOT NULL REFERENCES alarm_episodes (id),
    ts_ms bigint NOT NULL,
    author text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL CHECK (kind IN ('acknowledge', 'assign', 'comment')),
    text text COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX alarm_notes_episode ON alarm_notes (episode_id, id);
"""
    + _FILL_EPISODES
    + KPI_DAYS_SCHEMA
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _V1),
    Migration(2, "rollups", _V2),
    Migration(3, "held seq ranges", _V3),
    Migration(4, "registry, alarm episodes and the KPI day cache", _V4),
)

SCHEMA_VERSION = MIGRATIONS[-1].version

# Tables a clean test schema empties (every table holding data; schema_migrations stays).
DATA_TABLES = (
    "cabinets",
    "streams",
    "points",
    "readings",
    "latest_readings",
    "events",
    "command_results",
    "time_suspect",
    "commands",
    "group_commands",
    "groups",
    "alarms",
    "quarantine",
    "counters",
    "api_tokens",
    "audit",
    "rollups",
    "held",
    "alarm_marks",
    "alarm_notes",
    "alarm_episodes",
    "registry",
    "kpi_changes",
    "kpi_days",
)
