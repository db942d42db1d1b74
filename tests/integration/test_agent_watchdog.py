"""The agent under systemd's watchdog: READY=1 once it runs, WATCHDOG=1 while every loop is alive, and
no more pings once a poll loop hangs (a driver call that ignores its timeout), so systemd restarts it.

The notify socket is a real AF_UNIX datagram socket, read as systemd reads it; the agent is the real
Agent with a real buffer, and ``cityedge agent run`` itself in a subprocess for the wiring."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Annotated

import msgspec
import pytest

import edge_agent.agent
from cityedge.testing import write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols import registry
from protocols.device import BuildContext, DeviceConfig
from protocols.driver import PointSpec, PointValue
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.sd_notify import Notifier
from protocols.testing import wait_until
from tests.clocks import synchronised_system_clock
from tests.integration.notify_socket import NotifySocket

pytestmark = pytest.mark.integration


class Hang:
    """While ``hung``, a read never returns, even when cancelled, until ``release`` is set."""

    def __init__(self) -> None:
        self.hung = False
        self.release = asyncio.Event()


HANGS: dict[str, Hang] = {}


class HangingDevice(DeviceConfig, frozen=True, tag="hanging"):
    knob: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]{1,16}$")]


class HangingDriver:
    def __init__(self, hang: Hang) -> None:
        self.hang = hang

    @property
    def points(self) -> Sequence[PointSpec]:
        return (PointSpec("value", "float"),)

    async def connect(self) -> None:
        pass

    async def read(self) -> list[PointValue]:
        while self.hang.hung and not self.hang.release.is_set():
            try:
                await self.hang.release.wait()
            except asyncio.CancelledError:  # the bug under test: a driver that ignores its timeout
                continue
        return [PointValue("value", 1.0)]

    async def write(self, quantity: str, value: float | int | bool) -> None:
        pass

    async def close(self) -> None:
        pass


def build_hanging(device: HangingDevice, context: BuildContext) -> HangingDriver:
    return HangingDriver(HANGS.setdefault(device.knob, Hang()))


@pytest.fixture(autouse=True)
def hanging_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(
        registry.DRIVERS,
        "hanging",
        registry.DriverEntry(f"{__name__}:HangingDevice", f"{__name__}:build_hanging"),
    )
    HANGS.clear()
    yield
    HANGS.clear()


def cabinet(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[cabinet]\nid = "cab-dog"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        "[buffer]\ncommit_interval_s = 0.05\n"
        '[[devices]]\nname = "h1"\ndriver = "hanging"\nknob = "k1"\n'
        "poll_interval_s = 0.05\ntimeout_s = 0.05\n"
    )
    return path


@pytest.fixture
async def agent(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Agent]:
    monkeypatch.setattr(edge_agent.agent, "LIVENESS_FLOOR_S", 0.5)
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
    running = Agent(load_config(cabinet(tmp_path)), clock=synchronised_system_clock(), notifier=notifier)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        for hang in HANGS.values():
            hang.release.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()


async def test_the_watchdog_is_fed_while_the_loops_run_and_starves_when_a_poll_hangs(
    agent: Agent, notify: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_until(lambda: notify.count("READY=1") == 1, timeout=10, what="READY=1")
    await wait_until(lambda: notify.count("WATCHDOG=1") >= 5, timeout=10, what="watchdog pings")
    HANGS["k1"].hung = True
    await wait_until(lambda: bool(agent.liveness.stale()), timeout=10, what="the poll loop seen as hung")
    pings = notify.count("WATCHDOG=1")
    await wait_until(lambda: agent.liveness.stale() == ["poll-h1"], timeout=5, what="only the poll stale")
    polls = agent.pollers[0].stats.polls
    # Ten watchdog periods (0.1 s each) later not one more ping: systemd would have restarted it.
    later = asyncio.get_running_loop().time() + 1.0
    await wait_until(lambda: asyncio.get_running_loop().time() > later, timeout=5, what="ten periods")
    assert notify.count("WATCHDOG=1") == pings
    assert agent.pollers[0].stats.polls == polls
    assert "watchdog: no round from poll-h1 in time" in caplog.text
    assert caplog.text.count("watchdog: no round") == 1  # said once, not once per period
    # Released, the loop beats again and the pings resume.
    HANGS["k1"].release.set()
    await wait_until(lambda: notify.count("WATCHDOG=1") > pings, timeout=10, what="pings resumed")


async def test_without_a_watchdog_the_agent_only_says_ready(tmp_path: Path, notify: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(notify.path)})
    running = Agent(load_config(cabinet(tmp_path)), clock=synchronised_system_clock(), notifier=notifier)
    task = asyncio.create_task(running.run())
    try:
        await wait_until(lambda: notify.count("READY=1") == 1, timeout=10, what="READY=1")
        await wait_until(lambda: running.pollers[0].stats.polls >= 10, timeout=10, what="polls")
        assert notify.count("WATCHDOG=1") == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        notifier.close()


async def test_agent_run_notifies_systemd_from_its_environment(
    tmp_path: Path, notify: NotifySocket, controllers: list[LightingControllerSimulator]
) -> None:
    config = write_agent_config(
        tmp_path, cabinet="cab-1", broker_url="mqtt://127.0.0.1:1", devices=[("lc1", controllers[0].port)]
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "agent", "run", "--config", str(config),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_until(lambda: notify.count("READY=1") == 1, timeout=30, what="READY=1")
        await wait_until(lambda: notify.count("WATCHDOG=1") >= 2, timeout=30, what="two watchdog pings")
    finally:
        agent.terminate()
        _, err = await asyncio.wait_for(agent.communicate(), timeout=30)
    assert agent.returncode == 0, err.decode()
    assert notify.count("STOPPING=1") == 1
