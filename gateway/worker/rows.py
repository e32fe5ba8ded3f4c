"""How accepted contract messages and refusals become rows of the time-series tables.

The column order here is the COPY order used by the batch writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firmware_contracts.messages import (
    Alarm,
    Battery,
    BatteryLow,
    Bed,
    BloodPressure,
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
from gateway.domain.registry import Binding

COLUMNS: dict[str, tuple[str, ...]] = {
    "readings": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at", "kind",
        "weight_kg", "systolic_mmhg", "diastolic_mmhg", "pulse_bpm", "unit_id",
    ),
    "positions": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "lat", "lon", "accuracy_m", "unit_id",
    ),
    "lock_events": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "action", "key_id", "method", "unit_id",
    ),
    "device_alarms": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "kind", "lat", "lon", "accuracy_m", "unit_id",
    ),
    "device_health": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "kind", "battery_percent", "rssi_dbm", "state", "firmware", "unit_id",
    ),
    "command_replies": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "command_id", "ok", "detail", "unit_id",
    ),
    "quarantine": (
        "received_at", "topic", "device_id", "tenant_id", "reason", "detail",
        "payload", "payload_size",
    ),
    # passive sensors' states (issue #20, migration 0023)
    "sensor_events": (
        "tenant_id", "person_id", "device_id", "msg_id", "ts", "received_at",
        "kind", "state", "unit_id",
    ),
}  # fmt: skip

#: PostgreSQL type names for binary COPY, in column order.
TYPES: dict[str, tuple[str, ...]] = {
    "readings": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz", "text",
        "float4", "int2", "int2", "int2", "uuid",
    ),
    "positions": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz",
        "float8", "float8", "float4", "uuid",
    ),
    "lock_events": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz", "text", "text", "text",
        "uuid",
    ),
    "device_alarms": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz",
        "text", "float8", "float8", "float4", "uuid",
    ),
    "device_health": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz",
        "text", "int2", "int2", "text", "text", "uuid",
    ),
    "command_replies": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz", "text", "bool", "text",
        "uuid",
    ),
    "quarantine": (
        "timestamptz", "text", "text", "text", "text", "text", "bytea", "int4",
    ),
    "sensor_events": (
        "text", "uuid", "text", "text", "timestamptz", "timestamptz", "text", "text", "uuid",
    ),
}  # fmt: skip

#: Message types whose rows carry personal data and so must be bound to a person.
PERSONAL_TYPES = frozenset(
    {"weight", "blood_pressure", "position", "alarm", "lock", "door", "motion", "bed", "floor_mat"}
)


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    values: tuple[Any, ...]


def message_row(
    message: DeviceMessage, device_id: str, binding: Binding, received_at: datetime
) -> Row:
    """The row an accepted message is stored as."""
    head = (binding.tenant_id, binding.person_id, device_id, message.id, message.ts, received_at)
    unit = binding.unit_id  # a unit's device (issue #19.4); None for a person's
    match message:
        case Weight():
            return Row("readings", (*head, "weight", message.kg, None, None, None, unit))
        case BloodPressure():
            return Row(
                "readings",
                (*head, "blood_pressure", None, message.systolic_mmhg,
                 message.diastolic_mmhg, message.pulse_bpm, unit),
            )  # fmt: skip
        case Position():
            return Row("positions", (*head, message.lat, message.lon, message.accuracy_m, unit))
        case Lock():
            return Row(
                "lock_events", (*head, message.action, message.key_id, message.method, unit)
            )
        case Alarm():
            return Row(
                "device_alarms",
                (*head, message.kind.value, message.lat, message.lon, message.accuracy_m, unit),
            )
        case Heartbeat():
            return Row(
                "device_health",
                (*head, "heartbeat", message.battery_percent, message.rssi_dbm, None, None, unit),
            )
        case Battery():
            return Row(
                "device_health", (*head, "battery", message.percent, None, None, None, unit)
            )
        case BatteryLow():
            return Row(
                "device_health", (*head, "battery_low", message.percent, None, None, None, unit)
            )
        case Status():
            status_head = (
                binding.tenant_id, binding.person_id, device_id, message.id,
                message.ts or received_at, received_at,
            )  # fmt: skip
            return Row(
                "device_health",
                (*status_head, "status", None, None, message.state, message.firmware, unit),
            )
        case Reply():
            return Row(
                "command_replies",
                (*head, message.command_id, message.ok, message.detail, unit),
            )
        case Door() | Motion() | Bed() | FloorMat():
            return Row("sensor_events", (*head, message.type, sensor_state(message), unit))
    raise TypeError(f"no table for message type {type(message).__name__}")


def sensor_state(message: Door | Motion | Bed | FloorMat) -> str:
    """A sensor message's state as stored: a door's ``open``/``closed``; ``true``/``false``
    for motion detected, bed occupied, mat stepped on."""
    match message:
        case Door():
            return message.state
        case Motion():
            return "true" if message.detected else "false"
        case Bed():
            return "true" if message.occupied else "false"
        case FloorMat():
            return "true" if message.stepped_on else "false"


def quarantine_row(
    *,
    received_at: datetime,
    topic: str,
    device_id: str | None,
    tenant_id: str | None,
    reason: str,
    detail: str,
    payload: bytes,
    payload_cap: int,
) -> Row:
    return Row(
        "quarantine",
        (received_at, topic[:512], device_id, tenant_id, reason, detail[:500],
         payload[:payload_cap], len(payload)),
    )  # fmt: skip
