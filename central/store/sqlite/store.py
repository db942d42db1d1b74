"""The embedded store: one SQLite file in WAL mode.

Writes go through ONE connection on ONE dedicated thread (a single-thread executor), so they are
serialised without locks and never run on the event loop. Reads (the API) use their own read-only
connections on a small pool of threads: in WAL mode they never wait for the writer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import msgspec

from central.errors import StoreError
from central.store.auth_rows import AuditEntry, AuditRow, TokenRow
from central.store.kpi_days import CounterEdge, KpiDayRow
from central.store.rollups import is_counter
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
from central.store.sqlite import auth as sa
from central.store.sqlite import commands as sc
from central.store.sqlite import episodes as se
from central.store.sqlite import kpi_days as skd
from central.store.sqlite import queries as q
from central.store.sqlite import registry as sreg
from central.store.sqlite import rollups as sr
from central.store.sqlite import views as sv
from central.store.sqlite.schema import BUSY_TIMEOUT_S, connect, create_schema
from central.store.sqlite.writer import SqliteWriter

_T = TypeVar("_T")

READ_THREADS = 4


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# Readings per page of a long read: bounded memory, few round trips to the read thread.
READING_CHUNK = 10_000


class SqliteStore:
    """``Store`` on a SQLite file. ``async with SqliteStore(path) as store`` opens and closes it."""

    def __init__(
        self, path: Path | str, *, durable: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self._durable = durable
        self._busy_timeout_s = busy_timeout_s
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._writer: SqliteWriter | None = None
        self._writer_conn: sqlite3.Connection | None = None
        # One read connection per read thread, created on first use; listed to be closed at the end.
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        if self._write_pool is not None:
            return
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="central-sqlite-writer")
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="central-sqlite-read")
        try:
            await self._on_writer("open", self._open_writer)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, busy_timeout_s=self._busy_timeout_s)
        self._writer_conn = conn
        create_schema(conn, durable=self._durable)
        self._writer = SqliteWriter(conn)

    async def close(self) -> None:
        write_pool, read_pool = self._write_pool, self._read_pool
        self._write_pool = self._read_pool = None
        loop = asyncio.get_running_loop()
        if write_pool is not None:
            # Queued behind any write still running: that commit completes before the close.
            await loop.run_in_executor(write_pool, self._close_writer)
            write_pool.shutdown(wait=False)
        if read_pool is not None:
            await asyncio.to_thread(read_pool.shutdown, wait=True)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def _close_writer(self) -> None:
        conn, self._writer_conn, self._writer = self._writer_conn, None, None
        if conn is not None:
            conn.close()

    async def _on_writer(self, operation: str, fn: Callable[[], _T]) -> _T:
        pool = self._write_pool
        if pool is None:
            raise StoreError(str(self.path), operation, "the store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn)
        except sqlite3.Error as exc:
            raise StoreError(str(self.path), operation, str(exc)) from exc
        except OSError as exc:
            raise StoreError(str(self.path), operation, str(exc)) from exc

    async def _on_reader(self, operation: str, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        pool = self._read_pool
        if pool is None:
            raise StoreError(str(self.path), operation, "the store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._read, fn)
        except sqlite3.Error as exc:
            raise StoreError(str(self.path), operation, str(exc)) from exc
        except msgspec.DecodeError as exc:  # a stored value central validated once no longer reads
            raise StoreError(str(self.path), operation, f"a stored row cannot be read: {exc}") from exc

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True, busy_timeout_s=self._busy_timeout_s)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return fn(conn)

    async def write(
        self,
        batches: Sequence[ReceivedBatch],
        statuses: Sequence[ReceivedStatus] = (),
        quarantine: Sequence[QuarantineEntry] = (),
    ) -> list[BatchOutcome]:
        def run() -> list[BatchOutcome]:
            if self._writer is None:
                raise sqlite3.ProgrammingError("the writer connection is closed")
            return self._writer.write(batches, statuses, quarantine)

        return await self._on_writer("write", run)

    async def _in_transaction(self, operation: str, fn: Callable[[sqlite3.Cursor], _T]) -> _T:
        def run() -> _T:
            if self._writer is None:
                raise sqlite3.ProgrammingError("the writer connection is closed")
            return self._writer.transaction(fn)

        return await self._on_writer(operation, run)

    async def ping(self) -> None:
        await self._on_reader("ping", q.ping)

    async def cabinets(self) -> list[CabinetRow]:
        return await self._on_reader("list cabinets", q.cabinets)

    async def cabinet(self, cabinet: str) -> CabinetRow | None:
        return await self._on_reader("read cabinet", lambda c: q.cabinet(c, cabinet))

    async def latest_values(self, cabinet: str) -> list[PointValue]:
        return await self._on_reader("latest values", lambda c: q.latest_values(c, cabinet))

    async def has_point(self, cabinet: str, point: str) -> bool:
        return await self._on_reader("find point", lambda c: q.has_point(c, cabinet, point))

    async def readings(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, limit: int
    ) -> list[ReadingRow]:
        return await self._on_reader(
            "read readings",
            lambda c: sv.point_readings(c, cabinet, point, start_ms=start_ms, end_ms=end_ms, limit=limit),
        )

    async def events(
        self, *, cabinet: str | None = None, since_ms: int | None = None, limit: int = 100
    ) -> list[EventRow]:
        return await self._on_reader("read events", lambda c: q.events(c, cabinet, since_ms, limit))

    async def quarantine(self, *, limit: int = 100) -> list[QuarantineRow]:
        return await self._on_reader("read quarantine", lambda c: q.quarantine(c, limit))

    async def quarantine_payload(self, entry_id: int) -> bytes | None:
        return await self._on_reader("read quarantined payload", lambda c: q.quarantine_payload(c, entry_id))

    async def quarantine_counts(self) -> QuarantineCounts:
        return await self._on_reader("count quarantine", q.quarantine_counts)

    async def totals(self) -> Totals:
        return await self._on_reader("read totals", q.totals)

    # -- commands and groups ------------------------------------------------------------------

    async def add_commands(
        self, commands: Sequence[CommandRow], parent: GroupCommandRow | None = None
    ) -> None:
        await self._in_transaction("add commands", lambda cur: sc.insert_commands(cur, commands, parent))

    async def command(self, command_id: str) -> CommandRow | None:
        return await self._on_reader("read command", lambda c: sc.command(c, command_id))

    async def group_command(self, command_id: str) -> GroupCommandRow | None:
        return await self._on_reader("read group command", lambda c: sc.group_command(c, command_id))

    async def child_commands(self, parent_id: str) -> list[CommandRow]:
        return await self._on_reader("read child commands", lambda c: sc.child_commands(c, parent_id))

    async def commands(
        self, *, cabinet: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[CommandRow]:
        return await self._on_reader("list commands", lambda c: sc.commands(c, cabinet, status, limit))

    async def pending_commands(
        self, *, not_after_from_ms: int, cabinets: Sequence[str] | None = None
    ) -> list[CommandRow]:
        return await self._on_reader(
            "list pending commands", lambda c: sc.pending_commands(c, not_after_from_ms, cabinets)
        )

    async def expire_commands(self, *, before_ms: int, now_ms: int) -> int:
        return await self._in_transaction(
            "expire commands", lambda cur: sc.expire_commands(cur, before_ms=before_ms, now_ms=now_ms)
        )

    async def put_group(self, group: GroupRow) -> bool:
        return await self._in_transaction("write group", lambda cur: sc.put_group(cur, group))

    async def group(self, name: str) -> GroupRow | None:
        return await self._on_reader("read group", lambda c: sc.group(c, name))

    async def groups(self) -> list[GroupRow]:
        return await self._on_reader("list groups", sc.groups)

    async def delete_group(self, name: str) -> bool:
        return await self._in_transaction("delete group", lambda cur: sc.delete_group(cur, name))

    # -- views --------------------------------------------------------------------------------

    async def latest_events(self, cabinet: str, kind: str) -> list[EventRow]:
        return await self._on_reader("read latest events", lambda c: sv.latest_events(c, cabinet, kind))

    async def alarms(
        self, *, cabinet: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[AlarmRow]:
        return await self._on_reader("read alarms", lambda c: sv.alarms(c, cabinet, active, limit))

    # -- alarm episodes (central.store.sqlite.episodes) ----------------------------------------

    async def episodes(self, query: EpisodeQuery) -> list[AlarmEpisode]:
        return await self._on_reader("list alarm episodes", lambda c: se.episodes(c, query))

    async def episode(self, episode_id: int) -> AlarmEpisode | None:
        return await self._on_reader("read alarm episode", lambda c: se.episode(c, episode_id))

    async def add_note(self, episode_id: int, note: NewNote) -> AlarmEpisode | None:
        return await self._in_transaction(
            "note alarm episode", lambda cur: se.add_note(cur, episode_id, note)
        )

    async def points_ending_with(self, cabinet: str, suffix: str) -> list[str]:
        return await self._on_reader("find points", lambda c: sv.points_ending_with(c, cabinet, suffix))

    async def reading_chunks(
        self, cabinet: str, point: str, *, start_ms: int, end_ms: int, neighbours: bool = False
    ) -> AsyncIterator[Sequence[ReadingRow]]:
        found = await self._on_reader("find point", lambda c: sv.point_pk(c, cabinet, point))
        if found is None:
            return
        pk = found
        before: list[ReadingRow] = []
        after: list[ReadingRow] = []
        if neighbours:
            before, after = await self._on_reader(
                "read readings", lambda c: sv.good_neighbours(c, pk, start_ms, end_ms)
            )
        if before:
            yield before
        key: sv.PageKey | None = (start_ms, -1, -1)
        while key is not None:
            page, key = await self._on_reader(
                "read readings",
                functools.partial(sv.reading_page, point=pk, after=key, end_ms=end_ms, limit=READING_CHUNK),
            )
            if page:
                yield page
        if after:
            yield after

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
        if resolution == "15m":
            return await self._on_reader(
                "read rollups",
                lambda c: sr.rollups(c, cabinet, point, start_ms=start_ms, end_ms=end_ms, limit=limit),
            )

        # Days are merged from their quarters, and old ones kept, on the writer (sqlite.rollups.days).
        def days(cur: sqlite3.Cursor) -> list[Rollup]:
            pk = sr.point_pk(cur, cabinet, point)
            return [] if pk is None else sr.days(cur, pk, start_ms, end_ms, limit, now_ms=_now_ms())

        return await self._in_transaction("read rollups", days)

    async def rollup_neighbours(
        self, cabinet: str, point: str, *, resolution: Resolution, start_ms: int, end_ms: int
    ) -> tuple[Rollup | None, Rollup | None]:
        if not is_counter(point):  # only counters have counted readings
            return None, None
        if resolution == "15m":

            def quarters(c: sqlite3.Connection) -> tuple[Rollup | None, Rollup | None]:
                pk = sr.point_pk(c, cabinet, point)
                return (None, None) if pk is None else sr.quarter_neighbours(c, pk, start_ms, end_ms)

            return await self._on_reader("read rollups", quarters)

        def days(cur: sqlite3.Cursor) -> tuple[Rollup | None, Rollup | None]:
            pk = sr.point_pk(cur, cabinet, point)
            if pk is None:
                return None, None
            return sr.day_neighbours(cur, pk, start_ms, end_ms, now_ms=_now_ms())

        return await self._in_transaction("read rollups", days)

    async def purge_readings(self, *, before_ms: int, limit: int) -> Purged:
        def run() -> Purged:
            if self._writer is None:
                raise sqlite3.ProgrammingError("the writer connection is closed")
            return self._writer.purge(before_ms=before_ms, limit=limit)

        return await self._on_writer("purge old readings", run)

    # -- the KPI day cache ----------------------------------------------------------------------

    async def kpi_days(
        self, tz: str, first: dt.date, last: dt.date, *, cabinets: Sequence[str] | None = None
    ) -> list[KpiDayRow]:
        return await self._on_reader(
            "read KPI days", lambda c: skd.current_days(c, tz, first, last, cabinets)
        )

    async def kpi_changes(self, cabinet: str, first_utc_day: int, last_utc_day: int) -> dict[int, int]:
        return await self._on_reader(
            "read KPI changes", lambda c: skd.change_counts(c, cabinet, first_utc_day, last_utc_day)
        )

    async def kpi_change_totals(self, first_utc_day: int, last_utc_day: int) -> dict[str, int]:
        return await self._on_reader(
            "read KPI changes", lambda c: skd.change_totals(c, first_utc_day, last_utc_day)
        )

    async def kpi_zones(self) -> list[str]:
        return await self._on_reader("read KPI zones", skd.zones)

    async def put_kpi_days(self, rows: Sequence[KpiDayRow]) -> None:
        if rows:
            await self._in_transaction("write KPI days", lambda cur: skd.put_days(cur, rows))

    async def kpi_episodes(self, *, since_ms: int, until_ms: int, limit: int) -> list[EpisodeTimes]:
        return await self._on_reader(
            "read KPI episodes", lambda c: skd.episode_times(c, since_ms, until_ms, limit)
        )

    async def kpi_counter_edges(self, *, start_ms: int, end_ms: int) -> list[CounterEdge]:
        return await self._on_reader("read counters", lambda c: skd.counter_edges(c, start_ms, end_ms))

    # -- API tokens and audit -----------------------------------------------------------------

    async def add_token(self, token: TokenRow) -> bool:
        return await self._in_transaction("add token", lambda cur: sa.insert_token(cur, token))

    async def token(self, key_id: str) -> TokenRow | None:
        return await self._on_reader("read token", lambda c: sa.token(c, key_id))

    async def tokens(self) -> list[TokenRow]:
        return await self._on_reader("list tokens", sa.tokens)

    async def revoke_tokens(self, name: str, *, revoked_ms: int) -> int:
        return await self._in_transaction("revoke token", lambda cur: sa.revoke_tokens(cur, name, revoked_ms))

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._in_transaction("write audit entry", lambda cur: sa.insert_audit(cur, entry))

    async def audit(self, *, since_ms: int | None = None, limit: int = 100) -> list[AuditRow]:
        return await self._on_reader("read audit", lambda c: sa.audit(c, since_ms, limit))

    # -- the cabinet registry -----------------------------------------------------------------

    async def put_registry(self, entry: RegistryEntry) -> bool:
        return await self._in_transaction("write registry entry", lambda cur: sreg.put(cur, entry))

    async def set_broker_hash(
        self, cabinet: str, broker_hash: str, *, expected: str | None, updated_ms: int
    ) -> bool:
        return await self._in_transaction(
            "write broker hash",
            lambda cur: sreg.set_broker_hash(cur, cabinet, broker_hash, expected, updated_ms),
        )

    async def registry_entry(self, cabinet: str) -> RegistryEntry | None:
        return await self._on_reader("read registry entry", lambda c: sreg.entry(c, cabinet))

    async def registry(self, *, include_revoked: bool = False) -> list[RegistryEntry]:
        return await self._on_reader("read registry", lambda c: sreg.entries(c, include_revoked))

    async def revoke_cabinet(self, cabinet: str, *, revoked_ms: int) -> bool:
        return await self._in_transaction("revoke cabinet", lambda cur: sreg.revoke(cur, cabinet, revoked_ms))
