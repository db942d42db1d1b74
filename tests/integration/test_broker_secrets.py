"""Broker credentials reach central and the agent from files and systemd credentials, never from a
command line, and the shipped units log in to the shipped broker.

Central runs exactly the shipped unit's ExecStart (paths and ports swapped) with the credential in a
$CREDENTIALS_DIRECTORY, the way systemd's LoadCredential= hands it over; an agent reads its password
from broker.password_file and connects under its cabinet id.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from central.server import CentralServer
from central.testing import batch_payload
from cityedge.ports import free_port, wait_for_port
from cityedge.testing import wait_until, write_agent_config
from edge_agent.agent import Agent
from edge_agent.config import load_config
from protocols.fleet.topics import Topics
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.notify_socket import NotifySocket
from tests.integration.shipped_broker import PASSWORDS, ShippedBroker, shipped_broker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CENTRAL_UNIT = REPO / "packaging" / "systemd" / "cityedge-central.service"
AGENT_UNIT = REPO / "packaging" / "systemd" / "cityedge-agent.service"
SECRET = PASSWORDS["central"]


def _unit_setting(unit: Path, key: str) -> list[str]:
    return [
        line.partition("=")[2].strip() for line in unit.read_text().splitlines() if line.startswith(f"{key}=")
    ]


def _central_command(broker: ShippedBroker, db: Path, http_port: int) -> list[str]:
    """The unit's ExecStart, run from this checkout, on the test's broker port, database and HTTP port."""
    (exec_start,) = _unit_setting(CENTRAL_UNIT, "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0].endswith("/cityedge")
    swapped = {"--db": str(db), "--http": f"127.0.0.1:{http_port}"}
    command = [sys.executable, "-m", "cityedge"]
    args = iter(argv[1:])
    for arg in args:
        if arg in swapped:
            command += [arg, swapped[arg]]
            next(args)
        elif arg == "--broker":
            url = next(args)
            assert url.endswith(":1883"), url
            command += [arg, url.removesuffix(":1883") + f":{broker.port}"]
        else:
            command.append(arg)
    return command


def _credentials_directory(folder: Path, unit: Path, secrets: dict[str, str]) -> Path:
    """What systemd makes of the unit's LoadCredential= lines: one 0400 file per credential id."""
    folder.mkdir(mode=0o700)
    for setting in _unit_setting(unit, "LoadCredential"):
        name, _, source = setting.partition(":")
        assert source.startswith("/etc/cityedge/"), source
        path = folder / name
        path.write_text(secrets[name] + "\n")
        path.chmod(0o400)
    return folder


@asynccontextmanager
async def _central_like_the_unit(
    broker: ShippedBroker, folder: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[int, Path]]:
    credentials = _credentials_directory(
        folder / "credentials", CENTRAL_UNIT, {"broker-password": PASSWORDS["central"]}
    )
    http_port = free_port()
    log = folder / "central.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CITYEDGE_BROKER")}
    env["CREDENTIALS_DIRECTORY"] = str(credentials)
    env.update(extra_env or {})
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *_central_command(broker, folder / "central.db", http_port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
        )
    try:
        async with asyncio.timeout(30):
            await wait_for_port("127.0.0.1", http_port)
        yield process.pid, log
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def _agent_config(folder: Path, broker: ShippedBroker, device_port: int) -> Path:
    """cab-a's config, its password in broker-password (0600) beside it."""
    folder.mkdir()
    password_file = folder / "broker-password"
    password_file.write_text(PASSWORDS["cab-a"] + "\n")
    password_file.chmod(0o600)
    path = write_agent_config(folder, cabinet="cab-a", broker_url=broker.url, devices=[("lc1", device_port)])
    text = path.read_text().replace(
        "[broker]\n", '[broker]\nusername = "cab-a"\npassword_file = "broker-password"\n'
    )
    path.write_text(text)
    return path


def _command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


async def test_shipped_units_log_in_to_the_shipped_broker(
    tmp_path: Path, controllers: list[LightingControllerSimulator]
) -> None:
    """Central as its unit runs it, an agent with its password in a file: records are acknowledged,
    and the password is on no command line and in no log."""
    async with (
        shipped_broker(tmp_path / "broker") as broker,
        _central_like_the_unit(broker, tmp_path) as (central_pid, central_log),
    ):
        config_path = _agent_config(tmp_path / "cab-a", broker, controllers[0].port)
        agent = Agent(load_config(config_path))
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await wait_until(lambda: agent.sync.stats.acks > 0, timeout=30, what="an ack from central")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        command_line = _command_line(central_pid)
    assert b"central serve" in command_line.replace(b"\0", b" ")
    assert SECRET.encode() not in command_line
    logs = central_log.read_bytes() + broker.log.read_bytes()
    assert SECRET.encode() not in logs and PASSWORDS["cab-a"].encode() not in logs


def test_agent_unit_hands_over_the_credential_the_agent_reads() -> None:
    (setting,) = _unit_setting(AGENT_UNIT, "LoadCredential")
    assert setting.startswith("broker-password:/etc/cityedge/")
    assert not any("password" in arg for arg in shlex.split(_unit_setting(AGENT_UNIT, "ExecStart")[0]))


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityedge", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_central_refuses_a_password_on_its_command_line(tmp_path: Path) -> None:
    result = _run_cli(
        "central", "serve", "--db", str(tmp_path / "c.db"), "--broker", f"mqtt://central:{SECRET}@127.0.0.1:1"
    )
    assert result.returncode == 2
    assert SECRET not in result.stderr and SECRET not in result.stdout
    assert "--broker-password-file" in result.stderr and "CITYEDGE_BROKER_PASSWORD" in result.stderr
    assert not (tmp_path / "c.db").exists()


@pytest.mark.parametrize(
    "url", [f"mqtt:/cab-a:{SECRET}@127.0.0.1", f"mqtt:cab-a:{SECRET}@127.0.0.1", f"cab-a:{SECRET}@127.0.0.1"]
)
def test_a_mistyped_broker_url_is_one_line_without_its_password(tmp_path: Path, url: str) -> None:
    config = write_agent_config(tmp_path, cabinet="cab-a", broker_url=url, devices=[("lc1", 1)])
    for result in (
        _run_cli("agent", "check", "-c", str(config)),
        _run_cli("central", "serve", "--db", str(tmp_path / "c.db"), "--broker", url),
    ):
        assert result.returncode == 2, result.stderr
        assert SECRET not in result.stderr and SECRET not in result.stdout
        [line] = result.stderr.splitlines()
        assert line.startswith("error: ") and "broker URL" in line and "cab-a:***@127.0.0.1" in line
    assert not (tmp_path / "c.db").exists()


def test_central_refuses_a_password_file_others_can_read(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(SECRET)
    password_file.chmod(0o644)
    result = _run_cli("central", "serve", "--broker-password-file", str(password_file))
    assert result.returncode == 2
    assert str(password_file) in result.stderr and "chmod o-rwx" in result.stderr
    assert SECRET not in result.stderr


async def test_two_central_workers_share_the_ingest_on_the_shipped_broker(tmp_path: Path) -> None:
    """Two aggregators on the account central at once: neither knocks the other out (each has its
    own client id), and the shared subscription gives each batch to one of them."""
    count = 40
    async with shipped_broker(tmp_path / "broker") as broker:
        workers = [
            CentralServer(
                db=tmp_path / f"central-{n}.db",
                broker_url=f"mqtt://central@127.0.0.1:{broker.port}",
                broker_password=PASSWORDS["central"],
                http_port=0,
            )
            for n in range(2)
        ]
        async with workers[0] as one, workers[1] as two:
            async with asyncio.timeout(10):
                await one.ingestor.wait_subscribed()
                await two.ingestor.wait_subscribed()
            async with broker.client("cab-a") as cabinet:
                for n in range(count):
                    await cabinet.publish(
                        Topics("cab-a").data, batch_payload("cab-a", "0123abcd", n + 1, 1), qos=1
                    )

            def received() -> int:
                return one.ingestor.stats.batches_received + two.ingestor.stats.batches_received

            await wait_until(lambda: received() == count, timeout=15, what=f"{count} batches")
            stats = [one.ingestor.stats, two.ingestor.stats]
    assert all(s.shared_subscription and s.connects == 1 and s.mqtt_connected for s in stats)
    assert all(s.batches_received > 0 for s in stats)


async def test_central_started_like_its_unit_tells_systemd_it_is_ready_and_alive(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """Type=notify: READY=1 once it serves, WATCHDOG=1 while it runs, STOPPING=1 on SIGTERM."""
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    async with (
        shipped_broker(tmp_path / "broker") as broker,
        _central_like_the_unit(broker, tmp_path, env),
    ):
        await wait_until(lambda: notify.count("READY=1") == 1, timeout=30, what="READY=1")
        await wait_until(lambda: notify.count("WATCHDOG=1") >= 2, timeout=30, what="two watchdog pings")
    assert notify.count("STOPPING=1") == 1
