"""The registry's broker accounts for another broker: ``cityedge central broker-accounts export``.

``mosquitto-dynsec``: the dynamic-security plugin's file (``render_document``), as Mosquitto loads it.

``json``: a neutral document for a broker that takes a file of accounts (EMQX's built-in database
import, VerneMQ's plugins) or a script that converts it:

    {"format": "cityedge-broker-accounts", "version": 1,
     "password_hash": "PBKDF2-HMAC-SHA512: hash = base64(pbkdf2(sha512, password, base64decode(salt),
                       iterations, 64 bytes))",
     "accounts": [{"cabinet": "cab-1", "username": "cab-1", "clientid": "cab-1",
                   "password_hash": {"algorithm": "pbkdf2-sha512", "iterations": 1000,
                                     "salt": "<base64, 12 bytes>", "hash": "<base64, 64 bytes>"},
                   "publish": ["cityedge/cab-1/status", "cityedge/cab-1/data"],
                   "subscribe": ["cityedge/cab-1/ack", "cityedge/cab-1/cmd"]}, ...]}

``publish`` lists topics (patterns in MQTT syntax) the account may publish to; ``subscribe`` lists the
exact filters it may subscribe to (no other filter, no wildcard, no ``$share``). Revoked cabinets
and cabinets without a credential are left out. No plaintext password exists to export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from central.broker_accounts.sync import DesiredCabinet
from central.broker_accounts.template import AccountsTemplate

ExportFormat = Literal["mosquitto-dynsec", "json"]
FORMAT_NAME = "cityedge-broker-accounts"
HASH_RULE = (
    "PBKDF2-HMAC-SHA512: hash = base64(pbkdf2(sha512, password, base64decode(salt), iterations, 64 bytes))"
)


def _topics(roles: list[dict[str, Any]], *kinds: str) -> list[str]:
    return [a["topic"] for r in roles for a in r["acls"] if a["acltype"] in kinds and a.get("allow")]


def export_json(template: AccountsTemplate, desired: Mapping[str, DesiredCabinet]) -> dict[str, Any]:
    accounts = []
    for cabinet in sorted(desired):
        credential = desired[cabinet].credential
        roles = template.cabinet_roles(cabinet)
        (client,) = template.cabinet_clients(cabinet, credential)
        accounts.append(
            {
                "cabinet": cabinet,
                "username": client["username"],
                "clientid": client.get("clientid"),
                "password_hash": {
                    "algorithm": "pbkdf2-sha512",
                    "iterations": credential.iterations,
                    "salt": credential.salt,
                    "hash": credential.password,
                },
                "publish": _topics(roles, "publishClientSend"),
                "subscribe": _topics(roles, "subscribeLiteral"),
            }
        )
    return {"format": FORMAT_NAME, "version": 1, "password_hash": HASH_RULE, "accounts": accounts}
