"""Small socket helpers for starting local services on free ports and waiting for them."""

from __future__ import annotations

import asyncio
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for_port(host: str, port: int) -> None:
    """Wait until something accepts TCP connections on host:port (callers bound it with a timeout)."""
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.02)  # polling a port: there is no event to wait on
            continue
        writer.close()
        await writer.wait_closed()
        return
