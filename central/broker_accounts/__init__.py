"""Central keeps the fleet broker's accounts, from its cabinet registry.

    template   the shipped dynamic-security template, PBKDF2 hashes, rendering the plugin's file
    rules      the template's ACLs evaluated as the plugin does (for the HTTP hook)
    control    a client of the plugin's control topic ($CONTROL/dynamic-security/v1)
    sync       the diff between the broker's accounts and the registry's (pure)
    service    live changes (credentials issued, cabinet revoked) and the periodic sync
    hook       POST /broker/auth and /broker/authz for a cluster broker (EMQX's HTTP shape)
    export     the registry's accounts for another broker (mosquitto-dynsec, json)

Mosquitto's plugin takes plaintext passwords on its control topic and hashes in its file; central
never keeps a plaintext password. So: a cabinet's account is created live at the one moment its
password exists (when its credentials are issued), revoking deletes it live (the plugin disconnects
it), and after a broker restart the file rendered from the registry holds every hash.
"""

from central.broker_accounts.control import DynsecControl, DynsecError
from central.broker_accounts.hook import BrokerHook, RateLimiter
from central.broker_accounts.service import BrokerAccounts, desired_cabinets, render_document
from central.broker_accounts.sync import DesiredCabinet, SyncPlan, plan_sync
from central.broker_accounts.template import AccountsError, AccountsTemplate, PasswordHash

__all__ = [
    "AccountsError",
    "AccountsTemplate",
    "BrokerAccounts",
    "BrokerHook",
    "DesiredCabinet",
    "DynsecControl",
    "DynsecError",
    "PasswordHash",
    "RateLimiter",
    "SyncPlan",
    "desired_cabinets",
    "plan_sync",
    "render_document",
]
