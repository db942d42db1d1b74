"""The configuration of one ONVIF camera. Imports no onvif or zeep: validating a config stays light."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from protocols.device import DeviceConfig
from protocols.fleet.broker_url import redact_url

# The device service's path is fixed by the ONVIF core specification and by the client library.
DEVICE_SERVICE_PATH = "/onvif/device_service"
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]{2,45}\]$")
_ADDRESS_EXAMPLE = "expected host:port or http(s)://host[:port], e.g. 192.168.10.21:80"

Seconds = Annotated[float, msgspec.Meta(gt=0, le=86400)]
Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# Below these, retries of a refused password could lock the camera's account.
AUTH_RETRY_MIN_FLOOR_S = 10.0
AUTH_RETRY_MAX_FLOOR_S = 60.0
Username = Annotated[str, msgspec.Meta(pattern=r"^[^\x00-\x1f\x7f]{1,64}$")]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the camera's device service answers."""

    scheme: str  # "http" or "https"
    host: str  # an IPv6 literal keeps its brackets
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{DEVICE_SERVICE_PATH}"


def parse_address(address: str) -> Endpoint:
    """``host:port`` or an http(s) URL, or ValueError saying what a good one looks like."""
    shown = redact_url(address)  # a password mistakenly put in the URL is never echoed
    text = address.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"address {shown!r}: {exc}; {_ADDRESS_EXAMPLE}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"address {shown!r}: scheme must be http or https; {_ADDRESS_EXAMPLE}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"address {shown!r}: put no credentials in it (use username, password_file)")
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if not host or not _HOST.match(host):
        raise ValueError(f"address {shown!r}: bad host; {_ADDRESS_EXAMPLE}")
    if parts.path not in ("", "/", DEVICE_SERVICE_PATH) or parts.query or parts.fragment:
        raise ValueError(f"address {shown!r}: the only path allowed is {DEVICE_SERVICE_PATH}")
    if port == 0:
        raise ValueError(f"address {shown!r}: port 0; {_ADDRESS_EXAMPLE}")
    default_port = 443 if parts.scheme == "https" else 80
    return Endpoint(parts.scheme, host, port if port is not None else default_port)


class OnvifDevice(DeviceConfig, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="onvif"):
    """One camera: where it answers, who we are to it, when its clock drifts too far, how events are
    pulled, and how long a refused password keeps us away (cameras lock an account after a few
    failures: retries are spaced exponentially between ``auth_retry_min_s`` and ``auth_retry_max_s``).

    The password comes from ``password_file`` (relative to the config file's folder, readable by the
    agent's user only) or ``password``; it is never printed, ``repr`` included.
    """

    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    username: Username | None = None
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    password_file: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    drift_max_s: Seconds = 10.0
    subscription_lifetime_s: Annotated[float, msgspec.Meta(ge=1, le=86400)] = 60.0
    pull_timeout_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 5.0
    pull_message_limit: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 32
    auth_retry_min_s: Seconds = 60.0
    auth_retry_max_s: Seconds = 3600.0
    # The camera's digital input tokens in order: the first is point digital_input_1.
    digital_inputs: Annotated[tuple[Token, ...], msgspec.Meta(max_length=16)] = ()

    def __post_init__(self) -> None:
        parse_address(self.address)
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password_file or password, not both")
        if self.username is None and (self.password is not None or self.password_file is not None):
            raise ValueError("a password needs a username: set username")
        if self.username is not None and self.password is None and self.password_file is None:
            raise ValueError("username needs a password: set password_file (or password)")
        for key, value, floor in (
            ("auth_retry_min_s", self.auth_retry_min_s, AUTH_RETRY_MIN_FLOOR_S),
            ("auth_retry_max_s", self.auth_retry_max_s, AUTH_RETRY_MAX_FLOOR_S),
        ):
            if value < floor:
                raise ValueError(
                    f"{key} ({value:g}) is below {floor:g} s: retrying a refused password that often"
                    f" can lock the camera's account; make it {floor:g} or more"
                )
        if self.auth_retry_min_s > self.auth_retry_max_s:
            raise ValueError(
                f"auth_retry_min_s ({self.auth_retry_min_s:g}) is above auth_retry_max_s"
                f" ({self.auth_retry_max_s:g}): make it smaller"
            )
        if len(set(self.digital_inputs)) != len(self.digital_inputs):
            raise ValueError("digital_inputs: each token once")

    @property
    def endpoint(self) -> Endpoint:
        return parse_address(self.address)

    def __repr__(self) -> str:
        secret = "***" if self.password is not None else None
        return (
            f"OnvifDevice(name={self.name!r}, address={self.address!r}, username={self.username!r},"
            f" password={secret!r}, password_file={self.password_file!r})"
        )
