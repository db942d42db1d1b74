"""A real Agent run in the test's event loop, and what it has put in its buffer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.fleet import Event, Reading, decode_record
from tests.clocks import synchronised_system_clock


@contextlib.asynccontextmanager
async def running_agent(config: Path) -> AsyncIterator[Agent]:
    """The agent of ``config`` running (on a synchronised clock) until the block ends."""
    agent = Agent(load_config(config), clock=synchronised_system_clock())
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def buffered(agent: Agent) -> tuple[list[Reading], list[Event]]:
    """Every reading and event waiting in the agent's buffer (committed first)."""
    await agent.buffer.flush()
    batch = await agent.buffer.read_batch(0, 100_000)
    if batch is None:
        return [], []
    return (
        [decode_record(Reading, body) for body in batch.readings],
        [decode_record(Event, body) for body in batch.events],
    )


async def alarm_events(agent: Agent) -> list[tuple[str, str, object]]:
    """(kind, alarm, value) of each alarm_raised / alarm_cleared event buffered, oldest first."""
    _, events = await buffered(agent)
    return [
        (e.kind, str(e.data["alarm"]), e.data.get("value")) for e in events if e.kind.startswith("alarm_")
    ]


async def device_events(agent: Agent, device: str) -> list[str]:
    """The device_lost / device_back events of ``device``, oldest first."""
    _, events = await buffered(agent)
    return [e.kind for e in events if e.source == device and e.kind in ("device_lost", "device_back")]
