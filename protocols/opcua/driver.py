"""The OPC UA driver of a traffic-light controller: reads, writes and pushed changes, over one session.

``read`` reads every node of the profile in one request. ``changes`` keeps a subscription of monitored
items on the ``subscribe = true`` points and yields their changes; when the session is lost (the
controller restarted, the link broke) it opens a new session with jittered backoff and subscribes
again, by itself, for as long as it is iterated. A lost session is noticed by a failed call, by the
keepalive probe (every ``keepalive_s``) or by the subscription's status; ``read`` and ``changes``
share the session, and whichever finds it lost opens the next one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

from protocols.backoff import Backoff
from protocols.device import BuildContext, BuildError
from protocols.driver import PointSpec, PointValue
from protocols.errors import DriverError, WriteRejected
from protocols.fleet.broker_url import SecretFileError, read_secret_file
from protocols.opcua.auth_retry import AuthRetry
from protocols.opcua.codec import check_write
from protocols.opcua.config import OpcuaConfigError, OpcuaDevice
from protocols.opcua.credentials import ClientIdentity, load_identity
from protocols.opcua.errors import SESSION_GONE, TRANSLATED, AccessDenied, status_name, translate
from protocols.opcua.profile import OpcuaProfile, find_profile
from protocols.opcua.session import Session, open_session

_log = logging.getLogger(__name__)

CONNECT_SHARE = 0.9
# Changes kept for a consumer that is slow; past this the oldest go (the next poll has the state).
MAX_QUEUED_CHANGES = 1000


class OpcuaDriver:
    """One controller. The constructor does no I/O; ``connect`` opens the first session."""

    def __init__(
        self,
        device: OpcuaDevice,
        profile: OpcuaProfile,
        *,
        password: str | None = None,
        identity: ClientIdentity | None = None,
    ) -> None:
        self.device = device
        self.profile = profile
        self._password = password
        self._identity = identity
        self._points = tuple(point.spec() for point in profile.points)
        self._session: Session | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._closing = asyncio.Event()
        self._consuming = False
        self._connect_backoff = Backoff(initial=device.reconnect_initial_s, maximum=device.reconnect_max_s)
        self._auth_retry = AuthRetry(minimum=device.auth_retry_min_s, maximum=device.auth_retry_max_s)
        self._refusal: DriverError | None = None  # why the last connect failed, until _retry_at
        self._retry_at = 0.0

    @property
    def points(self) -> Sequence[PointSpec]:
        return self._points

    async def connect(self) -> None:
        self._closed = False
        self._closing.clear()
        async with self._bounded(f"connecting to {self.device.endpoint}"):
            await self._current()

    async def read(self) -> list[PointValue]:
        async with self._bounded("reading"):
            session = await self._current()
            unique = list(session.nodes.values())
            values = await session.client.read_attributes(unique)
        decoded: dict[str, PointValue] = {}
        for node, value in zip(unique, values, strict=True):
            for point_value in session.decode(node.nodeid, value):
                decoded[point_value.quantity] = point_value
        return [decoded[point.name] for point in self.profile.points]

    async def write(self, quantity: str, value: float | int | bool) -> None:
        name = self.device.name
        try:
            point = self.profile.point(quantity)
            checked = check_write(point, value)
        except KeyError:
            raise WriteRejected(name, f"profile {self.profile.name!r} has no point {quantity!r}") from None
        except ValueError as exc:
            raise WriteRejected(name, str(exc)) from exc
        async with self._bounded(f"writing {quantity}"):
            session = await self._current()
            node = session.nodes[point.node]
            # The node's own variant type (Int32, UInt16, Double...): a controller refuses another one.
            current = await node.read_data_value()
            variant_type = current.Value.VariantType if current.Value is not None else ua.VariantType.Null
            if variant_type == ua.VariantType.Null:
                variant_type = _VARIANT_TYPES[point.type]
            try:
                await node.write_value(ua.DataValue(ua.Variant(checked, variant_type)))
            except UaStatusCodeError as exc:
                if exc.code in SESSION_GONE:
                    raise
                raise WriteRejected(
                    name, f"the controller refused {quantity} = {checked!r} ({status_name(exc.code)})"
                ) from exc
            back = await node.read_data_value()
        got = back.Value.Value if back.Value is not None else None
        if not _same(got, checked):
            raise WriteRejected(name, f"{quantity} reads back {got!r} after writing {checked!r}")

    async def changes(self) -> AsyncIterator[list[PointValue]]:
        """Changes of the monitored points, across reconnects, until ``close``. One consumer at a time:
        the session has one subscription, feeding one queue."""
        if self._consuming:
            raise RuntimeError(f"{self.device.name}: changes() is already being iterated")
        self._consuming = True
        try:
            async for batch in self._changes():
                yield batch
        finally:
            self._consuming = False

    async def _changes(self) -> AsyncIterator[list[PointValue]]:
        backoff = Backoff(initial=self.device.reconnect_initial_s, maximum=self.device.reconnect_max_s)
        queue: asyncio.Queue[list[PointValue]] = asyncio.Queue(MAX_QUEUED_CHANGES)
        problem: str | None = None  # logged once while it lasts, not at every attempt
        interval_s = self.device.publishing_interval_ms / 1000
        last_yield = -math.inf
        while not self._closed:
            try:
                session = await self._subscribed(queue)
            except DriverError as exc:
                delay = backoff.next_delay()
                # A refused login is logged where it happens (_current), with its own longer delay.
                log = _log.debug if str(exc) == problem or isinstance(exc, AccessDenied) else _log.warning
                log("%s; subscribing again in %.1f s", exc, delay)
                problem = str(exc)
                await self._pause(delay)
                continue
            if problem is not None:
                _log.warning("%s: subscribed again", self.device.name)
                problem = None
            backoff.reset()
            while not (self._closed or session.lost.is_set()):
                batch = await self._next(queue, session)
                if batch is None:
                    continue
                # At most one batch per publishing interval, whatever the controller sends (a value
                # flapping, a server that ignores the interval): what comes meanwhile is merged.
                await self._pause(last_yield + interval_s - time.monotonic())
                batch = _latest_per_point(batch, _drain(queue))
                last_yield = time.monotonic()
                yield batch
            if not self._closed:
                _log.warning("%s: session lost; reconnecting", self.device.name)

    async def close(self) -> None:
        self._closed = True
        self._closing.set()
        async with self._lock:
            session, self._session = self._session, None
        if session is not None:
            await session.close(self.device.timeout_s)

    async def _current(self) -> Session:
        """The live session, or a new one (the lost one closed first). After a failed attempt the next
        waits out a backoff delay, and calls meanwhile get that failure again without touching the
        controller: the poll and the subscription together never hammer a dead controller, nor lock
        an account with a wrong password."""
        async with self._lock:
            session = self._session
            if session is not None and not session.lost.is_set():
                return session
            self._session = None
            if session is not None:
                await session.close(self.device.timeout_s)
            if self._refusal is not None and time.monotonic() < self._retry_at:
                raise self._refusal.with_traceback(None)
            try:
                # Inside the caller's bound (timeout_s): a connect that times out is a failure to
                # remember, not only a cancellation.
                async with asyncio.timeout(self.device.timeout_s * CONNECT_SHARE):
                    session = await open_session(
                        self.device, self.profile, password=self._password, identity=self._identity
                    )
            except (*TRANSLATED, DriverError) as exc:
                refusal = translate(self.device, exc, f"connecting to {self.device.endpoint}")
                if isinstance(refusal, AccessDenied):
                    delay = self._auth_retry.next_delay()
                    # Once per refusal, minutes apart: whoever asks meanwhile gets it without a login.
                    _log.warning("%s; not logging in again for %.0f s", refusal, delay)
                else:
                    delay = self._connect_backoff.next_delay()
                self._refusal = refusal
                self._retry_at = time.monotonic() + delay
                raise refusal from exc
            self._refusal = None
            self._connect_backoff.reset()
            self._auth_retry.reset()
            self._session = session
            return session

    async def _subscribed(self, queue: asyncio.Queue[list[PointValue]]) -> Session:
        try:
            async with self._bounded("subscribing"):
                return await self._subscribe(queue)
        except DriverError:
            # A session whose subscription failed half-way is of no use to changes(): start afresh.
            if self._session is not None and self._session.subscription is None:
                self._session.lost.set()
            raise

    async def _subscribe(self, queue: asyncio.Queue[list[PointValue]]) -> Session:
        session = await self._current()
        if session.subscription is None:

            def deliver(values: list[PointValue]) -> None:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(values)

            await session.subscribe(self.device.publishing_interval_ms, deliver)
        return session

    @asynccontextmanager
    async def _bounded(self, doing: str) -> AsyncIterator[None]:
        """Bound the block by the device's timeout; translate what asyncua or the socket raise, and
        drop the session when the error says it is gone (a refused write keeps it)."""
        try:
            async with asyncio.timeout(self.device.timeout_s):
                yield
        except TRANSLATED as exc:
            error = translate(self.device, exc, doing)
            session = self._session
            if session is not None and not (
                isinstance(exc, UaStatusCodeError) and exc.code not in SESSION_GONE
            ):
                session.lost.set()
            raise error from exc

    async def _next(
        self, queue: asyncio.Queue[list[PointValue]], session: Session
    ) -> list[PointValue] | None:
        """The next batch of changes, or None when the session is lost or the driver closed first."""
        if not queue.empty():
            return queue.get_nowait()
        getting = asyncio.ensure_future(queue.get())
        lost = asyncio.ensure_future(session.lost.wait())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((getting, lost, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (getting, lost, closing):
                waiter.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        return None

    async def _pause(self, delay: float) -> None:
        if delay <= 0:
            return
        try:
            async with asyncio.timeout(delay):
                await self._closing.wait()
        except TimeoutError:
            pass


def _drain(queue: asyncio.Queue[list[PointValue]]) -> list[PointValue]:
    drained: list[PointValue] = []
    while not queue.empty():
        drained.extend(queue.get_nowait())
    return drained


def _latest_per_point(*batches: list[PointValue]) -> list[PointValue]:
    """One value per point, the last one received, in the order the points first changed."""
    latest: dict[str, PointValue] = {}
    for batch in batches:
        for value in batch:
            latest[value.quantity] = value
    return list(latest.values())


_VARIANT_TYPES = {"bool": ua.VariantType.Boolean, "int": ua.VariantType.Int32, "float": ua.VariantType.Double}


def _same(got: object, written: float | int | bool) -> bool:
    """A value read back is the one written (a Float node keeps a float's 24 bits of mantissa)."""
    if isinstance(written, float) and isinstance(got, float):
        return math.isclose(got, written, rel_tol=1e-6)
    return got == written and type(got) is type(written)


def build(device: OpcuaDevice, context: BuildContext) -> OpcuaDriver:
    """The driver of ``device``: its profile found on the search path, its password and certificates read
    from their files (errors name the device and the key). No I/O on the controller."""
    # The agent gives the search path (protocols.modbus.profile.profile_search_path, shared by all
    # profiles); not imported here, so that an OPC UA-only agent loads no Modbus code.
    _, profile = find_profile(device.profile, context.profile_dirs)
    password = None
    if device.password_file is not None:
        try:
            password = read_secret_file(device.resolve(context.config_dir, device.password_file))
        except SecretFileError as exc:
            raise BuildError("password_file", f"{exc.path}: {exc.problem}") from exc
    try:
        identity = load_identity(device, context.config_dir)
    except OpcuaConfigError as exc:  # told as the agent tells every config error: devices[i].<key>
        raise BuildError(exc.key, exc.problem) from exc
    return OpcuaDriver(device, profile, password=password, identity=identity)
