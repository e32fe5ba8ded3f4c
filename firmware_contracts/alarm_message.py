"""The alarm message: what the gateway publishes on ``tenants/{tenant_id}/alarms``.

One JSON object per change of an alarm (raised, occurred, cleared, acknowledged,
escalated, resolved), carrying the event and a full snapshot of the alarm after it. The
same bytes are the ``data`` of the API's Server-Sent Events (``event: alarm``) and the
body of the signed webhooks. Published by the gateway only; operators' alarm clients
subscribe. Human documentation: docs/contract.md, "Alarm messages".

This module is the message's normative description for receivers: the vocabularies
(:class:`AlarmEventType`, :class:`AlarmMessageKind`, :class:`AlarmSeverity`,
:class:`AlarmState`, :class:`AlarmCondition`) and :func:`alarm_message_schema`, a JSON
Schema (draft 2020-12) exported as ``alarm-message.json`` by
``welfare-gateway contract export DIR``. Like the rest of ``firmware_contracts`` it
depends on nothing of the gateway; the gateway's encoder
(``gateway.worker.alarms.codec.encode``) and enums are held to it by tests (the vocabularies
equal the gateway's enums, the fields equal the encoder's keys, and every alarm the
integration tests receive validates).

Dates and ids carry a ``pattern`` beside their ``format``: a validator that does not
check formats (Python's ``jsonschema`` checks ``date-time`` only with an extra package)
still refuses a date-time without an offset or an id that is not a lower-case UUID.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from firmware_contracts.topics import DEVICE_ID_PATTERN

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ALARM_MESSAGE_VERSION = 1
ALARM_MESSAGE_FILE = "alarm-message.json"
ALARM_MESSAGE_TOPIC = "tenants/{tenant_id}/alarms"
#: the Server-Sent Events event name whose ``data`` is an alarm message
SSE_EVENT = "alarm"

#: RFC 3339 date-time with seconds and an offset, as Python's ``isoformat()`` writes it
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: tenant ids as the registry allows them (migration 0001: ``tenants.id``)
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,39}$"
#: the "device" of a ``receiver_unreachable`` alarm: the webhook receiver (recipient group)
WEBHOOK_SUBJECT_PATTERN = r"^webhook:.{1,64}$"


class AlarmEventType(StrEnum):
    """What happened to the alarm (field ``event``)."""

    RAISED = "raised"  # a new alarm; seq 1
    OCCURRED = "occurred"  # again while open: one more press, or a condition active again
    CLEARED = "cleared"  # the condition behind a condition alarm no longer holds
    ACKNOWLEDGED = "acknowledged"  # a person took it
    RESOLVED = "resolved"  # a person closed it with an outcome; the last event
    ESCALATED = "escalated"  # unacknowledged past its timeout: the next group is added


class AlarmMessageKind(StrEnum):
    """What an alarm is about (field ``kind``): first the kinds a device reports itself
    (the device contract's ``alarm`` message, :class:`firmware_contracts.messages.AlarmKind`),
    then the ones the gateway's rules raise."""

    BUTTON = "button"
    FALL = "fall"
    GEOFENCE_EXIT = "geofence_exit"
    TAMPER = "tamper"
    DEVICE_SILENT = "device_silent"
    BATTERY_LOW = "battery_low"
    BLOOD_PRESSURE = "blood_pressure"
    WEIGHT_GAIN = "weight_gain"
    DOOR_UNLOCKED = "door_unlocked"
    UNAUTHORISED_UNLOCK = "unauthorised_unlock"
    RECEIVER_UNREACHABLE = "receiver_unreachable"
    # digital night supervision and passive alarms (issue #20, docs/supervision.md)
    SUPERVISION_NOT_OK = "supervision_not_ok"
    SUPERVISION_FAILED = "supervision_failed"
    DOOR_OPENED_AT_NIGHT = "door_opened_at_night"
    OUT_OF_BED = "out_of_bed"
    NO_MOVEMENT = "no_movement"
    FLOOR_MAT = "floor_mat"


KIND_DESCRIPTIONS: dict[str, str] = {
    "button": "the wearer pressed the alarm button",
    "fall": "the device detected a fall",
    "geofence_exit": "the person left a safe zone (reported by the device, or derived from "
    "positions)",
    "tamper": "the device reports tampering",
    "device_silent": "the device has not been heard from within its bound, or went offline",
    "battery_low": "the device's battery is at or below the low threshold",
    "blood_pressure": "a blood-pressure reading beyond the person's limits",
    "weight_gain": "weight gain beyond the person's limit over the window",
    "door_unlocked": "a door left unlocked longer than alarms.door_unlocked_after_s",
    "unauthorised_unlock": "a lock opened outside a planned visit or an open alarm",
    "receiver_unreachable": "a webhook receiver has failed for too long (not a device)",
    "supervision_not_ok": "a planned supervision check was not OK, also when retried "
    "(detail: what the sensors showed)",
    "supervision_failed": "a planned supervision check could not be made: a sensor silent or "
    "offline, or no valid decision and consent (make a physical visit)",
    "door_opened_at_night": "a door opened within the person's night window (wandering)",
    "out_of_bed": "out of bed within the window and not back within the agreed minutes",
    "no_movement": "no movement for the agreed hours within the daytime window",
    "floor_mat": "a floor mat stepped on within the window",
}


class AlarmSeverity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlarmCondition(StrEnum):
    """Of a condition alarm (null for an event alarm such as a button press)."""

    ACTIVE = "active"
    CLEARED = "cleared"


def _values(enum: Any) -> list[str]:
    return [member.value for member in enum]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema["type"]
    return {**schema, "type": [kind, "null"]}


def _date_time(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN,
            "description": description}  # fmt: skip


def _uuid(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "uuid", "pattern": UUID_PATTERN,
            "description": description}  # fmt: skip


def _text(description: str, **bounds: int) -> dict[str, Any]:
    return {"type": "string", "description": description, **bounds}


def _when(field: str, value: str, then: dict[str, Any]) -> dict[str, Any]:
    return {"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": then}


def _fields(**schemas: Any) -> dict[str, Any]:
    return {"properties": schemas}


_NULL = {"type": "null"}
_STRING = {"type": "string"}
_OPEN = [AlarmState.RAISED.value, AlarmState.ACKNOWLEDGED.value]

# The lifecycle the gateway's alarm book guarantees (gateway.domain.alarms.AlarmBook).
_RULES: list[dict[str, Any]] = [
    _when("event", "raised", _fields(
        state={"const": "raised"}, seq={"const": 1}, version={"const": 1},
        occurrences={"const": 1}, escalation_level={"const": 0}, actor=_NULL,
    )),
    _when("event", "occurred", _fields(
        state={"enum": _OPEN}, occurrences={"minimum": 2}, actor=_NULL,
    )),
    _when("event", "cleared", _fields(
        state={"enum": _OPEN}, condition={"const": "cleared"}, actor=_NULL,
    )),
    _when("event", "acknowledged", _fields(state={"const": "acknowledged"}, actor=_STRING)),
    _when("event", "resolved", _fields(state={"const": "resolved"}, actor=_STRING)),
    _when("event", "escalated", _fields(
        state={"const": "raised"}, escalation_level={"minimum": 1}, escalated_at=_STRING,
        actor=_NULL,
    )),
    _when("state", "raised", _fields(
        acknowledged_by=_NULL, acknowledged_at=_NULL, resolved_by=_NULL, resolved_at=_NULL,
        outcome=_NULL,
    )),
    _when("state", "acknowledged", _fields(
        acknowledged_by=_STRING, acknowledged_at=_STRING, resolved_by=_NULL, resolved_at=_NULL,
        outcome=_NULL,
    )),
    _when("state", "resolved", _fields(
        acknowledged_by=_STRING, acknowledged_at=_STRING, resolved_by=_STRING,
        resolved_at=_STRING, outcome=_STRING,
    )),
    _when("condition", "cleared", _fields(cleared_at=_STRING)),
    {
        "if": {"properties": {"kind": {"const": "receiver_unreachable"}}, "required": ["kind"]},
        "then": _fields(device_id={"pattern": WEBHOOK_SUBJECT_PATTERN}, person_id=_NULL),
        "else": _fields(device_id={"pattern": DEVICE_ID_PATTERN}),
    },
]  # fmt: skip


def _properties() -> dict[str, Any]:
    return {
        "v": {"type": "integer", "const": ALARM_MESSAGE_VERSION,
              "description": "Version of the alarm message; always 1."},
        "type": {"type": "string", "const": "alarm"},
        "event": {"type": "string", "enum": _values(AlarmEventType),
                  "description": "What happened to the alarm."},
        "event_id": _uuid("Unique per event: the key to drop a redelivered copy."),
        "seq": {"type": "integer", "minimum": 1,
                "description": "The alarm's version after this event: 1 when raised, one "
                "more with each event of this alarm (equal to `version`)."},
        "at": _date_time("When the event happened (device time for what a device "
                         "reported, gateway time otherwise)."),
        "actor": _nullable(_text("Who acknowledged or resolved (the token's subject); "
                                 "null for what the gateway did.")),
        "recipients": {"type": "array", "items": {"type": "string"},
                       "description": "Recipient groups that receive the alarm now, at "
                       "its escalation level, in escalation order."},
        "alarm_id": _uuid("The alarm's stable id, the same in every event of the alarm."),
        "tenant_id": {"type": "string", "pattern": TENANT_ID_PATTERN,
                      "description": "The municipality (huvudman); the topic's tenant."},
        "kind": {"type": "string", "enum": _values(AlarmMessageKind),
                 "description": "What the alarm is about."},
        "severity": {"type": "string", "enum": _values(AlarmSeverity)},
        "state": {"type": "string", "enum": _values(AlarmState),
                  "description": "The alarm's state after this event."},
        "device_id": _text("The device it came from (`webhook:{group}` for "
                           "receiver_unreachable).", minLength=1),
        "person_id": _nullable(_uuid("The person who holds the device; null when no one "
                                     "does, and for receiver_unreachable.")),
        "person_ref": _nullable(_text("The person's pseudonymous reference shown to staff.",
                                      minLength=1, maxLength=64)),
        "raised_at": _date_time("When the alarm was raised."),
        "last_at": _date_time("The latest occurrence."),
        "occurrences": {"type": "integer", "minimum": 1,
                        "description": "Presses, or times the condition became active."},
        "condition": {"type": ["string", "null"], "enum": [*_values(AlarmCondition), None],
                      "description": "A condition alarm's condition now; null for an event "
                      "alarm."},
        "cleared_at": _nullable(_date_time("When the condition last cleared.")),
        "acknowledged_by": _nullable(_text("Who acknowledged.")),
        "acknowledged_at": _nullable(_date_time("When it was acknowledged.")),
        "resolved_by": _nullable(_text("Who resolved.")),
        "resolved_at": _nullable(_date_time("When it was resolved.")),
        "outcome": _nullable(_text("What was done (given when resolving).", minLength=1)),
        "position": {"anyOf": [{"$ref": "#/$defs/Position"}, _NULL],
                     "description": "Where, when known (the device's alarm or the fix "
                     "that left the safe zone)."},
        "escalation_level": {"type": "integer", "minimum": 0,
                             "description": "0 until escalated; one more per escalation."},
        "escalated_at": _nullable(_date_time("When it was last escalated.")),
        "detail": {"type": "object",
                   "description": "Facts of the kind (e.g. message_id, reason, bound_s, "
                   "percent, breaches, gain_kg, distance_m); keys may be added."},
        "version": {"type": "integer", "minimum": 1,
                    "description": "The alarm's version; equal to `seq`."},
        "guest": {"$ref": "#/$defs/Guest",
                  "description": "Only on the host's copy of a guest's alarm: a resident of "
                  "another municipality staying in this one (docs/stays.md). `tenant_id` is "
                  "then the host (the topic's tenant); absent on every other message."},
        "unit": {"$ref": "#/$defs/Unit",
                 "description": "Only on an alarm of a unit's shared device (a residential "
                 "unit's door lock, a ward's scale; docs/units.md): the unit to go to. "
                 "Absent on every other message."},
    }  # fmt: skip


#: fields a message carries only when they apply (added after version 1 was published;
#: a receiver that does not know them ignores them)
OPTIONAL_FIELDS = frozenset({"guest", "unit"})

_UNIT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "name", "kind"],
    "properties": {
        "id": _uuid("The unit (the API: /api/v1/units/{id})."),
        "name": _text("The unit's name as its tenant registered it (empty if not yet "
                      "known to the worker).", maxLength=200),
        "kind": {"type": "string", "enum": ["residential_unit", "ward", ""],
                 "description": "residential_unit or ward."},
    },
}  # fmt: skip

_GUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["home_tenant_id", "stay_id", "stay_starts_at", "stay_ends_at"],
    "properties": {
        "home_tenant_id": {"type": "string", "pattern": TENANT_ID_PATTERN,
                           "description": "The resident's home municipality, whose alarm "
                           "it is."},
        "stay_id": _uuid("The stay (the host's API: /api/v1/guests/{stay_id})."),
        "stay_starts_at": _date_time("When the stay began."),
        "stay_ends_at": _date_time("When the stay ends (an alarm raised during it goes on "
                                   "reaching the host until it is resolved)."),
    },
}  # fmt: skip


def alarm_message_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message on ``tenants/{tenant_id}/alarms``
    (and of the ``data`` of an SSE ``alarm`` event)."""
    properties = _properties()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"welfare-gateway/contract/v1/{ALARM_MESSAGE_FILE}",
        "title": ALARM_MESSAGE_TOPIC,
        "description": "One change of one alarm, with the alarm as it is after the change. "
        "Published by the gateway (MQTT QoS 1, not retained); the same JSON is the data of "
        "the API's Server-Sent Events 'alarm' events and the body of the signed webhooks. "
        "Every field is always present (but `guest`, only on a host's copy of a guest's "
        "alarm); null means 'not given'. See docs/contract.md, "
        "'Alarm messages'.",
        "type": "object",
        "additionalProperties": False,
        "required": [name for name in properties if name not in OPTIONAL_FIELDS],
        "properties": properties,
        "allOf": _RULES,
        "$defs": {
            "Guest": _GUEST,
            "Unit": _UNIT,
            "Position": {
                "type": "object",
                "additionalProperties": False,
                "required": ["lat", "lon", "accuracy_m"],
                "properties": {
                    "lat": {"type": "number", "minimum": -90, "maximum": 90},
                    "lon": {"type": "number", "minimum": -180, "maximum": 180},
                    "accuracy_m": {"type": ["number", "null"], "minimum": 0},
                },
            },
        },
        "x-topic": ALARM_MESSAGE_TOPIC,
        "x-qos": 1,
        "x-retain": False,
        "x-sse-event": SSE_EVENT,
        "x-kinds": KIND_DESCRIPTIONS,
    }


def export_alarm_message(directory: Path) -> Path:
    """Write ``alarm-message.json`` into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ALARM_MESSAGE_FILE
    path.write_text(json.dumps(alarm_message_schema(), indent=2, sort_keys=True) + "\n")
    return path
