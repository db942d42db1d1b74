"""Remote configuration with rollback, end to end: a real Mosquitto, a real central (its HTTP API and
ingest), and ``cityedge agent run`` in a subprocess under a small supervisor that starts it again
whenever it exits, as systemd's ``Restart=always`` does.

A good config is applied (the birth carries its hash, the command is executed); one pointing at a
broker that is not there is rolled back by the agent on its own; one that crashes the agent at start
(a buffer path that cannot be opened: nothing the agent's checks can see without opening it) is rolled
back by the start after the crash. Each rollback is reported once, failed, with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.server import CentralServer
from central.store.auth_rows import Role
from cityedge.broker import MosquittoBroker
from protocols.testing import wait_until
from tests.integration.api_client import api_client, new_token
from tests.integration.notify_socket import NotifySocket

pytestmark = pytest.mark.integration

CABINET = "cab-rconf"
REPO = Path(__file__).resolve().parents[2]


class Supervisor:
    """Runs ``cityedge agent run --config CONFIG`` and starts it again each time it exits."""

    def __init__(self, config: Path, log: Path, notify: Path | None, *, run_as: Sequence[str] = ()) -> None:
        self.env = {**os.environ, **({"NOTIFY_SOCKET": str(notify)} if notify is not None else {})}
        self.run_as = list(run_as)  # a command prefix that runs the agent as another user
        self.config = config
        self.log = log
        self.exits: list[int] = []
        self.process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.create_task(self._supervise())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _supervise(self) -> None:
        while True:
            with self.log.open("ab") as log:
                self.process = await asyncio.create_subprocess_exec(
                    *self.run_as, sys.executable, "-m", "cityedge", "agent", "run",
                    "--config", str(self.config),
                    stdout=log, stderr=log, cwd=REPO, env=self.env,
                )  # fmt: skip
            try:
                self.exits.append(await self.process.wait())
            except asyncio.CancelledError:
                self.process.terminate()
                await self.process.wait()
                raise
            await asyncio.sleep(0.2)  # RestartSec, shortened


def agent_toml(
    broker_url: str, *, buffer: str = "buffer.db", note: str = "", remote_urls: tuple[str, ...] | None = None
) -> str:
    urls = ", ".join(f'"{url}"' for url in ((ELSEWHERE,) if remote_urls is None else remote_urls))
    return (
        f"# {note}\n"
        f'[cabinet]\nid = "{CABINET}"\n'
        f'[broker]\nurl = "{broker_url}"\nkeepalive_s = 5\nremote_urls = [{urls}]\n'
        f'[buffer]\npath = "{buffer}"\ncommit_interval_s = 0.2\n'
        "[sync]\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\nack_timeout_s = 2.0\n"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# A broker URL where nothing listens, which the installed config lets a remote config move the
# cabinet to (broker.remote_urls: set at the cabinet; a remote config may not change the list).
ELSEWHERE = f"mqtt://127.0.0.1:{closed_port()}"


def set_config(text: str, confirm_within_s: int) -> dict[str, Any]:
    return {
        "target": {"cabinet": CABINET},
        "action": "set_config",
        "args": {
            "config": text,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "confirm_within_s": confirm_within_s,
        },
    }


class Rig:
    def __init__(
        self, central: CentralServer, admin: httpx.AsyncClient, agent: Supervisor, config: Path, db: Path
    ) -> None:
        self.central_db = db
        self.central = central
        self.admin = admin
        self.agent = agent
        self.config = config

    async def config_hash(self) -> str | None:
        row = await self.central.store.cabinet(CABINET)
        return None if row is None or not row.online else row.config_hash

    async def wait_hash(self, text: str, timeout: float = 20) -> None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        found: list[str | None] = []

        async def shows() -> bool:
            found[:] = [await self.config_hash()]
            return found[0] == digest

        await wait_until(shows, timeout=timeout, what=f"a birth with config {digest} (last: {found})")

    async def send(self, text: str, confirm_within_s: int = 5) -> str:
        answer = await self.admin.post("/commands", json=set_config(text, confirm_within_s))
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    async def final(self, command_id: str, timeout: float = 30) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def finished() -> bool:
            seen.update((await self.admin.get(f"/commands/{command_id}")).json())
            return seen.get("status") not in ("pending", "sent", "delivered", "accepted")

        await wait_until(finished, timeout=timeout, what=f"command {command_id} finished (last: {seen})")
        return seen


@pytest.fixture
async def rig(
    tmp_path: Path, central: CentralServer, mosquitto: MosquittoBroker, notify: NotifySocket
) -> AsyncIterator[Rig]:
    config = tmp_path / "cabinet" / "agent.toml"
    config.parent.mkdir()
    config.write_text(agent_toml(mosquitto.url, note="as installed"))
    config.chmod(0o640)
    async with (
        api_client(central, Role.ADMIN) as admin,
        Supervisor(config, tmp_path / "agent.log", notify.path) as agent,
    ):
        rig = Rig(central, admin, agent, config, tmp_path / "central.db")
        await rig.wait_hash(config.read_text())
        yield rig


async def test_a_good_config_is_applied_and_the_birth_carries_its_hash(
    rig: Rig, central: CentralServer, mosquitto: MosquittoBroker, notify: NotifySocket
) -> None:
    installed = rig.config.read_text()
    new = agent_toml(mosquitto.url, note="sent by central")
    # An operator may not send a config (it can point a cabinet at another broker): admins only.
    async with api_client(central, Role.OPERATOR) as operator:
        refused = await operator.post("/commands", json=set_config(new, 5))
    assert refused.status_code == 403, refused.text
    assert "set_config needs admin" in refused.json()["detail"]
    # A config is one cabinet's own: central refuses one naming another, or sent to a group.
    other = await rig.admin.post("/commands", json=set_config(new.replace(CABINET, "cab-other"), 5))
    assert other.status_code == 422, other.text
    (problem,) = other.json()["detail"]
    assert problem["loc"] == ["body", "args", "config"]
    assert problem["msg"].startswith(f"names cabinet 'cab-other' ([cabinet] id), not the target '{CABINET}'")
    to_group = await rig.admin.post("/commands", json={**set_config(new, 5), "target": {"group": "all"}})
    assert to_group.status_code == 422, to_group.text
    assert to_group.json()["detail"][0]["loc"] == ["body", "target", "group"]

    # Pushed with the CLI, which waits for the cabinet's result.
    config_file = rig.config.parent.parent / "new-agent.toml"
    config_file.write_text(new)
    token_file = rig.config.parent.parent / "admin.token"
    token_file.write_text(await new_token(central.store, Role.ADMIN))
    token_file.chmod(0o600)
    push = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "central", "config", "push", "--cabinet", CABINET,
        "--file", str(config_file), "--token-file", str(token_file), "--api", central.url,
        "--confirm-within", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    async with asyncio.timeout(40):
        out, err = await push.communicate()
    digest = hashlib.sha256(new.encode()).hexdigest()[:16]
    assert push.returncode == 0, (out, err)
    lines = out.decode().splitlines()
    assert lines[-1] == f"executed: config {digest} runs", lines
    command = lines[0].split()[1].rstrip(":")
    result = await rig.final(command)
    assert result["status"] == "executed", result
    assert result["reason"] == f"config {digest} runs"
    await rig.wait_hash(new)
    assert rig.config.read_text() == new
    assert (rig.config.parent / "agent.toml.previous").read_text() == installed
    assert rig.config.stat().st_mode & 0o777 == 0o640
    assert not (rig.config.parent / "agent.toml.trial").exists()
    assert rig.agent.exits == []  # restarted in place (exec), not by the supervisor
    # To systemd the restart in place is a reload: READY=1 again, and never STOPPING=1.
    states = [state.split("\n")[0] for state in notify.drain() if not state.startswith("WATCHDOG")]
    assert states == ["READY=1", "RELOADING=1", "READY=1"], states
    await _reported_once(rig, command, "executed")

    # One the agent's own loader refuses is rejected with its reason, and nothing changes.
    wrong = new.replace("keepalive_s = 5", "keepalive_s = 1")
    rejected = await rig.final(await rig.send(wrong))
    assert rejected["status"] == "rejected", rejected
    assert rejected["reason"].startswith("the new config is not valid: broker.keepalive_s: expected")
    assert rig.config.read_text() == new


async def test_a_config_that_cannot_reach_its_broker_is_rolled_back_on_its_own(rig: Rig) -> None:
    installed = rig.config.read_text()
    elsewhere = agent_toml(ELSEWHERE, note="a broker that is not there")
    result = await rig.final(await rig.send(elsewhere, confirm_within_s=3))
    assert result["status"] == "failed", result
    digest = hashlib.sha256(elsewhere.encode()).hexdigest()[:16]
    assert result["reason"].startswith(f"rolled back: config {digest} did not reach the broker within 3 s")
    await rig.wait_hash(installed)
    assert rig.config.read_text() == installed
    assert (rig.config.parent / "agent.toml.failed").read_text() == elsewhere
    assert not (rig.config.parent / "agent.toml.trial").exists()
    assert rig.agent.exits == []
    await _reported_once(rig, result["id"])


async def test_a_config_that_crashes_the_agent_at_start_is_rolled_back_after_the_restart(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    installed = rig.config.read_text()
    # The folder itself as the buffer file: the loader takes the path, only opening it fails.
    crashing = agent_toml(mosquitto.url, buffer=".", note="a buffer that cannot be opened")
    result = await rig.final(await rig.send(crashing, confirm_within_s=30))
    assert result["status"] == "failed", result
    digest = hashlib.sha256(crashing.encode()).hexdigest()[:16]
    assert result["reason"].startswith(f"rolled back: config {digest}: it crashed the agent at start:")
    assert "cannot open" in result["reason"]
    assert rig.agent.exits == [2]  # the start under the new config died; the next one rolled back
    await rig.wait_hash(installed)
    assert rig.config.read_text() == installed
    await _reported_once(rig, result["id"])


NOBODY = 65534


@pytest.fixture
def read_only_cabinet(mosquitto: MosquittoBroker) -> Iterator[Path]:
    """A config its agent (run as nobody) may read, in a folder it may not write; its buffer elsewhere."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the agent as another user")
    root = Path(tempfile.mkdtemp(prefix="cityedge-rconf-"))  # not under tmp_path: 0700, closed to nobody
    try:
        root.chmod(0o755)
        (root / "etc").mkdir(mode=0o755)
        (root / "state").mkdir()
        os.chown(root / "state", NOBODY, NOBODY)
        config = root / "etc" / "agent.toml"
        config.write_text(agent_toml(mosquitto.url, buffer=str(root / "state" / "buffer.db"), note="as is"))
        config.chmod(0o644)
        yield config
    finally:
        shutil.rmtree(root)


async def test_an_agent_that_cannot_replace_its_config_rejects_one_saying_so(
    central: CentralServer, mosquitto: MosquittoBroker, read_only_cabinet: Path
) -> None:
    """As under the shipped unit: the agent's user may read its config, not write in its folder."""
    config = read_only_cabinet
    folder = config.parent
    run_as = [str(shutil.which("setpriv")), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    async with (
        api_client(central, Role.ADMIN) as admin,
        Supervisor(config, folder.parent / "agent.log", None, run_as=run_as) as agent,
    ):
        rig = Rig(central, admin, agent, config, Path())
        await rig.wait_hash(config.read_text())
        new = config.read_text().replace("# as is", "# sent by central")
        result = await rig.final(await rig.send(new))
    assert result["status"] == "rejected", result
    assert result["reason"].startswith(f"the agent's user cannot write in {folder}, where its config")
    assert config.read_text() != new
    assert sorted(path.name for path in folder.iterdir()) == ["agent.toml"]


async def _reported_once(rig: Rig, command_id: str, final: str = "failed") -> None:
    """Central holds each of the command's results once: accepted, then one final one."""
    marker = rig.config.parent / "agent.toml.trial"
    await wait_until(lambda: not marker.exists(), timeout=5, what="the trial marker removed")
    # Records reach central in seq order: once a later command's result is in, a repeat of this one
    # (committed before it) would be too.
    later = await rig.admin.post(
        "/commands", json={"target": {"cabinet": CABINET}, "action": "clear_override"}
    )
    assert later.status_code == 201, later.text
    assert (await rig.final(str(later.json()["id"])))["status"] == "rejected"
    with contextlib.closing(sqlite3.connect(rig.central_db)) as db:
        rows = db.execute(
            "SELECT status FROM command_results WHERE command_id = ? ORDER BY seq", (command_id,)
        ).fetchall()
    assert [status for (status,) in rows] == ["accepted", final]


async def test_a_config_may_not_change_who_the_cabinet_is_to_its_broker(
    rig: Rig, mosquitto: MosquittoBroker
) -> None:
    installed = rig.config.read_text()
    attacker = f"mqtt://127.0.0.1:{closed_port()}"
    refusals = {
        "an unlisted broker": (agent_toml(attacker), "broker.url mqtt://127.0.0.1:"),
        "a password file": (
            agent_toml(mosquitto.url).replace(
                "keepalive_s = 5", 'keepalive_s = 5\npassword_file = "/etc/passwd"'
            ),
            "broker.password_file differs",
        ),
        "a longer list of brokers": (
            agent_toml(mosquitto.url, remote_urls=(ELSEWHERE, attacker)),
            "broker.remote_urls differs",
        ),
        "a profiles folder": ('profiles_dir = "/etc"\n' + agent_toml(mosquitto.url), "profiles_dir differs"),
        "a device sent a secret": (
            agent_toml(mosquitto.url)
            + '[[devices]]\nname = "cam9"\ndriver = "onvif"\naddress = "http://203.0.113.9:80"\n'
            + 'username = "admin"\npassword_file = "broker-password"\n',
            "device 'cam9' names a secret file",
        ),
    }
    for what, (text, reason) in refusals.items():
        result = await rig.final(await rig.send(text))
        assert (result["status"], what) == ("rejected", what), result
        assert reason in result["reason"], (what, result["reason"])
        assert rig.config.read_text() == installed
    assert rig.agent.exits == []
