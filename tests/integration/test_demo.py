"""`cityedge demo` as a newcomer runs it: it comes up, shows live data, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from cityedge.broker import EmbeddedBroker
from cityedge.demo import run_demo
from cityedge.ports import free_port
from cityedge.testing import wait_until

pytestmark = pytest.mark.integration

TOKEN = re.compile(r"ce1_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


async def _printed_token(stream: asyncio.StreamReader, lines: list[str]) -> str:
    """Read the demo's stdout until it prints its API token."""
    async with asyncio.timeout(60):
        while line := (await stream.readline()).decode():
            lines.append(line)
            if found := TOKEN.search(line):
                return found.group()
    raise AssertionError(f"the demo printed no API token: {''.join(lines)}")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_demo_serves_live_cabinets_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    demo = await asyncio.create_subprocess_exec(
        # faulthandler: a demo that does not stop is made to print where each thread is (SIGABRT).
        *(sys.executable, "-X", "faulthandler", "-m", "cityedge", "demo", "--cabinets", "3"),
        *("--http", f"127.0.0.1:{port}"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Ctrl-C as a terminal sends it: a suite run in the background (`bash .ci/run &`) has SIGINT
        # ignored, which its children inherit, and Python then installs no handler of its own.
        preexec_fn=_default_sigint,
    )
    printed: list[str] = []
    try:
        assert demo.stdout is not None
        token = await _printed_token(demo.stdout, printed)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1", timeout=5, headers=headers
        ) as api:

            async def fleet_live() -> bool:
                try:
                    cabinets = (await api.get("/cabinets")).json()
                    points = (await api.get("/cabinets/demo-003/points")).json()
                except httpx.HTTPError:
                    return False
                online = [c["id"] for c in cabinets if c["online"]]
                return len(online) == 3 and any(p["point"] == "lc2/power_w" for p in points["points"])

            await wait_until(fleet_live, timeout=60, what="three live demo cabinets")

            async def junction_live() -> bool:
                equipment = (await api.get("/cabinets/demo-001/equipment")).json()["equipment"]
                return {(e["device"], e["equipment_class"], e["state"]) for e in equipment} == {
                    ("lc1", "lighting", "ok"),
                    ("lc2", "lighting", "ok"),
                    ("tc1", "traffic_controller", "ok"),
                    ("cam1", "camera", "ok"),
                }

            # Every other cabinet stands at a junction: its traffic controller and camera, both read.
            await wait_until(junction_live, timeout=60, what="demo-001's traffic controller and camera")
            demo_002 = (await api.get("/cabinets/demo-002/equipment")).json()["equipment"]
            assert {e["equipment_class"] for e in demo_002} == {"lighting"}

            async def started_events() -> bool:
                kinds = {e["kind"] for e in (await api.get("/events")).json()["events"]}
                return {"agent_started", "schedule_active", "lighting_state"} <= kinds

            # Each arrives with the commit that follows it: wait for them, do not race them.
            await wait_until(started_events, timeout=30, what="the agents' first events")
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                out, err = await demo.communicate()
        except TimeoutError:
            demo.send_signal(signal.SIGABRT)
            out, err = await demo.communicate()
            raise AssertionError(
                f"the demo did not stop within 30 s of Ctrl-C:\n{err.decode()[-6000:]}"
            ) from None
    stdout, stderr = "".join(printed) + out.decode(), err.decode()
    assert demo.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stdout and "/api/v1/cabinets" in stdout
    assert f"Authorization: Bearer {token}" in stdout
    assert token not in stderr  # the token is shown once, to the newcomer, not logged
    assert "Traceback" not in stderr and " ERROR " not in stderr, stderr
    assert (tmp_path / "demo-data" / "central.db").exists()


# amqtt never closes its side of the port probe's connection: that ResourceWarning is amqtt's.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_demo_runs_on_the_embedded_broker_where_mosquitto_is_missing(tmp_path: Path) -> None:
    port = free_port()
    announced: list[str] = []
    try:
        async with EmbeddedBroker() as broker:
            demo = asyncio.create_task(
                run_demo(
                    cabinets=2,
                    data_dir=tmp_path,
                    http_host="127.0.0.1",
                    http_port=port,
                    broker_url=broker.url,
                    announce=announced.append,
                )
            )
            try:
                await wait_until(
                    lambda: any(TOKEN.search(line) for line in announced), timeout=60, what="the token"
                )
                token = next(m.group() for line in announced if (m := TOKEN.search(line)))
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}/api/v1",
                    timeout=5,
                    headers={"Authorization": f"Bearer {token}"},
                ) as api:

                    async def live() -> bool:
                        try:
                            cabinets = (await api.get("/cabinets")).json()
                            points = (await api.get("/cabinets/demo-002/points")).json()
                        except (httpx.HTTPError, ValueError):
                            return False
                        online = [c for c in cabinets if c["online"]]
                        return len(online) == 2 and bool(points.get("points"))

                    await wait_until(live, timeout=60, what="two live cabinets over amqtt")
            finally:
                demo.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await demo
    finally:
        gc.collect()


async def test_demo_cabinets_beyond_the_real_ones_are_fleet_sim_cabinets(
    tmp_path: Path, broker_url: str
) -> None:
    port = free_port()
    announced: list[str] = []
    demo = asyncio.create_task(
        run_demo(
            cabinets=4,
            data_dir=tmp_path,
            http_host="127.0.0.1",
            http_port=port,
            broker_url=broker_url,
            announce=announced.append,
            real_cabinets=1,
        )
    )
    try:
        await wait_until(lambda: any(TOKEN.search(line) for line in announced), timeout=60, what="the token")
        token = next(m.group() for line in announced if (m := TOKEN.search(line)))
        assert any("3 fleet-sim cabinets, demo-002 to demo-004" in line for line in announced), announced
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            timeout=5,
            headers={"Authorization": f"Bearer {token}"},
        ) as api:

            async def all_live() -> bool:
                try:
                    cabinets = (await api.get("/cabinets")).json()
                    sim = (await api.get("/cabinets/demo-004/points")).json()
                    real = (await api.get("/cabinets/demo-001/points")).json()
                except (httpx.HTTPError, ValueError):
                    return False
                online = {c["id"] for c in cabinets if c["online"]}
                return (
                    online == {"demo-001", "demo-002", "demo-003", "demo-004"}
                    and any(p["point"] == "lc1/m000" for p in sim.get("points", []))
                    and any(p["point"] == "lc2/power_w" for p in real.get("points", []))
                )

            await wait_until(all_live, timeout=60, what="one real and three fleet-sim demo cabinets live")
    finally:
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo
