"""The lighting runner keeps what central sent across reboots, and the technician's config can win."""

from __future__ import annotations

from pathlib import Path

import msgspec

from edge_agent.buffer import Buffer
from edge_agent.clock import ScaledClock
from edge_agent.lighting import LightingSchedule, parse_schedule
from edge_agent.lighting.runner import LightingRunner

CONFIGURED = parse_schedule({"latitude": 47.32, "longitude": 5.04, "timezone": "Europe/Paris"})
FROM_CENTRAL = parse_schedule(
    {
        "latitude": 47.32,
        "longitude": 5.04,
        "timezone": "Europe/Paris",
        "dimming": [{"start": "23:00", "end": "05:00", "level_pct": 50}],
    }
)
CLOCK = ScaledClock(start_ms=1_790_000_000_000, factor=1.0)


async def runner_on(
    path: Path, configured: LightingSchedule | None = CONFIGURED
) -> tuple[Buffer, LightingRunner]:
    buffer = Buffer(path, max_bytes=10**7, clock_ms=CLOCK.now_ms)
    await buffer.open()
    runner = LightingRunner(outputs=[], configured=configured, buffer=buffer, clock=CLOCK)
    await runner.open()
    return buffer, runner


async def test_schedule_from_central_survives_a_reboot(tmp_path: Path) -> None:
    buffer, runner = await runner_on(tmp_path / "b.db")
    assert (runner.schedule, runner.source) == (CONFIGURED, "config")
    await runner.set_schedule(FROM_CENTRAL)
    await buffer.close()

    buffer, runner = await runner_on(tmp_path / "b.db")
    assert (runner.schedule, runner.source) == (FROM_CENTRAL, "command")
    await buffer.close()


async def test_a_schedule_edited_in_the_config_since_wins(tmp_path: Path) -> None:
    buffer, runner = await runner_on(tmp_path / "b.db")
    await runner.set_schedule(FROM_CENTRAL)
    await buffer.close()

    edited = msgspec.structs.replace(CONFIGURED, default_level_pct=80)
    buffer, runner = await runner_on(tmp_path / "b.db", configured=edited)
    assert (runner.schedule, runner.source) == (edited, "config")
    await buffer.close()


async def test_unreadable_stored_settings_fall_back_to_the_config(tmp_path: Path) -> None:
    buffer, runner = await runner_on(tmp_path / "b.db")
    await buffer.put_setting("lighting.overrides", "{not json")
    await buffer.close()
    buffer, runner = await runner_on(tmp_path / "b.db")
    assert (runner.schedule, runner.source, runner.overrides) == (CONFIGURED, "config", {})
    await buffer.close()
