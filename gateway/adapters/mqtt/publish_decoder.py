"""A quicker decoding of incoming MQTT 5 PUBLISH packets that carry no properties.

For every MQTT 5 PUBLISH, paho builds a ``Properties`` object from scratch (a table of
27 property names) and, before reading the properties, clears it by trying every one of
those names. Device messages carry no properties, so all of that finds nothing: profiled
under ingest load it was a tenth of the worker's time. This decoder recognises a packet
whose properties section is empty (one zero byte), splits it exactly as paho does, and
gives it a copy of one empty ``PUBLISH`` ``Properties`` (what paho's decoding of an empty
section produces, equal to it). Any other packet (MQTT 3.1.1, properties present, anything
malformed) goes to paho's own decoder, so paho still judges and reports every packet that
is not the plain case.

``install`` puts it in paho's place for the whole process (the gateway's own clients are
the only ones in it), ``uninstall`` puts paho's back. This module reaches into paho's
private ``paho.mqtt._packet`` (absent before paho 2.2), so only
:mod:`gateway.adapters.mqtt.internals` imports it, after checking that paho is a tested version,
and the worker's composition root installs it (setting ``mqtt_publish_fast_path``).
``tests/unit/test_publish_decoder.py`` holds it to paho's output, so an upgrade of paho
that changes the packet format or the decoder's result fails there.
"""

from __future__ import annotations

import struct
from typing import Any

from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

_paho_decode_publish = _packet.decode_publish
_EMPTY = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_UNSIGNED_SHORT = struct.Struct("!H")


def _empty_properties() -> Properties:
    """A copy of ``_EMPTY`` (its tables shared: nothing changes them)."""
    properties: Properties = object.__new__(Properties)
    properties.__dict__.update(_EMPTY.__dict__)
    return properties


def decode_publish(header: int, packet: bytes | bytearray, protocol: Any) -> Any:
    """``paho.mqtt._packet.decode_publish``, quicker for an MQTT 5 packet without
    properties; the same result."""
    if protocol == MQTTProtocolVersion.MQTTv5 and len(packet) >= 2:
        topic_end = 2 + _UNSIGNED_SHORT.unpack_from(packet)[0]
        qos = (header & 0x06) >> 1
        props_at = topic_end + 2 if qos > 0 else topic_end
        if len(packet) > props_at and packet[props_at] == 0:
            return _packet.PublishPacket(
                dup=((header & 0x08) >> 3) != 0,
                qos=qos,
                retain=(header & 0x01) != 0,
                topic=bytes(packet[2:topic_end]),
                mid=_UNSIGNED_SHORT.unpack_from(packet, topic_end)[0] if qos > 0 else 0,
                properties=_empty_properties(),
                payload=bytes(packet[props_at + 1 :]),
            )
    return _paho_decode_publish(header, packet, protocol)


def install() -> None:
    """Decode PUBLISH packets with ``decode_publish`` in this process (idempotent); use
    :func:`gateway.adapters.mqtt.internals.install_publish_fast_path`, which checks paho first."""
    _packet.decode_publish = decode_publish


def uninstall() -> None:
    """Put paho's own decoder back (if ours is in its place)."""
    if _packet.decode_publish is decode_publish:
        _packet.decode_publish = _paho_decode_publish


def installed() -> bool:
    return _packet.decode_publish is decode_publish
