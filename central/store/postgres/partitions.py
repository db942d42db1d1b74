"""Day partitions of ``readings``, made ahead of the rows that need them, within a bounded window.

A reading goes to the partition of its UTC day. A day gets its partition when a reading for it
arrives, if that day lies within the window around central's receive time (``DAYS_BACK`` before it,
``DAYS_AHEAD`` after it); stamps outside it (a board at 1970, a hostile cabinet at 2099) go to the
default partition: a cabinet cannot make thousands of tables.

A day whose partition is made after some of its rows went to the default partition (a clock a few
days fast) gets them moved in the transaction that makes it, so no row is ever in two places and the
attach finds the default partition clean.

Partitions are made in their own short transaction, under an advisory lock (several workers may
want the same day at once), before the ingest transaction that needs them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

DAY_MS = 86_400_000
# Older backlogs than this (a cabinet offline for a month) go to the default partition.
DAYS_BACK = 31
DAYS_AHEAD = 1
PARTITION_LOCK = 0x63697479_70617274  # "cityparte"
PREFIX = "readings_p"

_EXISTING = """
SELECT c.relname FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'readings'::regclass
"""


def day_of(ts_ms: int) -> int:
    return ts_ms // DAY_MS


def in_window(day: int, received_ms: int) -> bool:
    today = day_of(received_ms)
    return today - DAYS_BACK <= day <= today + DAYS_AHEAD


def partition_name(day: int) -> str:
    date = dt.datetime.fromtimestamp(day * DAY_MS / 1000, dt.UTC).date()
    return f"{PREFIX}{date:%Y%m%d}"


def day_of_name(name: str) -> int | None:
    """The day a partition holds, from its name; None for another table (the default partition)."""
    if not name.startswith(PREFIX):
        return None
    try:
        date = dt.datetime.strptime(name[len(PREFIX) :], "%Y%m%d").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return int(date.timestamp() * 1000) // DAY_MS


class Partitions:
    """The days that have a partition, as this process knows them (it only ever adds to the set)."""

    def __init__(self) -> None:
        self._days: set[int] | None = None

    def missing(self, days: Iterable[int]) -> list[int]:
        known = self._days
        if known is None:
            return sorted(set(days))
        return sorted({d for d in days if d not in known})

    def forget(self) -> None:
        """Read the catalog again next time (partitions were dropped by retention)."""
        self._days = None

    async def ensure(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], days: Iterable[int]) -> list[int]:
        """Make the partitions of ``days`` that do not exist; the days made."""
        wanted = self.missing(days)
        if not wanted:
            return []
        if self._days is None:
            self._days = await existing_days(conn)
            wanted = [d for d in wanted if d not in self._days]
        made = []
        for day in wanted:
            if await create_partition(conn, day):
                made.append(day)
            self._days.add(day)
        return made


async def existing_days(conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> set[int]:
    cur = await conn.execute(_EXISTING)
    return {d for (name,) in await cur.fetchall() if (d := day_of_name(str(name))) is not None}


async def create_partition(conn: psycopg.AsyncConnection[tuple[Any, ...]], day: int) -> bool:
    """Make the partition of ``day`` (moving its rows out of the default partition); False when
    another worker made it first."""
    name = sql.Identifier(partition_name(day))
    lo, hi = day * DAY_MS, (day + 1) * DAY_MS
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (partition_name(day),))
        row = await cur.fetchone()
        if row is not None and row[0]:
            return False
        await conn.execute(sql.SQL("CREATE TABLE {} (LIKE readings INCLUDING DEFAULTS)").format(name))
        # Bounds as a CHECK first: the attach then trusts it instead of scanning the new table.
        await conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (ts >= {} AND ts < {})").format(
                name, sql.Identifier(f"{partition_name(day)}_bounds"), sql.Literal(lo), sql.Literal(hi)
            )
        )
        await conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM readings_default WHERE ts >= %s AND ts < %s RETURNING *)"
                " INSERT INTO {} SELECT * FROM moved"
            ).format(name),
            (lo, hi),
        )
        await conn.execute(
            sql.SQL("ALTER TABLE readings ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                name, sql.Literal(lo), sql.Literal(hi)
            )
        )
    return True
