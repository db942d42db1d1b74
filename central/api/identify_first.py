"""The caller is identified before its request body is read: an anonymous client costs a lookup.

FastAPI reads and parses a body before it runs the dependencies that check the token, so without this
anyone could make central parse 2 MiB of JSON per request, on the event loop that also ingests. Here
a request under the API prefix that carries a body is answered 401 at once when its token is missing,
unknown or revoked; a known one is kept in the request's state, where ``RequireRole`` finds it (and
still decides the role).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from central.api.auth import CREATE_HINT, IDENTITY_STATE
from central.auth import Tokens

_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class IdentifyFirst:
    def __init__(self, app: ASGIApp, *, tokens: Tokens, prefix: str) -> None:
        self._app = app
        self._tokens = tokens
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _WITH_BODY
            or not str(scope["path"]).startswith(self._prefix)
        ):
            await self._app(scope, receive, send)
            return
        token = _bearer(scope)
        identity = await self._tokens.identify(token) if token is not None else None
        if identity is None:
            await _unauthorized(send, token is None)
            return
        scope.setdefault("state", {})[IDENTITY_STATE] = identity
        await self._app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            token = credentials.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _unauthorized(send: Send, missing: bool) -> None:
    if missing:
        detail = f"this needs an API token: send 'Authorization: Bearer <token>'; {CREATE_HINT}"
        challenge = b"Bearer"
    else:
        detail = "the API token is unknown or revoked: ask an admin for a new one"
        challenge = b'Bearer error="invalid_token"'
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge),
        (b"connection", b"close"),  # the unread body is not ours to drain
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
