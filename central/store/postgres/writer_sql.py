"""The statements of the PostgreSQL writer (``central.store.postgres.writer``), in one place.

Arrays travel in binary (``%b``: psycopg quotes no element) as ``unnest`` of typed arrays: one
round trip per statement, whatever the number of rows.
"""

from __future__ import annotations

from central.store.postgres.copy_rows import FLOAT_COLUMNS
from central.store.postgres.stage import LATEST_STAGE

UPSERT_SEEN = """
INSERT INTO cabinets (id, last_seen_ms, backlog)
SELECT * FROM unnest(%b::text[], %b::int8[], %b::int8[]) ORDER BY 1
ON CONFLICT (id) DO UPDATE SET
    last_seen_ms = greatest(coalesce(cabinets.last_seen_ms, 0), excluded.last_seen_ms),
    backlog = excluded.backlog
"""
UPSERT_BIRTH = """
INSERT INTO cabinets (id, online, last_seen_ms, status_ts_ms, version, config_hash, stream,
                      boot_count, backlog, inventory)
VALUES (%s, true, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    online = true,
    last_seen_ms = greatest(coalesce(cabinets.last_seen_ms, 0), excluded.last_seen_ms),
    status_ts_ms = excluded.status_ts_ms,
    version = excluded.version,
    config_hash = excluded.config_hash,
    stream = excluded.stream,
    boot_count = excluded.boot_count,
    backlog = excluded.backlog,
    inventory = excluded.inventory
"""
UPSERT_OFFLINE = """
INSERT INTO cabinets (id, online, status_ts_ms) VALUES (%s, false, %s)
ON CONFLICT (id) DO UPDATE SET online = false, status_ts_ms = excluded.status_ts_ms
"""
INSERT_READINGS = """
INSERT INTO readings (stream_pk, seq, point_pk, ts, quality, reason, vf, vi, vb, vs)
SELECT %s, * FROM unnest(
    %b::int8[], %b::int4[], %b::int8[], %b::int2[], %b::text[],
    %b::float8[], %b::int8[], %b::bool[], %b::text[]
)
ON CONFLICT DO NOTHING
RETURNING seq, ts
"""
# Each point's newest reading of the group, staged (``stage``; emptied as it is read), merged: each
# row finds its point by the key's index, whatever the size of the table.
LATEST_COLUMNS = "point_pk, stream_pk, seq, ts, quality, reason, vf, vi, vb, vs"
LATEST_TYPES = ["int4", "int4", "int8", "int8", "int2", "text", "float8", "int8", "bool", "text"]
MERGE_LATEST = f"""
WITH s AS (DELETE FROM {LATEST_STAGE} RETURNING *)
INSERT INTO latest_readings AS l ({LATEST_COLUMNS})
SELECT {LATEST_COLUMNS} FROM s
ORDER BY point_pk
ON CONFLICT (point_pk) DO UPDATE SET
    stream_pk = excluded.stream_pk, seq = excluded.seq, ts = excluded.ts, quality = excluded.quality,
    reason = excluded.reason, vf = excluded.vf, vi = excluded.vi, vb = excluded.vb, vs = excluded.vs
WHERE (excluded.stream_pk, excluded.seq) > (l.stream_pk, l.seq)
"""
COPY_FLOAT_READINGS = f"COPY readings ({FLOAT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
COPY_READINGS = (
    "COPY readings (stream_pk, seq, point_pk, ts, quality, reason, vf, vi, vb, vs) FROM STDIN (FORMAT BINARY)"
)
INSERT_EVENTS = """
INSERT INTO events (stream_pk, seq, cabinet, ts, source, kind, severity, message, data)
SELECT %s, u.seq, %s, u.ts, u.source, u.kind, u.severity, u.message, u.data
FROM unnest(%b::int8[], %b::int8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[])
    AS u (seq, ts, source, kind, severity, message, data)
ON CONFLICT DO NOTHING
"""
INSERT_RESULTS = """
INSERT INTO command_results (stream_pk, seq, cabinet, ts, command_id, status, reason)
SELECT %s, u.seq, %s, u.ts, u.command_id, u.status, u.reason
FROM unnest(%b::int8[], %b::int8[], %b::text[], %b::text[], %b::text[])
    AS u (seq, ts, command_id, status, reason)
ON CONFLICT DO NOTHING
"""
INSERT_SUSPECTS = """
INSERT INTO time_suspect (stream_pk, seq, ts, received_ms)
SELECT %s, u.seq, u.ts, %s FROM unnest(%b::int8[], %b::int8[]) AS u (seq, ts)
ON CONFLICT DO NOTHING
"""
# The newest event about an alarm wins in (stream, seq) order; replaying one changes nothing.
UPSERT_ALARM = """
INSERT INTO alarms VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (cabinet, device, alarm) DO UPDATE SET
    active = excluded.active,
    severity = excluded.severity,
    message = excluded.message,
    raised_ms = CASE WHEN excluded.active THEN excluded.raised_ms ELSE alarms.raised_ms END,
    cleared_ms = excluded.cleared_ms,
    updated_ms = excluded.updated_ms,
    updated_stream = excluded.updated_stream,
    updated_seq = excluded.updated_seq
WHERE (excluded.updated_stream, excluded.updated_seq) > (alarms.updated_stream, alarms.updated_seq)
"""
INSERT_QUARANTINE = """
INSERT INTO quarantine (received_ms, topic, reason, detail, size, payload)
SELECT * FROM unnest(%b::int8[], %b::text[], %b::text[], %b::text[], %b::int8[], %b::bytea[])
"""
EVICT_QUARANTINE = """
DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT %s)
"""
ADD_COUNTERS = """
UPDATE counters SET readings = readings + %s, events = events + %s, results = results + %s,
    quarantined = quarantined + %s, quarantine_evicted = quarantine_evicted + %s
WHERE shard = %s
"""
