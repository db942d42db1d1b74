"""The HTTP auth hook a cluster broker (EMQX, VerneMQ) asks instead of holding the accounts itself.

    POST /broker/auth   {"username": ..., "password": ..., "clientid": ...}  -> {"result": "allow"|"deny"}
    POST /broker/authz  {"username": ..., "topic": ..., "action": "publish"|"subscribe"}  -> the same

The JSON is EMQX's HTTP authenticator and authorizer shape (its request templates fill the fields
with ``${username}``, ``${password}``, ``${clientid}``, ``${topic}``, ``${action}``). Rules:

- auth: a registered, unrevoked cabinet whose client id is its username, with the password whose
  hash the registry holds (PBKDF2-SHA512, constant-time compare); ``central`` with central's own
  broker password (any client id: its workers each have their own). ``cityedge-admin`` is
  Mosquitto's alone and never allowed here. Anything else: deny.
- authz: the template's ACLs (``central.broker_accounts.rules``), for an account that is live: a
  revoked cabinet is denied at its next request (a broker caching answers keeps them for its TTL).

The caller proves it is the broker with a shared secret in the ``X-Cityedge-Hook-Secret`` header
(compared in constant time), not an API token. Each source address is rate-limited (429: EMQX then
treats the answer as "ignore", so set its no-match to deny). No password or body is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeVar

import msgspec
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from central.broker_accounts.rules import allowed
from central.broker_accounts.template import AccountsError, AccountsTemplate, PasswordHash
from central.store.interfaces import RegistryStore
from protocols.fleet.topics import is_valid_cabinet_id

SECRET_HEADER = "x-cityedge-hook-secret"
CENTRAL_USERNAME = "central"
MAX_TRACKED_SOURCES = 10_000
MAX_BODY_BYTES = 80 * 1024
_DUMMY = PasswordHash.of("not a password of anyone")  # equal work for unknown users

Text = Annotated[str, msgspec.Meta(max_length=1024)]


class AuthRequest(msgspec.Struct, frozen=True):
    username: Text = ""
    password: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    clientid: Text = ""


class AuthzRequest(msgspec.Struct, frozen=True):
    username: Text = ""
    topic: Annotated[str, msgspec.Meta(max_length=65_535)] = ""
    action: Annotated[str, msgspec.Meta(max_length=32)] = ""
    clientid: Text = ""


_R = TypeVar("_R", AuthRequest, AuthzRequest)


class RateLimiter:
    """A token bucket per source address; the least recently seen sources are forgotten past a cap."""

    def __init__(self, rate_per_s: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate_per_s, float(burst), clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def admit(self, source: str) -> bool:
        now = self._clock()
        tokens, then = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        admitted = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if admitted else tokens, now)
        while len(self._buckets) > MAX_TRACKED_SOURCES:
            self._buckets.popitem(last=False)
        return admitted


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@dataclass
class BrokerHook:
    store: RegistryStore
    secret: str
    central_password: str | None
    template: AccountsTemplate = field(default_factory=AccountsTemplate)
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(1000.0, 10_000))
    denied: int = 0
    allowed: int = 0

    async def authenticate(self, request: AuthRequest) -> bool:
        if request.username == CENTRAL_USERNAME:
            return self.central_password is not None and hmac.compare_digest(
                _digest(request.password), _digest(self.central_password)
            )
        credential = await self._live_credential(request.username)
        if credential is None or request.clientid != request.username:
            credential = _DUMMY  # the same work for an unknown user: no hint in the timing
            await asyncio.to_thread(credential.verify, request.password)
            return False
        # PBKDF2 releases the GIL: off the event loop, ingest goes on while a fleet logs in.
        return await asyncio.to_thread(credential.verify, request.password)

    async def authorize(self, request: AuthzRequest) -> bool:
        if request.action not in ("publish", "subscribe"):
            return False
        action: Literal["publish", "subscribe"] = "publish" if request.action == "publish" else "subscribe"
        if request.username != CENTRAL_USERNAME and await self._live_credential(request.username) is None:
            return False
        return allowed(self.template, request.username, request.topic, action)

    async def _live_credential(self, username: str) -> PasswordHash | None:
        if username in self.template.fixed_names or not is_valid_cabinet_id(username):
            return None
        entry = await self.store.registry_entry(username)
        if entry is None or entry.revoked_ms is not None or entry.broker_hash is None:
            return None
        try:
            return PasswordHash.from_json(entry.broker_hash)
        except AccountsError:
            return None

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/broker", tags=["broker hook"], include_in_schema=False)

        @router.post("/auth")
        async def auth(request: Request) -> JSONResponse:
            return await self._answer(request, AuthRequest, self.authenticate)

        @router.post("/authz")
        async def authz(request: Request) -> JSONResponse:
            return await self._answer(request, AuthzRequest, self.authorize)

        return router

    async def _answer(
        self, request: Request, kind: type[_R], decide: Callable[[_R], Awaitable[bool]]
    ) -> JSONResponse:
        source = request.client.host if request.client is not None else "unknown"
        if not self.limiter.admit(source):
            return JSONResponse({"detail": "too many requests from this address"}, 429, {"Retry-After": "1"})
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(_digest(given), _digest(self.secret)):
            return JSONResponse({"detail": f"the {SECRET_HEADER} header is missing or wrong"}, 401)
        body = await request.body()
        try:
            if len(body) > MAX_BODY_BYTES:
                raise msgspec.ValidationError("too large")
            parsed = msgspec.json.decode(body, type=kind)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.denied += 1  # never echoed: the body holds a password
            return JSONResponse({"result": "deny", "detail": "the body is not the expected JSON object"}, 400)
        verdict = await decide(parsed)
        if verdict:
            self.allowed += 1
        else:
            self.denied += 1
        return JSONResponse({"result": "allow" if verdict else "deny"})


def install_hook(app: FastAPI, hook: BrokerHook) -> None:
    app.include_router(hook.router())
