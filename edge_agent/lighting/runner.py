"""Drives the cabinet's lighting outputs: the schedule, operator overrides, verified writes.

Runs on the agent's own clock, whatever the network does: it wakes at the schedule's next change (or
when a command changes the schedule or an override), writes relay and dimming set points, and re-asserts
them now and then (a controller that lost power comes back in its default state). Every write is read
back by the driver. Each change of what the lights do is recorded as a ``lighting_state`` event.

Lighting outputs are found by the roles of the driver's points (``edge_agent.lighting.roles``):
writable ``relay`` points are switched, writable ``dim_level`` points get the level.

While the clock is not synchronised the schedule cannot be placed in time: the lights follow the
fail-safe (``lighting.clock_failsafe``: on, off, or the schedule all the same), an operator's override
holds whatever its end says (that end cannot be judged), and an override given no end then is dropped
once the clock is right (its default end was reckoned on a wrong clock). Overrides that have ended are
forgotten while the clock is right, so a wrong clock cannot bring one back. Each output returns to its
schedule by itself when the clock is synchronised.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from edge_agent.buffer import Buffer
from edge_agent.clock import Clock
from edge_agent.lighting.roles import dim_points, relay_points
from edge_agent.lighting.state import LightingState, desired_state
from edge_agent.lighting.writes import PartialWrite, WriteTransaction, describe_left, describe_value
from protocols.driver import FieldDriver, Value
from protocols.errors import DriverError
from protocols.fleet.schedule import (
    LightingSchedule,
    Override,
    parse_override,
    parse_schedule,
    schedule_builtins,
    schedule_json,
)

log = logging.getLogger(__name__)

# Real seconds between re-writes of an unchanged state, and between retries of a failed write.
REASSERT_S = 60.0
RETRY_S = 5.0
# Without a schedule, an override with no end lasts this long.
DEFAULT_OVERRIDE = timedelta(hours=1)
SCHEDULE_KEY = "lighting.schedule"
OVERRIDES_KEY = "lighting.overrides"
ENDS_UNJUDGED_KEY = "lighting.override_ends_unjudged"
# While the clock is not synchronised, the loop looks again this often (real seconds).
CLOCK_RECHECK_S = 2.0
FAILSAFE_REASON = "fail-safe: clock not synchronised"

ClockFailsafe = Literal["on", "off", "schedule"]


@dataclass
class LightingOutput:
    name: str
    driver: FieldDriver
    relays: list[str]
    dims: list[str]
    applied: tuple[bool, int] | None = None
    written_at: float = field(default=0.0)
    failing: bool = False


def lighting_outputs(
    devices: Sequence[tuple[str, FieldDriver]], only: Sequence[str] | None
) -> list[LightingOutput]:
    outputs = []
    for name, driver in devices:
        if only is not None and name not in only:
            continue
        relays = [p.name for p in relay_points(driver.points)]
        dims = [p.name for p in dim_points(driver.points)]
        if relays:
            outputs.append(LightingOutput(name=name, driver=driver, relays=relays, dims=dims))
    return outputs


def _describe(state: LightingState) -> str:
    return f"on at {state.level_pct}%" if state.on else "off"


def schedule_hash(schedule: LightingSchedule | None) -> str:
    text = "" if schedule is None else schedule_json(schedule).decode()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


class LightingRunner:
    def __init__(
        self,
        *,
        outputs: list[LightingOutput],
        configured: LightingSchedule | None,
        buffer: Buffer,
        clock: Clock,
        failsafe: ClockFailsafe = "on",
    ) -> None:
        self.outputs = {output.name: output for output in outputs}
        self.failsafe = failsafe
        self._ends_unjudged: set[str] = set()  # overrides given a default end on a wrong clock
        self.configured = configured
        self.schedule = configured
        self.source = "config"
        self.overrides: dict[str, Override] = {}
        self.buffer = buffer
        self.clock = clock
        self.current: dict[str, LightingState] = {}  # what each output should do now (for alarms, diag)
        self._wake = asyncio.Event()

    # -- state that survives reboots ------------------------------------------------------------

    async def open(self) -> None:
        """Load what central sent last; a schedule edited in the config since then wins over it."""
        stored = await self.buffer.get_setting(SCHEDULE_KEY)
        overrides = await self.buffer.get_setting(OVERRIDES_KEY)
        self._ends_unjudged = set((await self.buffer.get_setting(ENDS_UNJUDGED_KEY) or "").split()) & set(
            self.outputs
        )
        try:
            if stored is not None:
                record = json.loads(stored)
                if record.get("config_hash") == schedule_hash(self.configured):
                    self.schedule = parse_schedule(record["schedule"])
                    self.source = "command"
            if overrides is not None:
                self.overrides = {
                    name: parse_override(value)
                    for name, value in json.loads(overrides).items()
                    if name in self.outputs
                }
        except (ValueError, KeyError, TypeError) as exc:  # JSON, schedule and override errors
            # The lamps must be driven whatever was stored: fall back to the config's schedule.
            log.error("stored lighting settings cannot be read (%s): using the config's schedule", exc)
            self.schedule, self.source, self.overrides = self.configured, "config", {}
            self.buffer.append_event(
                ts=self.clock.now_ms(),
                source="lighting",
                kind="settings_unreadable",
                severity="alarm",
                message=f"stored lighting settings could not be read, the config's schedule runs: {exc}"[
                    :2000
                ],
            )
        self._record_schedule()

    async def set_schedule(self, schedule: LightingSchedule) -> None:
        record = {
            "schedule": schedule_builtins(schedule),
            "config_hash": schedule_hash(self.configured),
        }
        await self.buffer.put_setting(SCHEDULE_KEY, json.dumps(record))
        self.schedule, self.source = schedule, "command"
        self._record_schedule()
        self._wake.set()

    async def set_override(
        self, names: Sequence[str], *, level_pct: int, until_ms: int | None, issued_by: str
    ) -> None:
        """Hold ``names`` at ``level_pct`` (0 = off) until ``until_ms`` (default: the schedule's next
        change), write it now and verify it; raises DriverError naming the device that failed."""
        now = self.clock.now_ms()
        changed = dict(self.overrides)
        for name in names:
            until = until_ms if until_ms is not None else self._default_until(now)
            changed[name] = Override(level_pct=level_pct, until=_utc(until), issued_by=issued_by)
        await self._replace_overrides(changed, names)
        await self._note_ends(names, judged=until_ms is not None or self.clock.synchronised())

    async def clear_override(self, names: Sequence[str]) -> None:
        await self._replace_overrides({k: v for k, v in self.overrides.items() if k not in names}, names)

    async def _replace_overrides(self, overrides: dict[str, Override], names: Sequence[str]) -> None:
        """Apply first, persist after: a command that failed, or was cut short by a crash, leaves no
        override behind to be applied later (at most once means no late effect either)."""
        previous, self.overrides = self.overrides, overrides
        try:
            await self._apply_now(names)
        except DriverError:
            self.overrides = previous
            self._wake.set()
            raise
        await self._save_overrides()

    async def _note_ends(self, names: Sequence[str], *, judged: bool) -> None:
        """Remember (across restarts) which overrides got their default end on a wrong clock."""
        before = set(self._ends_unjudged)
        if judged:
            self._ends_unjudged.difference_update(names)
        else:
            self._ends_unjudged.update(names)
        if self._ends_unjudged != before:
            await self._save_ends_unjudged()

    async def _save_ends_unjudged(self) -> None:
        names = " ".join(sorted(self._ends_unjudged))
        await self.buffer.put_setting(ENDS_UNJUDGED_KEY, names or None)

    def _default_until(self, now_ms: int) -> int:
        if self.schedule is None:
            return now_ms + int(DEFAULT_OVERRIDE.total_seconds() * 1000)
        return _ms(desired_state(self.schedule, _utc(now_ms)).next_change)

    async def _save_overrides(self) -> None:
        data = {name: schedule_builtins(o) for name, o in self.overrides.items()}
        await self.buffer.put_setting(OVERRIDES_KEY, json.dumps(data) if data else None)

    # -- what each output should do ---------------------------------------------------------------

    def desired(self, name: str, now_ms: int) -> LightingState | None:
        """The state ``name`` should be in now; None when nothing governs it (no schedule, no override)."""
        now = _utc(now_ms)
        if not self.clock.synchronised():
            return self._unsynchronised(name, now)
        override = self.overrides.get(name)
        if override is not None and override.until > now:
            level = override.level_pct
            return LightingState(
                on=level > 0, level_pct=level, reason=override.reason, since=None, next_change=override.until
            )
        if self.schedule is None:
            return None
        return desired_state(self.schedule, now)

    def _unsynchronised(self, name: str, now: datetime) -> LightingState | None:
        """The state while the clock cannot place the schedule: an override, else the fail-safe."""
        look_again = now + timedelta(minutes=1)  # the loop looks again after CLOCK_RECHECK_S anyway
        override = self.overrides.get(name)
        if override is not None:
            level = override.level_pct
            return LightingState(level > 0, level, override.reason, None, look_again)
        if self.failsafe == "schedule":
            return None if self.schedule is None else desired_state(self.schedule, now)
        level = 100 if self.failsafe == "on" else 0
        return LightingState(level > 0, level, FAILSAFE_REASON, None, look_again)

    async def _forget_ended(self, now_ms: int) -> None:
        """On a synchronised clock: forget overrides that have ended, and those whose default end was
        reckoned on a wrong clock (they end now)."""
        now = _utc(now_ms)
        unjudged = self._ends_unjudged
        ending = [name for name, o in self.overrides.items() if o.until <= now or name in unjudged]
        if ending:
            if unjudged & set(ending):
                log.info("clock synchronised: overrides of %s end (set on a wrong clock)", sorted(unjudged))
            self.overrides = {k: v for k, v in self.overrides.items() if k not in ending}
            await self._save_overrides()
        if unjudged:
            self._ends_unjudged = set()
            await self._save_ends_unjudged()

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            synchronised = self.clock.synchronised()
            now = self.clock.now_ms()
            if synchronised:
                await self._forget_ended(now)
            next_ms: int | None = None
            for output in self.outputs.values():
                state = self.desired(output.name, now)
                if state is None:
                    self._released(output)
                    continue
                self.current[output.name] = state
                change = _ms(state.next_change)
                next_ms = change if next_ms is None else min(next_ms, change)
                await self._ensure(output, state)
            delay = REASSERT_S if next_ms is None else self.clock.seconds_until(next_ms)
            if any(o.failing for o in self.outputs.values()):
                delay = min(delay, RETRY_S)
            if not synchronised:
                delay = min(delay, CLOCK_RECHECK_S)  # back to the schedule soon after NTP sets the clock
            try:
                async with asyncio.timeout(min(delay, REASSERT_S)):
                    await self._wake.wait()
            except TimeoutError:
                pass  # time for the next change, a retry or a re-assert

    def _released(self, output: LightingOutput) -> None:
        """Nothing governs this output any more (an override ended, and there is no schedule): the
        agent stops driving it and says so, leaving the lamps as they are."""
        if self.current.pop(output.name, None) is None:
            return
        output.applied = None
        self.buffer.append_event(
            ts=self.clock.now_ms(),
            source=output.name,
            kind="lighting_released",
            severity="info",
            message=f"{output.name}: override ended and no schedule is set: left as it is",
            data={"devices": output.name},
        )

    async def _apply_now(self, names: Sequence[str]) -> None:
        now = self.clock.now_ms()
        targets: list[tuple[LightingOutput, LightingState]] = []
        for name in names:
            output = self.outputs[name]
            state = self.desired(name, now)
            if state is None:
                self._released(output)
            else:
                targets.append((output, state))
        await self._write_all(targets)  # what the outputs should do changes once every write is taken
        self.current.update((output.name, state) for output, state in targets)
        self._wake.set()

    async def _ensure(self, output: LightingOutput, state: LightingState) -> None:
        fresh = time.monotonic() - output.written_at < REASSERT_S
        if output.applied == (state.on, state.level_pct) and fresh and not output.failing:
            return
        try:
            await self._write(output, state)
        except DriverError as exc:
            if not output.failing:
                output.failing = True
                log.warning("lighting %s: cannot apply %s: %s", output.name, state.reason, exc)
                self.buffer.append_event(
                    ts=self.clock.now_ms(),
                    source=output.name,
                    kind="lighting_write_failed",
                    severity="alarm",
                    message=f"cannot switch {output.name} as scheduled ({state.reason}): {exc}"[:2000],
                    data={"reason": exc.reason},
                )

    async def _write(self, output: LightingOutput, state: LightingState) -> None:
        await self._write_all([(output, state)])

    async def _write_all(self, targets: Sequence[tuple[LightingOutput, LightingState]]) -> None:
        """Level first, then the relay: lamps never flash at full power before dimming.

        All or nothing: when a write fails, what was written to every output of ``targets`` is put
        back (``edge_agent.lighting.writes``); raises ``UndoneWrite``, or ``PartialWrite`` naming
        exactly what could not be put back. States are recorded only once every write is read back.
        """
        previous = {output.name: output.applied for output, _ in targets}
        transaction = WriteTransaction()
        try:
            for output, state in targets:
                output.applied = None  # unknown until every write is read back
                if state.on:
                    for point in output.dims:
                        await transaction.write(output.name, output.driver, point, state.level_pct)
                for point in output.relays:
                    await transaction.write(output.name, output.driver, point, state.on)
        except DriverError as exc:
            error = await transaction.undo(exc)
            self._undone(error, targets, previous)
            raise error from exc
        for output, state in targets:
            target = (state.on, state.level_pct)
            output.applied, output.written_at, output.failing = target, time.monotonic(), False
            if previous[output.name] != target:
                self._record_state(output.name, state)

    def _undone(
        self,
        error: DriverError,
        targets: Sequence[tuple[LightingOutput, LightingState]],
        previous: dict[str, tuple[bool, int] | None],
    ) -> None:
        """After a failed write: outputs put back are as they were; those left changed are recorded
        as they are now (a warning, and their state for the lighting view), and re-driven later."""
        left = error.devices if isinstance(error, PartialWrite) else []
        for output, _ in targets:
            output.applied = None if output.name in left else previous[output.name]
        if not isinstance(error, PartialWrite):
            return
        self.buffer.append_event(
            ts=self.clock.now_ms(),
            source=left[0],
            kind="lighting_left_changed",
            severity="warning",
            message=f"a write failed part way and could not be undone: {error.detail}"[:2000],
            data={
                "devices": ",".join(left),
                "points": describe_left(error.left)[:1000],
                "reason": error.cause.reason,
            },
        )
        for output, _ in targets:
            if output.name in left:
                self._record_held(output, error.held[output.name])

    def _record_held(self, output: LightingOutput, held: Mapping[str, Value]) -> None:
        """A ``lighting_state`` of what ``output`` holds after a write that could not be undone."""
        relays = [held.get(point) for point in output.relays]
        dims = [held.get(point) for point in output.dims]
        on = all(value is True for value in relays)
        level = next((int(v) for v in dims if isinstance(v, int | float) and not isinstance(v, bool)), 100)
        shown = ", ".join(
            f"{point}={describe_value(held.get(point))}" for point in (*output.relays, *output.dims)
        )
        now = _utc(self.clock.now_ms())
        state = LightingState(
            on=on,
            level_pct=level if on else 0,
            reason=f"left by a failed write: {shown}",
            since=now,
            next_change=now,
        )
        self._record_state(output.name, state, held=True)

    def _record_state(self, name: str, state: LightingState, *, held: bool = False) -> None:
        """``held``: what a failed write left, which no override governs (the override is not kept)."""
        override = None if held else self.overrides.get(name)
        data: dict[str, str | int | bool | float | None] = {
            "on": state.on,
            "level_pct": state.level_pct,
            "reason": state.reason[:200],
            "next_change_ms": _ms(state.next_change),
            "devices": name,
        }
        if override is not None and override.until > _utc(self.clock.now_ms()):
            data["override_until_ms"] = _ms(override.until)
        self.buffer.append_event(
            ts=self.clock.now_ms(),
            source=name,
            kind="lighting_state",
            severity="info",
            message=f"{name}: {_describe(state)} ({state.reason})"[:2000],
            data=data,
        )

    def _record_schedule(self) -> None:
        text = "" if self.schedule is None else schedule_json(self.schedule).decode()
        self.buffer.append_event(
            ts=self.clock.now_ms(),
            source="lighting",
            kind="schedule_active",
            severity="info",
            message=f"lighting schedule {schedule_hash(self.schedule)} from {self.source}",
            data={
                # Records are at most 8 KiB: a larger schedule is named by its hash only.
                "schedule": text if len(text) < 6000 else None,
                "hash": schedule_hash(self.schedule),
                "source": self.source,
            },
        )
