"""The agent core knows the driver seam, never a protocol: a new driver is its own package and one
registry line, and a cabinet without cameras never loads a camera library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted((ROOT / "edge_agent").rglob("*.py"))
PROTOCOL_PACKAGES = ("protocols.modbus", "protocols.opcua", "protocols.onvif")
PROTOCOL_LIBRARIES = ("pymodbus", "asyncua", "zeep", "onvif", "serial")


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth of the file."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.append(node.module)
            # ``from protocols import modbus`` names the package through its attribute.
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_the_core_is_all_there() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in CORE}
    assert {"edge_agent/agent.py", "edge_agent/poller.py", "edge_agent/alarms.py"} <= names
    assert {"edge_agent/config.py", "edge_agent/probe.py", "edge_agent/lighting/runner.py"} <= names
    assert "edge_agent/drivers.py" not in names


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_no_core_module_imports_a_protocol(path: Path) -> None:
    found = [
        name
        for name in imported_modules(path)
        if any(name == p or name.startswith(p + ".") for p in PROTOCOL_PACKAGES + PROTOCOL_LIBRARIES)
    ]
    assert found == [], f"{path.relative_to(ROOT)} imports {found}: go through protocols.registry"


def test_the_analysis_sees_every_form_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import protocols.modbus.client\nfrom protocols import opcua\n"
        "def f():\n    from protocols.onvif.driver import build\n"
    )
    found = imported_modules(module)
    assert {"protocols.modbus.client", "protocols.opcua", "protocols.onvif.driver"} <= set(found)
