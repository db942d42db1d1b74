"""The street-lighting schedule, evaluated locally by the agent: pure functions of the instant.

- the ``LightingSchedule`` model and its validation are the fleet's (``protocols.fleet.schedule``):
  central checks a schedule with it when it is posted, the agent when it receives or loads one;
- ``state``: ``desired_state`` at an instant and ``transitions`` over a range;
- ``sun``: night intervals from the sun's elevation (astral); ``wallclock``: local time to UTC across
  daylight-saving transitions.
"""

from edge_agent.lighting.state import HORIZON, LightingState, desired_state, transitions
from protocols.fleet.schedule import (
    CalendarException,
    DimmingPeriod,
    LightingSchedule,
    Override,
    ScheduleError,
    SwitchOff,
    SwitchOn,
    parse_schedule,
)

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
