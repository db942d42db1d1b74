"""Apply and check the schema's version: ``schema_migrations`` lists the migrations applied.

``migrate`` is what ``cityedge central migrate`` runs; ``schema_version`` is what a store checks when
it opens. Both take a psycopg connection in autocommit mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from central.store.postgres.schema import (
    COUNTER_SHARDS,
    MIGRATION_LOCK,
    MIGRATIONS,
    Migration,
)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def schema_version(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> int:
    """The newest migration applied; 0 for a database cityedge never migrated."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    found = await cur.fetchone()
    return int(found[0]) if found is not None else 0


async def migrate(
    conn: psycopg.AsyncConnection[tuple[Any, ...]], migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """Apply the migrations this database lacks, in order, in one transaction; those applied.

    An advisory lock makes concurrent runs (two hosts deploying at once) safe: the second waits for
    the first to commit, then finds the schema current and applies nothing.
    """
    applied: list[Migration] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(_VERSION_TABLE)
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {int(v) for (v,) in await cur.fetchall()}
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration)
        await conn.execute(
            "INSERT INTO counters (shard) SELECT generate_series(0, %s - 1) ON CONFLICT DO NOTHING",
            (COUNTER_SHARDS,),
        )
    return applied


async def migrate_database(dsn: str, *, connect_timeout_s: int = 10) -> tuple[int, list[Migration]]:
    """Connect to ``dsn`` and migrate it: (the version it was at, the migrations applied)."""
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=connect_timeout_s, application_name="cityedge-migrate"
    ) as conn:
        before = await schema_version(conn)
        return before, await migrate(conn)
