"""A client of Mosquitto's dynamic-security plugin: commands on ``$CONTROL/dynamic-security/v1``.

    async with DynsecControl(address, password=...) as control:   # logs in as cityedge-admin
        clients = await control.list_clients()
        await control.execute([{"command": "deleteClient", "username": "cab-1"}])

A command message is ``{"commands": [...]}``; the plugin answers on ``.../v1/response`` with
``{"responses": [...]}``, each carrying the ``correlationData`` of its command. Mosquitto 2.0 publishes
every answer to every subscriber of the response topic, so the ids here start with a random prefix
of this connection and answers to others are ignored. Every call has a deadline (``timeout_s``).

What the plugin takes matters to the design: ``createClient``, ``modifyClient`` and
``setClientPassword`` take a *plaintext* password (the plugin hashes it itself; in 2.0.11 and in the
development branch alike); only its file holds hashes. And every change rewrites that whole file.

No password is ever logged or put in an error: errors name the command and the username only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiomqtt

from protocols.fleet.broker_url import SOCKET_OPTIONS, BrokerAddress

logger = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
ADMIN_USERNAME = "cityedge-admin"
DEFAULT_TIMEOUT_S = 10.0
COMMANDS_PER_MESSAGE = 100  # each answer names its command; a bounded message stays well under the caps
PAGE = 1000  # clients or roles per list request
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class DynsecError(RuntimeError):
    """The plugin refused a command, or could not be reached; the message says which and why."""


class DynsecRefused(DynsecError):
    """The plugin answered, and refused the command (the connection is fine)."""


@dataclass(frozen=True, slots=True)
class Reply:
    command: str
    error: str | None
    data: Mapping[str, Any]


def _subject(command: Mapping[str, Any]) -> str:
    """What a command is about, for an error: its username or role, never its password."""
    name = command.get("username") or command.get("rolename") or ""
    return f"{command['command']} {name}".strip()


class DynsecControl:
    """One admin connection; ``execute`` sends commands and waits for their answers."""

    def __init__(
        self,
        address: BrokerAddress,
        *,
        password: str,
        username: str = ADMIN_USERNAME,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._prefix = secrets.token_hex(6)
        self._sequence = 0
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._client = aiomqtt.Client(
            address.host,
            address.port,
            username=username,
            password=password,
            identifier=f"{username}-{self._prefix}",
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=timeout_s,
            keepalive=30,
            tls_context=ssl.create_default_context() if address.tls else None,
            socket_options=SOCKET_OPTIONS,
        )
        self._reader: asyncio.Task[None] | None = None
        self._username = username
        self.lost = asyncio.Event()  # set when the connection ends

    async def __aenter__(self) -> Self:
        where = f"broker {self.address.host}:{self.address.port}"
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.__aenter__()
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            raise DynsecError(
                f"{where}: cannot log in as {self._username} ({exc or 'no answer'}): check the"
                " broker_accounts admin password file and that the broker runs the dynamic-security plugin"
            ) from None
        try:
            (code,) = await self._client.subscribe(RESPONSE_TOPIC, qos=1)
            granted = code if isinstance(code, int) else code.value
            if granted >= 0x80:
                raise DynsecError(
                    f"{where}: {self._username} may not subscribe to {RESPONSE_TOPIC}: its role must allow"
                    " $CONTROL/dynamic-security/# (config/broker/dynamic-security.template.json)"
                )
        except BaseException:
            await self._client.__aexit__(None, None, None)
            raise
        self._reader = asyncio.create_task(self._read(), name="dynsec-responses")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_pending("the connection was closed")
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DynsecError(f"broker {self.address.host}:{self.address.port}: {why}"))
        self._pending.clear()

    async def _read(self) -> None:
        try:
            async for message in self._client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray) and len(payload) <= MAX_RESPONSE_BYTES:
                    self._answer(bytes(payload))
        except aiomqtt.MqttError:
            pass
        finally:
            self.lost.set()
        self._fail_pending("the connection to the broker was lost")

    def _answer(self, payload: bytes) -> None:
        try:
            responses = json.loads(payload)["responses"]
        except (ValueError, KeyError, TypeError):
            logger.warning("dynamic-security: an answer that is not the plugin's JSON was ignored")
            return
        for response in responses if isinstance(responses, list) else []:
            if not isinstance(response, dict):
                continue
            future = self._pending.pop(str(response.get("correlationData", "")), None)
            if future is None or future.done():
                continue  # another admin's answer (Mosquitto 2.0 sends every answer to all)
            error, data = response.get("error"), response.get("data")
            future.set_result(
                Reply(
                    str(response.get("command", "")),
                    None if error is None else str(error),
                    data if isinstance(data, dict) else {},
                )
            )

    async def execute(self, commands: Sequence[Mapping[str, Any]]) -> list[Reply]:
        """Send ``commands`` (in messages of up to COMMANDS_PER_MESSAGE) and return their answers in
        order; DynsecError when one does not come within the deadline."""
        replies: list[Reply] = []
        for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
            replies += await self._send(commands[start : start + COMMANDS_PER_MESSAGE])
        return replies

    async def _send(self, commands: Sequence[Mapping[str, Any]]) -> list[Reply]:
        loop = asyncio.get_running_loop()
        batch: list[dict[str, Any]] = []
        futures: list[asyncio.Future[Reply]] = []
        for command in commands:
            self._sequence += 1
            correlation = f"{self._prefix}-{self._sequence}"
            future: asyncio.Future[Reply] = loop.create_future()
            self._pending[correlation] = future
            futures.append(future)
            batch.append({**command, "correlationData": correlation})
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            more = f" (and {len(commands) - 1} more)" if len(commands) > 1 else ""
            raise DynsecError(
                f"broker {self.address.host}:{self.address.port}: no answer to {_subject(commands[0])}"
                f"{more} within {self.timeout_s:g} s from the dynamic-security plugin: is it loaded"
                " (plugin in the broker's config)?"
            ) from None
        except aiomqtt.MqttError as exc:
            raise DynsecError(f"broker {self.address.host}:{self.address.port}: {exc}") from None
        finally:
            for future in futures:
                future.cancel()  # no-op for the answered ones
            for item in batch:
                self._pending.pop(item["correlationData"], None)

    async def check(self, commands: Sequence[Mapping[str, Any]], *, ignore: Sequence[str] = ()) -> None:
        """Execute ``commands``; DynsecError naming the first refused one (except errors in ``ignore``)."""
        for command, reply in zip(commands, await self.execute(commands), strict=True):
            if reply.error is not None and reply.error not in ignore:
                raise DynsecRefused(f"dynamic-security refused {_subject(command)}: {reply.error}")

    async def _list(self, command: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            (reply,) = await self.execute(
                [{"command": command, "verbose": True, "count": PAGE, "offset": len(items)}]
            )
            if reply.error is not None:
                raise DynsecError(f"dynamic-security refused {command}: {reply.error}")
            page = reply.data.get(key)
            total = reply.data.get("totalCount")
            if not isinstance(page, list) or not isinstance(total, int):
                raise DynsecError(f"dynamic-security answered {command} without {key} and totalCount")
            items += [item for item in page if isinstance(item, dict)]
            if not page or len(items) >= total:
                return items

    async def list_clients(self) -> list[dict[str, Any]]:
        """Every client, verbose: username, clientid, textdescription, disabled, roles, groups."""
        return await self._list("listClients", "clients")

    async def list_roles(self) -> list[dict[str, Any]]:
        """Every role, verbose: rolename and its ACLs."""
        return await self._list("listRoles", "roles")

    async def default_acl_access(self) -> dict[str, bool]:
        (reply,) = await self.execute([{"command": "getDefaultACLAccess"}])
        if reply.error is not None:
            raise DynsecError(f"dynamic-security refused getDefaultACLAccess: {reply.error}")
        entries = reply.data.get("acls", [])
        return {
            str(e["acltype"]): bool(e["allow"]) for e in entries if isinstance(e, dict) and "acltype" in e
        }
