"""Command traffic for a simulated fleet: an operator's dim commands, sent through central's API.

Every ``every_s`` one command goes to a cabinet picked at random (its lighting output dimmed to a
random level; with no schedule, for the override's default hour); the cabinet executes it with the
agent's own command code and reports accepted, then executed, like any record. What central answered
is counted here.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0


@dataclass(slots=True)
class TrafficStats:
    sent: int = 0
    refused: int = 0  # central answered, not with 201 (the status is logged)
    failed: int = 0  # no answer


class CommandTraffic:
    def __init__(
        self, *, api_url: str, token: str, cabinets: Sequence[str], every_s: float, seed: int = 1
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"command interval {every_s} s: expected a positive number of seconds")
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.cabinets = list(cabinets)
        self.every_s = every_s
        self.stats = TrafficStats()
        self._rng = random.Random(seed)

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        async with httpx.AsyncClient(
            base_url=f"{self.api_url}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT_S
        ) as api:
            while True:
                await asyncio.sleep(self.every_s)
                await self._send(api)

    async def _send(self, api: httpx.AsyncClient) -> None:
        body = {
            "target": {"cabinet": self._rng.choice(self.cabinets)},
            "action": "dim",
            "args": {"level_pct": self._rng.randrange(20, 101)},
        }
        try:
            response = await api.post("/commands", json=body)
        except httpx.HTTPError as exc:
            self.stats.failed += 1
            log.warning("command to %s: no answer from %s (%s)", body["target"], self.api_url, exc)
            return
        if response.status_code == httpx.codes.CREATED:
            self.stats.sent += 1
        else:
            self.stats.refused += 1
            log.warning("command refused by central: %s %s", response.status_code, response.text[:200])
