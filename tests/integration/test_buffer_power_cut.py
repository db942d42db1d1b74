"""The buffer's promise under kill -9: what a commit returned is there after, at most one commit
interval of readings is lost, and the file opens clean, round after round on the same file."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Kind, read_file_records
from protocols.fleet import Reading, decode_record

pytestmark = pytest.mark.integration

COMMIT_S = 0.2
APPEND_S = 0.005  # 200 readings a second: about 40 a commit interval

_WRITER = f"""
import asyncio, sys, time
from pathlib import Path
import edge_agent.buffer as buffer_module
from edge_agent.buffer import Buffer

buffer_module.DELETE_EVERY_RECORDS = 100  # bulk deletions happen in this short run too

async def main() -> None:
    async with Buffer(Path(sys.argv[1]), max_bytes=10**8, clock_ms=lambda: 1) as buffer:
        print("stream", buffer.stream, flush=True)
        next_commit = time.monotonic() + {COMMIT_S}
        while True:
            seq = buffer.append_reading("lc1/power_w", buffer.committed_seq, float(time.monotonic()))
            print("appended", seq, flush=True)
            if time.monotonic() >= next_commit:
                await buffer.flush()
                # As a connected cabinet: what is older than the last 50 is acknowledged.
                if buffer.committed_seq > 50:
                    buffer.mark_acked(1, buffer.committed_seq - 50)
                print("committed", buffer.committed_seq, flush=True)
                next_commit += {COMMIT_S}
            await asyncio.sleep({APPEND_S})

asyncio.run(main())
"""


class Writer:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stream = ""
        self.committed: list[int] = []
        self.appended = 0

    async def read_until(self, commits: int, appends_after: int) -> None:
        """Until ``commits`` commits and then ``appends_after`` more readings were reported."""
        assert self.process.stdout is not None
        mark = None
        async with asyncio.timeout(30):
            while mark is None or self.appended < mark + appends_after:
                if mark is None and len(self.committed) >= commits:
                    mark = self.appended
                    continue
                line = (await self.process.stdout.readline()).decode().split()
                assert line, "the writer ended early"
                if line[0] == "stream":
                    self.stream = line[1]
                elif line[0] == "appended":
                    self.appended = int(line[1])
                else:
                    self.committed.append(int(line[1]))


async def test_kill_9_mid_run_loses_nothing_committed_and_at_most_a_commit_interval(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    stream = None
    last_committed = 0
    lost_counts: list[int] = []
    for round_ in range(6):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WRITER, str(path), stdout=asyncio.subprocess.PIPE
        )
        writer = Writer(process)
        # A different point of the run each round: right after a commit, or well into the next.
        await writer.read_until(3 + round_, appends_after=round_ * 7)
        process.send_signal(signal.SIGKILL)
        assert process.stdout is not None
        rest = (await process.stdout.read()).decode().split("\n")  # what it said before it died
        await process.wait()
        for line in rest:
            word, _, value = line.partition(" ")
            if word == "appended":
                writer.appended = int(value)
            elif word == "committed":
                writer.committed.append(int(value))
        stream = stream or writer.stream
        assert writer.stream == stream, "a crash must never start a new stream"
        committed = writer.committed[-1]
        assert writer.committed[0] >= last_committed  # it went on from where the last round ended

        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = read_file_records(path)
        seqs = [seq for seq, _, _ in records]
        assert seqs == sorted(set(seqs)), "each seq once, in order"
        # Nothing the writer saw committed is lost: every seq it had not acknowledged is there, and
        # the acknowledged ones are either still there or deleted, never in between.
        assert seqs, "the 50 newest committed records are never acknowledged"
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "no hole in what is kept"
        assert seqs[0] <= max(1, committed - 49)
        assert seqs[-1] >= committed
        for _, kind, body in records:
            assert kind == Kind.READING
            decode_record(Reading, body)
        async with Buffer(path, max_bytes=10**8, clock_ms=lambda: 1) as again:
            assert again.stream == stream
            assert again.committed_seq == seqs[-1]
            # What was lost: appended after the last commit that reached the file, at most about one
            # commit interval of readings (and, as promised, never sent: nothing sends them here).
            lost = writer.appended - again.committed_seq
            assert 0 <= lost <= COMMIT_S / APPEND_S * 2 + 2, lost
            lost_counts.append(lost)
            assert again.boot_count == 2 * round_ + 2  # the writer's boot and this one, each round
        last_committed = committed
    assert max(lost_counts) > 0, "some kill fell between commits"
