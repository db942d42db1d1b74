"""The cabinet's clock as an alarm: raised while it is not synchronised, cleared once it is.

Raised and cleared once each, across restarts too (the state is kept in the buffer's settings, as the
device alarms keep theirs), so the operator sees a cabinet running on a clock it cannot trust. The
alarm travels like the others (``alarm_raised`` / ``alarm_cleared``, data: alarm, device "agent").
"""

from __future__ import annotations

import asyncio
import logging

from edge_agent.buffer import Buffer
from edge_agent.clock import Clock
from edge_agent.journal import story
from protocols.quality import CLOCK_UNSYNCHRONISED

log = logging.getLogger(__name__)

SETTING_KEY = "alarm.clock_unsynchronised"
# Real seconds between looks at the clock's state (the system itself is asked at most every RECHECK_S).
WATCH_S = 2.0


class ClockAlarm:
    def __init__(self, *, clock: Clock, buffer: Buffer) -> None:
        self.clock = clock
        self.buffer = buffer
        self.raised = False

    async def restore(self) -> None:
        self.raised = await self.buffer.get_setting(SETTING_KEY) == "1"

    def check(self) -> None:
        synchronised = self.clock.synchronised()
        if self.raised != synchronised:
            return
        self.raised = not synchronised
        self.buffer.stage_setting(SETTING_KEY, "1" if self.raised else "0")
        if self.raised:
            log.warning(
                "the clock is not synchronised: lighting fail-safe, readings marked, expiry left to central",
                extra=story("alarm_raised", device="agent", alarm=CLOCK_UNSYNCHRONISED, severity="warning"),
            )
        else:
            log.info(
                "the clock is synchronised",
                extra=story("alarm_cleared", device="agent", alarm=CLOCK_UNSYNCHRONISED, severity="info"),
            )
        self.buffer.append_event(
            ts=self.clock.now_ms(),
            source="agent",
            kind="alarm_raised" if self.raised else "alarm_cleared",
            severity="warning" if self.raised else "info",
            message=f"clock {'not synchronised' if self.raised else 'synchronised'}",
            data={"alarm": CLOCK_UNSYNCHRONISED, "device": "agent"},
        )

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(WATCH_S)
