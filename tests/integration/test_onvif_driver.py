"""The ONVIF driver against the camera simulator over real HTTP sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocols.device import BuildContext
from protocols.driver import PointValue, PushingDriver
from protocols.errors import DeviceTimeout, DeviceUnreachable
from protocols.onvif.config import OnvifDevice
from protocols.onvif.driver import OnvifDriver, build
from protocols.onvif.errors import AuthenticationFailed
from protocols.onvif.simulator import CameraSimulator
from protocols.quality import Quality
from protocols.testing import wait_until

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return int(time.time() * 1000)


def make_driver(tmp_path: Path, camera: CameraSimulator, **fields: Any) -> OnvifDriver:
    config = {
        "driver": "onvif",
        "name": "cam1",
        "address": camera.address,
        "username": "admin",
        "password": "admin",
        "timeout_s": 1.0,
        "digital_inputs": ["1", "2"],
    }
    # The config floors the backoff (10 s, 60 s) to keep accounts safe; tests shorten the gate's own.
    backoff = {key: fields.pop(key) for key in ("auth_retry_min_s", "auth_retry_max_s") if key in fields}
    config.update(fields)
    device = msgspec.convert(config, OnvifDevice)
    driver = build(device, BuildContext(config_dir=tmp_path, profile_dirs=[], now_ms=now_ms))
    driver.gate.minimum_s = backoff.get("auth_retry_min_s", driver.gate.minimum_s)
    driver.gate.maximum_s = backoff.get("auth_retry_max_s", driver.gate.maximum_s)
    return driver


@pytest.fixture
async def camera() -> AsyncIterator[CameraSimulator]:
    async with CameraSimulator(drift_s=120.0, serial="SN-42") as sim:
        yield sim


def by_name(values: list[PointValue]) -> dict[str, PointValue]:
    return {value.quantity: value for value in values}


class EventCollector:
    """Runs ``driver.changes()`` in a task and keeps every value it yields, in order."""

    def __init__(self, driver: OnvifDriver) -> None:
        self.driver = driver
        self.values: list[PointValue] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for batch in self.driver.changes():
            self.values.extend(batch)

    def of(self, quantity: str) -> list[object]:
        return [v.value for v in self.values if v.quantity == quantity]

    async def __aenter__(self) -> EventCollector:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task
        await self.driver.close()


async def test_device_information_and_clock_drift(tmp_path: Path, camera: CameraSimulator) -> None:
    driver = make_driver(tmp_path, camera)
    assert isinstance(driver, PushingDriver)
    try:
        await driver.connect()
        values = by_name(await driver.read())
        assert [p.name for p in driver.points] == list(by_name(await driver.read()))
        assert values["reachable"].value is True
        assert (values["model"].value, values["firmware"].value, values["serial"].value) == (
            "CE-Cam 4000",
            "4.2.1",
            "SN-42",
        )
        assert all(
            values[q].quality == Quality.GOOD for q in ("model", "firmware", "serial", "clock_drift_s")
        )
        drift = values["clock_drift_s"].value
        assert isinstance(drift, float) and abs(drift - 120.0) < 1.0
        camera.drift_s = -30.0
        values = by_name(await driver.read())
        assert abs(values["clock_offset_s"].value + 30.0) < 1.0  # type: ignore[operator]
        assert abs(values["clock_drift_s"].value - 30.0) < 1.0  # type: ignore[operator]
        # No subscription yet: the event points say their state is not known, not "false".
        assert values["tamper"].quality == Quality.UNCERTAIN
    finally:
        await driver.close()


async def test_events_pulled_and_renewed_over_a_long_accelerated_run(
    tmp_path: Path, camera: CameraSimulator
) -> None:
    """A 1 s subscription over 8 s: renewed every half second, never lost, no event missed."""
    driver = make_driver(tmp_path, camera, subscription_lifetime_s=1.0, pull_timeout_s=0.5)
    async with EventCollector(driver) as events:
        await wait_until(lambda: events.of("tamper") == [False], timeout=5, what="initial states")
        sent: list[tuple[str, bool]] = []
        deadline = time.monotonic() + 8.0
        step = 0
        while time.monotonic() < deadline:
            kind = ("motion", "tamper", "storage_failure", "digital_input_2")[step % 4]
            active = (step // 4) % 2 == 0
            if kind.startswith("digital_input"):
                camera.raise_event("digital_input", active, token="2")
            else:
                camera.raise_event(kind, active)
            sent.append((kind, active))
            step += 1
            await asyncio.sleep(0.1)  # pacing of the events raised, not a wait for a result
        for kind in ("motion", "tamper", "storage_failure", "digital_input_2"):
            expected = [False, *[active for k, active in sent if k == kind]]
            await wait_until(lambda k=kind, e=expected: events.of(k) == e, timeout=5, what=f"every {kind}")
        assert camera.subscriptions_created == 1, "the subscription was lost and created again"
        assert camera.renewals >= 10
        assert driver.subscription.renewals == camera.renewals
        values = by_name(await driver.read())
        last_motion = [active for kind, active in sent if kind == "motion"][-1]
        assert values["motion"] == PointValue("motion", last_motion)


async def test_a_camera_granting_a_shorter_lifetime_is_renewed_in_time(tmp_path: Path) -> None:
    async with CameraSimulator(max_lifetime_s=1.0) as camera:
        driver = make_driver(tmp_path, camera, subscription_lifetime_s=60.0, pull_timeout_s=0.5)
        async with EventCollector(driver) as events:
            await wait_until(lambda: camera.renewals >= 4, timeout=5, what="renewals every half second")
            camera.raise_event("motion", True)
            await wait_until(lambda: events.of("motion")[-1:] == [True], timeout=5, what="motion")
            assert camera.subscriptions_created == 1


async def test_subscription_created_again_after_the_camera_restarts(
    tmp_path: Path, camera: CameraSimulator
) -> None:
    driver = make_driver(tmp_path, camera, subscription_lifetime_s=5.0, pull_timeout_s=0.5, timeout_s=0.5)
    async with EventCollector(driver) as events:
        await wait_until(lambda: camera.subscriptions_created == 1, timeout=5, what="subscription")
        camera.raise_event("motion", True)
        await wait_until(lambda: events.of("motion")[-1:] == [True], timeout=5, what="motion")
        await camera.restart()  # subscriptions lost, as at a reboot
        camera.raise_event("tamper", True)  # while no one is subscribed: the Initialized state tells it
        await wait_until(lambda: camera.subscriptions_created == 2, timeout=10, what="new subscription")
        await wait_until(lambda: events.of("tamper")[-1:] == [True], timeout=5, what="tamper after restart")
        camera.raise_event("digital_input", True, token="1")
        await wait_until(lambda: events.of("digital_input_1")[-1:] == [True], timeout=5, what="input 1")


async def test_wrong_password_one_error_then_backoff_and_bounded_attempts(
    tmp_path: Path, camera: CameraSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Read as often as the agent may, events running too: the camera sees one attempt per backoff."""
    caplog.set_level(logging.DEBUG)
    driver = make_driver(tmp_path, camera, password="wrong-one", auth_retry_min_s=0.5, auth_retry_max_s=1.0)
    refusals = 0
    async with EventCollector(driver):
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            with pytest.raises(AuthenticationFailed) as raised:
                await driver.read()
            refusals += 1
            assert raised.value.reason == "auth_failed"
            assert "cam1" in str(raised.value) and "password" in str(raised.value)
            await asyncio.sleep(0.01)  # the agent's poll interval, made very short
        elapsed = time.monotonic() - started
    assert refusals > 100
    # Attempts at 0, 0.5, 1.5, 2.5 s (delays 0.5, 1, 1): at most one per window however many reads.
    assert 2 <= camera.failed_auth <= 1 + int((elapsed - 0.5) // 1.0) + 1
    # Nothing else went out: each refusal is followed by one question of the clock without credentials
    # (is the camera's clock why it refuses?), which is no login attempt.
    assert camera.requests["GetDeviceInformation"] == camera.failed_auth, (
        "a request went out during a backoff"
    )
    assert camera.requests["GetSystemDateAndTime"] == camera.failed_auth
    assert sum(camera.requests.values()) == 2 * camera.failed_auth
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "cam1" in errors[0].getMessage() and "password" in errors[0].getMessage()
    assert "wrong-one" not in caplog.text


async def test_right_password_after_a_refusal_is_used_once_the_backoff_passes(
    tmp_path: Path, camera: CameraSimulator
) -> None:
    driver = make_driver(tmp_path, camera, password="wrong-one", auth_retry_min_s=0.3, auth_retry_max_s=0.3)
    async with EventCollector(driver) as events:
        with pytest.raises(AuthenticationFailed):
            await driver.read()
        camera.users["admin"] = "wrong-one"  # the camera's password is changed to what the cabinet has
        with pytest.raises(AuthenticationFailed):
            await driver.read()  # still within the backoff: not even tried
        assert camera.failed_auth == 1

        async def reads_good() -> bool:
            try:
                return by_name(await driver.read())["model"].quality == Quality.GOOD
            except AuthenticationFailed:
                return False

        await wait_until(reads_good, timeout=3, what="a good read after the backoff")
        assert camera.failed_auth == 1
        camera.raise_event("tamper", True)
        await wait_until(lambda: events.of("tamper")[-1:] == [True], timeout=8, what="events resumed")


async def test_refusal_by_a_camera_whose_clock_drifted_says_so(tmp_path: Path) -> None:
    """Right password, but the camera's clock is 2 min ahead and it refuses tokens 30 s off its time."""
    async with CameraSimulator(drift_s=120.0, token_window_s=30.0) as camera:
        driver = make_driver(tmp_path, camera, drift_max_s=10.0)
        try:
            with pytest.raises(AuthenticationFailed) as raised:
                await driver.read()
            assert "clock is 120 s ahead of the cabinet's" in str(raised.value)
            assert "NTP" in str(raised.value)
            assert camera.failed_auth == 1  # the clock was asked without credentials: no login attempt
            camera.drift_s = 0.0
            driver.gate.accepted()  # what the backoff would do after auth_retry_min_s
            assert by_name(await driver.read())["model"].quality == Quality.GOOD
        finally:
            await driver.close()


async def test_camera_that_stops_answering_times_out_and_recovers(
    tmp_path: Path, camera: CameraSimulator
) -> None:
    driver = make_driver(tmp_path, camera, timeout_s=0.3, subscription_lifetime_s=2.0, pull_timeout_s=0.2)
    async with EventCollector(driver) as events:
        assert by_name(await driver.read())["reachable"].value is True
        camera.hang()
        started = time.monotonic()
        with pytest.raises(DeviceTimeout) as raised:
            await driver.read()
        assert time.monotonic() - started < 0.3 + 0.5
        assert raised.value.reason == "timeout" and "cam1" in str(raised.value)
        camera.raise_event("motion", True)
        camera.answer()

        async def reads_good() -> bool:
            try:
                return by_name(await driver.read())["reachable"].value is True
            except DeviceTimeout:
                return False

        await wait_until(reads_good, timeout=5, what="the camera answering again")
        await wait_until(lambda: events.of("motion")[-1:] == [True], timeout=5, what="motion after the hang")


async def test_camera_gone_is_unreachable(tmp_path: Path, camera: CameraSimulator) -> None:
    driver = make_driver(tmp_path, camera, timeout_s=0.5)
    try:
        await driver.read()
        await camera.stop()
        with pytest.raises((DeviceUnreachable, DeviceTimeout)) as raised:
            await driver.read()
        assert "cam1" in str(raised.value)
        await camera.start()
        await wait_until(lambda: _reads(driver), timeout=5, what="the camera back")
    finally:
        await driver.close()


async def _reads(driver: OnvifDriver) -> bool:
    try:
        await driver.read()
    except (DeviceUnreachable, DeviceTimeout):
        return False
    return True


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", "malformed_answer"),
        ("wrong_element", "malformed_answer"),
        ("fault", "fault"),
        ("empty", "malformed_answer"),
    ],
)
async def test_malformed_answer_gives_bad_readings_and_one_log_line(
    tmp_path: Path, camera: CameraSimulator, caplog: pytest.LogCaptureFixture, kind: str, reason: str
) -> None:
    driver = make_driver(tmp_path, camera, subscription_lifetime_s=2.0, pull_timeout_s=0.2)
    async with EventCollector(driver):
        await wait_until(lambda: camera.subscriptions_created == 1, timeout=5, what="subscription")
        caplog.clear()
        camera.malform(kind, "GetDeviceInformation")
        for _ in range(3):
            values = by_name(await driver.read())
            for quantity in ("model", "firmware", "serial"):
                assert values[quantity] == PointValue(quantity, None, Quality.BAD, reason)
            assert values["clock_drift_s"].quality == Quality.GOOD  # the rest of the camera answers
            assert values["reachable"].value is True
        lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert "cam1" in lines[0].getMessage() and "GetDeviceInformation" in lines[0].getMessage()
        assert "zeep" not in lines[0].getMessage() and "lxml" not in lines[0].getMessage()
        camera.heal()
        assert by_name(await driver.read())["model"].value == "CE-Cam 4000"


async def test_everything_malformed_never_crashes_the_driver(
    tmp_path: Path, camera: CameraSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Every answer garbage, events included: bad readings, no exception, the broken subscription
    logged once however often it is tried again, and all back once healed."""
    driver = make_driver(tmp_path, camera, subscription_lifetime_s=2.0, pull_timeout_s=0.2, timeout_s=0.5)
    async with EventCollector(driver) as events:
        await wait_until(lambda: camera.subscriptions_created == 1, timeout=5, what="subscription")
        camera.malform("garbage")
        await wait_until(lambda: not driver.subscription.active, timeout=5, what="the subscription broken")
        values = by_name(await driver.read())
        assert values["clock_drift_s"].quality == Quality.BAD
        assert values["tamper"].quality == Quality.UNCERTAIN
        tries = camera.requests["GetServices"]
        await wait_until(lambda: camera.requests["GetServices"] >= tries + 2, timeout=10, what="two retries")
        subscription_lines = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and "event subscription" in r.getMessage()
        ]
        assert len(subscription_lines) == 1, [r.getMessage() for r in subscription_lines]
        camera.heal()
        camera.raise_event("storage_failure", True)
        await wait_until(lambda: events.of("storage_failure")[-1:] == [True], timeout=10, what="events back")
