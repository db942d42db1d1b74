"""What the driver changes in the ``onvif`` library's HTTP transport and logging, applied on import.

- An answer is read up to ``MAX_ANSWER_BYTES``: a camera streaming an endless or huge body costs at
  most that much memory, and the call fails with ``AnswerTooLarge`` (a ``BadAnswer`` to the driver).
- HTTP 401 and 403 raise ``HttpRefused`` before the body is read: the camera refused our
  credentials, whatever page it sent with the status.
- No WS-Security header is made without a username (an anonymous camera): the library's own token
  class fails on ``None``.
- The library's and zeep's loggers never print a request: those hold the WS-Security header
  (PasswordDigest, Nonce). zeep's tracebacks for a malformed answer are silenced: the driver logs
  one line saying what is wrong.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level
import onvif.client  # type: ignore[import-untyped]  # noqa: E402  (it calls logging.basicConfig: undone below)
from onvif.zeep_aiohttp import AIOHTTPTransport  # type: ignore[import-untyped]  # noqa: E402

for _handler in [h for h in _root.handlers if h not in _handlers]:
    _root.removeHandler(_handler)  # the agent's own logging setup is the one that counts
_root.setLevel(_level)

MAX_ANSWER_BYTES = 1 << 20
_CHUNK = 64 * 1024
_SECRET_MARKERS = ("wsse:", "PasswordDigest", "Nonce", "UsernameToken")


class AnswerTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes: not read further")


class HttpRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def read_capped(response: aiohttp.ClientResponse, limit: int = MAX_ANSWER_BYTES) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise AnswerTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


async def _post_internal(
    self: Any, address: str, message: str | bytes, headers: dict[str, str] | None
) -> tuple[aiohttp.ClientResponse, bytes]:
    """The library's POST, without its debug logging of the request, reading a bounded answer."""
    headers = headers or {}
    headers.setdefault("Content-Type", 'text/xml; charset="utf-8"')
    data = message.encode("utf-8") if isinstance(message, str) else message
    try:
        response = await self.session.post(
            address, data=data, headers=headers, proxy=self.proxy, timeout=self._client_timeout
        )
    except RuntimeError as exc:
        if self.session.closed:  # closed at teardown: a connection error, as the library says too
            raise aiohttp.ClientConnectionError(f"post to {address}: {exc}") from exc
        raise
    try:
        if response.status in (401, 403):
            raise HttpRefused(response.status)
        content = await read_capped(response)
    except BaseException:
        response.close()
        raise
    return response, content


def _token(user: str | None, passw: str | None, **kwargs: Any) -> Any:
    return None if user is None else _USERNAME_TOKEN(user, passw, **kwargs)


def _no_secrets(record: logging.LogRecord) -> bool:
    try:
        text = record.getMessage()
    except (TypeError, ValueError):
        return False
    return not any(marker in text for marker in _SECRET_MARKERS)


_USERNAME_TOKEN = onvif.client.UsernameDigestTokenDtDiff
onvif.client.UsernameDigestTokenDtDiff = _token
AIOHTTPTransport._post_internal = _post_internal


def quiet_library_logs() -> None:
    """zeep at CRITICAL, onvif at WARNING, and a filter on each of their loggers dropping any record
    that carries a WS-Security header."""
    logging.getLogger("zeep").setLevel(logging.CRITICAL)
    logging.getLogger("onvif").setLevel(logging.WARNING)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("zeep", "onvif")]
    for name in ["zeep", "onvif", *names]:
        logger = logging.getLogger(name)
        if _no_secrets not in logger.filters:
            logger.addFilter(_no_secrets)


quiet_library_logs()
