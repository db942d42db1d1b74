"""The serial lines of the cabinet: each configured port present, usable by this user, and by whom held.

A device is on a serial line when its config names a ``port`` (a device file) and a ``baudrate``;
the core knows no protocol (``protocols.registry``), so this reads those fields, not a Modbus type.
The port is not opened here: the device probe opens it with the configured settings, and a port the
running agent holds (exclusively: one master per RS-485 line) is reported as the agent's.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.diag.host import holders
from edge_agent.diag.model import Check, Fact, Status
from protocols.device import DeviceConfig

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True, slots=True)
class SerialLine:
    port: str
    devices: tuple[str, ...]
    settings: str  # "19200 8E1"


def serial_lines(devices: Sequence[DeviceConfig]) -> list[SerialLine]:
    """Each configured port once, with its devices and settings, in config order."""
    lines: dict[str, tuple[list[str], str]] = {}
    for device in devices:
        port, baudrate = getattr(device, "port", None), getattr(device, "baudrate", None)
        if not isinstance(port, str) or not isinstance(baudrate, int):
            continue
        parity, stopbits = getattr(device, "parity", "N"), getattr(device, "stopbits", 1)
        bytesize = getattr(device, "bytesize", 8)
        names, _ = lines.setdefault(port, ([], f"{baudrate} {bytesize}{parity}{stopbits}"))
        names.append(device.name)
    return [SerialLine(port, tuple(names), settings) for port, (names, settings) in lines.items()]


def serial_checks(lines: Sequence[SerialLine], agent_pids: Sequence[int]) -> list[Check]:
    present = adapters_present()
    return [_check(line, agent_pids, present) for line in lines]


def adapters_present() -> list[str]:
    """The USB serial adapters plugged in, by id (what to configure instead of /dev/ttyUSB0)."""
    try:
        return sorted(f"{entry} -> {os.path.realpath(entry)}" for entry in map(str, BY_ID.iterdir()))
    except OSError:
        return []


def _check(line: SerialLine, agent_pids: Sequence[int], present: list[str]) -> Check:
    name = f"serial {line.port}"
    facts: dict[str, Fact] = {
        "port": line.port,
        "devices": list(line.devices),
        "settings": line.settings,
        "adapters_present": present,
    }
    where = f"{line.settings}, for {', '.join(line.devices)}"
    try:
        info = os.stat(line.port)
    except FileNotFoundError:
        seen = (
            "; adapters present: " + ", ".join(present) if present else "; no USB serial adapter is present"
        )
        return Check(name, Status.FAIL, f"no such device: check the cable or adapter{seen}", facts)
    except OSError as exc:
        return Check(name, Status.FAIL, f"cannot look at it ({exc.strerror or exc})", facts)
    facts["real_path"] = os.path.realpath(line.port)
    if not stat.S_ISCHR(info.st_mode):
        return Check(name, Status.FAIL, "not a serial device: configure one such as /dev/ttyUSB0", facts)
    group = _group(info.st_gid)
    facts["group"] = group
    held = holders([Path(line.port)]).pids
    facts["held_by"] = [str(pid) for pid in held]
    theirs = [pid for pid in held if pid in agent_pids]
    if theirs:
        return Check(
            name, Status.OK, f"present, in use by the running agent (pid {theirs[0]}); {where}", facts
        )
    if held:
        # Not a failure by itself (a program may keep a port open without locking it): the probe of
        # its devices says whether it can be used.
        others = ", ".join(f"{_command(pid)} (pid {pid})" for pid in held)
        return Check(name, Status.WARN, f"present, also open in {others}; {where}", facts)
    if not os.access(line.port, os.R_OK | os.W_OK):
        return Check(
            name,
            Status.FAIL,
            f"this user may not open it: the agent's user must be in the '{group}' group; {where}",
            facts,
        )
    return Check(name, Status.OK, f"present; {where}", facts)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()[:32] or "?"
    except OSError:
        return "?"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
