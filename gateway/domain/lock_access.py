"""May this staff key open this person's door now? Pure, no I/O.

A staff key opens a home only when its staff member has a planned visit there (with a
margin before and after) or an alarm of an opening kind (e.g. a button press or a fall)
is open for the person living there. Everything else is refused, with a reason that is
written to the access log. The same rule judges a remote unlock asked for through the
API (before the command is sent) and an unlock the lock reports as done by a key.

The checks run in this order; the first that fails gives the reason:

=====================  ============================================================
reason                 when
=====================  ============================================================
``key_missing``        no key id given (a reported unlock without ``key_id``)
``key_unknown``        no such key in the registry
``key_other_tenant``   the key belongs to another huvudman than the lock
``key_revoked``        the key was revoked at or before the moment judged
``key_not_valid``      the moment is outside the key's validity period
``staff_inactive``     the key's staff member is no longer active
``command_expired``    a remote command whose ``expires_at`` has passed
``unit_door``          allowed: the lock is a unit's (a residential unit's or a ward's
                       door, issue #19.4): staff work there all day, and visits are
                       planned per resident, so a valid key of an active staff member of
                       the lock's tenant opens it (every opening is logged all the same)
``no_person``          the lock is not assigned to anyone at that moment
``visit``              allowed: a planned visit of this staff member (or their team)
``alarm_open``         allowed: an alarm of an opening kind is open for the person
``outside_window``     refused: the staff member has a visit here within 12 h, not now
``no_visit``           refused: no planned visit of this staff member near now
=====================  ============================================================

A window is ``[start - margin_before, end + margin_after]``, both ends included.
Weekly slots are in local time of their own time zone; on the nights the clocks change,
a local time that is ambiguous or does not exist is read in whichever way makes the
window wider (a visit planned 02:00-03:00 on the autumn night lasts two real hours).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from uuid import UUID
from zoneinfo import ZoneInfo

from gateway.domain.alarms import AlarmKind

#: How far from now a visit of the same staff member makes a refusal ``outside_window``
#: rather than ``no_visit``.
NEAR = timedelta(hours=12)


class Reason(StrEnum):
    VISIT = "visit"
    ALARM_OPEN = "alarm_open"
    KEY_MISSING = "key_missing"
    KEY_UNKNOWN = "key_unknown"
    KEY_OTHER_TENANT = "key_other_tenant"
    KEY_REVOKED = "key_revoked"
    KEY_NOT_VALID = "key_not_valid"
    STAFF_INACTIVE = "staff_inactive"
    COMMAND_EXPIRED = "command_expired"
    UNIT_DOOR = "unit_door"
    NO_PERSON = "no_person"
    OUTSIDE_WINDOW = "outside_window"
    NO_VISIT = "no_visit"


ALLOWING = frozenset({Reason.VISIT, Reason.ALARM_OPEN, Reason.UNIT_DOOR})


@dataclass(frozen=True, slots=True)
class StaffMember:
    staff_id: UUID
    tenant_id: str
    subject: str  # the staff member's login subject (e.g. HSA-id)
    teams: frozenset[str] = frozenset()
    active: bool = True


@dataclass(frozen=True, slots=True)
class StaffKey:
    key_id: str
    staff_id: UUID
    tenant_id: str
    valid_from: datetime
    valid_to: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    """One planned visit (absolute times)."""

    visit_id: str
    person_id: UUID
    starts_at: datetime
    ends_at: datetime
    staff_id: UUID | None = None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class WeeklySlot:
    """A recurring visit: on ``weekdays`` (0 = Monday) from ``start`` to ``end`` local time
    (``end`` <= ``start``: ends the next day), from ``first_day`` to ``last_day``."""

    visit_id: str
    person_id: UUID
    weekdays: frozenset[int]
    start: time
    end: time
    timezone: str = "Europe/Stockholm"
    first_day: date | None = None
    last_day: date | None = None
    staff_id: UUID | None = None
    team: str | None = None

    def occurrences(self, around: datetime, spread: timedelta) -> list[Visit]:
        """The slot's occurrences that overlap ``around`` +- ``spread``."""
        zone = ZoneInfo(self.timezone)
        around = around.astimezone(UTC)
        local_day = around.astimezone(zone).date()
        days = int(spread / timedelta(days=1)) + 2
        out = []
        for offset in range(-days, days + 1):
            day = local_day + timedelta(days=offset)
            if day.weekday() not in self.weekdays:
                continue
            if (self.first_day and day < self.first_day) or (self.last_day and day > self.last_day):
                continue
            end_day = day + timedelta(days=1) if self.end <= self.start else day
            starts = _earliest(day, self.start, zone)
            ends = _latest(end_day, self.end, zone)
            if starts <= around + spread and ends >= around - spread:
                out.append(
                    Visit(f"{self.visit_id}@{day.isoformat()}", self.person_id, starts, ends,
                          self.staff_id, self.team)
                )  # fmt: skip
        return out


#: A weekly slot apart from its id and its resident: weekdays, start, end, timezone,
#: first day, last day, staff member, team (``WeeklySlot``'s fields in order).
SlotPlan = tuple[
    frozenset[int], time, time, str, date | None, date | None, UUID | None, str | None
]


class PlannedVisits:
    """One resident's planned visits and weekly slots, held compactly.

    Every worker keeps the whole fleet's plans, so that a door opens by plan while the
    database is down. A slot as a ``WeeklySlot`` cost about 220 bytes: the object, its
    id string, and its place in a list. Here the resident's slot ids are 16 bytes each,
    all in one ``bytes``, and each slot's plan is a ``SlotPlan`` tuple that the loader
    shares among equal plans. That is about 60 bytes a slot for a resident with four.
    ``entries`` makes the visits and slots when a lock asks (a few a day per door).
    """

    __slots__ = ("_person_id", "_plans", "_slot_ids", "_visits")

    def __init__(
        self,
        person_id: UUID,
        visits: Iterable[Visit] = (),
        slots: Iterable[tuple[UUID, SlotPlan]] = (),
    ) -> None:
        self._person_id = person_id
        self._visits = tuple(visits)
        held = tuple(slots)
        self._slot_ids = b"".join(slot_id.bytes for slot_id, _ in held)
        self._plans = tuple(plan for _, plan in held)

    def entries(self) -> list[Visit | WeeklySlot]:
        """The single visits, then the weekly slots (as they were loaded)."""
        out: list[Visit | WeeklySlot] = list(self._visits)
        ids = self._slot_ids
        for n, plan in enumerate(self._plans):
            slot_id = UUID(bytes=ids[16 * n : 16 * n + 16])
            out.append(WeeklySlot(str(slot_id), self._person_id, *plan))
        return out

    def __len__(self) -> int:
        return len(self._visits) + len(self._plans)


def _earliest(day: date, at: time, zone: ZoneInfo) -> datetime:
    a = datetime.combine(day, at, tzinfo=zone)
    return min(a.replace(fold=0).astimezone(UTC), a.replace(fold=1).astimezone(UTC))


def _latest(day: date, at: time, zone: ZoneInfo) -> datetime:
    a = datetime.combine(day, at, tzinfo=zone)
    return max(a.replace(fold=0).astimezone(UTC), a.replace(fold=1).astimezone(UTC))


#: Open alarms of these kinds let any valid staff key in (``locks.alarm_kinds``'s default).
OPENING_ALARM_KINDS: tuple[AlarmKind, ...] = (AlarmKind.BUTTON, AlarmKind.FALL)


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    alarm_id: str
    kind: str


@dataclass(frozen=True)
class AccessPolicy:
    margin_before: timedelta = timedelta(minutes=15)
    margin_after: timedelta = timedelta(minutes=15)
    alarm_kinds: frozenset[str] = frozenset(OPENING_ALARM_KINDS)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    staff_id: UUID | None = None
    visit_id: str | None = None
    alarm_id: str | None = None


@dataclass(frozen=True)
class UnlockRequest:
    """What is judged: ``key`` (None: unknown id) opening a lock of ``lock_tenant`` held
    by ``person_id`` at ``at``; ``expires_at`` only for a remote command."""

    key_id: str | None
    lock_tenant: str
    person_id: UUID | None
    at: datetime
    key: StaffKey | None = None
    staff: StaffMember | None = None
    visits: Sequence[Visit | WeeklySlot] = ()
    open_alarms: Sequence[OpenAlarm] = ()
    expires_at: datetime | None = None
    unit_id: UUID | None = None  # the lock is this unit's door (no person holds it)


def decide(request: UnlockRequest, policy: AccessPolicy) -> Decision:
    # in UTC: datetimes sharing a ZoneInfo compare by wall clock, wrong across DST
    at = request.at.astimezone(UTC)
    key = request.key
    if request.key_id is None:
        return Decision(False, Reason.KEY_MISSING)
    if key is None:
        return Decision(False, Reason.KEY_UNKNOWN)
    if key.tenant_id != request.lock_tenant:
        return Decision(False, Reason.KEY_OTHER_TENANT)
    staff_id = key.staff_id
    if key.revoked_at is not None and key.revoked_at <= at:
        return Decision(False, Reason.KEY_REVOKED, staff_id)
    if at < key.valid_from or (key.valid_to is not None and at >= key.valid_to):
        return Decision(False, Reason.KEY_NOT_VALID, staff_id)
    staff = request.staff
    if staff is None or not staff.active or staff.staff_id != staff_id:
        return Decision(False, Reason.STAFF_INACTIVE, staff_id)
    if request.expires_at is not None and request.expires_at <= at:
        return Decision(False, Reason.COMMAND_EXPIRED, staff_id)
    if request.person_id is None:
        if request.unit_id is not None:
            return Decision(True, Reason.UNIT_DOOR, staff_id)
        return Decision(False, Reason.NO_PERSON, staff_id)
    mine = [v for v in _expand(request.visits, request.person_id, at) if _for(v, staff)]
    for visit in mine:
        if visit.starts_at - policy.margin_before <= at <= visit.ends_at + policy.margin_after:
            return Decision(True, Reason.VISIT, staff_id, visit_id=visit.visit_id)
    for alarm in request.open_alarms:
        if alarm.kind in policy.alarm_kinds:
            return Decision(True, Reason.ALARM_OPEN, staff_id, alarm_id=alarm.alarm_id)
    if mine:
        return Decision(False, Reason.OUTSIDE_WINDOW, staff_id)
    return Decision(False, Reason.NO_VISIT, staff_id)


def _expand(visits: Iterable[Visit | WeeklySlot], person_id: UUID, at: datetime) -> list[Visit]:
    out: list[Visit] = []
    for v in visits:
        if v.person_id != person_id:
            continue
        if isinstance(v, WeeklySlot):
            out.extend(v.occurrences(at, NEAR))
        else:
            starts, ends = v.starts_at.astimezone(UTC), v.ends_at.astimezone(UTC)
            if starts - NEAR <= at <= ends + NEAR:
                out.append(replace(v, starts_at=starts, ends_at=ends))
    return out


def _for(visit: Visit, staff: StaffMember) -> bool:
    if visit.staff_id is not None:
        return visit.staff_id == staff.staff_id
    return visit.team is not None and visit.team in staff.teams
