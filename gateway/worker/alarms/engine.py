"""The alarm rules, fed by accepted device messages and by the passing of time.

No I/O: messages and the clock come in, :class:`AlarmEvent` s come out (from the
:class:`AlarmBook`). Adapters journal, persist and deliver them. Everything it needs
(registry, persons' zones and limits, silence deadlines) is in memory, so the alarm path
keeps working while the database is down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from firmware_contracts.messages import (
    Alarm as AlarmMessage,
)
from firmware_contracts.messages import (
    Battery,
    BatteryLow,
    BloodPressure,
    DeviceMessage,
    Heartbeat,
    Lock,
    Position,
    Status,
    Weight,
)
from gateway.domain.alarms import Alarm, AlarmBook, AlarmEvent, AlarmKind, EscalationPolicy
from gateway.domain.alarms import Position as AlarmPosition
from gateway.domain.fleet_index import FleetIndex
from gateway.domain.geofence import GeofencePolicy, GeofenceState, GeofenceTracker, SafeZone
from gateway.domain.lock_access import Decision as LockDecision
from gateway.domain.registry import Binding, DeviceRecord, DeviceStatus
from gateway.domain.silence import SilencePolicy, SilenceWatch
from gateway.domain.units import Unit
from gateway.domain.vitals import (
    BloodPressureLimits,
    WeightGainLimit,
    WeightTrend,
    check_blood_pressure,
)

log = logging.getLogger(__name__)

#: The limits of a person with none of their own (immutable: every such person shares them).
DEFAULT_BLOOD_PRESSURE = BloodPressureLimits()
DEFAULT_WEIGHT_GAIN = WeightGainLimit()


class PersonRules(NamedTuple):
    """What the rules need to know about one person (from the registry and clinicians).

    A named tuple: the rules cache makes one when asked for a person with no rules of
    their own (most persons), once per reading, and a tuple is made in a third of the time
    a frozen dataclass takes. The limits default to shared immutable objects."""

    person_id: UUID
    ref: str
    zones: tuple[SafeZone, ...] = ()
    blood_pressure: BloodPressureLimits = DEFAULT_BLOOD_PRESSURE
    weight_gain: WeightGainLimit = DEFAULT_WEIGHT_GAIN


@dataclass(frozen=True)
class RuleConfig:
    silence: SilencePolicy = field(default_factory=SilencePolicy)
    geofence: GeofencePolicy = field(default_factory=GeofencePolicy)
    escalation: EscalationPolicy = field(default_factory=EscalationPolicy)
    battery_low_percent: int = 20
    battery_ok_percent: int = 30  # hysteresis: cleared only once clearly recharged
    door_unlocked_after: timedelta = timedelta(minutes=15)
    #: A lock's backlog (what it buffered while offline, or a replay): a message stamped
    #: at least ``backlog_age`` before it arrived. While a lock delivers one, a door whose
    #: deadline the clock has passed, but the lock's own timeline has not, waits for the
    #: rest of it (the lock may have been locked in time): until a message stamped past the
    #: deadline, ``backlog_quiet`` without one, or ``backlog_hold_max`` after the unlock
    #: arrived. A door unlocked live is judged by the clock alone, as before.
    backlog_age: timedelta = timedelta(seconds=30)
    backlog_quiet: timedelta = timedelta(seconds=15)
    backlog_hold_max: timedelta = timedelta(seconds=60)
    #: a device alarm stamped longer ago than this on receipt is history, not dispatched
    max_alarm_age: timedelta = timedelta(minutes=10)


RECENT_EVENT_IDS = 64
#: what the engine reads on its telemetry session (gateway.worker.alarms.engine_role)
_LAGGING_TYPES = (Position, Weight, BloodPressure, Battery, Heartbeat)


class AlarmEngine:
    def __init__(
        self,
        book: AlarmBook,
        config: RuleConfig,
        *,
        person: Callable[[UUID], PersonRules | None],
        device: Callable[[str], DeviceRecord | None],
        index: FleetIndex | None = None,
        unit: Callable[[UUID], Unit | None] | None = None,
    ) -> None:
        """``index``: the positions of devices the registry's table uses (the silence
        deadlines are kept by the same positions); the engine's own if not given.
        ``unit``: a unit by its id, to name it in its shared devices' alarms (#19.4)."""
        self._unit = unit
        self.book = book
        self.config = config
        self._person = person
        self._device = device
        self.silence = SilenceWatch(index)
        self._geofences: dict[UUID, GeofenceTracker] = {}
        self._weights: dict[UUID, WeightTrend] = {}
        self._door_deadlines: dict[str, tuple[datetime, Binding]] = {}
        # locks with a deadline whose unlock came late: (unlock received, latest stamp,
        # latest received, latest was late)
        self._door_backlogs: dict[str, tuple[datetime, datetime, datetime, bool]] = {}
        self._geofence_subjects: dict[UUID, tuple[DeviceRecord, Binding]] = {}
        # Ids of recent safety events per device: a redelivered press is not a new press.
        # A tuple, not a deque(maxlen=...): a deque's first block is about 700 bytes, held
        # for every device that ever raised an alarm; such messages are rare, so building
        # a new tuple of at most RECENT_EVENT_IDS for each costs nothing that matters.
        self._recent_events: dict[str, tuple[str, ...]] = {}
        # devices whose last will (offline status) came, with when it was received
        self._offline_at: dict[str, datetime] = {}

    # --- messages ---------------------------------------------------------------------------
    def observe(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> list[AlarmEvent]:
        events = self._seen(device, binding, message, at)
        backlogs = self._door_backlogs
        if backlogs and message.ts is not None and device.device_id in backlogs:
            events += self._heard_from_backlog(device.device_id, message.ts, at)
        match message:
            case AlarmMessage() if at - message.ts > self.config.max_alarm_age:
                # A device replaying its buffer after an outage: the press is long past
                # and may be of a holder before the current one's time (the binding says
                # whose it is only by the current assignment). Storage keeps it as
                # history (device_alarms); no operator and no webhook is told.
                log.info(
                    "device alarm older than max_alarm_age_s: stored, not dispatched",
                    extra={"device_id": device.device_id, "kind": message.kind.value,
                           "age_s": round((at - message.ts).total_seconds())},
                )  # fmt: skip
            case AlarmMessage() if self._first_delivery(device.device_id, message.id):
                position = (
                    AlarmPosition(message.lat, message.lon, message.accuracy_m)
                    if message.lat is not None and message.lon is not None
                    else None
                )
                events += self._signal(
                    AlarmKind(message.kind.value), device, binding, message.ts,
                    condition=False, position=position, detail={"message_id": message.id},
                )  # fmt: skip
            case Position():
                events += self._position(device, binding, message)
            case BloodPressure():
                events += self._blood_pressure(device, binding, message)
            case Weight():
                events += self._weight(device, binding, message)
            case BatteryLow(percent=percent):
                events += self._battery(device, binding, percent, message.ts, reported_low=True)
            case Battery(percent=percent) | Heartbeat(battery_percent=percent) if (
                percent is not None
            ):
                events += self._battery(device, binding, percent, message.ts, reported_low=False)
            case Lock():
                events += self._lock(device, binding, message, at)
            case Status(state="offline"):
                self.silence.mark_silent(device.device_id)
                events += self._signal(
                    AlarmKind.DEVICE_SILENT, device, binding, message.ts or at,
                    condition=True, detail={"reason": "offline"},
                )  # fmt: skip
        return events

    def recognise(self, alarms: Iterable[Alarm]) -> None:
        """Remember the last press counted on each open alarm (an engine taking over from
        another: a press the other counted, but did not acknowledge, is redelivered)."""
        for alarm in alarms:
            message_id = alarm.detail.get("message_id")
            if isinstance(message_id, str):
                self._first_delivery(alarm.device_id, message_id)

    def went_offline(self, device_id: str, at: datetime) -> None:
        """A last will an engine before this one received (taking over)."""
        self._offline_at[device_id] = at

    def seed_weight(self, person_id: UUID, ts: datetime, kg: float) -> None:
        """A stored weight (an engine taking over): part of the trend, judged by nobody."""
        person = self._person(person_id)
        limit = person.weight_gain if person else WeightGainLimit()
        trend = self._weights.get(person_id)
        if trend is None or trend.limit != limit:
            trend = self._weights[person_id] = WeightTrend(limit)
        trend.add(ts, kg)

    def seed_door(self, device: DeviceRecord, unlocked_at: datetime, received_at: datetime) -> None:
        """A stored unlock not yet followed by a lock or a door_unlocked alarm (the first
        since the last lock), timed as the engine that received it timed it: a late one
        waits for the rest of its lock's backlog here too."""
        self._door_unlocked(device.device_id, device.binding_at(unlocked_at), unlocked_at,
                            received_at)  # fmt: skip

    def _first_delivery(self, device_id: str, message_id: str) -> bool:
        recent = self._recent_events.get(device_id, ())
        if message_id in recent:
            return False
        self._recent_events[device_id] = (*recent[1 - RECENT_EVENT_IDS :], message_id)
        return True

    def _seen(
        self, device: DeviceRecord, binding: Binding, message: DeviceMessage, at: datetime
    ) -> list[AlarmEvent]:
        if isinstance(message, Status) and message.state == "offline":
            self.went_offline(device.device_id, at)
            return []
        if self._offline_at and device.device_id in self._offline_at:
            # Telemetry and heartbeats come on the engine's other session and may lag
            # behind the last will: one the device stamped before it went offline does
            # not say it is back (a status, an event or a later stamp does).
            ts = message.ts
            stale = ts is None or ts <= self._offline_at[device.device_id]
            if isinstance(message, _LAGGING_TYPES) and stale:
                return []
            del self._offline_at[device.device_id]
        bound = self.config.silence.bound(device.heartbeat_interval_s)
        if self.silence.touch(device.device_id, at, bound):
            return self.book.clear(
                tenant_id=binding.tenant_id, kind=AlarmKind.DEVICE_SILENT,
                device_id=device.device_id, person_id=binding.person_id, at=at,
            )  # fmt: skip
        return []

    def _signal(
        self,
        kind: AlarmKind,
        device: DeviceRecord,
        binding: Binding,
        at: datetime,
        *,
        condition: bool,
        position: AlarmPosition | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[AlarmEvent]:
        person = self._person(binding.person_id) if binding.person_id else None
        if binding.unit_id is not None:  # a unit's shared device: the unit named (#19.4)
            detail = {**(detail or {}), "unit": self._unit_named(binding.unit_id)}
        return self.book.signal(
            tenant_id=binding.tenant_id, kind=kind, device_id=device.device_id,
            person_id=binding.person_id, person_ref=person.ref if person else None, at=at,
            condition=condition, position=position, detail=detail,
        )  # fmt: skip

    def _unit_named(self, unit_id: UUID) -> dict[str, str]:
        unit = self._unit(unit_id) if self._unit is not None else None
        if unit is None:  # not in memory yet: named by its id alone
            return {"id": str(unit_id), "name": "", "kind": ""}
        return unit.named()

    def _clear(
        self, kind: AlarmKind, device: DeviceRecord, binding: Binding, at: datetime, **detail: Any
    ) -> list[AlarmEvent]:
        return self.book.clear(
            tenant_id=binding.tenant_id, kind=kind, device_id=device.device_id,
            person_id=binding.person_id, at=at, detail=detail or None,
        )  # fmt: skip

    def _position(self, device: DeviceRecord, binding: Binding, fix: Position) -> list[AlarmEvent]:
        person = self._person(binding.person_id) if binding.person_id else None
        if person is None or not person.zones:
            return []
        tracker = self._geofences.setdefault(
            person.person_id, GeofenceTracker(self.config.geofence)
        )
        self._geofence_subjects[person.person_id] = (device, binding)
        transition = tracker.update(person.zones, fix.lat, fix.lon, fix.accuracy_m, fix.ts)
        if transition is None:
            return []
        position = AlarmPosition(fix.lat, fix.lon, fix.accuracy_m)
        if transition.kind == "exited":
            return self._signal(
                AlarmKind.GEOFENCE_EXIT, device, binding, fix.ts, condition=True,
                position=position,
                detail={"distance_m": round(transition.distance_m, 1),
                        "zones": list(transition.zone_ids), "source": "position"},
            )  # fmt: skip
        return self._clear(AlarmKind.GEOFENCE_EXIT, device, binding, fix.ts)

    def _blood_pressure(
        self, device: DeviceRecord, binding: Binding, reading: BloodPressure
    ) -> list[AlarmEvent]:
        person = self._person(binding.person_id) if binding.person_id else None
        limits = person.blood_pressure if person else BloodPressureLimits()
        breaches = check_blood_pressure(
            limits, reading.systolic_mmhg, reading.diastolic_mmhg, reading.pulse_bpm
        )
        if breaches:
            return self._signal(
                AlarmKind.BLOOD_PRESSURE, device, binding, reading.ts, condition=True,
                detail={"breaches": [str(b) for b in breaches]},
            )  # fmt: skip
        return self._clear(AlarmKind.BLOOD_PRESSURE, device, binding, reading.ts)

    def _weight(self, device: DeviceRecord, binding: Binding, reading: Weight) -> list[AlarmEvent]:
        if binding.person_id is None:
            return []
        person = self._person(binding.person_id)
        limit = person.weight_gain if person else WeightGainLimit()
        trend = self._weights.get(binding.person_id)
        if trend is None or trend.limit != limit:
            trend = self._weights[binding.person_id] = WeightTrend(limit)
        verdict = trend.add(reading.ts, reading.kg)
        if verdict.exceeded:
            return self._signal(
                AlarmKind.WEIGHT_GAIN, device, binding, reading.ts, condition=True,
                detail={"gain_kg": round(verdict.gain_kg, 2),
                        "window_days": limit.window.total_seconds() / 86400},
            )  # fmt: skip
        if verdict.baseline_kg is not None:
            return self._clear(AlarmKind.WEIGHT_GAIN, device, binding, reading.ts)
        return []

    def _battery(
        self, device: DeviceRecord, binding: Binding, percent: int, at: datetime, *,
        reported_low: bool,
    ) -> list[AlarmEvent]:  # fmt: skip
        if reported_low or percent <= self.config.battery_low_percent:
            return self._signal(
                AlarmKind.BATTERY_LOW, device, binding, at, condition=True,
                detail={"percent": percent},
            )  # fmt: skip
        if percent >= self.config.battery_ok_percent:
            return self._clear(AlarmKind.BATTERY_LOW, device, binding, at, percent=percent)
        return []

    def _lock(
        self, device: DeviceRecord, binding: Binding, event: Lock, at: datetime
    ) -> list[AlarmEvent]:
        if event.action == "unlocked":
            if device.device_id not in self._door_deadlines:  # else it counts from the first
                self._door_unlocked(device.device_id, binding, event.ts, at)
            return []
        if event.action == "locked":
            self._door_deadlines.pop(device.device_id, None)
            self._door_backlogs.pop(device.device_id, None)
            return self._clear(AlarmKind.DOOR_UNLOCKED, device, binding, event.ts)
        return []  # denied: the door stayed shut

    def _door_unlocked(
        self, device_id: str, binding: Binding, stamped: datetime, at: datetime
    ) -> None:
        self._door_deadlines[device_id] = (stamped + self.config.door_unlocked_after, binding)
        if at - stamped >= self.config.backlog_age:  # from a backlog (see RuleConfig)
            self._door_backlogs[device_id] = (at, stamped, at, True)
        else:
            self._door_backlogs.pop(device_id, None)

    def _heard_from_backlog(
        self, device_id: str, stamped: datetime, at: datetime
    ) -> list[AlarmEvent]:
        """A message from a lock whose late unlock is pending: one stamped at or past the
        door's deadline says the door was still unlocked then (before this message's own
        lock or unlock counts)."""
        unlock_at, latest, _, _ = self._door_backlogs[device_id]
        late = at - stamped >= self.config.backlog_age
        self._door_backlogs[device_id] = (unlock_at, max(latest, stamped), at, late)
        deadline, _ = self._door_deadlines[device_id]
        return self._door_left_unlocked(device_id, at) if stamped >= deadline else []

    def _door_left_unlocked(self, device_id: str, at: datetime) -> list[AlarmEvent]:
        _, binding = self._door_deadlines.pop(device_id)
        self._door_backlogs.pop(device_id, None)
        device = self._device(device_id)
        if device is None:
            return []
        return self._signal(
            AlarmKind.DOOR_UNLOCKED, device, binding, at, condition=True,
            detail={"unlocked_for_s": self.config.door_unlocked_after.total_seconds()},
        )  # fmt: skip

    def _backlog_pending(self, device_id: str, deadline: datetime, now: datetime) -> bool:
        """Whether the lock is still delivering a backlog that has not reached the door's
        deadline (see :class:`RuleConfig`): what it did by then is not known yet."""
        backlog = self._door_backlogs.get(device_id)
        if backlog is None:
            return False
        unlock_at, latest, heard_at, late = backlog
        return (
            late
            and latest < deadline
            and now - heard_at < self.config.backlog_quiet
            and now - unlock_at < self.config.backlog_hold_max
        )

    def unauthorised_unlock(
        self, device: DeviceRecord, binding: Binding, event: Lock, decision: LockDecision
    ) -> list[AlarmEvent]:
        """The lock reports an unlock that the access rule refuses (gateway.worker.locks decides,
        from memory): an event alarm per such opening."""
        if decision.allowed or event.action != "unlocked":
            return []
        return self._signal(
            AlarmKind.UNAUTHORISED_UNLOCK, device, binding, event.ts, condition=False,
            detail={"reason": decision.reason.value, "key_id": event.key_id,
                    "method": event.method},
        )  # fmt: skip

    # --- time ---------------------------------------------------------------------------------
    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Everything that is due by ``now``: silent devices, doors left unlocked,
        geofence schedules that ended, escalations."""
        events: list[AlarmEvent] = []
        for device_id in self.silence.due(now):
            device = self._device(device_id)
            if device is None or device.status is not DeviceStatus.ACTIVE:
                self.silence.forget(device_id)
                continue
            binding = device.binding_at(now)
            bound = self.config.silence.bound(device.heartbeat_interval_s)
            events += self._signal(
                AlarmKind.DEVICE_SILENT, device, binding, now, condition=True,
                detail={"reason": "no_message", "bound_s": bound.total_seconds()},
            )  # fmt: skip
        for device_id, (deadline, _) in list(self._door_deadlines.items()):
            if deadline <= now and not self._backlog_pending(device_id, deadline, now):
                events += self._door_left_unlocked(device_id, now)
        for person_id, tracker in self._geofences.items():
            # a safe zone whose time window ended no longer applies: clear its exit alarm
            person = self._person(person_id)
            if person is None or tracker.state is not GeofenceState.OUTSIDE:
                continue
            if tracker.check_schedule(person.zones, now) is not None:
                device, binding = self._geofence_subjects[person_id]
                events += self._clear(
                    AlarmKind.GEOFENCE_EXIT, device, binding, now, reason="zone_inactive"
                )
        events += self.book.escalate_due(now, self.config.escalation)
        return events

    def watch(
        self,
        devices: Iterable[DeviceRecord],
        last_seen: Callable[[str], datetime | None],
        now: datetime,
    ) -> None:
        """Start supervising devices (at start-up): the deadline runs from when each was
        last heard from (``last_seen(device_id)``), or from now for one never heard from."""
        for device in devices:
            if device.status is DeviceStatus.ACTIVE:
                seen = last_seen(device.device_id) or now
                self.silence.touch(
                    device.device_id, seen, self.config.silence.bound(device.heartbeat_interval_s)
                )
