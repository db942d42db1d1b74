"""Every command of the `cityedge` CLI has help text and is documented in the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from cityedge.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def commands(group: Any, prefix: str = "cityedge") -> list[tuple[str, Any]]:
    """(command line, command) of every leaf command below ``group`` (a click-style group)."""
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            found += commands(command, path)
        else:
            found.append((path, command))
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    root = typer.main.get_command(app)
    listed = commands(root)
    assert {path for path, _ in listed} >= {
        "cityedge agent run",
        "cityedge agent check",
        "cityedge central serve",
        "cityedge demo",
    }
    for path, command in listed:
        assert command.help, f"{path} has no help text"
        assert f"`{path}" in README, f"{path} is not documented in README.md"
        for param in command.params:
            if param.name not in ("help",):
                assert getattr(param, "help", None), f"{path} --{param.name} has no help text"
