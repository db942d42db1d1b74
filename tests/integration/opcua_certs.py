"""Self-signed certificates for secured OPC UA channels, made as a technician would with asyncua."""

from __future__ import annotations

import socket
from pathlib import Path


async def make_certificate(directory: Path, name: str, uri: str, *, server: bool) -> tuple[Path, Path]:
    """``<name>.der`` (certificate, SubjectAltName ``uri``) and ``<name>.pem`` (its key, mode 0600)."""
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key, cert = directory / f"{name}.pem", directory / f"{name}.der"
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    await setup_self_signed_certificate(key, cert, uri, socket.gethostname(), use, {})
    key.chmod(0o600)
    return cert, key
