"""What ``cityedge diag`` finds: one ``Check`` per thing looked at, the devices as read, the alarms."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from edge_agent.probe import ProbedDevice

Fact = str | int | float | bool | None | list[str]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # worth a look, not a failure (exit code 0)
    FAIL = "fail"  # the exit code says so
    SKIP = "skip"  # not looked at, and why (the agent holds it, nothing configured)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    summary: str  # one sentence for the crew: what was found, and the fix when it failed
    facts: dict[str, Fact] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceResult:
    probed: ProbedDevice
    driver: str
    skipped: str | None = None  # why it was not read (its serial line is the running agent's)

    @property
    def status(self) -> Status:
        if self.skipped is not None:
            return Status.SKIP
        return Status.OK if self.probed.good else Status.FAIL


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An event still in the buffer (central has not acknowledged it yet)."""

    seq: int
    ts: int
    source: str
    kind: str
    severity: str
    message: str


@dataclass(slots=True)
class Report:
    cabinet: str
    config: str
    started_ms: int
    took_s: float = 0.0
    devices: list[DeviceResult] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    active_alarms: list[str] = field(default_factory=list)  # "lc1: lamp_failure", from the buffer
    recent_events: list[AlarmEvent] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        """One line per failure: what the exit code is about."""
        found = [
            f"device {d.probed.device}: {_without_name(d.probed.error or 'bad readings', d.probed.device)}"
            for d in self.devices
            if d.status is Status.FAIL
        ]
        return found + [f"{c.name}: {c.summary}" for c in self.checks if c.status is Status.FAIL]

    @property
    def ok(self) -> bool:
        return not self.failures


def _without_name(error: str, device: str) -> str:
    return error.removeprefix(f"{device}: ")
