"""Alarm lifecycle: raised -> acknowledged -> resolved, with a stable id. Pure, no I/O.

Two sorts of alarm share one lifecycle:

* **event alarms** (button, fall, tamper, a device-reported geofence exit): each press or
  fall is an occurrence. While an alarm of that kind is open for the subject, a new
  occurrence is recorded on it (count, last time, position) and notified again; after
  resolution the next occurrence opens a new alarm.
* **condition alarms** (silent device, low battery, limits, derived geofence exit, door
  left unlocked): the condition becomes active, may clear (recorded with its time) and
  may return. A cleared alarm stays open until a person has acknowledged and resolved it.

At most one alarm is open per (tenant, subject, kind); the subject is the device for
technical kinds and the person (or, unassigned, the device) for everything else. Every
change is an :class:`AlarmEvent` carrying a snapshot of the alarm after the change; the
adapters journal, persist and dispatch those events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID, uuid4


class AlarmKind(StrEnum):
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
    RECEIVER_UNREACHABLE = "receiver_unreachable"  # a webhook receiver, not a device
    # digital night supervision and passive alarms (issue #20, domain/supervision.py)
    SUPERVISION_NOT_OK = "supervision_not_ok"
    SUPERVISION_FAILED = "supervision_failed"
    DOOR_OPENED_AT_NIGHT = "door_opened_at_night"
    OUT_OF_BED = "out_of_bed"
    NO_MOVEMENT = "no_movement"
    FLOOR_MAT = "floor_mat"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class AlarmState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


DEFAULT_SEVERITY: dict[AlarmKind, Severity] = {
    AlarmKind.BUTTON: Severity.CRITICAL,
    AlarmKind.FALL: Severity.CRITICAL,
    AlarmKind.GEOFENCE_EXIT: Severity.CRITICAL,
    AlarmKind.TAMPER: Severity.HIGH,
    AlarmKind.DEVICE_SILENT: Severity.HIGH,
    AlarmKind.DOOR_UNLOCKED: Severity.HIGH,
    AlarmKind.UNAUTHORISED_UNLOCK: Severity.HIGH,
    AlarmKind.RECEIVER_UNREACHABLE: Severity.HIGH,
    AlarmKind.BATTERY_LOW: Severity.MEDIUM,
    AlarmKind.BLOOD_PRESSURE: Severity.MEDIUM,
    AlarmKind.WEIGHT_GAIN: Severity.MEDIUM,
    AlarmKind.SUPERVISION_NOT_OK: Severity.HIGH,
    AlarmKind.SUPERVISION_FAILED: Severity.HIGH,
    AlarmKind.DOOR_OPENED_AT_NIGHT: Severity.CRITICAL,
    AlarmKind.OUT_OF_BED: Severity.HIGH,
    AlarmKind.NO_MOVEMENT: Severity.HIGH,
    AlarmKind.FLOOR_MAT: Severity.HIGH,
}

#: Kinds about the device itself rather than the person wearing it.
DEVICE_SUBJECT_KINDS = frozenset({AlarmKind.DEVICE_SILENT, AlarmKind.BATTERY_LOW, AlarmKind.TAMPER,
                                  AlarmKind.RECEIVER_UNREACHABLE})  # fmt: skip

EventType = Literal["raised", "occurred", "cleared", "acknowledged", "resolved", "escalated"]


class AlarmError(Exception):
    """A transition that is not allowed; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Position:
    lat: float
    lon: float
    accuracy_m: float | None = None


@dataclass(slots=True)
class Alarm:
    id: UUID
    tenant_id: str
    kind: AlarmKind
    severity: Severity
    device_id: str
    person_id: UUID | None
    person_ref: str | None
    raised_at: datetime
    last_at: datetime
    state: AlarmState = AlarmState.RAISED
    occurrences: int = 1
    condition: bool | None = None  # None: event alarm; True active; False cleared
    cleared_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    outcome: str | None = None
    position: Position | None = None
    escalation_level: int = 0
    escalated_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    @property
    def subject(self) -> str:
        return subject_of(self.kind, self.device_id, self.person_id)

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        data["subject"] = self.subject
        return data


def subject_of(kind: AlarmKind, device_id: str, person_id: UUID | None) -> str:
    if kind in DEVICE_SUBJECT_KINDS or person_id is None:
        return f"device:{device_id}"
    return f"person:{person_id}"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    id: UUID
    alarm_id: UUID
    seq: int
    type: EventType
    at: datetime
    actor: str | None
    alarm: Alarm  # a copy, as it is after this event


@dataclass(frozen=True)
class EscalationPolicy:
    """Seconds an alarm may stay unacknowledged at each level before it is escalated to
    the next recipient group. Default: critical 60 s, then 120 s; high 180 s, then 300 s;
    medium 900 s; low none."""

    steps: dict[Severity, tuple[int, ...]] = field(
        default_factory=lambda: {
            Severity.CRITICAL: (60, 120),
            Severity.HIGH: (180, 300),
            Severity.MEDIUM: (900,),
            Severity.LOW: (),
        }
    )

    def timeout(self, severity: Severity, level: int) -> timedelta | None:
        steps = self.steps.get(severity, ())
        return timedelta(seconds=steps[level]) if level < len(steps) else None


Key = tuple[str, str, AlarmKind]


class AlarmBook:
    """The open alarms, in memory; the single place where transitions happen."""

    def __init__(
        self,
        severity_for: Callable[[str, AlarmKind], Severity] | None = None,
        new_id: Callable[[], UUID] = uuid4,
    ) -> None:
        self._severity_for = severity_for or (lambda _tenant, kind: DEFAULT_SEVERITY[kind])
        self._new_id = new_id
        self._open: dict[UUID, Alarm] = {}
        self._by_key: dict[Key, UUID] = {}

    # --- queries ----------------------------------------------------------------------
    def get(self, alarm_id: UUID) -> Alarm | None:
        return self._open.get(alarm_id)

    def open_alarms(self, tenant_id: str | None = None) -> list[Alarm]:
        return [a for a in self._open.values() if tenant_id is None or a.tenant_id == tenant_id]

    def find(self, tenant_id: str, subject: str, kind: AlarmKind) -> Alarm | None:
        alarm_id = self._by_key.get((tenant_id, subject, kind))
        return self._open.get(alarm_id) if alarm_id else None

    # --- what devices and rules report ---------------------------------------------------
    def signal(
        self,
        *,
        tenant_id: str,
        kind: AlarmKind,
        device_id: str,
        person_id: UUID | None,
        person_ref: str | None,
        at: datetime,
        condition: bool,
        position: Position | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[AlarmEvent]:
        """A safety event happened (``condition=False``) or a condition became active."""
        key = (tenant_id, subject_of(kind, device_id, person_id), kind)
        existing = self._open.get(self._by_key.get(key, _NO_ID))
        if existing is not None:
            if existing.condition is True and condition:
                return []  # still active: nothing new to tell anyone
            existing.occurrences += 1
            existing.last_at = max(existing.last_at, at)
            if position is not None:
                existing.position = position
            if detail:
                existing.detail.update(detail)
            if condition:
                existing.condition = True
            return [self._event(existing, "occurred", at, None)]
        alarm = Alarm(
            id=self._new_id(),
            tenant_id=tenant_id,
            kind=kind,
            severity=self._severity_for(tenant_id, kind),
            device_id=device_id,
            person_id=person_id,
            person_ref=person_ref,
            raised_at=at,
            last_at=at,
            condition=True if condition else None,
            position=position,
            detail=dict(detail or {}),
        )
        self._open[alarm.id] = alarm
        self._by_key[key] = alarm.id
        return [self._event(alarm, "raised", at, None, bump=False)]

    def clear(
        self,
        *,
        tenant_id: str,
        kind: AlarmKind,
        device_id: str,
        person_id: UUID | None,
        at: datetime,
        detail: dict[str, Any] | None = None,
    ) -> list[AlarmEvent]:
        """The condition behind an open condition alarm no longer holds."""
        alarm = self.find(tenant_id, subject_of(kind, device_id, person_id), kind)
        if alarm is None or alarm.condition is not True:
            return []
        alarm.condition = False
        alarm.cleared_at = at
        if detail:
            alarm.detail.update(detail)
        return [self._event(alarm, "cleared", at, None)]

    # --- what people do --------------------------------------------------------------------
    def acknowledge(self, alarm_id: UUID, actor: str, at: datetime) -> list[AlarmEvent]:
        alarm = self._require(alarm_id)
        if alarm.state is not AlarmState.RAISED:
            raise AlarmError(f"alarm is {alarm.state.value}, not raised")
        alarm.state = AlarmState.ACKNOWLEDGED
        alarm.acknowledged_by = actor
        alarm.acknowledged_at = at
        return [self._event(alarm, "acknowledged", at, actor)]

    def resolve(self, alarm_id: UUID, actor: str, at: datetime, outcome: str) -> list[AlarmEvent]:
        """Close the alarm with what was done. An unacknowledged alarm is acknowledged by
        the same person at the same moment (one cannot resolve without taking it)."""
        if not outcome.strip():
            raise AlarmError("an outcome is required to resolve an alarm", 422)
        alarm = self._require(alarm_id)
        events = []
        if alarm.state is AlarmState.RAISED:
            events += self.acknowledge(alarm_id, actor, at)
        alarm.state = AlarmState.RESOLVED
        alarm.resolved_by = actor
        alarm.resolved_at = at
        alarm.outcome = outcome.strip()
        events.append(self._event(alarm, "resolved", at, actor))
        del self._open[alarm.id]
        self._by_key.pop((alarm.tenant_id, alarm.subject, alarm.kind), None)
        return events

    def escalate_due(self, now: datetime, policy: EscalationPolicy) -> list[AlarmEvent]:
        """Raise the level of every alarm left unacknowledged past its level's timeout."""
        events = []
        for alarm in list(self._open.values()):
            if alarm.state is not AlarmState.RAISED:
                continue
            timeout = policy.timeout(alarm.severity, alarm.escalation_level)
            since = alarm.escalated_at or alarm.raised_at
            if timeout is not None and now - since >= timeout:
                alarm.escalation_level += 1
                alarm.escalated_at = now
                events.append(self._event(alarm, "escalated", now, None))
        return events

    def next_escalation(self, policy: EscalationPolicy) -> datetime | None:
        due = [
            (a.escalated_at or a.raised_at) + t
            for a in self._open.values()
            if a.state is AlarmState.RAISED
            and (t := policy.timeout(a.severity, a.escalation_level)) is not None
        ]
        return min(due) if due else None

    def restore(self, alarms: Iterable[Alarm]) -> None:
        """Load open alarms (from the database or the journal) at start."""
        for alarm in alarms:
            if alarm.state is AlarmState.RESOLVED:
                continue
            self._open[alarm.id] = alarm
            self._by_key[(alarm.tenant_id, alarm.subject, alarm.kind)] = alarm.id

    def replace_all(self, alarms: Iterable[Alarm]) -> None:
        """Hold exactly ``alarms`` (the open ones among them) from now on."""
        self._open.clear()
        self._by_key.clear()
        self.restore(alarms)

    def apply(self, alarm: Alarm) -> bool:
        """Follow a change made by another book (the active engine's, as published): keep
        the newer version of the alarm, and drop it once resolved. True if it changed."""
        current = self._open.get(alarm.id)
        if current is not None and current.version >= alarm.version:
            return False
        if alarm.state is AlarmState.RESOLVED:
            if current is None:
                return False
            del self._open[alarm.id]
            key = (alarm.tenant_id, alarm.subject, alarm.kind)
            if self._by_key.get(key) == alarm.id:
                del self._by_key[key]
            return True
        self._open[alarm.id] = alarm
        self._by_key[(alarm.tenant_id, alarm.subject, alarm.kind)] = alarm.id
        return True

    # --- internals -------------------------------------------------------------------------
    def _require(self, alarm_id: UUID) -> Alarm:
        alarm = self._open.get(alarm_id)
        if alarm is None:
            raise AlarmError("alarm not found or already resolved", 404)
        return alarm

    def _event(
        self, alarm: Alarm, type_: EventType, at: datetime, actor: str | None, *, bump: bool = True
    ) -> AlarmEvent:
        if bump:
            alarm.version += 1
        copy = replace(alarm, detail=dict(alarm.detail))
        return AlarmEvent(self._new_id(), alarm.id, alarm.version, type_, at, actor, copy)


_NO_ID = UUID(int=0)
