"""The MQTT 3.1.1 and 5 packets a subscribing session exchanges, as bytes: pure functions,
no I/O (:mod:`gateway.adapters.mqtt.session` carries them over a socket).

A subscriber sends CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBACK, PINGREQ and DISCONNECT, and
receives CONNACK, SUBACK, UNSUBACK, PUBLISH (QoS 0 or 1: it subscribes at QoS 1 at most),
PINGRESP and, in MQTT 5, DISCONNECT. :class:`FrameReader` splits the byte stream into
packets; the ``decode_*`` functions read their bodies. A malformed packet raises
:class:`ProtocolError`: the session then closes the connection, as the standard says
(MQTT 5 section 4.13), and the broker redelivers what was not acknowledged.

A device's connection also carries a last will (:class:`Will`) and publishes
(:func:`publish`): ``bench.broker_memory`` connects devices this way, to measure what the
broker holds for each thing the device contract asks of a connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82  # the low nibble 0b0010 is required
SUBACK: Final = 0x90
UNSUBSCRIBE: Final = 0xA2
UNSUBACK: Final = 0xB0
PINGREQ: Final = 0xC0
PINGRESP: Final = 0xD0
DISCONNECT: Final = 0xE0

V311: Final = 4
V5: Final = 5

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_PUBACK = struct.Struct("!BBH")

#: MQTT 5 property identifiers -> how their values are encoded (section 2.2.2.2)
_BYTE, _U16_T, _U32_T, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final[dict[int, int]] = {
    0x01: _BYTE, 0x02: _U32_T, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT,
    0x11: _U32_T, 0x12: _UTF8, 0x13: _U16_T, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE,
    0x18: _U32_T, 0x19: _BYTE, 0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16_T,
    0x22: _U16_T, 0x23: _U16_T, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _U32_T,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
SERVER_KEEP_ALIVE: Final = 0x13
REASON_STRING: Final = 0x1F

#: why a broker refused a connection, a subscription or ended a session
_REASONS_V311: Final[dict[int, str]] = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_REASONS_V5: Final[dict[int, str]] = {
    0x04: "disconnect with will message", 0x80: "unspecified error",
    0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid",
    0x86: "bad user name or password", 0x87: "not authorized", 0x88: "server unavailable",
    0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
    0x8C: "bad authentication method", 0x8D: "keep alive timeout",
    0x8E: "session taken over", 0x8F: "topic filter invalid", 0x91: "packet identifier in use",
    0x93: "receive maximum exceeded", 0x95: "packet too large", 0x97: "quota exceeded",
    0x98: "administrative action", 0x99: "payload format invalid",
    0x9C: "use another server", 0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA2: "wildcard subscriptions not supported",
}  # fmt: skip


class ProtocolError(Exception):
    """A packet that breaks the MQTT standard (or one a subscriber never expects)."""


def reason_text(code: int, protocol: int) -> str:
    """A broker's reason code, in words (with the number, for a search)."""
    table = _REASONS_V5 if protocol == V5 else _REASONS_V311
    return f"{table.get(code, 'reason')} (0x{code:02x})"


# --- encoding --------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


@dataclass(frozen=True)
class Will:
    """The message the broker publishes for a client whose connection ends without a
    DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def connect(
    client_id: str,
    *,
    protocol: int,
    keepalive_s: int,
    clean_start: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
    will: Will | None = None,
) -> bytes:
    """CONNECT. MQTT 5 carries the session expiry and the receive maximum (the number of
    unacknowledged QoS 1 messages the broker may send); a will goes without properties."""
    flags = 0x02 if clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = _string("MQTT") + bytes([protocol, flags]) + _U16.pack(keepalive_s)
    if protocol == V5:
        properties = b""
        if session_expiry_s:
            properties += b"\x11" + _U32.pack(session_expiry_s)
        if receive_maximum is not None:
            properties += b"\x21" + _U16.pack(receive_maximum)
        body += _varint(len(properties)) + properties
    body += _string(client_id)
    if will is not None:
        body += (b"\x00" if protocol == V5 else b"") + _string(will.topic)
        body += _U16.pack(len(will.payload)) + will.payload
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT, body)


def subscribe(packet_id: int, filters: list[str], qos: int, protocol: int) -> bytes:
    body = _U16.pack(packet_id) + (b"\x00" if protocol == V5 else b"")
    for topic_filter in filters:
        body += _string(topic_filter) + bytes([qos])
    return _packet(SUBSCRIBE, body)


def publish(
    topic: str, payload: bytes, *, qos: int, retain: bool, packet_id: int, protocol: int
) -> bytes:
    """PUBLISH at QoS 0 or 1 (``packet_id`` only goes with QoS 1), without properties."""
    body = _string(topic) + (_U16.pack(packet_id) if qos else b"")
    body += (b"\x00" if protocol == V5 else b"") + payload
    return _packet(PUBLISH | (qos << 1) | (1 if retain else 0), body)


def unsubscribe(packet_id: int, filters: list[str], protocol: int) -> bytes:
    body = _U16.pack(packet_id) + (b"\x00" if protocol == V5 else b"")
    for topic_filter in filters:
        body += _string(topic_filter)
    return _packet(UNSUBSCRIBE, body)


def puback(packet_id: int) -> bytes:
    """PUBACK, success (MQTT 5 lets the reason code and properties be left out)."""
    return _PUBACK.pack(PUBACK, 2, packet_id)


PINGREQ_PACKET: Final = bytes([PINGREQ, 0])
DISCONNECT_PACKET: Final = bytes([DISCONNECT, 0])  # normal disconnection, in both versions


def disconnect(session_expiry_s: int | None = None) -> bytes:
    """DISCONNECT, normal. MQTT 5 only: ``session_expiry_s`` replaces the expiry the
    CONNECT set (0: the broker discards the session now; a CONNECT that set 0 cannot be
    raised here, MQTT 5 3.14.2.2.2)."""
    if session_expiry_s is None:
        return DISCONNECT_PACKET
    properties = b"\x11" + _U32.pack(session_expiry_s)
    return _packet(DISCONNECT, b"\x00" + _varint(len(properties)) + properties)


# --- decoding --------------------------------------------------------------------------


class FrameReader:
    """Splits a byte stream into packets: ``feed`` bytes as they arrive, then take
    ``(first byte, body start, body end)`` from ``frames`` over ``buffer`` (read the body
    in place, without a copy), and ``consume`` when done with them."""

    __slots__ = ("_at", "buffer")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._at = 0

    def feed(self, data: bytes | memoryview) -> None:
        self.buffer += data

    def frames(self) -> list[tuple[int, int, int]]:
        buffer, at, size = self.buffer, self._at, len(self.buffer)
        found: list[tuple[int, int, int]] = []
        while size - at >= 2:
            length, multiplier, i = 0, 1, at + 1
            while True:
                if i >= size:
                    self._at = at
                    return found  # the length is not all here yet
                byte = buffer[i]
                length += (byte & 0x7F) * multiplier
                i += 1
                if not byte & 0x80:
                    break
                multiplier <<= 7
                if multiplier > 0x200000:
                    raise ProtocolError("malformed remaining length")
            if size - i < length:
                break
            found.append((buffer[at], i, i + length))
            at = i + length
        self._at = at
        return found

    def consume(self) -> None:
        """Drop the bytes of the frames taken."""
        if self._at:
            del self.buffer[: self._at]
            self._at = 0


def _read_varint(data: bytes | bytearray, at: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= end or shift > 21:
            raise ProtocolError("malformed variable byte integer")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def decode_properties(data: bytes | bytearray, at: int, end: int) -> tuple[dict[int, object], int]:
    """MQTT 5 properties at ``at``: ``({identifier: value}, where they end)`` (a
    repeated one, such as a user property, keeps its last value). A value cut short is a
    :class:`ProtocolError`, like any other malformed section."""
    try:
        return _decode_properties(data, at, end)
    except (struct.error, IndexError) as exc:  # a length that runs past the buffer
        raise ProtocolError(f"malformed properties: {exc}") from None


def _decode_properties(data: bytes | bytearray, at: int, end: int) -> tuple[dict[int, object], int]:
    length, at = _read_varint(data, at, end)
    stop = at + length
    if stop > end:
        raise ProtocolError("properties longer than their packet")
    found: dict[int, object] = {}
    while at < stop:
        identifier = data[at]
        kind = _PROPERTY_TYPES.get(identifier)
        at += 1
        value: object
        if kind == _BYTE:
            value, at = data[at], at + 1
        elif kind == _U16_T:
            value, at = _U16.unpack_from(data, at)[0], at + 2
        elif kind == _U32_T:
            value, at = _U32.unpack_from(data, at)[0], at + 4
        elif kind == _VARINT:
            value, at = _read_varint(data, at, stop)
        elif kind in (_UTF8, _BINARY):
            size = _U16.unpack_from(data, at)[0]
            raw = bytes(data[at + 2 : at + 2 + size])
            value, at = (raw.decode("utf-8", "replace") if kind == _UTF8 else raw), at + 2 + size
        elif kind == _PAIR:
            key_size = _U16.unpack_from(data, at)[0]
            at += 2 + key_size
            value_size = _U16.unpack_from(data, at)[0]
            value, at = None, at + 2 + value_size
        else:
            raise ProtocolError(f"unknown property 0x{identifier:02x}")
        if at > stop:
            raise ProtocolError("a property runs past its section")
        found[identifier] = value
    return found, stop


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason: int
    properties: dict[int, object]


def decode_connack(data: bytes | bytearray, at: int, end: int, protocol: int) -> Connack:
    if end - at < 2:
        raise ProtocolError("CONNACK too short")
    properties: dict[int, object] = {}
    if protocol == V5 and end - at > 2:
        properties, _ = decode_properties(data, at + 2, end)
    return Connack(bool(data[at] & 0x01), data[at + 1], properties)


def decode_ack(data: bytes | bytearray, at: int, end: int, protocol: int) -> tuple[int, list[int]]:
    """SUBACK or UNSUBACK: ``(packet id, reason codes)`` (MQTT 3.1.1's UNSUBACK has
    none)."""
    if end - at < 2:
        raise ProtocolError("acknowledgement too short")
    packet_id = _U16.unpack_from(data, at)[0]
    at += 2
    if protocol == V5:
        _, at = decode_properties(data, at, end)
    return packet_id, list(data[at:end])


def decode_publish(
    first: int, data: bytes | bytearray, at: int, end: int, protocol: int
) -> tuple[str, bytes, int, bool, int]:
    """PUBLISH: ``(topic, payload, qos, retain, packet id)`` (packet id 0 at QoS 0).
    Properties are skipped: the gateway asks for no topic aliases, and a device
    message's meaning is in its topic and payload."""
    qos = (first >> 1) & 0x03
    if qos > 1:  # 2 would need PUBREC/PUBREL/PUBCOMP: never granted, the session asks for 1
        raise ProtocolError(f"PUBLISH with QoS {qos}")
    if end - at < 2:
        raise ProtocolError("PUBLISH too short")
    topic_end = at + 2 + _U16.unpack_from(data, at)[0]
    if topic_end > end:
        raise ProtocolError("PUBLISH topic longer than its packet")
    if topic_end == at + 2:  # MQTT 5 allows it only with a topic alias, never asked for
        raise ProtocolError("PUBLISH with an empty topic")
    topic = data[at + 2 : topic_end].decode("utf-8", "replace")
    at = topic_end
    packet_id = 0
    if qos:
        if end - at < 2:
            raise ProtocolError("PUBLISH without a packet identifier")
        packet_id = _U16.unpack_from(data, at)[0]
        if not packet_id:
            raise ProtocolError("PUBLISH at QoS 1 with packet identifier 0")
        at += 2
    if protocol == V5:
        if at < end and data[at] == 0:  # no properties: the common case
            at += 1
        else:
            _, at = decode_properties(data, at, end)
    return topic, bytes(data[at:end]), qos, bool(first & 0x01), packet_id


def decode_disconnect(data: bytes | bytearray, at: int, end: int) -> tuple[int, str | None]:
    """An MQTT 5 DISCONNECT from the broker: ``(reason code, reason string)``."""
    if end == at:
        return 0, None
    reason = data[at]
    text = None
    if end - at > 1:
        properties, _ = decode_properties(data, at + 1, end)
        found = properties.get(REASON_STRING)
        text = found if isinstance(found, str) else None
    return reason, text
