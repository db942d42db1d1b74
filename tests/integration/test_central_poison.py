"""Poison on a real broker: retained messages that would kill central on every restart cannot.

Any cabinet can publish them with its own credentials; being retained, the broker hands them to every
worker at every (re)start. Each is quarantined and counted, the workers stay up, and the good cabinet's
records are stored exactly once across a worker killed and restarted.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import aiomqtt
import msgspec
import pytest

from central.store.sqlite.blocks import unpack
from central.testing import ScriptedEdge, status_payload, wait_until
from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port

pytestmark = pytest.mark.integration

GOOD = "cab-good"
STREAM = "0123abcd"


def poison() -> list[tuple[str, bytes]]:
    """(topic, payload) published retained: each once killed the landed aggregator or was stored."""
    nan_reading = msgspec.msgpack.encode(
        {
            "v": 1,
            "cabinet": "p-nan",
            "stream": STREAM,
            "first": 1,
            "last": 1,
            "readings": [[1, "lc1/power_w", 0, math.nan, 0, None]],
        }
    )
    return [
        ("cityedge/p-boot/status", status_payload("p-boot", online=True, boot_count=2**63)),
        ("cityedge/p-backlog/status", status_payload("p-backlog", online=True, backlog=2**64 - 1)),
        ("cityedge/p-garbage/status", b"\xc1\xc1 not msgpack"),
        ("cityedge/p-deep/status", b"\x91" * 100_000),  # nested arrays, 100,000 deep
        ("cityedge/p-nan/data", nan_reading),
    ]


@contextmanager
def worker(db: Path, broker: MosquittoBroker, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cityedge central serve`` as ops run it, in its own process."""
    command = [sys.executable, "-m", "cityedge", "central", "serve", "--db", str(db)]
    command += ["--broker", broker.url, "--http", f"127.0.0.1:{free_port()}"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def quarantined(db: Path) -> dict[str, int]:
    """Quarantined messages by topic; empty while the first worker has not made the schema yet."""
    if not db.exists():
        return {}
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            rows = conn.execute("SELECT topic, count(*) FROM quarantine GROUP BY topic").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise
    return {str(topic): int(n) for topic, n in rows}


def stored_seqs(db: Path) -> list[int]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        blocks = conn.execute(
            "SELECT b.stream_pk, b.first_seq, b.data FROM blocks b JOIN streams s ON s.id = b.stream_pk"
            " WHERE s.cabinet = ?",
            (GOOD,),
        ).fetchall()
    return sorted(r.seq for stream, first, data in blocks for r in unpack(stream, first, data))


async def send_batches(edge: ScriptedEdge, batches: int, size: int = 20) -> None:
    """Batches one after the other, each resent until acknowledged (a killed worker loses its share)."""
    for _ in range(batches):
        records = [edge.reading("lc1/power_w", 1_714_557_600_000 + i, float(i)) for i in range(size)]
        await edge.send(*records, resend_s=2.0)


def alive(*processes: subprocess.Popen[bytes]) -> bool:
    return all(p.poll() is None for p in processes)


async def test_retained_poison_is_quarantined_and_two_workers_survive_restarts(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    db, log = tmp_path / "central.db", tmp_path / "workers.log"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as attacker:
        for topic, payload in poison():
            await attacker.publish(topic, payload, qos=1, retain=True)
    with worker(db, mosquitto, log) as first:
        # The first worker creates the schema; the second joins once it exists.
        await wait_until(lambda: quarantined(db) != {}, timeout=30, what="first worker up")
        with worker(db, mosquitto, log) as second:
            statuses = [t for t, _ in poison() if t.endswith("/status")]
            await wait_until(
                lambda: all(quarantined(db).get(t, 0) >= 2 for t in statuses),
                timeout=30,
                what="each retained poison quarantined by both workers",
            )
            async with ScriptedEdge(mosquitto.url, GOOD, timeout=60) as edge:
                await edge.birth()
                await send_batches(edge, 10)
                assert alive(first, second), log.read_text()[-3000:]

                # Kill one worker mid-ingest and start it again: it meets the poison again.
                sending = asyncio.create_task(send_batches(edge, 10))
                await wait_until(lambda: len(edge.acks) >= 12, timeout=30, what="ingest under way")
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                with worker(db, mosquitto, log) as restarted:
                    await sending
                    await wait_until(
                        lambda: all(quarantined(db).get(t, 0) >= 3 for t in statuses),
                        timeout=30,
                        what="the restarted worker quarantining the poison again",
                    )
                    await send_batches(edge, 10)
                    assert alive(second, restarted), log.read_text()[-3000:]
                total = 30 * 20
    assert stored_seqs(db) == list(range(1, total + 1))  # each exactly once, none missing
    counts = quarantined(db)
    assert set(statuses) <= set(counts)
