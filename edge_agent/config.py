"""The cabinet config: a TOML file, typed and validated once at start.

Every error names the file, the key (dotted, with list indexes: ``devices[1].profile``) and what was
expected, in one line, so a technician can fix it without reading code.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import time
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from edge_agent.config_errors import describe_error
from edge_agent.device_configs import duplicate_name, parse_device
from edge_agent.errors import ConfigError
from edge_agent.lighting import LightingSchedule, ScheduleError, parse_schedule
from edge_agent.lighting.roles import role_problem
from protocols import registry
from protocols.device import BuildContext, BuildError, DeviceConfig, field_problem
from protocols.driver import FieldDriver
from protocols.errors import ProfileError
from protocols.fleet.broker_url import (
    BrokerAddress,
    SecretFileError,
    parse_broker_url,
    password_from_environment,
    read_secret_file,
)
from protocols.fleet.topics import CABINET_ID_PATTERN
from protocols.profiles import find_profile_file, profile_search_path

logger = logging.getLogger(__name__)

# msgspec structs, not pydantic models: the agent loads its config once at start on a Raspberry Pi,
# and msgspec costs a fraction of pydantic's memory and start time.


MAX_DEVICES = 256  # a cabinet's, far above any real one


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class CabinetSection(_Section, frozen=True, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern=CABINET_ID_PATTERN)]


class BrokerSection(_Section, frozen=True, kw_only=True):
    """Where the broker is and who the cabinet is to it.

    The password comes from ``password_file`` (a file only the agent's user can read; relative to the
    config file's folder), else ``password`` (then the config file itself must be kept from other
    users), else the URL, else the environment (``CITYEDGE_BROKER_PASSWORD``,
    ``CITYEDGE_BROKER_PASSWORD_FILE``, or the systemd credential ``broker-password``).

    TLS (an ``mqtts://`` URL): ``ca_file`` is the CA certificate (PEM) to trust instead of the
    system's; ``cert_file`` and ``key_file`` (PEM, the key readable by the agent's user only) are
    the cabinet's client certificate where the broker asks for one. Relative to the config's folder.
    """

    url: Annotated[str, msgspec.Meta(max_length=1024)] = "mqtt://127.0.0.1:1883"
    username: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None  # never shown (``__repr__``)
    password_file: Path | None = None
    keepalive_s: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        try:
            parsed = parse_broker_url(self.url)  # names the URL (password redacted) and a good example
        except ValueError as exc:
            raise field_problem("url", str(exc)) from None
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both (password_file is better)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give cert_file and key_file together (the client certificate and its key)")
        if not parsed.tls and any(f is not None for f in (self.ca_file, self.cert_file, self.key_file)):
            raise field_problem("url", "ca_file, cert_file and key_file need TLS: use an mqtts:// URL")

    def __repr__(self) -> str:
        password = None if self.password is None else "********"
        return (
            f"BrokerSection(url={parse_broker_url(self.url)!s}, username={self.username!r}, "
            f"password={password}, password_file={self.password_file!r}, keepalive_s={self.keepalive_s})"
        )

    __str__ = __repr__

    def address(self) -> BrokerAddress:
        parsed = parse_broker_url(self.url)
        return BrokerAddress(
            host=parsed.host,
            port=parsed.port,
            tls=parsed.tls,
            username=self.username or parsed.username,
            password=self.password if self.password is not None else parsed.password,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )


class BufferSection(_Section, frozen=True, kw_only=True):
    path: Path = Path("buffer.db")
    max_mb: Annotated[float, msgspec.Meta(gt=0)] = 256.0
    # Commits are batched: SD cards wear out, and a commit writes pages whatever it holds. Every 5 s
    # a cabinet at 100 readings/s writes about 33 B a reading (every 1 s: 91; bench/edge_wear.py); a
    # power cut loses at most that long of readings. A command's result and a pushed change are
    # committed at once all the same (the operator is waiting).
    commit_interval_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0


class SyncSection(_Section, frozen=True, kw_only=True):
    # Ceilings (and where sending starts): the sender halves both when central's acks come back later
    # than ack_target_s, and grows them back while they come within it (edge_agent.send_window).
    batch_max_records: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 5000
    window: Annotated[int, msgspec.Meta(ge=1, le=64)] = 32
    ack_target_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    ack_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    reconnect_min_s: Annotated[float, msgspec.Meta(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0


class LightingSection(_Section, frozen=True, kw_only=True):
    """The schedule the cabinet runs on its own until central sends another (see edge_agent.lighting)."""

    devices: list[str] | None = None  # default: every device with a writable relay point
    schedule: dict[str, Any] | None = None  # checked by parse_schedule
    # What the lights do while the clock is not synchronised (the schedule cannot be placed in time):
    # "on" (at 100%: a dark street is worse than a wasted hour), "off", or "schedule" (trust the clock).
    clock_failsafe: Literal["on", "off", "schedule"] = "on"


class AgentConfig(_Section, frozen=True, kw_only=True):
    # Device profiles of this cabinet's own, looked for before /etc/cityedge/profiles and the packaged
    # ones (relative: to the config file's folder).
    profiles_dir: Path | None = None
    cabinet: CabinetSection
    broker: BrokerSection = BrokerSection()
    buffer: BufferSection = BufferSection()
    sync: SyncSection = SyncSection()
    # Each table is checked by its driver's own model (``edge_agent.device_configs``), once the rest
    # of the file is known to be right.
    devices: Annotated[list[dict[str, Any]], msgspec.Meta(max_length=MAX_DEVICES)] = []
    lighting: LightingSection = LightingSection()


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str) and 0 < len(value) <= 4096 and "\0" not in value:
        return Path(value)
    raise ValueError("expected a file path, as a string")


def parse_agent_config(document: dict[str, Any]) -> AgentConfig:
    """The typed config; msgspec.ValidationError when it is wrong."""
    return msgspec.convert(document, AgentConfig, strict=True, dec_hook=_decode_path)


class LoadedConfig:
    """A validated config with what was derived from it: typed devices, absolute paths, its hash."""

    def __init__(
        self,
        *,
        path: Path,
        config: AgentConfig,
        devices: list[DeviceConfig],
        digest: str,
        schedule: LightingSchedule | None,
        profile_dirs: list[Path],
        profile_files: dict[str, Path] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.devices = devices
        self.digest = digest
        self.schedule = schedule
        self.profile_dirs = profile_dirs
        self.profile_files = profile_files or {}  # device -> the file its profile was read from

    @property
    def buffer_path(self) -> Path:
        buffer_path = self.config.buffer.path
        return buffer_path if buffer_path.is_absolute() else self.path.parent / buffer_path


_SHOWN_BROKER_KEYS = ("username", "password_file", "keepalive_s", "ca_file", "cert_file", "key_file")


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Keys whose value is never shown: in [broker] all but a few (the URL may carry a password, and a
    string given for the whole table may be one), and any password elsewhere."""
    if loc[:1] == ("broker",):
        return len(loc) < 2 or loc[1] not in _SHOWN_BROKER_KEYS
    return any("password" in str(part) for part in loc)


def _with_password(path: Path, config: AgentConfig) -> AgentConfig:
    """The config with the broker password read from its file or the environment, if it comes from there."""
    broker = config.broker
    shown = str(path)
    password: str | None
    if broker.password_file is not None:
        file = (
            broker.password_file if broker.password_file.is_absolute() else path.parent / broker.password_file
        )
        try:
            password = read_secret_file(file)
        except SecretFileError as exc:
            raise ConfigError(shown, "broker.password_file", str(exc)) from exc
    elif broker.password is not None or parse_broker_url(broker.url).password is not None:
        _warn_if_others_can_read(path)
        return config
    else:
        try:
            password = password_from_environment()
        except SecretFileError as exc:
            raise ConfigError(shown, "broker", f"the broker password from the environment: {exc}") from exc
        if password is None:
            return config
    # The password, read from its file: the file is not needed again.
    secret = msgspec.structs.replace(broker, password=password, password_file=None)
    return msgspec.structs.replace(config, broker=secret)


def _with_tls_files(path: Path, config: AgentConfig) -> AgentConfig:
    """The config with its TLS files made absolute, once each is known to be there (the key kept
    from other users): a missing certificate is refused now, not at the first connection."""
    broker = config.broker
    files: dict[str, Path] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        given: Path | None = getattr(broker, key)
        if given is None:
            continue
        file = given if given.is_absolute() else path.parent / given
        try:
            mode = file.stat().st_mode
        except OSError as exc:
            raise ConfigError(str(path), f"broker.{key}", f"{file}: cannot read it ({exc.strerror})") from exc
        if not stat.S_ISREG(mode):
            raise ConfigError(str(path), f"broker.{key}", f"{file} is not a regular file (a PEM file)")
        if key == "key_file" and mode & 0o007:
            raise ConfigError(
                str(path),
                "broker.key_file",
                f"{file}: other users can access it (mode {stat.S_IMODE(mode):04o}): run `chmod 0600 {file}`",
            )
        files[key] = file.resolve()
    if not files:
        return config
    return msgspec.structs.replace(config, broker=msgspec.structs.replace(broker, **files))


def _warn_if_others_can_read(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o004:
        logger.warning(
            "%s holds the broker password and every user of this machine can read it (mode %04o): run "
            "`chmod o-rwx %s` (0640 root:cityedge), or move the password to broker.password_file",
            path,
            stat.S_IMODE(mode),
            path,
        )


def load_config(path: Path, *, profile_dirs: list[Path] | None = None) -> LoadedConfig:
    """Read, parse and validate a cabinet config, or raise one ConfigError naming file and key."""
    shown = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(shown, "", f"cannot read the file ({exc.strerror})") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(shown, "", f"not valid TOML: {exc}") from exc
    try:
        config = parse_agent_config(document)
    except msgspec.ValidationError as exc:
        key, problem = describe_error(str(exc), document, _key_is_secret, AgentConfig)
        raise ConfigError(shown, key, problem) from None
    config = _with_password(path, config)
    config = _with_tls_files(path, config)
    devices = _devices(shown, config)
    dirs = profile_dirs if profile_dirs is not None else _profile_search_path(shown, path, config)
    profile_files = _profile_files(shown, devices, dirs)
    schedule = None
    if config.lighting.schedule is not None:
        try:
            schedule = parse_schedule(config.lighting.schedule)
        except ScheduleError as exc:
            field, problem = exc.problems[0]
            raise ConfigError(shown, f"lighting.schedule.{field}", problem) from exc
    loaded = LoadedConfig(
        path=path.resolve(),
        config=config,
        devices=devices,
        digest=hashlib.sha256(raw).hexdigest()[:16],
        schedule=schedule,
        profile_dirs=dirs,
        profile_files=profile_files,
    )
    # Every driver is built once (no I/O): a profile it cannot read, or lighting outputs the
    # lighting could not drive, are refused now, not at dusk.
    build_drivers(loaded)
    return loaded


def _devices(shown: str, config: AgentConfig) -> list[DeviceConfig]:
    devices: list[DeviceConfig] = []
    for index, table in enumerate(config.devices):
        parsed = parse_device(table, partial(_device_key_is_secret, index))
        if isinstance(parsed, tuple):
            where, problem = parsed
            raise ConfigError(shown, f"devices[{index}]" + (f".{where}" if where else ""), problem)
        devices.append(parsed)
    duplicate = duplicate_name(devices)
    if duplicate is not None:
        raise ConfigError(shown, f"devices[{duplicate[0]}].name", duplicate[1])
    names = {device.name for device in devices}
    for index, name in enumerate(config.lighting.devices or ()):
        if name not in names:
            raise ConfigError(
                shown, f"lighting.devices[{index}]", f"names {name!r}, which is not a configured device"
            )
    return devices


def _device_key_is_secret(index: int, key: str) -> bool:
    return _is_secret(("devices", index, *key.split(".")))


def _key_is_secret(key: str) -> bool:
    return _is_secret(tuple(key.split("."))) if key else True


def _profile_files(shown: str, devices: list[DeviceConfig], dirs: list[Path]) -> dict[str, Path]:
    """The file each device's profile is read from (for the devices whose protocol has profiles)."""
    files: dict[str, Path] = {}
    for index, device in enumerate(devices):
        if device.profile_name is not None:
            try:
                files[device.name] = find_profile_file(device.profile_name, dirs)
            except ProfileError as exc:
                raise ConfigError(shown, f"devices[{index}].profile", str(exc)) from exc
    return files


def build_drivers(loaded: LoadedConfig, *, now_ms: Callable[[], int] | None = None) -> list[FieldDriver]:
    """Each device's driver, through its registered builder, in config order (no I/O on a device).

    A builder's refusal is a ConfigError naming the device's key; so is a lighting output whose
    point cannot take what the lighting writes.
    """
    shown = str(loaded.path)
    context = BuildContext(
        config_dir=loaded.path.parent, profile_dirs=loaded.profile_dirs, now_ms=now_ms or _now_ms
    )
    lighting = loaded.config.lighting.devices
    drivers: list[FieldDriver] = []
    for index, device in enumerate(loaded.devices):
        key = f"devices[{index}]"
        try:
            driver = registry.builder(device.driver)(device, context)
        except ProfileError as exc:
            raise ConfigError(shown, f"{key}.profile", str(exc)) from exc
        except BuildError as exc:
            raise ConfigError(shown, f"{key}.{exc.field}", exc.problem) from exc
        except ValueError as exc:  # a builder's own refusal: still one line naming the device
            raise ConfigError(shown, key, str(exc)) from exc
        if lighting is None or device.name in lighting:
            problem = role_problem(driver.points)
            if problem is not None:
                where, text = problem
                file = loaded.profile_files.get(device.name)
                if file is not None:
                    raise ConfigError(shown, f"{key}.profile", f"{file}: {where}: {text}")
                raise ConfigError(shown, key, f"{where}: {text}")
        drivers.append(driver)
    return drivers


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _profile_search_path(shown: str, path: Path, config: AgentConfig) -> list[Path]:
    """``profiles_dir`` (checked), then ``/etc/cityedge/profiles``, then the packaged profiles."""
    own = config.profiles_dir
    if own is not None:
        own = own if own.is_absolute() else path.parent / own
        if not own.is_dir():
            raise ConfigError(
                shown,
                "profiles_dir",
                f"{own} is not a directory: create it and put the cabinet's profiles (<name>.toml) "
                "in it, or remove the key to use /etc/cityedge/profiles and the packaged profiles",
            )
    return profile_search_path(own)
