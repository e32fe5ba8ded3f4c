"""The session's PUBACKs: those released in one turn of the event loop leave in one write
(a batch commit acknowledges a thousand messages: one system call, not a thousand), in the
order released; none is sent once the session is closing (the broker redelivers)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.adapters.mqtt import packets
from gateway.adapters.mqtt.session import SessionOptions, SubscriberSession


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket: records what would be sent."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True


def _session() -> tuple[SubscriberSession, RecordingTransport, list[int]]:
    got: list[int] = []
    session = SubscriberSession(
        SessionOptions(client_id="t", protocol=5, keepalive_s=30),
        lambda _t, _p, _q, _r, mid: got.append(mid),
    )
    transport = RecordingTransport()
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
    for mid in got:
        session.ack(mid)
    assert transport.writes == []  # not yet: at the end of this turn of the loop
    await asyncio.sleep(0)  # one turn of the loop (the test's own, not a wait for a condition)
    assert transport.writes == [b"".join(packets.puback(mid) for mid in got)]


async def test_no_ack_once_the_session_is_closing() -> None:
    session, transport, _ = _session()
    session.abort()
    session.ack(1)
    await asyncio.sleep(0)
    assert transport.writes == []
