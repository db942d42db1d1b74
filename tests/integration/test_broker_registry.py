"""Central keeps the broker's accounts from its registry, on a real Mosquitto with the shipped config
and its dynamic-security plugin (see shipped_broker.py): accounts made live when credentials are
issued, revoked live (and disconnected), drift fixed by the sync, and after a restart the file
rendered from the registry.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiomqtt
import pytest
from aiomqtt import ProtocolVersion

from central.auth import Tokens
from central.broker_accounts import BrokerAccounts, PasswordHash, render_document
from central.broker_accounts.control import DynsecControl, DynsecError
from central.broker_accounts.settings import AccountsSettings
from central.server import CentralServer
from central.store.auth_rows import Role
from central.store.rows import RegistryEntry
from central.store.sqlite import SqliteStore
from central.testing import TS0_MS, ScriptedEdge, wait_until
from cityedge.broker import MosquittoBroker, mosquitto_path
from cityedge.broker_accounts import write_accounts
from cityedge.ports import free_port, wait_for_port
from protocols.fleet.broker_url import parse_broker_url
from protocols.fleet.topics import Topics, all_cabinets
from tests.integration.api_client import api_client
from tests.integration.shipped_broker import BROKER_CONF, WAIT_S, _test_config
from tests.integration.test_broker_acl import _codes, _receive_until

pytestmark = pytest.mark.integration

FIXED = {"central": "central-pw", "cityedge-admin": "adm-pw"}
PASSWORDS = {
    "cab-a": "cab-a-pw",
    "cab-b": "cab-b-pw",
    "cab-c": "cab-c-pw",
    "cab-d": "cab-d-pw",
    "cab-x": "x-pw",
}
A, B, C = Topics("cab-a"), Topics("cab-b"), Topics("cab-c")
CABINET_TEMPLATE = Path(__file__).resolve().parents[2] / "config" / "cabinets" / "example.toml"


def entry(cabinet: str, *, ms: int = TS0_MS) -> RegistryEntry:
    credential = PasswordHash.of(PASSWORDS[cabinet])
    return RegistryEntry(
        cabinet, "Dijon", cabinet, None, None, None, None, credential.to_json(), ms, ms, None
    )


class Broker:
    """The shipped broker on one port, stopped and started again by the test (its file stays)."""

    def __init__(self, directory: Path) -> None:
        binary = mosquitto_path()
        plugin = next(
            (line.split()[1] for line in BROKER_CONF.read_text().splitlines() if line.startswith("plugin ")),
            "",
        )
        if binary is None or not Path(plugin).is_file():
            pytest.skip(
                "mosquitto and its dynamic-security plugin are not installed (apt-get install mosquitto)"
            )
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.file = directory / "dynsec.json"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "-c",
            str(_test_config(self.directory, self.port)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(WAIT_S):
            await wait_for_port("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    def client(self, username: str, password: str | None = None) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=username,
            password=password if password is not None else (PASSWORDS | FIXED)[username],
            identifier=username,
            protocol=ProtocolVersion.V311,
            timeout=WAIT_S,
        )


class Edge(ScriptedEdge):
    """ScriptedEdge logged in with its cabinet's credentials (client id = cabinet id)."""

    def __init__(self, broker: Broker, cabinet: str) -> None:
        super().__init__(f"mqtt://127.0.0.1:{broker.port}", cabinet)
        self._broker = broker

    async def __aenter__(self) -> Self:
        self._client = client = self._broker.client(self.cabinet)
        await client.__aenter__()
        for topic in self._topics:
            assert _codes(await client.subscribe(topic, qos=1)) == [1]
        self._task = asyncio.create_task(self._collect(client), name=self._name)
        return self


@dataclass
class Rig:
    broker: Broker
    central: CentralServer
    db: Path

    @property
    def accounts(self) -> BrokerAccounts:
        assert self.central.accounts is not None
        return self.central.accounts

    async def register(self, cabinet: str) -> RegistryEntry:
        """What the credentials route does: the registry first, then the broker, live."""
        new = entry(cabinet)
        await self.central.store.put_registry(new)
        assert new.broker_hash is not None
        await self.accounts.apply_credentials(
            cabinet, PASSWORDS[cabinet], PasswordHash.from_json(new.broker_hash)
        )
        return new

    async def revoke(self, cabinet: str) -> None:
        assert await self.central.store.revoke_cabinet(cabinet, revoked_ms=TS0_MS + 1)
        await self.accounts.revoke(cabinet)


async def render(db: Path, out: Path) -> None:
    """``broker-accounts render``: the plugin's file from the registry (hashes only)."""
    async with SqliteStore(db) as store:
        fixed = {user: PasswordHash.of(password) for user, password in FIXED.items()}
        write_accounts(await render_document(store, fixed), out)


def central_server(broker: Broker, db: Path) -> CentralServer:
    return CentralServer(
        db=db,
        broker_url=f"mqtt://central@127.0.0.1:{broker.port}",
        broker_password=FIXED["central"],
        http_port=0,
        broker_accounts=AccountsSettings(admin_password=FIXED["cityedge-admin"], sync_interval_s=3600),
    )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """cab-a and cab-b registered; the broker started on the file rendered from the registry."""
    db = tmp_path / "central.db"
    async with SqliteStore(db) as store:
        for cabinet in ("cab-a", "cab-b"):
            await store.put_registry(entry(cabinet))
    broker = Broker(tmp_path)
    await render(db, broker.file)
    await broker.start()
    try:
        async with central_server(broker, db) as central:
            async with asyncio.timeout(WAIT_S):
                await central.ingestor.wait_subscribed()
            accounts = central.accounts
            assert accounts is not None
            # Central's first sync is done: the next waits an hour, unless the broker goes away.
            await wait_until(lambda: accounts.last_plan is not None, timeout=WAIT_S, what="the first sync")
            yield Rig(broker, central, db)
    finally:
        await broker.stop()


async def _refused(broker: Broker, username: str, password: str | None = None) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with broker.client(username, password):
            pass


async def _disconnected(client: aiomqtt.Client) -> None:
    """Return once the broker has closed ``client``'s connection."""
    with pytest.raises(aiomqtt.MqttError):
        async with asyncio.timeout(WAIT_S):
            async for _ in client.messages:
                pass


async def test_a_cabinet_given_credentials_connects_at_once_and_its_data_arrives(rig: Rig) -> None:
    await _refused(rig.broker, "cab-c")
    async with Edge(rig.broker, "cab-b") as bystander:
        await rig.register("cab-c")  # no broker restart, no reload
        async with Edge(rig.broker, "cab-c") as edge:
            await edge.send(edge.reading("lc1/power_w", TS0_MS, 42.0))
        async with Edge(rig.broker, "cab-a") as rendered:  # from the file rendered at start
            await rendered.send(rendered.reading("lc1/power_w", TS0_MS, 7.0))
        # cab-b's connection was never dropped: the batch goes on the same session.
        await bystander.send(bystander.reading("lc1/power_w", TS0_MS, 1.0))
    latest = {c: await rig.central.store.latest_values(c) for c in ("cab-a", "cab-c")}
    assert {c: [p.value for p in points] for c, points in latest.items()} == {"cab-a": [7.0], "cab-c": [42.0]}


async def test_a_live_made_account_reaches_only_its_own_topics(rig: Rig) -> None:
    await rig.register("cab-c")
    async with rig.broker.client("central") as central:
        assert _codes(await central.subscribe(all_cabinets("data"), qos=1)) == [1]
        async with rig.broker.client("cab-c") as thief:
            for topic_filter in (
                A.command,
                A.ack,
                "cityedge/+/cmd",
                "$share/cityedge-central/cityedge/+/data",
            ):
                assert _codes(await thief.subscribe(topic_filter, qos=1))[0] >= 0x80, topic_filter
            await thief.publish(A.data, b"forged", qos=1)
            await thief.publish(C.data, b"own", qos=1)
        assert await _receive_until(central, b"own") == [(C.data, b"own")]
    with pytest.raises(aiomqtt.MqttError):  # its client id is bound to its username
        async with aiomqtt.Client(
            "127.0.0.1", rig.broker.port, username="cab-c", password="cab-c-pw", identifier="cab-a"
        ):
            pass


async def test_a_revoked_cabinet_is_disconnected_at_once_and_cannot_come_back(rig: Rig) -> None:
    async with rig.broker.client("cab-a") as victim, Edge(rig.broker, "cab-b") as bystander:
        assert _codes(await victim.subscribe(A.command, qos=1)) == [1]
        started = asyncio.get_running_loop().time()
        await rig.revoke("cab-a")
        await _disconnected(victim)
        assert asyncio.get_running_loop().time() - started < 2.0
        await _refused(rig.broker, "cab-a")
        await bystander.send(bystander.reading("lc1/power_w", TS0_MS, 3.0))  # same session still up
    plan = await rig.accounts.plan()
    assert plan.commands == [] and plan.missing == []  # the broker is the registry now


async def test_the_sync_removes_what_the_registry_does_not_hold(rig: Rig) -> None:
    """Drift made behind central's back: an account for an unregistered cabinet, a cabinet revoked in
    the registry only, and one whose credential the broker holds is not the registry's."""
    address = parse_broker_url(f"mqtt://127.0.0.1:{rig.broker.port}")
    async with DynsecControl(address, password=FIXED["cityedge-admin"]) as control:
        role = rig.accounts.template.cabinet_roles("cab-x")[0]
        await control.check(
            [
                {"command": "createRole", **role},
                {
                    "command": "createClient",
                    "username": "cab-x",
                    "password": "x-pw",
                    "clientid": "cab-x",
                    "roles": [{"rolename": role["rolename"]}],
                },
                {"command": "createClient", "username": "monitor", "password": "m-pw"},
            ]
        )
    assert await rig.central.store.revoke_cabinet("cab-b", revoked_ms=TS0_MS + 1)
    stale = entry("cab-a", ms=TS0_MS + 5)  # re-issued while the broker was not told
    await rig.central.store.put_registry(stale)
    async with rig.broker.client("cab-x"), rig.broker.client("cab-b"):
        pass  # both get in before the sync
    plan = await rig.accounts.sync_once(grace_ms=0)
    assert (plan.revoked, plan.stale, plan.unmanaged) == (["cab-b", "cab-x"], ["cab-a"], ["monitor"])
    for username in ("cab-a", "cab-b", "cab-x"):
        await _refused(rig.broker, username)
    assert (await rig.accounts.plan(grace_ms=0)).missing == ["cab-a"]
    assert not [c for c in (await rig.accounts.plan(grace_ms=0)).commands]


async def test_after_a_broker_restart_the_accounts_are_the_registrys(rig: Rig) -> None:
    await rig.broker.stop()
    # While the broker is down: cab-b revoked, cab-d registered (no broker to tell).
    assert await rig.central.store.revoke_cabinet("cab-b", revoked_ms=TS0_MS + 1)
    await rig.central.store.put_registry(entry("cab-d"))
    # Restarted on its own file: cab-d is not there; central's sync, on reconnecting, deletes cab-b.
    await rig.broker.start()
    await wait_until(
        lambda: rig.accounts.last_plan is not None and rig.accounts.last_plan.revoked == ["cab-b"],
        timeout=15,
        what="the sync after the broker came back",
    )
    assert rig.accounts.last_plan is not None and rig.accounts.last_plan.missing == ["cab-d"]
    await _refused(rig.broker, "cab-b")
    await _refused(rig.broker, "cab-d")
    # Restarted on the file rendered from the registry: exactly the registry's accounts.
    await rig.broker.stop()
    await render(rig.db, rig.broker.file)
    await rig.broker.start()
    for cabinet in ("cab-a", "cab-d"):
        async with rig.broker.client(cabinet):
            pass
    await _refused(rig.broker, "cab-b")
    await _refused(rig.broker, "cab-c")


async def test_sighup_does_not_reload_the_plugins_file(rig: Rig) -> None:
    """Why central applies changes through the control topic: Mosquitto 2.0 reloads its config on
    SIGHUP, keeping its connections, but never the dynamic-security plugin's file (the plugin
    registers no reload callback)."""
    async with SqliteStore(rig.db) as store:
        await store.put_registry(entry("cab-c"))
    await render(rig.db, rig.broker.file)
    assert rig.broker.process is not None
    async with Edge(rig.broker, "cab-a") as connected:
        os.kill(rig.broker.process.pid, signal.SIGHUP)
        log = rig.broker.directory / "mosquitto.log"
        await wait_until(lambda: "Reloading config" in log.read_text(), timeout=WAIT_S, what="the reload")
        await _refused(rig.broker, "cab-c")
        await connected.send(connected.reading("lc1/power_w", TS0_MS, 2.0))  # a reload drops no one


async def test_the_registry_api_applies_credentials_and_revocations_to_the_broker(rig: Rig) -> None:
    """Through the routes a technician and an admin call: no step of the broker's by hand."""
    body = {"town": "Quetigny", "label": "Place Centrale", "latitude": None, "longitude": None}
    body |= {"rated_power_w": None, "baseline_kwh_per_day": None}
    async with (
        api_client(rig.central, Role.INSTALLER) as installer,
        api_client(rig.central, Role.ADMIN) as admin,
        Edge(rig.broker, "cab-b") as bystander,
    ):
        assert (await installer.put("/registry/cab-n", json=body)).status_code in (200, 201)
        issued = await installer.post("/registry/cab-n/broker-credentials", json={})
        assert issued.status_code == 201 and issued.headers["X-Cityedge-Broker-Account"] == "applied"
        password = issued.json()["password"]
        async with rig.broker.client("cab-n", password) as cabinet:
            assert _codes(await cabinet.subscribe("cityedge/cab-n/cmd", qos=1)) == [1]
            revoked = await admin.post("/registry/cab-n/revoke")
            assert revoked.headers["X-Cityedge-Broker-Account"] == "applied"
            await _disconnected(cabinet)
        await _refused(rig.broker, "cab-n", password)
        await bystander.send(bystander.reading("lc1/power_w", TS0_MS, 5.0))


async def test_the_sync_command_shows_then_makes_the_change(rig: Rig, tmp_path: Path) -> None:
    admin_file = tmp_path / "admin-pw"
    admin_file.write_text(FIXED["cityedge-admin"] + "\n")
    admin_file.chmod(0o600)
    config = tmp_path / "central.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{rig.db}"\n[broker]\nurl = "mqtt://central@127.0.0.1:{rig.broker.port}"\n'
        f'[broker_accounts]\nadmin_password_file = "{admin_file}"\n'
    )
    assert await rig.central.store.revoke_cabinet("cab-b", revoked_ms=TS0_MS + 1)

    async def run(*options: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cityedge", "central", "broker-accounts", "sync", "--config", str(config),
            *options, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    code, out = await run("--dry-run")
    assert code == 0 and "revoked: cab-b" in out and "would change" in out
    async with rig.broker.client("cab-b"):
        pass  # a dry run changed nothing
    code, out = await run()
    assert code == 0 and "revoked: cab-b" in out
    await _refused(rig.broker, "cab-b")


async def test_a_provisioned_cabinet_connects_with_the_password_it_was_given(
    rig: Rig, tmp_path: Path
) -> None:
    """`cityedge provision` end to end: the password written beside the config logs in at once."""
    token = tmp_path / "token"
    token.write_text(await Tokens(rig.central.store).create("tech", Role.INSTALLER) + "\n")
    token.chmod(0o600)
    args = ["provision", "--template", str(CABINET_TEMPLATE), "--out", str(tmp_path / "out")]
    args += [
        "--central",
        rig.central.url,
        "--token-file",
        str(token),
        "--cabinet",
        "cab-p",
        "--town",
        "Dijon",
    ]

    async def provision() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cityedge", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()

    await provision()
    password = (tmp_path / "out" / "cab-p" / "broker-password").read_text().strip()
    async with rig.broker.client("cab-p", password) as cabinet:
        await provision()  # a rerun changes nothing: the same password still logs in
        assert _codes(await cabinet.subscribe("cityedge/cab-p/cmd", qos=1)) == [1]
    async with rig.broker.client("cab-p", password):
        pass


async def test_the_control_client_says_what_is_wrong_without_a_secret(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    address = parse_broker_url(f"mqtt://127.0.0.1:{rig.broker.port}")
    with pytest.raises(DynsecError, match="cannot log in as cityedge-admin") as wrong:
        async with DynsecControl(address, password="not-the-admin-pw", timeout_s=2):
            pass
    assert "not-the-admin-pw" not in str(wrong.value)
    # A broker without the plugin (anonymous, no $CONTROL handler): no answer, named, within the deadline.
    plain = parse_broker_url(mosquitto.url)
    async with DynsecControl(plain, password="x", timeout_s=0.5) as control:
        with pytest.raises(DynsecError, match=r"no answer to listClients .* is it loaded"):
            await control.list_clients()
        with pytest.raises(DynsecError, match="no answer to createClient cab-z"):
            await control.execute([{"command": "createClient", "username": "cab-z", "password": "secret-z"}])
