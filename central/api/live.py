"""GET /api/v1/stream: what changes, as server-sent events, for the operator page.

The page reads it with fetch(), so the token travels in the Authorization header like any request
(EventSource cannot send one, and a token in a URL ends up in logs). Events::

    event: hello      {"name", "role", "now_ms"}         once; load the state, then apply what follows
    event: cabinets   {"cabinets": [{id, online, last_seen_ms, backlog, agent_version}]}
    event: commands   {"commands": [a command as GET /commands/{id} answers it]}
    event: episodes   {"episodes": [{id, cabinet, device, alarm, severity, state, ... updated_ms}]}
    event: registry   {"cabinets": [{id, town, label, latitude, longitude, revoked}]}   registered, moved
    event: resync     {}       too much changed or the reader fell behind: reload everything
    event: bye        {"reason"}   the server ends the stream; reconnect (after the stream's cap)
    : keep-alive      a comment every 15 s, so that proxies and the page know the line is up

A request must accept ``text/event-stream`` (406 otherwise): a client that did not ask for a stream
(a generic API client walking every route) gets a quick answer instead of an hour-long body.

The changes come from the store (``central.live.LiveFeed``), so several workers can serve the page.
Bounds: ``MAX_LISTENERS`` streams per worker and ``MAX_STREAMS_PER_TOKEN`` per token, so that one
token cannot take every place (then 503 with Retry-After), a queue per stream (a slow
reader gets "resync", not unbounded memory), one hour per stream, and ``SEND_TIMEOUT_S`` for each write
(a reader that stops reading, its TCP window shut, would otherwise hold its place for ever). The
token is checked again every ``HEARTBEAT_S``, busy or idle: a revoked token's stream ends within
about that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from central.api.auth import Viewer
from central.api.commands import command_out
from central.api.deps import services_of
from central.api.models import ErrorBody
from central.auth import Identity
from central.errors import StoreError
from central.live.feed import FeedFull, FeedStore, LiveFeed, Update
from central.store.rows import AlarmEpisode, CabinetRow, RegistryEntry

EVENT_STREAM = "text/event-stream"
HEARTBEAT_S = 15.0
MAX_STREAM_S = 3600.0
SEND_TIMEOUT_S = 30.0
MAX_STREAMS_PER_TOKEN = 10
_STATE = "live_feed"
logger = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


def _frame(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _encoder.encode(data) + b"\n\n"


def _cabinet(row: CabinetRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "online": row.online,
        "last_seen_ms": row.last_seen_ms,
        "backlog": row.backlog,
        "agent_version": row.version,
    }


def _registered(entry: RegistryEntry) -> dict[str, Any]:
    # Where it stands and what it is called; never its broker hash.
    return {
        "id": entry.cabinet,
        "town": entry.town,
        "label": entry.label,
        "latitude": entry.latitude,
        "longitude": entry.longitude,
        "registered": True,
        "revoked": entry.revoked_ms is not None,
    }


def _episode(e: AlarmEpisode) -> dict[str, Any]:
    return {
        "id": e.id,
        "cabinet": e.cabinet,
        "device": e.device,
        "alarm": e.alarm,
        "severity": e.severity,
        "message": e.message,
        "state": e.state,
        "raised_ms": e.raised_ms,
        "cleared_ms": e.cleared_ms,
        "acked_ms": e.acked_ms,
        "acked_by": e.acked_by,
        "assigned_to": e.assigned_to,
        "updated_ms": e.updated_ms,
    }


def encode_update(update: Update) -> bytes:
    """The SSE frames of one update (encoded once, sent to every listener)."""
    if update.resync:
        return _frame("resync", {})
    frames = b""
    if update.cabinets:
        frames += _frame("cabinets", {"cabinets": [_cabinet(r) for r in update.cabinets]})
    if update.commands:
        # Encoded once for every listener: a set_config's text is withheld (admins read it by its id).
        commands = [command_out(r, config_text=False).model_dump(mode="json") for r in update.commands]
        frames += _frame("commands", {"commands": commands})
    if update.episodes:
        frames += _frame("episodes", {"episodes": [_episode(e) for e in update.episodes]})
    if update.registry:
        frames += _frame("registry", {"cabinets": [_registered(r) for r in update.registry]})
    return frames


def install(app: FastAPI, store: FeedStore, clock: Callable[[], int]) -> LiveFeed:
    feed = LiveFeed(store, encode=encode_update, clock=clock)
    setattr(app.state, _STATE, feed)
    return feed


def feed_of(request: Request) -> LiveFeed:
    return feed_of_app(request.app)


def feed_of_app(app: FastAPI) -> LiveFeed:
    found = getattr(app.state, _STATE, None)
    if not isinstance(found, LiveFeed):
        raise RuntimeError("the live feed is not installed: build the app with create_app")
    return found


router = APIRouter(tags=["live"])

_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events, until the cap"},
    406: {"model": ErrorBody, "description": "the request does not accept text/event-stream"},
    503: {"model": ErrorBody, "description": "this worker streams to as many listeners as it may"},
}


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses=_STREAM_RESPONSES,
    summary="Live changes (cabinets, commands, alarm episodes) as server-sent events",
)
async def stream(request: Request, identity: Viewer) -> StreamingResponse:
    if EVENT_STREAM not in request.headers.get("accept", ""):
        raise HTTPException(
            406, f"this route is a stream of server-sent events: send 'Accept: {EVENT_STREAM}'"
        )
    feed = feed_of(request)
    if feed.listeners >= feed.max_listeners:
        raise HTTPException(503, str(FeedFull(feed.max_listeners)), headers={"Retry-After": "30"})
    if feed.listeners_of(identity.name) >= MAX_STREAMS_PER_TOKEN:
        raise HTTPException(
            503,
            f"token {identity.name!r} already has {MAX_STREAMS_PER_TOKEN} streams open on this worker:"
            " close a page, or give each screen a token of its own",
            headers={"Retry-After": "30"},
        )
    token = (request.headers.get("authorization") or "").partition(" ")[2].strip()
    tokens = services_of(request).tokens

    async def still_valid() -> bool:
        try:
            return await tokens.identify(token) is not None
        except StoreError:
            return True  # the store is away: the feed says nothing new meanwhile anyway

    return _BoundedStream(
        _events(feed, identity, still_valid, services_of(request).clock),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(
    feed: LiveFeed,
    identity: Identity,
    still_valid: Callable[[], Any],
    clock: Callable[[], int],
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + MAX_STREAM_S
    check_at = loop.time() + HEARTBEAT_S
    try:
        async with feed.listen(identity.name, per_owner=MAX_STREAMS_PER_TOKEN) as listener:
            yield _frame("hello", {"name": identity.name, "role": identity.role.value, "now_ms": clock()})
            while (left := ends - loop.time()) > 0:
                try:
                    async with asyncio.timeout(min(HEARTBEAT_S, left)):
                        frames = await listener.queue.get()
                except TimeoutError:
                    frames = b": keep-alive\n\n"
                # On a clock, not only when idle: a busy fleet changes something every poll.
                if loop.time() >= check_at:
                    check_at = loop.time() + HEARTBEAT_S
                    if not await still_valid():
                        yield _frame("bye", {"reason": "the token was revoked"})
                        return
                yield frames
            yield _frame("bye", {"reason": f"a stream lasts at most {MAX_STREAM_S:g} s: reconnect"})
    except FeedFull as exc:
        yield _frame("bye", {"reason": str(exc)})


class _BoundedStream(StreamingResponse):
    """A stream whose every write must be taken within ``SEND_TIMEOUT_S``: else it ends, its listener
    gone (the server closes the connection, the page reconnects)."""

    async def stream_response(self, send: Send) -> None:
        async def bounded(message: Message) -> None:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await send(message)

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            logger.info("live stream: a reader took nothing for %g s: its stream ends", SEND_TIMEOUT_S)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
