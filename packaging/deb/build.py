#!/usr/bin/env python3
"""Build the cityedge Debian package for amd64 or arm64, in one command:

    python3 packaging/deb/build.py --arch amd64 [--out dist]      (or --arch arm64, from any machine)

The package carries cityedge's wheel and the wheels of every dependency for that architecture and
CPython 3.11 (Debian 12 and Raspberry Pi OS bookworm), and makes /opt/cityedge/venv from them when it
is installed: no network at install time, no compiler, and the same package on a cabinet and on a
control-room server. A dependency without a wheel for the architecture (an sdist only) fails the
build, naming it. ``/opt/cityedge/bin/cityedge`` is what the units run. Also installed: the systemd
units (not enabled), the cityedge user (sysusers.d), the example configs in /usr/share/cityedge.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# manylinux tags a bookworm system (glibc 2.36) runs, newest first.
PLATFORMS = {
    "amd64": ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64", "linux_x86_64"],
    "arm64": ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64", "linux_aarch64"],
}
PYTHON = "3.11"
# What the application needs at run time (the optional demo broker, amqtt, stays out).
EXTRAS = ""


def run(command: list[str], **kwargs: object) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def build_wheel(into: Path) -> Path:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(into), str(ROOT)])
    (wheel,) = into.glob("cityedge-*.whl")
    return wheel


def download_dependencies(wheel: Path, arch: str, into: Path) -> None:
    """Every dependency as a wheel for ``arch``; pip refuses (and names it) one that has none."""
    platforms = [arg for platform in PLATFORMS[arch] for arg in ("--platform", platform)]
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", *platforms,
         "--python-version", PYTHON, "--implementation", "cp", "-d", str(into), f"{wheel}{EXTRAS}"]
    )  # fmt: skip


def stage(tree: Path, wheels: Path, arch: str, ver: str) -> None:
    opt = tree / "opt" / "cityedge" / "wheels"
    opt.mkdir(parents=True)
    for wheel in wheels.glob("*.whl"):
        shutil.copy2(wheel, opt)
    # What the units and the README run; it points into the venv postinst makes.
    (tree / "opt" / "cityedge" / "bin").mkdir()
    (tree / "opt" / "cityedge" / "bin" / "cityedge").symlink_to("../venv/bin/cityedge")
    units = tree / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    for unit in (ROOT / "packaging" / "systemd").glob("*.service"):
        shutil.copy2(unit, units)
    sysusers = tree / "usr" / "lib" / "sysusers.d"
    sysusers.mkdir(parents=True)
    shutil.copy2(ROOT / "packaging" / "systemd" / "cityedge.sysusers", sysusers / "cityedge.conf")
    share = tree / "usr" / "share" / "cityedge"
    shutil.copytree(ROOT / "config", share / "config")
    shutil.copy2(ROOT / "packaging" / "mosquitto" / "cityedge.conf", share / "mosquitto-cityedge.conf")
    debian = tree / "DEBIAN"
    debian.mkdir()
    size_kib = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file()) // 1024
    control = (HERE / "control.in").read_text().format(version=ver, arch=arch, size=size_kib)
    (debian / "control").write_text(control)
    for script in ("postinst", "prerm", "postrm"):
        target = debian / script
        shutil.copy2(HERE / script, target)
        target.chmod(0o755)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", choices=sorted(PLATFORMS), required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args()
    if shutil.which("dpkg-deb") is None:
        print("dpkg-deb is missing: run 'sudo apt-get install -y dpkg-dev', then again", file=sys.stderr)
        return 1
    ver = version()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cityedge-deb-") as work:
        wheels, tree = Path(work) / "wheels", Path(work) / "tree"
        wheels.mkdir()
        download_dependencies(build_wheel(wheels), args.arch, wheels)
        stage(tree, wheels, args.arch, ver)
        package = args.out / f"cityedge_{ver}_{args.arch}.deb"
        run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(package)])
    print(package)
    return 0


if __name__ == "__main__":
    sys.exit(main())
