"""The host around the agent: its systemd service, the processes holding its files, its clock.

Nothing here changes anything: ``systemctl is-active`` asks, /proc is read, the clock's status is the
kernel's own reading (``edge_agent.clock_sync``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edge_agent.clock_sync import BUILD_FLOOR_MS, CEILING_MS, kernel_status, timesyncd_status
from edge_agent.diag.model import Check, Fact, Status

UNIT = "cityedge-agent"
SYSTEMD_RUNNING = Path("/run/systemd/system")  # sd_booted(3): systemd is PID 1
SYSTEMCTL_TIMEOUT_S = 3.0
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class Holders:
    """The processes that have a file open, as far as this user can see."""

    pids: tuple[int, ...]
    hidden: int  # processes whose open files this user may not see (not root; ProtectProc=)


def holders(paths: Iterable[Path], *, proc: Path = PROC) -> Holders:
    """Processes (other than this one) with any of ``paths`` open."""
    wanted = {str(path.resolve()) for path in paths}
    pids: list[int] = []
    hidden = 0
    me = os.getpid()
    for entry in _pids(proc):
        if entry == me:
            continue
        try:
            fds = list((proc / str(entry) / "fd").iterdir())
        except PermissionError:
            hidden += 1
            continue
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target in wanted:
                pids.append(entry)
                break
    return Holders(tuple(pids), hidden)


def _pids(proc: Path) -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    except OSError:
        return []


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """Whether an agent runs on this cabinet's buffer: what systemd says, what /proc shows."""

    systemd: bool
    service_state: str | None  # systemctl is-active's word, None without systemd
    pids: tuple[int, ...]  # processes holding the buffer file open
    hidden: int

    @property
    def running(self) -> bool | None:
        """True or False when known; None when it cannot be told: some processes are hidden from this
        user (not root; ``ProtectProc=``), and one of them may be an agent run by hand."""
        if self.pids or self.service_state in ("active", "activating", "reloading", "deactivating"):
            return True
        return None if self.hidden else False


def agent_presence(buffer_path: Path, *, unit: str = UNIT) -> AgentPresence:
    state = service_state(unit)
    files = [buffer_path, Path(f"{buffer_path}-wal")]
    seen = holders([file for file in files if file.exists()]) if buffer_path.exists() else Holders((), 0)
    return AgentPresence(systemd=state is not None, service_state=state, pids=seen.pids, hidden=seen.hidden)


def service_state(unit: str = UNIT) -> str | None:
    """``systemctl is-active UNIT`` (active, inactive, failed, activating...), None without systemd."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not SYSTEMD_RUNNING.is_dir():
        return None
    try:
        done = subprocess.run(
            [systemctl, "is-active", unit],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip()[:40] or "unknown"


def service_check(presence: AgentPresence, *, unit: str = UNIT) -> Check:
    facts: dict[str, Fact] = {
        "systemd": presence.systemd,
        "unit": unit,
        "state": presence.service_state,
        "agent_pids": [str(pid) for pid in presence.pids],
    }
    running = _running_text(presence)
    if not presence.systemd:
        return Check("service", Status.SKIP, f"no systemd on this machine; {running}", facts)
    state = presence.service_state
    if state == "active":
        return Check("service", Status.OK, f"{unit} is active; {running}", facts)
    if state == "failed":
        return Check(
            "service",
            Status.FAIL,
            f"{unit} has failed: `journalctl -u {unit} -n 50` says why; `systemctl restart {unit}`",
            facts,
        )
    return Check("service", Status.WARN, f"{unit} is {state}; {running}", facts)


def _running_text(presence: AgentPresence) -> str:
    if presence.pids:
        return "agent process " + ", ".join(map(str, presence.pids)) + " holds the buffer"
    if presence.running is None:
        return f"{presence.hidden} processes are hidden from this user: run diag with sudo to see the agent"
    return "no process holds the buffer (the agent is not running)"


SyncReading = Callable[[], bool | None]


def clock_check(
    now_ms: int, *, kernel: SyncReading = kernel_status, timesyncd: SyncReading = timesyncd_status
) -> Check:
    """The clock as the agent judges it: inside this release's window, and synchronised by NTP."""
    said_kernel, said_timesyncd = kernel(), timesyncd()
    facts: dict[str, Fact] = {
        "now_ms": now_ms,
        "kernel_synchronised": said_kernel,
        "timesyncd_synchronised": said_timesyncd,
    }
    if not BUILD_FLOOR_MS <= now_ms <= CEILING_MS:
        return Check(
            "clock",
            Status.FAIL,
            "the clock is outside the years this release can be right in (no RTC battery, no NTP yet):"
            " readings are marked clock_unsynchronised and the lighting runs its fail-safe",
            facts,
        )
    if said_timesyncd or said_kernel:
        return Check("clock", Status.OK, "synchronised (NTP)", facts)
    if said_kernel is False:
        return Check(
            "clock",
            Status.FAIL,
            "the kernel says the clock is not synchronised: check NTP (`timedatectl timesync-status`,"
            " UDP 123 reachable); meanwhile readings are marked clock_unsynchronised",
            facts,
        )
    return Check("clock", Status.WARN, "cannot tell whether NTP synchronised the clock", facts)
