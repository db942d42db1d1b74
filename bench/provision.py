"""Provisioning a batch of cabinets from a CSV, against the same registrations made with bare HTTP calls.

Starts its own Mosquitto and `cityedge central serve` (SQLite) as a separate process, makes an
installer token with the CLI, writes an inventory of ``--cabinets`` cabinets (one Modbus TCP lighting
controller each) and times, wall clock, process start included:
- `cityedge provision` of the whole CSV (each config made from config/cabinets/example.toml and checked
  by the agent's loader, registered, its broker password obtained and written 0600);
- the same command again (everything already right: "unchanged" everywhere);
- the reference: the same number of registrations (PUT /registry/{id}, then POST
  /registry/{id}/broker-credentials) made straight with httpx, as many at once as provision makes
  (``--parallel``), on other ids, and nothing else (no config, no file).

    .venv/bin/python bench/provision.py [--cabinets 500] [--parallel 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from cityedge.broker import MosquittoBroker
from cityedge.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "config" / "cabinets" / "example.toml"


async def cityedge(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the CLI."""
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cityedge", *args, stdout=pipe, stderr=pipe
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def inventory(path: Path, count: int) -> None:
    lines = ["id,town,lat,lon,label,rated_power_w,devices"]
    for i in range(1, count + 1):
        lat, lon = 47.30 + (i % 100) / 1000, 5.00 + (i // 100) / 1000
        device = f"lc1=modbus-tcp://10.{i // 250}.{i % 250}.21:502/lighting-single-circuit?unit=1"
        lines.append(f"bench-{i:05d},Dijon,{lat:.4f},{lon:.4f},Rue {i},1840,{device}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def raw_registrations(base: str, token: str, count: int, parallel: int) -> float:
    gate = asyncio.Semaphore(parallel)
    body = {"town": "Dijon", "label": "Rue", "latitude": 47.3, "longitude": 5.0, "rated_power_w": 1840.0}
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as http:

        async def one(i: int) -> None:
            async with gate:
                cabinet = f"ref-{i:05d}"
                put = await http.put(f"/registry/{cabinet}", json=body)
                assert put.status_code == 201, put.text
                creds = await http.post(f"/registry/{cabinet}/broker-credentials", json={"replace": False})
                assert creds.status_code == 201, creds.text

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


async def run(count: int, parallel: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        db = str(tmp / "central.db")
        code, token, err = await cityedge(
            "central", "token", "create", "--role", "installer", "--name", "bench", "--db", db
        )
        if code != 0:
            raise SystemExit(f"token create failed: {err}")
        token = token.strip()
        token_file = tmp / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        inventory(tmp / "cabinets.csv", count)
        async with MosquittoBroker() as broker:
            port = free_port()
            central = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cityedge", "central", "serve", "--db", db, "--broker", broker.url,
                "--http", f"127.0.0.1:{port}", stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                async with asyncio.timeout(30):
                    await wait_for_port("127.0.0.1", port)
                url = f"http://127.0.0.1:{port}"
                args = ["provision", "--template", str(TEMPLATE), "--out", str(tmp / "out")]
                args += [
                    "--central",
                    url,
                    "--token-file",
                    str(token_file),
                    "--inventory",
                    str(tmp / "cabinets.csv"),
                ]
                args += ["--parallel", str(parallel)]
                started = time.perf_counter()
                code, text, err = await cityedge(*args)
                first = time.perf_counter() - started
                if code != 0 or f"{count} created" not in text:
                    raise SystemExit(f"provision failed (exit {code}):\n{text[-3000:]}{err[-2000:]}")
                started = time.perf_counter()
                code, text, err = await cityedge(*args)
                again = time.perf_counter() - started
                if code != 0 or f"{count} unchanged" not in text:
                    raise SystemExit(f"the second provision changed something (exit {code}):\n{text[-3000:]}")
                raw = await raw_registrations(f"{url}/api/v1", token, count, parallel)
            finally:
                central.terminate()
                await central.wait()
    load = os.getloadavg()[0]
    print(f"provision of {count} cabinets from a CSV, {parallel} at once (load average {load:.1f}):")
    print(f"  first run (created):       {first:6.2f} s  ({count / first:,.0f} cabinets/s)")
    print(f"  second run (unchanged):    {again:6.2f} s")
    print(f"  bare HTTP registrations:   {raw:6.2f} s  (PUT + POST credentials, no configs)")
    print(f"  ratio provision / bare:    {first / raw:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=8)
    options = parser.parse_args()
    asyncio.run(run(options.cabinets, options.parallel))


if __name__ == "__main__":
    main()
