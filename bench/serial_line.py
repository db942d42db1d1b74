"""Modbus RTU transactions per second on a simulated RS-485 line, against the line's theoretical maximum.

The line is a socat pseudo-terminal pair; the controllers are a ``SerialBusSimulator`` in another
process (so that its CPU does not slow the master down), pacing every answer to the baud rate: the
answer is delivered when its last byte would arrive on a real line. ptys accept no parity, so the line
is 8N1: 10 bits per character.

The theoretical maximum of one transaction is its bytes on the wire plus the 3.5-character silence
that must precede each of its two frames:

    (request bytes + response bytes + 2 x 3.5) x 10 bits / baud

The master (``SerialLine``) keeps the silence before each request; what it achieves beyond that is
lost to software: the pty hops through socat, pymodbus, the event loops.

    .venv/bin/python bench/serial_line.py [--seconds 3] [--bauds 9600 19200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from protocols.errors import DriverError
from protocols.modbus.bus_simulator import SerialBusSimulator
from protocols.modbus.codec import Request, read_request
from protocols.modbus.profile import Profile, default_profile_dirs, load_profile
from protocols.modbus.pty_pair import PtyPair
from protocols.modbus.rtu import char_time, request_size, response_size, transaction_chars
from protocols.modbus.rtu_driver import ModbusRtuDriver
from protocols.modbus.scheduling import BackoffPolicy
from protocols.modbus.serial_line import SerialLine
from protocols.modbus.simulator import LightingControllerSimulator

UNIT = 1
PROFILE = "lighting-cabinet-3phase"
TIMEOUT_S = 1.0


def serve_bus(port: str, baudrate: int) -> None:
    async def main() -> None:
        profile = load_profile(PROFILE, default_profile_dirs())
        sim = LightingControllerSimulator(profile=profile, nominal_power_w=1500.0)
        async with SerialBusSimulator(port=port, units={UNIT: sim}, baudrate=baudrate):
            await asyncio.Event().wait()

    asyncio.run(main())


@dataclass(frozen=True)
class Workload:
    name: str
    requests: list[Request]  # the transactions of one step
    run: Callable[[], Awaitable[object]]  # one step


async def measure(step: Callable[[], Awaitable[object]], per_step: int, seconds: float) -> float:
    """Transactions per second, running ``step`` back to back for ``seconds``."""
    await step()  # warm up: the port is open, the first answer seen
    steps = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        await step()
        steps += 1
    return steps * per_step / elapsed


def workloads(line: SerialLine, profile: Profile) -> list[Workload]:
    driver = ModbusRtuDriver(device="cab1", line=line, unit=UNIT, profile=profile, timeout=TIMEOUT_S)
    one = read_request("holding", 0, 1)
    meter = read_request("input", 0, 20)

    def single(request: Request) -> Callable[[], Awaitable[object]]:
        return lambda: line.transact(request, unit=UNIT, device="cab1", timeout=TIMEOUT_S)

    return [
        Workload("read 1 holding register", [one], single(one)),
        Workload("read 20 input registers", [meter], single(meter)),
        Workload(f"read all of {profile.name}", driver.read_requests, driver.read),
    ]


async def bench_baud(baudrate: int, seconds: float, directory: Path) -> None:
    profile = load_profile(PROFILE, default_profile_dirs())
    async with PtyPair(directory, name=f"bench{baudrate}") as pty:
        bus = multiprocessing.get_context("spawn").Process(
            target=serve_bus, args=(str(pty.server_path), baudrate), daemon=True
        )
        bus.start()
        try:
            never_back_off = BackoffPolicy(after_failures=1_000_000)
            async with SerialLine(port=pty.client_path, baudrate=baudrate, backoff=never_back_off) as line:
                await wait_for_bus(line)
                char_s = char_time(baudrate)
                for work in workloads(line, profile):
                    achieved = await measure(work.run, len(work.requests), seconds)
                    chars = sum(transaction_chars(r) for r in work.requests) / len(work.requests)
                    theoretical = 1 / (chars * char_s)
                    frames = " + ".join(f"{request_size(r)}+{response_size(r)}" for r in work.requests)
                    overhead_ms = (1 / achieved - 1 / theoretical) * 1000
                    print(
                        f"{baudrate:>6} 8N1  {work.name:<38} {frames:<26} {achieved:7.1f} /s"
                        f"  {theoretical:7.1f} /s  {achieved / theoretical:6.1%}"
                        f"  {overhead_ms:+5.1f} ms"
                    )
        finally:
            bus.terminate()
            bus.join()


async def wait_for_bus(line: SerialLine) -> None:
    """The bus process needs a moment to import and open its end: wait until it answers."""
    request = read_request("holding", 0, 1)
    async with asyncio.timeout(30):
        while True:
            try:
                await line.transact(request, unit=UNIT, device="bench", timeout=0.2)
            except DriverError:
                await asyncio.sleep(0.1)  # not answering yet
                continue
            return


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--bauds", type=int, nargs="+", default=[9600, 19200])
    args = parser.parse_args()
    print(
        f"{'baud':>6} line {'transactions':<38} {'bytes req+resp':<26} {'achieved':>10}"
        f"  {'theory':>9}  {'ratio':>6}  overhead/txn"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for baudrate in args.bauds:
            await bench_baud(baudrate, args.seconds, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
