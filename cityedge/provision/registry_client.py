"""Central's registry API as ``cityedge provision`` uses it: httpx, a provisioning token, bounded waits.

Every failure is a ``CentralError`` with what was asked and what central (or the network) said, cut
short; never the token, never a password. An answer is read up to ``MAX_BODY_BYTES`` and its shape
checked before any of it is used: whatever answers at that address (or between) is not trusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import httpx

API = "/api/v1"
TIMEOUT_S = 15.0
MAX_DETAIL_CHARS = 300
# The largest answer of the registry routes is well under a kilobyte.
MAX_BODY_BYTES = 1024 * 1024
Outcome = Literal["created", "updated", "unchanged"]
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged")
# What central makes (``secrets.token_urlsafe``), with room to spare; one line, no spaces.
_PASSWORD = re.compile(r"[\x21-\x7e]{16,1024}")


class CentralError(Exception):
    """Central refused a request (``status``) or could not be reached (``status`` None)."""

    def __init__(self, what: str, problem: str, status: int | None = None) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem
        self.status = status


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body's JSON, or None when it holds none."""
        try:
            return json.loads(self.content)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            return None


class RegistryClient:
    """``async with RegistryClient(url, token) as central:`` then its calls."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = TIMEOUT_S, parallel: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url + API,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.aclose()

    async def _call(self, what: str, method: str, path: str, body: Any = None) -> _Answer:
        """The answer, its body read up to ``MAX_BODY_BYTES`` (a longer one is a CentralError)."""
        try:
            async with self._client.stream(method, path, json=body) as response:
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_BODY_BYTES:
                        raise CentralError(
                            what, f"central answered over {MAX_BODY_BYTES} bytes: is {self.base_url} central?"
                        )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CentralError(what, f"central at {self.base_url} cannot be reached ({reason})") from exc
        return _Answer(response.status_code, bytes(content))

    def _unexpected(self, what: str, answer: _Answer, problem: str) -> CentralError:
        return CentralError(
            what,
            f"central answered {answer.status_code} with {problem}: is {self.base_url} central?",
            answer.status_code,
        )

    def _object(self, what: str, answer: _Answer) -> dict[str, Any]:
        found = answer.json()
        if not isinstance(found, dict):
            raise self._unexpected(what, answer, "no JSON object")
        return found

    def _entry(self, what: str, answer: _Answer, found: Any) -> dict[str, Any]:
        if (
            not isinstance(found, dict)
            or not isinstance(found.get("broker_account"), bool)
            or not isinstance(found.get("revoked", False), bool)
        ):
            raise self._unexpected(what, answer, "no registry entry")
        return found

    @staticmethod
    def _refused(what: str, answer: _Answer) -> CentralError:
        found = answer.json()
        detail = found.get("detail", "") if isinstance(found, dict) else answer.text
        if isinstance(detail, list):
            text = "; ".join(_field_error(e) for e in detail)
        else:
            text = detail if isinstance(detail, str) else json.dumps(detail)[:MAX_DETAIL_CHARS]
        if len(text) > MAX_DETAIL_CHARS:
            text = text[: MAX_DETAIL_CHARS - 1] + "…"
        return CentralError(what, f"central answered {answer.status_code}: {text}", answer.status_code)

    async def check_token(self, cabinet: str) -> None:
        """Raise CentralError unless central answers and the token may read ``cabinet``'s entry
        (an installer's or an admin's): once, before a batch, rather than once per cabinet."""
        what = "the provisioning token"
        answer = await self._call(what, "GET", f"/registry/{cabinet}")
        if answer.status_code not in (200, 404):
            raise self._refused(what, answer)

    async def entry(self, cabinet: str) -> dict[str, Any] | None:
        what = f"reading the registry entry of {cabinet}"
        answer = await self._call(what, "GET", f"/registry/{cabinet}")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise self._refused(what, answer)
        return self._entry(what, answer, self._object(what, answer))

    async def put(self, cabinet: str, fields: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
        what = f"registering {cabinet}"
        answer = await self._call(what, "PUT", f"/registry/{cabinet}", fields)
        if answer.status_code not in (200, 201):
            raise self._refused(what, answer)
        body = self._object(what, answer)
        outcome = body.get("outcome")
        if outcome not in OUTCOMES:
            raise self._unexpected(what, answer, f"an outcome that is none of {', '.join(OUTCOMES)}")
        return outcome, self._entry(what, answer, body.get("entry"))

    async def new_password(self, cabinet: str, *, replace: bool) -> str:
        what = f"broker credentials of {cabinet}"
        answer = await self._call(
            what, "POST", f"/registry/{cabinet}/broker-credentials", {"replace": replace}
        )
        if answer.status_code != 201:
            raise self._refused(what, answer)
        password = self._object(what, answer).get("password")
        if not isinstance(password, str) or not _PASSWORD.fullmatch(password):
            raise self._unexpected(what, answer, "no password of 16-1024 printable characters")
        return password


def _field_error(error: Any) -> str:
    if isinstance(error, dict):
        parts = error.get("loc", ())
        loc = ".".join(str(part) for part in parts if part != "body") if isinstance(parts, list) else ""
        return f"{loc}: {error.get('msg', '')}"
    return str(error)
