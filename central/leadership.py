"""Which of several central workers does the periodic work that one of them is enough for.

N ``central serve`` workers share one database. What each does with its own input needs no leader:
ingest (the broker gives each batch to one worker), statuses (every worker applies every one; that
is idempotent), a command posted to a worker's API (that worker publishes it at once). Periodic work
over the whole database is another matter: each worker would repeat it. ``Leadership`` names the one
worker that does it; the others wait and take over when it dies.

Leadership is a belief, held with a bounded error: between the moment a leader loses its lock (its
database connection dropped) and the moment it notices (its next check, ``check_s``), a successor may
act too. So only work that is harmless when done twice goes behind it; the leader makes it cheap,
not correct.

    SQLite      ``FileLeadership``: flock on ``<database>.<job>.leader``, next to the database. The
                kernel drops the lock when the holder dies, SIGKILL included, and it holds across
                processes of one host, which is all a SQLite database serves. (flock, not a POSIX
                fcntl record lock: those do not exclude each other within one process, and closing
                any descriptor of the file releases them.)
    PostgreSQL  ``AdvisoryLeadership``: ``pg_try_advisory_lock`` on a connection of its own. The lock
                lives as long as that session; the server drops it when the connection ends (a killed
                worker's socket closes at once; a lost network within the TCP keepalive below).
    one worker  ``SoleLeader``: always the leader (a store the caller made, an in-memory database).

``leadership_for(db_url, name)`` picks one; each job name is its own lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from central.store.url import DatabaseUrl, parse_db_url, redact

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

DEFAULT_CHECK_S = 2.0  # how often a follower tries to take over, and a leader checks it still leads
CONNECT_TIMEOUT_S = 5
_JOB_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")  # part of a file name and of a log line
# TCP keepalive on the lock's connection, both ways, so that a vanished peer is seen within about
# idle + interval x count = 25 s: libpq's (this worker sees a dead server) and the server's own, set for
# this session (the server sees a dead worker and frees its lock; its default is the kernel's, ~2 h).
_KEEPALIVE: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
_SERVER_KEEPALIVE = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


class Leadership(Protocol):
    """``async with`` it to campaign; ``is_leader()`` says whether this worker leads now."""

    @property
    def name(self) -> str: ...

    def is_leader(self) -> bool: ...

    async def wait_leader(self) -> None:
        """Return once this worker leads."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SoleLeader:
    """The only worker: always the leader."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def is_leader(self) -> bool:
        return True

    async def wait_leader(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class _Campaign:
    """Try to take the lock every ``check_s``; once held, check every ``check_s`` that it still is."""

    def __init__(self, name: str, *, check_s: float) -> None:
        if check_s <= 0:
            raise ValueError(f"check_s must be positive, got {check_s}")
        self._name = name
        self._check_s = check_s
        self._leader = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._name

    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_leader(self) -> None:
        await self._leader.wait()

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"the leadership campaign for {self._name} is already running")
        # One attempt before returning: a worker alone knows at once that it leads.
        await self._step()
        self._task = asyncio.create_task(self._run(), name=f"central-leadership-{self._name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._leader.clear()
        await self._release()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_s)
            try:
                await self._step()
            except Exception:  # a bug here must not end the campaign: this worker just does not lead
                logger.exception("leadership of %s: check failed", self._name)
                self._leader.clear()
                await self._release()

    async def _step(self) -> None:
        if self._leader.is_set():
            if not await self._still_held():
                self._leader.clear()  # first: nothing may act on a lost lock while we clean up
                logger.warning("lost the leadership of %s (%s)", self._name, self._where())
                await self._release()
        elif await self._try_acquire():
            self._leader.set()
            logger.info("leader of %s (%s)", self._name, self._where())

    async def _try_acquire(self) -> bool:
        raise NotImplementedError

    async def _still_held(self) -> bool:
        raise NotImplementedError

    async def _release(self) -> None:
        raise NotImplementedError

    def _where(self) -> str:
        raise NotImplementedError


class FileLeadership(_Campaign):
    """The holder of an exclusive flock on ``path`` leads (SQLite: workers on one host)."""

    def __init__(self, name: str, path: Path, *, check_s: float = DEFAULT_CHECK_S) -> None:
        super().__init__(name, check_s=check_s)
        self.path = path
        self._fd: int | None = None
        self._failure: str | None = None

    def _where(self) -> str:
        return f"lock file {self.path}"

    async def _try_acquire(self) -> bool:
        # Non-blocking system calls on a local file: no thread needed.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._report(f"cannot open the lock file {self.path}: {exc.strerror or exc}; check its folder")
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another worker (BlockingIOError), or the file system refuses locks
            os.close(fd)
            return False
        self._fd = fd
        self._failure = None
        # Who leads, for whoever looks (the lock, not this text, is what counts).
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return True

    async def _still_held(self) -> bool:
        # A lock on a file that was deleted or replaced excludes nobody: a newcomer locks the new one.
        if self._fd is None:
            return False
        try:
            mine, named = os.fstat(self._fd), os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)

    async def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def _report(self, failure: str) -> None:
        if failure != self._failure:  # once per distinct failure, not every check_s
            logger.error("leadership of %s: %s", self._name, failure)
        self._failure = failure


def advisory_key(name: str) -> int:
    """The 64-bit advisory lock key of a job name (stable across processes and versions)."""
    digest = hashlib.blake2b(f"cityedge-central:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLeadership(_Campaign):
    """The session holding PostgreSQL advisory lock ``advisory_key(name)`` leads."""

    def __init__(self, name: str, dsn: str, *, check_s: float = DEFAULT_CHECK_S) -> None:
        super().__init__(name, check_s=check_s)
        self._dsn = dsn
        self.key = advisory_key(name)
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._failure: str | None = None

    def _where(self) -> str:
        return f"advisory lock {self.key} on {redact(self._dsn)}"

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        import psycopg

        if self._conn is None or self._conn.closed:
            given = psycopg.conninfo.conninfo_to_dict(self._dsn).get("options")
            conninfo = psycopg.conninfo.make_conninfo(
                self._dsn,
                options=f"{given} {_SERVER_KEEPALIVE}" if given else _SERVER_KEEPALIVE,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"cityedge-central-leadership-{self._name}"[:63],
                **_KEEPALIVE,
            )
            self._conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        return self._conn

    async def _query(self, sql: str, *params: object) -> object:
        async with asyncio.timeout(self._check_s + CONNECT_TIMEOUT_S):
            conn = await self._connection()
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def _try_acquire(self) -> bool:
        import psycopg

        try:
            held = await self._query("SELECT pg_try_advisory_lock(%s)", self.key)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._report(f"{redact(self._dsn)}: {type(exc).__name__}: {exc}")
            await self._release()
            return False
        self._failure = None
        return held is True

    async def _still_held(self) -> bool:
        import psycopg

        # The lock is the session's: a session that still answers still holds it.
        try:
            return await self._query("SELECT 1") == 1
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self._report(f"{redact(self._dsn)}: {type(exc).__name__}: {exc}")
            return False

    async def _release(self) -> None:
        # Closing the session frees the lock (no unlock needed, and none possible on a dead one).
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await conn.close()

    def _report(self, failure: str) -> None:
        if failure != self._failure:
            logger.error("leadership of %s: %s", self._name, failure)
        self._failure = failure


def leadership_for(db: str | DatabaseUrl, name: str, *, check_s: float = DEFAULT_CHECK_S) -> Leadership:
    """The leadership of job ``name`` among the workers of database ``db``."""
    if not _JOB_NAME.fullmatch(name):
        raise ValueError(f"job name {name!r}: use 1-40 lowercase letters, digits and '-'")
    parsed = parse_db_url(db) if isinstance(db, str) else db
    if parsed.backend == "postgresql":
        assert parsed.dsn is not None
        return AdvisoryLeadership(name, parsed.dsn, check_s=check_s)
    assert parsed.path is not None
    if str(parsed.path) == ":memory:":  # one process's private database: one worker by construction
        return SoleLeader(name)
    database = parsed.path.resolve()
    return FileLeadership(name, database.with_name(f"{database.name}.{name}.leader"), check_s=check_s)
