"""Test helpers shared by every package's tests and benchmarks, shipped as real code."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

POLL_S = 0.02


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until ``condition()`` (sync or async) is true, checking every 20 ms, never sleeping blind;
    TimeoutError names ``what`` when it does not come within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}") from None
