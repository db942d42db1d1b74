"""The PostgreSQL store: ``Store`` on a pool of psycopg 3 connections.

    store = PostgresStore("postgresql://cityedge@db.example/cityedge")
    async with store: ...

Options (keywords):
- ``min_connections`` / ``max_connections`` (1 / 8): the pool. Ingest holds one connection per
  concurrent ``write()``, each API read one for one statement, a long read (``reading_chunks``)
  one per page, never across pages.
- ``durable`` (True): False sets ``synchronous_commit = off`` for this store's sessions: a commit
  returns before its WAL is flushed, so a crash of the database server may lose the last commits,
  some of them acknowledged. Same trade as SQLite's ``durable``.
- ``migrate`` (False): apply missing migrations on open (tests, benchmarks, a demo). Otherwise a
  database behind this build is refused with the command that migrates it.
- ``connect_timeout_s`` (10): how long ``open()`` waits for the server.
- ``application_name``: what ``pg_stat_activity`` shows for these sessions.

The password never appears in the DSN (``central.store.url`` refuses it): libpq reads PGPASSWORD or
~/.pgpass. Errors name the database by its redacted URL.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec
import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from central.errors import StoreError
from central.store.auth_rows import AuditEntry, AuditRow, TokenRow
from central.store.kpi_days import CounterEdge, KpiDayRow
from central.store.postgres import auth as pa
from central.store.postgres import commands as pc
from central.store.postgres import episodes as pe
from central.store.postgres import kpi_days as pkd
from central.store.postgres import partitions as parts
from central.store.postgres import reads as q
from central.store.postgres import registry as preg
from central.store.postgres import rollups as pr
from central.store.postgres.migrations import migrate, schema_version
from central.store.postgres.partitions import Partitions
from central.store.postgres.schema import SCHEMA_VERSION
from central.store.postgres.writer import PgWriter
from central.store.rows import (
    AlarmEpisode,
    AlarmRow,
    BatchOutcome,
    CabinetRow,
    CommandRow,
    EpisodeQuery,
    EpisodeTimes,
    EventRow,
    GroupCommandRow,
    GroupRow,
    NewNote,
    PointValue,
    Purged,
    QuarantineCounts,
    QuarantineEntry,
    QuarantineRow,
    ReadingRow,
    ReceivedBatch,
    ReceivedStatus,
    RegistryEntry,
    Resolution,
    Rollup,
    Totals,
)
from central.store.url import redact

_T = TypeVar("_T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

# Readings per page of a long read: bounded memory, few round trips.
READING_CHUNK = 10_000


def redact_dsn(dsn: str) -> str:
    """What an error may show of ``dsn``: a URL's password as ***, a key=value one's left out."""
    if "://" in dsn:
        return redact(dsn)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "a PostgreSQL DSN that does not parse"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def _detail(exc: BaseException) -> str:
    """The first line of a database error (libpq messages never hold the password)."""
    if isinstance(exc, errors.UniqueViolation):
        constraint = exc.diag.constraint_name or "?"
        return f"UNIQUE constraint {constraint} violated: {exc.diag.message_detail or exc}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore:
    """``Store`` on PostgreSQL. ``async with PostgresStore(dsn) as store`` opens and closes it."""

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 8,
        durable: bool = True,
        migrate: bool = False,
        connect_timeout_s: float = 10.0,
        application_name: str = "cityedge-central",
    ) -> None:
        self._dsn = dsn
        self.where = redact_dsn(dsn)
        self._min = min_connections
        self._max = max(min_connections, max_connections)
        self._durable = durable
        self._migrate = migrate
        self._timeout_s = connect_timeout_s
        self._application_name = application_name
        self._pool: AsyncConnectionPool[Conn] | None = None
        self.partitions = Partitions()
        self._writer = PgWriter(self.partitions)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True, "application_name": self._application_name}
        if not self._durable:
            kwargs["options"] = "-c synchronous_commit=off"
        return kwargs

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._dsn, connect_timeout=max(1, round(self._timeout_s)), **self._connect_kwargs()
            )
        except psycopg.Error as exc:
            raise StoreError(
                self.where,
                "connect",
                f"{_detail(exc)} (is the server running, is the URL right; a password goes in"
                " ~/.pgpass or $PGPASSWORD)",
            ) from None
        try:
            async with conn:
                if self._migrate:
                    await migrate(conn)
                version = await schema_version(conn)
        except psycopg.Error as exc:
            raise StoreError(self.where, "check the schema", _detail(exc)) from exc
        if version < SCHEMA_VERSION:
            raise StoreError(
                self.where,
                "open",
                f"the database is at schema version {version} and this build needs {SCHEMA_VERSION}:"
                f" run `cityedge central migrate --db {self.where}` first",
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                self.where,
                "open",
                f"the database is at schema version {version}, newer than this build"
                f" ({SCHEMA_VERSION}): upgrade cityedge on this host",
            )
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._dsn,
            min_size=self._min,
            max_size=self._max,
            kwargs=self._connect_kwargs(),
            open=False,
            name="cityedge-central",
            timeout=self._timeout_s,
        )
        try:
            await pool.open(wait=True, timeout=self._timeout_s)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(self.where, "connect", f"the connection pool did not fill: {exc}") from None
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, operation: str, fn: Callable[[Conn], Awaitable[_T]]) -> _T:
        pool = self._pool
        if pool is None:
            raise StoreError(self.where, operation, "the store is not open")
        try:
            async with pool.connection() as conn:
                return await fn(conn)
        except psycopg.Error as exc:
            raise StoreError(self.where, operation, _detail(exc)) from exc
        except PoolTimeout as exc:
            raise StoreError(self.where, operation, f"no database connection free: {exc}") from exc
        except msgspec.DecodeError as exc:  # a stored value central validated once no longer reads
            raise StoreError(self.where, operation, f"a stored row cannot be read: {exc}") from exc

    async def _in_transaction(self, operation: str, fn: Callable[[Cursor], Awaitable[_T]]) -> _T:
        async def run(conn: Conn) -> _T:
            async with conn.transaction():
                return await fn(conn.cursor())

        return await self._run(operation, run)

    async def ping(self) -> None:
        await self._run("ping", q.ping)

    # -- ingest -------------------------------------------------------------------------------

    async def write(
        self,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus] = (),
        quarantine: Sequence[QuarantineEntry] = (),
    ) -> list[BatchOutcome]:
        async def run(conn: Conn) -> list[BatchOutcome]:
            await self._writer.prepare(conn, batches)
            return await self._writer.write(conn, batches, statuses, quarantine)

        return await self._run("write", run)

    # -- fleet reads --------------------------------------------------------------------------

    async def cabinets(self) -> list[CabinetRow]:
        return await self._run("list cabinets", q.cabinets)

    async def cabinet(self, cabinet: str) -> CabinetRow | None:
        return await self._run("read cabinet", lambda c: q.cabinet(c, cabinet))

    async def latest_values(self, cabinet: str) -> list[PointValue]:
        return await self._run("latest values", lambda c: q.latest_values(c, cabinet))

    async def has_point(self, cabinet: str, point: str) -> bool:
        return await self._run("find point", lambda c: q.has_point(c, cabinet, point))

    async def points_ending_with(self, cabinet: str, suffix: str) -> list[str]:
        return await self._run("find points", lambda c: q.points_ending_with(c, cabinet, suffix))

    async def readings(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, limit: int
    ) -> list[ReadingRow]:
        return await self._run(
            "read readings",
            lambda c: q.readings(c, cabinet, point, start_ms=start_ms, end_ms=end_ms, limit=limit),
        )

    async def reading_chunks(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, neighbours: bool = False
    ) -> AsyncIterator[Sequence[ReadingRow]]:
        found = await self._run("find point", lambda c: q.point_pk(c, cabinet, point))
        if found is None:
            return
        pk = found
        before: list[ReadingRow] = []
        after: list[ReadingRow] = []
        if neighbours:
            before, after = await self._run(
                "read readings", lambda c: q.good_neighbours(c, pk, start_ms, end_ms)
            )
        if before:
            yield before
        key: q.PageKey | None = (start_ms, -1, -1)
        while key is not None:
            page, key = await self._run(
                "read readings",
                functools.partial(
                    q.reading_page, point=pk, after=key, start_ms=start_ms, end_ms=end_ms, limit=READING_CHUNK
                ),
            )
            if page:
                yield page
        if after:
            yield after

    async def events(
        self, *, cabinet: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[EventRow]:
        return await self._run("read events", lambda c: q.events(c, cabinet, since_ms, limit))

    async def latest_events(self, cabinet: str, kind: str) -> list[EventRow]:
        return await self._run("read latest events", lambda c: q.latest_events(c, cabinet, kind))

    async def quarantine(self, *, limit: int = 100) -> list[QuarantineRow]:
        return await self._run("read quarantine", lambda c: q.quarantine(c, limit))

    async def quarantine_payload(self, entry_id: int) -> bytes | None:
        return await self._run("read quarantined payload", lambda c: q.quarantine_payload(c, entry_id))

    async def quarantine_counts(self) -> QuarantineCounts:
        return await self._run("count quarantine", q.quarantine_counts)

    async def totals(self) -> Totals:
        return await self._run("read totals", q.totals)

    async def alarms(
        self, *, cabinet: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[AlarmRow]:
        return await self._run("read alarms", lambda c: q.alarms(c, cabinet, active, limit))

    # -- alarm episodes (central.store.postgres.episodes) --------------------------------------

    async def episodes(self, query: EpisodeQuery) -> list[AlarmEpisode]:
        return await self._run("list alarm episodes", lambda c: pe.episodes(c, query))

    async def episode(self, episode_id: int) -> AlarmEpisode | None:
        return await self._run("read alarm episode", lambda c: pe.episode(c, episode_id))

    async def add_note(self, episode_id: int, note: NewNote) -> AlarmEpisode | None:
        return await self._in_transaction(
            "note alarm episode", lambda cur: pe.add_note(cur, episode_id, note)
        )

    # -- commands and groups ------------------------------------------------------------------

    async def add_commands(
        self, commands: Sequence[CommandRow], parent: GroupCommandRow | None = None
    ) -> None:
        await self._in_transaction("add commands", lambda cur: pc.insert_commands(cur, commands, parent))

    async def command(self, command_id: str) -> CommandRow | None:
        return await self._run("read command", lambda c: pc.command(c, command_id))

    async def group_command(self, command_id: str) -> GroupCommandRow | None:
        return await self._run("read group command", lambda c: pc.group_command(c, command_id))

    async def child_commands(self, parent_id: str) -> list[CommandRow]:
        return await self._run("read child commands", lambda c: pc.child_commands(c, parent_id))

    async def commands(
        self, *, cabinet: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[CommandRow]:
        return await self._run("list commands", lambda c: pc.commands(c, cabinet, status, limit))

    async def pending_commands(
        self, *, not_after_from_ms: int, cabinets: Sequence[str] | None = None
    ) -> list[CommandRow]:
        return await self._run(
            "list pending commands", lambda c: pc.pending_commands(c, not_after_from_ms, cabinets)
        )

    async def expire_commands(self, *, before_ms: int, now_ms: int) -> int:
        return await self._in_transaction(
            "expire commands", lambda cur: pc.expire_commands(cur, before_ms=before_ms, now_ms=now_ms)
        )

    async def put_group(self, group: GroupRow) -> bool:
        return await self._in_transaction("write group", lambda cur: pc.put_group(cur, group))

    async def group(self, name: str) -> GroupRow | None:
        return await self._run("read group", lambda c: pc.group(c, name))

    async def groups(self) -> list[GroupRow]:
        return await self._run("list groups", pc.groups)

    async def delete_group(self, name: str) -> bool:
        return await self._in_transaction("delete group", lambda cur: pc.delete_group(cur, name))

    # -- rollups and retention ----------------------------------------------------------------

    async def rollups(
        self,
        cabinet: str,
        point: str,
        *,
        resolution: Resolution,
        start_ms: int,
        end_ms: int,
        limit: int,
    ) -> list[Rollup]:
        return await self._run(
            "read rollups",
            lambda c: pr.rollups(
                c, cabinet, point, resolution=resolution, start_ms=start_ms, end_ms=end_ms, limit=limit
            ),
        )

    async def rollup_neighbours(
        self, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int
    ) -> tuple[Rollup | None, Rollup | None]:
        return await self._run(
            "read rollups",
            lambda c: pr.rollup_neighbours(
                c, cabinet, point, resolution=resolution, start_ms=start_ms, end_ms=end_ms
            ),
        )

    async def purge_readings(self, *, before_ms: int, limit: int) -> Purged:
        """At most ``limit`` raw readings before ``before_ms`` deleted, in one short transaction.
        For whole days past retention, ``drop_days_before`` is the cheap way: no row by row."""
        deleted, done = await self._in_transaction(
            "purge old readings", lambda cur: pr.purge(cur, before_ms=before_ms, limit=limit)
        )
        # The days it emptied go too: dropping their files gives the space back, no VACUUM needed.
        if done and await self._run("drop emptied days", lambda c: pr.drop_empty_days(c, before_ms)) > 0:
            self.partitions.forget()
        return Purged(deleted, done)

    async def drop_days_before(self, before_ms: int) -> int:
        """Drop every day partition that ends at or before ``before_ms`` (each in a short transaction
        of its own; its points' latest readings are kept); how many readings went. What is left
        before ``before_ms`` (the default partition, a day cut by ``before_ms``) is for
        ``purge_readings``."""

        async def run(conn: Conn) -> int:
            days = sorted(await parts.existing_days(conn))
            dropped = 0
            for day in days:
                if (day + 1) * parts.DAY_MS > before_ms:
                    break
                dropped += await pr.drop_day(conn, day)
            self.partitions.forget()
            return dropped

        return await self._run("drop old day partitions", run)

    # -- API tokens and audit -----------------------------------------------------------------

    async def add_token(self, token: TokenRow) -> bool:
        return await self._in_transaction("add token", lambda cur: pa.insert_token(cur, token))

    async def token(self, key_id: str) -> TokenRow | None:
        return await self._run("read token", lambda c: pa.token(c, key_id))

    async def tokens(self) -> list[TokenRow]:
        return await self._run("list tokens", pa.tokens)

    async def revoke_tokens(self, name: str, *, revoked_ms: int) -> int:
        return await self._in_transaction("revoke token", lambda cur: pa.revoke_tokens(cur, name, revoked_ms))

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._in_transaction("write audit entry", lambda cur: pa.insert_audit(cur, entry))

    async def audit(self, *, since_ms: int | None = None, limit: int = 100) -> list[AuditRow]:
        return await self._run("read audit", lambda c: pa.audit(c, since_ms, limit))

    # -- the KPI day cache ----------------------------------------------------------------------

    async def kpi_days(
        self, tz: str, first: dt.date, last: dt.date, *, cabinets: Sequence[str] | None = None
    ) -> list[KpiDayRow]:
        return await self._run("read KPI days", lambda c: pkd.current_days(c, tz, first, last, cabinets))

    async def kpi_changes(self, cabinet: str, first_utc_day: int, last_utc_day: int) -> dict[int, int]:
        return await self._run(
            "read KPI changes", lambda c: pkd.change_counts(c, cabinet, first_utc_day, last_utc_day)
        )

    async def kpi_change_totals(self, first_utc_day: int, last_utc_day: int) -> dict[str, int]:
        return await self._run(
            "read KPI changes", lambda c: pkd.change_totals(c, first_utc_day, last_utc_day)
        )

    async def kpi_zones(self) -> list[str]:
        return await self._run("read KPI zones", pkd.zones)

    async def put_kpi_days(self, rows: Sequence[KpiDayRow]) -> None:
        if rows:
            await self._in_transaction("write KPI days", lambda cur: pkd.put_days(cur, rows))

    async def kpi_episodes(self, *, since_ms: int, until_ms: int, limit: int) -> list[EpisodeTimes]:
        return await self._run("read KPI episodes", lambda c: pkd.episode_times(c, since_ms, until_ms, limit))

    async def kpi_counter_edges(self, *, start_ms: int, end_ms: int) -> list[CounterEdge]:
        return await self._run("read counters", lambda c: pkd.counter_edges(c, start_ms, end_ms))

    # -- the cabinet registry -----------------------------------------------------------------

    async def put_registry(self, entry: RegistryEntry) -> bool:
        return await self._in_transaction("write registry entry", lambda cur: preg.put(cur, entry))

    async def set_broker_hash(
        self, cabinet: str, broker_hash: str, *, expected: str | None, updated_ms: int
    ) -> bool:
        return await self._in_transaction(
            "write broker hash",
            lambda cur: preg.set_broker_hash(cur, cabinet, broker_hash, expected, updated_ms),
        )

    async def registry_entry(self, cabinet: str) -> RegistryEntry | None:
        return await self._run("read registry entry", lambda c: preg.entry(c, cabinet))

    async def registry(self, *, include_revoked: bool = False) -> list[RegistryEntry]:
        return await self._run("read registry", lambda c: preg.entries(c, include_revoked))

    async def revoke_cabinet(self, cabinet: str, *, revoked_ms: int) -> bool:
        return await self._in_transaction("revoke cabinet", lambda cur: preg.revoke(cur, cabinet, revoked_ms))
