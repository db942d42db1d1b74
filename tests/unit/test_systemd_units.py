"""The shipped systemd units: systemd itself reads them without a warning (no key it ignores, no
typo), and they ask for what the services do: notify readiness, a watchdog, a dedicated user, a
read-only system, a state directory, the broker password as a credential."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).parents[2] / "packaging" / "systemd").glob("*.service"))


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_reads_the_unit_without_a_warning(unit: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # The only complaint allowed is the program path, which exists once the package is installed.
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "/opt/cityedge/bin/cityedge is not executable" not in line
    ]
    assert complaints == []


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_unit_asks_for_notify_watchdog_and_confinement(unit: Path) -> None:
    found = settings(unit)
    assert found["Type"] == ["notify"] and found["NotifyAccess"] == ["main"]
    assert found["WatchdogSec"] and found["Restart"] == ["always"]
    assert found["User"] == ["cityedge"] and found["ProtectSystem"] == ["strict"]
    assert found["StateDirectory"] and found["LoadCredential"][0].startswith("broker-password:")
    assert found["NoNewPrivileges"] == ["yes"]
