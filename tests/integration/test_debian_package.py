"""The Debian package, built by its one command for amd64 and arm64: it carries a wheel of cityedge and
of every dependency for its architecture (so it installs with no network), its units, its user; the
venv its postinst makes from those wheels runs cityedge. As root on a machine without cityedge, the
amd64 package is installed for real with dpkg -i, checked, and purged. Needs PyPI (or pip's cache)
and dpkg-deb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.release import VERSION

ROOT = Path(__file__).parents[2]
BUILD = ROOT / "packaging" / "deb" / "build.py"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed"),
]


def build(arch: str, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, str(BUILD), "--arch", arch, "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0 and "No matching distribution" in done.stderr and "network" in done.stderr:
        pytest.skip(f"PyPI cannot be reached to fetch the {arch} wheels")
    assert done.returncode == 0, done.stderr[-3000:]
    package = Path(done.stdout.strip().splitlines()[-1])
    assert package.name == f"cityedge_0.1.0_{arch}.deb" and package.exists()
    return package


def field(package: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(package), name], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("deb")
    return {arch: build(arch, out) for arch in ("amd64", "arm64")}


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_package_holds_the_wheels_units_and_user(packages: dict[str, Path], arch: str) -> None:
    package = packages[arch]
    assert field(package, "Architecture") == arch
    assert "python3-venv" in field(package, "Depends")
    listing = subprocess.run(["dpkg-deb", "-c", str(package)], capture_output=True, text=True, check=True)
    files = {line.split()[-1].removeprefix(".") for line in listing.stdout.splitlines()}
    assert {
        "/lib/systemd/system/cityedge-agent.service",
        "/lib/systemd/system/cityedge-central.service",
        "/usr/lib/sysusers.d/cityedge.conf",
    } <= files
    wheels = [Path(f).name for f in files if f.startswith("/opt/cityedge/wheels/") and f.endswith(".whl")]
    assert any(w.startswith("cityedge-") for w in wheels)
    machine = {"amd64": "x86_64", "arm64": "aarch64"}[arch]
    other = {"amd64": "aarch64", "arm64": "x86_64"}[arch]
    compiled = [w for w in wheels if "-none-any" not in w]
    assert compiled, "msgspec, pydantic-core and others are compiled: their wheels must be there"
    assert all(machine in w or ("abi3" in w and machine in w) for w in compiled), compiled
    assert not [w for w in wheels if other in w]


def test_the_venv_made_from_the_amd64_wheels_runs_cityedge(packages: dict[str, Path], tmp_path: Path) -> None:
    if Path("/proc/sys/kernel/arch").exists() and "x86_64" not in Path("/proc/sys/kernel/arch").read_text():
        pytest.skip("this machine cannot run amd64 wheels")
    tree = tmp_path / "tree"
    subprocess.run(["dpkg-deb", "-x", str(packages["amd64"]), str(tree)], check=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # What postinst does, offline: only the wheels the package carries.
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--find-links", str(tree / "opt" / "cityedge" / "wheels"), "cityedge"],
        check=True, timeout=600,
    )  # fmt: skip
    example = tree / "usr" / "share" / "cityedge" / "config" / "cabinets"
    assert sorted(p.name for p in example.glob("*.toml"))
    shown = subprocess.run(
        [str(venv / "bin" / "cityedge"), "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    assert "agent" in shown.stdout and "central" in shown.stdout
    postinst = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(packages["amd64"])], capture_output=True, check=True
    ).stdout
    assert b"--no-index" in postinst and b"/opt/cityedge/venv" in postinst


def test_dpkg_installs_runs_and_purges_the_package(packages: dict[str, Path]) -> None:
    if os.geteuid() != 0 or shutil.which("dpkg") is None:
        pytest.skip("installing a package needs root and dpkg")
    if Path("/opt/cityedge").exists():
        pytest.skip("cityedge is installed on this machine: not touching it")
    installed = subprocess.run(
        ["dpkg", "-i", str(packages["amd64"])], capture_output=True, text=True, timeout=600, check=False
    )
    try:
        assert installed.returncode == 0, installed.stdout + installed.stderr
        version = subprocess.run(
            ["/opt/cityedge/bin/cityedge", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert version.stdout.strip() == f"cityedge {VERSION}"
        units = ["/lib/systemd/system/cityedge-agent.service", "/lib/systemd/system/cityedge-central.service"]
        if shutil.which("systemd-analyze") is not None:
            verified = subprocess.run(
                ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60, check=False
            )
            assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
        assert (
            subprocess.run(["getent", "passwd", "cityedge"], capture_output=True, check=False).returncode == 0
        )
        mode = Path("/etc/cityedge").stat()
        assert (mode.st_mode & 0o777, mode.st_uid) == (0o750, 0)
        # The agent's own config folder (remote configuration replaces its config there).
        agent_dir = Path("/etc/cityedge/agent").stat()
        group = subprocess.run(["getent", "group", "cityedge"], capture_output=True, text=True, check=True)
        assert (agent_dir.st_mode & 0o7777, agent_dir.st_uid) == (0o2770, 0)
        assert agent_dir.st_gid == int(group.stdout.split(":")[2])
    finally:
        purged = subprocess.run(
            ["dpkg", "--purge", "cityedge"], capture_output=True, text=True, timeout=300, check=False
        )
    assert purged.returncode == 0, purged.stderr
    assert not Path("/opt/cityedge/venv").exists() and not Path("/opt/cityedge/bin").exists()
