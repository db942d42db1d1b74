"""``cityedge central config push``: send a cabinet its new agent config through central's API (an
admin's token), then follow the command until the cabinet's result: executed (the config runs, and
its hash is in the birth) or failed (``rolled back: <why>``) or rejected (why)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from edge_agent.journal import escaped
from protocols.fleet.limits import MAX_COMMAND_BYTES

REQUEST_TIMEOUT_S = 10.0
POLL_S = 0.5
# Beyond the trial itself: the restarts, the broker, and the result's way back.
WAIT_MARGIN_S = 60.0
FINAL = ("executed", "failed", "expired", "rejected")


class PushError(Exception):
    """The config could not be sent (the API refused it, or cannot be reached): the message says why."""


@dataclass(frozen=True, slots=True)
class Pushed:
    id: str
    status: str
    reason: str | None
    sha256: str


def config_text(data: bytes, shown: str) -> str:
    """The file's text as the command carries it (its bytes exactly, so the cabinet's hash is theirs)."""
    if len(data) > MAX_COMMAND_BYTES:
        raise PushError(f"{shown} is {len(data)} bytes: a command carries at most {MAX_COMMAND_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PushError(f"{shown} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


async def push_config(
    *,
    api: str,
    token: str,
    cabinet: str,
    text: str,
    confirm_within_s: int,
    wait: bool,
    emit: Callable[[str], None],
) -> Pushed:
    digest = hashlib.sha256(text.encode()).hexdigest()
    body = {
        "target": {"cabinet": cabinet},
        "action": "set_config",
        "args": {"config": text, "sha256": digest, "confirm_within_s": confirm_within_s},
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=f"{api.rstrip('/')}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT_S
    ) as client:
        answer = await _call(client.post("/commands", json=body), api)
        if answer.status_code != 201:
            raise PushError(f"central refused the config ({answer.status_code}): {_detail(answer)}")
        command = answer.json()
        emit(f"command {command['id']}: config {digest[:16]} sent to {cabinet}")
        # The command's not_after (5 min) bounds its delivery; once accepted it stays open for the trial.
        deadline = time.monotonic() + confirm_within_s + WAIT_MARGIN_S
        while wait and command.get("status") not in FINAL and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            answer = await _call(client.get(f"/commands/{command['id']}"), api)
            if answer.status_code == 200:
                command = answer.json()
    # The reason is the cabinet's text (a stolen cabinet's, maybe): for a terminal, without control codes.
    reason = command.get("reason")
    shown = escaped(str(reason)) if reason is not None else None
    return Pushed(escaped(str(command["id"])), escaped(str(command.get("status"))), shown, digest)


async def _call(request: Any, api: str) -> httpx.Response:
    try:
        response: httpx.Response = await request
    except httpx.HTTPError as exc:
        raise PushError(f"central's API at {api} cannot be reached: {exc}") from exc
    return response


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail")
    except ValueError:
        return answer.text[:500]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail[:5])
    return str(detail)[:500]
