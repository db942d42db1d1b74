"""The backends the contract suite runs against, each a real database made for the test.

A ``Backend`` opens stores on one database of its own: opening it twice gives two stores on the same
data (a restart, or two workers). Every test of tests/contract runs once per backend.

PostgreSQL: one database per test session (``PgServer.create_database``), made on the server that
``$CITYEDGE_TEST_PG`` names (default: postgres on 127.0.0.1:5432, trust auth), migrated once and
dropped at the end; each test starts from empty tables (TRUNCATE, fast). Without a server, the
PostgreSQL tests are skipped and say why.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol

from central.store import Store
from central.store.sqlite import SqliteStore

PG_ENV = "CITYEDGE_TEST_PG"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Backend(Protocol):
    name: str

    def store(self) -> Store:
        """A new, unopened store on this test's database (``async with`` it)."""
        ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "central.db"

    def store(self) -> Store:
        return SqliteStore(self.path)


class PgServer:
    """The PostgreSQL server tests use; ``unavailable`` says why there is none."""

    def __init__(self, dsn: str | None = None) -> None:
        self.dsn = dsn or os.environ.get(PG_ENV) or DEFAULT_PG
        self.unavailable: str | None = None
        try:
            import psycopg
        except ImportError:
            self.unavailable = "psycopg is not installed (pip install -e '.[postgresql]')"
            return
        try:
            with psycopg.connect(self.dsn, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:  # the reason is shown by the skip
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.unavailable = f"no PostgreSQL server at {self.dsn} (set ${PG_ENV}): {first}"

    def dsn_of(self, database: str) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self.dsn, dbname=database)

    def create_database(self, prefix: str = "cityedge_test") -> str:
        """A new empty database; its name."""
        import psycopg
        from psycopg import sql

        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class PgDatabase:
    """A migrated database of the test session, emptied before each test."""

    def __init__(self, server: PgServer) -> None:
        import asyncio

        import psycopg

        from central.store.postgres.migrations import migrate

        self.server = server
        self.name = server.create_database()
        self.dsn = server.dsn_of(self.name)

        async def run() -> None:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                await migrate(conn)

        asyncio.run(run())

    def clean(self) -> None:
        import psycopg

        from central.store.postgres.schema import COUNTER_SHARDS, DATA_TABLES

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY")
            conn.execute("INSERT INTO counters (shard) SELECT generate_series(0, %s - 1)", (COUNTER_SHARDS,))

    def drop(self) -> None:
        self.server.drop_database(self.name)


class PostgresBackend:
    name = "postgresql"

    def __init__(self, database: PgDatabase) -> None:
        self.database = database
        database.clean()

    def store(self) -> Store:
        from central.store.postgres import PostgresStore

        return PostgresStore(self.database.dsn, max_connections=4)
