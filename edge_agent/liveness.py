"""Which of the agent's loops are alive: each beats after every round of its work, and the watchdog
pings systemd only while every loop has beaten recently. A poll loop stuck on a device that never
answers (a driver call that ignores its timeout) then gets the agent restarted, instead of a cabinet
that looks alive while it reads nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._within: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def expect(self, name: str, within_s: float) -> None:
        """``name`` must beat at least every ``within_s`` seconds from now on."""
        self._within[name] = within_s
        self._last[name] = self._clock()

    def beat(self, name: str) -> None:
        if name in self._within:
            self._last[name] = self._clock()

    def stale(self) -> list[str]:
        """The loops that have not beaten in time, oldest first."""
        now = self._clock()
        late = [
            (self._last[name], name)
            for name, within in self._within.items()
            if now - self._last[name] > within
        ]
        return [name for _, name in sorted(late)]
