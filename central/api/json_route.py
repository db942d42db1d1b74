"""Request bodies are JSON as RFC 8259 has it, and text that can be stored: nothing else gets in.

Python's json module accepts NaN, Infinity and 1e999 (read as infinity), and turns a lone ``\\ud800``
escape into a string that cannot be encoded as UTF-8: none of them can be stored, sent to a cabinet
or even echoed back in an error. ``StrictJsonRoute`` parses bodies with ``parse_json``, which refuses
them (and integers beyond 64 bits) as JSON errors, answered with a 422 naming the place, once the
request's token has been checked.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_INT_BITS = 63
JSON_ERROR_STATE = "json_error"
# What a refused body reads as: no body model accepts it, so validation fails after the token check.
_REFUSED = object()
# A high surrogate escape not followed by a low one, or a low one without a high one before it.
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


class _Refused(Exception):
    def __init__(self, literal: str, problem: str) -> None:
        super().__init__(problem)
        self.literal = literal
        self.problem = problem


def _constant(literal: str) -> float:
    raise _Refused(literal, f"{literal} is not JSON: give a finite number")


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Refused(literal, f"{literal} is too large for a number: give a finite one")
    return value


def _int(literal: str) -> int:
    digits = literal.lstrip("-")
    if len(digits) > 19 or not -(2**_INT_BITS) <= int(literal) < 2**_INT_BITS:
        raise _Refused(literal, f"integer {literal[:30]} is beyond 64 bits")
    return int(literal)


def parse_json(body: bytes) -> Any:
    """The value of a JSON body; json.JSONDecodeError (with a position) for anything we refuse."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError("the body is not UTF-8 text", "", exc.start) from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Refused as exc:
        raise json.JSONDecodeError(exc.problem, text, max(text.find(exc.literal), 0)) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    try:
        # One pass in C over every string, keys included: a lone surrogate cannot be encoded.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        found = _LONE_SURROGATE.search(text)
        raise json.JSONDecodeError(
            "a \\uD800-\\uDFFF escape that is not half of a pair is not text: remove it",
            text,
            found.start() if found else 0,
        ) from None
    return value


def json_error_of(request: Request) -> json.JSONDecodeError | None:
    """Why ``StrictJsonRoute`` refused this request's body, if it did."""
    found = getattr(request.state, JSON_ERROR_STATE, None)
    return found if isinstance(found, json.JSONDecodeError) else None


class _StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except json.JSONDecodeError as exc:
                # FastAPI reads the body before it checks the token: a refused body is reported
                # once the token has been (401 and 403 first), by the 422 handler, from here.
                setattr(self.state, JSON_ERROR_STATE, exc)
                self._json = _REFUSED
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler reads its JSON body with ``parse_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict
