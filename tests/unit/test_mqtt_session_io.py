"""The session's socket use: PUBACKs released within ACK_DELAY_S leave in one write (a batch
commit acknowledges a thousand messages, the alarm engine one at a time: one system call,
not one each), in the order released; none is sent once the session is closing (the
broker redelivers), and closing sends those waiting before the DISCONNECT; a session with a
read delay leaves its socket alone between reads."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.adapters.mqtt import packets
from gateway.adapters.mqtt.session import (
    ACK_DELAY_S,
    READ_SIZE,
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
    session.ack(7)
    session.ack(8)
    await session.close()
    assert transport.writes == [packets.puback(7) + packets.puback(8), packets.DISCONNECT_PACKET]


async def test_no_ack_once_the_session_is_closing() -> None:
    session, transport, _ = _session()
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
    frame = packets._packet(0x32, b"\x00\x01t\x00\x01\x00" + b"x" * 95)  # 104 bytes
    stream = frame * (READ_SIZE // len(frame) + 1)
    buffer[:READ_SIZE] = stream[:READ_SIZE]
    session.buffer_updated(READ_SIZE)
    assert len(got) == READ_SIZE // len(frame) and transport.paused == 0
    rest = stream[READ_SIZE:]
    buffer[: len(rest)] = rest
    session.buffer_updated(len(rest))  # the socket is drained: now it is left alone
    assert len(got) == len(stream) // len(frame) and transport.paused == 1
