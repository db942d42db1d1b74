"""The fleet broker as shipped, on a free port: packaging/mosquitto/cityedge.conf with its listeners and
paths swapped for the test's own, and the accounts made from config/broker/dynamic-security.template.json
by cityedge.broker_accounts, the way the README installs them.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt import ProtocolVersion

from cityedge.broker import mosquitto_path
from cityedge.broker_accounts import load_template, render_accounts, write_accounts
from cityedge.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
BROKER_CONF = REPO / "packaging" / "mosquitto" / "cityedge.conf"
# Options of the production snippet that name its ports, certificates and files.
_SWAPPED_OPTIONS = {"listener", "certfile", "keyfile", "cafile", "tls_version", "plugin_opt_config_file"}
_SWAPPED_OPTIONS |= {"persistence_location", "log_dest"}
PASSWORDS = {"central": "central-pw", "cab-a": "cab-a-pw", "cab-b": "cab-b-pw", "cityedge-admin": "adm-pw"}
WAIT_S = 5.0


@dataclass(frozen=True)
class ShippedBroker:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def client(
        self,
        username: str,
        *,
        password: str | None = None,
        identifier: str | None = None,
        protocol: ProtocolVersion | None = None,
        will: aiomqtt.Will | None = None,
    ) -> aiomqtt.Client:
        """A client of ``username``; a cabinet's client id is its username unless told otherwise."""
        if identifier is None and username.startswith("cab-"):
            identifier = username
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=username,
            password=PASSWORDS[username] if password is None else password,
            identifier=identifier,
            protocol=protocol or ProtocolVersion.V5,
            timeout=WAIT_S,
            will=will,
        )


def _test_config(directory: Path, port: int) -> Path:
    lines = [
        line
        for line in BROKER_CONF.read_text().splitlines()
        if not line.split() or line.split()[0] not in _SWAPPED_OPTIONS
    ]
    lines += [
        f"listener {port} 127.0.0.1",
        f"plugin_opt_config_file {directory / 'dynsec.json'}",
        f"persistence_location {directory}/",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type all",
        # Run as whoever runs the tests: as root, Mosquitto would otherwise switch to the mosquitto
        # user, who cannot read the test's private directory.
        f"user {getpass.getuser()}",
    ]
    config = directory / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def _write_accounts(directory: Path, passwords: Mapping[str, str]) -> None:
    plugin = next(
        (line.split()[1] for line in BROKER_CONF.read_text().splitlines() if line.startswith("plugin ")), ""
    )
    if not Path(plugin).is_file():
        pytest.skip(f"the dynamic-security plugin {plugin} is not installed (apt-get install -y mosquitto)")
    directory.mkdir(parents=True, exist_ok=True)
    write_accounts(render_accounts(load_template(), passwords), directory / "dynsec.json")


@asynccontextmanager
async def shipped_broker(
    directory: Path, passwords: Mapping[str, str] = PASSWORDS
) -> AsyncIterator[ShippedBroker]:
    binary = mosquitto_path()
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
    _write_accounts(directory, passwords)
    port = free_port()
    broker = ShippedBroker(port=port, log=directory / "mosquitto.log")
    process = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        str(_test_config(directory, port)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        try:
            async with asyncio.timeout(WAIT_S):
                await wait_for_port("127.0.0.1", port)
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
            pytest.fail(f"mosquitto did not start: {stderr.decode(errors='replace')}")
        yield broker
    finally:  # whatever happened, the broker goes with the test
        if process.returncode is None:
            process.terminate()
        await process.communicate()
