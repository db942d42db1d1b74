"""The line's fair lock and the per-unit backoff, with hand-driven clocks."""

from __future__ import annotations

import asyncio
import random

import pytest

from protocols.errors import DeviceTimeout
from protocols.modbus.rtu import CorruptFrame
from protocols.modbus.scheduling import BackoffPolicy, LineScheduler, UnitHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_scheduler_serves_one_at_a_time_in_arrival_order() -> None:
    scheduler = LineScheduler()
    order: list[str] = []
    holding = 0

    async def use(name: str) -> None:
        nonlocal holding
        async with scheduler.turn():
            holding += 1
            assert holding == 1
            order.append(name)
            await asyncio.sleep(0)
            holding -= 1

    await asyncio.gather(*(use(name) for name in "abcde"))
    assert order == list("abcde")
    assert not scheduler.busy


async def test_deferred_request_gives_way_to_later_healthy_ones() -> None:
    clock = Clock()
    scheduler = LineScheduler(clock=clock)
    order: list[str] = []
    release = asyncio.Event()

    async def use(name: str, defer: float = 0.0, hold: asyncio.Event | None = None) -> None:
        async with scheduler.turn(defer=defer):
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(use("busy", hold=release))
    await asyncio.sleep(0)
    probe = asyncio.create_task(use("probe", defer=1.0))
    await asyncio.sleep(0)
    clock.now += 0.5  # a healthy request half a second later still goes first
    healthy = asyncio.create_task(use("healthy"))
    await asyncio.sleep(0)
    clock.now += 1.0  # arrives after the probe's deferral ran out: goes after it
    late = asyncio.create_task(use("late"))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, probe, healthy, late)
    assert order == ["busy", "healthy", "probe", "late"]


async def test_cancelled_waiter_does_not_block_the_line() -> None:
    scheduler = LineScheduler()
    release = asyncio.Event()
    served: list[str] = []

    async def hold() -> None:
        async with scheduler.turn():
            await release.wait()

    async def use(name: str) -> None:
        async with scheduler.turn():
            served.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    doomed = asyncio.create_task(use("doomed"))
    after = asyncio.create_task(use("after"))
    await asyncio.sleep(0)
    assert scheduler.waiting == 2
    doomed.cancel()
    release.set()
    await asyncio.gather(holder, after)
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert served == ["after"]
    assert not scheduler.busy


async def test_waiter_cancelled_as_it_is_handed_the_line_passes_it_on() -> None:
    scheduler = LineScheduler()
    served: list[str] = []

    async def use(name: str) -> None:
        async with scheduler.turn():
            served.append(name)

    await scheduler._acquire(0.0)  # the test holds the line
    unlucky = asyncio.create_task(use("unlucky"))
    after = asyncio.create_task(use("after"))
    await asyncio.sleep(0)
    scheduler._release()  # hands the line to "unlucky", which has not run yet...
    unlucky.cancel()  # ...and is cancelled before it can
    await after
    with pytest.raises(asyncio.CancelledError):
        await unlucky
    assert served == ["after"]
    assert not scheduler.busy


def test_backoff_grows_exponentially_up_to_its_cap() -> None:
    policy = BackoffPolicy(after_failures=2, initial_s=2.0, max_s=20.0, jitter=0.0)
    rng = random.Random(1)
    assert [policy.delay(n, rng) for n in range(1, 8)] == [0.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert policy.delay(10_000, rng) == 20.0


def test_backoff_jitter_only_shortens() -> None:
    policy = BackoffPolicy(after_failures=1, initial_s=10.0, max_s=10.0, jitter=0.2)
    rng = random.Random(3)
    delays = [policy.delay(1, rng) for _ in range(200)]
    assert all(8.0 <= delay <= 10.0 for delay in delays)
    assert len(set(delays)) > 100


def test_unit_health_refuses_with_the_last_kind_of_error_until_the_probe() -> None:
    policy = BackoffPolicy(after_failures=2, initial_s=2.0, max_s=60.0, jitter=0.0)
    rng = random.Random(0)
    health = UnitHealth(unit=3)
    timeout = DeviceTimeout("lc3", "no answer within 0.2s")
    health.failed(timeout, 10.0, policy, rng)
    assert health.failing
    assert health.refusal("lc3", 10.0) is None  # one failure: asked again normally
    health.failed(timeout, 10.5, policy, rng)
    refusal = health.refusal("lc3", 11.0)
    assert isinstance(refusal, DeviceTimeout)
    assert "2 failures in a row" in refusal.detail and "not asked again for 1.5s" in refusal.detail
    assert health.refusal("lc3", 12.5) is None  # the probe is due
    corrupt = CorruptFrame("lc3", "CRC error", b"\x03\x04", "CRC 0000 does not match")
    health.failed(corrupt, 12.6, policy, rng)
    refusal = health.refusal("lc3", 12.7)
    assert isinstance(refusal, CorruptFrame)
    assert (refusal.frame, refusal.problem, refusal.reason) == (b"\x03\x04", corrupt.problem, "corrupt_frame")
    assert health.refused == 2
    health.answered()
    assert not health.failing
    assert health.refusal("lc3", 12.7) is None
