"""Errors of the lighting schedule.

AgentError (edge_agent.errors)
└── ScheduleError   a schedule (from central, or the persisted file) is invalid: names each field and
                    what was expected
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.errors import AgentError


class ScheduleError(AgentError):
    """``problems`` holds ``(field, expected)`` pairs, e.g. ``("dimming[0].start", "expected HH:MM ...")``."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid lighting schedule: " + "; ".join(f"{f}: {m}" for f, m in self.problems))
