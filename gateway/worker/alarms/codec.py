"""Alarm events to and from JSON: one encoding for the journal, MQTT, SSE and webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from gateway.domain.alarms import (
    Alarm,
    AlarmEvent,
    AlarmKind,
    AlarmState,
    Position,
    Severity,
)
from gateway.domain.stays import Stay


def alarm_to_dict(alarm: Alarm) -> dict[str, Any]:
    pos = alarm.position
    out = {
        "alarm_id": str(alarm.id),
        "tenant_id": alarm.tenant_id,
        "kind": alarm.kind.value,
        "severity": alarm.severity.value,
        "state": alarm.state.value,
        "device_id": alarm.device_id,
        "person_id": str(alarm.person_id) if alarm.person_id else None,
        "person_ref": alarm.person_ref,
        "raised_at": alarm.raised_at.isoformat(),
        "last_at": alarm.last_at.isoformat(),
        "occurrences": alarm.occurrences,
        "condition": {None: None, True: "active", False: "cleared"}[alarm.condition],
        "cleared_at": _iso(alarm.cleared_at),
        "acknowledged_by": alarm.acknowledged_by,
        "acknowledged_at": _iso(alarm.acknowledged_at),
        "resolved_by": alarm.resolved_by,
        "resolved_at": _iso(alarm.resolved_at),
        "outcome": alarm.outcome,
        "position": (
            {"lat": pos.lat, "lon": pos.lon, "accuracy_m": pos.accuracy_m} if pos else None
        ),
        "escalation_level": alarm.escalation_level,
        "escalated_at": _iso(alarm.escalated_at),
        "detail": alarm.detail,
        "version": alarm.version,
    }
    unit = alarm.detail.get("unit")
    if unit is not None:  # a unit's shared device (#19.4); absent on every other alarm
        out["unit"] = unit
    return out


def alarm_from_dict(d: dict[str, Any]) -> Alarm:
    pos = d.get("position")
    return Alarm(
        id=UUID(d["alarm_id"]),
        tenant_id=d["tenant_id"],
        kind=AlarmKind(d["kind"]),
        severity=Severity(d["severity"]),
        device_id=d["device_id"],
        person_id=UUID(d["person_id"]) if d.get("person_id") else None,
        person_ref=d.get("person_ref"),
        raised_at=datetime.fromisoformat(d["raised_at"]),
        last_at=datetime.fromisoformat(d["last_at"]),
        state=AlarmState(d["state"]),
        occurrences=d["occurrences"],
        condition={None: None, "active": True, "cleared": False}[d.get("condition")],
        cleared_at=_dt(d.get("cleared_at")),
        acknowledged_by=d.get("acknowledged_by"),
        acknowledged_at=_dt(d.get("acknowledged_at")),
        resolved_by=d.get("resolved_by"),
        resolved_at=_dt(d.get("resolved_at")),
        outcome=d.get("outcome"),
        position=Position(pos["lat"], pos["lon"], pos.get("accuracy_m")) if pos else None,
        escalation_level=d.get("escalation_level", 0),
        escalated_at=_dt(d.get("escalated_at")),
        detail=dict(d.get("detail") or {}),
        version=d["version"],
    )


def event_to_dict(event: AlarmEvent, recipients: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "alarm",
        "event": event.type,
        "event_id": str(event.id),
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "recipients": list(recipients),
        **alarm_to_dict(event.alarm),
    }


def event_from_dict(d: dict[str, Any]) -> AlarmEvent:
    return AlarmEvent(
        id=UUID(d["event_id"]),
        alarm_id=UUID(d["alarm_id"]),
        seq=d["seq"],
        type=d["event"],
        at=datetime.fromisoformat(d["at"]),
        actor=d.get("actor"),
        alarm=alarm_from_dict(d),
    )


def encode(event: AlarmEvent, recipients: tuple[str, ...] = ()) -> bytes:
    return orjson.dumps(event_to_dict(event, recipients))


def guest_fields(stay: Stay) -> dict[str, Any]:
    """What makes an alarm message the host's copy of a guest's alarm (docs/stays.md):
    the topic's tenant is the host, ``guest`` names the home municipality and the stay."""
    return {
        "tenant_id": stay.host_tenant,
        "guest": {
            "home_tenant_id": stay.home_tenant,
            "stay_id": str(stay.id),
            "stay_starts_at": stay.starts_at.isoformat(),
            "stay_ends_at": stay.ends_at.isoformat(),
        },
    }


def encode_guest(event: AlarmEvent, recipients: tuple[str, ...], stay: Stay) -> bytes:
    """The event as published to the host of a stay (``tenants/{host}/alarms``)."""
    return orjson.dumps({**event_to_dict(event, recipients), **guest_fields(stay)})


def guest_view(alarm: Alarm, recipients: tuple[str, ...], stay: Stay) -> dict[str, Any]:
    return {**alarm_to_dict(alarm), "recipients": list(recipients), **guest_fields(stay)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
