"""The worker's MQTT session (gateway.adapters.mqtt.session) against a real Mosquitto:
a persistent session that acknowledges only when told, the broker's window, refusals in
words, keepalive both ways, a session taken over, and a broker that sends garbage."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from gateway.adapters.mqtt.connection import BrokerAddress
from gateway.adapters.mqtt.session import SessionError, SessionOptions, SubscriberSession
from tests.integration.harness import password_broker, publish, wait_for
from tests.integration.test_broker_access import GATEWAY, admin
from tests.services import Mosquitto

Received = list[tuple[str, bytes, int, bool, int]]


def _options(protocol: int = 5, **changes: object) -> SessionOptions:
    fields: dict[str, object] = {
        "client_id": "wg-session-test", "protocol": protocol, "keepalive_s": 30,
        "session_expiry_s": 600 if protocol == 5 else 0,
        "receive_maximum": 100 if protocol == 5 else None,
    }  # fmt: skip
    fields.update(changes)
    return SessionOptions(**fields)  # type: ignore[arg-type]


async def _open(
    url: str, options: SessionOptions, received: Received
) -> SubscriberSession:
    def on_publish(topic: str, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        received.append((topic, payload, qos, retain, mid))

    return await SubscriberSession.open(BrokerAddress.parse(url), options, on_publish)


@pytest.mark.parametrize("protocol", [4, 5])
async def test_what_is_not_acknowledged_comes_again_and_nothing_else(
    mosquitto: Mosquitto, protocol: int
) -> None:
    received: Received = []
    session = await _open(mosquitto.url, _options(protocol), received)
    await session.subscribe(["devices/+/telemetry"])
    await publish(mosquitto.url, [(f"devices/d{i}/telemetry", b"%d" % i) for i in range(10)])
    await wait_for(_at_least(received, 10), 10, "ten messages")
    assert [(t, p, q) for t, p, q, _r, _m in received] == [
        (f"devices/d{i}/telemetry", b"%d" % i, 1) for i in range(10)
    ]
    for *_, mid in received[:6]:
        session.ack(mid)  # the first six are done with; four are not
    await session.close()
    assert session.closed.done() and session.closed.exception() is None

    again: Received = []
    session = await _open(mosquitto.url, _options(protocol), again)
    try:
        assert session.session_present
        await wait_for(_at_least(again, 4), 10, "the four redelivered")
        assert [p for _t, p, *_ in again] == [b"6", b"7", b"8", b"9"]
        for *_, mid in again:
            session.ack(mid)
    finally:
        await session.close()


async def test_the_broker_sends_no_more_than_the_receive_maximum(mosquitto: Mosquitto) -> None:
    received: Received = []
    session = await _open(mosquitto.url, _options(receive_maximum=5), received)
    try:
        await session.subscribe(["devices/+/telemetry"])
        await publish(mosquitto.url, [(f"devices/d{i}/telemetry", b"x") for i in range(12)])
        await wait_for(_at_least(received, 5), 10, "the window")
        # the sixth waits at the broker until one is acknowledged: a round trip proves the
        # broker has had every chance to send it
        await session.subscribe(["devices/+/other"])
        assert len(received) == 5
        for *_, mid in list(received):
            session.ack(mid)  # in one write, with the others of this turn of the loop
        await wait_for(_at_least(received, 10), 10, "the next window")
    finally:
        await session.close()


@pytest.mark.parametrize(("protocol", "words"), [(5, "not authorized (0x87)"),
                                                  (4, "not authorized (0x05)")])  # fmt: skip
async def test_a_refused_login_is_said_in_words(
    tmp_path: Path, protocol: int, words: str
) -> None:
    with password_broker(tmp_path, "worker", "right") as broker:
        with pytest.raises(SessionError, match=re.escape(f"connection refused: {words}")):
            await _open(f"mqtt://worker:wrong@127.0.0.1:{broker.port}", _options(protocol), [])
        session = await _open(f"mqtt://worker:right@127.0.0.1:{broker.port}",
                              _options(protocol), [])  # fmt: skip
        await session.close()


@pytest.mark.parametrize(("protocol", "code"), [(4, "0x80"), (5, "0x87")])
async def test_a_refused_subscription_is_an_error_not_silence(
    dynsec_mosquitto: Mosquitto, protocol: int, code: str
) -> None:
    access = admin(dynsec_mosquitto)
    await access.bootstrap(*GATEWAY)
    password = await access.register_device("gps-1")  # a device may not read others'
    url = f"mqtt://gps-1:{password}@127.0.0.1:{dynsec_mosquitto.port}"
    session = await _open(url, _options(protocol, client_id="gps-1"), [])
    try:
        with pytest.raises(SessionError, match=f"subscription refused .*{code}.*devices/"):
            await session.subscribe(["devices/+/telemetry"])
    finally:
        await session.close()


async def test_keepalive_pings_an_idle_line_and_a_silent_broker_ends_it(
    mosquitto: Mosquitto,
) -> None:
    received: Received = []
    session = await _open(mosquitto.url, _options(keepalive_s=1), received)
    try:
        await session.subscribe(["devices/+/telemetry"])
        await wait_for(_pings(session, 3), 10, "three pings answered")
        assert not session.closed.done()  # the broker keeps a pinging client
        assert mosquitto.proc is not None
        mosquitto.proc.send_signal(signal.SIGSTOP)  # the broker hangs: no answers
        try:
            with pytest.raises(SessionError, match="no answer to a keepalive ping"):
                await asyncio.wait_for(asyncio.shield(session.closed), 10)
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
    finally:
        await session.close()


async def test_a_session_taken_over_ends_the_first_connection(mosquitto: Mosquitto) -> None:
    first = await _open(mosquitto.url, _options(), [])
    second = await _open(mosquitto.url, _options(), [])
    try:
        # Mosquitto 2.0 closes the first without a DISCONNECT ("session taken over", 0x8E,
        # is said in words when a broker sends one: test_mqtt_packets)
        with pytest.raises(SessionError, match="connection lost"):
            await asyncio.wait_for(asyncio.shield(first.closed), 10)
        assert not second.closed.done()
    finally:
        await first.close()
        await second.close()


async def test_a_broker_that_sends_garbage_loses_the_connection() -> None:
    """Not a broker: a socket that answers CONNACK and then a packet no broker sends (a
    PUBLISH at QoS 3). The session ends with the reason; nothing is taken from it."""

    async def fake_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK, MQTT 5, accepted, no properties
        writer.write(b"\x36\x06\x00\x01a\x00\x01\x00")
        await writer.drain()
        await reader.read(1024)  # until the session closes the line
        writer.close()

    server = await asyncio.start_server(fake_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    received: Received = []
    try:
        session = await _open(f"mqtt://127.0.0.1:{port}", _options(), received)
        with pytest.raises(SessionError, match=r"malformed packet from the broker: .*QoS 3"):
            await asyncio.wait_for(asyncio.shield(session.closed), 10)
        assert received == []
        await session.close()
    finally:
        server.close()
        await server.wait_closed()


def _at_least(received: Received, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return len(received) >= n

    return check


def _pings(session: SubscriberSession, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return session.pings_answered >= n

    return check


async def test_a_disconnect_with_expiry_0_ends_the_session_a_plain_one_keeps_it(
    mosquitto: Mosquitto,
) -> None:
    """How an adopted session is ended only once drained (gateway.worker.alarms.engine_role):
    its CONNECT keeps the session (an expiry), its last DISCONNECT ends it."""
    session = await _open(mosquitto.url, _options(), [])
    await session.subscribe(["devices/+/telemetry"])
    await session.close()  # a plain DISCONNECT: the session stays
    session = await _open(mosquitto.url, _options(), [])
    assert session.session_present
    await session.close(session_expiry_s=0)
    session = await _open(mosquitto.url, _options(), [])
    try:
        assert not session.session_present
    finally:
        await session.close(session_expiry_s=0)

