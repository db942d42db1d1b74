"""Two `central serve` workers on one broker and one database, one of them killed again and again.

Real processes: the shipped broker config (accounts, ACL, the shared subscription central's account
may join), two `python -m cityedge central serve` children, and edges that publish numbered batches
and resend what is not acknowledged, as agents do. The workers are SIGKILLed in turn while they ingest
and started again. At the end every batch is acknowledged and central holds every cabinet's
sequence exactly once: contiguous, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from central.config import Retention
from central.leadership import advisory_key
from central.server import CentralServer
from central.store.rows import ReceivedBatch
from central.store.sqlite import SqliteStore
from central.store.sqlite.blocks import unpack
from central.testing import batch_payload, wait_until
from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port, wait_for_port
from protocols.fleet import Reading, decode_ack, decode_data_batch, encode, encode_data_batch
from protocols.fleet.topics import Topics
from tests.contract.backends import PgServer
from tests.integration.fleet_rig import Process
from tests.integration.shipped_broker import PASSWORDS, ShippedBroker, shipped_broker

pytestmark = pytest.mark.integration

CABINETS = [f"cab-w{i}" for i in range(4)]
STREAM = "0badcafe"
BATCH = 100  # readings per batch
WINDOW = 8  # batches in flight per edge
# A new batch every PACE_S at most: 20 messages a second per cabinet, well within central's rate
# limits (central.ingest_limits), so that every resend is one a kill caused.
PACE_S = 0.05
RESEND_S = 1.0  # an edge resends a batch not acknowledged within this
KILLS = 6  # alternating between the two workers
STORED_BEFORE_KILL = 10  # batches the victim stored since its start: it is killed mid-stream


# -- the database ----------------------------------------------------------------------------------


class Database:
    url: str

    def prepare(self) -> None:
        """Make the schema the workers expect."""

    def seq_counts(self) -> Counter[tuple[str, str, int]]:
        """How many rows central holds for each (cabinet, stream, seq)."""
        raise NotImplementedError

    def dispatch_leaders(self) -> int:
        """How many hold the dispatch leadership (central.leadership) now."""
        raise NotImplementedError


class SqliteDatabase(Database):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"

    def seq_counts(self) -> Counter[tuple[str, str, int]]:
        # Readings are stored as packed blocks (central/store/sqlite/blocks.py): every one unpacked.
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            blocks = db.execute(
                "SELECT s.cabinet, s.stream, b.stream_pk, b.first_seq, b.data"
                " FROM blocks AS b JOIN streams AS s ON s.id = b.stream_pk"
            ).fetchall()
        finally:
            db.close()
        rows = [
            (cabinet, stream, r.seq)
            for cabinet, stream, pk, first, data in blocks
            for r in unpack(pk, first, data)
        ]
        return Counter((cabinet, stream, seq) for cabinet, stream, seq in rows)

    def dispatch_leaders(self) -> int:
        try:
            fd = os.open(self.path.with_name(f"{self.path.name}.dispatch.leader"), os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 1  # a live worker holds it (a dead one's lock went with it)
        finally:
            os.close(fd)
        return 0


class PostgresDatabase(Database):
    def __init__(self, url: str) -> None:
        self.url = url

    def prepare(self) -> None:
        migrate = [sys.executable, "-m", "cityedge", "central", "migrate", "--db", self.url]
        done = subprocess.run(migrate, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")

    def seq_counts(self) -> Counter[tuple[str, str, int]]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            rows = conn.execute(
                "SELECT s.cabinet, s.stream, r.seq FROM readings AS r JOIN streams AS s ON s.id = r.stream_pk"
            ).fetchall()
        return Counter((cabinet, stream, seq) for cabinet, stream, seq in rows)

    def dispatch_leaders(self) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                # A bigint advisory key is held as classid (its high 32 bits) and objid (its low 32).
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = (%(k)s::bigint >> 32) & 4294967295"
                " AND objid::bigint = %(k)s::bigint & 4294967295",
                {"k": advisory_key("dispatch")},
            ).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield SqliteDatabase(tmp_path / "central.db")
        return
    server = PgServer()
    if server.unavailable:
        pytest.skip(server.unavailable)
    name = server.create_database("cityedge_workers")
    try:
        yield PostgresDatabase(url_of(server, name))
    finally:
        server.drop_database(name)


def url_of(server: PgServer, name: str) -> str:
    """The URL of database ``name`` on the test server (``central serve --db`` takes URLs)."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(server.dsn)._replace(path=f"/{name}"))


# -- the workers -----------------------------------------------------------------------------------


class Worker:
    """One `central serve` child with its own HTTP port; /health says what it ingested."""

    def __init__(self, name: str, tmp: Path, db: str, broker: ShippedBroker, password_file: Path) -> None:
        self.port = free_port()
        args = [
            "central", "serve", "--db", db,
            "--broker", f"mqtt://central@127.0.0.1:{broker.port}",
            "--broker-password-file", str(password_file),
            "--http", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.process = Process(name, args, tmp / f"{name}.log")
        self.starts = 0

    async def start(self) -> None:
        self.process.start()
        self.starts += 1
        async with asyncio.timeout(30):
            await wait_for_port("127.0.0.1", self.port)

    def kill(self) -> None:
        self.process.kill()

    def freeze(self) -> None:
        """Stop the process where it is (SIGSTOP): its connection stays open, the broker keeps
        handing it its share of the batches, and it acknowledges none of them."""
        assert self.process.popen is not None
        self.process.popen.send_signal(signal.SIGSTOP)

    async def health(self, token: str) -> dict[str, Any] | None:
        """The worker's ingest counters, None while it does not answer."""
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(
                    f"http://127.0.0.1:{self.port}/api/v1/health",
                    headers={"Authorization": f"Bearer {token}"},
                )
        except httpx.HTTPError:
            return None
        ingest: dict[str, Any] | None = response.json().get("ingest")
        return ingest


def make_token(db: str) -> str:
    create = [sys.executable, "-m", "cityedge", "central", "token", "create"]
    done = subprocess.run(
        [*create, "--role", "viewer", "--name", "test", "--db", db],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().strip()


# -- the edges -------------------------------------------------------------------------------------


@dataclass
class Edge:
    """Publishes batches 0, 1, 2, ... (seq k*BATCH+1 .. (k+1)*BATCH) with a window, resends what is
    not acknowledged within RESEND_S, until told to stop producing and everything is acknowledged."""

    cabinet: str
    produced: int = 0
    acked: set[int] = field(default_factory=set)
    resent: int = 0
    _inflight: dict[int, float] = field(default_factory=dict)
    _ack: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, broker: ShippedBroker, stop_producing: asyncio.Event) -> None:
        topics = Topics(self.cabinet)
        async with broker.client(self.cabinet, password=password_of(self.cabinet)) as client:
            await client.subscribe(topics.ack, qos=1)
            reader = asyncio.create_task(self._read_acks(client))
            try:
                next_batch = time.monotonic()
                while not (stop_producing.is_set() and not self._inflight):
                    now = time.monotonic()
                    if not stop_producing.is_set() and len(self._inflight) < WINDOW and now >= next_batch:
                        await self._publish(client, self.produced)
                        self.produced += 1
                        next_batch = now + PACE_S
                    for k, sent in list(self._inflight.items()):
                        if now - sent >= RESEND_S:
                            self.resent += 1
                            await self._publish(client, k)
                    self._ack.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(PACE_S):  # the edge's timer tick
                            await self._ack.wait()
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    def waiting_s(self) -> float:
        """How long the oldest unacknowledged batch has waited."""
        return time.monotonic() - min(self._inflight.values(), default=time.monotonic())

    async def _publish(self, client: aiomqtt.Client, k: int) -> None:
        payload = batch_payload(self.cabinet, STREAM, k * BATCH + 1, BATCH)
        self._inflight[k] = time.monotonic()
        await client.publish(Topics(self.cabinet).data, payload, qos=1)

    async def _read_acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            ack = decode_ack(message.payload, topic_cabinet=self.cabinet)
            k, rest = divmod(ack.first - 1, BATCH)
            if ack.stream == STREAM and rest == 0 and ack.last == ack.first + BATCH - 1:
                self.acked.add(k)
                self._inflight.pop(k, None)
                self._ack.set()


# -- the test --------------------------------------------------------------------------------------


def password_of(cabinet: str) -> str:
    return f"{cabinet}-pw"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[ShippedBroker]:
    passwords = {**PASSWORDS, **{cabinet: password_of(cabinet) for cabinet in CABINETS}}
    async with shipped_broker(tmp_path / "broker", passwords) as running:
        yield running


async def test_killing_one_of_two_workers_again_and_again_loses_and_repeats_nothing(
    tmp_path: Path, broker: ShippedBroker, database: Database
) -> None:
    database.prepare()
    token = make_token(database.url)
    password_file = tmp_path / "broker-password"
    password_file.write_text(PASSWORDS["central"])
    password_file.chmod(0o600)
    workers = [Worker(f"worker{i}", tmp_path, database.url, broker, password_file) for i in range(2)]
    edges = [Edge(cabinet) for cabinet in CABINETS]
    stop_producing = asyncio.Event()
    running: list[asyncio.Task[None]] = []

    def edges_fine() -> None:
        for task in running:  # an edge that failed fails the test now, not at the end
            if task.done() and task.exception() is not None:
                raise AssertionError("an edge failed") from task.exception()

    try:
        for worker in workers:
            await worker.start()

        async def sharing() -> bool:
            states = [await w.health(token) for w in workers]
            return all(s is not None and s["mqtt_connected"] and s["shared_subscription"] for s in states)

        await wait_until(sharing, timeout=30, what="both workers subscribed to the shared data topic")
        running = [asyncio.create_task(edge.run(broker, stop_producing)) for edge in edges]
        for kill in range(KILLS):
            victim = workers[kill % 2]

            async def victim_busy(victim: Worker = victim) -> bool:
                edges_fine()
                state = await victim.health(token)
                return state is not None and state["batches_stored"] >= STORED_BEFORE_KILL

            await wait_until(victim_busy, timeout=60, what=f"{victim.process.name} ingesting (kill {kill})")
            # Killed with batches in its hands: frozen first, until an edge waits on a batch the
            # broker gave it (a kill between two batches would test nothing).
            victim.freeze()
            await wait_until(lambda: any(e.waiting_s() > 0.2 for e in edges), timeout=30, what="a batch held")
            victim.kill()
            await victim.start()
        stop_producing.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*running)
        # Each worker was killed, the leader among them: one of the live ones leads the command sweep.
        await wait_until(lambda: database.dispatch_leaders() == 1, timeout=10, what="one dispatch leader")
    except BaseException:
        for worker in workers:
            print(f"--- {worker.process.name}\n{worker.process.tail()}")
        raise
    finally:
        stop_producing.set()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        for worker in workers:
            worker.process.terminate()

    # Every batch produced was acknowledged; several were sent again (the kills hit batches in flight).
    for edge in edges:
        assert edge.produced > 0 and edge.acked == set(range(edge.produced)), edge.cabinet
    assert sum(edge.resent for edge in edges) > 0
    assert all(worker.starts == 1 + KILLS // 2 for worker in workers)
    # Central holds each cabinet's sequence 1..produced*BATCH once: contiguous, nothing twice.
    counts = database.seq_counts()
    assert {n for n in counts.values()} == {1}
    for edge in edges:
        held = sorted(
            seq for (cabinet, stream, seq) in counts if cabinet == edge.cabinet and stream == STREAM
        )
        assert held == list(range(1, edge.produced * BATCH + 1)), edge.cabinet
    assert len(counts) == sum(edge.produced for edge in edges) * BATCH


async def test_of_two_workers_on_one_database_one_purges_old_readings(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    path = tmp_path / "central.db"
    t0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
    readings = [Reading(i + 1, "lc1/power_w", t0 + i * 1000, float(i)) for i in range(20_000)]
    async with SqliteStore(path) as store:
        for start in range(0, len(readings), 100):
            chunk = readings[start : start + 100]
            payload = encode_data_batch(
                cabinet="cab-1",
                stream=STREAM,
                first=chunk[0].seq,
                last=chunk[-1].seq,
                readings=[encode(r) for r in chunk],
            )
            await store.write(
                [ReceivedBatch(decode_data_batch(payload), chunk[-1].ts, "cityedge/cab-1/data", payload)]
            )
    # All of them past the retention period; one block (a batch of 100) per purge step, a step every
    # 200 ms (both workers are up by the first): two purging workers would share the work.
    retention = Retention(days=1, interval_s=0.2, batch=1)
    now = t0 + 10 * 86_400_000

    def worker() -> CentralServer:
        return CentralServer(
            db=path, broker_url=mosquitto.url, http_port=0, retention=retention, clock=lambda: now
        )

    async with worker() as first, worker() as second:
        assert first.retention_leadership.is_leader() and not second.retention_leadership.is_leader()
        await wait_until(
            lambda: first.purged + second.purged == len(readings), what="every old reading purged", timeout=30
        )
        assert second.purged == 0
