"""The quicker PUBLISH decoder gives what paho's own gives, for every shape of packet."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.adapters.mqtt import publish_decoder

V5, V311 = MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311
PAHO = publish_decoder._paho_decode_publish


def _packet_bytes(topic: bytes, qos: int, mid: int, props: bytes | None, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    if props is not None:
        body += props
    return body + payload


def _same(header: int, packet: bytes, protocol: MQTTProtocolVersion) -> None:
    try:
        expected = PAHO(header, packet, protocol)
    except Exception as exc:  # paho refuses it: so must the quick decoder, the same way
        with pytest.raises(type(exc)):
            publish_decoder.decode_publish(header, packet, protocol)
        return
    got = publish_decoder.decode_publish(header, packet, protocol)
    assert got._replace(properties=None) == expected._replace(properties=None)
    if expected.properties is None:
        assert got.properties is None
    else:
        assert got.properties.json() == expected.properties.json()
        assert got.properties.packetType == expected.properties.packetType
        assert type(got.topic) is type(expected.topic) is bytes


@given(
    topic=st.binary(max_size=40),
    qos=st.integers(0, 2),
    flags=st.integers(0, 0x0F),
    mid=st.integers(0, 65535),
    payload=st.binary(max_size=64),
)
def test_packets_without_properties_decode_as_paho_decodes_them(
    topic: bytes, qos: int, flags: int, mid: int, payload: bytes
) -> None:
    header = 0x30 | (flags & 0x09) | (qos << 1)
    for protocol, props in ((V5, b"\x00"), (V311, None)):
        packet = _packet_bytes(topic, qos, mid, props, payload)
        _same(header, packet, protocol)
        _same(header, bytearray(packet), protocol)


def test_packets_with_properties_go_to_paho() -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    props.UserProperty = ("k", "v")
    packet = _packet_bytes(b"devices/d1/telemetry", 1, 7, props.pack(), b'{"v":1}')  # type: ignore[no-untyped-call]
    got = publish_decoder.decode_publish(0x32, packet, V5)
    assert got.properties.ContentType == "application/json"
    _same(0x32, packet, V5)


@given(st.binary(max_size=24), st.integers(0, 0x0F))
def test_malformed_packets_are_refused_as_paho_refuses_them(packet: bytes, header_low: int) -> None:
    _same(0x30 | header_low, packet, V5)


def test_install_puts_it_in_pahos_place() -> None:
    publish_decoder.install()
    assert _packet.decode_publish is publish_decoder.decode_publish
