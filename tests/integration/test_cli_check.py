"""`cityedge agent check`: which profile file each device uses, profiles a lighting output cannot drive,
and `--probe` reading each point once from simulated controllers over real sockets."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocols.modbus.profile import default_profile_dirs, load_profile
from protocols.modbus.simulator import LightingControllerSimulator

pytestmark = pytest.mark.integration

PACKAGED = default_profile_dirs()[0]
PROFILE = "lighting-register-relay"


def config(tmp_path: Path, devices: list[tuple[str, int]], *, head: str = "", profile: str = PROFILE) -> Path:
    lines = [head, "[cabinet]", 'id = "cab-check"']
    for name, port in devices:
        lines += [
            "[[devices]]",
            f'name = "{name}"',
            'driver = "modbus-tcp"',
            f'address = "127.0.0.1:{port}"',
            f'profile = "{profile}"',
            "timeout_s = 0.5",
        ]
    path = tmp_path / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def check(*args: str) -> tuple[int, str, str]:
    """Run the CLI while this event loop keeps serving the simulators."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cityedge",
        "agent",
        "check",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def sim() -> AsyncIterator[LightingControllerSimulator]:
    async with LightingControllerSimulator(profile=load_profile(PROFILE, [PACKAGED]), seed=3) as simulator:
        yield simulator


def own_copy(folder: Path, *, change: tuple[str, str] | None = None) -> Path:
    """A technician's copy of the packaged profile, in ``folder``, optionally edited."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (PACKAGED / f"{PROFILE}.toml").read_text()
    if change is not None:
        assert change[0] in text
        text = text.replace(*change, 1)
    path = folder / f"{PROFILE}.toml"
    path.write_text(text)
    return path


async def test_check_says_which_profile_file_each_device_uses(tmp_path: Path) -> None:
    code, out, err = await check("--config", str(config(tmp_path, [("lc1", 5020)])))
    assert code == 0, err
    assert f"lc1: profile {PROFILE} from {PACKAGED / (PROFILE + '.toml')}" in out

    own = own_copy(tmp_path / "profiles")  # profiles_dir, relative to the config, wins
    code, out, err = await check(
        "--config", str(config(tmp_path, [("lc1", 5020)], head='profiles_dir = "profiles"'))
    )
    assert code == 0, err
    assert f"lc1: profile {PROFILE} from {own}" in out


async def test_a_missing_profiles_dir_names_the_key_and_the_fix(tmp_path: Path) -> None:
    path = config(tmp_path, [("lc1", 5020)], head='profiles_dir = "nowhere"')
    code, _, err = await check("--config", str(path))
    assert code == 2
    assert err.startswith(
        f"error: {path}: profiles_dir: {tmp_path / 'nowhere'} is not a directory: create it"
    )


async def test_a_relay_the_lighting_cannot_switch_is_refused(tmp_path: Path) -> None:
    """A relay held in a uint16 register: the lighting writes true/false, which it cannot take."""
    own = own_copy(tmp_path / "profiles", change=('type = "bool"', 'type = "uint16"'))
    path = config(tmp_path, [("lc1", 5020)], head='profiles_dir = "profiles"')
    code, _, err = await check("--config", str(path))
    assert code == 2
    assert err.strip() == (
        f"error: {path}: devices[0].profile: {own}: points[0] (relay).type: a lighting relay is switched "
        "on and off: expected type = \"bool\" (a coil, or a holding register written 1/0), got 'uint16'"
    )


async def test_probe_reads_every_point_once(tmp_path: Path, sim: LightingControllerSimulator) -> None:
    code, out, err = await check("--config", str(config(tmp_path, [("lc1", sim.port)])), "--probe")
    assert code == 0, out + err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("device"))
    assert lines[header].split() == ["device", "point", "value", "unit", "quality", "plausible"]
    table = [line.split() for line in lines[header + 1 :]]
    assert [row[1] for row in table] == list(sim.profile.quantities)
    voltage = next(row for row in table if row[1] == "voltage_v")
    assert 220 < float(voltage[2]) < 240 and voltage[3:] == ["V", "good", "180..260"]


async def test_probe_flags_a_wrong_word_order_as_implausible(
    tmp_path: Path, sim: LightingControllerSimulator
) -> None:
    # The technician's profile says ABCD for a meter that stores its floats CDAB.
    own_copy(
        tmp_path / "profiles", change=('word_order = "CDAB"\nunit = "V"', 'word_order = "ABCD"\nunit = "V"')
    )
    path = config(tmp_path, [("lc1", sim.port)], head='profiles_dir = "profiles"')
    code, out, _ = await check("--config", str(path), "--probe")
    assert code == 1
    [voltage] = [line for line in out.splitlines() if " voltage_v " in line]
    assert voltage.split()[-4:] == ["V", "bad", "180..260", "IMPLAUSIBLE"]
    assert not 180 <= float(voltage.split()[2]) <= 260  # the value read is shown, and flagged
    assert [line for line in out.splitlines() if line.endswith("IMPLAUSIBLE")] == [voltage]


async def test_probe_flags_a_device_that_does_not_answer(
    tmp_path: Path, sim: LightingControllerSimulator
) -> None:
    silent = LightingControllerSimulator(profile=sim.profile)
    await silent.start()
    port = silent.port
    await silent.stop()  # nothing listens there any more
    code, out, _ = await check(
        "--config", str(config(tmp_path, [("lc1", sim.port), ("lc2", port)])), "--probe"
    )
    assert code == 1
    [dead] = [line for line in out.splitlines() if line.startswith("lc2")]
    assert "NO ANSWER: lc2:" in dead
    good = [line.split() for line in out.splitlines() if line.startswith("lc1 ")]
    assert len(good) == len(sim.profile.quantities)
    assert all("good" in row and "bad" not in row for row in good)
