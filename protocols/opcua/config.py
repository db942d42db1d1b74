"""The config of one OPC UA device (a traffic-light controller), as a cabinet's TOML gives it.

Imports no asyncua: validating a config must not load the OPC UA stack. Fields that only make sense
together are checked together (``check``), each problem in one sentence naming the key and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from protocols.device import DeviceConfig

SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]

# opc.tcp://host[:port][/path]: a host name, IPv4 address or bracketed IPv6 address; no user info (the
# password lives in its own file, never in a URL that logs print).
_ENDPOINT = re.compile(
    r"^opc\.tcp://(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~/%-]{0,200})?$"
)
_PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_USERNAME = r"^[^\x00-\x1f\x7f]{1,128}$"

RelativeFile = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


def _shown(endpoint: str) -> str:
    """The endpoint as an error may print it: a user and password typed into it are masked."""
    return re.sub(r"(?<=//)[^/]*@", "***@", endpoint)


class OpcuaConfigError(ValueError):
    """An OPC UA device's config is inconsistent: names the device, the key and the fix."""

    def __init__(self, device: str, key: str, problem: str) -> None:
        super().__init__(f"device {device!r}: {key}: {problem}")
        self.device = device
        self.key = key
        self.problem = problem


class OpcuaDevice(DeviceConfig, frozen=True, forbid_unknown_fields=True, kw_only=True, tag="opcua"):
    """One traffic-light controller's OPC UA server.

    ``security_policy`` and ``security_mode`` are both ``"None"`` or both set; a signed channel needs
    the client's ``certificate`` and ``private_key`` (PEM or DER files), and ``server_certificate``
    pins the controller's certificate (without it, the one the server announces is taken).
    ``username`` goes with ``password_file`` (a file of mode 0600 holding the password); without
    them the session is anonymous. Files are relative to the cabinet config's directory.
    """

    endpoint: Annotated[str, msgspec.Meta(max_length=300)]
    profile: Annotated[str, msgspec.Meta(pattern=_PROFILE_NAME)]
    security_policy: SecurityPolicy = "None"
    security_mode: SecurityMode = "None"
    username: Annotated[str, msgspec.Meta(pattern=_USERNAME)] | None = None
    password_file: RelativeFile | None = None
    certificate: RelativeFile | None = None
    private_key: RelativeFile | None = None
    server_certificate: RelativeFile | None = None
    # How often the server sends the changes of monitored items (and so how late a change can be).
    # The floor bounds the batches a controller can push (one per interval), each a buffer commit.
    publishing_interval_ms: Annotated[int, msgspec.Meta(ge=100, le=60_000)] = 500
    # Between two reconnect attempts after a session is lost: jittered, doubling up to the maximum.
    reconnect_initial_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    # After the controller refused the user or password: the next login waits this long, doubling to
    # the maximum (a wrong password retried often locks the account).
    auth_retry_min_s: Annotated[float, msgspec.Meta(ge=10, le=3600)] = 60.0
    auth_retry_max_s: Annotated[float, msgspec.Meta(ge=60, le=86_400)] = 3600.0
    # How often an idle session is probed, so that a dead controller is noticed without a read.
    keepalive_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a validation error at this device.
        problem = self.problem()
        if problem is not None:
            raise OpcuaConfigError(self.name, *problem)

    def problem(self) -> tuple[str, str] | None:
        """The first inconsistency as (key, problem with its fix), or None."""
        if _ENDPOINT.match(self.endpoint) is None:
            return (
                "endpoint",
                "expected opc.tcp://host:4840[/path] (no user or password in it), "
                f"got {_shown(self.endpoint)!r}",
            )
        port = self.endpoint_port
        if port is not None and not 1 <= port <= 65535:
            return "endpoint", f"expected a port between 1 and 65535, got {port}"
        if (self.security_policy == "None") != (self.security_mode == "None"):
            return "security_mode", (
                f'{self.security_mode!r} with security_policy {self.security_policy!r}: set both to "None",'
                ' or a policy (e.g. "Basic256Sha256") with "Sign" or "SignAndEncrypt"'
            )
        if self.security_mode != "None" and (self.certificate is None or self.private_key is None):
            return "certificate", (
                f"security_mode {self.security_mode!r} needs the client's certificate and private_key files"
            )
        if self.security_mode == "None" and (self.certificate or self.private_key or self.server_certificate):
            return (
                "security_mode",
                "certificates given but the channel is not secured: set security_policy and security_mode",
            )
        if (self.certificate is None) != (self.private_key is None):
            return "private_key", "certificate and private_key go together: give both"
        if (self.username is None) != (self.password_file is None):
            return (
                "password_file",
                "username and password_file go together: give both, or neither for an anonymous session",
            )
        if self.reconnect_initial_s > self.reconnect_max_s:
            return "reconnect_initial_s", (
                f"expected at most reconnect_max_s ({self.reconnect_max_s}), got {self.reconnect_initial_s}"
            )
        if self.auth_retry_min_s > self.auth_retry_max_s:
            return "auth_retry_min_s", (
                f"expected at most auth_retry_max_s ({self.auth_retry_max_s}), got {self.auth_retry_min_s}"
            )
        return None

    @property
    def endpoint_port(self) -> int | None:
        match = _ENDPOINT.match(self.endpoint)
        port = match.group("port") if match else None
        return int(port) if port else None

    def resolve(self, config_dir: Path, relative: str) -> Path:
        """A file named in this config, relative to the cabinet config's directory."""
        path = Path(relative)
        return path if path.is_absolute() else config_dir / path

    def __repr__(self) -> str:
        # The password never is in the config (only its file's name), but say so to whoever reads logs.
        return f"OpcuaDevice(name={self.name!r}, endpoint={self.endpoint!r}, profile={self.profile!r})"
