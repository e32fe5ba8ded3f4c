"""Digital night supervision: planned checks by sensor (issue #20; pure, no I/O).

In Swedish care, digital night supervision means checks at agreed times of the night, by
sensor instead of a physical visit. A :class:`Plan` holds, per person: the agreed local
check times (e.g. 22:00, 01:00, 04:00, Europe/Stockholm), what counts as *seen* at each
(:class:`Seen`: in bed; motion within N minutes; the door closed), the retry interval and
the team that acts. At each time the gateway evaluates the person's sensors' states
(:func:`evaluate`):

* seen -> ``ok``;
* not seen -> ``retried``, evaluated again after the retry interval: then ``ok`` or
  ``not_ok`` (alarm ``supervision_not_ok`` with what was seen);
* the sensor the check needs silent, offline or never heard -> ``failed`` (alarm
  ``supervision_failed``: when the technology fails, staff make a physical visit); also
  when the person has no decision in force with consent for night supervision.

Local times and daylight saving time (:func:`local_instant`): a check time that does not
exist that night (02:30 when the clocks go forward at 02:00) runs at the first instant
after the gap (03:00 summer time); a check time that exists twice (02:30 when the clocks go
back at 03:00) runs once, at its first occurrence (02:30 summer time). A night is the 24
hours from local noon (:func:`night_of`), so 22:00 and 04:00 belong to the same night.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

STOCKHOLM = "Europe/Stockholm"


class Seen(StrEnum):
    IN_BED = "in_bed"
    MOTION = "motion"
    DOOR_CLOSED = "door_closed"


class Result(StrEnum):
    OK = "ok"
    RETRIED = "retried"
    NOT_OK = "not_ok"
    FAILED = "failed"


#: what each rule of "seen" reads: the sensor message type
SEEN_SENSOR: dict[Seen, str] = {Seen.IN_BED: "bed", Seen.MOTION: "motion", Seen.DOOR_CLOSED: "door"}


def parse_check_time(text: str) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (24 h), a local wall-clock time."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"check time {text!r} is not HH:MM or HH:MM:SS")
    hour, minute = int(parts[0]), int(parts[1])
    second = int(parts[2]) if len(parts) == 3 else 0
    return time(hour, minute, second)  # raises ValueError beyond 23:59:59


def format_check_time(t: time) -> str:
    return t.strftime("%H:%M") if t.second == 0 else t.strftime("%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Plan:
    id: UUID
    tenant_id: str
    person_id: UUID
    check_times: tuple[time, ...]
    seen: Seen
    retry_after: timedelta
    team: str
    motion_minutes: int | None = None
    timezone: str = STOCKHOLM


def local_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The instant of local ``wall`` time on ``day`` (DST-safe, see the module)."""
    naive = datetime.combine(day, wall)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)  # exists (fold=0: the first of two when ambiguous)
    # in the gap when the clocks go forward: the first instant after it
    before = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)  # the earlier offset's
    after = first.astimezone(UTC)
    offset_after = after.astimezone(zone).utcoffset()
    step = before
    while step < after and step.astimezone(zone).utcoffset() != offset_after:
        step += timedelta(minutes=1)
    return step


def night_of(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The night ``now`` is in: from local noon to the next local noon (as UTC)."""
    local = now.astimezone(zone)
    day = local.date() if local.time() >= time(12) else local.date() - timedelta(days=1)
    return (
        local_instant(day, time(12), zone),
        local_instant(day + timedelta(days=1), time(12), zone),
    )


def check_instants(plan: Plan, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """The plan's checks in (start, end], in time order: (instant, the agreed local time)."""
    zone = ZoneInfo(plan.timezone)
    out: set[tuple[datetime, str]] = set()
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        for wall in plan.check_times:
            at = local_instant(day, wall, zone)
            if start < at <= end:
                out.add((at, format_check_time(wall)))
        day += timedelta(days=1)
    return sorted(out)


# --- the sensors' states ----------------------------------------------------------------


@dataclass(slots=True)
class SensorState:
    """What one sensor of a person said last. ``value``: a door's ``open``/``closed``;
    True/False for motion detected, bed occupied, mat stepped on."""

    device_id: str
    kind: str  # the sensor message type: door, motion, bed, floor_mat
    value: str | bool | None = None
    at: datetime | None = None  # when the state was reported (device time)
    heard_at: datetime | None = None  # the last message of any type (receive time)
    bound: timedelta = timedelta(minutes=30)  # silent when not heard from within
    offline: bool = False
    offline_at: datetime | None = None  # when its last will came (receive time)
    last_true_at: datetime | None = None  # motion: the last time movement was seen

    def usable(self, now: datetime) -> str | None:
        """Why this sensor cannot be relied on now, or None."""
        if self.offline:
            return "sensor_offline"
        if self.heard_at is None or now - self.heard_at > self.bound:
            return "sensor_silent"
        if self.value is None:
            return "no_state"
        return None

    def shown(self) -> dict[str, Any]:
        """The state as documented (states and times only)."""
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "value": self.value,
            "at": self.at.isoformat() if self.at else None,
            "offline": self.offline,
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    result: Result  # OK, NOT_OK (before retry rules) or FAILED
    seen: dict[str, Any]
    reason: str | None = None


def evaluate(plan: Plan, sensors: Iterable[SensorState], now: datetime) -> Evaluation:
    """The plan's check against the person's sensors now."""
    held = list(sensors)
    seen_doc: dict[str, Any] = {"sensors": [s.shown() for s in held], "rule": plan.seen.value}
    kind = SEEN_SENSOR[plan.seen]
    needed = [s for s in held if s.kind == kind]
    if not needed:
        return Evaluation(Result.FAILED, seen_doc, f"no {kind} sensor heard")
    usable = [s for s in needed if s.usable(now) is None]
    if not usable:
        reasons = sorted({r for s in needed if (r := s.usable(now)) is not None})
        return Evaluation(Result.FAILED, seen_doc, ", ".join(reasons))
    ok: bool
    match plan.seen:
        case Seen.IN_BED:
            ok = any(s.value is True for s in usable)
        case Seen.DOOR_CLOSED:
            ok = all(s.value == "closed" for s in usable)
        case Seen.MOTION:
            window = timedelta(minutes=plan.motion_minutes or 0)
            ok = any(
                s.value is True or (s.last_true_at is not None and now - s.last_true_at <= window)
                for s in usable
            )
    return Evaluation(Result.OK if ok else Result.NOT_OK, seen_doc)


# --- the schedule ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    """A check to make now: the plan's check of ``planned_at`` (``local_time`` as agreed),
    attempt 1 at the agreed time, 2 the retry."""

    plan_id: UUID
    planned_at: datetime
    local_time: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check's result, as stored (supervision_checks) and shown in the night view."""

    tenant_id: str
    person_id: UUID
    plan_id: UUID
    planned_at: datetime
    local_time: str
    attempt: int
    result: Result
    evaluated_at: datetime
    seen: Mapping[str, Any]
    reason: str | None = None
    alarm_id: UUID | None = None


@dataclass
class Schedule:
    """Which checks are due. Each plan has a cursor: checks planned after it are still to
    come. A new plan's cursor is where the caller says (the last check stored for it, or
    now): a worker that restarts or takes over the engine makes the checks it missed, once.
    """

    cursors: dict[UUID, datetime] = field(default_factory=dict)
    retries: dict[tuple[UUID, datetime], tuple[datetime, Due]] = field(default_factory=dict)
    #: each plan's next check instant (computed once per check, not at every tick)
    upcoming: dict[UUID, tuple[Plan, datetime | None]] = field(default_factory=dict)

    def due(
        self, plans: Iterable[Plan], now: datetime, start: Callable[[UUID], datetime]
    ) -> Iterator[Due]:
        """Checks due by ``now``; ``start(plan_id)``: the cursor of a plan seen for the
        first time. A plan whose next check is ahead costs a comparison."""
        live: set[UUID] = set()
        for plan in plans:
            live.add(plan.id)
            cursor = self.cursors.get(plan.id)
            if cursor is None:
                cursor = self.cursors[plan.id] = start(plan.id)
            held = self.upcoming.get(plan.id)
            if held is None or held[0] != plan:
                held = self.upcoming[plan.id] = (plan, _next_check(plan, cursor))
            if held[1] is None or held[1] > now:
                continue
            for at, local in check_instants(plan, cursor, now):
                yield Due(plan.id, at, local, 1)
            self.cursors[plan.id] = max(cursor, now)
            self.upcoming[plan.id] = (plan, _next_check(plan, self.cursors[plan.id]))
        for key, (due_at, due) in sorted(self.retries.items(), key=lambda kv: kv[1][0]):
            if due.plan_id not in live:
                del self.retries[key]
            elif due_at <= now:
                del self.retries[key]
                yield due
        for gone in set(self.cursors) - live:
            del self.cursors[gone]
            self.upcoming.pop(gone, None)

    def retry(self, plan: Plan, due: Due, now: datetime) -> None:
        again = Due(due.plan_id, due.planned_at, due.local_time, 2)
        self.retries[(due.plan_id, due.planned_at)] = (now + plan.retry_after, again)


def _next_check(plan: Plan, after: datetime) -> datetime | None:
    found = check_instants(plan, after, after + timedelta(days=2))
    return found[0][0] if found else None


def outcome(due: Due, evaluation: Evaluation) -> Result:
    """The recorded result of an attempt: a first attempt not seen is ``retried``; the
    retry not seen is ``not_ok``; ``ok`` and ``failed`` as evaluated."""
    if evaluation.result is Result.NOT_OK and due.attempt == 1:
        return Result.RETRIED
    return evaluation.result
