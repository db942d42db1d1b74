"""Fixtures of the store contract suite: ``backend`` and ``store``, once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from central.store import Store
from tests.contract.backends import Backend, PgDatabase, PgServer, PostgresBackend, SqliteBackend

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase | str]:
    """The session's PostgreSQL database, or why there is none (the tests that need it skip)."""
    server = PgServer()
    if server.unavailable is not None:
        yield server.unavailable
        return
    database = PgDatabase(server)
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    if kind == "sqlite":
        return SqliteBackend(tmp_path)
    if kind == "postgresql":
        database = request.getfixturevalue("pg_database")
        if isinstance(database, str):
            pytest.skip(database)
        return PostgresBackend(database)
    raise AssertionError(f"no such backend {kind!r}")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with backend.store() as opened:
        yield opened
