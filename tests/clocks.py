"""Clocks for tests of agents that are not about time: the host's NTP status is not under test.

A sandbox or a VM often reports its clock unsynchronised (its host keeps the time, not an NTP daemon
inside it): an agent on the plain ``SystemClock`` would then run its fail-safe and mark every reading
``clock_unsynchronised``. These tests say instead that the system reports the clock synchronised.
"""

from __future__ import annotations

from edge_agent.clock import SystemClock
from edge_agent.clock_sync import ClockTrust


def synchronised_system_clock() -> SystemClock:
    return SystemClock(trust=ClockTrust(status=lambda: True))
