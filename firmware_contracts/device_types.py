"""Which message types each device type may send (contract v1).

The one place that says it: the gateway refuses anything else from a device of that type
as ``wrong_device_type`` (a scale sends no alarms and no lock events; a door lock no
weight), on the storage path and on the alarm engine's path alike, so a compromised or
misconfigured device cannot raise an alarm of a kind its type never raises. The device
type is the registered model's (``device_models.device_type``).

Every device type may send its own health: ``heartbeat``, ``status``, ``battery``,
``battery_low`` and ``reply``. An ``alarm`` is accepted only with a ``kind`` its type
raises.
"""

from __future__ import annotations

from firmware_contracts.messages import DeviceMessage

#: Device health, which every device type sends.
DEVICE_HEALTH_TYPES: frozenset[str] = frozenset(
    {"heartbeat", "status", "battery", "battery_low", "reply"}
)

#: device type -> the message types it may publish
MESSAGE_TYPES: dict[str, frozenset[str]] = {
    "gps_alarm": DEVICE_HEALTH_TYPES | {"position", "alarm"},
    "scale": DEVICE_HEALTH_TYPES | {"weight"},
    "blood_pressure_monitor": DEVICE_HEALTH_TYPES | {"blood_pressure"},
    "door_lock": DEVICE_HEALTH_TYPES | {"lock", "alarm"},
    # passive sensors (issue #20, docs/supervision.md): each sends its own state only
    "door_sensor": DEVICE_HEALTH_TYPES | {"door"},
    "motion_sensor": DEVICE_HEALTH_TYPES | {"motion"},
    "bed_sensor": DEVICE_HEALTH_TYPES | {"bed"},
    "floor_mat": DEVICE_HEALTH_TYPES | {"floor_mat"},
}

#: The passive sensors' device types (issue #20).
SENSOR_DEVICE_TYPES: frozenset[str] = frozenset(
    {"door_sensor", "motion_sensor", "bed_sensor", "floor_mat"}
)

#: device type -> the ``kind`` s of ``alarm`` it may raise (types absent here raise none)
ALARM_KINDS: dict[str, frozenset[str]] = {
    "gps_alarm": frozenset({"button", "fall", "geofence_exit", "tamper"}),
    "door_lock": frozenset({"tamper"}),
}

_NO_KINDS: frozenset[str] = frozenset()


def wrong_device_type(device_type: str, message: DeviceMessage) -> str | None:
    """Why a device of ``device_type`` may not send ``message`` (a decoded contract
    message), or None when it may. Two look-ups: cheap enough for every message."""
    msg_type: str = message.type
    if msg_type not in MESSAGE_TYPES.get(device_type, DEVICE_HEALTH_TYPES):
        return f"a {device_type} does not send {msg_type!r} messages"
    if message.type == "alarm":  # the tag narrows the union to Alarm
        kind = message.kind.value
        if kind not in ALARM_KINDS.get(device_type, _NO_KINDS):
            return f"a {device_type} does not raise {kind!r} alarms"
    return None
