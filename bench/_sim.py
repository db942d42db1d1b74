"""A simulated lighting controller in a process of its own, so that its CPU is not the measured one's."""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.process import BaseProcess

from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator

PROFILE = "lighting-single-circuit"


def _serve(port: int) -> None:
    async def main() -> None:
        profile = load_profile(PROFILE, default_profile_dirs())
        async with LightingControllerSimulator(profile=profile, port=port):
            await asyncio.Event().wait()

    asyncio.run(main())


def start_simulator(port: int) -> BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    process.start()
    return process
