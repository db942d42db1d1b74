"""An ONVIF camera simulator: the device and event services over real HTTP, for tests and the demo.

It answers GetDeviceInformation, GetSystemDateAndTime, GetServices, GetCapabilities,
CreatePullPointSubscription, PullMessages, Renew and Unsubscribe; checks the WS-Security UsernameToken
digest of every request (and, with ``token_window_s``, that it was created near the camera's time)
and answers NotAuthorized otherwise (GetSystemDateAndTime, GetServices and GetCapabilities may come
without a token, as the specification allows), counting the refusals;
keeps its own clock (``drift_s``); raises events on demand; expires subscriptions not renewed in
time. It can be told to stop answering (``hang``), to answer malformed SOAP (``malform``), and to
restart (``restart``: same port, subscriptions lost), and to misbehave as the attributes set in
``__init__`` say (anonymous access, no Events service, HTTP 401, an endless body, a pull storm, a
foreign subscription host). Plain asyncio streams and the standard
library's XML parser: one costs a few hundred KiB, so the demo runs one per cabinet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.onvif import sim_soap
from protocols.onvif.sim_soap import BadRequest, Notification, SoapRequest
from protocols.onvif.topics import EVENT_KINDS, topic_for

logger = logging.getLogger(__name__)

PRE_AUTH = frozenset({"GetSystemDateAndTime", "GetServices", "GetCapabilities"})
MAX_BODY = 1 << 20
MAX_HEADERS = 64
QUEUE_LIMIT = 1000  # events kept per subscription not yet pulled; older ones are dropped and counted
PULL_WAIT_MAX_S = 60.0
SUBSCRIPTION_PATH = "/onvif/subscription/"


@dataclass
class Subscription:
    id: int
    expires_at: float  # monotonic
    queue: deque[Notification] = field(default_factory=lambda: deque(maxlen=QUEUE_LIMIT))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0


class CameraSimulator:
    """One camera. ``async with CameraSimulator(...) as camera`` or ``await start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        username: str = "admin",
        password: str = "admin",
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "CE-Cam 4000",
        firmware: str = "4.2.1",
        serial: str = "SIM0001",
        manufacturer: str = "cityedge",
        drift_s: float = 0.0,
        digital_inputs: tuple[str, ...] = ("1", "2"),
        max_lifetime_s: float = 3600.0,
        token_window_s: float | None = None,
        anonymous: bool = False,
        events_service: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.users = {username: password}
        self.anonymous = anonymous  # requests without a token are answered (a camera with no users)
        self.events_service = events_service  # False: GetServices and GetCapabilities omit Events
        # Misbehaviours a test switches on: refuse a bad token with this HTTP status and an HTML page;
        # answer every request with an endless body; answer PullMessages at once, re-sending the
        # current state of every property each time; put this host in the subscription address.
        self.http_refusal: int | None = None
        self.endless = False
        self.endless_sent = 0  # bytes of endless body written
        self.pull_storm = False
        self.pull_at_once = False  # PullMessages answered at once, empty or not, whatever its Timeout
        self.subscription_host: str | None = None
        self.events_host: str | None = None  # the host GetServices/GetCapabilities give for Events
        self.host = host
        self.port = port
        self.info = (manufacturer, model, firmware, serial)
        self.drift_s = drift_s
        self.max_lifetime_s = max_lifetime_s
        # When set, a token whose Created is further than this from the camera's clock is refused, as
        # many firmwares do (a camera whose clock drifted then refuses the right password).
        self.token_window_s = token_window_s
        self._clock = clock
        self.state: dict[tuple[str, str | None], bool] = {
            ("tamper", None): False,
            ("motion", None): False,
            ("storage_failure", None): False,
        }
        self.state.update({("digital_input", token): False for token in digital_inputs})
        self.requests: Counter[str] = Counter()  # operation -> requests received
        self.failed_auth = 0
        self.malformed: dict[str | None, str] = {}  # operation (None: all) -> kind in sim_soap.MALFORMED
        self.subscriptions: dict[int, Subscription] = {}
        self.renewals = 0
        self.subscriptions_created = 0
        self._ids = itertools.count(1)
        self._answering = asyncio.Event()
        self._answering.set()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- life cycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> CameraSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve on ``port`` (a free one the first time when 0; the same one after a restart)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_BODY)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the server and every open connection; subscriptions are lost, as at a reboot."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        self.subscriptions.clear()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """What a cabinet config's ``address`` says for this camera."""
        return f"{self.host}:{self.port}"

    # -- controls -----------------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The camera's clock: the host's plus ``drift_s``."""
        return dt.datetime.fromtimestamp(self._clock() + self.drift_s, dt.UTC)

    def hang(self) -> None:
        """Stop answering: requests are read, and held until ``answer()``."""
        self._answering.clear()

    def answer(self) -> None:
        self._answering.set()

    def malform(self, kind: str, operation: str | None = None) -> None:
        """Answer ``operation`` (every one when None) with a malformed ``kind`` of answer."""
        if kind not in sim_soap.MALFORMED:
            raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(sim_soap.MALFORMED)}")
        self.malformed[operation] = kind

    def heal(self) -> None:
        self.malformed.clear()

    def raise_event(self, kind: str, active: bool, token: str | None = None) -> None:
        """Set ``kind`` (tamper, motion, storage_failure, digital_input with its ``token``) and notify
        every live subscription."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}: expected one of {', '.join(EVENT_KINDS)}")
        key = (kind, token if kind == "digital_input" else None)
        self.state[key] = active
        message = self._notification(key, active, "Changed")
        for subscription in self.subscriptions.values():
            self._enqueue(subscription, message)

    def _notification(self, key: tuple[str, str | None], active: bool, operation: str) -> Notification:
        kind, token = key
        topic = topic_for(kind)
        source_value = token if token is not None else ("Storage_1" if kind == "storage_failure" else "VS_1")
        source = (topic.source_item, source_value) if topic.source_item else None
        return Notification(
            topic.path, self.now(), operation, source, (topic.state_item, str(active).lower())
        )

    @staticmethod
    def _enqueue(subscription: Subscription, message: Notification) -> None:
        if len(subscription.queue) == subscription.queue.maxlen:
            subscription.dropped += 1
        subscription.queue.append(message)
        subscription.arrived.set()

    # -- HTTP ---------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    break
                path, body = request
                if self.endless:
                    await self._stream_endless(writer)
                    break
                status, answer = await self._handle(path, body)
                await self._answering.wait()
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                    "Content-Type: application/soap+xml; charset=utf-8\r\n"
                    f"Content-Length: {len(answer)}\r\n\r\n"
                )
                writer.write(head.encode() + answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent what is not HTTP: drop the connection
        except asyncio.CancelledError:
            # stop() ends our own connection tasks; ending quietly spares asyncio's streams callback
            # a "CancelledError" traceback in the log.
            return
        finally:
            self._connections.discard(task)
            writer.close()

    async def _stream_endless(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nConnection: close\r\n\r\n<a>")
        chunk = b"x" * (64 * 1024)
        while True:
            writer.write(chunk)
            await writer.drain()
            self.endless_sent += len(chunk)

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
        line = await reader.readline()
        if not line:
            return None
        _method, path, _version = line.decode("latin-1").split(" ", 2)
        length = 0
        for _ in range(MAX_HEADERS):
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if not 0 <= length <= MAX_BODY:
            raise ValueError("body too large")
        return path, await reader.readexactly(length)

    async def _handle(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            request = sim_soap.parse_request(body)
        except BadRequest as exc:
            return 400, sim_soap.fault("Sender", "ter:WellFormed", str(exc))
        self.requests[request.operation] += 1
        if not self._authorised(request):
            self.failed_auth += 1
            if self.http_refusal is not None:
                return self.http_refusal, b"<html><body>401 Unauthorized</body></html>"
            return 400, sim_soap.fault("Sender", "ter:NotAuthorized", "Sender not Authorized")
        kind = self.malformed.get(request.operation) or self.malformed.get(None)
        if kind is not None:
            return (500 if kind.endswith("fault") else 200), sim_soap.MALFORMED[kind]
        return await self._answer(path, request)

    def _authorised(self, request: SoapRequest) -> bool:
        token = request.token
        if token is None:
            return self.anonymous or request.operation in PRE_AUTH
        password = self.users.get(token.username)
        if password is None or not sim_soap.digest_matches(token, password):
            return False
        if self.token_window_s is None:
            return True
        created = sim_soap.parse_duration_s(token.created, self.now())  # seconds from now to Created
        return created is not None and abs(created) <= self.token_window_s

    async def _answer(self, path: str, request: SoapRequest) -> tuple[int, bytes]:
        operation, now = request.operation, self.now()
        if operation == "GetDeviceInformation":
            return 200, sim_soap.device_information(*self.info)
        if operation == "GetSystemDateAndTime":
            return 200, sim_soap.system_date_and_time(now)
        if operation == "GetServices":
            return 200, sim_soap.services(self.url, events=self.events_service, events_base=self._events_url)
        if operation == "GetCapabilities":
            return 200, sim_soap.capabilities(
                self.url, events=self.events_service, events_base=self._events_url
            )
        if operation == "CreatePullPointSubscription":
            return self._create(request, now)
        if path.startswith(SUBSCRIPTION_PATH):
            subscription = self._subscription(path)
            if subscription is None:
                return 400, sim_soap.fault("Sender", "wsrf-rw:ResourceUnknownFault", "no such subscription")
            if operation == "PullMessages":
                return await self._pull(request, subscription)
            if operation == "Renew":
                return self._renew(request, subscription, now)
            if operation == "Unsubscribe":
                del self.subscriptions[subscription.id]
                return 200, sim_soap.unsubscribed()
        return 400, sim_soap.fault("Receiver", "ter:ActionNotSupported", f"{operation} is not supported")

    @property
    def _events_url(self) -> str:
        return self.url if self.events_host is None else f"http://{self.events_host}:{self.port}"

    def _lifetime(self, text: str | None, now: dt.datetime) -> float:
        seconds = sim_soap.parse_duration_s(text, now) if text else None
        return min(self.max_lifetime_s, max(1.0, seconds if seconds is not None else 60.0))

    def _terminates(self, subscription: Subscription, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=max(0.0, subscription.expires_at - time.monotonic()))

    def _create(self, request: SoapRequest, now: dt.datetime) -> tuple[int, bytes]:
        lifetime = self._lifetime(request.fields.get("InitialTerminationTime"), now)
        subscription = Subscription(next(self._ids), time.monotonic() + lifetime)
        self.subscriptions[subscription.id] = subscription
        self.subscriptions_created += 1
        for key, active in self.state.items():  # a new subscriber learns every property's state
            self._enqueue(subscription, self._notification(key, active, "Initialized"))
        base = self.url if self.subscription_host is None else f"http://{self.subscription_host}:{self.port}"
        address = f"{base}{SUBSCRIPTION_PATH}{subscription.id}"
        return 200, sim_soap.subscription_created(address, now, self._terminates(subscription, now))

    def _subscription(self, path: str) -> Subscription | None:
        self._expire()
        number = path.removeprefix(SUBSCRIPTION_PATH)
        return self.subscriptions.get(int(number)) if number.isdigit() else None

    def _expire(self) -> None:
        now = time.monotonic()
        for number in [n for n, sub in self.subscriptions.items() if sub.expires_at <= now]:
            del self.subscriptions[number]

    async def _pull(self, request: SoapRequest, subscription: Subscription) -> tuple[int, bytes]:
        limit = int(request.fields.get("MessageLimit", "1") or "1")
        wait = sim_soap.parse_duration_s(request.fields.get("Timeout", "PT0S"), self.now()) or 0.0
        if self.pull_storm:
            for key, active in self.state.items():
                self._enqueue(subscription, self._notification(key, active, "Changed"))
        if not subscription.queue and not self.pull_at_once:
            subscription.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(wait, 0.0), PULL_WAIT_MAX_S)):
                    await subscription.arrived.wait()
        messages = [subscription.queue.popleft() for _ in range(min(max(limit, 1), len(subscription.queue)))]
        now = self.now()
        return 200, sim_soap.pulled(now, self._terminates(subscription, now), messages)

    def _renew(self, request: SoapRequest, subscription: Subscription, now: dt.datetime) -> tuple[int, bytes]:
        lifetime = self._lifetime(request.fields.get("TerminationTime"), now)
        subscription.expires_at = time.monotonic() + lifetime
        self.renewals += 1
        return 200, sim_soap.renewed(now, self._terminates(subscription, now))
