"""Helpers for tests and benchmarks, shipped as real code: waiting on conditions, cabinet configs."""

from __future__ import annotations

from pathlib import Path

from protocols.testing import wait_until

__all__ = ["wait_until", "write_agent_config"]


def write_agent_config(
    folder: Path,
    *,
    cabinet: str,
    broker_url: str,
    devices: list[tuple[str, int]],
    profile: str = "lighting-single-circuit",
    poll_interval_s: float = 0.1,
    timeout_s: float = 0.5,
    commit_interval_s: float = 0.1,
    ack_timeout_s: float = 2.0,
    max_mb: float = 64.0,
    extra: str = "",
) -> Path:
    """A cabinet config polling Modbus TCP devices ``(name, port)`` on 127.0.0.1, tuned for tests."""
    lines = [
        "[cabinet]",
        f'id = "{cabinet}"',
        "[broker]",
        f'url = "{broker_url}"',
        "[buffer]",
        'path = "buffer.db"',
        f"max_mb = {max_mb}",
        f"commit_interval_s = {commit_interval_s}",
        "[sync]",
        f"ack_timeout_s = {ack_timeout_s}",
        "reconnect_min_s = 0.05",
        "reconnect_max_s = 0.5",
    ]
    for name, port in devices:
        lines += [
            "[[devices]]",
            f'name = "{name}"',
            'driver = "modbus-tcp"',
            f'address = "127.0.0.1:{port}"',
            f'profile = "{profile}"',
            f"poll_interval_s = {poll_interval_s}",
            f"timeout_s = {timeout_s}",
        ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path
