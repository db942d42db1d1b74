"""Central keeps the broker's accounts: live changes, and a periodic sync that fixes drift.

    accounts = BrokerAccounts(store=store, address=..., admin_password=..., leadership=...)
    async with accounts:                             # the sync runs on the leader of "broker-accounts"
        await accounts.apply_credentials("cab-1", password, credential)   # new or re-issued: live
        await accounts.revoke("cab-1")               # the account goes, and its connection with it

Live changes go through the plugin's control topic as ``cityedge-admin``: a cabinet whose credentials
are issued gets its role and account (or its new password) at once, with no restart and no other
connection touched; a revoked one is deleted, which makes the plugin disconnect it at once. The
registry is written first and the broker second, so the sync (which reads the broker, then the
registry) never mistakes a cabinet being added for one to remove.

After a broker restart the plugin loads its file: the one it rewrote at its last change, or the one
rendered from the registry (``render_document``) before the start. The sync then deletes what the
registry no longer holds; the accounts only the file can bring back (no plaintext password here) are
logged as missing, naming the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from fastapi import FastAPI, Request

from central.broker_accounts.control import DynsecControl, DynsecError, DynsecRefused
from central.broker_accounts.sync import DesiredCabinet, SyncPlan, plan_sync
from central.broker_accounts.template import AccountsError, AccountsTemplate, PasswordHash
from central.leadership import Leadership, SoleLeader
from central.store.interfaces import RegistryStore
from central.store.rows import RegistryEntry
from central.times import now_ms
from protocols.fleet.broker_url import BrokerAddress

logger = logging.getLogger(__name__)

DEFAULT_SYNC_INTERVAL_S = 60.0
RETRY_S = 5.0


def desired_cabinets(
    entries: list[RegistryEntry], template: AccountsTemplate | None = None
) -> dict[str, DesiredCabinet]:
    """The live cabinets with a credential; an unreadable hash, or a cabinet named like one of the
    fixed accounts (``central``: it would take central's account), is logged and left out."""
    fixed = (template or AccountsTemplate()).fixed_names
    desired: dict[str, DesiredCabinet] = {}
    for entry in entries:
        if entry.revoked_ms is not None or entry.broker_hash is None:
            continue
        if entry.cabinet in fixed:
            logger.warning("registry entry %s: named like a fixed broker account; left out", entry.cabinet)
            continue
        try:
            desired[entry.cabinet] = DesiredCabinet(
                PasswordHash.from_json(entry.broker_hash), entry.updated_ms
            )
        except AccountsError as exc:
            logger.warning("registry entry %s: %s; its broker account is left out", entry.cabinet, exc)
    return desired


async def render_document(
    store: RegistryStore, fixed: Mapping[str, PasswordHash], template: AccountsTemplate | None = None
) -> dict[str, Any]:
    """The plugin's file from the registry: ``fixed`` (central's and the admin's hashes) and every
    live cabinet's hash. No plaintext password is needed or written."""
    template = template or AccountsTemplate()
    desired = desired_cabinets(await store.registry(), template)
    return template.render(fixed, {cabinet: want.credential for cabinet, want in desired.items()})


class BrokerAccounts:
    def __init__(
        self,
        *,
        store: RegistryStore,
        address: BrokerAddress,
        admin_password: str,
        template: AccountsTemplate | None = None,
        leadership: Leadership | None = None,
        sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
        timeout_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._address = address
        self._password = admin_password
        self.template = template or AccountsTemplate()
        self._leadership = leadership or SoleLeader("broker-accounts")
        self._interval_s = sync_interval_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._control: DynsecControl | None = None
        self._lock = asyncio.Lock()  # one command exchange at a time on the connection
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.last_plan: SyncPlan | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._sync_loop(), name="broker-accounts-sync")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._disconnect()

    async def _connected(self) -> DynsecControl:
        if self._control is not None and self._control.lost.is_set():
            await self._disconnect()  # the broker restarted, say: connect again
        if self._control is None:
            control = DynsecControl(self._address, password=self._password, timeout_s=self._timeout_s)
            await control.__aenter__()
            self._control = control
        return self._control

    async def _disconnect(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            await control.__aexit__(None, None, None)

    async def _run(self, commands: list[dict[str, Any]], *, ignore: tuple[str, ...] = ()) -> None:
        async with self._lock:
            try:
                await (await self._connected()).check(commands, ignore=ignore)
            except DynsecRefused:
                raise
            except DynsecError:
                await self._disconnect()  # the next call connects again
                raise

    async def apply_credentials(self, cabinet: str, password: str, credential: PasswordHash) -> None:
        """Give ``cabinet`` its account with ``password`` now (a new one, or its password changed,
        which disconnects it); ``credential`` is the registry's hash of the same password, whose tag
        the account carries. DynsecError when the broker cannot be told (the sync will say so)."""
        self._check_cabinet(cabinet)
        (role,) = self.template.cabinet_roles(cabinet)
        (client,) = self.template.cabinet_clients(cabinet, credential)
        account = {k: v for k, v in client.items() if k not in ("password", "salt", "iterations")}
        # Every change rewrites the plugin's whole file: one command each where one is enough.
        try:
            await self._run([{"command": "createRole", **role}])
        except DynsecRefused as exc:
            if "Role already exists" not in str(exc):
                raise
            await self._run([{"command": "modifyRole", "rolename": role["rolename"], "acls": role["acls"]}])
        modify = {"command": "modifyClient", **account, "password": password, "groups": []}
        try:
            await self._run([modify])
        except DynsecRefused as exc:
            if "Client not found" not in str(exc):
                raise
            await self._run([{"command": "createClient", **account, "password": password}])
        logger.info("broker account of %s: credentials applied", cabinet)

    async def revoke(self, cabinet: str) -> None:
        """Delete ``cabinet``'s account and role: the plugin disconnects it at once."""
        self._check_cabinet(cabinet)
        (role,) = self.template.cabinet_roles(cabinet)
        # Two messages: the plugin disconnects the cabinet once the message deleting its account is
        # done, and each change rewrites its whole file, so the role goes after the disconnect.
        await self._run([{"command": "deleteClient", "username": cabinet}], ignore=("Client not found",))
        await self._run([{"command": "deleteRole", "rolename": role["rolename"]}], ignore=("Role not found",))
        logger.info("broker account of %s: deleted (revoked)", cabinet)

    def _check_cabinet(self, cabinet: str) -> None:
        if cabinet in self.template.fixed_names:
            raise DynsecRefused(f"{cabinet!r} is a fixed broker account, not a cabinet: its account is kept")

    async def plan(self, *, grace_ms: int = 30_000) -> SyncPlan:
        """What the sync would change now (the broker is read first, then the registry)."""
        async with self._lock:
            try:
                control = await self._connected()
                clients = await control.list_clients()
                roles = await control.list_roles()
                default_access = await control.default_acl_access()
            except DynsecError:
                await self._disconnect()
                raise
        desired = desired_cabinets(await self._store.registry(), self.template)
        return plan_sync(
            self.template,
            clients=clients,
            roles=roles,
            default_access=default_access,
            desired=desired,
            now_ms=self._clock(),
            grace_ms=grace_ms,
        )

    async def sync_once(self, *, grace_ms: int = 30_000) -> SyncPlan:
        """Bring the broker's accounts to the registry's, as far as the plugin allows (module doc)."""
        plan = await self.plan(grace_ms=grace_ms)
        if plan.commands:
            await self._run(plan.commands, ignore=("Client not found", "Role not found"))
        self.last_plan = plan
        if plan.commands or plan.missing:
            logger.warning("broker accounts synced with the registry: %s", plan.summary())
        if plan.missing:
            shown = ", ".join(plan.missing[:10]) + (" ..." if len(plan.missing) > 10 else "")
            logger.warning(
                "%d registered cabinets have no broker account (%s): render the broker's file with"
                " `cityedge central broker-accounts render` and restart the broker, or issue them new"
                " credentials",
                len(plan.missing),
                shown,
            )
        return plan

    def wake(self) -> None:
        """Sync now rather than at the next interval."""
        self._wake.set()

    async def _sync_loop(self) -> None:
        while True:
            if self._leadership.is_leader():
                try:
                    await self.sync_once()
                except DynsecError as exc:
                    logger.warning("broker accounts: %s; trying again in %g s", exc, RETRY_S)
                    await asyncio.sleep(RETRY_S)
                    continue
                except Exception:  # the store is down, say: the next round tries again
                    logger.exception("broker accounts: the sync failed")
            # The next round: at the interval, when woken, or when the broker connection drops (a
            # restarted broker loaded its file: what the registry changed meanwhile is applied then).
            waits = [asyncio.ensure_future(self._wake.wait())]
            if self._control is not None:
                waits.append(asyncio.ensure_future(self._control.lost.wait()))
            try:
                await asyncio.wait(waits, timeout=self._interval_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            self._wake.clear()


_STATE = "broker_accounts"


def install_accounts(app: FastAPI, accounts: BrokerAccounts | None) -> None:
    """Make ``accounts`` what the registry's routes call (``accounts_of``); None: not kept here."""
    setattr(app.state, _STATE, accounts)


def accounts_of(request: Request) -> BrokerAccounts | None:
    """The broker accounts a route changes live, or None when central does not keep them."""
    found = getattr(request.app.state, _STATE, None)
    return found if isinstance(found, BrokerAccounts) else None


# What the registry's routes tell their caller about the broker, in this response header:
#   applied      the broker has the change now (the account made, or deleted and disconnected)
#   pending      the broker could not be told; the sync applies what it can when it is back (a
#                revocation), and logs what needs the rendered file and a restart (new credentials)
#   unmanaged    this central does not keep the broker's accounts ([broker_accounts] not configured)
BROKER_HEADER = "X-Cityedge-Broker-Account"


async def apply_issued(request: Request, cabinet: str, password: str, broker_hash: str) -> str:
    """Give the broker the credentials just stored in the registry; the header's value."""
    accounts = accounts_of(request)
    if accounts is None:
        return "unmanaged"
    try:
        await accounts.apply_credentials(cabinet, password, PasswordHash.from_json(broker_hash))
    except DynsecError as exc:
        logger.warning("broker account of %s not applied: %s", cabinet, exc)
        accounts.wake()
        return "pending"
    return "applied"


async def apply_revoked(request: Request, cabinet: str) -> str:
    """Delete the revoked cabinet's account now (the plugin disconnects it); the header's value."""
    accounts = accounts_of(request)
    if accounts is None:
        return "unmanaged"
    try:
        await accounts.revoke(cabinet)
    except DynsecError as exc:
        logger.warning("broker account of revoked %s not deleted yet: %s", cabinet, exc)
        accounts.wake()
        return "pending"
    return "applied"
