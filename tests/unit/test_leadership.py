"""Leader election among central workers: a lock file (SQLite) and an advisory lock (PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from central.dispatch import CommandDispatcher
from central.leadership import (
    AdvisoryLeadership,
    FileLeadership,
    SoleLeader,
    advisory_key,
    leadership_for,
)
from central.store.sqlite import SqliteStore
from central.testing import wait_until
from tests.contract.backends import PgServer

CHECK_S = 0.05

# Holds an exclusive flock on argv[1] until killed; says so on stdout.
_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def test_leadership_for_picks_the_lock_of_the_backend(tmp_path: Path) -> None:
    lock = leadership_for(f"sqlite:///{tmp_path / 'central.db'}", "dispatch")
    assert isinstance(lock, FileLeadership)
    assert lock.path == tmp_path / "central.db.dispatch.leader"
    # Each job its own lock: a leader of retention need not be the leader of dispatch.
    other = leadership_for(str(tmp_path / "central.db"), "retention")
    assert isinstance(other, FileLeadership) and other.path != lock.path
    pg = leadership_for("postgresql://postgres@db.example/central", "dispatch")
    assert isinstance(pg, AdvisoryLeadership) and pg.key == advisory_key("dispatch")
    assert advisory_key("dispatch") != advisory_key("retention")
    assert -(2**63) <= advisory_key("dispatch") < 2**63
    assert isinstance(leadership_for(":memory:", "dispatch"), SoleLeader)
    with pytest.raises(ValueError, match="job name"):
        leadership_for(str(tmp_path / "c.db"), "../x")


async def test_one_of_two_leads_and_the_other_takes_over_when_it_stops(tmp_path: Path) -> None:
    path = tmp_path / "c.db.dispatch.leader"
    first = FileLeadership("dispatch", path, check_s=CHECK_S)
    second = FileLeadership("dispatch", path, check_s=CHECK_S)
    async with second:
        async with first:
            assert not first.is_leader()  # entered second: the other one took it
            assert second.is_leader()
        assert not first.is_leader()
    # second released on exit: first takes it on a fresh start
    async with first:
        assert first.is_leader()
        assert path.read_text() == f"{os.getpid()}\n"


async def test_a_killed_holder_in_another_process_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "c.db.dispatch.leader"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await holder.stdout.readline() == b"held\n"
        async with FileLeadership("dispatch", path, check_s=CHECK_S) as lock:
            for _ in range(5):  # several checks pass without taking it
                await asyncio.sleep(CHECK_S)
                assert not lock.is_leader()
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
            await wait_until(lock.is_leader, timeout=5, what="the leadership after the holder died")
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.communicate()


async def test_a_replaced_lock_file_is_given_up(tmp_path: Path) -> None:
    path = tmp_path / "c.db.dispatch.leader"
    async with (
        FileLeadership("dispatch", path, check_s=CHECK_S) as first,
        FileLeadership("dispatch", path, check_s=CHECK_S) as second,
    ):
        assert first.is_leader() and not second.is_leader()
        path.unlink()  # someone deleted it: a newcomer would lock a new file
        await wait_until(lambda: second.is_leader() != first.is_leader(), timeout=5, what="one leader again")
        await asyncio.sleep(CHECK_S * 4)
        assert second.is_leader() != first.is_leader()


async def test_an_unusable_lock_folder_means_no_leadership(tmp_path: Path) -> None:
    async with FileLeadership("dispatch", tmp_path / "missing" / "x.leader", check_s=CHECK_S) as lock:
        assert not lock.is_leader()


class Publisher:
    def __init__(self) -> None:
        self.topics: list[str] = []

    async def publish(self, topic: str, payload: bytes, *, expiry_s: int | None = None) -> bool:
        self.topics.append(topic)
        return True


async def test_only_the_leading_dispatcher_sweeps(tmp_path: Path) -> None:
    path = tmp_path / "c.db.dispatch.leader"
    async with (
        SqliteStore(tmp_path / "c.db") as store,
        FileLeadership("dispatch", path, check_s=CHECK_S) as leads,
        FileLeadership("dispatch", path, check_s=CHECK_S) as follows,
    ):
        assert leads.is_leader() and not follows.is_leader()
        kwargs = {"store": store, "publisher": Publisher(), "retry_s": 0.02}
        async with (
            CommandDispatcher(**kwargs, leadership=leads) as leader,  # type: ignore[arg-type]
            CommandDispatcher(**kwargs, leadership=follows) as follower,  # type: ignore[arg-type]
        ):
            await wait_until(lambda: leader.stats.sweeps >= 5, what="five sweeps by the leader")
            assert follower.stats.sweeps == 0
            await leads.__aexit__(None, None, None)  # the leader stops: the other takes over
            await wait_until(lambda: follower.stats.sweeps >= 3, what="sweeps by the new leader")


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A database of the test's own on the test PostgreSQL server (skipped when there is none)."""
    server = PgServer()
    if server.unavailable:
        pytest.skip(server.unavailable)
    name = server.create_database("cityedge_lead")
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(server.dsn)._replace(path=f"/{name}"))
    finally:
        server.drop_database(name)


@pytest.fixture
async def two_campaigns(pg_dsn: str) -> AsyncIterator[tuple[AdvisoryLeadership, AdvisoryLeadership]]:
    async with (
        AdvisoryLeadership("dispatch", pg_dsn, check_s=CHECK_S) as first,
        AdvisoryLeadership("dispatch", pg_dsn, check_s=CHECK_S) as second,
    ):
        yield first, second


async def test_advisory_lock_one_leads_and_a_dropped_session_hands_over(
    pg_dsn: str, two_campaigns: tuple[AdvisoryLeadership, AdvisoryLeadership]
) -> None:
    import psycopg

    first, second = two_campaigns
    assert first.is_leader() and not second.is_leader()
    for _ in range(5):
        await asyncio.sleep(CHECK_S)
        assert first.is_leader() and not second.is_leader()
    # The leader's connection is cut (a network failure, a restarted server): it must notice
    # that it no longer leads, and the other takes the lock the server freed with the session.
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await conn.execute(
            # A bigint key is held as classid (its high 32 bits) and objid (its low 32 bits).
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 1 AND classid::bigint = (%(k)s::bigint >> 32) & 4294967295"
            " AND objid::bigint = %(k)s::bigint & 4294967295",
            {"k": first.key},
        )
    await wait_until(lambda: second.is_leader() and not first.is_leader(), timeout=10, what="the handover")


async def test_advisory_lock_unreachable_server_means_no_leadership() -> None:
    pytest.importorskip("psycopg")
    # A port nobody listens on: the campaign reports it and leads nothing.
    async with AdvisoryLeadership("dispatch", "postgresql://postgres@127.0.0.1:9/x", check_s=CHECK_S) as lock:
        assert not lock.is_leader()


async def test_advisory_lock_session_has_server_side_keepalive(pg_dsn: str) -> None:
    # Without it the server keeps a vanished worker's session, and its lock, for the kernel's ~2 h.
    dsn = f"{pg_dsn}?options=-c%20search_path%3Dkept"
    async with AdvisoryLeadership("dispatch", dsn, check_s=CHECK_S) as lock:
        assert lock.is_leader()
        assert await lock._query("SHOW tcp_keepalives_idle") == "10"
        assert await lock._query("SHOW tcp_keepalives_count") == "3"
        # Options of the URL are kept beside ours.
        assert await lock._query("SHOW search_path") == "kept"
