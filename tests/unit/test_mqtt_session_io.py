"""The session's socket use: PUBACKs released within ACK_DELAY_S leave in one write (a batch
commit acknowledges a thousand messages, the alarm engine one at a time: one system call,
not one each), in the order released; none is sent once the session is closing (the
broker redelivers), and closing sends those waiting before the DISCONNECT; a session with a
read delay leaves its socket alone between reads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.adapters.mqtt import packets
from gateway.adapters.mqtt.session import (
    ACK_DELAY_S,
    READ_SIZE,
    SessionError,
    SessionOptions,
    SubscriberSession,
)


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket: records what would be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.lost: Any = None
        self.paused = 0
        self.resumed = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:  # as a socket does: the protocol hears of it on the loop
        self.closing = True
        asyncio.get_running_loop().call_soon(self.lost, None)


def _publish(mid: int, first: int = 0x32, payload: bytes = b"{}") -> bytes:
    return packets._packet(first, b"\x00\x01t" + mid.to_bytes(2, "big") + b"\x00" + payload)


def _session(read_delay_s: float = 0.0) -> tuple[SubscriberSession, RecordingTransport, list[int]]:
    got: list[int] = []
    session = SubscriberSession(
        SessionOptions(client_id="t", protocol=5, keepalive_s=30, read_delay_s=read_delay_s),
        lambda _t, _p, _q, _r, mid: got.append(mid),
    )
    transport = RecordingTransport()
    transport.lost = session.connection_lost
    session.connection_made(transport)
    return session, transport, got


async def test_acks_of_one_turn_leave_in_one_write_in_order() -> None:
    session, transport, got = _session()
    stream = b"".join(
        packets._packet(0x32, b"\x00\x01t" + mid.to_bytes(2, "big") + b"\x00{}")
        for mid in range(1, 1001)
    )
    session.data_received(stream[:5000])  # a socket read ends mid-packet
    session.data_received(stream[5000:])
    assert got == list(range(1, 1001))
    for mid in got[:500]:
        session.ack(mid)
    await asyncio.sleep(0)  # another turn of the loop: still together
    for mid in got[500:]:
        session.ack(mid)
    assert transport.writes == []  # not yet: within ACK_DELAY_S
    async with asyncio.timeout(5):
        while not transport.writes:
            await asyncio.sleep(ACK_DELAY_S)
    assert transport.writes == [b"".join(packets.puback(mid) for mid in got)]


async def test_closing_sends_the_waiting_acks_before_the_disconnect() -> None:
    session, transport, _ = _session()
    session.data_received(_publish(7) + _publish(8))
    session.ack(7)
    session.ack(8)
    await session.close()
    assert transport.writes == [packets.puback(7) + packets.puback(8), packets.DISCONNECT_PACKET]


async def test_no_ack_once_the_session_is_closing() -> None:
    session, transport, _ = _session()
    session.data_received(_publish(1))
    session.abort()
    session.ack(1)
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_a_read_delay_leaves_the_socket_between_reads() -> None:
    """Storage's session (and the engine's telemetry session) read every few ms: after a
    read the socket is left alone for ``read_delay_s``, then read again."""
    session, transport, got = _session(read_delay_s=0.01)
    publish = packets._packet(0x32, b"\x00\x01t\x00\x01\x00{}")
    session.data_received(publish)
    assert got == [1] and (transport.paused, transport.resumed) == (1, 0)
    async with asyncio.timeout(5):
        while not transport.resumed:
            await asyncio.sleep(0.005)
    assert (transport.paused, transport.resumed) == (1, 1)
    immediate, transport_2, _ = _session()
    immediate.data_received(publish)
    assert transport_2.paused == 0  # the safety session: every message read at once


async def test_reads_are_bounded_and_a_full_read_reads_on() -> None:
    """A read takes at most READ_SIZE bytes (one callback's work stays short: a
    telemetry flood does not hold the loop in front of the safety session); a read that
    fills the buffer leaves more waiting, so the socket is not left alone after it."""
    session, transport, got = _session(read_delay_s=0.01)
    buffer = session.get_buffer(-1)
    assert len(buffer) == READ_SIZE
    frame = _publish(1, payload=b"x" * 95)  # 103 bytes, as each below
    stream = b"".join(
        _publish(mid, payload=b"x" * 95) for mid in range(1, READ_SIZE // len(frame) + 2)
    )
    buffer[:READ_SIZE] = stream[:READ_SIZE]
    session.buffer_updated(READ_SIZE)
    assert len(got) == READ_SIZE // len(frame) and transport.paused == 0
    rest = stream[READ_SIZE:]
    buffer[: len(rest)] = rest
    session.buffer_updated(len(rest))  # the socket is drained: now it is left alone
    assert len(got) == len(stream) // len(frame) and transport.paused == 1


async def test_a_packet_id_still_in_flight_may_come_again_and_each_is_acknowledged() -> None:
    """Each PUBLISH is handed on and acknowledged once, even one whose packet id is that
    of a message not yet acknowledged.

    A review suggested dropping a second PUBLISH whose id was still unacknowledged (a
    resend on a live connection). With that, bench.outage with a 200 s outage never
    caught up: Mosquitto 2.0 sent such PUBLISHes after 200,000 messages had queued
    behind the full window, the dropped ones were never acknowledged, and the window
    stayed full (110,000 messages held at the broker, 2026-12-07). Without it: caught
    up in 10.6 s, nothing lost."""
    session, transport, got = _session()
    session.data_received(_publish(5) + _publish(5, payload=b"{'second':1}"))
    assert got == [5, 5]
    session.ack(5)
    session.ack(5)
    await session.close()
    assert transport.writes[0] == packets.puback(5) + packets.puback(5)


async def test_a_qos_2_message_ends_the_connection_unacknowledged() -> None:
    """It subscribes at QoS 1: a QoS 2 message (a broker not keeping to the granted QoS)
    is a protocol error, not a PUBACK that leaves the broker's QoS 2 exchange open."""
    session, transport, got = _session()
    session.data_received(_publish(7, first=0x34))
    assert got == [] and transport.closing
    with pytest.raises(SessionError, match="QoS 2"):
        await session.closed
    assert transport.writes == []


async def test_a_subscription_granted_below_qos_1_is_refused() -> None:
    """Review finding (#22): a broker (``max_qos 0``, or an ACL) granting QoS 0 for a
    QoS 1 subscription was taken as success; messages would then come unacknowledged and
    never be redelivered after a disconnect."""
    session, _transport, _ = _session()
    subscribing = asyncio.ensure_future(session.subscribe(["devices/+/events"], qos=1))
    await asyncio.sleep(0)
    session.data_received(packets._packet(packets.SUBACK, b"\x00\x01\x00\x00"))
    with pytest.raises(SessionError, match=r"granted QoS 0.*devices/\+/events"):
        await subscribing


async def test_a_ping_unanswered_for_half_a_keepalive_ends_the_connection() -> None:
    """A half-open connection (a host gone, a NAT forgetting it) is noticed within about
    1.5 keepalives of the last byte received, not 2 (the safety session is often quiet)."""
    session, transport, _ = _session()
    loop = asyncio.get_running_loop()
    session._ping_sent_at = loop.time() - (30 / 2 + 0.1)
    session._keepalive()
    assert transport.closing
    with pytest.raises(SessionError, match="no answer to a keepalive ping"):
        await session.closed
