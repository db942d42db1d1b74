"""The agent: the cabinet's buffer, one poller per device, the flusher and the sync, in one TaskGroup."""

from __future__ import annotations

import asyncio
import functools
import logging

from edge_agent.alarms import DeviceAlarms
from edge_agent.buffer import Buffer
from edge_agent.clock import Clock, SystemClock
from edge_agent.clock_alarm import ClockAlarm
from edge_agent.command_ledger import CommandLedger
from edge_agent.commands import CommandExecutor
from edge_agent.config import LoadedConfig, build_drivers
from edge_agent.journal import CABINET
from edge_agent.lighting.runner import LightingRunner, lighting_outputs
from edge_agent.liveness import Liveness
from edge_agent.poller import DevicePoller, Observer
from edge_agent.remote_config import RemoteConfig, RestartRequested, StartState
from edge_agent.sync import Sync
from protocols.fleet import PROTOCOL_VERSION, DeviceInfo, Status
from protocols.release import VERSION
from protocols.sd_notify import Notifier

log = logging.getLogger(__name__)

AGENT_VERSION = VERSION
# A loop counts as hung only after this long without a round, however short its interval.
LIVENESS_FLOOR_S = 60.0


class Agent:
    """Build with a loaded config, then ``await agent.run()`` until cancelled.

    Given the start's state (``start``, from ``edge_agent.remote_config.begin_start``), it takes
    configs from central; ``run`` then raises ``RestartRequested`` once one is in place, or once a
    config on trial is rolled back, after stopping cleanly.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
        start: StartState | None = None,
    ) -> None:
        self.loaded = loaded
        self.notifier = notifier or Notifier({})
        self.liveness = Liveness()
        self.config = loaded.config
        self.clock = clock = clock or SystemClock()
        self.clock_ms = clock_ms = clock.now_ms
        self.buffer = Buffer(
            loaded.buffer_path,
            max_bytes=int(self.config.buffer.max_mb * 1024 * 1024),
            clock_ms=clock_ms,
        )
        # Each device's driver through its registered builder: the core knows no protocol.
        self.drivers = drivers = build_drivers(loaded, now_ms=clock_ms)
        named = [(device.name, driver) for device, driver in zip(loaded.devices, drivers, strict=True)]
        self.lighting = LightingRunner(
            outputs=lighting_outputs(named, self.config.lighting.devices),
            configured=loaded.schedule,
            buffer=self.buffer,
            clock=clock,
            failsafe=self.config.lighting.clock_failsafe,
        )
        self.alarms = {
            device.name: DeviceAlarms(
                device=device.name, settings=device.alarms, points=driver.points, buffer=self.buffer
            )
            for device, driver in zip(loaded.devices, drivers, strict=True)
        }
        self.pollers = [
            DevicePoller(
                name=device.name,
                driver=driver,
                interval_s=device.poll_interval_s,
                timeout_s=device.timeout_s,
                buffer=self.buffer,
                clock_ms=clock_ms,
                observer=self._alarm_observer(device.name),
                lost_after=device.alarms.raise_after,
                back_after=device.alarms.clear_after,
                synchronised=clock.synchronised,
                on_round=functools.partial(self.liveness.beat, f"poll-{device.name}"),
            )
            for device, driver in zip(loaded.devices, drivers, strict=True)
        ]
        self.clock_alarm = ClockAlarm(clock=clock, buffer=self.buffer)
        self.ledger = CommandLedger(self.buffer)
        self.commands = CommandExecutor(
            cabinet=self.config.cabinet.id,
            buffer=self.buffer,
            ledger=self.ledger,
            lighting=self.lighting,
            clock=clock,
        )
        self.sync = Sync(
            cabinet=self.config.cabinet.id,
            broker=self.config.broker.address(),
            keepalive_s=self.config.broker.keepalive_s,
            buffer=self.buffer,
            settings=self.config.sync,
            birth=lambda: self._status(online=True),
            death=lambda: self._status(online=False),
            clock_ms=clock_ms,
            on_command=self.commands.submit,
            on_birth=self._birth_published,
        )
        self.remote = None
        if start is not None:
            self.remote = RemoteConfig(
                start=start,
                loaded=loaded,
                buffer=self.buffer,
                ledger=self.ledger,
                report=self.commands.report,
                broker_error=lambda: self.sync.stats.last_error,
                clock_ms=clock_ms,
            )
            self.commands.configs = self.remote

    def _birth_published(self) -> None:
        if self.remote is not None:
            self.remote.birth_published()

    def _alarm_observer(self, name: str) -> Observer:
        alarms = self.alarms[name]
        current = self.lighting.current
        return lambda ts, values: alarms.observe(ts, values, current.get(name))

    def _status(self, *, online: bool) -> Status:
        return Status(
            v=PROTOCOL_VERSION,
            cabinet=self.config.cabinet.id,
            online=online,
            ts=self.clock_ms(),
            version=AGENT_VERSION,
            config_hash=self.loaded.digest,
            stream=self.buffer.stream or None,
            boot_count=self.buffer.boot_count,
            backlog=self.buffer.backlog,
            inventory=[
                DeviceInfo(
                    name=device.name,
                    driver=device.driver,
                    profile=device.profile_name,
                    points=[point.name for point in driver.points],
                )
                for device, driver in zip(self.loaded.devices, self.drivers, strict=True)
            ],
        )

    async def run(self) -> None:
        CABINET.set(self.config.cabinet.id)  # every log line of this agent's tasks names its cabinet
        async with self.buffer:
            self.buffer.append_event(
                ts=self.clock_ms(),
                source="agent",
                kind="agent_started",
                severity="info",
                message=f"agent {AGENT_VERSION} started (boot {self.buffer.boot_count})",
                data={"boot_count": self.buffer.boot_count, "config_hash": self.loaded.digest},
            )
            await self.ledger.open()
            if self.remote is not None:
                await self.remote.open()  # before the commands recover what a restart left
            if self.clock.synchronised():  # on a wrong clock (2099) pruning would forget every id
                await self.ledger.prune(self.clock_ms())
            await self.lighting.open()
            await self._restore_device_states()
            await self.clock_alarm.restore()
            log.info(
                "cabinet %s: stream %s, boot %d, %d records buffered, %d devices",
                self.config.cabinet.id,
                self.buffer.stream,
                self.buffer.boot_count,
                self.buffer.backlog,
                len(self.pollers),
            )
            self._expect_loops()
            restart = False
            try:
                await self._run_loops()
            except* RestartRequested:
                restart = True
            finally:
                # A restart in place is a reload to systemd (the same process says READY=1 again);
                # STOPPING=1 would have it wait for an exit and kill the agent that goes on.
                if restart:
                    self.notifier.notify("RELOADING=1\nSTATUS=restarting with another config")
                else:
                    self.notifier.stopping()
        if restart:  # the buffer is closed (committed): the process may start again
            raise RestartRequested("restart")

    async def _run_loops(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self.notifier.watchdog_interval_s is not None:
                tasks.create_task(self._watchdog(self.notifier.watchdog_interval_s), name="watchdog")
            self.notifier.ready(f"{len(self.pollers)} devices, {self.buffer.backlog} records buffered")
            for poller in self.pollers:
                tasks.create_task(poller.run(), name=f"poll-{poller.name}")
            tasks.create_task(self._flush_forever(), name="flush")
            tasks.create_task(self.sync.run(), name="sync")
            tasks.create_task(self.lighting.run(), name="lighting")
            tasks.create_task(self.commands.run(), name="commands")
            tasks.create_task(self.clock_alarm.run(), name="clock")
            if self.remote is not None:
                tasks.create_task(self.remote.run(), name="remote-config")

    async def _restore_device_states(self) -> None:
        """Device-lost flags and raised alarms survive a restart, so each is cleared exactly once."""
        for poller in self.pollers:
            poller.restore(await self.buffer.get_setting(poller.setting_key) == "1")
            alarms = self.alarms[poller.name]
            active = await self.buffer.get_setting(alarms.setting_key)
            alarms.restore([name for name in (active or "").split(",") if name], self.clock_ms())

    def _expect_loops(self) -> None:
        """How late each loop may be before the agent counts as hung: several rounds, never < 60 s."""
        for device in self.loaded.devices:
            rounds = 3 * (device.poll_interval_s + 4 * device.timeout_s)
            self.liveness.expect(f"poll-{device.name}", max(LIVENESS_FLOOR_S, rounds))
        flush = 3 * self.config.buffer.commit_interval_s
        self.liveness.expect("flush", max(LIVENESS_FLOOR_S, flush))

    async def _watchdog(self, interval_s: float) -> None:
        """Ping systemd while every loop is alive; a stale loop stops the pings (once logged), and
        systemd restarts the agent when WatchdogSec passes without one."""
        reported: list[str] = []
        while True:
            stale = self.liveness.stale()
            if not stale:
                self.notifier.watchdog()
            elif stale != reported:
                log.error(
                    "watchdog: no round from %s in time; systemd will restart the agent", ", ".join(stale)
                )
            reported = stale
            await asyncio.sleep(interval_s)

    async def _flush_forever(self) -> None:
        interval = self.config.buffer.commit_interval_s
        while True:
            await asyncio.sleep(interval)
            await self.buffer.flush()
            self.liveness.beat("flush")
