"""One camera's ONVIF client objects, made on first use and kept; the only module that builds them.

``adjust_time`` stays off: the library would shift our WS-Security timestamps by the camera's offset
and hide the drift we measure. ``no_cache``: the WSDLs are local files, and the library's cache is a
SQLite file it would write on the SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from protocols.errors import DeviceUnreachable, DriverError
from protocols.onvif import transport  # noqa: F401  (patches the library before any client is made)
from protocols.onvif.config import Endpoint
from protocols.onvif.errors import BadAnswer

import onvif  # type: ignore[import-untyped]  # isort: skip  (after transport, which imports it first)

T = TypeVar("T")

EVENTS_UNAVAILABLE = "events_unavailable"  # the camera lists no Events service we can use
PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"


class CameraSession:
    def __init__(
        self,
        device: str,
        endpoint: Endpoint,
        username: str | None,
        password: str | None,
        *,
        creating: asyncio.Lock,
    ) -> None:
        self._device = device
        self._host = endpoint.host.strip("[]").lower()
        self._closed = False
        host = endpoint.host if endpoint.scheme == "http" else f"https://{endpoint.host}"
        self._args = (host, endpoint.port, username, password)
        self._camera: Any = None
        # The library does not guard the creation of its clients: two tasks asking at once would each
        # make one (the first never closed), and cameras loading a WSDL at once would each parse and
        # keep its own copy (some 5 MB each). One lock per process, shared by every camera.
        self._creating = creating

    @property
    def camera(self) -> Any:
        if self._closed:
            raise DeviceUnreachable(self._device, "the driver is closed")
        if self._camera is None:
            host, port, username, password = self._args
            self._camera = onvif.ONVIFCamera(host, port, username, password, no_cache=True, adjust_time=False)
        return self._camera

    async def _library(
        self, operation: str, work: Callable[[], Awaitable[T]], reason: str = "malformed_answer"
    ) -> T:
        """Runs library code outside a SOAP call: whatever it raises becomes a ``DriverError``."""
        try:
            return await work()
        except DriverError:
            raise
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise DeviceUnreachable(self._device, f"{operation}: {exc}") from exc
        except Exception as exc:  # ONVIFError, KeyError, ValueError...: the library's boundary
            detail = f"{type(exc).__name__}: {exc}"[:300]
            raise BadAnswer(self._device, operation, detail, reason=reason) from exc

    def check_host(self, operation: str, address: str) -> None:
        """A service address on another host than the configured one would get our credentials."""
        try:
            host = (urlsplit(address).hostname or "").lower()
        except ValueError:
            host = ""
        if host != self._host:
            raise BadAnswer(
                self._device,
                operation,
                f"the camera points at host {host[:100]!r}, not {self._host!r}: refused (our credentials"
                " go to the configured camera only)",
            )

    async def devicemgmt(self) -> Any:
        async def make() -> Any:
            async with self._creating:
                return await self.camera.create_devicemgmt_service()

        return await self._library("device service", make)

    async def discover(self) -> None:
        """Where the camera's services answer (GetServices, else GetCapabilities)."""
        await self.devicemgmt()  # made under the lock; discovery reuses it and holds no lock on the network
        await self.camera.update_xaddrs()

    async def events(self) -> Any:
        async def make() -> Any:
            async with self._creating:
                service = await self.camera.create_events_service()
            self.check_host("events service", str(service.xaddr))
            return service

        return await self._library("events service", make, reason=EVENTS_UNAVAILABLE)

    async def pullpoint(self, address: str) -> tuple[Any, Any]:
        """The subscription manager (Renew, Unsubscribe) and the pull point (PullMessages) at ``address``."""
        self.check_host("CreatePullPointSubscription", address)

        async def make() -> tuple[Any, Any]:
            async with self._creating:
                camera = self.camera
                camera.xaddrs[PULLPOINT_NS] = address
                manager = await camera.create_subscription_service("PullPointSubscription")
                pullpoint = await camera.create_pullpoint_service()
                return manager, pullpoint

        return await self._library("pull point", make)

    async def close(self) -> None:
        async with self._creating:
            self._closed = True
            camera, self._camera = self._camera, None
            if camera is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    await camera.close()
