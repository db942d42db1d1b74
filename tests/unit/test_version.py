"""One version: pyproject's, the one a birth reports and ``cityedge --version`` prints."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import cityedge
from edge_agent.agent import AGENT_VERSION
from protocols.release import VERSION


def test_every_place_says_the_same_version() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == VERSION == AGENT_VERSION == cityedge.__version__


def test_cityedge_version_prints_it() -> None:
    for args in (["--version"], ["--version", "agent"]):
        done = subprocess.run(
            [sys.executable, "-m", "cityedge", *args], capture_output=True, text=True, timeout=60, check=True
        )
        assert done.stdout.strip() == f"cityedge {VERSION}"
