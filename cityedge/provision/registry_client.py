"""Central's registry API as ``cityedge provision`` uses it: httpx, a provisioning token, bounded waits.

Every failure is a ``CentralError`` with what was asked and what central (or the network) said, cut
short; never the token, never a password.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal, Self

import httpx

API = "/api/v1"
TIMEOUT_S = 15.0
MAX_DETAIL_CHARS = 300
Outcome = Literal["created", "updated", "unchanged"]


class CentralError(Exception):
    """Central refused a request (``status``) or could not be reached (``status`` None)."""

    def __init__(self, what: str, problem: str, status: int | None = None) -> None:
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem
        self.status = status


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

    async def _call(self, what: str, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise CentralError(what, f"central at {self.base_url} cannot be reached ({reason})") from exc

    @staticmethod
    def _refused(what: str, response: httpx.Response) -> CentralError:
        try:
            detail = response.json().get("detail", "")
        except ValueError:
            detail = response.text
        text = detail if isinstance(detail, str) else "; ".join(_field_error(e) for e in detail)
        if len(text) > MAX_DETAIL_CHARS:
            text = text[: MAX_DETAIL_CHARS - 1] + "…"
        return CentralError(what, f"central answered {response.status_code}: {text}", response.status_code)

    async def check_token(self, cabinet: str) -> None:
        """Raise CentralError unless central answers and the token may read ``cabinet``'s entry
        (an installer's or an admin's): once, before a batch, rather than once per cabinet."""
        what = "the provisioning token"
        response = await self._call(what, "GET", f"/registry/{cabinet}")
        if response.status_code not in (200, 404):
            raise self._refused(what, response)

    async def entry(self, cabinet: str) -> dict[str, Any] | None:
        what = f"reading the registry entry of {cabinet}"
        response = await self._call(what, "GET", f"/registry/{cabinet}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refused(what, response)
        found: dict[str, Any] = response.json()
        return found

    async def put(self, cabinet: str, fields: dict[str, Any]) -> tuple[Outcome, dict[str, Any]]:
        what = f"registering {cabinet}"
        response = await self._call(what, "PUT", f"/registry/{cabinet}", fields)
        if response.status_code not in (200, 201):
            raise self._refused(what, response)
        body = response.json()
        return body["outcome"], body["entry"]

    async def new_password(self, cabinet: str, *, replace: bool) -> str:
        what = f"broker credentials of {cabinet}"
        response = await self._call(
            what, "POST", f"/registry/{cabinet}/broker-credentials", {"replace": replace}
        )
        if response.status_code != 201:
            raise self._refused(what, response)
        password: str = response.json()["password"]
        return password


def _field_error(error: Any) -> str:
    if isinstance(error, dict):
        loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        return f"{loc}: {error.get('msg', '')}"
    return str(error)
