"""`cityedge diag` against the project's simulators and a real Mosquitto: a dead device and a stopped
broker are said to be exactly that (exit 1, the JSON parses); a healthy cabinet passes; a running agent
writing its buffer is neither blocked nor kicked off the broker by diag."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until, write_agent_config
from edge_agent.buffer import read_file_last_seq
from edge_agent.clock_sync import kernel_status, timesyncd_status
from edge_agent.config import load_config
from edge_agent.diag.model import Status
from edge_agent.diag.render import as_dict
from edge_agent.diag.run import diagnose
from protocols.modbus.bus_simulator import SerialBusSimulator
from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.pty_pair import PtyPair
from protocols.modbus.simulator import LightingControllerSimulator
from tests.integration.agent_buffer import running_agent
from tests.integration.shipped_broker import PASSWORDS, ShippedBroker, shipped_broker

pytestmark = pytest.mark.integration

CABINET = "cab-a"  # an account of the shipped broker's test accounts
PROFILE = "lighting-single-circuit"
# What the kernel says of this machine's clock: a VM or container often reports it unsynchronised
# (its host keeps the time), and diag then rightly fails on it too.
CLOCK_FAILS = not timesyncd_status() and kernel_status() is False


def cabinet_config(
    folder: Path, broker_url: str, devices: list[tuple[str, int]], *, password: str | None, extra: str = ""
) -> Path:
    """A cabinet config as provisioned: its broker user, a 0600 password file, 1 s device timeouts."""
    path = write_agent_config(
        folder, cabinet=CABINET, broker_url=broker_url, devices=devices, timeout_s=1.0, extra=extra
    )
    if password is not None:
        secret = folder / "broker-password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        text = path.read_text().replace(
            "[buffer]", f'username = "{CABINET}"\npassword_file = "broker-password"\n[buffer]'
        )
        path.write_text(text)
    return path


def rtu_device(port: Path) -> str:
    return f"""
[[devices]]
name = "rtu1"
driver = "modbus-rtu"
port = "{port}"
baudrate = 19200
parity = "N"
unit = 1
profile = "{PROFILE}"
timeout_s = 0.5
"""


async def diag_cli(config: Path, *args: str) -> tuple[int, str, str, float]:
    """Run `cityedge diag` as a crew would, while this event loop keeps serving the simulators."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cityedge",
        "diag",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started


@pytest.fixture
async def sims() -> AsyncIterator[list[LightingControllerSimulator]]:
    profile = load_profile(PROFILE, default_profile_dirs())
    made = [LightingControllerSimulator(profile=profile, seed=i) for i in range(2)]
    for sim in made:
        await sim.start()
    yield made
    for sim in made:
        await sim.stop()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[ShippedBroker]:
    async with shipped_broker(tmp_path / "broker") as running:
        yield running


def failing(report: dict[str, Any]) -> set[str]:
    """The names of what failed: devices and checks."""
    devices = {f"device {d['name']}" for d in report["devices"] if d["status"] == "fail"}
    return devices | {name for name, check in report["checks"].items() if check["status"] == "fail"}


async def test_a_dead_device_and_a_stopped_broker_are_reported_and_exit_1(
    tmp_path: Path, sims: list[LightingControllerSimulator], mosquitto: MosquittoBroker
) -> None:
    healthy, dead = sims
    config = cabinet_config(
        tmp_path, mosquitto.url, [("lc1", healthy.port), ("lc2", dead.port)], password=None
    )
    async with running_agent(config) as agent:  # the agent ran here once: its buffer exists
        await wait_until(lambda: agent.sync.stats.connected, timeout=10, what="the agent connected")
    await mosquitto.stop()
    dead.set_unresponsive(True)  # accepts the connection, never answers: a full timeout

    code, out, err, wall = await diag_cli(config, "--json")
    assert code == 1, err
    report = json.loads(out)
    expected = {"device lc2", "broker"} | ({"clock"} if CLOCK_FAILS else set())
    assert failing(report) == expected, report["failures"]
    lc1, lc2 = report["devices"]
    assert lc1["status"] == "ok" and lc1["reachable"] is True
    assert {p["point"] for p in lc1["points"]} == set(healthy.profile.quantities)
    voltage = next(p for p in lc1["points"] if p["point"] == "voltage_v")
    assert voltage["unit"] == "V" and voltage["quality"] == "good" and 180 < voltage["value"] < 260
    assert lc2["reachable"] is False and "no answer within 1.0s" in lc2["error"]
    broker = report["checks"]["broker"]
    assert broker["url"] == mosquitto.url and "cannot connect (Connection refused)" in broker["summary"]
    assert report["checks"]["buffer"]["status"] == "ok"
    assert report["checks"]["buffer"]["records_waiting"] > 0
    assert report["checks"]["service"]["status"] in ("skip", "warn")  # no agent is running
    # The dead device cost its own 1 s timeout, probed alongside everything else.
    assert report["took_s"] < 5, report["took_s"]
    print(f"diag with one dead device: {report['took_s']:.2f} s inside, {wall:.2f} s for the whole command")

    code, out, _, _ = await diag_cli(config)  # the crew's tables say the same
    assert code == 1
    assert "FAIL device lc2: no answer within 1.0s" in out
    assert f"FAIL broker: {mosquitto.url}: cannot connect (Connection refused)" in out


async def test_a_healthy_cabinet_passes_with_its_login_checked(
    tmp_path: Path, sims: list[LightingControllerSimulator], broker: ShippedBroker
) -> None:
    profile = load_profile(PROFILE, default_profile_dirs())
    async with (
        PtyPair(tmp_path) as pty,
        SerialBusSimulator(port=pty.server_path, units={1: LightingControllerSimulator(profile=profile)}),
    ):
        config = cabinet_config(
            tmp_path,
            broker.url,
            [("lc1", sims[0].port)],
            password=PASSWORDS[CABINET],
            extra=rtu_device(pty.client_path),
        )
        async with running_agent(config) as agent:
            await wait_until(lambda: agent.sync.stats.connected, timeout=10, what="the agent connected")
        # Stopped: no -wal file, so diag opens the buffer immutable and leaves no file behind it.
        before = _names(tmp_path)
        report = await diagnose(load_config(config), clock_status=lambda: True)
        assert _names(tmp_path) == before
        assert report.ok, report.failures
        assert [d.status for d in report.devices] == [Status.OK, Status.OK]
        checks = {check.name: check for check in report.checks}
        assert (
            checks["broker"].summary
            == f"mqtt://{CABINET}@127.0.0.1:{broker.port}: credentials accepted (client id {CABINET})"
        )
        serial = checks[f"serial {pty.client_path}"]
        assert serial.facts["settings"] == "19200 8N1" and serial.facts["devices"] == ["rtu1"]
        # socat keeps the pty open (a real adapter is held by nobody): noted, not a failure.
        assert serial.status is Status.WARN and "present, also open in socat (pid" in serial.summary
        assert checks["buffer"].facts["opened"] == "immutable (nothing has it open)"
        json.dumps(as_dict(report))  # what --json prints

        code, out, err, _ = await diag_cli(config, "--json")
        assert code == (1 if CLOCK_FAILS else 0), err
        assert failing(json.loads(out)) == ({"clock"} if CLOCK_FAILS else set())

        # A wrong password: refused by the broker, said so, and never shown.
        (tmp_path / "broker-password").write_text("not-the-password\n")
        code, out, _, _ = await diag_cli(config, "--json")
        assert code == 1
        login = json.loads(out)["checks"]["broker"]
        assert login["status"] == "fail" and login["credentials"] == "refused"
        assert "not authorized" in login["summary"] and "not-the-password" not in out


async def test_diag_while_the_agent_runs_neither_blocks_nor_kicks_it(
    tmp_path: Path, sims: list[LightingControllerSimulator], broker: ShippedBroker
) -> None:
    config = cabinet_config(tmp_path, broker.url, [("lc1", sims[0].port)], password=PASSWORDS[CABINET])
    buffer = tmp_path / "buffer.db"
    log = tmp_path / "agent.log"
    with log.open("wb") as sink:
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cityedge",
            "agent",
            "run",
            "--config",
            str(config),
            stderr=sink,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        await wait_until(lambda: "event=broker_connected" in log.read_text(), timeout=30, what="agent online")
        await wait_until(lambda: _last_seq(buffer) > 0, timeout=10, what="a first commit")
        for _ in range(3):  # a few runs while the agent commits every 0.1 s
            seq = _last_seq(buffer)
            code, out, err, _ = await diag_cli(config, "--json")
            report = json.loads(out)
            assert failing(report) == ({"clock"} if CLOCK_FAILS else set()), (report["failures"], err)
            assert code == (1 if CLOCK_FAILS else 0)
            checks = report["checks"]
            assert checks["service"]["agent_pids"] == [str(agent.pid)]
            assert checks["broker"]["credentials"] == "in use by the running agent"
            assert f"the running agent (pid {agent.pid}) is connected to it" in checks["broker"]["summary"]
            assert checks["buffer"]["opened"] == "read-only (an agent has it open)"
            assert checks["buffer"]["newest_seq"] >= seq
            # The agent reads its devices: diag opens no second connection to them.
            assert [(d["name"], d["status"]) for d in report["devices"]] == [("lc1", "skip")], report
            assert "the running agent reads it" in report["devices"][0]["skipped"]
            await wait_until(
                lambda s=seq: _last_seq(buffer) > s, timeout=5, what="the agent still committing"
            )
        code, out, err, _ = await diag_cli(config, "--json", "--probe-devices")
        forced = json.loads(out)["devices"]
        assert [(d["name"], d["status"]) for d in forced] == [("lc1", "ok")], (forced, err)
        text = log.read_text()
        assert "disconnected from" not in text and "locked" not in text, text[-2000:]
        assert text.count("event=broker_connected") == 1  # never kicked off by diag's probe
    finally:
        agent.terminate()
        await asyncio.wait_for(agent.wait(), timeout=30)


def _last_seq(buffer: Path) -> int:
    try:
        return read_file_last_seq(buffer) if buffer.exists() else 0
    except Exception:  # noqa: BLE001 (not made yet: its tables come with the first open)
        return 0


def _names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def tls_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (cert.pem, key.pem), as a small CA of
    its own would sign the fleet broker's."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_broker(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """Mosquitto on a TLS listener with a certificate no system CA signed: (port, its certificate)."""
    from cityedge.broker import mosquitto_path
    from cityedge.ports import free_port, wait_for_port

    binary = mosquitto_path()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = tls_certificate(folder)
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\nlog_dest none\n"
        f"user {getpass.getuser()}\n"  # as root it would switch to a user who cannot read the test's files
    )
    process = await asyncio.create_subprocess_exec(binary, "-c", str(conf), stderr=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(10):
            await wait_for_port("127.0.0.1", port)
        yield port, cert
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def test_the_brokers_tls_certificate_is_checked_as_the_agent_checks_it(
    tmp_path: Path, tls_broker: tuple[int, Path]
) -> None:
    port, cert = tls_broker
    config = write_agent_config(tmp_path, cabinet=CABINET, broker_url=f"mqtts://localhost:{port}", devices=[])
    code, out, _, _ = await diag_cli(config, "--json")
    assert code == 1
    refused = json.loads(out)["checks"]["broker"]
    assert refused["status"] == "fail" and refused["tcp"] is True
    assert "TLS certificate refused (self-signed certificate)" in refused["summary"]

    # Trusted (the CA file OpenSSL reads by default: what a cabinet's CA store holds): accepted.
    trusted = {**os.environ, "SSL_CERT_FILE": str(cert)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "diag", "--config", str(config), "--json",
        stdout=asyncio.subprocess.PIPE, env=trusted,
    )  # fmt: skip
    out_bytes, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    broker = json.loads(out_bytes)["checks"]["broker"]
    assert broker["status"] == "ok", broker
    assert broker["tls_certificate"].startswith("localhost, valid until ")
    assert broker["credentials"] == "accepted"
