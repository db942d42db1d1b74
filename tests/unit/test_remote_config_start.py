"""What a start does with a config on trial, on real files: run the trial once, roll it back when an
earlier start under it never reached the broker, say when the new file was never put in place."""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from edge_agent.remote_config import begin_start
from edge_agent.remote_config.marker import Trial, marker_path, read_marker, write_marker

OLD = b'[cabinet]\nid = "cab-1"\n'
NEW = b'# new\n[cabinet]\nid = "cab-1"\n'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def on_trial(tmp_path: Path, *, installed: bytes = NEW, **more: object) -> Path:
    config = tmp_path / "agent.toml"
    config.write_bytes(installed)
    (tmp_path / "agent.toml.previous").write_bytes(OLD)
    trial = Trial(command_id="c1", not_after=1, new_hash=sha(NEW), previous_hash=sha(OLD), confirm_within_s=5)
    write_marker(config, msgspec.structs.replace(trial, **more))
    return config


def test_no_marker_no_trial(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_bytes(OLD)
    start = begin_start(config)
    assert (start.trial, start.active) == (None, False)


def test_the_first_start_runs_the_trial_and_counts_itself(tmp_path: Path) -> None:
    config = on_trial(tmp_path)
    start = begin_start(config)
    assert start.active
    assert start.trial is not None and start.trial.starts == 1
    assert read_marker(config) == start.trial
    start.stopped()  # a stop asked for does not count against the config
    marker = read_marker(config)
    assert marker is not None and marker.starts == 0


def test_a_start_after_one_that_crashed_rolls_back_and_says_why(tmp_path: Path) -> None:
    config = on_trial(tmp_path)
    begin_start(config).crashed("exit code 2: buffer x: cannot open")
    start = begin_start(config)
    assert not start.active
    assert config.read_bytes() == OLD
    assert (tmp_path / "agent.toml.failed").read_bytes() == NEW
    marker = read_marker(config)
    assert marker is not None and marker.state == "rolled_back"
    assert marker.reason == (
        f"rolled back: config {sha(NEW)[:16]}: it crashed the agent at start:"
        " exit code 2: buffer x: cannot open"
    )


def test_a_start_after_one_killed_without_a_word_rolls_back_too(tmp_path: Path) -> None:
    config = on_trial(tmp_path, starts=1)
    begin_start(config)
    marker = read_marker(config)
    assert config.read_bytes() == OLD
    assert marker is not None and marker.reason is not None
    assert "stopped before reaching the broker" in marker.reason


def test_a_trial_whose_file_never_came_is_reported_not_applied(tmp_path: Path) -> None:
    config = on_trial(tmp_path, installed=OLD)
    start = begin_start(config)
    assert not start.active and config.read_bytes() == OLD
    marker = read_marker(config)
    assert marker is not None and marker.state == "not_applied"
    assert marker.reason is not None and marker.reason.startswith("not applied: the agent stopped before")


def test_an_unreadable_marker_is_moved_aside(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_bytes(OLD)
    marker_path(config).write_text("{not json")
    assert begin_start(config).trial is None
    assert (tmp_path / "agent.toml.trial.unreadable").exists()
    assert not marker_path(config).exists()


def test_an_unreadable_marker_that_cannot_be_moved_aside_never_stops_a_start(tmp_path: Path) -> None:
    # Moving it aside fails (here: a folder is in the way; on a cabinet: a folder the agent may not
    # write): the start goes on without a trial, or systemd would restart a crashing agent for ever.
    config = tmp_path / "agent.toml"
    config.write_bytes(OLD)
    marker_path(config).write_text("{not json")
    (tmp_path / "agent.toml.trial.unreadable").mkdir()
    (tmp_path / "agent.toml.trial.unreadable" / "keep").touch()
    start = begin_start(config)
    assert (start.trial, start.active) == (None, False)
