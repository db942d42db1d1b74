"""The aggregator process: store + MQTT link + ingest + command dispatch + HTTP API, in one event loop.

    async with CentralServer(db="sqlite:///central.db", broker_url=..., http_port=0) as server:
        print(server.url)          # the bound port is known once the block is entered

With ``retention``, a task deletes raw readings older than the retention period every
``retention.interval_s`` (rollups stay), on the worker that leads "retention" (central.leadership);
it is idempotent, so a moment with two leaders is harmless. The worker that leads "kpi-days" keeps
the KPI report's day cache warm (``central.kpi_warm``): a minute after start, then after each
midnight of ``kpi_tz``.

``serve()`` is what ``cityedge central serve`` runs: the same, until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Generator
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn

from central.api import create_app
from central.broker_accounts.hook import BrokerHook, RateLimiter, install_hook
from central.broker_accounts.service import BrokerAccounts, install_accounts
from central.broker_accounts.settings import AccountsSettings
from central.config import Retention
from central.dispatch import DEFAULT_EXPIRY_GRACE_S, DEFAULT_RETRY_S, CommandDispatcher
from central.errors import ServerError, StoreError
from central.ingest import Ingestor
from central.ingest_limits import TopicLimits
from central.kpi_ahead import KpiAhead
from central.kpi_warm import KpiWarmer
from central.leadership import Leadership, SoleLeader, leadership_for
from central.metrics import CentralMetrics
from central.mqtt_link import DEFAULT_GROUP, MqttLink
from central.store import Store, open_store
from central.web.settings import WebSettings
from protocols.fleet.broker_url import parse_broker_url
from protocols.sd_notify import Notifier

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn as one component among others: it signals readiness and leaves signals alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The host program owns SIGINT/SIGTERM; uvicorn would otherwise replace their handlers.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, which calls sys.exit() when a bind fails."""
    setting = f"HTTP address {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it every
        # response waits ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(512)
        except OSError:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise ServerError(
            setting, f"cannot listen: {exc.strerror or exc}; choose another host or port"
        ) from exc


class CentralServer:
    """Runs ingest and the HTTP API; ``async with`` starts both and stops them cleanly."""

    def __init__(
        self,
        *,
        db: str | Path | Store,
        broker_url: str,
        broker_username: str | None = None,
        broker_password: str | None = None,
        http_host: str = "127.0.0.1",
        http_port: int = 8080,
        group: str = DEFAULT_GROUP,
        durable: bool = True,
        command_retry_s: float = DEFAULT_RETRY_S,
        command_expiry_grace_s: float = DEFAULT_EXPIRY_GRACE_S,
        ingest_limits: TopicLimits | None = None,
        retention: Retention | None = None,
        clock: Callable[[], int] = now_ms,
        leadership: Leadership | None = None,
        broker_accounts: AccountsSettings | None = None,
        web: WebSettings | None = None,
        kpi_tz: str = "UTC",
    ) -> None:
        # A URL (sqlite:///…, postgresql://…), a SQLite file, or a store made by the caller.
        self.store: Store = (
            open_store(str(db) if isinstance(db, Path) else db, durable=durable)
            if isinstance(db, str | Path)
            else db
        )
        # Which worker of this database sweeps commands, and which purges (central.leadership): a lock
        # in the database (PostgreSQL) or beside it (SQLite); a store made by the caller is its only worker.
        by_url = isinstance(db, str | Path)

        def lead(job: str) -> Leadership:
            return leadership_for(str(db), job) if by_url else SoleLeader(job)

        self.leadership = leadership = leadership or lead("dispatch")
        self.retention_leadership = lead("retention")
        self.kpi_leadership = lead("kpi-days")
        self.kpi_warmer = KpiWarmer(self.store, self.kpi_leadership, clock=clock, tz=kpi_tz)
        # One session to the broker: ingest receives and acks on it, commands go out on it.
        # Validates the broker URL now: a bad one fails before anything starts.
        self.link = MqttLink(
            broker_url=broker_url,
            broker_username=broker_username,
            broker_password=broker_password,
            group=group,
        )
        # What /metrics shows: this server's own registry (several servers may share a process).
        self.metrics = metrics = CentralMetrics()
        timed_store = metrics.timed(self.store)
        self.ingestor = Ingestor(
            store=timed_store,
            link=self.link,
            on_birth=self._birth,
            limits=ingest_limits,
            ack_latency=metrics.ack_latency.observe,
        )
        # A birth the ingestor receives triggers a resend of what that cabinet has not accepted.
        self.dispatcher = CommandDispatcher(
            store=timed_store,
            publisher=self.link,
            retry_s=command_retry_s,
            expiry_grace_s=command_expiry_grace_s,
            leadership=leadership,
        )
        # The broker's accounts from the registry (central.broker_accounts): live changes, a sync on the
        # leader of its own lock, and the HTTP auth hook of a cluster broker; each only when configured.
        settings = broker_accounts or AccountsSettings()
        self.accounts: BrokerAccounts | None = None
        self.accounts_leadership = lead("broker-accounts")
        if settings.admin_password is not None:
            address = parse_broker_url(broker_url)
            self.accounts = BrokerAccounts(
                store=self.store,
                address=address,
                admin_password=settings.admin_password,
                leadership=self.accounts_leadership,
                sync_interval_s=settings.sync_interval_s,
            )
        self.broker_hook = (
            None
            if settings.hook_secret is None
            else BrokerHook(
                store=self.store,
                secret=settings.hook_secret,
                central_password=broker_password,
                limiter=RateLimiter(settings.hook_rate_per_s, settings.hook_burst),
            )
        )
        metrics.watch_ingest(lambda: self.ingestor.stats)
        metrics.watch_dispatch(self.dispatcher.stats)
        # Raw readings older than the retention period are deleted by a periodic task (rollups stay).
        self.retention = retention
        self.web = web
        self._clock = clock
        self.purged = 0  # readings this server's purge deleted
        self.http_host = http_host
        self._requested_port = http_port
        self._socket: socket.socket | None = None
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._ahead_task: asyncio.Task[None] | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    def _birth(self, cabinet: str) -> None:
        self.dispatcher.birth(cabinet)

    @property
    def http_port(self) -> int:
        """The bound port (the real one when 0 was asked for); only valid once started."""
        if self._socket is None:
            raise RuntimeError("the server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host
        return f"http://{host}:{self.http_port}"

    async def __aenter__(self) -> Self:
        # Bind first: an address in use fails before anything else has started.
        self._socket = sock = _listen(self.http_host, self._requested_port)
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(sock.close)  # on failure; uvicorn closes it on a normal stop
            await stack.enter_async_context(self.store)
            await stack.enter_async_context(self.ingestor)
            await stack.enter_async_context(self.link)  # after its receiver: nothing is taken unread
            await stack.enter_async_context(self.leadership)
            await stack.enter_async_context(self.dispatcher)
            if self.accounts is not None:
                await stack.enter_async_context(self.accounts_leadership)
                await stack.enter_async_context(self.accounts)
            if self.retention is not None:
                await stack.enter_async_context(self.retention_leadership)
                purge = asyncio.create_task(self._purge_loop(self.retention), name="central-retention")
                stack.push_async_callback(_cancelled, purge)
            await stack.enter_async_context(self.kpi_leadership)
            warm = asyncio.create_task(self.kpi_warmer.run(), name="central-kpi-days")
            stack.push_async_callback(_cancelled, warm)
            await self._start_http(sock)
            stack.push_async_callback(self._stop_http)
            self._stack = stack.pop_all()
        logger.info("central serving %s", self.url)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def purge_once(self, retention: Retention) -> int:
        """Delete the raw readings older than the retention period, in short transactions.

        Safe when several workers run it at once (each delete is idempotent); between transactions
        the event loop serves ingest and the API.
        """
        before = retention.horizon_ms(self._clock())
        deleted = 0
        while True:
            purged = await self.store.purge_readings(before_ms=before, limit=retention.batch)
            deleted += purged.deleted
            self.purged += purged.deleted
            if purged.done:
                return deleted
            await asyncio.sleep(0)  # let the ingest writer in between two transactions

    async def _purge_loop(self, retention: Retention) -> None:
        # The first purge waits an interval too: a restart does not start with a burst of deletes.
        while True:
            await asyncio.sleep(retention.interval_s)
            if not self.retention_leadership.is_leader():
                continue  # another worker purges: N at once would only contend for the same rows
            try:
                deleted = await self.purge_once(retention)
            except StoreError as exc:  # the database is down: ingest says so too; try again later
                logger.warning("retention purge failed: %s", exc)
            else:
                if deleted:
                    logger.info(
                        "retention: %d raw readings older than %d days deleted", deleted, retention.days
                    )

    async def _start_http(self, sock: socket.socket) -> None:
        app = create_app(
            store=self.store,
            ingest=self.ingestor,
            commands=self.dispatcher,
            metrics=self.metrics,
            web=self.web,
        )
        install_accounts(app, self.accounts)
        # The KPI page's report, made as each quarter settles, in this process's memo.
        self.kpi_ahead = KpiAhead(app, self.store, clock=self._clock)
        if self.broker_hook is not None:
            install_hook(app, self.broker_hook)
        config = uvicorn.Config(
            app,
            log_config=None,  # logging is the host program's business
            lifespan="off",
            ws="none",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._http = http = _EmbeddedUvicorn(config)
        self._http_task = task = asyncio.create_task(http.serve([sock]), name="central-http")
        ready = asyncio.create_task(http.ready.wait(), name="central-http-ready")
        await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            failure = task.exception() if not task.cancelled() else None
            raise ServerError(f"HTTP server on {self.http_host}", f"did not start: {failure}")
        self._ahead_task = asyncio.create_task(self.kpi_ahead.run(), name="central-kpi-ahead")

    async def _stop_http(self) -> None:
        ahead, self._ahead_task = self._ahead_task, None
        if ahead is not None:
            await _cancelled(ahead)
        http, task = self._http, self._http_task
        if http is None or task is None:
            return
        http.should_exit = True
        await task

    async def wait_stopped(self) -> None:
        """Return when the HTTP server stopped by itself; re-raise what stopped it."""
        if self._http_task is None:
            raise RuntimeError("the server is not started")
        await asyncio.shield(self._http_task)


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def serve(
    *,
    db: str | Path,
    broker_url: str,
    broker_username: str | None = None,
    broker_password: str | None = None,
    http_host: str = "127.0.0.1",
    http_port: int = 8080,
    on_ready: Callable[[CentralServer], None] | None = None,
    retention: Retention | None = None,
    broker_accounts: AccountsSettings | None = None,
    web: WebSettings | None = None,
) -> None:
    """Run the aggregator until cancelled (the CLI cancels on SIGINT/SIGTERM); stops cleanly.

    Returns early, re-raising its error, only if the HTTP server stops by itself. The broker
    credentials, when given, win over any in ``broker_url``.
    """
    async with CentralServer(
        db=db,
        broker_url=broker_url,
        broker_username=broker_username,
        broker_password=broker_password,
        http_host=http_host,
        http_port=http_port,
        retention=retention,
        broker_accounts=broker_accounts,
        web=web,
    ) as server:
        if on_ready is not None:
            on_ready(server)
        notifier = Notifier()
        notifier.ready(f"serving {server.url}")
        try:
            if notifier.watchdog_interval_s is None:
                await server.wait_stopped()
            else:
                await _fed_watchdog(server, notifier, notifier.watchdog_interval_s)
        finally:
            notifier.stopping()
            notifier.close()


async def _fed_watchdog(server: CentralServer, notifier: Notifier, interval_s: float) -> None:
    """Ping systemd's watchdog while the event loop turns: a loop blocked by a stuck call stops the
    pings, and systemd restarts central. Returns when the server stops."""
    stopped = asyncio.ensure_future(server.wait_stopped())
    try:
        while not stopped.done():
            notifier.watchdog()
            await asyncio.wait((stopped,), timeout=interval_s)
        stopped.result()
    finally:
        stopped.cancel()
