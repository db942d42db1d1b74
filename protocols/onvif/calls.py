"""Every SOAP call to a camera goes through ``soap_call``: bounded in time, its errors translated.

Outside this module nothing sees an aiohttp, zeep or lxml exception: a refused connection becomes
``DeviceUnreachable``, silence past the timeout ``DeviceTimeout``, NotAuthorized
``AuthenticationFailed`` (through the ``AuthGate``), any other fault, garbage XML or an answer the
schema does not allow ``BadAnswer``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import lxml.etree  # type: ignore[import-untyped]
import zeep.exceptions
from onvif.exceptions import ONVIFError  # type: ignore[import-untyped]

from protocols.errors import DeviceTimeout, DeviceUnreachable, DriverError
from protocols.onvif.auth_gate import AuthGate
from protocols.onvif.errors import AuthenticationFailed, BadAnswer
from protocols.onvif.transport import AnswerTooLarge, HttpRefused

logger = logging.getLogger(__name__)

AUTH_FIX = (
    "check username and password (password_file) against the camera's ONVIF user, and that the camera's"
    " clock is within a few seconds of the cabinet's (cameras refuse a token stamped too far from theirs)"
)
_AUTH_SUBCODES = ("NotAuthorized", "FailedAuthentication", "InvalidSecurity")


def is_refusal(fault: zeep.exceptions.Fault) -> bool:
    """A fault that says our credentials were refused (subcode NotAuthorized or the WS-Security ones)."""
    subcodes = [getattr(code, "localname", str(code)) for code in (fault.subcodes or [])]
    codes = [*subcodes, str(fault.code or "")]
    return any(marker in code for code in codes for marker in _AUTH_SUBCODES)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text or type(exc).__name__


Explain = Callable[[], Awaitable[str]]


async def soap_call(
    device: str,
    operation: str,
    call: Callable[[], Awaitable[Any]],
    *,
    timeout_s: float,
    gate: AuthGate | None,
    explain: Explain | None = None,
) -> Any:
    """Run one call (``operation`` names it in errors), or raise a ``DriverError``.

    With a ``gate``, a first refusal is logged once, as an error naming the device and the fix (and
    what ``explain`` adds, e.g. the camera's clock far off ours); later ones at debug level (the agent
    reports the device lost); the first acceptance after them at info level. Without one (a call that
    sends no credentials) nothing is gated, counted or logged.
    """
    if gate is None or gate.verified:
        return await _gated_call(device, operation, call, timeout_s=timeout_s, gate=gate, explain=explain)
    async with gate.lock:
        return await _gated_call(device, operation, call, timeout_s=timeout_s, gate=gate, explain=explain)


async def _gated_call(
    device: str,
    operation: str,
    call: Callable[[], Awaitable[Any]],
    *,
    timeout_s: float,
    gate: AuthGate | None,
    explain: Explain | None,
) -> Any:
    if gate is not None and not gate.enter():
        raise AuthenticationFailed(
            device,
            f"the camera refused our credentials; not retried for {gate.wait_s():.3g} s: {AUTH_FIX}",
            gate.wait_s(),
        )
    try:
        async with asyncio.timeout(timeout_s):
            result = await call()
    except HttpRefused as exc:
        raise await _refused(device, gate, explain, str(exc)) from exc
    except AnswerTooLarge as exc:
        _answered(gate)
        raise BadAnswer(device, operation, str(exc), reason="answer_too_large") from exc
    except zeep.exceptions.Fault as exc:
        if is_refusal(exc):
            raise await _refused(device, gate, explain) from exc
        if exc.subcodes:
            _accepted(device, gate)  # the camera read our token and answered otherwise
        else:
            _answered(gate)  # a bare fault says nothing about our credentials
        raise BadAnswer(device, operation, f"SOAP fault: {_short(exc)}", reason="fault") from exc
    except TimeoutError as exc:
        _answered(gate)
        raise DeviceTimeout(device, f"{operation}: no answer within {timeout_s:g} s") from exc
    except (aiohttp.ClientConnectionError, OSError) as exc:
        _answered(gate)
        raise DeviceUnreachable(device, f"{operation}: {_short(exc)}") from exc
    except (zeep.exceptions.Error, lxml.etree.LxmlError, ONVIFError, aiohttp.ClientError) as exc:
        _answered(gate)
        raise BadAnswer(device, operation, _short(exc)) from exc
    except DriverError:
        _answered(gate)
        raise
    except Exception as exc:  # the library's KeyError, ValueError...: translated here, at the boundary
        _answered(gate)
        raise BadAnswer(device, operation, f"{type(exc).__name__}: {_short(exc)}") from exc
    _accepted(device, gate)
    return result


async def _refused(
    device: str, gate: AuthGate | None, explain: Explain | None, how: str = "NotAuthorized"
) -> AuthenticationFailed:
    if gate is None:
        return AuthenticationFailed(device, "the camera wants credentials for this call", 0.0)
    first = not gate.refused
    delay = gate.refusal()
    hint = await explain() if explain is not None else ""
    error = AuthenticationFailed(
        device,
        f"the camera refused our credentials ({how}){hint}; next try in {delay:.3g} s: {AUTH_FIX}",
        delay,
    )
    logger.log(logging.ERROR if first else logging.DEBUG, "%s", error)
    return error


def _answered(gate: AuthGate | None) -> None:
    if gate is not None:
        gate.answered()


def _accepted(device: str, gate: AuthGate | None) -> None:
    if gate is None:
        return
    if gate.refused:
        logger.info("%s: the camera accepts our credentials again", device)
    gate.accepted()
