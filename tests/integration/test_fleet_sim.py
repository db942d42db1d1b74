"""`cityedge fleet-sim` as a user runs it: a few simulated cabinets whose records reach central, and
the command traffic it sends through central's API executed by those cabinets."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from central.server import CentralServer
from central.store.auth_rows import Role
from cityedge.broker import MosquittoBroker
from cityedge.testing import wait_until
from tests.integration.api_client import api_client, new_token

pytestmark = pytest.mark.integration


# The real agent code and the light stand-in must look the same to central.
@pytest.mark.parametrize("mode", [[], ["--light"]], ids=["agent-code", "light"])
async def test_fleet_sim_cli_cabinets_send_records_that_central_stores(
    central: CentralServer, mosquitto: MosquittoBroker, tmp_path: Path, mode: list[str]
) -> None:
    token_file = tmp_path / "operator.token"
    token_file.touch(mode=0o600)
    token_file.write_text(await new_token(central.store, Role.OPERATOR, "fleet-sim") + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", "fleet-sim", "--broker", mosquitto.url,
        "--cabinets", "3", "--points", "5", "--interval", "0.2", "--stats-every", "0.5",
        "--prefix", "cli", "--json", "--seconds", "60", *mode,
        "--api", central.url, "--api-token-file", str(token_file), "--command-every", "0.3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    ids = ["cli-00001", "cli-00002", "cli-00003"]
    try:
        async with api_client(central) as api:

            async def every_cabinet_stored_readings() -> bool:
                try:
                    for cabinet in ids:
                        points = (await api.get(f"/cabinets/{cabinet}/points")).json().get("points", [])
                        if {p["point"] for p in points} != {
                            "lc1/relay", "lc1/dim_level_pct", "lc1/m000", "lc1/m001", "lc1/m002"
                        }:  # fmt: skip
                            return False
                    online = {c["id"] for c in (await api.get("/cabinets")).json() if c["online"]}
                except (httpx.HTTPError, ValueError):
                    return False
                return online >= set(ids)

            await wait_until(every_cabinet_stored_readings, timeout=30, what="three sim cabinets' points")

            async def commands_executed() -> bool:
                listed = (await api.get("/commands", params={"status": "executed"})).json()["commands"]
                return len({c["target"]["cabinet"] for c in listed}) >= 2 and all(
                    c["issued_by"] == "fleet-sim" and c["action"] == "dim" for c in listed
                )

            await wait_until(commands_executed, timeout=30, what="fleet-sim's commands executed")
        assert process.stdout is not None
        # Its stats: one JSON object per period, acknowledged records counted.
        async with asyncio.timeout(20):
            while True:
                report = json.loads(await process.stdout.readline())
                if report["acked"] > 0 and report["connected"] == 3:
                    break
        assert report["cabinets"] == 3 and report["ack_p99_ms"] is not None
    finally:
        process.terminate()
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
