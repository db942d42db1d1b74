"""The audit log: every state-changing request to /api/v1, whoever sent it and however it ended.

``AuditLog`` is an ASGI middleware. For each POST, PUT, PATCH or DELETE under the API prefix it
stores who (the token's name and role, as ``RequireRole`` found them; none when the request was
refused before a token was accepted), what (method, path and the summary a handler gave with
``summarize``), when, from where (the client's address) and the answer's status, in the store,
BEFORE the answer goes out: a client that heard "201" can count on the audit entry being there.
Admins read it at GET /api/v1/audit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.api.auth import IDENTITY_STATE, require_admin
from central.api.deps import StoreDep
from central.api.params import parse_time
from central.auth import Identity
from central.errors import StoreError
from central.store import Store
from central.store.auth_rows import AuditEntry, AuditRow

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SUMMARY_STATE = "audit_summary"
MAX_TEXT = 512
MAX_AUDIT_LIMIT = 10_000


def summarize(request: Request, summary: str) -> None:
    """Say what this request did, in a few words, for its audit entry."""
    setattr(request.state, SUMMARY_STATE, summary)


def _text(value: str) -> str:
    # Paths and summaries carry what a client sent: keep them short and storable as UTF-8.
    safe = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= MAX_TEXT else safe[: MAX_TEXT - 1] + "…"


class AuditLog:
    """ASGI middleware that stores one ``AuditEntry`` per state-changing request under ``prefix``."""

    def __init__(self, app: ASGIApp, *, store: Store, clock: Callable[[], int], prefix: str) -> None:
        self.app = app
        self._store = store
        self._clock = clock
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or not scope["path"].startswith(self._prefix)
        ):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        recorded = False

        async def audited_send(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                await self._record(scope, state, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        except Exception:
            if not recorded:
                await self._record(scope, state, 500)
            raise

    async def _record(self, scope: Scope, state: dict[str, Any], status: int) -> None:
        identity = state.get(IDENTITY_STATE)
        who = identity if isinstance(identity, Identity) else None
        client = scope.get("client")
        entry = AuditEntry(
            ts_ms=self._clock(),
            who=who.name if who else None,
            role=who.role.value if who else None,
            method=scope["method"],
            path=_text(scope["path"]),
            summary=_text(str(state.get(SUMMARY_STATE, ""))),
            client=_text(f"{client[0]}:{client[1]}") if client else None,
            status=status,
        )
        try:
            await self._store.add_audit(entry)
        except StoreError as exc:
            # The change itself is done (or refused); losing its trace is an error for ops to see.
            logger.error(
                "audit entry of %s %s (status %d) not stored: %s", entry.method, entry.path, status, exc
            )


class AuditEntryOut(BaseModel):
    id: int
    ts_ms: int
    who: str | None = Field(description="the token's name; null when no token was accepted")
    role: str | None
    method: str
    path: str
    summary: str = Field(description="what the request asked, e.g. the command's id, target and action")
    client: str | None = Field(description="the client's address and port, as the server saw them")
    status: int = Field(description="the HTTP status of the answer")


class AuditPage(BaseModel):
    entries: list[AuditEntryOut] = Field(description="newest first")


def _out(row: AuditRow) -> AuditEntryOut:
    e = row.entry
    return AuditEntryOut(
        id=row.id,
        ts_ms=e.ts_ms,
        who=e.who,
        role=e.role,
        method=e.method,
        path=e.path,
        summary=e.summary,
        client=e.client,
        status=e.status,
    )


# GET /audit, behind the admin role.
router = APIRouter(tags=["audit"], dependencies=[Security(require_admin)])


@router.get("/audit", response_model=AuditPage, summary="The audit log of state-changing requests")
async def audit(
    since: Annotated[str | None, Query(description="only ts >= since: ms since 1970 UTC or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = 100,
    *,
    store: StoreDep,
) -> AuditPage:
    since_ms = parse_time("since", since) if since is not None else None
    return AuditPage(entries=[_out(row) for row in await store.audit(since_ms=since_ms, limit=limit)])
