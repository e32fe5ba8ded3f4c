"""The open device contract of welfare-gateway, version 1.

A vendor's firmware (and our own simulators) depends only on this package: message
models, the topic scheme and the decoder that the gateway itself uses, so a vendor
can test its payloads exactly as the gateway will judge them.
"""

from firmware_contracts.decode import Decoded, DecodeError, decode_payload
from firmware_contracts.messages import (
    CONTRACT_VERSION,
    Alarm,
    AlarmKind,
    Battery,
    BatteryLow,
    BloodPressure,
    Command,
    DeviceMessage,
    Heartbeat,
    Lock,
    Position,
    Reply,
    Status,
    Weight,
)
from firmware_contracts.topics import Channel, DeviceTopic, device_topic, parse_device_topic

__all__ = [
    "CONTRACT_VERSION",
    "Alarm",
    "AlarmKind",
    "Battery",
    "BatteryLow",
    "BloodPressure",
    "Channel",
    "Command",
    "DecodeError",
    "Decoded",
    "DeviceMessage",
    "DeviceTopic",
    "Heartbeat",
    "Lock",
    "Position",
    "Reply",
    "Status",
    "Weight",
    "decode_payload",
    "device_topic",
    "parse_device_topic",
]
