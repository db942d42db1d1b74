"""How the API answers central's request errors: 404 for an unknown thing, 422 for a wrong field,
409 for a request the thing it acts on cannot take now.

The 422 body has the shape of FastAPI's own (``{"detail": [{"loc": [...], "msg": ..., ...}]}``), so a
client parses one format whichever layer found the mistake. FastAPI's own 422s are answered here
too: an error echoes what the client sent (``input``), and that may be anything a client can send
(a float that JSON cannot carry, text that UTF-8 cannot encode, megabytes): ``echo`` makes it
something that can always be sent back, so that a bad request never becomes a 500.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from central.api.json_route import json_error_of
from central.errors import Conflict, InvalidRequest, UnknownTarget

MAX_ECHO_CHARS = 1000
MAX_ECHO_ITEMS = 100
MAX_ECHO_DEPTH = 8


def unknown_cabinet(cabinet: str) -> UnknownTarget:
    return UnknownTarget(
        "cabinet",
        cabinet,
        "is unknown: it has sent neither a status nor data",
        "GET /api/v1/cabinets lists the known cabinets",
    )


def echo(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can carry it: finite numbers, UTF-8 text, bounded in size and depth."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + "…"
    if depth >= MAX_ECHO_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_ECHO_ITEMS]
        return {str(echo(str(k))): echo(v, depth + 1) for k, v in items}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes | bytearray):
        return [echo(v, depth + 1) for v in list(value)[:MAX_ECHO_ITEMS]]
    if isinstance(value, bytes | bytearray):
        return echo(bytes(value[: MAX_ECHO_CHARS + 1]).decode("utf-8", "backslashreplace"))
    return echo(str(value))


def _errors_body(errors: Sequence[Any]) -> dict[str, Any]:
    return {"detail": [echo(error) for error in errors]}


async def _unknown(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": echo(str(exc))})


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": echo(str(exc))})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors if isinstance(exc, InvalidRequest) else []
    return JSONResponse(status_code=422, content=_errors_body(errors))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    refused = json_error_of(request)
    if refused is not None:
        # The body was not JSON we accept: that, not the shape of the placeholder, is the error.
        errors: Sequence[Any] = [
            {
                "type": "json_invalid",
                "loc": ("body", refused.pos),
                "msg": f"JSON decode error: {refused.msg}",
                "input": {},
                "ctx": {"error": refused.msg},
            }
        ]
    else:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content=_errors_body(errors))


def install(app: FastAPI) -> None:
    app.add_exception_handler(UnknownTarget, _unknown)
    app.add_exception_handler(InvalidRequest, _invalid)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(RequestValidationError, _validation)
