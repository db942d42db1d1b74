"""Read a server-sent event stream the way the operator page does: fetch-like, token in a header."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class EventLog:
    """Events received so far, with a way to wait for one that matches."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    comments: int = 0
    ended: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, event: str, data: Any) -> None:
        self.events.append((event, data))
        self._changed.set()

    async def wait_for(
        self, match: Callable[[str, Any], bool], *, what: str, timeout: float = 15.0
    ) -> tuple[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event, data in self.events:
                    if match(event, data):
                        return event, data
                if self.ended:
                    raise AssertionError(f"the stream ended before {what}: {self.events}")
                self._changed.clear()
                await self._changed.wait()


async def _read(response: httpx.Response, log: EventLog) -> None:
    event, data = "message", []
    try:
        async for line in response.aiter_lines():
            if line == "":
                if data:
                    log.add(event, json.loads("\n".join(data)))
                event, data = "message", []
            elif line.startswith(":"):
                log.comments += 1
                log._changed.set()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
    finally:
        log.ended = True
        log._changed.set()


@contextlib.asynccontextmanager
async def event_stream(base_url: str, token: str) -> AsyncIterator[EventLog]:
    """GET /api/v1/stream with ``token``; the events arrive in the log while the block runs."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/api/v1/stream", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        log = EventLog()
        reader = asyncio.create_task(_read(response, log))
        try:
            yield log
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader
