"""The ONVIF driver against cameras that misbehave, over real HTTP sockets: anonymous access, no
Events service, an endless answer, HTTP 401/403, pulls answered at once, foreign addresses, and what
the libraries would log."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from protocols.onvif.errors import AuthenticationFailed
from protocols.onvif.simulator import CameraSimulator
from protocols.onvif.transport import MAX_ANSWER_BYTES
from protocols.quality import Quality
from protocols.testing import wait_until
from tests.integration.test_onvif_driver import EventCollector, by_name, make_driver

pytestmark = pytest.mark.integration


async def test_an_anonymous_camera_is_read_and_its_events_pulled(tmp_path: Path) -> None:
    async with CameraSimulator(anonymous=True) as camera:
        driver = make_driver(tmp_path, camera, username=None, password=None)
        async with EventCollector(driver) as events:
            values = by_name(await driver.read())
            assert values["model"].value == "CE-Cam 4000" and values["model"].quality == Quality.GOOD
            assert values["clock_drift_s"].quality == Quality.GOOD
            await wait_until(lambda: events.of("tamper") == [False], timeout=5, what="initial states")
            camera.raise_event("tamper", True)
            await wait_until(lambda: events.of("tamper") == [False, True], timeout=5, what="tamper")
        assert camera.failed_auth == 0


async def test_a_camera_without_an_events_service_still_gives_health_and_says_why_events_are_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with CameraSimulator(events_service=False) as camera:
        driver = make_driver(tmp_path, camera, timeout_s=0.5)
        async with EventCollector(driver):
            await wait_until(lambda: camera.requests["GetServices"] >= 3, timeout=10, what="two retries")
            values = by_name(await driver.read())
            assert values["model"].quality == Quality.GOOD
            assert values["clock_drift_s"].quality == Quality.GOOD
            for quantity in ("tamper", "motion", "storage_failure", "digital_input_1"):
                assert values[quantity].quality == Quality.UNCERTAIN
                assert values[quantity].reason == "events_unavailable"
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(lines) == 1, lines
            assert "cam1" in lines[0] and "events service" in lines[0]


async def test_an_endless_answer_is_a_bad_answer_read_within_a_bound(tmp_path: Path) -> None:
    async with CameraSimulator() as camera:
        driver = make_driver(tmp_path, camera, timeout_s=5.0)
        try:
            camera.endless = True
            started = time.monotonic()
            values = by_name(await driver.read())
            assert time.monotonic() - started < 4.0  # cut short, not read until the timeout
            for quantity in ("model", "clock_drift_s"):
                assert values[quantity].quality == Quality.BAD
                assert values[quantity].reason == "answer_too_large"
            # What the camera got onto the wire before we hung up: the cap plus the sockets' buffers.
            assert camera.endless_sent < 2 * (MAX_ANSWER_BYTES + 16 * 1024 * 1024)
        finally:
            await driver.close()


@pytest.mark.parametrize("status", [401, 403])
async def test_http_401_or_403_is_a_refusal_held_off_by_the_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    async with CameraSimulator() as camera:
        camera.http_refusal = status
        driver = make_driver(tmp_path, camera, password="wrong-one")
        try:
            with pytest.raises(AuthenticationFailed, match=f"refused our credentials \\(HTTP {status}\\)"):
                await driver.read()
            for _ in range(19):
                with pytest.raises(AuthenticationFailed, match="not retried"):
                    await driver.read()
            assert camera.failed_auth == 1
            assert driver.gate.refused and not driver.gate.verified
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "cam1" in errors[0].getMessage()
        finally:
            await driver.close()


async def test_a_fault_without_a_subcode_does_not_count_as_credentials_accepted(tmp_path: Path) -> None:
    async with CameraSimulator() as camera:
        driver = make_driver(tmp_path, camera)
        try:
            camera.malform("bare_fault")
            values = by_name(await driver.read())
            assert values["model"].quality == Quality.BAD and values["model"].reason == "fault"
            assert not driver.gate.verified
            camera.heal()
            await driver.read()
            assert driver.gate.verified
        finally:
            await driver.close()


async def test_a_camera_answering_pulls_at_once_is_not_pulled_in_a_loop_and_repeats_are_dropped(
    tmp_path: Path,
) -> None:
    async with CameraSimulator() as camera:
        camera.pull_storm = True  # every PullMessages answered at once with every state again
        driver = make_driver(tmp_path, camera, pull_timeout_s=5.0)
        async with EventCollector(driver) as events:
            await wait_until(lambda: events.of("tamper") == [False], timeout=5, what="initial states")
            camera.raise_event("motion", True)
            await wait_until(lambda: events.of("motion") == [False, True], timeout=5, what="motion")
            pulls, started = camera.requests["PullMessages"], time.monotonic()
            await wait_until(
                lambda: camera.requests["PullMessages"] >= pulls + 5, timeout=10, what="five more pulls"
            )
            assert time.monotonic() - started >= 0.8  # at most one pull per 0.2 s
            assert events.of("motion") == [False, True]
            assert events.of("tamper") == [False]
            assert len(events.values) == 3 + len(driver.device.digital_inputs) + 1


async def test_empty_answers_that_come_at_once_space_the_pulls_out(tmp_path: Path) -> None:
    async with CameraSimulator() as camera:
        camera.pull_at_once = True  # ignores the Timeout asked: empty answers in a loop
        driver = make_driver(tmp_path, camera, pull_timeout_s=5.0)
        async with EventCollector(driver) as events:
            await wait_until(lambda: events.of("tamper") == [False], timeout=5, what="initial states")
            pulls, started = camera.requests["PullMessages"], time.monotonic()
            await wait_until(
                lambda: camera.requests["PullMessages"] >= pulls + 5, timeout=15, what="five more pulls"
            )
            # Spaced 0.2, 0.4, 0.8, 1.6 s..., not the 0.2 s floor alone (0.8 s for five).
            assert time.monotonic() - started >= 2.0
            camera.raise_event("tamper", True)  # an event still comes through
            await wait_until(lambda: events.of("tamper") == [False, True], timeout=10, what="tamper")


@pytest.mark.parametrize("which", ["subscription", "events service"])
async def test_an_address_on_another_host_is_refused_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    async with CameraSimulator() as camera:
        # The same machine, but not the host configured: what was sent there would be counted here.
        if which == "subscription":
            camera.subscription_host = "localhost"
        else:
            camera.events_host = "localhost"
        driver = make_driver(tmp_path, camera, timeout_s=0.5)
        async with EventCollector(driver):
            await wait_until(lambda: camera.requests["GetServices"] >= 3, timeout=10, what="retries")
            assert camera.requests["PullMessages"] == 0
            if which == "events service":
                assert camera.requests["CreatePullPointSubscription"] == 0
            values = by_name(await driver.read())
            assert values["tamper"].quality == Quality.UNCERTAIN
            lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(lines) == 1, lines
            assert "'localhost'" in lines[0] and "refused" in lines[0]


async def test_debug_logging_shows_no_digest_nonce_or_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with CameraSimulator(password="hunter2-secret") as camera:
        driver = make_driver(tmp_path, camera, password="hunter2-secret", pull_timeout_s=0.2)
        async with EventCollector(driver) as events:
            await driver.read()
            await wait_until(lambda: events.of("tamper") == [False], timeout=5, what="initial states")
            await wait_until(lambda: camera.requests["PullMessages"] >= 3, timeout=5, what="pulls")
    for record in caplog.records:
        text = record.getMessage()
        for secret in ("PasswordDigest", "Nonce", "hunter2", "wsse:"):
            assert secret not in text, (record.name, text[:300])
    # Even at a level that passes, a library record carrying a WS-Security header is dropped.
    caplog.clear()
    library = logging.getLogger("onvif")  # the library's own logger
    library.warning("posting <wsse:Security><wsse:Nonce>abc</wsse:Nonce></wsse:Security>")
    library.warning("a plain library warning")
    assert [r.getMessage() for r in caplog.records] == ["a plain library warning"]


async def test_a_malformed_value_is_one_line_without_the_librarys_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with CameraSimulator() as camera:
        driver = make_driver(tmp_path, camera)
        try:
            camera.malform("bad_value", "GetSystemDateAndTime")
            for _ in range(3):
                values = by_name(await driver.read())
                assert values["clock_drift_s"].quality == Quality.BAD
            lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert [r.name for r in lines] == ["protocols.onvif.driver"], [r.getMessage() for r in lines]
            assert not any(r.exc_info for r in caplog.records)
        finally:
            await driver.close()
