"""The client's certificate and private key for a secured channel, read and checked when the driver is
built: a missing, unreadable or malformed file is a config error naming the key and the fix, found by
``agent check``, not a failed connection at three in the morning.

The certificate's application URI (its SubjectAltName URI) becomes the client's: controllers refuse a
client whose announced URI differs from its certificate's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from protocols.opcua.config import OpcuaConfigError, OpcuaDevice

MAX_FILE = 64 * 1024


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    certificate_der: bytes
    private_key_der: bytes = b""
    application_uri: str | None = None
    server_certificate_der: bytes | None = None

    def __repr__(self) -> str:
        return f"ClientIdentity(application_uri={self.application_uri!r})"


def load_identity(device: OpcuaDevice, config_dir: Path) -> ClientIdentity | None:
    """The certificates and key of a secured device; None for an unsecured one."""
    if device.certificate is None or device.private_key is None:
        return None
    certificate = _certificate(device, config_dir, "certificate", device.certificate)
    server = device.server_certificate
    return ClientIdentity(
        certificate_der=certificate.public_bytes(serialization.Encoding.DER),
        private_key_der=_private_key(device, config_dir),
        application_uri=_application_uri(certificate),
        server_certificate_der=(
            _certificate(device, config_dir, "server_certificate", server).public_bytes(
                serialization.Encoding.DER
            )
            if server
            else None
        ),
    )


def _read(device: OpcuaDevice, config_dir: Path, key: str, name: str, *, secret: bool = False) -> bytes:
    path = device.resolve(config_dir, name)
    try:
        # O_NONBLOCK: a FIFO would block open() until a writer comes; it is refused below instead.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise OpcuaConfigError(
                    device.name, key, f"{path} is not a regular file: give a PEM or DER file"
                )
            if secret and mode & 0o007:
                raise OpcuaConfigError(
                    device.name,
                    key,
                    f"{path}: other users can read it (mode {stat.S_IMODE(mode):04o}): `chmod 600 {path}`",
                )
            content = file.read(MAX_FILE + 1)
    except OSError as exc:
        raise OpcuaConfigError(device.name, key, f"cannot read {path} ({exc.strerror or exc})") from exc
    if len(content) > MAX_FILE:
        raise OpcuaConfigError(device.name, key, f"{path} is over 64 KiB: give one PEM or DER file")
    return content


def _certificate(device: OpcuaDevice, config_dir: Path, key: str, name: str) -> x509.Certificate:
    content = _read(device, config_dir, key, name)
    try:
        if content.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(content)
        return x509.load_der_x509_certificate(content)
    except ValueError as exc:
        raise OpcuaConfigError(
            device.name, key, f"{name} is no X.509 certificate (expected PEM or DER)"
        ) from exc


def _private_key(device: OpcuaDevice, config_dir: Path) -> bytes:
    assert device.private_key is not None
    content = _read(device, config_dir, "private_key", device.private_key, secret=True)
    try:
        if content.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(content, password=None)
        else:
            key = serialization.load_der_private_key(content, password=None)
    except (ValueError, TypeError) as exc:
        # Never the key's content in the message: only what is wrong with it.
        raise OpcuaConfigError(
            device.name,
            "private_key",
            f"{device.private_key} is no unencrypted private key (expected PEM or DER)",
        ) from exc
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _application_uri(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
