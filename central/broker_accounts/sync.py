"""What to change in the broker so that its accounts are the registry's: a pure diff (``plan_sync``).

The broker's side is what the plugin lists (clients with their client id, description, roles,
groups and disabled flag; roles with their ACLs; the default access). The registry's side is each
live cabinet's credential (``PasswordHash``) and when its entry last changed.

- A cabinet account (a client holding a ``cityedge-cabinet-*`` role, or named like a registered
  cabinet) that the registry does not hold live is deleted, and its role too: revoked at once.
- A registered cabinet whose account carries another credential tag than the registry's hash (its
  credentials were issued again while the broker could not be told) is deleted: fail closed, the old
  password stops working. The plugin takes only plaintext passwords, which central does not keep, so
  the new one reaches the broker only by the rendered file and a restart (or by issuing new ones).
  An entry changed in the last ``grace_ms`` is left for the next round: its change may be on its way.
- A registered cabinet the broker lacks is reported ``missing``, for the same reason.
- Client ids, roles, groups, disabled flags, the roles' ACLs and the default access are put back
  to the template's.
- Any other account (one an operator made by hand) is left as it is and reported ``unmanaged``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from central.broker_accounts.template import AccountsTemplate, PasswordHash, credential_tag_text


@dataclass(frozen=True, slots=True)
class DesiredCabinet:
    credential: PasswordHash
    updated_ms: int


@dataclass
class SyncPlan:
    commands: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)  # accounts deleted: not live in the registry
    stale: list[str] = field(default_factory=list)  # deleted: the broker held another credential
    deferred: list[str] = field(default_factory=list)  # another credential, but changed just now
    repaired: list[str] = field(default_factory=list)  # client id, roles, groups, flags put back
    roles: list[str] = field(default_factory=list)  # roles created or whose ACLs were put back
    missing: list[str] = field(default_factory=list)  # registered, absent from the broker
    unmanaged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [
            f"{len(getattr(self, name))} {name}"
            for name in ("revoked", "stale", "repaired", "roles", "missing", "deferred", "unmanaged")
            if getattr(self, name)
        ]
        return ", ".join(parts) or "in sync"


def _acl_set(acls: Any) -> frozenset[tuple[str, str, bool, int]]:
    return frozenset(
        (str(a.get("acltype")), str(a.get("topic")), bool(a.get("allow", False)), int(a.get("priority", 0)))
        for a in (acls if isinstance(acls, list) else [])
        if isinstance(a, dict)
    )


def _role_names(client: Mapping[str, Any]) -> set[str]:
    roles = client.get("roles")
    return {str(r.get("rolename")) for r in (roles if isinstance(roles, list) else []) if isinstance(r, dict)}


def _plan_roles(
    template: AccountsTemplate,
    roles: Sequence[Mapping[str, Any]],
    default_access: Mapping[str, bool],
    desired: Mapping[str, DesiredCabinet],
    plan: SyncPlan,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Commands putting the default access and the roles right; the cabinet roles nobody may hold."""
    commands: list[dict[str, Any]] = []
    wanted_default = template.default_acl_access()
    if any(default_access.get(kind) != allow for kind, allow in wanted_default.items()):
        acls = [{"acltype": kind, "allow": allow} for kind, allow in wanted_default.items()]
        commands.append({"command": "setDefaultACLAccess", "acls": acls})
    wanted = {str(r["rolename"]): r for r in template.fixed_roles}
    for cabinet in desired:
        wanted.update({str(r["rolename"]): r for r in template.cabinet_roles(cabinet)})
    held = {str(r.get("rolename")): r for r in roles}
    for name, role in sorted(wanted.items()):
        if name not in held:
            commands.append({"command": "createRole", **role})
        elif _acl_set(held[name].get("acls")) != _acl_set(role["acls"]):
            commands.append({"command": "modifyRole", "rolename": name, "acls": role["acls"]})
        else:
            continue
        plan.roles.append(name)
    prefix = template.cabinet_role_prefix
    return commands, sorted(n for n in held if n.startswith(prefix) and n not in wanted)


def _plan_fixed(template: AccountsTemplate, username: str, client: Mapping[str, Any]) -> list[dict[str, Any]]:
    wanted = {str(r["rolename"]) for r in template.roles_of(username)}
    if _role_names(client) == wanted and not client.get("groups"):
        return []
    roles = [{"rolename": r} for r in sorted(wanted)]
    return [{"command": "modifyClient", "username": username, "roles": roles, "groups": []}]


def _plan_cabinet(
    template: AccountsTemplate, username: str, client: Mapping[str, Any], want: DesiredCabinet
) -> list[dict[str, Any]]:
    """Commands putting a cabinet account holding the registry's credential back to the template."""
    (wanted,) = template.cabinet_clients(username, want.credential)
    commands: list[dict[str, Any]] = []
    if (
        client.get("clientid") != wanted.get("clientid")
        or _role_names(client) != {str(r["rolename"]) for r in wanted["roles"]}
        or client.get("groups")
    ):
        commands.append(
            {
                "command": "modifyClient",
                "username": username,
                "clientid": wanted.get("clientid", ""),
                "roles": wanted["roles"],
                "groups": [],
            }
        )
    if client.get("disabled"):
        commands.append({"command": "enableClient", "username": username})
    return commands


def plan_sync(
    template: AccountsTemplate,
    *,
    clients: Sequence[Mapping[str, Any]],
    roles: Sequence[Mapping[str, Any]],
    default_access: Mapping[str, bool],
    desired: Mapping[str, DesiredCabinet],
    now_ms: int,
    grace_ms: int = 30_000,
) -> SyncPlan:
    plan = SyncPlan()
    prefix = template.cabinet_role_prefix
    role_commands, stale_roles = _plan_roles(template, roles, default_access, desired, plan)
    client_commands: list[dict[str, Any]] = []
    held_clients = {str(c.get("username")): c for c in clients}
    for username, client in sorted(held_clients.items()):
        if username in template.fixed_names:
            fixes = _plan_fixed(template, username, client)
        elif username not in desired and not any(r.startswith(prefix) for r in _role_names(client)):
            plan.unmanaged.append(username)
            continue
        elif (want := desired.get(username)) is None:
            fixes = [{"command": "deleteClient", "username": username}]
            plan.revoked.append(username)
        elif client.get("textdescription") != credential_tag_text(want.credential):
            if now_ms - want.updated_ms < grace_ms:
                plan.deferred.append(username)
                continue
            fixes = [{"command": "deleteClient", "username": username}]
            plan.stale.append(username)
        else:
            fixes = _plan_cabinet(template, username, client, want)
            if fixes:
                plan.repaired.append(username)
        if fixes and username in template.fixed_names:
            plan.repaired.append(username)
        client_commands += fixes
    plan.missing = sorted(set(desired) - set(held_clients))
    # Roles first (a client's roles must exist), then clients, then the roles nobody may hold.
    plan.commands = (
        role_commands + client_commands + [{"command": "deleteRole", "rolename": n} for n in stale_roles]
    )
    return plan
