"""Run an MQTT broker for the demo and the tests: Mosquitto when installed, else an embedded one.

The broker is never faked: tests start a real Mosquitto on a free port, kill it with SIGKILL and start
it again on the same port. Without Mosquitto, the demo falls back to amqtt, a broker written in Python.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cityedge.ports import free_port, wait_for_port

START_TIMEOUT_S = 10.0


class BrokerError(RuntimeError):
    """The broker could not be started; the message says what to install or check."""


def mosquitto_path() -> str | None:
    for candidate in ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


class MosquittoBroker:
    """A Mosquitto process on 127.0.0.1:<port> with its own config, killable and restartable."""

    def __init__(
        self, *, port: int | None = None, data_dir: Path | None = None, persistence: bool = False
    ) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise BrokerError(
                "mosquitto is not installed: run `apt-get install -y mosquitto` (as root), "
                "or pass the URL of a running broker"
            )
        self._binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cityedge-mosquitto-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.persistence = persistence
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.data_dir}/",
            "log_dest none",
            # Large batches and many cabinets: no per-client queue limit smaller than our window.
            "max_inflight_messages 100",
            "max_queued_messages 10000",
            "set_tcp_nodelay true",
        ]
        config.write_text("\n".join(lines) + "\n")
        return config

    async def start(self) -> None:
        if self._process is not None and self._process.returncode is None:
            return
        config = self._write_config()
        self._process = await asyncio.create_subprocess_exec(
            self._binary,
            "-c",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own session: Ctrl-C in the terminal reaches us, and we stop the broker last,
            # after the agents and the aggregator have said goodbye through it.
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await wait_for_port(self.host, self.port)
        except TimeoutError as exc:
            err = await self._stop_and_read_stderr()
            raise BrokerError(f"mosquitto did not listen on {self.port}: {err}") from exc

    async def _stop_and_read_stderr(self) -> str:
        process = self._process
        if process is None:
            return ""
        if process.returncode is None:
            process.kill()
        _, stderr = await process.communicate()
        return stderr.decode(errors="replace").strip()

    async def kill(self) -> None:
        """SIGKILL: the broker dies without closing connections or saving anything."""
        process = self._process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGKILL)
            await process.wait()

    async def stop(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        self._process = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class EmbeddedBroker:
    """amqtt in this process, for machines without Mosquitto (the demo's fallback)."""

    def __init__(self, *, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:
            raise BrokerError(
                "no MQTT broker available: install Mosquitto (`apt-get install -y mosquitto`) "
                "or the embedded one (`pip install 'cityedge[embedded-broker]'`)"
            ) from exc
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        async with asyncio.timeout(START_TIMEOUT_S):
            await wait_for_port(self.host, self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
