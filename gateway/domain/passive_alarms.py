"""Passive alarms from a person's sensors, per time window (issue #20; pure, no I/O).

A :class:`PassiveRule` applies within a local time window (which may cross midnight,
e.g. 22:00-07:00; DST-safe: the window is judged on the local wall clock):

* ``door_opened_at_night``: the door opened within the window (wandering): an event alarm
  per opening;
* ``out_of_bed``: out of bed within the window and not back within ``minutes``: a condition
  alarm, cleared when back in bed;
* ``no_movement``: no movement for ``minutes`` within the window (daytime): a condition
  alarm, cleared by the next movement;
* ``floor_mat``: the floor mat stepped on within the window: an event alarm.

:class:`PassiveWatch` turns sensor states and the passing of time into :class:`Signal` s;
the worker raises them as alarms with the same lifecycle, routing, escalation and console
as every other alarm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from gateway.domain.supervision import STOCKHOLM, local_instant


class PassiveKind(StrEnum):
    DOOR_OPENED_AT_NIGHT = "door_opened_at_night"
    OUT_OF_BED = "out_of_bed"
    NO_MOVEMENT = "no_movement"
    FLOOR_MAT = "floor_mat"


#: the kinds that need ``minutes``
TIMED_KINDS = frozenset({PassiveKind.OUT_OF_BED, PassiveKind.NO_MOVEMENT})


@dataclass(frozen=True, slots=True)
class PassiveRule:
    id: UUID
    tenant_id: str
    person_id: UUID
    kind: PassiveKind
    window_start: time
    window_end: time
    minutes: int | None = None
    timezone: str = STOCKHOLM

    def in_window(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.timezone)).time()
        start, end = self.window_start, self.window_end
        if start == end:
            return True  # all day
        if start < end:
            return start <= local < end
        return local >= start or local < end

    def window_began(self, at: datetime) -> datetime:
        """The instant the window that ``at`` is in began (``at`` in the window)."""
        zone = ZoneInfo(self.timezone)
        day = at.astimezone(zone).date()
        began = local_instant(day, self.window_start, zone)
        return (
            began
            if began <= at
            else local_instant(day - timedelta(days=1), self.window_start, zone)
        )


@dataclass(frozen=True, slots=True)
class Signal:
    """An alarm to raise (``clear`` False) or a condition that no longer holds."""

    rule: PassiveRule
    device_id: str
    at: datetime
    condition: bool  # a condition alarm (out_of_bed, no_movement) or an event alarm
    clear: bool = False
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassiveWatch:
    #: out_of_bed: rule id -> (deadline, the bed sensor)
    out_of_bed: dict[UUID, tuple[datetime, str]] = field(default_factory=dict)
    #: condition alarms raised and not yet cleared: rule id -> device id
    active: dict[UUID, str] = field(default_factory=dict)
    #: no_movement: person -> (last movement, the motion sensor)
    last_motion: dict[UUID, tuple[datetime, str]] = field(default_factory=dict)

    def on_state(
        self,
        rules: Iterable[PassiveRule],
        kind: str,
        value: str | bool,
        device_id: str,
        at: datetime,
    ) -> list[Signal]:
        """A sensor of the rules' person reported ``value`` (``kind``: the message type)."""
        out: list[Signal] = []
        for rule in rules:
            match rule.kind, kind:
                case PassiveKind.DOOR_OPENED_AT_NIGHT, "door" if value == "open":
                    if rule.in_window(at):
                        out.append(
                            Signal(
                                rule,
                                device_id,
                                at,
                                condition=False,
                                detail={"sensor": "door", "state": "open"},
                            )
                        )
                case PassiveKind.FLOOR_MAT, "floor_mat" if value is True:
                    if rule.in_window(at):
                        out.append(
                            Signal(
                                rule,
                                device_id,
                                at,
                                condition=False,
                                detail={"sensor": "floor_mat", "stepped_on": True},
                            )
                        )
                case PassiveKind.OUT_OF_BED, "bed":
                    if value is False and rule.in_window(at):
                        assert rule.minutes is not None
                        deadline = at + timedelta(minutes=rule.minutes)
                        self.out_of_bed.setdefault(rule.id, (deadline, device_id))
                    elif value is True:
                        self.out_of_bed.pop(rule.id, None)
                        if self.active.pop(rule.id, None) is not None:
                            out.append(
                                Signal(
                                    rule,
                                    device_id,
                                    at,
                                    condition=True,
                                    clear=True,
                                    detail={"back_in_bed_at": at.isoformat()},
                                )
                            )
                case PassiveKind.NO_MOVEMENT, "motion" if value is True:
                    self.last_motion[rule.person_id] = (at, device_id)
                    if self.active.pop(rule.id, None) is not None:
                        out.append(
                            Signal(
                                rule,
                                device_id,
                                at,
                                condition=True,
                                clear=True,
                                detail={"moved_at": at.isoformat()},
                            )
                        )
        return out

    def due(self, rules: Iterable[PassiveRule], now: datetime) -> list[Signal]:
        """Conditions that have become true by ``now``."""
        out: list[Signal] = []
        for rule in rules:
            if rule.id in self.active or rule.minutes is None:
                continue
            if rule.kind is PassiveKind.OUT_OF_BED:
                pending = self.out_of_bed.get(rule.id)
                if pending is not None and pending[0] <= now:
                    del self.out_of_bed[rule.id]
                    self.active[rule.id] = pending[1]
                    out.append(
                        Signal(
                            rule,
                            pending[1],
                            now,
                            condition=True,
                            detail={
                                "minutes": rule.minutes,
                                "out_since": (
                                    pending[0] - timedelta(minutes=rule.minutes)
                                ).isoformat(),
                            },
                        )
                    )
            elif rule.kind is PassiveKind.NO_MOVEMENT and rule.in_window(now):
                began = rule.window_began(now)
                last = self.last_motion.get(rule.person_id)
                since = max(began, last[0]) if last is not None else began
                if now - since >= timedelta(minutes=rule.minutes):
                    device = last[1] if last is not None else f"rule-{rule.id}"
                    self.active[rule.id] = device
                    out.append(
                        Signal(
                            rule,
                            device,
                            now,
                            condition=True,
                            detail={
                                "minutes": rule.minutes,
                                "last_movement": last[0].isoformat() if last else None,
                            },
                        )
                    )
        return out
