"""The control channel's messages, the API's alarm hub and reply collection (no I/O)."""

from __future__ import annotations

import time

import pytest

from gateway.control import protocol as p
from gateway.control.alarm_hub import AlarmHub
from gateway.control.worker_link import _Pending


def test_request_and_reply_round_trip() -> None:
    r = p.Request("c1", p.replies_topic("api-1"), p.ACKNOWLEDGE, "kommun-a",
                  {"alarm_id": "x", "actor": "op"}, None)  # fmt: skip
    assert p.decode_request(p.encode_request(r)) == r
    reply = p.Reply("c1", "w1", True, 409, None, "already acknowledged")
    assert p.decode_reply(p.encode_reply(reply)) == reply
    assert p.decode_presence(p.presence("w1", True)) is True
    assert p.decode_presence(p.presence("w1", False)) is False
    assert p.decode_presence(b"") is False  # a cleared retained message
    assert p.tenant_of_alarms_topic("tenants/kommun-a/alarms") == "kommun-a"
    assert p.tenant_of_alarms_topic("gateway/workers/w1") is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b'{"v": 2}', "version 1"),
        (b'{"v":1,"id":"c","reply_to":"gateway/control/replies/a","op":"reboot","tenant":"t"}',
         "unknown op"),
        (b'{"v":1,"id":"c","reply_to":"devices/x/commands","op":"alarm","tenant":"t"}',
         "reply_to"),  # a worker never answers onto a device's topic
        (b'{"v":1,"id":"c","reply_to":"gateway/control/replies/a","op":"alarm","tenant":""}',
         "tenant"),
        (b'{"v":1,"id":"c","reply_to":"gateway/control/replies/a","op":"alarm","tenant":"t",'
         b'"args":[1]}', "args"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError, match=reason):
        p.decode_request(payload)


def test_reply_collection_held_first_or_everyone() -> None:
    held = _Pending({"w1", "w2"}, gather=False)
    held.add(p.Reply("c", "w1", False))
    assert not held.done.is_set()  # w2 may hold it
    held.add(p.Reply("c", "w2", True))
    assert held.done.is_set()

    nobody = _Pending({"w1", "w2"}, gather=False)
    nobody.add(p.Reply("c", "w2", False))
    nobody.add(p.Reply("c", "w1", False))
    assert nobody.done.is_set() and not any(r.held for r in nobody.replies)

    gathered = _Pending({"w1", "w2"}, gather=True)
    gathered.add(p.Reply("c", "w1", True, body=[1]))
    assert not gathered.done.is_set()  # a snapshot needs every worker's part
    gathered.add(p.Reply("c", "w2", True, body=[2]))
    assert gathered.done.is_set()

    addressed = _Pending(None, gather=False)
    addressed.add(p.Reply("c", "w2", True))
    assert addressed.done.is_set()


def test_hub_catch_up_within_this_process_only() -> None:
    hub = AlarmHub(ring_size=3, first_id=1000)
    assert hub.latest() == 999
    assert hub.since("a", 999) == ([], True)  # the cursor of an empty snapshot
    for n in range(2):
        hub.publish("a", b"a%d" % n)
    hub.publish("b", b"b0")
    events, complete = hub.since("a", 1000)
    assert ([e.data for e in events], complete) == ([b"a1"], True)
    fresh, complete = hub.since("a", 0)
    assert ([e.data for e in fresh], complete) == ([b"a0", b"a1"], True)
    # an id this process never issued: from a replica, or from before a restart
    assert hub.since("a", 5000) == ([], False)
    assert hub.since("a", 17) == ([], False)
    # the ring dropped events after the client's id
    for n in range(2, 6):
        hub.publish("a", b"a%d" % n)
    events, complete = hub.since("a", 1000)
    assert [e.data for e in events] == [b"a3", b"a4", b"a5"] and complete is False


def test_hub_ids_start_at_the_process_start_in_microseconds() -> None:
    """So a later process's ids lie above an earlier one's (unless the earlier one issued
    more than a million events a second)."""
    before = time.time_ns() // 1000
    hub = AlarmHub()
    after = time.time_ns() // 1000
    assert before <= hub.first_id <= after
    assert hub.first_id < 2**53  # an exact number in the browser's JavaScript


def test_worker_and_api_alone_need_a_shared_database_and_broker() -> None:
    from gateway.config.settings import Settings, SettingsError
    from gateway.entrypoints.runtime import split_endpoints

    with pytest.raises(SettingsError, match="need database_url and mqtt_url"):
        split_endpoints(Settings(database_url="postgresql://db/wg"))
    given = Settings(database_url="postgresql://gw:pw@db/wg", mqtt_url="mqtt://broker:1883",
                     api_db_password="api-pw")  # fmt: skip
    ep = split_endpoints(given)
    assert ep.mqtt_url == "mqtt://broker:1883"
    assert ep.api_database_url.startswith("postgresql://wg_api:api-pw@db")


def test_the_responder_has_a_handler_for_every_operation_of_the_protocol() -> None:
    from typing import Any, cast

    from gateway.control.responder import ControlResponder

    responder = ControlResponder(
        "mqtt://127.0.0.1:1", "w1", cast(Any, None), cast(Any, None), cast(Any, None)
    )
    assert set(responder._handlers) == set(p.OPS)
