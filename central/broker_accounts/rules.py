"""Who may publish and subscribe where: the template's ACLs evaluated as the plugin evaluates them.

The HTTP hook (``central.broker_accounts.hook``) answers a cluster broker with these, so a broker
that asks central applies the very rules Mosquitto applies from the rendered file:

- ``publish``: the first ``publishClientSend`` ACL of the account's roles whose pattern matches the
  topic decides (highest priority first); none: denied (the template's default).
- ``subscribe``: a ``subscribeLiteral`` ACL matches a filter only when it is the same string (so
  ``cityedge/cab-1/#`` is not ``cityedge/cab-1/cmd``); a ``subscribePattern`` matches a filter that
  holds no wildcard and matches the pattern. No match: denied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from central.broker_accounts.template import AccountsTemplate

Action = Literal["publish", "subscribe"]
MAX_TOPIC_CHARS = 65_535  # MQTT's string limit


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching of a concrete ``topic`` (no wildcards) against ``pattern``."""
    if topic.startswith("$") != pattern.startswith("$"):
        return False  # $SYS/..., $CONTROL/... are not matched by a leading wildcard
    want, have = pattern.split("/"), topic.split("/")
    for index, level in enumerate(want):
        if level == "#":
            return index == len(want) - 1
        if index >= len(have) or (level != "+" and level != have[index]):
            return False
    return len(want) == len(have)


def _acls(roles: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    acls = [acl for role in roles for acl in role.get("acls", [])]
    return sorted(acls, key=lambda acl: -int(acl.get("priority", 0)))


def allowed(template: AccountsTemplate, username: str, topic: str, action: Action) -> bool:
    """Whether the account ``username`` may ``action`` on ``topic`` (a topic, or a filter to
    subscribe to), by the template's rules; callers check that the account exists."""
    if not topic or len(topic) > MAX_TOPIC_CHARS or "\x00" in topic:
        return False
    acls = _acls(template.roles_of(username))
    if action == "publish":
        if "+" in topic or "#" in topic:
            return False
        for acl in acls:
            if acl["acltype"] == "publishClientSend" and topic_matches(acl["topic"], topic):
                return bool(acl.get("allow", False))
        return bool(template.default_acl_access().get("publishClientSend", False))
    for acl in acls:
        if acl["acltype"] == "subscribeLiteral" and acl["topic"] == topic:
            return bool(acl.get("allow", False))
        if (
            acl["acltype"] == "subscribePattern"
            and "+" not in topic
            and "#" not in topic
            and topic_matches(acl["topic"], topic)
        ):
            return bool(acl.get("allow", False))
    return bool(template.default_acl_access().get("subscribe", False))
