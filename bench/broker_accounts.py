"""The broker's accounts with 5,000 cabinets: how long central's mechanisms take on a real Mosquitto.

    .venv/bin/python bench/broker_accounts.py [--cabinets 5000] [--changes 5]

Measured in one run, on the shipped broker config (tests/integration/shipped_broker.py's swaps):
- reference, cold: render the plugin's file from the registry (5,000 hashes) + start the broker
  until the admin account lists every client (what a restart costs: every connection drops);
- live, from empty: the same 5,000 accounts made through the control topic (createRole +
  createClient each, 100 commands a message), on a broker that holds only central and the admin;
- live, one change with 5,000 present (on the broker started from that file): a new cabinet's
  credentials applied, and a revocation (deleteClient + deleteRole), each the median of --changes;
  no other connection is touched.
The ratio printed is reference / one live change. Every plugin change rewrites its whole file, so a
live change costs in proportion to the accounts present, and a live bulk load grows as their square.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from central.broker_accounts import BrokerAccounts, PasswordHash, render_document
from central.broker_accounts.control import DynsecControl
from central.broker_accounts.template import AccountsTemplate
from central.store.rows import RegistryEntry
from central.store.sqlite import SqliteStore
from cityedge.broker import mosquitto_path
from cityedge.broker_accounts import write_accounts
from cityedge.ports import free_port, wait_for_port
from protocols.fleet.broker_url import parse_broker_url
from tests.integration.shipped_broker import _test_config

ADMIN_PW = "bench-admin-pw"
FIXED = {"central": "bench-central-pw", "cityedge-admin": ADMIN_PW}


class Broker:
    def __init__(self, directory: Path) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise SystemExit("mosquitto is not installed (apt-get install -y mosquitto)")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(_test_config(self.directory, self.port)),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(60):
            await wait_for_port("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    def control(self) -> DynsecControl:
        address = parse_broker_url(f"mqtt://127.0.0.1:{self.port}")
        return DynsecControl(address, password=ADMIN_PW, timeout_s=900)


async def _changes(broker: Broker, store: SqliteStore, changes: int) -> tuple[list[float], list[float]]:
    """Seconds of each live change on ``broker``: credentials applied, then revoked."""
    accounts = BrokerAccounts(
        store=store, address=parse_broker_url(f"mqtt://127.0.0.1:{broker.port}"),
        admin_password=ADMIN_PW, timeout_s=120,
    )  # fmt: skip
    applies, revokes = [], []
    try:
        for n in range(changes):
            name, credential = f"new-{n}", PasswordHash.of("new-pw")
            t0 = time.perf_counter()
            await accounts.apply_credentials(name, "new-pw", credential)
            applies.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await accounts.revoke(name)
            revokes.append(time.perf_counter() - t0)
    finally:
        await accounts.__aexit__(None, None, None)
    return applies, revokes


async def main(cabinets: int, changes: int, bulk_cabinets: int, budget_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixed = {user: PasswordHash.of(pw) for user, pw in FIXED.items()}
        names = [f"cab-{n:05d}" for n in range(cabinets)]
        passwords = {name: f"pw-{name}" for name in names}
        t0 = time.perf_counter()
        async with SqliteStore(root / "central.db") as store:
            for name in names:
                credential = PasswordHash.of(passwords[name]).to_json()
                entry = RegistryEntry(name, "Dijon", "", None, None, None, None, credential, 1, 1, None)
                await store.put_registry(entry)
            made = time.perf_counter() - t0
            print(f"registry of {cabinets} cabinets made in {made:.1f} s (not timed below)")

            # Reference: render from the registry, start, until the admin sees every account.
            cold_dir = root / "cold"
            cold_dir.mkdir()
            cold = Broker(cold_dir)
            t0 = time.perf_counter()
            write_accounts(await render_document(store, fixed), cold_dir / "dynsec.json")
            rendered = time.perf_counter() - t0
            await cold.start()
            async with cold.control() as control:
                listed = len(await control.list_clients())
            started = time.perf_counter() - t0 - rendered
            assert listed == cabinets + 2, listed
            try:
                applies, revokes = await _changes(cold, store, changes)
            finally:
                await cold.stop()
            reference = rendered + started
            size = (cold_dir / "dynsec.json").stat().st_size
            print(f"reference: render {rendered:.2f} s ({size / 1e6:.1f} MB) + broker start {started:.2f} s"
                  f" = {reference:.2f} s, every connection dropped")  # fmt: skip
            apply_s, revoke_s = statistics.median(applies), statistics.median(revokes)
            print(
                f"one live change with {cabinets} present: credentials applied {apply_s * 1000:.0f} ms,"
                f" revoked {revoke_s * 1000:.0f} ms (median of {changes})"
            )
            ratios = f"{reference / apply_s:.1f} (apply), {reference / revoke_s:.1f} (revoke)"
            print(f"ratio reference / one live change: {ratios}", flush=True)

            # Live, from empty (every change rewrites the file: this grows as the square).
            bulk_names = names[:bulk_cabinets]
            live_dir = root / "live"
            live_dir.mkdir()
            write_accounts(AccountsTemplate().render(fixed, {}), live_dir / "dynsec.json")
            live = Broker(live_dir)
            await live.start()
            template = AccountsTemplate()
            try:
                async with live.control() as control:
                    t0 = time.perf_counter()
                    step, done = 500, 0
                    for start in range(0, len(bulk_names), step):
                        if time.perf_counter() - t0 > budget_s:
                            print(f"  live bulk: stopped at {start} accounts, past --bulk-budget-s")
                            break
                        commands = []
                        for name in bulk_names[start : start + step]:
                            (role,) = template.cabinet_roles(name)
                            (client,) = template.cabinet_clients(name, PasswordHash.of("x", iterations=1))
                            keys = ("username", "clientid", "roles", "textdescription")
                            account = {k: client[k] for k in keys}
                            commands += [
                                {"command": "createRole", **role},
                                {"command": "createClient", **account, "password": passwords[name]},
                            ]
                        await control.check(commands)
                        done = start + len(bulk_names[start : start + step])
                        took = time.perf_counter() - t0
                        print(f"  live bulk: {done} accounts after {took:.1f} s", flush=True)
                    bulk = time.perf_counter() - t0
                times = bulk / reference
                print(f"live from empty: {done} accounts in {bulk:.1f} s ({times:.1f} x the reference)")

            finally:
                await live.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cabinets", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument(
        "--bulk-cabinets", type=int, default=None, help="accounts made live from empty (default: --cabinets)"
    )
    parser.add_argument("--bulk-budget-s", type=float, default=1800, help="stop the live bulk load past this")
    args = parser.parse_args()
    asyncio.run(main(args.cabinets, args.changes, args.bulk_cabinets or args.cabinets, args.bulk_budget_s))
