"""A subscribing MQTT session on asyncio's own transport: the worker's receive path.

The worker receives every device message on sessions of this kind (storage, the alarm
engine's, an adopted one), so its cost per message is the gateway's. paho (under aiomqtt)
reads a packet with several ``recv`` calls, one wake-up of the event loop each, and sends
each PUBACK on its own; profiled at saturation, that was over half of the worker's time
(docs/performance.md, issue #22). Here one callback splits a socket read (at most
``READ_SIZE`` bytes, so one session never holds the event loop long) into packets
(:class:`gateway.adapters.mqtt.packets.FrameReader`), and the PUBACKs released within a few
milliseconds leave in one write.

What it does: CONNECT (MQTT 3.1.1 or 5, a persistent session, receive maximum,
username/password, TLS from :class:`BrokerAddress`), SUBSCRIBE and UNSUBSCRIBE (waiting
for the broker's answer; a refused filter is an error), incoming PUBLISH at QoS 0 and 1
handed to ``on_publish`` in order, PUBACK when the caller says (``ack``), keepalive
(PINGREQ when the line has been quiet, the connection ended when no PINGRESP comes) and
DISCONNECT. It publishes nothing: the gateway's publishers use aiomqtt.

``closed`` completes when the connection ends: with ``None`` after :meth:`close`, with
:class:`SessionError` when it was lost or the broker ended it. A malformed packet ends the
connection; the broker redelivers what was not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from gateway.adapters.mqtt import packets
from gateway.adapters.mqtt.connection import BrokerAddress

log = logging.getLogger(__name__)

#: (topic, payload, qos, retain, packet id)
OnPublish = Callable[[str, bytes, int, bool, int], None]

CLOSE_TIMEOUT_S = 5.0
#: PUBACKs wait this long to leave together: the alarm engine acknowledges each message
#: as its rules are done with it, one write per message at a paced load otherwise (a
#: tenth of the worker's CPU); the broker only sees its window free up 5 ms later
ACK_DELAY_S = 0.005


class SessionError(Exception):
    """The connection could not be made, was refused, was lost or was ended by the
    broker."""


@dataclass(frozen=True)
class SessionOptions:
    client_id: str
    protocol: int  # 4 = 3.1.1, 5 = v5
    keepalive_s: int
    clean_start: bool = False
    session_expiry_s: int = 0  # MQTT 5; 3.1.1 keeps a persistent session as the broker says
    receive_maximum: int | None = None  # MQTT 5
    connect_timeout_s: float = 10.0
    #: after each read, leave the socket this long (what arrives meanwhile is then read
    #: and handled in one go): for a session whose messages wait for a batch anyway
    read_delay_s: float = 0.0


#: bytes taken from the socket per read: a read's packets are split and handed on in one
#: callback, so this bounds how long the event loop is held by one session (8 KiB is
#: about 40 device messages, a fraction of a millisecond) and keeps a telemetry flood
#: from delaying the safety session's next read (bench.flood: 256 KiB reads held the
#: loop for 15-30 ms a turn)
READ_SIZE = 8 * 1024


class SubscriberSession(asyncio.BufferedProtocol):
    """Use :meth:`open`; then ``subscribe``, take messages through ``on_publish``,
    ``ack`` them, and ``close``."""

    def __init__(self, options: SessionOptions, on_publish: OnPublish) -> None:
        self._options = options
        self._on_publish = on_publish
        self._protocol = options.protocol
        self._reader = packets.FrameReader()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[packets.Connack] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[list[int]]] = {}
        self._next_id = 0
        self._outgoing = bytearray()  # PUBACKs released, to leave within ACK_DELAY_S
        self._flush_scheduled = False
        self._closing = False
        self._keepalive_s = options.keepalive_s
        self._last_in = self._last_out = self._loop.time()
        self._ping_sent_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.session_present = False
        self.pings_answered = 0
        self._read_delay_s = options.read_delay_s
        self._reading_paused = False
        self._chunk = memoryview(bytearray(READ_SIZE))
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # --- opening and closing -----------------------------------------------------------

    @classmethod
    async def open(
        cls, address: BrokerAddress, options: SessionOptions, on_publish: OnPublish
    ) -> SubscriberSession:
        """Connect and wait for the broker's CONNACK; raises :class:`SessionError` (or
        ``OSError`` when the broker cannot be reached, ``TimeoutError`` when it does not
        answer in ``connect_timeout_s``)."""
        loop = asyncio.get_running_loop()
        session = cls(options, on_publish)
        async with asyncio.timeout(options.connect_timeout_s):
            await loop.create_connection(
                lambda: session,
                address.host,
                address.port,
                ssl=address.tls_context() if address.tls else None,
            )
            try:
                session._send(
                    packets.connect(
                        options.client_id,
                        protocol=options.protocol,
                        keepalive_s=options.keepalive_s,
                        clean_start=options.clean_start,
                        username=address.username,
                        password=address.password,
                        session_expiry_s=options.session_expiry_s,
                        receive_maximum=options.receive_maximum,
                    )
                )
                connack = await session._connack
            except BaseException:
                session.abort()
                raise
        if connack.reason:
            session.abort()
            raise SessionError(
                f"connection refused: {packets.reason_text(connack.reason, options.protocol)}"
            )
        session.session_present = connack.session_present
        server_keepalive = connack.properties.get(packets.SERVER_KEEP_ALIVE)
        if isinstance(server_keepalive, int):
            session._keepalive_s = server_keepalive  # the broker's word wins (MQTT 5 3.2.2.3.14)
        session._schedule_keepalive()
        return session

    async def close(self, *, session_expiry_s: int | None = None) -> None:
        """Send DISCONNECT (after the PUBACKs still waiting) and close; waits, bounded, for
        the socket to close. Safe to call on a session already closed.
        ``session_expiry_s`` (MQTT 5): the session's expiry from now on; 0 ends it with
        the connection (one whose CONNECT set an expiry)."""
        transport = self._transport
        if transport is not None and not transport.is_closing() and not self.closed.done():
            self._closing = True
            self._flush()
            transport.write(packets.disconnect(session_expiry_s))
            transport.close()
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), CLOSE_TIMEOUT_S)
        if not self.closed.done():
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once (nothing more is sent)."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    # --- what the caller does ----------------------------------------------------------

    async def subscribe(self, filters: list[str], qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; :class:`SessionError` if the broker refuses
        a filter (not authorised, say)."""
        packet_id = self._packet_id()
        codes = await self._request(
            packet_id, packets.subscribe(packet_id, filters, qos, self._protocol)
        )
        refused = [f for f, code in zip(filters, codes, strict=False) if code >= 0x80]
        if refused or len(codes) != len(filters):
            why = next((c for c in codes if c >= 0x80), 0x80)
            raise SessionError(
                f"subscription refused ({packets.reason_text(why, self._protocol)}): "
                f"{', '.join(refused) or 'no answer per filter'}"
            )
        # a lower QoS granted (a broker's max_qos, an ACL): its messages would come
        # without acknowledgement and not be redelivered after a disconnect
        downgraded = [(f, code) for f, code in zip(filters, codes, strict=True) if code < qos]
        if downgraded:
            raise SessionError(
                f"subscription granted QoS {downgraded[0][1]} where {qos} was asked: "
                f"{', '.join(f for f, _ in downgraded)}"
            )

    async def unsubscribe(self, filters: list[str]) -> None:
        packet_id = self._packet_id()
        await self._request(packet_id, packets.unsubscribe(packet_id, filters, self._protocol))

    def ack(self, packet_id: int) -> None:
        """Send the PUBACK of a QoS 1 message within ``ACK_DELAY_S``, with the others
        released by then, in one write. Dropped when the connection is gone: the broker
        then redelivers the message."""
        if self._transport is None or self.closed.done() or self._closing:
            return
        self._outgoing += packets.puback(packet_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_later(ACK_DELAY_S, self._flush)

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._chunk

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._chunk[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """A read's bytes: its whole packets are handed on, a partial one kept for the next
        read. With a read delay, the socket is then left alone for a while, unless the
        read filled the buffer (more is waiting: it is read in the next turn)."""
        self._last_in = self._loop.time()
        reader = self._reader
        reader.feed(data)
        try:
            frames = reader.frames()
            buffer = reader.buffer
            protocol = self._protocol
            on_publish = self._on_publish
            for first, start, end in frames:
                kind = first & 0xF0
                if kind == packets.PUBLISH:
                    # Every PUBLISH is handed on and acknowledged once, even one whose
                    # packet id is that of a message not yet acknowledged: after a
                    # database outage of 200 s (bench.outage, 200,000 messages queued
                    # behind a full window) Mosquitto 2.0 sent such PUBLISHes, and a
                    # session that dropped them as resends never acknowledged them: the
                    # window stayed full and 110,000 messages stayed at the broker
                    on_publish(*packets.decode_publish(first, buffer, start, end, protocol))
                else:
                    self._control(kind, buffer, start, end)
            reader.consume()
        except packets.ProtocolError as exc:
            self._lose(SessionError(f"malformed packet from the broker: {exc}"))
            return
        if (
            self._read_delay_s
            and len(data) < READ_SIZE
            and not self._reading_paused
            and self._transport is not None
        ):
            self._reading_paused = True
            self._transport.pause_reading()
            self._loop.call_later(self._read_delay_s, self._resume_reading)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._closing and exc is None:
            error: SessionError | None = None
        else:
            error = SessionError(f"connection lost: {exc or 'closed by the broker'}")
        self._finish(error)

    # --- inside ------------------------------------------------------------------------

    def _control(self, kind: int, buffer: bytearray, start: int, end: int) -> None:
        if kind == packets.CONNACK and not self._connack.done():
            self._connack.set_result(packets.decode_connack(buffer, start, end, self._protocol))
        elif kind in (packets.SUBACK, packets.UNSUBACK):
            packet_id, codes = packets.decode_ack(buffer, start, end, self._protocol)
            waiting = self._acks.pop(packet_id, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(codes)
        elif kind == packets.PINGRESP:
            self._ping_sent_at = None
            self.pings_answered += 1
        elif kind == packets.DISCONNECT and self._protocol == packets.V5:
            reason, text = packets.decode_disconnect(buffer, start, end)
            said = packets.reason_text(reason, self._protocol) + (f": {text}" if text else "")
            self._lose(SessionError(f"the broker ended the session: {said}"))
        else:
            raise packets.ProtocolError(f"unexpected packet type 0x{kind >> 4:x}")

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    async def _request(self, packet_id: int, packet: bytes) -> list[int]:
        if self.closed.done():
            raise SessionError("the connection is closed")
        answer: asyncio.Future[list[int]] = self._loop.create_future()
        self._acks[packet_id] = answer
        try:
            self._send(packet)
            async with asyncio.timeout(self._options.connect_timeout_s):
                return await answer
        finally:
            self._acks.pop(packet_id, None)

    def _send(self, packet: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise SessionError("the connection is closed")
        self._transport.write(packet)
        self._last_out = self._loop.time()

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._outgoing and self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._outgoing))
            self._last_out = self._loop.time()
        self._outgoing.clear()

    def _schedule_keepalive(self) -> None:
        if self._keepalive_s > 0 and not self.closed.done():
            self._timer = self._loop.call_later(self._keepalive_s / 4, self._keepalive)

    def _keepalive(self) -> None:
        """Every quarter keepalive: a PINGREQ when nothing went either way for half of it;
        no PINGRESP within half a keepalive ends the connection (the broker or the
        network is gone: a half-open connection is noticed within about 1.5 keepalives
        of the last byte, the broker answers a ping at once)."""
        now = self._loop.time()
        half = self._keepalive_s / 2
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at > half:
                self._lose(SessionError("no answer to a keepalive ping"))
                return
        elif now - self._last_out >= half or now - self._last_in >= half:
            try:
                self._send(packets.PINGREQ_PACKET)
            except SessionError:
                return
            self._ping_sent_at = now
        self._schedule_keepalive()

    def _lose(self, error: SessionError) -> None:
        self._finish(error)
        if self._transport is not None:
            self._transport.abort()

    def _finish(self, error: SessionError | None) -> None:
        if not self.closed.done():
            if error is None:
                self.closed.set_result(None)
            else:
                self.closed.set_exception(error)
                # retrieved here, so asyncio never logs it as unretrieved; callers still
                # get it from ``closed``
                self.closed.exception()
        failure = error or SessionError("the connection is closed")
        pending: list[asyncio.Future[Any]] = [self._connack, *self._acks.values()]
        for waiting in pending:
            if not waiting.done():
                waiting.set_exception(failure)
                waiting.exception()
        self._acks.clear()
