"""A camera watched by the real agent: the simulator over real HTTP, the agent's own alarms and buffer.

Each camera alarm (tampered, storage failure, clock drift over its threshold) is raised once and cleared
once, whatever the number of polls and pulls between; a camera that stops answering is one device_lost
and one device_back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import Agent
from protocols.onvif.simulator import CameraSimulator
from protocols.quality import Quality
from protocols.testing import wait_until
from tests.integration.agent_buffer import alarm_events, buffered, device_events, running_agent

pytestmark = pytest.mark.integration


def camera_cabinet(tmp_path: Path, camera: CameraSimulator, *, anonymous: bool = False) -> Path:
    secret = tmp_path / "camera.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    credentials = "" if anonymous else 'username = "operator"\npassword_file = "camera.secret"'
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[cabinet]
id = "cab-cam"
[broker]
url = "mqtt://127.0.0.1:1"
[buffer]
commit_interval_s = 0.05
[[devices]]
name = "cam1"
driver = "onvif"
address = "{camera.address}"
{credentials}
drift_max_s = 30
subscription_lifetime_s = 2
pull_timeout_s = 0.2
poll_interval_s = 0.2
timeout_s = 1
[devices.alarms]
raise_after = 2
clear_after = 2
"""
    )
    return path


async def value_of(agent: Agent, point: str) -> object:
    readings, _ = await buffered(agent)
    values = [r.value for r in readings if r.point == point]
    return values[-1] if values else None


async def test_each_camera_alarm_is_raised_once_and_cleared_once(tmp_path: Path) -> None:
    async with (
        CameraSimulator(username="operator", password="s3cret") as camera,
        running_agent(camera_cabinet(tmp_path, camera)) as agent,
    ):
        alarms = agent.alarms["cam1"]
        await wait_until(lambda: camera.subscriptions_created >= 1, timeout=15, what="the camera subscribed")
        await wait_until(
            lambda: value_of(agent, "cam1/model"), timeout=15, what="the camera's model in the buffer"
        )
        for kind, alarm in (("tamper", "camera_tampered"), ("storage_failure", "camera_storage_failure")):
            camera.raise_event(kind, True)
            await wait_until(lambda a=alarm: a in alarms.active, timeout=10, what=f"{alarm} raised")
            camera.raise_event(kind, False)
            await wait_until(lambda a=alarm: a not in alarms.active, timeout=10, what=f"{alarm} cleared")
        camera.drift_s = 120.0
        await wait_until(lambda: "camera_clock_drift" in alarms.active, timeout=10, what="drift raised")
        polls = agent.pollers[0].stats.polls
        await wait_until(lambda: agent.pollers[0].stats.polls >= polls + 4, timeout=10, what="more polls")
        camera.drift_s = 0.0
        await wait_until(lambda: "camera_clock_drift" not in alarms.active, timeout=10, what="drift cleared")
        found = await alarm_events(agent)
        assert [(kind, alarm) for kind, alarm, _ in found] == [
            ("alarm_raised", "camera_tampered"),
            ("alarm_cleared", "camera_tampered"),
            ("alarm_raised", "camera_storage_failure"),
            ("alarm_cleared", "camera_storage_failure"),
            ("alarm_raised", "camera_clock_drift"),
            ("alarm_cleared", "camera_clock_drift"),
        ]
        drift = found[4][2]
        assert isinstance(drift, float) and 115 < drift < 125


async def test_a_camera_that_stops_answering_is_lost_once_and_back_once(tmp_path: Path) -> None:
    async with (
        CameraSimulator(username="operator", password="s3cret") as camera,
        running_agent(camera_cabinet(tmp_path, camera)) as agent,
    ):
        poller = agent.pollers[0]
        await wait_until(lambda: poller.stats.polls >= 2 and poller.stats.online, timeout=15, what="online")
        camera.hang()
        await wait_until(lambda: poller.lost, timeout=20, what="the camera lost")
        failures = poller.stats.failures
        await wait_until(lambda: poller.stats.failures >= failures + 3, timeout=20, what="more failed polls")
        camera.answer()
        await wait_until(lambda: not poller.lost, timeout=20, what="the camera back")
        assert await device_events(agent, "cam1") == ["device_lost", "device_back"]
        assert await value_of(agent, "cam1/reachable") is True


async def test_an_anonymous_camera_is_watched_and_its_alarm_raised(tmp_path: Path) -> None:
    async with (
        CameraSimulator(anonymous=True) as camera,
        running_agent(camera_cabinet(tmp_path, camera, anonymous=True)) as agent,
    ):
        await wait_until(lambda: camera.subscriptions_created >= 1, timeout=15, what="subscribed")
        await wait_until(lambda: value_of(agent, "cam1/model"), timeout=15, what="the model buffered")
        camera.raise_event("tamper", True)
        alarms = agent.alarms["cam1"]
        await wait_until(lambda: "camera_tampered" in alarms.active, timeout=10, what="tamper raised")
        assert camera.failed_auth == 0


async def test_a_camera_without_events_keeps_its_health_readings_and_says_why_events_are_unknown(
    tmp_path: Path,
) -> None:
    async with (
        CameraSimulator(username="operator", password="s3cret", events_service=False) as camera,
        running_agent(camera_cabinet(tmp_path, camera)) as agent,
    ):
        poller = agent.pollers[0]
        await wait_until(lambda: camera.requests["GetServices"] >= 2, timeout=15, what="a retry")
        polls = poller.stats.polls
        await wait_until(lambda: poller.stats.polls >= polls + 2, timeout=10, what="more polls")
        assert poller.stats.online
        readings, _ = await buffered(agent)
        tamper = [r for r in readings if r.point == "cam1/tamper"][-1]
        assert (tamper.quality, tamper.reason) == (Quality.UNCERTAIN, "events_unavailable")
        assert [r.value for r in readings if r.point == "cam1/model"][-1] == "CE-Cam 4000"
