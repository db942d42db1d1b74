"""`cityedge agent run` on a Modbus-only cabinet loads Modbus and the agent, nothing else: no OPC UA or
ONVIF library (heavy, and imported only when a device uses them), none of the CLI's or central's, and no
pydantic (central's models; the agent's are msgspec structs, a fraction of its resident memory)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from cityedge.testing import write_agent_config
from edge_agent.buffer import Kind, read_file_records
from protocols.modbus.simulator import LightingControllerSimulator
from protocols.testing import wait_until

pytestmark = pytest.mark.integration

# Runs the real entry point in-process and writes the names of every module it loaded when it exits.
WRAPPER = """
import atexit, sys
out, config = sys.argv[1], sys.argv[2]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
sys.argv = ["cityedge", "agent", "run", "--config", config]
from cityedge.__main__ import main
main()
"""
NEVER_ON_A_MODBUS_CABINET = (
    "asyncua",
    "zeep",
    "onvif",
    "typer",
    "click",
    "rich",
    "central",
    "fastapi",
    "pydantic",
    "pydantic_core",
)


def readings(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return sum(1 for _, kind, _ in read_file_records(db) if kind == Kind.READING)
    except sqlite3.OperationalError:  # its tables are not made yet
        return 0


async def test_a_modbus_only_agent_imports_no_other_protocol(
    tmp_path: Path, controllers: list[LightingControllerSimulator]
) -> None:
    config = write_agent_config(
        tmp_path, cabinet="cab-1", broker_url="mqtt://127.0.0.1:1", devices=[("lc1", controllers[0].port)]
    )
    modules = tmp_path / "modules.txt"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRAPPER, str(modules), str(config), stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until(lambda: readings(tmp_path / "buffer.db") > 0, timeout=30, what="a committed reading")
    finally:
        agent.terminate()
        _, err = await asyncio.wait_for(agent.communicate(), timeout=30)
    assert modules.exists(), err.decode()
    loaded = set(modules.read_text().split())
    assert {"edge_agent.agent", "protocols.modbus.client", "pymodbus"} <= loaded  # it did run
    top = {name.partition(".")[0] for name in loaded}
    assert top.isdisjoint(NEVER_ON_A_MODBUS_CABINET), sorted(top & set(NEVER_ON_A_MODBUS_CABINET))
    assert not {"protocols.opcua", "protocols.onvif"} & loaded
