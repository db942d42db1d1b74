"""``cityedge provision`` against a running central: configs the agent loads, secrets 0600, registry
rows, a rerun that changes nothing, ``--dry-run`` diffs, a bad row reported by its line number."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from central.auth import Tokens
from central.server import CentralServer
from central.store.auth_rows import Role
from edge_agent.config import load_config
from tests.integration.broker_hashes import password_matches
from tests.integration.tls_certs import LocalCa

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "config" / "cabinets" / "example.toml"
INVENTORY = """id,town,lat,lon,label,rated_power_w,devices
dijon-0001,Dijon,47.3220,5.0415,Rue de la Liberté,1840,lc1=modbus-tcp://192.168.10.21:502/lighting-single-circuit?unit=1
dijon-0002,Dijon,47.3230,5.0425,"Place Darcy, nord",2400,
chenove-0001,Chenôve,95,5.0083,a latitude off the globe,1000,
talant-0001,Talant,47.3300,5.0000,,,lc1=modbus-tcp://10.0.0.5:502/lighting-single-circuit lc2=modbus-tcp://10.0.0.6:502/lighting-single-circuit?unit=2
"""
GOOD = ("dijon-0001", "dijon-0002", "talant-0001")


async def cityedge(*args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop that central serves on."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cityedge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "1000"},  # one line per row: paths of any length
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_secret(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


async def token_file(server: CentralServer, path: Path, role: Role = Role.INSTALLER) -> Path:
    return write_secret(path, await Tokens(server.store).create(f"tech-{role.value}", role))


class Rig:
    def __init__(self, tmp_path: Path, central: CentralServer, token: Path) -> None:
        self.tmp, self.central, self.token = tmp_path, central, token
        self.out = tmp_path / "out"
        self.inventory = tmp_path / "cabinets.csv"
        self.inventory.write_text(INVENTORY, encoding="utf-8")
        self.template = tmp_path / "template.toml"
        self.template.write_bytes(TEMPLATE.read_bytes())

    async def provision(self, *extra: str, inventory: bool = True) -> tuple[int, str, str]:
        args = ["--template", str(self.template), "--out", str(self.out)]
        args += ["--central", self.central.url, "--token-file", str(self.token)]
        if inventory:
            args += ["--inventory", str(self.inventory)]
        return await cityedge("provision", *args, *extra)

    def stats(self) -> dict[str, tuple[int, int, bytes]]:
        """(mtime_ns, mode, bytes) of every file under OUT."""
        return {
            str(p.relative_to(self.out)): (
                p.stat().st_mtime_ns,
                stat.S_IMODE(p.stat().st_mode),
                p.read_bytes(),
            )
            for p in sorted(self.out.rglob("*"))
            if p.is_file()
        }


def _stat(path: Path) -> tuple[int, int, bytes]:
    info = path.stat()
    return info.st_mtime_ns, stat.S_IMODE(info.st_mode), path.read_bytes()


@pytest.fixture
async def rig(tmp_path: Path, central: CentralServer) -> Rig:
    return Rig(tmp_path, central, await token_file(central, tmp_path / "token"))


def row_of(table: str, cabinet: str) -> str:
    """The cabinet's row of the results table, its wrapped lines joined."""
    lines = table.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith(f"│ {cabinet} ")]
    row = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("│ ") or line.split("│")[1].strip():
            break
        row.append(line)
    cells = zip(*(line.strip("│").split("│") for line in row), strict=True)
    return " | ".join(" ".join(part.strip() for part in cell if part.strip()) for cell in cells)


async def test_a_batch_is_provisioned_then_a_second_run_changes_nothing(rig: Rig) -> None:
    code, out, err = await rig.provision()
    assert code == 1, out + err  # the bad row fails; the others are done
    assert "line 4: lat must be a finite number from -90 to 90" in out
    for cabinet in GOOD:
        assert "created" in row_of(out, cabinet)
    assert not (rig.out / "chenove-0001").exists()

    entries = {e.cabinet: e for e in await rig.central.store.registry()}
    assert sorted(entries) == sorted(GOOD)
    assert entries["dijon-0002"].label == "Place Darcy, nord" and entries["dijon-0002"].rated_power_w == 2400
    assert entries["talant-0001"].rated_power_w is None and entries["talant-0001"].town == "Talant"
    for cabinet in GOOD:
        folder = rig.out / cabinet
        password_file = folder / "broker-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / "agent.toml").stat().st_mode) == 0o640
        loaded = load_config(folder / "agent.toml")  # the agent's own loader
        broker = loaded.config.broker
        assert loaded.config.cabinet.id == cabinet and broker.username == cabinet
        password = password_file.read_text().strip()
        assert broker.password == password
        stored = entries[cabinet].broker_hash
        assert stored is not None and password_matches(password, stored) and password not in stored
        assert password not in out + err
        assert loaded.schedule is not None  # the template's schedule, where the cabinet stands
        assert loaded.config.lighting.schedule is not None
        assert loaded.config.lighting.schedule["latitude"] == entries[cabinet].latitude
    devices = {c: [d.name for d in load_config(rig.out / c / "agent.toml").devices] for c in GOOD}
    assert devices == {"dijon-0001": ["lc1"], "dijon-0002": ["lc1", "cab1"], "talant-0001": ["lc1", "lc2"]}

    before = rig.stats()
    code, out, err = await rig.provision()
    assert code == 1, out + err
    for cabinet in GOOD:
        assert "unchanged" in row_of(out, cabinet) and "nothing to do" in row_of(out, cabinet)
    assert "line 4" in out
    assert rig.stats() == before  # not one file rewritten: same bytes, modes and mtimes
    again = {e.cabinet: e for e in await rig.central.store.registry()}
    assert again == entries  # the same hashes and updated_ms: no new password was made


async def test_a_dry_run_shows_a_template_change_as_a_diff_and_writes_nothing(rig: Rig) -> None:
    await rig.provision()
    before = rig.stats()
    registry = await rig.central.store.registry()
    rig.template.write_text(rig.template.read_text().replace("keepalive_s = 30", "keepalive_s = 45"))
    rig.inventory.write_text(INVENTORY.replace("Place Darcy, nord", "Place Darcy, sud"), encoding="utf-8")

    code, out, err = await rig.provision("--dry-run")
    assert code == 1, out + err  # line 4 is still wrong
    for cabinet in GOOD:
        config = rig.out / cabinet / "agent.toml"
        assert f"--- {config}\n+++ {config}\n" in out
        assert "updated" in row_of(out, cabinet)
    assert out.count("-keepalive_s = 30\n+keepalive_s = 45\n") == 3
    assert "registry: would update dijon-0002\n  label: 'Place Darcy, nord' -> 'Place Darcy, sud'" in out
    assert "would get a new password" not in out
    assert rig.stats() == before and await rig.central.store.registry() == registry
    assert not list(rig.tmp.glob("**/.provision-check-*"))  # the scratch folders are gone

    code, out, err = await rig.provision()
    assert code == 1
    assert "registry updated; agent.toml updated" in row_of(out, "dijon-0002")
    assert "agent.toml updated" in row_of(out, "dijon-0001")
    assert load_config(rig.out / "dijon-0001" / "agent.toml").config.broker.keepalive_s == 45
    after = rig.stats()
    assert after["dijon-0001/broker-password"] == before["dijon-0001/broker-password"]


async def test_a_lost_password_file_is_replaced_only_when_asked(rig: Rig) -> None:
    await rig.provision()
    lost = rig.out / "dijon-0002" / "broker-password"
    lost.unlink()
    code, out, _ = await rig.provision()
    assert code == 1 and "--new-credentials" in row_of(out, "dijon-0002")
    assert not lost.exists()
    # Replacing a cabinet's credentials is an admin's: an installer's token is refused, naming that.
    code, out, _ = await rig.provision("--new-credentials")
    assert code == 1 and "needs an admin" in row_of(out, "dijon-0002")
    assert not lost.exists()
    rig.token = await token_file(rig.central, rig.tmp / "admin-token", Role.ADMIN)
    code, out, _ = await rig.provision("--new-credentials")
    assert code == 1  # line 4 only
    assert "broker credentials replaced" in row_of(out, "dijon-0002")
    assert "unchanged" in row_of(out, "dijon-0001")
    entry = await rig.central.store.registry_entry("dijon-0002")
    assert entry is not None and entry.broker_hash is not None
    assert password_matches(lost.read_text().strip(), entry.broker_hash)


async def test_one_cabinet_from_flags_with_tls_files(rig: Rig) -> None:
    ca = LocalCa(rig.tmp)
    ca.issue("quetigny-0001", server=False)
    code, out, err = await rig.provision(
        *("--cabinet", "quetigny-0001", "--town", "Quetigny", "--lat", "47.3156", "--lon", "5.1062"),
        *("--devices", "lc1=modbus-tcp://10.1.0.5:502/lighting-single-circuit"),
        *("--broker-url", "mqtts://broker.city.example:8883", "--ca-file", str(ca.cert)),
        *("--cert-file", str(rig.tmp / "{id}.crt"), "--key-file", str(rig.tmp / "{id}.key")),
        inventory=False,
    )
    assert code == 0, out + err
    assert "created" in row_of(out, "quetigny-0001")
    folder = rig.out / "quetigny-0001"
    broker = load_config(folder / "agent.toml").config.broker
    assert broker.url == "mqtts://broker.city.example:8883"
    assert (broker.ca_file, broker.cert_file, broker.key_file) == tuple(
        (folder / name).resolve() for name in ("ca.pem", "client.crt", "client.key")
    )
    assert (folder / "ca.pem").read_bytes() == ca.cert.read_bytes()
    assert stat.S_IMODE((folder / "client.key").stat().st_mode) == 0o600
    assert (folder / "client.key").read_bytes() == (rig.tmp / "quetigny-0001.key").read_bytes()
    entry = await rig.central.store.registry_entry("quetigny-0001")
    assert entry is not None and (entry.latitude, entry.longitude) == (47.3156, 5.1062)


async def test_a_token_that_may_not_provision_stops_before_any_cabinet(rig: Rig) -> None:
    rig.token = await token_file(rig.central, rig.tmp / "viewer-token", Role.VIEWER)
    code, _, err = await rig.provision()
    assert code == 2 and "403" in err and "installer" in err
    rig.token.write_text("ce1_0123456789abcdef_not-a-real-secret\n")
    code, _, err = await rig.provision()
    assert code == 2 and "401" in err and "not-a-real-secret" not in err
    rig.token.chmod(0o644)
    code, _, err = await rig.provision()
    assert code == 2 and "other users can access it" in err
    assert not rig.out.exists() and await rig.central.store.registry() == []


async def test_a_password_as_credential_is_left_out_of_the_config(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = await rig.provision(
        "--password-as-credential",
        *("--cabinet", "talant-0001", "--town", "Talant"),
        inventory=False,
    )
    assert code == 0, out + err
    folder = rig.out / "talant-0001"
    text = (folder / "agent.toml").read_text(encoding="utf-8")
    assert "password_file" not in text.split("[broker]", 1)[1].split("\n[", 1)[0]
    password = folder / "broker-password"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    # On the cabinet, systemd hands the file to the agent as the credential broker-password.
    credentials = rig.tmp / "credentials"
    credentials.mkdir()
    (credentials / "broker-password").write_bytes(password.read_bytes())
    (credentials / "broker-password").chmod(0o400)  # as systemd makes it
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    for name in ("CITYEDGE_BROKER_PASSWORD", "CITYEDGE_BROKER_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    broker = load_config(folder / "agent.toml").config.broker
    assert broker.password == password.read_text(encoding="utf-8").strip()
