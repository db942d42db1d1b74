"""Fixtures shared by the whole suite: a real Mosquitto on a free port, owned by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cityedge.broker import MosquittoBroker


@pytest.fixture
async def mosquitto() -> AsyncIterator[MosquittoBroker]:
    """A Mosquitto of the test's own, killable with ``await mosquitto.kill()``, restartable."""
    async with MosquittoBroker() as broker:
        yield broker


@pytest.fixture
def broker_url(mosquitto: MosquittoBroker) -> str:
    return mosquitto.url
