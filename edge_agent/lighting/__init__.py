"""The street-lighting schedule, evaluated locally by the agent: pure functions of the instant.

- ``schedule``: the ``LightingSchedule`` model (JSON from central, persisted by the agent);
- ``state``: ``desired_state`` at an instant and ``transitions`` over a range;
- ``sun``: night intervals from the sun's elevation (astral); ``wallclock``: local time to UTC across
  daylight-saving transitions.
"""

from edge_agent.lighting.errors import ScheduleError
from edge_agent.lighting.schedule import (
    CalendarException,
    DimmingPeriod,
    LightingSchedule,
    Override,
    SwitchOff,
    SwitchOn,
    parse_schedule,
)
from edge_agent.lighting.state import HORIZON, LightingState, desired_state, transitions

__all__ = [
    "HORIZON",
    "CalendarException",
    "DimmingPeriod",
    "LightingSchedule",
    "LightingState",
    "Override",
    "ScheduleError",
    "SwitchOff",
    "SwitchOn",
    "desired_state",
    "parse_schedule",
    "transitions",
]
