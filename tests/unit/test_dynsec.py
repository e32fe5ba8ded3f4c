"""The dynamic-security commands and identities, without a broker (pure)."""

from __future__ import annotations

import orjson
import pytest

from gateway.adapters.mosquitto import dynsec
from gateway.adapters.mosquitto.service import new_password


def acl_topics(acls: list[dynsec.Acl], kind: dynsec.AclType) -> set[str]:
    return {a.topic for a in acls if a.acltype is kind and a.allow}


def test_device_role_allows_only_its_own_topics() -> None:
    acls = dynsec.device_acls("gps-1")
    assert acl_topics(acls, dynsec.AclType.PUBLISH_SEND) == {
        f"devices/gps-1/{c}" for c in ("telemetry", "events", "heartbeat", "status", "replies")
    }
    assert acl_topics(acls, dynsec.AclType.SUBSCRIBE_LITERAL) == {"devices/gps-1/commands"}
    assert acl_topics(acls, dynsec.AclType.PUBLISH_RECEIVE) == {"devices/gps-1/commands"}
    assert all("+" not in a.topic and "#" not in a.topic for a in acls)


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x" * 65])
def test_wildcards_or_levels_in_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        dynsec.device_acls(bad)
    if bad and len(bad) < 65:
        with pytest.raises(ValueError, match="invalid"):
            dynsec.operator_acls(bad)


def test_operator_role_reads_one_tenants_alarms() -> None:
    acls = dynsec.operator_acls("kommun-a")
    assert {(a.acltype, a.topic) for a in acls} == {
        (dynsec.AclType.SUBSCRIBE_LITERAL, "tenants/kommun-a/alarms"),
        (dynsec.AclType.PUBLISH_RECEIVE, "tenants/kommun-a/alarms"),
    }


def test_provisioning_replaces_leftovers_and_binds_the_client_id() -> None:
    commands = dynsec.provision_device("gps-1", "pw")
    assert [c.name for c in commands] == ["deleteClient", "deleteRole", "createRole",
                                          "createClient"]  # fmt: skip
    assert commands[0].tolerate == {dynsec.CLIENT_NOT_FOUND}
    create = commands[-1].body
    assert create["username"] == create["clientid"] == "gps-1"
    assert create["roles"] == [{"rolename": "device/gps-1"}]


def test_suspending_takes_the_role_before_disabling() -> None:
    names = [c.name for c in dynsec.suspend_device("gps-1")]
    assert names == ["removeClientRole", "disableClient"]
    assert [c.name for c in dynsec.reinstate_device("gps-1")] == [
        "removeClientRole", "addClientRole", "enableClient"
    ]  # fmt: skip


def test_default_access_denies_publish_subscribe_and_receive() -> None:
    body = dynsec.bootstrap("gw", "pw")[0].body
    assert body["command"] == "setDefaultACLAccess"
    allowed = {a["acltype"]: a["allow"] for a in body["acls"]}
    assert allowed == {"publishClientSend": False, "publishClientReceive": False,
                       "subscribe": False, "unsubscribe": True}  # fmt: skip


def test_request_tags_each_command_and_matches_its_answer() -> None:
    commands = [dynsec.get_client("a"), dynsec.delete_client("b", missing_ok=True)]
    sent = orjson.loads(dynsec.request(commands, "c0ffee"))
    assert [c["correlationData"] for c in sent["commands"]] == ["c0ffee:0", "c0ffee:1"]
    answer = orjson.dumps({"responses": [
        {"command": "getClient", "correlationData": "c0ffee:0", "data": {}},
        {"command": "deleteClient", "error": "Client not found", "correlationData": "c0ffee:1"},
    ]})  # fmt: skip
    assert dynsec.parse_response(answer, "other") is None
    assert dynsec.parse_response(b"not json", "c0ffee") is None
    responses = dynsec.parse_response(answer, "c0ffee")
    assert responses is not None
    assert len(dynsec.check(commands, responses)) == 2  # "not found" tolerated


def test_a_refused_command_is_a_clear_error() -> None:
    commands = [dynsec.create_client("gps-1", "pw")]
    with pytest.raises(dynsec.DynsecError, match="createClient 'gps-1': Client already exists"):
        dynsec.check(commands, [{"command": "createClient", "error": "Client already exists"}])
    with pytest.raises(dynsec.DynsecError, match="expected 1 answers"):
        dynsec.check(commands, [])


def test_passwords_have_256_bits() -> None:
    first, second = new_password(), new_password()
    assert len(first) == 43 and first != second


@pytest.mark.parametrize(
    ("roles", "taken"),
    [
        (None, False),  # not found
        ([], False),  # a leftover device client without its role
        ([{"rolename": "device/gps-1"}], False),  # a leftover device client
        ([{"rolename": "wg-gateway"}], True),
        ([{"rolename": "admin"}], True),
        ([{"rolename": "operator/kommun-a"}], True),
        ([{"rolename": "device/gps-1"}, {"rolename": "wg-gateway"}], True),
    ],
)
def test_a_device_may_not_take_over_a_service_identity(roles, taken) -> None:
    answer = {"command": "getClient", "error": "Client not found"} if roles is None else {
        "command": "getClient", "data": {"client": {"username": "gps-1", "roles": roles}}}
    assert dynsec.held_by_another_identity("gps-1", answer) is taken
