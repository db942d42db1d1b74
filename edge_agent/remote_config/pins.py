"""What a remote config may not change: who the cabinet is to its broker, and where it reads profiles.

A ``set_config`` comes from whoever holds an admin token at central. Were it free to change the
broker section, one stolen token could point a cabinet at another broker and have it send its
password there (or the first line of any file its user may read, named as ``password_file``), and
that broker would then confirm the trial. So a remote config keeps the installed ``[broker]``
credentials and TLS files as they are, and moves the cabinet only to a broker URL the installed
config lists in ``broker.remote_urls`` (set at the cabinet, by a technician). ``profiles_dir`` stays
too: a remote config naming another folder could have the agent read any TOML file and quote its
values back in the rejection. And a device that names a secret file (a password file, a certificate,
a private key) stays exactly as installed: a remote config re-addressing it, or adding a device that
names one, could have the agent send that file (the broker's password file, say) to a host of the
config's choosing. Devices without secrets are free.
"""

from __future__ import annotations

from typing import Any

from protocols.fleet.broker_url import parse_broker_url

DEFAULT_URL = "mqtt://127.0.0.1:1883"  # edge_agent.config.BrokerSection's default
PINNED_BROKER_KEYS = (
    "username",
    "password",
    "password_file",
    "ca_file",
    "cert_file",
    "key_file",
    "remote_urls",
)


def _table(document: dict[str, Any], key: str) -> dict[str, Any]:
    found = document.get(key, {})
    return found if isinstance(found, dict) else {}


def _shown(url: object) -> str:
    try:
        return str(parse_broker_url(str(url)))  # the password, if any, redacted
    except ValueError:
        return "(not a broker URL)"


def _names_a_secret(table: dict[str, Any]) -> bool:
    for key, value in table.items():
        if isinstance(value, dict) and _names_a_secret(value):
            return True
        if "password" in key or key.endswith(("_file", "_key")) or key in ("certificate", "private_key"):
            return True
    return False


def _devices(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = document.get("devices", [])
    tables = [d for d in found if isinstance(d, dict)] if isinstance(found, list) else []
    return {str(d.get("name")): d for d in tables}


def _device_change(installed: dict[str, Any], new: dict[str, Any]) -> str | None:
    before = _devices(installed)
    for name, table in _devices(new).items():
        if _names_a_secret(table) and before.get(name) != table:
            return (
                f"device {name!r} names a secret file (a password, certificate or key) and differs from"
                " the installed config's: a remote config may not add or change such a device (a"
                " technician does, at the cabinet)"
            )
    return None


def pinned_change(installed: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why ``new`` (a parsed TOML document) may not replace ``installed`` remotely, or None."""
    now, then = _table(installed, "broker"), _table(new, "broker")
    for key in PINNED_BROKER_KEYS:
        if now.get(key) != then.get(key):
            return (
                f"broker.{key} differs from the installed config's: a remote config may not change who"
                " the cabinet is to its broker (a technician changes it at the cabinet)"
            )
    if installed.get("profiles_dir") != new.get("profiles_dir"):
        return "profiles_dir differs from the installed config's: it changes only at the cabinet"
    device = _device_change(installed, new)
    if device is not None:
        return device
    url_now, url_new = now.get("url", DEFAULT_URL), then.get("url", DEFAULT_URL)
    allowed = now.get("remote_urls", [])
    if url_new != url_now and not (isinstance(allowed, list) and url_new in allowed):
        return (
            f"broker.url {_shown(url_new)}: a remote config may move the cabinet only to a broker its"
            " installed config lists in broker.remote_urls"
        )
    return None
