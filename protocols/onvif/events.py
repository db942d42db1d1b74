"""A camera's PullPoint subscription, kept alive: created, pulled, renewed before it expires, and
created again when the camera lost it (a restart, an expiry while it was unreachable).

Renewal is ours, not the library's ``PullPointManager``: that one never renews more often than every
48 s and waits 40 s after an error, whatever lifetime the camera was asked for. Here the subscription is
renewed at half its lifetime, so one lost Renew still leaves time for the next.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from protocols.errors import DriverError
from protocols.onvif.answers import EventChange, event_change
from protocols.onvif.auth_gate import AuthGate
from protocols.onvif.calls import Explain, soap_call
from protocols.onvif.config import OnvifDevice
from protocols.onvif.errors import BadAnswer
from protocols.onvif.session import CameraSession

logger = logging.getLogger(__name__)

MAX_MESSAGES_READ = 1024  # notifications looked at per PullMessages answer, whatever it holds
# A camera that ignores the pull Timeout and answers at once would be pulled in a tight loop: pulls
# are at least this far apart, and empty answers that come back early space them out further.
MIN_PULL_INTERVAL_S = 0.2
MAX_EARLY_BACKOFF_S = 5.0


def duration(seconds: float) -> str:
    return f"PT{seconds:.3f}".rstrip("0").rstrip(".") + "S"


def granted_s(answer: Any, asked_s: float) -> float:
    """The lifetime the camera granted (TerminationTime - CurrentTime, both its clock), when shorter
    than asked; cameras may cap it. Never below 1 s, so a confused camera is not renewed in a loop."""
    current = getattr(answer, "CurrentTime", None)
    termination = getattr(answer, "TerminationTime", None)
    if isinstance(current, dt.datetime) and isinstance(termination, dt.datetime):
        try:
            return max(1.0, min(asked_s, (termination - current).total_seconds()))
        except TypeError:  # one naive, one aware
            return asked_s
    return asked_s


class Subscription:
    """One PullPoint subscription at a time; ``pull_forever`` yields the changes its messages carry."""

    def __init__(
        self, device: OnvifDevice, session: CameraSession, gate: AuthGate, *, explain: Explain | None = None
    ) -> None:
        self._device = device
        self._explain = explain
        self._session = session
        self._gate = gate
        self._manager: Any = None
        self.renewals = 0
        self.created = 0

    @property
    def active(self) -> bool:
        return self._manager is not None

    async def _call(self, operation: str, call: Callable[[], Awaitable[Any]], extra_s: float = 0.0) -> Any:
        return await soap_call(
            self._device.name,
            operation,
            call,
            timeout_s=self._device.timeout_s + extra_s,
            gate=self._gate,
            explain=self._explain,
        )

    async def pull_forever(self) -> AsyncIterator[list[EventChange]]:
        """Subscribe, then pull until something fails (a ``DriverError`` is raised; the caller retries)."""
        device = self._device
        lifetime = device.subscription_lifetime_s
        if not self._gate.verified:  # one authenticated call before discovery, which makes two
            devicemgmt = await self._session.devicemgmt()
            await self._call("GetDeviceInformation", devicemgmt.GetDeviceInformation)
        await self._call("GetServices", self._session.discover)
        events = await self._session.events()
        created = await self._call(
            "CreatePullPointSubscription",
            lambda: events.CreatePullPointSubscription({"InitialTerminationTime": duration(lifetime)}),
        )
        address = getattr(
            getattr(getattr(created, "SubscriptionReference", None), "Address", None), "_value_1", None
        )
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise BadAnswer(
                device.name, "CreatePullPointSubscription", "no subscription address in the answer"
            )
        manager, pullpoint = await self._session.pullpoint(address)
        self._manager, self.created = manager, self.created + 1
        renew_at = time.monotonic() + granted_s(created, lifetime) / 2
        early_backoff_s = MIN_PULL_INTERVAL_S
        try:
            while True:
                if time.monotonic() >= renew_at:
                    renewed = await self._call(
                        "Renew", lambda: manager.Renew({"TerminationTime": duration(lifetime)})
                    )
                    self.renewals += 1
                    renew_at = time.monotonic() + granted_s(renewed, lifetime) / 2
                wait = max(0.0, min(device.pull_timeout_s, renew_at - time.monotonic()))
                started = time.monotonic()
                answer = await self._call(
                    "PullMessages",
                    lambda wait=wait: pullpoint.PullMessages(  # type: ignore[misc]
                        {"Timeout": dt.timedelta(seconds=wait), "MessageLimit": device.pull_message_limit}
                    ),
                    extra_s=wait,
                )
                took = time.monotonic() - started
                changes = self._changes(answer)
                if changes:
                    yield changes
                if not changes and took < wait / 2:  # empty, and long before the Timeout we asked for
                    pause = early_backoff_s
                    early_backoff_s = min(MAX_EARLY_BACKOFF_S, early_backoff_s * 2)
                else:
                    pause = MIN_PULL_INTERVAL_S - (time.monotonic() - started)
                    early_backoff_s = MIN_PULL_INTERVAL_S
                pause = min(pause, renew_at - time.monotonic())  # never past the renewal
                if pause > 0:
                    await asyncio.sleep(pause)
        except DriverError:
            self._manager = None  # lost or broken: the next call creates another
            raise

    def _changes(self, answer: Any) -> list[EventChange]:
        messages = getattr(answer, "NotificationMessage", None)
        if messages is None:
            return []
        if not isinstance(messages, list):
            raise BadAnswer(self._device.name, "PullMessages", "NotificationMessage is not a list")
        changes = []
        for message in messages[:MAX_MESSAGES_READ]:
            try:
                change = event_change(message)
            except ValueError as exc:
                logger.warning("%s: PullMessages: a notification is skipped: %s", self._device.name, exc)
                continue
            if change is not None:
                changes.append(change)
        return changes

    async def unsubscribe(self) -> None:
        """Best effort at close: the camera drops the subscription at its termination time anyway."""
        manager, self._manager = self._manager, None
        if manager is None:
            return
        try:
            await self._call("Unsubscribe", manager.Unsubscribe)
        except DriverError as exc:
            logger.debug("%s: Unsubscribe: %s", self._device.name, exc)
