"""Mosquitto dynamic-security commands and the identities of welfare-gateway (pure, no I/O).

Commands are JSON objects published to ``$CONTROL/dynamic-security/v1``; the plugin answers
on ``$CONTROL/dynamic-security/v1/response`` with one entry per command, in order, each
echoing the command's ``correlationData`` (a JSON field, not the MQTT v5 property: the
plugin publishes every answer to the fixed response topic).

Identities:

- a device ``{id}`` is a dynsec client with username and client id ``{id}`` and its own
  role ``device/{id}``: publish only to ``devices/{id}/telemetry|events|heartbeat|status|
  replies``, subscribe and receive only ``devices/{id}/commands``. Per-device roles, not one
  role with ``%u`` patterns: Mosquitto 2.0's dynamic security plugin does not substitute
  ``%u``/``%c`` in role ACLs (tested against 2.0.11: such a role refuses even the device's
  own topic), and an explicit role can be read back with ``getRole`` when auditing.
- an operator client of tenant ``{t}`` gets role ``operator/{t}``: subscribe to and
  receive ``tenants/{t}/alarms`` only.
- the gateway has role ``wg-gateway``: subscribe to (also shared) and receive
  ``devices/#``, publish
  ``devices/+/commands``, ``tenants/+/alarms`` and ``tenants/+/payer-changes``; and for
  API processes (same identity) subscribe to and receive ``tenants/+/alarms``, and the
  control channel ``gateway/#`` (publish, subscribe, receive).
- the default access is deny for publishing, subscribing and receiving; unsubscribing stays
  allowed (it can only reduce what a client gets).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from firmware_contracts.topics import (
    DEVICE_PUBLISHED,
    Channel,
    device_topic,
    is_valid_device_id,
    tenant_alarms_topic,
)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"

GATEWAY_ROLE = "wg-gateway"
CLIENT_NOT_FOUND = "Client not found"
ROLE_NOT_FOUND = "Role not found"
ROLE_EXISTS = "Role already exists"
ACL_EXISTS = "ACL with this topic already exists"
CLIENT_EXISTS = "Client already exists"


class AclType(StrEnum):
    PUBLISH_SEND = "publishClientSend"
    PUBLISH_RECEIVE = "publishClientReceive"
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    SUBSCRIBE_PATTERN = "subscribePattern"
    UNSUBSCRIBE_LITERAL = "unsubscribeLiteral"
    UNSUBSCRIBE_PATTERN = "unsubscribePattern"


@dataclass(frozen=True)
class Acl:
    acltype: AclType
    topic: str
    allow: bool = True
    priority: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "acltype": self.acltype.value,
            "topic": self.topic,
            "priority": self.priority,
            "allow": self.allow,
        }


@dataclass(frozen=True)
class Command:
    """One dynsec command; ``tolerate`` lists plugin errors that count as success
    (e.g. "Client not found" when deleting what may already be gone)."""

    body: dict[str, Any]
    tolerate: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return str(self.body["command"])

    @property
    def subject(self) -> str:
        """What the command is about (a username or role name), for error messages."""
        return str(self.body.get("username") or self.body.get("rolename") or "")


class DynsecError(Exception):
    """The plugin refused a command (or answered something we cannot read)."""

    def __init__(self, command: str, subject: str, error: str) -> None:
        what = f"{command} {subject!r}" if subject else command
        super().__init__(f"broker refused {what}: {error}")
        self.command = command
        self.subject = subject
        self.error = error


# --- command builders --------------------------------------------------------------------


def create_client(
    username: str,
    password: str,
    *,
    clientid: str | None = None,
    roles: Sequence[str] = (),
    textname: str | None = None,
) -> Command:
    body: dict[str, Any] = {"command": "createClient", "username": username, "password": password}
    if clientid is not None:
        body["clientid"] = clientid
    if textname is not None:
        body["textname"] = textname
    if roles:
        body["roles"] = [{"rolename": r} for r in roles]
    return Command(body)


def delete_client(username: str, *, missing_ok: bool = False) -> Command:
    return Command(
        {"command": "deleteClient", "username": username},
        frozenset({CLIENT_NOT_FOUND}) if missing_ok else frozenset(),
    )


def enable_client(username: str, *, missing_ok: bool = False) -> Command:
    return Command(
        {"command": "enableClient", "username": username},
        frozenset({CLIENT_NOT_FOUND}) if missing_ok else frozenset(),
    )


def disable_client(username: str, *, missing_ok: bool = False) -> Command:
    """Refuses new logins and disconnects the client's live sessions at once."""
    return Command(
        {"command": "disableClient", "username": username},
        frozenset({CLIENT_NOT_FOUND}) if missing_ok else frozenset(),
    )


def set_client_password(username: str, password: str) -> Command:
    return Command({"command": "setClientPassword", "username": username, "password": password})


def get_client(username: str, *, missing_ok: bool = False) -> Command:
    return Command(
        {"command": "getClient", "username": username},
        frozenset({CLIENT_NOT_FOUND}) if missing_ok else frozenset(),
    )


def create_role(rolename: str, acls: Iterable[Acl] = (), *, exists_ok: bool = False) -> Command:
    return Command(
        {"command": "createRole", "rolename": rolename, "acls": [a.as_json() for a in acls]},
        frozenset({ROLE_EXISTS}) if exists_ok else frozenset(),
    )


def delete_role(rolename: str, *, missing_ok: bool = False) -> Command:
    return Command(
        {"command": "deleteRole", "rolename": rolename},
        frozenset({ROLE_NOT_FOUND}) if missing_ok else frozenset(),
    )


def get_role(rolename: str) -> Command:
    return Command({"command": "getRole", "rolename": rolename})


def add_role_acl(rolename: str, acl: Acl, *, exists_ok: bool = False) -> Command:
    return Command(
        {"command": "addRoleACL", "rolename": rolename, **acl.as_json()},
        frozenset({ACL_EXISTS}) if exists_ok else frozenset(),
    )


def add_client_role(username: str, rolename: str, priority: int | None = None) -> Command:
    body: dict[str, Any] = {"command": "addClientRole", "username": username, "rolename": rolename}
    if priority is not None:
        body["priority"] = priority
    return Command(body)


def remove_client_role(username: str, rolename: str, *, missing_ok: bool = False) -> Command:
    return Command(
        {"command": "removeClientRole", "username": username, "rolename": rolename},
        frozenset({CLIENT_NOT_FOUND, ROLE_NOT_FOUND}) if missing_ok else frozenset(),
    )


def set_default_acl_access(
    *, publish_send: bool, publish_receive: bool, subscribe: bool, unsubscribe: bool
) -> Command:
    acls = [
        {"acltype": "publishClientSend", "allow": publish_send},
        {"acltype": "publishClientReceive", "allow": publish_receive},
        {"acltype": "subscribe", "allow": subscribe},
        {"acltype": "unsubscribe", "allow": unsubscribe},
    ]
    return Command({"command": "setDefaultACLAccess", "acls": acls})


# --- request and response ----------------------------------------------------------------


def request(commands: Sequence[Command], correlation: str) -> bytes:
    """The payload for ``CONTROL_TOPIC``: each command tagged ``{correlation}:{index}``."""
    tagged = [{**c.body, "correlationData": f"{correlation}:{i}"} for i, c in enumerate(commands)]
    return orjson.dumps({"commands": tagged})


def parse_response(payload: bytes, correlation: str) -> list[dict[str, Any]] | None:
    """The plugin's answers if ``payload`` answers our request ``correlation``, else None
    (other admin sessions' answers arrive on the same topic)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    responses = data.get("responses") if isinstance(data, dict) else None
    if not isinstance(responses, list) or not responses:
        return None
    first = responses[0]
    if not isinstance(first, dict) or first.get("correlationData") != f"{correlation}:0":
        return None
    return [r if isinstance(r, dict) else {} for r in responses]


def check(commands: Sequence[Command], responses: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raise :class:`DynsecError` for the first refused command; return the answers."""
    if len(responses) != len(commands):
        raise DynsecError("request", "", f"expected {len(commands)} answers, got {len(responses)}")
    for command, response in zip(commands, responses, strict=True):
        if response.get("command") != command.name:
            raise DynsecError(command.name, command.subject, "answer out of order")
        error = response.get("error")
        if error is not None and error not in command.tolerate:
            raise DynsecError(command.name, command.subject, str(error))
    return list(responses)


# --- the identities of welfare-gateway ---------------------------------------------------


def device_role(device_id: str) -> str:
    return f"device/{device_id}"


def device_acls(device_id: str) -> list[Acl]:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    commands = device_topic(device_id, Channel.COMMANDS)
    publish = [
        Acl(AclType.PUBLISH_SEND, device_topic(device_id, ch)) for ch in sorted(DEVICE_PUBLISHED)
    ]
    return [
        *publish,
        Acl(AclType.SUBSCRIBE_LITERAL, commands),
        Acl(AclType.PUBLISH_RECEIVE, commands),
    ]


def operator_role(tenant_id: str) -> str:
    return f"operator/{tenant_id}"


def operator_acls(tenant_id: str) -> list[Acl]:
    if not tenant_id or any(c in tenant_id for c in "/+#"):
        raise ValueError(f"invalid tenant id {tenant_id!r}")
    topic = tenant_alarms_topic(tenant_id)
    return [Acl(AclType.SUBSCRIBE_LITERAL, topic), Acl(AclType.PUBLISH_RECEIVE, topic)]


def gateway_acls() -> list[Acl]:
    return [
        Acl(AclType.SUBSCRIBE_PATTERN, "devices/#"),
        # Mosquitto 2.0 checks a shared subscription's ACL on the whole "$share/..." filter.
        Acl(AclType.SUBSCRIBE_PATTERN, "$share/+/devices/#"),
        Acl(AclType.PUBLISH_RECEIVE, "devices/#"),
        Acl(AclType.PUBLISH_SEND, "devices/+/commands"),
        Acl(AclType.PUBLISH_SEND, "tenants/+/alarms"),
        Acl(AclType.PUBLISH_SEND, "tenants/+/payer-changes"),  # gateway.worker.payer
        # API processes follow the alarms for their streams and talk to the workers
        # (gateway.control.protocol); both run with the gateway's identity
        Acl(AclType.SUBSCRIBE_PATTERN, "tenants/+/alarms"),
        Acl(AclType.PUBLISH_RECEIVE, "tenants/+/alarms"),
        Acl(AclType.SUBSCRIBE_PATTERN, "gateway/#"),
        Acl(AclType.PUBLISH_RECEIVE, "gateway/#"),
        Acl(AclType.PUBLISH_SEND, "gateway/#"),
    ]


def held_by_another_identity(device_id: str, answer: dict[str, Any]) -> bool:
    """True when ``getClient(device_id)`` found a client that is not a device's (the
    gateway, the admin, an operator): registering a device of that name must not replace
    it. A leftover device client (role ``device/{id}`` or none) may be replaced."""
    client = (answer.get("data") or {}).get("client")
    if not isinstance(client, dict):
        return False  # not found
    roles = {r.get("rolename") for r in client.get("roles") or [] if isinstance(r, dict)}
    return not roles <= {device_role(device_id)}


def provision_device(device_id: str, password: str) -> list[Command]:
    """Create (or re-create, replacing a leftover) the device's role and client. The client
    id is bound to the device id, so one device cannot take over another's session."""
    role = device_role(device_id)
    return [
        delete_client(device_id, missing_ok=True),
        delete_role(role, missing_ok=True),
        create_role(role, device_acls(device_id)),
        create_client(device_id, password, clientid=device_id, roles=[role]),
    ]


def suspend_device(device_id: str) -> list[Command]:
    """Returned device: no rights, no password logins, live sessions disconnected now; the
    client and role stay for re-issue. The role is taken away first because a certificate
    login (``use_identity_as_username``) skips the password check and so ignores the
    disabled flag: without its role such a session may do nothing (default deny)."""
    return [
        remove_client_role(device_id, device_role(device_id), missing_ok=True),
        disable_client(device_id, missing_ok=True),
    ]


def reinstate_device(device_id: str) -> list[Command]:
    """Re-issued device: its role back (removed first: adding a role the client already
    holds is an error in Mosquitto 2.0) and logins allowed again."""
    role = device_role(device_id)
    return [
        remove_client_role(device_id, role),
        add_client_role(device_id, role),
        enable_client(device_id),
    ]


def remove_device(device_id: str) -> list[Command]:
    """Retired device: its client (live session disconnected) and role are deleted."""
    return [
        delete_client(device_id, missing_ok=True),
        delete_role(device_role(device_id), missing_ok=True),
    ]


def provision_operator(tenant_id: str, username: str, password: str) -> list[Command]:
    role = operator_role(tenant_id)
    return [
        create_role(role, operator_acls(tenant_id), exists_ok=True),
        create_client(username, password, roles=[role], textname=f"operator of {tenant_id}"),
    ]


def bootstrap(gateway_username: str, gateway_password: str) -> list[Command]:
    """Default deny, and the gateway's own identity. Re-running it re-creates the gateway
    client with the new password (its live sessions are disconnected and reconnect), and
    its role with this version's ACLs (an upgrade that adds topics re-runs it)."""
    return [
        set_default_acl_access(
            publish_send=False, publish_receive=False, subscribe=False, unsubscribe=True
        ),
        create_role(GATEWAY_ROLE, gateway_acls(), exists_ok=True),
        # a role made by an earlier version gets this version's topics too
        *(add_role_acl(GATEWAY_ROLE, acl, exists_ok=True) for acl in gateway_acls()),
        delete_client(gateway_username, missing_ok=True),
        create_client(
            gateway_username, gateway_password, roles=[GATEWAY_ROLE], textname="welfare-gateway"
        ),
    ]
