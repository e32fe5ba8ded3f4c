"""Decode and validate one payload exactly as the gateway does.

Pure: no I/O, the caller passes ``now``. Returns either :class:`Decoded` or
:class:`DecodeError` (with a stable reason code and a human-readable detail); it never
raises on bad input, so a vendor can run it in a test and the gateway in its hot loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson
from pydantic import ValidationError

from firmware_contracts.messages import (
    CONTRACT_VERSION,
    Alarm,
    Battery,
    BatteryLow,
    Bed,
    BloodPressure,
    Command,
    DeviceMessage,
    Door,
    FloorMat,
    Heartbeat,
    Lock,
    Motion,
    Position,
    Reply,
    Status,
    Weight,
)
from firmware_contracts.topics import Channel

#: Which message types may be published on which channel.
CHANNEL_TYPES: dict[Channel, dict[str, type[DeviceMessage]]] = {
    Channel.TELEMETRY: {
        "weight": Weight,
        "blood_pressure": BloodPressure,
        "position": Position,
        "battery": Battery,
    },
    Channel.EVENTS: {
        "alarm": Alarm,
        "lock": Lock,
        "battery_low": BatteryLow,
        # passive sensors' states (issue #20): on the safety session like alarms
        "door": Door,
        "motion": Motion,
        "bed": Bed,
        "floor_mat": FloorMat,
    },
    Channel.HEARTBEAT: {"heartbeat": Heartbeat},
    Channel.STATUS: {"status": Status},
    Channel.COMMANDS: {"command": Command},
    Channel.REPLIES: {"reply": Reply},
}
ALL_TYPES: dict[str, type[DeviceMessage]] = {
    name: model for types in CHANNEL_TYPES.values() for name, model in types.items()
}

#: Device clocks that were never set report 1970; nothing before this is plausible.
EARLIEST_PLAUSIBLE_TS = datetime(2020, 1, 1, tzinfo=UTC)
DEFAULT_MAX_BYTES = 16 * 1024
DEFAULT_MAX_SKEW = timedelta(minutes=5)


class Reason(StrEnum):
    """Stable reason codes; also the ``reason`` label of the quarantine metric."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    WRONG_CHANNEL = "wrong_channel"
    SCHEMA_VIOLATION = "schema_violation"
    FUTURE_TIMESTAMP = "future_timestamp"
    IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"


@dataclass(frozen=True, slots=True)
class DecodeError:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Decoded:
    message: DeviceMessage  # one of the models in CHANNEL_TYPES


def decode_payload(
    channel: Channel,
    payload: bytes,
    *,
    now: datetime,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Decoded | DecodeError:
    if len(payload) > max_bytes:
        return DecodeError(Reason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return DecodeError(Reason.INVALID_JSON, str(exc)[:200])
    if not isinstance(raw, dict):
        return DecodeError(Reason.NOT_AN_OBJECT, f"payload is a JSON {type(raw).__name__}")
    version = raw.get("v")
    if version != CONTRACT_VERSION or isinstance(version, bool):
        return DecodeError(
            Reason.UNSUPPORTED_VERSION, f"v={version!r}; this gateway speaks v={CONTRACT_VERSION}"
        )
    msg_type = raw.get("type")
    if not isinstance(msg_type, str) or msg_type not in ALL_TYPES:
        return DecodeError(Reason.UNKNOWN_TYPE, f"type={msg_type!r}"[:200])
    model = CHANNEL_TYPES[channel].get(msg_type)
    if model is None:
        allowed = ", ".join(sorted(CHANNEL_TYPES[channel]))
        return DecodeError(
            Reason.WRONG_CHANNEL, f"type {msg_type!r} not allowed on {channel.value} ({allowed})"
        )
    try:
        message = model.model_validate(raw)
    except ValidationError as exc:
        return DecodeError(Reason.SCHEMA_VIOLATION, _summarise(exc))
    ts = message.ts  # every message has one; a last will may leave it out (None)
    if ts is not None:
        if ts > now + max_skew:
            return DecodeError(
                Reason.FUTURE_TIMESTAMP,
                f"ts is {(ts - now).total_seconds():.0f} s ahead of gateway time "
                f"(max {max_skew.total_seconds():.0f} s)",
            )
        if ts < EARLIEST_PLAUSIBLE_TS:
            return DecodeError(
                Reason.IMPLAUSIBLE_TIMESTAMP, f"ts before {EARLIEST_PLAUSIBLE_TS.date()}"
            )
    return Decoded(message)


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)[:300]
