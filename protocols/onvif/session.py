"""One camera's ONVIF client objects, made on first use and kept; the only module that builds them.

``adjust_time`` stays off: the library would shift our WS-Security timestamps by the camera's offset
and hide the drift we measure. ``no_cache``: the WSDLs are local files, and the library's cache is a
SQLite file it would write on the SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from protocols.errors import DeviceUnreachable
from protocols.onvif.config import Endpoint

_root = logging.getLogger()
_handlers, _level = list(_root.handlers), _root.level
import onvif  # type: ignore[import-untyped]  # noqa: E402  (it calls logging.basicConfig: undone below)

for _handler in [h for h in _root.handlers if h not in _handlers]:
    _root.removeHandler(_handler)  # the agent's own logging setup is the one that counts
_root.setLevel(_level)

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

    async def devicemgmt(self) -> Any:
        async with self._creating:
            return await self.camera.create_devicemgmt_service()

    async def discover(self) -> None:
        """Where the camera's services answer (GetServices, else GetCapabilities)."""
        await self.devicemgmt()  # made under the lock; discovery reuses it and holds no lock on the network
        await self.camera.update_xaddrs()

    async def events(self) -> Any:
        async with self._creating:
            return await self.camera.create_events_service()

    async def pullpoint(self, address: str) -> tuple[Any, Any]:
        """The subscription manager (Renew, Unsubscribe) and the pull point (PullMessages) at ``address``."""
        async with self._creating:
            camera = self.camera
            camera.xaddrs[PULLPOINT_NS] = address
            manager = await camera.create_subscription_service("PullPointSubscription")
            pullpoint = await camera.create_pullpoint_service()
            return manager, pullpoint

    async def close(self) -> None:
        async with self._creating:
            self._closed = True
            camera, self._camera = self._camera, None
            if camera is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    await camera.close()
