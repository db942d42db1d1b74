"""`cityedge central serve` and `cityedge agent run` as separate processes, for the bench scripts:
an operator's token made with the CLI, and an API client once central answers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from cityedge.ports import free_port, wait_for_port


async def _token(db: str) -> str:
    """An operator's API token, made the way an admin makes one: with the CLI, before central starts."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "central", "token", "create", "--role", "operator",
        "--name", "bench", "--db", db, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError("cityedge central token create failed")
    return out.decode().strip()


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", *args, stderr=asyncio.subprocess.DEVNULL
    )


@contextlib.asynccontextmanager
async def central_and_agent(
    folder: Path, *, broker_url: str, agent_config: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """Central (its database in ``folder``) and the agent of ``agent_config``; an operator's client
    of central's API. Both processes are stopped (SIGTERM) when the block ends."""
    http_port = free_port()
    db = str(folder / "central.db")
    token = await _token(db)
    central = await _spawn(
        "central", "serve", "--db", db, "--broker", broker_url, "--http", f"127.0.0.1:{http_port}"
    )
    agent = await _spawn("agent", "run", "--config", str(agent_config))
    try:
        async with asyncio.timeout(30):
            await wait_for_port("127.0.0.1", http_port)
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{http_port}/api/v1"
        async with httpx.AsyncClient(base_url=base, headers=headers) as api:
            yield api
    finally:
        for process in (agent, central):
            process.terminate()
            await process.wait()
