"""What several routers share: the API's prefix, common bounds, and times read from a query."""

from __future__ import annotations

from typing import NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi.exceptions import RequestValidationError

from central.errors import InvalidRequest
from central.times import to_ms

API_PREFIX = "/api/v1"
DEFAULT_WINDOW_MS = 24 * 3600 * 1000
MAX_LIMIT = 100_000


def parse_time(name: str, raw: str) -> int:
    """Milliseconds since 1970 UTC from ``raw`` (digits, or ISO 8601), else a 422 naming the field."""
    try:
        return to_ms(name, raw)
    except ValueError as exc:
        invalid(name, raw, str(exc))


def invalid(name: str, raw: str, message: str) -> NoReturn:
    # Same body shape as FastAPI's own 422s, so clients parse one format.
    raise RequestValidationError(
        [{"type": "value_error", "loc": ("query", name), "msg": message, "input": raw}]
    )


def parse_zone(raw: str) -> ZoneInfo:
    """The ``tz`` query parameter as a time zone; a 422 naming it otherwise."""
    try:
        return ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidRequest.field(
            ("query", "tz"), "tz must be an IANA time zone name, such as Europe/Paris or UTC", raw
        ) from None
