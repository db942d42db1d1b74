"""The ``[broker_accounts]`` section of central's config, with its secret files read and checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from central.config import BrokerAccountsSection, ConfigError
from protocols.fleet.broker_url import SecretFileError, read_secret_file

MIN_HOOK_SECRET_CHARS = 16


@dataclass(frozen=True, slots=True)
class AccountsSettings:
    admin_password: str | None = field(default=None, repr=False)  # None: the accounts are not kept
    dynsec_file: Path | None = None
    sync_interval_s: float = 60.0
    hook_secret: str | None = field(default=None, repr=False)  # None: no /broker/auth, /broker/authz
    hook_rate_per_s: float = 1000.0
    hook_burst: int = 10_000


def _secret(shown: str, key: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return read_secret_file(Path(value))
    except SecretFileError as exc:
        raise ConfigError(shown, f"broker_accounts.{key}", str(exc)) from None


def accounts_settings(section: BrokerAccountsSection, shown: str = "central.toml") -> AccountsSettings:
    """Read the section's secret files; ConfigError naming the file, the key and the fix."""
    hook_secret = _secret(shown, "hook_secret_file", section.hook_secret_file)
    if hook_secret is not None and len(hook_secret) < MIN_HOOK_SECRET_CHARS:
        raise ConfigError(
            shown,
            "broker_accounts.hook_secret_file",
            f"the secret is shorter than {MIN_HOOK_SECRET_CHARS} characters: make a long random one"
            " (openssl rand -hex 32)",
        )
    return AccountsSettings(
        admin_password=_secret(shown, "admin_password_file", section.admin_password_file),
        dynsec_file=Path(section.dynsec_file) if section.dynsec_file else None,
        sync_interval_s=section.sync_interval_s,
        hook_secret=hook_secret,
        hook_rate_per_s=section.hook_rate_per_s,
        hook_burst=section.hook_burst,
    )
