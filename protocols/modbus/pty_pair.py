"""Two pseudo-terminals joined by ``socat``: the two ends of a serial cable, for tests, benches, the demo.

    async with PtyPair(tmp_path) as pty:
        # a Modbus master opens pty.client_path, a bus simulator pty.server_path

What one end writes the other reads. The ptys keep no baud rate: bytes move at memory speed (see
``SerialBusSimulator(paced=True)`` for a line's timing). ``stop()`` (or leaving the block) kills socat,
which removes the two links; ``start()`` again makes a new pair under the same paths, like plugging a
USB adapter back in.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Final, Self

_READY: Final = b"starting data transfer loop"
_KEPT_LOG_LINES: Final = 20


class PtyPair:
    """A socat process owning two linked ptys, at ``client_path`` and ``server_path``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        name: str = "rs485",
        socat: str = "socat",
        start_timeout: float = 5.0,
    ) -> None:
        self.client_path = Path(directory) / f"{name}-client"
        self.server_path = Path(directory) / f"{name}-server"
        self.socat = socat
        self.start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=_KEPT_LOG_LINES)
        self._drain: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def log(self) -> list[str]:
        """socat's last messages."""
        return list(self._log)

    async def start(self) -> None:
        """Start socat and return once both links exist. Raises OSError naming the fix."""
        if self.running:
            return
        executable = shutil.which(self.socat)
        if executable is None:
            raise FileNotFoundError(f"{self.socat} not found: install it (apt-get install socat)")
        self._log.clear()
        process = await asyncio.create_subprocess_exec(
            executable,
            "-d",
            "-d",
            f"pty,raw,echo=0,link={self.client_path}",
            f"pty,raw,echo=0,link={self.server_path}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._process = process
        try:
            async with asyncio.timeout(self.start_timeout):
                await self._wait_ready(process)
        except BaseException:
            await self.stop()
            raise
        self._drain = asyncio.create_task(self._keep_log(process), name=f"socat log {self.client_path}")

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            line = await process.stderr.readline()
            if not line:
                raise OSError(f"socat exited before making the ptys: {' | '.join(self._log)}")
            self._log.append(line.decode(errors="replace").rstrip())
            if _READY in line and self.client_path.exists() and self.server_path.exists():
                return

    async def _keep_log(self, process: asyncio.subprocess.Process) -> None:
        # Reading stderr to its end keeps socat from blocking on a full pipe.
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self._log.append(line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        """Kill socat (its links disappear). Safe to call any number of times."""
        process, self._process = self._process, None
        drain, self._drain = self._drain, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it died on its own meanwhile
                process.terminate()
            try:
                async with asyncio.timeout(self.start_timeout):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            drain.cancel()
            await asyncio.wait([drain])

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
