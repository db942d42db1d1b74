"""A whole fleet on one machine for outage tests: real Mosquitto, central and agent as processes.

Central and the agent run as `cityedge` subprocesses so that a test can SIGKILL them; the Modbus
simulator runs in the test's event loop. What central stored is read straight from its SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from central.store.sqlite.blocks import unpack
from cityedge.ports import free_port, wait_for_port
from cityedge.testing import write_agent_config

STARTUP_S = 30.0


class Process:
    """One `python -m cityedge ...` child; its stderr goes to a log file kept for failures."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "cityedge", *self.args],
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, like a power cut of the process."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: what systemd sends to stop a service; the process stops cleanly."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=30)
        self.popen = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


class FleetRig:
    def __init__(
        self, tmp: Path, *, broker_url: str, cabinet: str, device_port: int, agent_dir: Path | None = None
    ) -> None:
        self.tmp = tmp
        self.cabinet = cabinet
        self.broker_url = broker_url
        self.device_port = device_port
        self.central_db = tmp / "central.db"
        self.http_port = free_port()
        self.central = Process(
            "central",
            [
                "central", "serve",
                "--db", str(self.central_db),
                "--broker", broker_url,
                "--http", f"127.0.0.1:{self.http_port}",
            ],
            tmp / "central.log",
        )  # fmt: skip
        self.agent_dir = agent_dir or tmp / cabinet
        self.agent_config = self.agent_dir / "agent.toml"
        if agent_dir is None:
            self.write_config(with_devices=True)
        self.agent = Process("agent", ["agent", "run", "--config", str(self.agent_config)], tmp / "agent.log")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    def write_config(self, *, with_devices: bool) -> Path:
        return write_agent_config(
            self.agent_dir,
            cabinet=self.cabinet,
            broker_url=self.broker_url,
            devices=[("lc1", self.device_port)] if with_devices else [],
            poll_interval_s=0.05,
            commit_interval_s=0.1,
            ack_timeout_s=2.0,
        )

    async def start_central(self) -> None:
        self.central.start()
        async with asyncio.timeout(STARTUP_S):
            await wait_for_port("127.0.0.1", self.http_port)

    def logs(self) -> str:
        return f"--- central log\n{self.central.tail()}\n--- agent log\n{self.agent.tail()}"

    # -- what each side holds ------------------------------------------------------------------

    def produced_last_seq(self) -> int:
        """The last seq the agent committed to its buffer (0 before its first commit)."""
        path = self.agent_dir / "buffer.db"
        if not path.exists():
            return 0
        with _readonly(path) as db:
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
            except sqlite3.OperationalError:
                return 0
        return int(row[0]) if row else 0

    def agent_drained(self) -> bool:
        """The agent committed records, and central acknowledged every one (the buffer is empty)."""
        path = self.agent_dir / "buffer.db"
        if self.produced_last_seq() == 0:
            return False
        with _readonly(path) as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0]) == 0

    def central_seqs(self) -> list[int]:
        """Every seq central stored for this cabinet (readings, events, results), with repeats."""
        if not self.central_db.exists():
            return []
        query = """
            SELECT t.seq FROM {table} AS t JOIN streams AS s ON s.id = t.stream_pk
            WHERE s.cabinet = ?
        """
        seqs: list[int] = []
        with _readonly(self.central_db) as db:
            try:
                for table in ("events", "command_results"):
                    seqs += [r[0] for r in db.execute(query.format(table=table), (self.cabinet,))]
                blocks = db.execute(
                    "SELECT b.stream_pk, b.first_seq, b.data FROM blocks AS b"
                    " JOIN streams AS s ON s.id = b.stream_pk WHERE s.cabinet = ?",
                    (self.cabinet,),
                )
                seqs += [r.seq for stream, first, data in blocks for r in unpack(stream, first, data)]
            except sqlite3.OperationalError:
                return []
        return seqs

    def central_streams(self) -> int:
        with _readonly(self.central_db) as db:
            row = db.execute("SELECT count(*) FROM streams WHERE cabinet = ?", (self.cabinet,))
            return int(row.fetchone()[0])

    def central_reading_keys(self) -> list[tuple[str, int]]:
        """(point, ts) of every reading central stored: a reading stored twice shows up twice."""
        with _readonly(self.central_db) as db:
            names = dict(db.execute("SELECT id, name FROM points WHERE cabinet = ?", (self.cabinet,)))
            blocks = db.execute(
                """SELECT b.stream_pk, b.first_seq, b.data FROM blocks AS b
                   JOIN streams AS s ON s.id = b.stream_pk WHERE s.cabinet = ?""",
                (self.cabinet,),
            ).fetchall()
        return [(names[r.point], r.ts) for stream, first, data in blocks for r in unpack(stream, first, data)]


class _readonly:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()
