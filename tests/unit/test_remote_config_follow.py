"""A trial that does not reach the broker in time is rolled back during the run; what ends that run
afterwards (a stop asked for during the clean stop, a crash in it) must not rewrite the marker as if
the trial were still going: the next start would report the rollback as "not applied"."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from edge_agent.command_ledger import CommandLedger
from edge_agent.config import load_config
from edge_agent.remote_config import RemoteConfig, RestartRequested, begin_start
from edge_agent.remote_config.marker import Trial, read_marker, write_marker

OLD = b'[cabinet]\nid = "cab-1"\n[broker]\nurl = "mqtt://127.0.0.1:1883"\n'
NEW = b'# new\n[cabinet]\nid = "cab-1"\n[broker]\nurl = "mqtt://127.0.0.1:9"\n'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("ending", ["stopped", "crashed"])
async def test_a_rollback_made_during_the_run_is_reported_as_such_whatever_ends_the_run(
    tmp_path: Path, ending: str
) -> None:
    config = tmp_path / "agent.toml"
    config.write_bytes(NEW)
    (tmp_path / "agent.toml.previous").write_bytes(OLD)
    trial = Trial(command_id="c1", not_after=1, new_hash=sha(NEW), previous_hash=sha(OLD), confirm_within_s=1)
    write_marker(config, trial)
    start = begin_start(config)
    assert start.active
    reports: list[tuple[str, str | None]] = []

    async def report(
        command_id: str, action: str, status: str, reason: str | None, *, settings: Mapping[str, str]
    ) -> None:
        reports.append((status, reason))

    async with Buffer(tmp_path / "buffer.db", max_bytes=10**7, clock_ms=lambda: 0) as buffer:
        ledger = CommandLedger(buffer)
        await ledger.open()
        remote = RemoteConfig(
            start=start,
            loaded=load_config(config),
            buffer=buffer,
            ledger=ledger,
            report=report,
            broker_error=lambda: "connection refused",
            clock_ms=lambda: 0,
        )
        await remote.open()
        with pytest.raises(RestartRequested):
            await remote.run()  # no birth within 1 s: rolled back
    assert config.read_bytes() == OLD
    # SIGTERM during the clean stop that follows (run_agent then calls stopped), or a crash in it.
    start.stopped() if ending == "stopped" else start.crashed("exit code 1: boom")
    marker = read_marker(config)
    assert marker is not None and marker.state == "rolled_back"
    following = begin_start(config)
    assert not following.active and config.read_bytes() == OLD
    assert following.trial is not None and following.trial.reason is not None
    assert following.trial.reason.startswith(f"rolled back: config {sha(NEW)[:16]} did not reach the broker")
    assert following.trial.state == "rolled_back"
