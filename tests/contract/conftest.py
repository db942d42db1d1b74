"""Fixtures of the store contract suite: ``backend`` and ``store``, once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.store import Store
from tests.contract.backends import Backend, SqliteBackend

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    kind = request.param
    if kind == "sqlite":
        return SqliteBackend(tmp_path)
    raise AssertionError(f"no such backend {kind!r}")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with backend.store() as opened:
        yield opened
