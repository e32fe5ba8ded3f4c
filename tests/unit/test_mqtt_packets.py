"""The worker's MQTT codec (gateway.adapters.mqtt.packets) against the standard and paho.

paho is the reference: its PUBLISH decoder must read what ours reads, with and without
MQTT 5 properties; its property encoder makes the properties ours must skip; a byte
stream cut anywhere splits into the same packets."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.adapters.mqtt import packets


def _publish_packet(
    topic: bytes, qos: int, mid: int, props: bytes | None, payload: bytes, retain: bool = False
) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if props is not None:
        body += props
    body += payload
    return packets._packet(packets.PUBLISH | (qos << 1) | int(retain), body)


def _frames(stream: bytes, cuts: list[int]) -> list[tuple[int, bytes]]:
    """Feed ``stream`` in pieces cut at ``cuts``; the (first byte, body) of each frame."""
    reader = packets.FrameReader()
    got: list[tuple[int, bytes]] = []
    at = 0
    for cut in [*sorted(cuts), len(stream)]:
        reader.feed(stream[at:cut])
        at = cut
        got += [(first, bytes(reader.buffer[s:e])) for first, s, e in reader.frames()]
        reader.consume()
    assert not reader.buffer, "nothing left over once the stream is whole"
    return got


@given(
    bodies=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
)
def test_a_stream_cut_anywhere_splits_into_the_same_packets(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(packets._packet(packets.PUBLISH | 0x02, body) for body in bodies)
    cuts = [c for c in cuts if c <= len(stream)]
    assert _frames(stream, cuts) == [(0x32, body) for body in bodies]


@pytest.mark.parametrize("length", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_lengths_at_the_edges_of_each_byte_count(length: int) -> None:
    body = bytes(length)
    assert _frames(packets._packet(packets.PUBLISH, body), []) == [(0x30, body)]


def test_a_remaining_length_of_five_bytes_is_malformed() -> None:
    reader = packets.FrameReader()
    reader.feed(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    with pytest.raises(packets.ProtocolError):
        reader.frames()


def _paho(first: int, frame: bytes, protocol: int) -> tuple[str, bytes, int, bool, int]:
    version = MQTTProtocolVersion.MQTTv5 if protocol == packets.V5 else MQTTProtocolVersion.MQTTv311
    body_at = 1
    while frame[body_at] & 0x80:
        body_at += 1
    got = _packet.decode_publish(first, frame[body_at + 1 :], version)
    return got.topic.decode("utf-8", "replace"), bytes(got.payload), got.qos, got.retain, got.mid


def _one(frame: bytes) -> tuple[bytearray, int, int, int]:
    """(buffer, first byte, body start, body end) of a stream of one packet."""
    reader = packets.FrameReader()
    reader.feed(frame)
    ((first, start, end),) = reader.frames()
    return reader.buffer, first, start, end


def _ours(frame: bytes, protocol: int) -> tuple[str, bytes, int, bool, int]:
    buffer, first, start, end = _one(frame)
    return packets.decode_publish(first, buffer, start, end, protocol)


#: what MQTT allows in a UTF-8 string (no NUL, no surrogates: MQTT-1.5.4-1, -2)
_MQTT_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")


@given(
    topic=st.text(min_size=1, max_size=40),
    qos=st.integers(0, 1),
    retain=st.booleans(),
    mid=st.integers(1, 65535),
    payload=st.binary(max_size=200),
    expiry=st.none() | st.integers(0, 2**32 - 1),
    user=st.none() | st.tuples(st.text(_MQTT_TEXT, max_size=10), st.text(_MQTT_TEXT, max_size=10)),
    content_type=st.none() | st.text(_MQTT_TEXT, max_size=20),
)
def test_publish_decodes_as_paho_decodes_it_with_and_without_properties(
    topic: str, qos: int, retain: bool, mid: int, payload: bytes,
    expiry: int | None, user: tuple[str, str] | None, content_type: str | None,
) -> None:  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if user is not None:
        props.UserProperty = user
    if content_type is not None:
        props.ContentType = content_type
    raw_topic = topic.encode()
    for protocol, encoded in ((packets.V5, props.pack()), (packets.V311, None)):  # type: ignore[no-untyped-call]
        frame = _publish_packet(raw_topic, qos, mid, encoded, payload, retain)
        first = frame[0]
        assert _ours(frame, protocol) == _paho(first, frame, protocol)
        assert _ours(frame, protocol) == (topic, payload, qos, retain, mid if qos else 0)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (packets._packet(0x36, b"\x00\x01a\x00\x01"), "QoS 3"),
        # it subscribes at QoS 1: a QoS 2 message would need PUBREC/PUBREL/PUBCOMP, and a
        # PUBACK for it leaves the broker's exchange open (redelivered at every reconnect)
        (packets._packet(0x34, b"\x00\x01a\x00\x07\x00q2"), "QoS 2"),
        (packets._packet(0x32, b"\x00\x01a\x00\x00\x00{}"), "packet identifier 0"),
        (packets._packet(0x32, b"\x00\x09ab\x00\x01"), "topic longer than its packet"),
        (packets._packet(0x32, b"\x00\x01a"), "without a packet identifier"),
        (packets._packet(0x30, b"\x00\x00\x00{}"), "empty topic"),
        (packets._packet(0x32, b"\x00\x01a\x00\x01\x05\x7f\x00\x00\x00\x00"), "unknown property"),
        (packets._packet(0x32, b"\x00\x01a\x00\x01\x09\x02\x00\x00\x00\x01"), "properties longer"),
    ],
)
def test_malformed_publish_packets_are_protocol_errors(frame: bytes, why: str) -> None:
    with pytest.raises(packets.ProtocolError, match=why):
        _ours(frame, packets.V5)


def test_connect_carries_the_session_the_window_and_the_credentials() -> None:
    frame = packets.connect(
        "wg-1", protocol=packets.V5, keepalive_s=30, clean_start=False, username="u",
        password="p", session_expiry_s=86_400, receive_maximum=2_000,
    )  # fmt: skip
    buffer, first, start, end = _one(frame)
    body = bytes(buffer[start:end])
    assert first == packets.CONNECT
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 5
    assert body[7] == 0xC0  # user name and password, no clean start, no will
    assert struct.unpack("!H", body[8:10]) == (30,)
    properties, at = packets.decode_properties(body, 10, len(body))
    assert properties == {0x11: 86_400, 0x21: 2_000}
    assert body[at:] == b"\x00\x04wg-1\x00\x01u\x00\x01p"
    v311 = packets.connect("wg-1", protocol=packets.V311, keepalive_s=5, clean_start=True)
    assert v311 == packets._packet(packets.CONNECT, b"\x00\x04MQTT\x04\x02\x00\x05\x00\x04wg-1")


def test_connect_carries_a_will_after_the_client_id() -> None:
    will = packets.Will("devices/d1/status", b'{"state":"offline"}', qos=1, retain=True)
    v311 = packets.connect("d1", protocol=packets.V311, keepalive_s=60, clean_start=False,
                           will=will)  # fmt: skip
    assert v311 == packets._packet(
        packets.CONNECT,
        b"\x00\x04MQTT\x04\x2c\x00\x3c"  # will, will QoS 1, will retain; no clean start
        b"\x00\x02d1\x00\x11devices/d1/status\x00\x13" + will.payload,
    )
    v5 = packets.connect("d1", protocol=packets.V5, keepalive_s=60, clean_start=True,
                         username="u", will=packets.Will("t", b"x", qos=0))  # fmt: skip
    buffer, _, start, end = _one(v5)
    body = bytes(buffer[start:end])
    assert body[7] == 0x86  # user name, will (QoS 0, not retained), clean start
    assert body[10:] == b"\x00\x00\x02d1\x00\x00\x01t\x00\x01x\x00\x01u"  # empty will props


@given(
    topic=st.text(_MQTT_TEXT, min_size=1, max_size=40),
    qos=st.integers(0, 1),
    retain=st.booleans(),
    mid=st.integers(1, 65535),
    payload=st.binary(max_size=200),
)
def test_a_publish_we_encode_decodes_as_paho_decodes_it(
    topic: str, qos: int, retain: bool, mid: int, payload: bytes
) -> None:
    for protocol in (packets.V5, packets.V311):
        frame = packets.publish(topic, payload, qos=qos, retain=retain, packet_id=mid,
                                protocol=protocol)  # fmt: skip
        assert _paho(frame[0], frame, protocol) == (topic, payload, qos, retain, mid if qos else 0)
        assert _ours(frame, protocol) == (topic, payload, qos, retain, mid if qos else 0)


def test_subscribe_unsubscribe_and_acknowledgements() -> None:
    assert packets.subscribe(7, ["a/+", "b"], 1, packets.V5) == packets._packet(
        0x82, b"\x00\x07\x00\x00\x03a/+\x01\x00\x01b\x01"
    )
    assert packets.subscribe(7, ["b"], 1, packets.V311) == packets._packet(
        0x82, b"\x00\x07\x00\x01b\x01"
    )
    unsubscribe = packets._packet(0xA2, b"\x00\x08\x00\x00\x01b")
    assert packets.unsubscribe(8, ["b"], packets.V5) == unsubscribe
    assert packets.puback(0x1234) == b"\x40\x02\x12\x34"
    assert packets.decode_ack(b"\x00\x07\x00\x01\x87", 0, 5, packets.V5) == (7, [0x01, 0x87])
    assert packets.decode_ack(b"\x00\x07\x80", 0, 3, packets.V311) == (7, [0x80])


def test_connack_and_disconnect_reasons_in_words() -> None:
    connack = packets.decode_connack(b"\x01\x00\x03\x13\x00\x3c", 0, 6, packets.V5)
    assert connack == packets.Connack(True, 0, {packets.SERVER_KEEP_ALIVE: 60})
    assert packets.decode_connack(b"\x00\x05", 0, 2, packets.V311).reason == 5
    assert packets.reason_text(5, packets.V311) == "not authorized (0x05)"
    assert packets.reason_text(0x86, packets.V5) == "bad user name or password (0x86)"
    reason_string = b"\x1f\x00\x04gone"
    body = b"\x8e" + bytes([len(reason_string)]) + reason_string
    assert packets.decode_disconnect(body, 0, len(body)) == (0x8E, "gone")
    assert packets.decode_disconnect(b"", 0, 0) == (0, None)


@example(body=b"\x00\x07\x02\x13\x00", first=0x30)  # a two-byte property cut short
@given(body=st.binary(max_size=60), first=st.integers(0x30, 0x3F))
def test_any_bytes_decode_or_are_a_protocol_error(body: bytes, first: int) -> None:
    """Whatever a peer sends decodes or is a ProtocolError (the session then ends the
    connection with the reason), never another exception out of the read callback."""
    for protocol in (packets.V5, packets.V311):
        with contextlib.suppress(packets.ProtocolError):
            packets.decode_publish(first, body, 0, len(body), protocol)
        with contextlib.suppress(packets.ProtocolError):
            packets.decode_connack(body, 0, len(body), protocol)
        with contextlib.suppress(packets.ProtocolError):
            packets.decode_ack(body, 0, len(body), protocol)
    with contextlib.suppress(packets.ProtocolError):
        packets.decode_disconnect(body, 0, len(body))


def test_a_disconnect_can_end_the_session_with_the_connection() -> None:
    """MQTT 5 (3.14.2.2.2): a DISCONNECT carrying a session expiry of 0 tells the broker to
    discard the session now: an adopted session, once drained (gateway.worker.alarms)."""
    frame = packets.disconnect(session_expiry_s=0)
    assert frame == bytes([packets.DISCONNECT, 7, 0x00, 5, 0x11, 0, 0, 0, 0])
    buffer, first, start, end = _one(frame)
    assert first == packets.DISCONNECT
    assert packets.decode_disconnect(buffer, start, end) == (0, None)
    assert packets.disconnect() == packets.DISCONNECT_PACKET
