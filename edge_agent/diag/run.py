"""``cityedge diag``: every check at once, each bounded, so one dead device costs its own timeout only."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.config import LoadedConfig
from edge_agent.diag.broker_check import AgentLink, check_broker
from edge_agent.diag.buffer_state import BufferReadError, BufferState, buffer_check, read_buffer_state
from edge_agent.diag.host import AgentPresence, agent_presence, clock_check, service_check
from edge_agent.diag.model import AlarmEvent, Check, DeviceResult, Report
from edge_agent.diag.serial_ports import SerialLine, serial_checks, serial_lines
from edge_agent.probe import ProbedDevice, probe
from protocols.fleet.broker_url import BrokerAddress, SecretFileError, read_secret_file

# The file the shipped unit hands the agent as its broker-password credential (LoadCredential= in
# packaging/systemd/cityedge-agent.service): diag, run by the crew, has no $CREDENTIALS_DIRECTORY.
SERVICE_PASSWORD_FILE = Path("/etc/cityedge/broker-password")

SyncReading = Callable[[], bool | None]


async def diagnose(
    loaded: LoadedConfig,
    *,
    now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    clock_status: SyncReading | None = None,
    probe_while_running: bool = False,
) -> Report:
    """Look at everything the cabinet depends on; nothing is changed, nothing waits on the agent.

    ``clock_status`` stands in for the kernel's NTP status (tests on machines whose clock the host
    keeps); by default the kernel and systemd-timesyncd are asked. While an agent runs (or may run),
    devices are not read unless ``probe_while_running``: many small controllers take one TCP
    connection, and a second one is refused (a working device shown dead) or drops the agent's.
    """
    started = time.monotonic()
    config = loaded.config
    report = Report(cabinet=config.cabinet.id, config=str(loaded.path), started_ms=now_ms())
    presence = await asyncio.to_thread(agent_presence, loaded.buffer_path)
    lines = serial_lines(loaded.devices)
    link = AgentLink(running=presence.running, pids=presence.pids)
    async with asyncio.TaskGroup() as tasks:
        probed = tasks.create_task(
            _probe_unless_agent(loaded, presence, probe_while_running), name="diag-devices"
        )
        broker = tasks.create_task(check_broker(broker_address(loaded), config.cabinet.id, link))
        buffer = tasks.create_task(asyncio.to_thread(_read_buffer, loaded))
        serial = tasks.create_task(asyncio.to_thread(serial_checks, lines, presence.pids))
    report.devices = _device_results(
        loaded, probed.result(), lines, _held_by_agent(serial.result(), presence)
    )
    state = buffer.result()
    clock = (
        clock_check(now_ms())
        if clock_status is None
        else clock_check(now_ms(), kernel=clock_status, timesyncd=lambda: None)
    )
    report.checks = [
        service_check(presence),
        broker.result(),
        buffer_check(state, now_ms()),
        clock,
        *serial.result(),
    ]
    if isinstance(state, BufferState):
        report.active_alarms = state.active_alarms
        report.recent_events = [
            AlarmEvent(e.seq, e.ts, e.source, e.kind, e.severity, e.message) for e in state.events
        ]
    report.took_s = round(time.monotonic() - started, 3)
    return report


def broker_address(loaded: LoadedConfig, service_password: Path = SERVICE_PASSWORD_FILE) -> BrokerAddress:
    """The broker as the agent would reach it (its own URL and password code: the config, then the
    environment), else with the password systemd would give the service."""
    address = loaded.config.broker.address()
    if address.password is not None or not service_password.exists():
        return address
    try:
        return dataclasses.replace(address, password=read_secret_file(service_password))
    except SecretFileError:
        return address  # unreadable to this user: the login says what the broker thinks of none


def _read_buffer(loaded: LoadedConfig) -> BufferState | BufferReadError:
    try:
        return read_buffer_state(loaded.buffer_path)
    except BufferReadError as exc:
        return exc


AGENT_READS = (
    "not read: the running agent reads it (many controllers take one connection, a second can drop the"
    " agent's); its alarms are below; `diag --probe-devices` reads it anyway"
)


async def _probe_unless_agent(
    loaded: LoadedConfig, presence: AgentPresence, probe_while_running: bool
) -> list[ProbedDevice] | None:
    if presence.running is False or probe_while_running:
        return await probe(loaded)
    return None


def _device_results(
    loaded: LoadedConfig, probed: list[ProbedDevice] | None, lines: list[SerialLine], held: set[str]
) -> list[DeviceResult]:
    """The probe's results; a device on a serial line the running agent holds is the agent's to read
    (one master per RS-485 line: diag does not talk on it), so it is skipped, not failed."""
    if probed is None:
        return [
            DeviceResult(ProbedDevice(device.name, (), None), device.driver, AGENT_READS)
            for device in loaded.devices
        ]
    theirs = {device for line in lines if line.port in held for device in line.devices}
    results = []
    for device, result in zip(loaded.devices, probed, strict=True):
        skipped = None
        if device.name in theirs and result.error is not None:
            skipped = "its serial line is held by the running agent (one master per line): the agent reads it"
        results.append(DeviceResult(result, device.driver, skipped))
    return results


def _held_by_agent(checks: list[Check], presence: AgentPresence) -> set[str]:
    """The serial ports the running agent holds open."""
    agent = {str(pid) for pid in presence.pids}
    held = set()
    for check in checks:
        holders, port = check.facts.get("held_by"), check.facts.get("port")
        if isinstance(holders, list) and isinstance(port, str) and agent & set(holders):
            held.add(port)
    return held
