"""The agent's broker TLS: a CA of the city's own and a client certificate, from the config's broker
section (ca_file, cert_file, key_file), against a real Mosquitto that demands client certificates."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from cityedge.broker import mosquitto_path
from cityedge.ports import free_port, wait_for_port
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.sync import tls_parameters
from tests.integration.tls_certs import LocalCa

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def tls_broker(directory: Path, ca: LocalCa) -> AsyncIterator[int]:
    """Mosquitto listening with TLS on 127.0.0.1:<port>, requiring a client certificate of ``ca``."""
    binary = mosquitto_path()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    server = ca.issue("broker", server=True)
    port = free_port()
    config = directory / "mosquitto-tls.conf"
    config.write_text(
        # As the test's user: run as root, Mosquitto would drop to its own, who cannot read tmp_path.
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n"
        f"cafile {ca.cert}\ncertfile {server.cert}\nkeyfile {server.key}\nrequire_certificate true\n"
    )
    process = await asyncio.create_subprocess_exec(
        binary, "-c", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(10):
            await wait_for_port("127.0.0.1", port)
        yield port
    finally:
        process.terminate()
        await process.wait()


def agent_config(folder: Path, port: int, tls_lines: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(
        f'[cabinet]\nid = "cab-tls"\n[broker]\nurl = "mqtts://127.0.0.1:{port}"\nusername = "cab-tls"\n'
        f"{tls_lines}\n[buffer]\npath = 'buffer.db'\n"
    )
    return path


async def connects(path: Path, *, timeout_s: float = 5.0) -> bool:
    broker = load_config(path).config.broker.address()
    try:
        async with aiomqtt.Client(
            broker.host,
            broker.port,
            identifier="cab-tls",
            tls_params=tls_parameters(broker),
            timeout=timeout_s,
        ) as client:
            await client.publish("cityedge/cab-tls/probe", b"x", qos=1)
    except aiomqtt.MqttError:
        return False
    return True


# paho leaves the socket of a refused TLS session for the collector to close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_agent_connects_with_the_ca_and_client_certificate_of_its_config(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path)
    client = ca.issue("cab-tls", server=False)
    folder = tmp_path / "cab"
    folder.mkdir()
    (folder / "ca.pem").write_bytes(ca.cert.read_bytes())
    (folder / "client.crt").write_bytes(client.cert.read_bytes())
    (folder / "client.key").write_bytes(client.key.read_bytes())
    (folder / "client.key").chmod(0o600)
    async with tls_broker(tmp_path, ca) as port:
        good = agent_config(
            folder, port, 'ca_file = "ca.pem"\ncert_file = "client.crt"\nkey_file = "client.key"'
        )
        loaded = load_config(good).config.broker
        assert loaded.ca_file == (folder / "ca.pem").resolve()  # relative to the config's folder
        assert await connects(good)
        # Without the client certificate the broker refuses the handshake; without the CA the agent
        # does not trust the broker (the system's CAs do not know this one).
        assert not await connects(agent_config(folder, port, 'ca_file = "ca.pem"'), timeout_s=1.5)
        no_ca = agent_config(folder, port, 'cert_file = "client.crt"\nkey_file = "client.key"')
        assert not await connects(no_ca, timeout_s=1.5)


def test_tls_files_are_checked_when_the_config_is_loaded(tmp_path: Path) -> None:
    ca = LocalCa(tmp_path)
    client = ca.issue("cab-tls", server=False)
    folder = tmp_path / "cab"
    with pytest.raises(ConfigError, match=r"broker\.ca_file: .*missing\.pem: cannot read it"):
        load_config(agent_config(folder, 8883, 'ca_file = "missing.pem"'))
    with pytest.raises(ConfigError, match="cert_file and key_file together"):
        load_config(agent_config(folder, 8883, f'cert_file = "{client.cert}"'))
    client.key.chmod(0o644)
    with pytest.raises(ConfigError, match=r"broker\.key_file: .*other users can access it"):
        load_config(agent_config(folder, 8883, f'cert_file = "{client.cert}"\nkey_file = "{client.key}"'))
    plain = folder / "plain.toml"
    plain.write_text(
        f'[cabinet]\nid = "cab-tls"\n[broker]\nurl = "mqtt://127.0.0.1:1883"\nca_file = "{ca.cert}"\n'
    )
    with pytest.raises(ConfigError, match="need TLS: use an mqtts:// URL"):
        load_config(plain)
