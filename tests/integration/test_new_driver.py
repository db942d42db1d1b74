"""A new driver needs its own package and one registry line, nothing else: a tiny driver defined here
(config model, builder, FieldDriver; then a PushingDriver) is configured in a cabinet's TOML and run by
the real Agent with a real Buffer; its readings and the alarm its AlarmRule declares end up buffered.
A pushed change is recorded at once (not at the next poll), and never while the device is lost."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec
import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from protocols import registry
from protocols.device import BuildContext, DeviceConfig
from protocols.driver import AlarmRule, PointSpec, PointValue
from protocols.errors import DeviceUnreachable
from protocols.fleet import Reading, decode_record
from protocols.testing import wait_until
from tests.clocks import synchronised_system_clock
from tests.integration.agent_buffer import alarm_events, buffered, running_agent

pytestmark = pytest.mark.integration

POINTS = (
    PointSpec("temperature_c", "float", "°C", alarm=AlarmRule("overheat", above=70.0, hysteresis_pct=10)),
    PointSpec(
        "state", "str", role="mode", alarm=AlarmRule("flashing", severity="warning", when_in=("flashing",))
    ),
)


@dataclass
class Sensor:
    """What the tiny device measures; the test turns its knobs."""

    temperature_c: float = 20.0
    state: str = "normal"
    answering: bool = True
    buggy: bool = False  # the driver itself fails with an error that is not a DriverError
    pushed: asyncio.Queue[list[PointValue] | None] = field(default_factory=asyncio.Queue)


SENSORS: dict[str, Sensor] = {}


class TinyDevice(DeviceConfig, frozen=True, tag="tiny"):
    sensor: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]{1,16}$")]


class TinyPushingDevice(DeviceConfig, frozen=True, tag="tiny-push"):
    sensor: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]{1,16}$")]


class TinyDriver:
    def __init__(self, name: str, sensor: Sensor) -> None:
        self.name = name
        self.sensor = sensor
        self.reads = 0

    @property
    def points(self) -> Sequence[PointSpec]:
        return POINTS

    async def connect(self) -> None:
        pass

    async def read(self) -> list[PointValue]:
        self.reads += 1
        if not self.sensor.answering:
            raise DeviceUnreachable(self.name, "the sensor does not answer")
        if self.sensor.buggy:
            raise KeyError("a bug in the driver")
        return [
            PointValue("temperature_c", self.sensor.temperature_c),
            PointValue("state", self.sensor.state),
        ]

    async def write(self, quantity: str, value: float | int | bool) -> None:
        raise DeviceUnreachable(self.name, "nothing to write")

    async def close(self) -> None:
        pass


class TinyPushingDriver(TinyDriver):
    async def changes(self) -> AsyncIterator[list[PointValue]]:
        while True:
            batch = await self.sensor.pushed.get()
            if batch is None:
                raise TypeError("a bug in the driver's subscription")
            if not batch:  # the test's way to break the subscription
                raise DeviceUnreachable(self.name, "the subscription was dropped")
            yield batch


def build_tiny(device: TinyDevice, context: BuildContext) -> TinyDriver:
    return TinyDriver(device.name, SENSORS.setdefault(device.sensor, Sensor()))


def build_tiny_push(device: TinyPushingDevice, context: BuildContext) -> TinyPushingDriver:
    return TinyPushingDriver(device.name, SENSORS.setdefault(device.sensor, Sensor()))


@pytest.fixture(autouse=True)
def tiny_drivers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry lines, for this test only: this module is the drivers' package."""
    assert importlib.import_module(__name__).TinyDevice is TinyDevice
    monkeypatch.setitem(
        registry.DRIVERS, "tiny", registry.DriverEntry(f"{__name__}:TinyDevice", f"{__name__}:build_tiny")
    )
    monkeypatch.setitem(
        registry.DRIVERS,
        "tiny-push",
        registry.DriverEntry(f"{__name__}:TinyPushingDevice", f"{__name__}:build_tiny_push"),
    )
    SENSORS.clear()
    yield
    SENSORS.clear()


def cabinet(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[cabinet]\nid = "cab-tiny"\n[broker]\nurl = "mqtt://127.0.0.1:1"\n'
        "[buffer]\ncommit_interval_s = 0.05\n" + devices
    )
    return path


async def alarms(agent: Agent) -> list[tuple[str, object, object]]:
    return list(await alarm_events(agent))


@pytest.fixture
async def running(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Agent]:
    agent = Agent(load_config(cabinet(tmp_path, request.param)), clock=synchronised_system_clock())
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


TINY = (
    '[[devices]]\nname = "t1"\ndriver = "tiny"\nsensor = "s1"\npoll_interval_s = 0.05\n'
    "[devices.alarms]\nraise_after = 2\nclear_after = 2\n"
)


@pytest.mark.parametrize("running", [TINY], indirect=True)
async def test_a_tiny_driver_s_readings_and_alarm_reach_the_buffer(running: Agent) -> None:
    agent, sensor = running, SENSORS["s1"]
    assert [info.points for info in agent._status(online=True).inventory] == [["temperature_c", "state"]]
    assert agent._status(online=True).inventory[0].driver == "tiny"

    async def has_readings() -> bool:
        readings, _ = await buffered(agent)
        return {r.point for r in readings} >= {"t1/temperature_c", "t1/state"}

    await wait_until(has_readings, timeout=10, what="the tiny driver's readings")
    sensor.temperature_c = 85.0
    await wait_until(lambda: "overheat" in agent.alarms["t1"].active, timeout=10, what="overheat raised")
    sensor.temperature_c = 66.0  # inside the limit, not past the 10 % band (63): still raised
    reads = agent.pollers[0].driver.reads  # type: ignore[attr-defined]
    await wait_until(lambda: agent.pollers[0].driver.reads >= reads + 5, timeout=10, what="polls")  # type: ignore[attr-defined]
    assert "overheat" in agent.alarms["t1"].active
    sensor.temperature_c = 50.0
    await wait_until(lambda: agent.alarms["t1"].active == [], timeout=10, what="overheat cleared")
    await agent.buffer.flush()
    found = await alarms(agent)
    assert [(kind, name) for kind, name, _ in found] == [
        ("alarm_raised", "overheat"),
        ("alarm_cleared", "overheat"),
    ]
    assert found[0][2] == 85.0


PUSHING = (
    '[[devices]]\nname = "p1"\ndriver = "tiny-push"\nsensor = "s2"\npoll_interval_s = 3600\n'
    "[devices.alarms]\nraise_after = 1\nclear_after = 1\n"
)


@pytest.mark.parametrize("running", [PUSHING], indirect=True)
async def test_a_pushed_change_is_recorded_at_once_and_raises_its_alarm(running: Agent) -> None:
    agent, sensor = running, SENSORS["s2"]
    poller = agent.pollers[0]
    await wait_until(lambda: poller.stats.polls == 1, timeout=10, what="the first poll")
    sensor.pushed.put_nowait([PointValue("state", "flashing"), PointValue("undeclared", 1)])
    await wait_until(lambda: "flashing" in agent.alarms["p1"].active, timeout=5, what="pushed alarm")
    await agent.buffer.flush()
    readings, _ = await buffered(agent)
    states = [r.value for r in readings if r.point == "p1/state"]
    assert states == ["normal", "flashing"]  # the poll's, then the push's: no second poll in an hour
    assert not any(r.point == "p1/undeclared" for r in readings)
    assert poller.stats.polls == 1
    sensor.pushed.put_nowait([PointValue("state", "normal")])
    await wait_until(lambda: agent.alarms["p1"].active == [], timeout=5, what="pushed clear")
    await agent.buffer.flush()
    assert [(kind, name) for kind, name, _ in await alarms(agent)] == [
        ("alarm_raised", "flashing"),
        ("alarm_cleared", "flashing"),
    ]


async def test_a_pushed_change_is_committed_at_once_not_at_the_commit_interval(tmp_path: Path) -> None:
    path = cabinet(tmp_path, PUSHING)
    path.write_text(path.read_text().replace("commit_interval_s = 0.05", "commit_interval_s = 60"))
    async with running_agent(path) as agent:
        sensor = SENSORS["s2"]
        await wait_until(lambda: agent.pollers[0].stats.polls == 1, timeout=10, what="the first poll")
        committed = agent.buffer.committed_seq
        sensor.pushed.put_nowait([PointValue("state", "dark")])
        # No flush from the test, and the agent's own is a minute away: the push committed itself.
        await wait_until(lambda: agent.buffer.committed_seq > committed, timeout=5, what="a commit")
        batch = await agent.buffer.read_batch(0, 1000)
        assert batch is not None
        states = [decode_record(Reading, body) for body in batch.readings]
        assert [r.value for r in states if r.point == "p1/state"][-1] == "dark"


@pytest.mark.parametrize("running", [PUSHING], indirect=True)
async def test_pushes_are_not_recorded_while_the_device_is_lost(running: Agent) -> None:
    agent, sensor = running, SENSORS["s2"]
    poller = agent.pollers[0]
    await wait_until(lambda: poller.stats.polls == 1, timeout=10, what="the first poll")
    sensor.answering = False
    await poller.poll_once()  # the device is lost after one failed read (raise_after = 1)
    assert poller.lost
    sensor.pushed.put_nowait([PointValue("state", "flashing")])
    await wait_until(sensor.pushed.empty, timeout=5, what="the push consumed")
    sensor.answering = True
    await poller.poll_once()
    assert not poller.lost
    sensor.pushed.put_nowait([PointValue("state", "dark")])
    await wait_until(lambda: poller.pushes == 1, timeout=5, what="the push after it is back")
    await agent.buffer.flush()
    readings, _ = await buffered(agent)
    assert [r.value for r in readings if r.point == "p1/state"] == ["normal", None, "normal", "dark"]
    assert "flashing" not in agent.alarms["p1"].active


@pytest.mark.parametrize("running", [PUSHING], indirect=True)
async def test_a_failed_subscription_is_listened_to_again_and_stops_nothing(running: Agent) -> None:
    agent, sensor = running, SENSORS["s2"]
    poller = agent.pollers[0]
    await wait_until(lambda: poller.stats.polls == 1, timeout=10, what="the first poll")
    sensor.pushed.put_nowait([])
    await wait_until(sensor.pushed.empty, timeout=5, what="the failure consumed")
    sensor.pushed.put_nowait([PointValue("state", "dark")])
    await wait_until(lambda: poller.pushes == 1, timeout=10, what="the push after listening again")
    await agent.buffer.flush()
    readings, _ = await buffered(agent)
    assert [r.value for r in readings if r.point == "p1/state"] == ["normal", "dark"]


def test_an_unknown_driver_names_the_key_and_the_known_drivers(tmp_path: Path) -> None:
    path = cabinet(tmp_path, '[[devices]]\nname = "x1"\ndriver = "bacnet"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "devices[0].driver"
    assert "'bacnet'" in caught.value.problem
    assert all(
        name in caught.value.problem for name in ("modbus-tcp", "modbus-rtu", "opcua", "onvif", "tiny")
    )


def test_the_tiny_driver_s_own_fields_are_checked(tmp_path: Path) -> None:
    path = cabinet(tmp_path, '[[devices]]\nname = "t1"\ndriver = "tiny"\nsensor = "S 1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == "devices[0].sensor"
    assert "(got 'S 1')" in caught.value.problem


BOTH = (
    TINY.replace('name = "t1"', 'name = "bug1"').replace('sensor = "s1"', 'sensor = "s3"')
    + '[[devices]]\nname = "t2"\ndriver = "tiny"\nsensor = "s4"\npoll_interval_s = 0.05\n'
)


@pytest.mark.parametrize("running", [BOTH], indirect=True)
async def test_a_driver_failing_with_a_bug_costs_its_own_device_only(
    running: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    agent = running
    buggy, healthy = agent.pollers
    await wait_until(lambda: buggy.stats.polls >= 1, timeout=10, what="the first poll")
    SENSORS["s3"].buggy = True
    await wait_until(lambda: buggy.lost, timeout=10, what="the buggy device lost")
    polls = healthy.stats.polls
    await wait_until(lambda: healthy.stats.polls >= polls + 5, timeout=10, what="the other device polled")
    assert healthy.stats.online and not healthy.lost
    readings, events = await buffered(agent)
    bad = [r for r in readings if r.point == "bug1/temperature_c" and r.reason == "driver_error"]
    assert bad, "the failed reads are recorded as bad readings"
    assert [e.kind for e in events if e.source == "bug1" and e.kind == "device_lost"] == ["device_lost"]
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "KeyError" in r.getMessage()]
    assert len(errors) == 1, "logged once while it lasts, not once per poll"


@pytest.mark.parametrize("running", [PUSHING], indirect=True)
async def test_a_subscription_failing_with_a_bug_is_listened_to_again(running: Agent) -> None:
    agent, sensor = running, SENSORS["s2"]
    poller = agent.pollers[0]
    await wait_until(lambda: poller.stats.polls == 1, timeout=10, what="the first poll")
    sensor.pushed.put_nowait(None)
    await wait_until(sensor.pushed.empty, timeout=5, what="the bug consumed")
    sensor.pushed.put_nowait([PointValue("state", "dark")])
    await wait_until(lambda: poller.pushes == 1, timeout=10, what="the push after listening again")


async def test_a_chattering_device_asks_for_at_most_one_commit_a_second(tmp_path: Path) -> None:
    path = cabinet(tmp_path, PUSHING)
    path.write_text(path.read_text().replace("commit_interval_s = 0.05", "commit_interval_s = 60"))
    async with running_agent(path) as agent:
        sensor, poller = SENSORS["s2"], agent.pollers[0]
        await wait_until(lambda: poller.stats.polls == 1, timeout=10, what="the first poll")
        commits = 0

        def counted() -> None:
            nonlocal commits
            commits += 1

        agent.buffer.add_commit_listener(counted)
        for index in range(500):
            sensor.pushed.put_nowait([PointValue("state", f"state-{index}")])
        await wait_until(lambda: poller.pushes == 500, timeout=10, what="500 pushes recorded")
        assert commits <= 2, f"{commits} commits for 500 pushes in well under two seconds"
        # The last change is not left for the minute-long commit interval: one commit ends the second.
        last = agent.buffer.committed_seq

        async def latest_committed() -> bool:
            batch = await agent.buffer.read_batch(0, 10_000)
            states = [decode_record(Reading, b) for b in batch.readings] if batch else []
            return any(r.value == "state-499" for r in states)

        await wait_until(latest_committed, timeout=3, what="the last push committed within a second")
        assert agent.buffer.committed_seq > last
