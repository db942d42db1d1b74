"""The cabinet config: a TOML file, typed and validated once at start.

Every error names the file, the key (dotted, with list indexes: ``devices[1].profile``) and what was
expected, in one line, so a technician can fix it without reading code.
"""

from __future__ import annotations

import hashlib
import logging
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.errors import ConfigError
from edge_agent.lighting import LightingSchedule, ScheduleError, parse_schedule
from edge_agent.lighting.roles import role_problem
from protocols.errors import ProfileError
from protocols.fleet.broker_url import (
    BrokerAddress,
    SecretFileError,
    parse_broker_url,
    password_from_environment,
    read_secret_file,
)
from protocols.fleet.topics import CABINET_ID_PATTERN
from protocols.modbus.profile import Profile, find_profile, profile_search_path

logger = logging.getLogger(__name__)

DriverName = Literal["modbus-tcp", "modbus-rtu"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CabinetSection(_Model):
    id: Annotated[str, Field(pattern=CABINET_ID_PATTERN)]


class BrokerSection(_Model):
    """Where the broker is and who the cabinet is to it.

    The password comes from ``password_file`` (a file only the agent's user can read; relative to the
    config file's folder), else ``password`` (then the config file itself must be kept from other
    users), else the URL, else the environment (``CITYEDGE_BROKER_PASSWORD``,
    ``CITYEDGE_BROKER_PASSWORD_FILE``, or the systemd credential ``broker-password``).
    """

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None  # never shown: repr, str and errors print ********
    password_file: Path | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    @field_validator("url")
    @classmethod
    def _url_parses(cls, url: str) -> str:
        parse_broker_url(url)  # raises ValueError naming the URL (password redacted) and a good example
        return url

    @model_validator(mode="after")
    def _one_password(self) -> BrokerSection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both (password_file is better)")
        return self

    def address(self) -> BrokerAddress:
        parsed = parse_broker_url(self.url)
        return BrokerAddress(
            host=parsed.host,
            port=parsed.port,
            tls=parsed.tls,
            username=self.username or parsed.username,
            password=self.password.get_secret_value() if self.password else parsed.password,
        )


class BufferSection(_Model):
    path: Path = Path("buffer.db")
    max_mb: Annotated[float, Field(gt=0)] = 256.0
    # Commits are batched: SD cards wear out, and one commit per reading would write a page each.
    commit_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0


class SyncSection(_Model):
    batch_max_records: Annotated[int, Field(ge=1, le=5000)] = 1000
    window: Annotated[int, Field(ge=1, le=64)] = 8
    ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 60.0


class AlarmSettings(_Model):
    """Thresholds of a lighting device's alarms; each alarm is raised and cleared once, with hysteresis."""

    raise_after: Annotated[int, Field(ge=1, le=100)] = 3  # consecutive polls before raising
    clear_after: Annotated[int, Field(ge=1, le=100)] = 3  # consecutive polls before clearing
    day_power_max_w: Annotated[float, Field(ge=0)] = 20.0  # above this in daytime: lit in daytime
    night_power_min_w: Annotated[float, Field(ge=0)] = 10.0  # below this while lit: dark at night
    power_max_w: Annotated[float, Field(gt=0)] | None = None  # above this: power out of range
    current_max_a: Annotated[float, Field(gt=0)] | None = None  # above this: current out of range
    hysteresis_pct: Annotated[float, Field(ge=0, le=50)] = 10.0  # clear only this far back inside


class DeviceSection(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    driver: DriverName
    address: str | None = None  # modbus-tcp: host:port
    port: str | None = None  # modbus-rtu: the serial device, e.g. /dev/ttyUSB0
    baudrate: Annotated[int, Field(ge=300, le=1_000_000)] = 19200
    parity: Literal["N", "E", "O"] = "E"  # the Modbus standard's default is 8E1
    stopbits: Literal[1, 2] = 1
    unit: Annotated[int, Field(ge=0, le=247)] = 1
    profile: str
    poll_interval_s: Annotated[float, Field(gt=0, le=86400)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    alarms: AlarmSettings = AlarmSettings()

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str | None) -> str | None:
        if address is None:
            return None
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, e.g. 192.168.1.20:502, got {address!r}")
        return address

    @model_validator(mode="after")
    def _transport_matches_driver(self) -> DeviceSection:
        if self.driver == "modbus-tcp" and self.address is None:
            raise ValueError('driver modbus-tcp needs address = "host:port"')
        if self.driver == "modbus-rtu" and self.port is None:
            raise ValueError('driver modbus-rtu needs port = "/dev/ttyUSB0" (its serial device)')
        if self.driver == "modbus-rtu" and not 1 <= self.unit <= 247:
            raise ValueError(f"a modbus-rtu unit must be 1..247, got {self.unit}")
        return self

    @property
    def host(self) -> str:
        return (self.address or "").rpartition(":")[0]

    @property
    def tcp_port(self) -> int:
        return int((self.address or ":0").rpartition(":")[2])


class LightingSection(_Model):
    """The schedule the cabinet runs on its own until central sends another (see edge_agent.lighting)."""

    devices: list[str] | None = None  # default: every device whose profile has a relay point
    schedule: dict[str, Any] | None = None
    # What the lights do while the clock is not synchronised (the schedule cannot be placed in time):
    # "on" (at 100%: a dark street is worse than a wasted hour), "off", or "schedule" (trust the clock).
    clock_failsafe: Literal["on", "off", "schedule"] = "on"


class AgentConfig(_Model):
    # Device profiles of this cabinet's own, looked for before /etc/cityedge/profiles and the packaged
    # ones (relative: to the config file's folder).
    profiles_dir: Path | None = None
    cabinet: CabinetSection
    broker: BrokerSection = BrokerSection()
    buffer: BufferSection = BufferSection()
    sync: SyncSection = SyncSection()
    devices: list[DeviceSection] = []
    lighting: LightingSection = LightingSection()

    @model_validator(mode="after")
    def _unique_device_names(self) -> AgentConfig:
        seen: set[str] = set()
        for device in self.devices:
            if device.name in seen:
                raise ValueError(f"device name {device.name!r} is used twice")
            seen.add(device.name)
        lines: dict[str, DeviceSection] = {}
        for device in self.devices:
            if device.port is None:
                continue
            first = lines.setdefault(device.port, device)
            if (first.baudrate, first.parity, first.stopbits) != (
                device.baudrate,
                device.parity,
                device.stopbits,
            ):
                raise ValueError(
                    f"devices {first.name!r} and {device.name!r} share {device.port} with different "
                    "baudrate/parity/stopbits: one serial line has one setting"
                )
        for name in self.lighting.devices or ():
            if name not in seen:
                raise ValueError(f"lighting.devices names {name!r}, which is not a configured device")
        return self


class LoadedConfig:
    """A validated config with what was derived from it: profiles, absolute paths, its hash."""

    def __init__(
        self,
        *,
        path: Path,
        config: AgentConfig,
        profiles: dict[str, Profile],
        digest: str,
        schedule: LightingSchedule | None,
        profile_files: dict[str, Path] | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.profiles = profiles
        self.digest = digest
        self.schedule = schedule
        self.profile_files = profile_files or {}  # device -> the file its profile was read from

    @property
    def buffer_path(self) -> Path:
        buffer_path = self.config.buffer.path
        return buffer_path if buffer_path.is_absolute() else self.path.parent / buffer_path


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


_SHOWN_BROKER_KEYS = ("username", "password_file", "keepalive_s")


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Keys whose value is never shown: in [broker] all but a few (the URL may carry a password, and a
    string given for the whole table may be one), and any password elsewhere."""
    if loc[:1] == ("broker",):
        return len(loc) < 2 or loc[1] not in _SHOWN_BROKER_KEYS
    return any("password" in str(part) for part in loc)


def _problem(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing, this key is required"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and section)"
    message = str(error["msg"]).removeprefix("Value error, ")
    shown = error.get("input")
    # Only a scalar of a key that holds no secret is echoed: a table's input is the whole table (the
    # top level's is the whole file, broker password included).
    echo = "input" in error and kind != "model_type" and not isinstance(shown, dict | list)
    if echo and not _is_secret(tuple(error["loc"])):
        return f"{message} (got {shown!r})"
    return message


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
    secret = broker.model_copy(update={"password": SecretStr(password)})
    return config.model_copy(update={"broker": secret})


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
        config = AgentConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Not chained: pydantic's own message repeats every input, passwords included.
        raise ConfigError(shown, _key(first["loc"]), _problem(first)) from None
    config = _with_password(path, config)
    dirs = profile_dirs if profile_dirs is not None else _profile_search_path(shown, path, config)
    profile_files, profiles = _load_profiles(shown, config, dirs)
    schedule = None
    if config.lighting.schedule is not None:
        try:
            schedule = parse_schedule(config.lighting.schedule)
        except ScheduleError as exc:
            field, problem = exc.problems[0]
            raise ConfigError(shown, f"lighting.schedule.{field}", problem) from exc
    return LoadedConfig(
        path=path.resolve(),
        config=config,
        profiles=profiles,
        digest=hashlib.sha256(raw).hexdigest()[:16],
        schedule=schedule,
        profile_files=profile_files,
    )


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


def _load_profiles(
    shown: str, config: AgentConfig, dirs: list[Path]
) -> tuple[dict[str, Path], dict[str, Profile]]:
    """Each device's profile and the file it came from; a lighting output's points must fit their role."""
    files: dict[str, Path] = {}
    profiles: dict[str, Profile] = {}
    for index, device in enumerate(config.devices):
        key = f"devices[{index}].profile"
        try:
            files[device.name], profiles[device.name] = find_profile(device.profile, dirs)
        except ProfileError as exc:
            raise ConfigError(shown, key, str(exc)) from exc
        lighting = config.lighting.devices
        if lighting is None or device.name in lighting:
            problem = role_problem(profiles[device.name])
            if problem is not None:
                raise ConfigError(shown, key, f"{files[device.name]}: {problem[0]}: {problem[1]}")
    return files, profiles
