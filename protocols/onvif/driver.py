"""The ONVIF camera driver: health by polling, events by a PullPoint subscription.

``read`` asks GetDeviceInformation (model, firmware, serial) and GetSystemDateAndTime (the camera's
clock against the cabinet's, ``BuildContext.now_ms``) and reports the event points' last known state.
``changes`` keeps a PullPoint subscription and yields each tamper, motion, storage failure and digital
input change as it comes. A camera that does not answer raises ``DeviceUnreachable`` or
``DeviceTimeout``; one that refuses the password raises ``AuthenticationFailed`` and is left alone for
the backoff (``AuthGate``); one that answers nonsense gives bad readings with a reason and a single
log line per operation until it answers properly again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from protocols.backoff import Backoff
from protocols.device import BuildContext, BuildError
from protocols.driver import AlarmRule, PointSpec, PointValue
from protocols.errors import DriverError, WriteRejected
from protocols.fleet.broker_url import SecretFileError, read_secret_file
from protocols.onvif.answers import EventChange, camera_time, device_information
from protocols.onvif.auth_gate import AuthGate
from protocols.onvif.calls import soap_call
from protocols.onvif.config import OnvifDevice
from protocols.onvif.errors import AuthenticationFailed, BadAnswer
from protocols.onvif.events import Subscription
from protocols.onvif.session import CameraSession
from protocols.quality import Quality

logger = logging.getLogger(__name__)

# GetSystemDateAndTime has whole seconds: the camera's true time is up to 1 s past what it says.
CLOCK_RESOLUTION_S = 1.0
NO_EVENT_YET = "no_event_yet"
EVENTS_UNSUBSCRIBED = "events_unsubscribed"
AUTH_RECHECK_S = 5.0


def camera_points(device: OnvifDevice) -> list[PointSpec]:
    drift = AlarmRule(
        name="camera_clock_drift",
        severity="warning",
        above=device.drift_max_s,
        description=f"the camera's clock is more than {device.drift_max_s:g} s off the cabinet's",
    )
    points = [
        PointSpec("reachable", type="bool", role="online", description="the camera answers"),
        PointSpec("model", type="str"),
        PointSpec("firmware", type="str"),
        PointSpec("serial", type="str"),
        PointSpec(
            "clock_drift_s",
            unit="s",
            role="clock_drift",
            alarm=drift,
            description="how far the camera's clock is off the cabinet's, either way",
        ),
        PointSpec("clock_offset_s", unit="s", description="camera's clock minus the cabinet's"),
        PointSpec(
            "tamper",
            type="bool",
            role="tamper",
            alarm=AlarmRule(
                name="camera_tampered",
                when_true=True,
                description="the camera reports tampering (covered, moved, blinded)",
            ),
        ),
        PointSpec("motion", type="bool", role="motion"),
        PointSpec(
            "storage_failure",
            type="bool",
            role="storage_failure",
            alarm=AlarmRule(
                name="camera_storage_failure",
                when_true=True,
                description="the camera reports its storage failed",
            ),
        ),
    ]
    points += [
        PointSpec(
            f"digital_input_{number}",
            type="bool",
            role="digital_input",
            description=f"the camera's digital input {token}",
        )
        for number, token in enumerate(device.digital_inputs, start=1)
    ]
    return points


class OnvifDriver:
    def __init__(
        self,
        device: OnvifDevice,
        *,
        password: str | None,
        now_ms: Callable[[], int],
        creating: asyncio.Lock | None = None,
    ) -> None:
        self.device = device
        self._now_ms = now_ms
        self._points = camera_points(device)
        self._session = CameraSession(
            device.name, device.endpoint, device.username, password, creating=creating or asyncio.Lock()
        )
        self.gate = AuthGate(minimum_s=device.auth_retry_min_s, maximum_s=device.auth_retry_max_s)
        self.subscription = Subscription(device, self._session, self.gate, explain=self._explain_refusal)
        self._inputs = {token: f"digital_input_{n}" for n, token in enumerate(device.digital_inputs, start=1)}
        self._events: dict[str, bool | None] = {"tamper": None, "motion": None, "storage_failure": None}
        self._events.update(dict.fromkeys(self._inputs.values()))
        self._events_problem: str | None = None  # why the subscription failed last, until it works
        self._bad: set[str] = set()  # operations whose bad answer was logged, until they answer well
        self._closed = asyncio.Event()

    @property
    def points(self) -> Sequence[PointSpec]:
        return self._points

    async def connect(self) -> None:
        """Nothing to open ahead: every call makes the connection it needs (HTTP, kept alive)."""

    async def write(self, quantity: str, value: float | int | bool) -> None:
        raise WriteRejected(self.device.name, f"{quantity}: a camera has no writable point")

    async def close(self) -> None:
        self._closed.set()
        await self.subscription.unsubscribe()
        await self._session.close()

    # -- polling ------------------------------------------------------------------------------------

    async def read(self) -> list[PointValue]:
        devicemgmt = await self._session.devicemgmt()
        values: dict[str, PointValue] = {"reachable": PointValue("reachable", True)}
        try:
            info = device_information(
                await self._call("GetDeviceInformation", devicemgmt.GetDeviceInformation)
            )
        except (BadAnswer, ValueError) as exc:
            values.update(self._bad_values(exc, "GetDeviceInformation", ("model", "firmware", "serial")))
        else:
            self._good("GetDeviceInformation")
            values.update(
                {
                    q: PointValue(q, v)
                    for q, v in (("model", info.model), ("firmware", info.firmware), ("serial", info.serial))
                }
            )
        try:
            offset = await self._clock_offset_s(devicemgmt)
        except (BadAnswer, ValueError) as exc:
            values.update(self._bad_values(exc, "GetSystemDateAndTime", ("clock_drift_s", "clock_offset_s")))
        else:
            self._good("GetSystemDateAndTime")
            values["clock_drift_s"] = PointValue("clock_drift_s", round(abs(offset), 3))
            values["clock_offset_s"] = PointValue("clock_offset_s", round(offset, 3))
        for quantity, state in self._events.items():
            values[quantity] = self._event_value(quantity, state)
        return [values[point.name] for point in self._points]

    async def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        return await soap_call(
            self.device.name,
            operation,
            call,
            timeout_s=self.device.timeout_s,
            gate=self.gate,
            explain=self._explain_refusal,
        )

    async def _clock_offset_s(self, devicemgmt: Any, *, authless: bool = False) -> float:
        """Camera's clock minus the cabinet's, from a GetSystemDateAndTime timed on the cabinet's clock."""
        before = self._now_ms()
        if authless:  # sent without credentials, as the specification allows: no login attempt
            answer = await soap_call(
                self.device.name,
                "GetSystemDateAndTime",
                devicemgmt.authless_GetSystemDateAndTime,
                timeout_s=self.device.timeout_s,
                gate=None,
            )
        else:
            answer = await self._call("GetSystemDateAndTime", devicemgmt.GetSystemDateAndTime)
        after = self._now_ms()
        camera = camera_time(answer).timestamp() + CLOCK_RESOLUTION_S / 2
        return camera - (before + after) / 2000

    async def _explain_refusal(self) -> str:
        """Why a refusal may not be the password: a camera refuses a token stamped far from its clock."""
        try:
            offset = await self._clock_offset_s(await self._session.devicemgmt(), authless=True)
        except (DriverError, ValueError):
            return ""
        if abs(offset) <= self.device.drift_max_s:
            return ""
        side = "ahead of" if offset > 0 else "behind"
        return (
            f"; the camera's clock is {abs(offset):.0f} s {side} the cabinet's, and cameras refuse a token"
            " stamped far from their own time: set the camera's NTP server"
        )

    def _event_value(self, quantity: str, state: bool | None) -> PointValue:
        if not self.subscription.active:
            return PointValue(quantity, state, Quality.UNCERTAIN, self._events_problem or EVENTS_UNSUBSCRIBED)
        if state is None:
            return PointValue(quantity, None, Quality.UNCERTAIN, NO_EVENT_YET)
        return PointValue(quantity, state)

    def _bad_values(
        self, exc: Exception, operation: str, quantities: tuple[str, ...]
    ) -> dict[str, PointValue]:
        reason = exc.reason if isinstance(exc, BadAnswer) else "malformed_answer"
        if operation not in self._bad:
            self._bad.add(operation)
            detail = exc.detail if isinstance(exc, BadAnswer) else f"{operation}: {exc}"
            logger.warning(
                "%s: the camera's answer is unusable, readings marked bad (%s): %s",
                self.device.name,
                reason,
                detail,
            )
        return {q: PointValue(q, None, Quality.BAD, reason) for q in quantities}

    def _good(self, operation: str) -> None:
        if operation in self._bad:
            self._bad.discard(operation)
            logger.info("%s: %s answers properly again", self.device.name, operation)

    # -- events -------------------------------------------------------------------------------------

    async def changes(self) -> AsyncIterator[list[PointValue]]:
        """Event changes as they come, for as long as the driver is open; yields nothing meanwhile
        when the camera cannot be reached (the poll reports it) or refuses our credentials."""
        retry = Backoff(initial=min(1.0, self.device.timeout_s), maximum=30.0)
        warned = False  # a broken subscription is logged once, until events flow again
        while not self._closed.is_set():
            delay: float | None = None
            try:
                async for changes in self.subscription.pull_forever():
                    retry.reset()
                    self._events_problem = None
                    if warned:
                        warned = False
                        logger.info("%s: event subscription works again", self.device.name)
                    values = [value for change in changes if (value := self._apply(change)) is not None]
                    if values:
                        yield values
            except AuthenticationFailed:
                # Logged once by soap_call. Looking again costs no request while the gate is shut, and
                # events resume soon after a probe (maybe the poll's) finds the password good again.
                delay = min(self.gate.wait_s(), AUTH_RECHECK_S)
            except BadAnswer as exc:
                self._events_problem = exc.reason
                level = logging.DEBUG if warned else logging.WARNING
                warned = True
                logger.log(
                    level, "%s: event subscription: %s; subscribing again", self.device.name, exc.detail
                )
            except DriverError as exc:  # unreachable, timeout: the poll reports it
                logger.debug("%s: event subscription: %s", self.device.name, exc)
            await self._sleep(max(retry.next_delay() if delay is None else delay, 0.05))

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._closed.wait()
        except TimeoutError:
            pass

    def _apply(self, change: EventChange) -> PointValue | None:
        quantity: str | None = change.kind
        if change.kind == "digital_input":
            quantity = self._inputs.get(change.source or "")
        if quantity is None or quantity not in self._events:
            return None  # an input the config does not name
        if self._events[quantity] == change.active:
            return None  # repeated (a camera re-sending its state): nothing changed
        self._events[quantity] = change.active
        return PointValue(quantity, change.active)


def build(device: OnvifDevice, context: BuildContext) -> OnvifDriver:
    """The driver for ``device``; reads its password file (relative to the config's folder), no I/O
    on the camera."""
    password = device.password
    if device.password_file is not None:
        path = Path(device.password_file)
        path = path if path.is_absolute() else context.config_dir / path
        try:
            password = read_secret_file(path)
        except SecretFileError as exc:
            raise BuildError("password_file", f"{exc.path}: {exc.problem}") from exc
    shared = context.shared.setdefault("onvif", {})
    creating = shared.setdefault("creating", asyncio.Lock())  # see CameraSession
    return OnvifDriver(device, password=password, now_ms=context.now_ms, creating=creating)
