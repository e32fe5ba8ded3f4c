"""Topic scheme of contract v1.

Device side: ``devices/{device_id}/{channel}``. Operator side:
``tenants/{tenant_id}/alarms`` (published by the gateway only).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


class Channel(StrEnum):
    """The last topic level; says who publishes and which message types are allowed."""

    TELEMETRY = "telemetry"
    EVENTS = "events"
    HEARTBEAT = "heartbeat"
    STATUS = "status"  # retained; also the last-will topic
    COMMANDS = "commands"  # gateway -> device
    REPLIES = "replies"  # device -> gateway, command results


#: Channels a device publishes on (the gateway subscribes to these).
DEVICE_PUBLISHED: frozenset[Channel] = frozenset(
    {Channel.TELEMETRY, Channel.EVENTS, Channel.HEARTBEAT, Channel.STATUS, Channel.REPLIES}
)


class DeviceTopic(NamedTuple):
    """A device topic's parts. Made for every message the gateway receives, by both of a
    worker's paths: as a named tuple, ``parse_device_topic`` takes about a fifth less
    time than with a frozen dataclass (issue #22), and it is as immutable."""

    device_id: str
    channel: Channel


def is_valid_device_id(device_id: str) -> bool:
    return _DEVICE_ID_RE.fullmatch(device_id) is not None


def device_topic(device_id: str, channel: Channel | str) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}: must match {DEVICE_ID_PATTERN}")
    return f"devices/{device_id}/{Channel(channel).value}"


def tenant_alarms_topic(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/alarms"


_CHANNELS: dict[str, Channel] = {channel.value: channel for channel in Channel}


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """Split ``devices/{id}/{channel}``; None when the topic is not of that form."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "devices":
        return None
    device_id, channel = parts[1], parts[2]
    if not is_valid_device_id(device_id):
        return None
    known = _CHANNELS.get(channel)  # a dict, not Channel(channel): 0.1 against 0.7 µs
    return None if known is None else DeviceTopic(device_id, known)
