"""What several routers share: the API's prefix, common bounds, and times read from a query."""

from __future__ import annotations

from typing import NoReturn

from fastapi.exceptions import RequestValidationError

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
