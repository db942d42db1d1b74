"""One cabinet's agent config, made from the template: any agent config (config/cabinets/ has two)
whose per-cabinet values ``cityedge provision`` sets.

Set for each cabinet: ``cabinet.id``; ``broker.username`` (= the id); ``broker.password_file`` =
``broker-password`` (beside the config); ``broker.url`` when ``--broker-url`` is given; the TLS files
(copied beside the config: ``ca.pem``, ``client.crt``, ``client.key``); the devices when the
inventory gives some (else the template's; then ``lighting.devices`` is left to its default, every
device with a relay point); ``lighting.schedule`` latitude and longitude when the
cabinet has coordinates and the template a schedule (sunset is where the cabinet stands).
Everything else is the template's. A template holding a broker password is refused.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityedge.provision.inventory import CabinetSpec
from cityedge.provision.toml_out import dumps
from protocols.fleet.broker_url import parse_broker_url

CONFIG_FILE = "agent.toml"
PASSWORD_FILE = "broker-password"
# The TLS files beside the config, by the broker key that names them; the key is a secret.
TLS_FILES = {"ca_file": "ca.pem", "cert_file": "client.crt", "key_file": "client.key"}
SECRET_FILES = frozenset({PASSWORD_FILE, TLS_FILES["key_file"]})
MAX_TEMPLATE_BYTES = 1024 * 1024
MAX_TLS_FILE_BYTES = 1024 * 1024
CABINET_PLACEHOLDER = "{id}"


class TemplateError(ValueError):
    """The template (or a TLS file) cannot be used: ``source`` names it, the message says why."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TlsSources:
    """The TLS files to copy to each cabinet; ``{id}`` in a path is the cabinet's id."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def given(self) -> dict[str, Path]:
        found = {"ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}
        return {key: path for key, path in found.items() if path is not None}


@dataclass(frozen=True, slots=True)
class Rendered:
    """What one cabinet's folder should hold: file name -> bytes (the password comes from central)."""

    files: dict[str, bytes]


class Template:
    def __init__(self, path: Path, document: dict[str, Any]) -> None:
        self.path = path
        self.document = document

    @classmethod
    def load(cls, path: Path) -> Template:
        shown = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TemplateError(shown, f"cannot read it ({exc.strerror or exc})") from exc
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise TemplateError(shown, f"is over {MAX_TEMPLATE_BYTES} bytes: is it an agent config?")
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TemplateError(shown, f"not valid TOML: {exc}") from exc
        broker = document.get("broker", {})
        if not isinstance(broker, dict):
            raise TemplateError(shown, "[broker] must be a table")
        if "password" in broker or _url_has_password(broker.get("url")):
            raise TemplateError(
                shown, "broker holds a password: remove it (each cabinet gets its own, from central)"
            )
        for key in ("cabinet", "lighting"):
            if not isinstance(document.get(key, {}), dict):
                raise TemplateError(shown, f"[{key}] must be a table")
        return cls(path, document)

    def render(self, spec: CabinetSpec, *, broker_url: str | None, tls: TlsSources) -> Rendered:
        """The cabinet's files; raises TemplateError when a TLS file cannot be read."""
        doc = copy.deepcopy(self.document)
        doc = {"cabinet": {**doc.pop("cabinet", {}), "id": spec.cabinet}, **doc}
        broker = dict(doc.get("broker", {}))
        broker["username"] = spec.cabinet
        broker["password_file"] = PASSWORD_FILE
        if broker_url is not None:
            broker["url"] = broker_url
        files: dict[str, bytes] = {}
        for key, source in tls.given().items():
            broker[key] = TLS_FILES[key]
            files[TLS_FILES[key]] = _read_tls(Path(str(source).replace(CABINET_PLACEHOLDER, spec.cabinet)))
        doc["broker"] = broker
        if spec.devices:
            doc["devices"] = [dict(device) for device in spec.devices]
            # The template's list names the template's devices: the default (every device with a
            # relay point) fits the inventory's.
            if isinstance(doc.get("lighting"), dict):
                doc["lighting"].pop("devices", None)
        schedule = doc.get("lighting", {}).get("schedule")
        if isinstance(schedule, dict) and spec.latitude is not None and spec.longitude is not None:
            schedule["latitude"] = spec.latitude
            schedule["longitude"] = spec.longitude
        header = (
            f"# The agent config of cabinet {spec.cabinet}, made by `cityedge provision` from the"
            f" template {self.path.name}.\n# Change the template or the inventory and provision again"
            " rather than editing this file.\n\n"
        )
        files[CONFIG_FILE] = (header + dumps(doc)).encode("utf-8")
        return Rendered(files)


def _url_has_password(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        return parse_broker_url(url).password is not None
    except ValueError:
        return False  # the config's own check names a bad URL


def _read_tls(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_TLS_FILE_BYTES + 1)
    except OSError as exc:
        raise TemplateError(str(path), f"cannot read it ({exc.strerror or exc})") from exc
    if len(data) > MAX_TLS_FILE_BYTES:
        raise TemplateError(str(path), f"is over {MAX_TLS_FILE_BYTES} bytes: is it a PEM certificate?")
    if b"-----BEGIN " not in data:
        raise TemplateError(str(path), "is not PEM (no -----BEGIN line): convert it with openssl")
    return data
