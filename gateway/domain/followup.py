"""The follow-up report of a municipality (issue #21.1; docs/report.md): pure figures.

The adapters (``gateway.adapters.postgres.report_queries``) read counts from the database
(the daily rollup of the time series, the registry, the alarms, the planned visits); this
module turns them into the report's figures. No I/O here; rendering (SVG, HTML, CSV) is
``gateway.domain.report_render``.

Services and the national categories
------------------------------------
Municipalities report users per service in four categories: safety alarm (trygghetslarm,
the stationary alarm at home), GPS alarm (mobile safety alarm), digital night supervision
and keyless locks. A device's service is derived from its type:

* ``gps_alarm`` -> GPS alarm. A GPS alarm is a mobile safety alarm, but nationally it is
  counted as a GPS alarm, not as a safety alarm, so it is not counted twice.
* ``door_lock`` -> keyless locks.
* ``scale`` and ``blood_pressure_monitor`` -> remote self-monitoring: not one of the four
  national categories; reported on a line of its own.
* safety alarm: the registry has no device type for a stationary safety alarm, so the
  category is reported as not in use (0 users), with the reason.
* digital night supervision (issue #20): its users are the residents with a supervision
  plan in the period (the service is the plan of agreed checks, not a device); its devices
  are the passive sensors held (``door_sensor``, ``motion_sensor``, ``bed_sensor``,
  ``floor_mat``: they serve the night's checks and the passive alarms of the same service
  family). Its checks (OK / not OK / failed, and how many needed the retry) come from
  :func:`supervision`, the one place its figures are made.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/Stockholm")
#: a device held but not used for this many days is "unused"
UNUSED_DAYS = 14
#: a GPS alarm worn on fewer days a week than this is "rarely worn"
WORN_DAYS_PER_WEEK = 2
#: ... judged over the last this many days of the period (like "unused", a figure of the
#: fleet as the period ends: a year's report does not read a year of daily rows for it)
WORN_WINDOW_DAYS = 28
#: a GPS alarm held for less than a week of that window is not judged
MIN_JUDGED_DAYS = 7
#: the longest period one report covers
MAX_PERIOD_DAYS = 366
#: technical conditions: not answered by the night team, so not in the response times
TECHNICAL_KINDS = frozenset({"device_silent", "battery_low", "receiver_unreachable"})
#: the conditions whose devices and durations the report shows
CONDITION_KINDS = ("device_silent", "battery_low")
#: local hours counted as the night (22:00-07:00)
NIGHT_HOURS = (22, 23, 0, 1, 2, 3, 4, 5, 6)


class Service(StrEnum):
    SAFETY_ALARM = "safety_alarm"
    GPS_ALARM = "gps_alarm"
    NIGHT_SUPERVISION = "night_supervision"
    KEYLESS_LOCKS = "keyless_locks"
    SELF_MONITORING = "remote_self_monitoring"


#: the four categories municipalities report nationally, in the report's order
NATIONAL = (
    Service.SAFETY_ALARM,
    Service.GPS_ALARM,
    Service.NIGHT_SUPERVISION,
    Service.KEYLESS_LOCKS,
)
SERVICES = (*NATIONAL, Service.SELF_MONITORING)

SERVICE_OF_TYPE: dict[str, Service] = {
    "gps_alarm": Service.GPS_ALARM,
    "door_lock": Service.KEYLESS_LOCKS,
    "scale": Service.SELF_MONITORING,
    "blood_pressure_monitor": Service.SELF_MONITORING,
    "door_sensor": Service.NIGHT_SUPERVISION,
    "motion_sensor": Service.NIGHT_SUPERVISION,
    "bed_sensor": Service.NIGHT_SUPERVISION,
    "floor_mat": Service.NIGHT_SUPERVISION,
}
DEVICE_TYPES = (
    "gps_alarm", "door_lock", "scale", "blood_pressure_monitor",
    "door_sensor", "motion_sensor", "bed_sensor", "floor_mat",
)  # fmt: skip

#: the device types whose use the daily rollup sees (positions, device alarms, readings,
#: lock events); the passive sensors' states are not in it, so they are not judged unused
USE_SEEN = ("gps_alarm", "door_lock", "scale", "blood_pressure_monitor")

#: why a category has no users in the product (not a figure of the municipality)
NOT_IN_USE: dict[Service, str] = {
    Service.SAFETY_ALARM: "no device type of the registry is a stationary safety alarm",
}


#: notes on the report as a whole (codes; the rendering words them)
NO_TARGET = "no_target"  # no answering target set: the response times have no target line
SHORT_PERIOD = "short_period"  # shorter than UNUSED_DAYS: no device judged unused


class PeriodError(ValueError):
    """A period the report cannot cover (empty, reversed, too long)."""


@dataclass(frozen=True)
class Period:
    """Local dates (Europe/Stockholm), ``end`` exclusive."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PeriodError("the period's end must be after its start")
        if (self.end - self.start).days > MAX_PERIOD_DAYS:
            raise PeriodError(f"a report covers at most {MAX_PERIOD_DAYS} days")

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        if not 1 <= month <= 12:
            raise PeriodError("month must be 1-12")
        last = calendar.monthrange(year, month)[1]
        return cls(date(year, month, 1), date(year, month, last) + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def lo(self) -> datetime:
        """The first instant of the period."""
        return datetime.combine(self.start, datetime.min.time(), ZONE).astimezone(UTC)

    @property
    def hi(self) -> datetime:
        """The first instant after the period."""
        return datetime.combine(self.end, datetime.min.time(), ZONE).astimezone(UTC)

    @property
    def unused_from(self) -> date:
        """The first day of the last :data:`UNUSED_DAYS` days of the period."""
        return max(self.start, self.end - timedelta(days=UNUSED_DAYS))

    @property
    def worn_from(self) -> date:
        """The first day of the last :data:`WORN_WINDOW_DAYS` days of the period."""
        return max(self.start, self.end - timedelta(days=WORN_WINDOW_DAYS))


# --- inputs (what the adapters read) --------------------------------------------------


@dataclass(frozen=True)
class Holding:
    """A device held by a person, or by a unit (a ward's shared device: ``person_id`` is
    None, docs/units.md), in an assignment overlapping the period."""

    device_id: str
    device_type: str
    person_id: str | None
    valid_from: datetime
    valid_to: datetime | None


@dataclass(frozen=True)
class DeviceUse:
    """What the daily rollup says of one device at the period's end."""

    device_id: str
    #: days with a position or a device alarm (a GPS alarm being worn) among the last
    #: WORN_WINDOW_DAYS days of the period
    days_worn: int
    #: days with a position, device alarm, reading or lock event among the last
    #: UNUSED_DAYS days of the period
    used_recently: int


@dataclass(frozen=True)
class ResponseGroup:
    """Alarms of one kind (or one local hour): counts and acknowledge times (seconds)."""

    key: str
    alarms: int
    judged: int  # acknowledged, or open longer than the target (counted against it)
    within_target: int
    ack_p50_s: float | None
    ack_p90_s: float | None


@dataclass(frozen=True)
class Escalations:
    kind: str
    alarms: int
    escalated: int
    max_level: int


@dataclass(frozen=True)
class ConditionSpell:
    """Spells of one technical condition raised in the period (durations in hours,
    clipped to the period's end, or to now for one still on)."""

    kind: str
    spells: int
    devices: int
    hours_total: float
    hours_p50: float | None
    hours_max: float | None
    open_at_end: int


@dataclass(frozen=True)
class Visits:
    planned: int
    opened: int


@dataclass(frozen=True)
class Target:
    """The municipality's own answering target: a share acknowledged within N seconds."""

    ack_within_s: int
    ack_share: float


# --- the figures ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceLine:
    service: Service
    national: bool
    in_use: bool
    note: str
    devices: int
    devices_at_end: int
    users: int


@dataclass(frozen=True)
class ResponseLine:
    key: str
    alarms: int
    ack_p50_s: float | None
    ack_p90_s: float | None
    share_within_target: float | None
    meets_target: bool | None


@dataclass(frozen=True)
class SupervisionCounts:
    """Digital night supervision in the period, as read: residents with a plan, and each
    planned check by its final result (the retry's when there was one)."""

    users: int = 0
    checks_ok: int = 0
    checks_not_ok: int = 0
    checks_failed: int = 0
    checks_retried: int = 0  # checks that needed the retry (whatever its result)


@dataclass(frozen=True)
class Supervision:
    in_use: bool
    note: str
    users: int = 0
    checks_ok: int = 0
    checks_not_ok: int = 0
    checks_failed: int = 0
    checks_retried: int = 0


@dataclass(frozen=True)
class Report:
    tenant_id: str
    period: Period
    target: Target | None
    devices_by_type: dict[str, int]
    services: list[ServiceLine]
    unused_devices: dict[str, int]  # by device type: held throughout, no use for 14 days
    gps_rarely_worn: int
    gps_judged: int
    response_by_kind: list[ResponseLine]
    response_by_hour: list[ResponseLine]
    escalations: list[Escalations]
    conditions: list[ConditionSpell]
    visits: Visits
    supervision: Supervision
    notes: list[str] = field(default_factory=list)


def service_of(device_type: str) -> Service | None:
    return SERVICE_OF_TYPE.get(device_type)


def supervision(counts: SupervisionCounts) -> Supervision:
    """Digital night supervision's figures (issue #20): the one place they are made."""
    return Supervision(
        in_use=True,
        note="",
        users=counts.users,
        checks_ok=counts.checks_ok,
        checks_not_ok=counts.checks_not_ok,
        checks_failed=counts.checks_failed,
        checks_retried=counts.checks_retried,
    )


def _held_days(holdings: Iterable[Holding], lo: datetime, hi: datetime) -> float:
    """Days from ``lo`` to ``hi`` covered by these holdings (overlaps counted once)."""
    spans = sorted((max(h.valid_from, lo), min(h.valid_to or hi, hi)) for h in holdings)
    total = timedelta()
    cur_lo: datetime | None = None
    cur_hi: datetime | None = None
    for lo, hi in spans:
        if hi <= lo:
            continue
        if cur_hi is None or lo > cur_hi:
            if cur_lo is not None and cur_hi is not None:
                total += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_lo is not None and cur_hi is not None:
        total += cur_hi - cur_lo
    return total / timedelta(days=1)


def _held_at(holdings: Iterable[Holding], at: datetime) -> bool:
    return any(h.valid_from <= at and (h.valid_to is None or h.valid_to > at) for h in holdings)


def _held_throughout(holdings: Sequence[Holding], lo: datetime, hi: datetime) -> bool:
    """Held without a gap from ``lo`` to ``hi``."""
    at = lo
    for h in sorted(holdings, key=lambda h: h.valid_from):
        if h.valid_from <= at and (h.valid_to is None or h.valid_to > at):
            if h.valid_to is None or h.valid_to >= hi:
                return True
            at = h.valid_to
    return False


def response_line(group: ResponseGroup, target: Target | None) -> ResponseLine:
    share = None
    meets = None
    if target is not None and group.judged > 0:
        share = round(group.within_target / group.judged, 4)
        meets = share >= target.ack_share
    return ResponseLine(group.key, group.alarms, group.ack_p50_s, group.ack_p90_s, share, meets)


def _hours(groups: Iterable[ResponseGroup], target: Target | None) -> list[ResponseLine]:
    """One line per local hour 00-23, in order (an hour without alarms: zero)."""
    found = {g.key: g for g in groups}
    return [
        response_line(found.get(f"{h:02d}", ResponseGroup(f"{h:02d}", 0, 0, 0, None, None)), target)
        for h in range(24)
    ]


def compute(
    tenant_id: str,
    period: Period,
    *,
    holdings: Sequence[Holding],
    use: Iterable[DeviceUse],
    target: Target | None,
    by_kind: Iterable[ResponseGroup],
    by_hour: Iterable[ResponseGroup],
    escalations: Iterable[Escalations],
    conditions: Iterable[ConditionSpell],
    visits: Visits,
    supervised: SupervisionCounts | None = None,
) -> Report:
    """The report's figures from what the adapters read (see each input's docstring)."""
    supervised = supervised or SupervisionCounts()
    by_device: dict[str, list[Holding]] = {}
    for h in holdings:
        by_device.setdefault(h.device_id, []).append(h)
    type_of = {h.device_id: h.device_type for h in holdings}
    at_end = period.hi - timedelta(microseconds=1)

    devices_by_type = dict.fromkeys(DEVICE_TYPES, 0)
    for device_type in type_of.values():
        devices_by_type[device_type] = devices_by_type.get(device_type, 0) + 1

    devices: dict[Service, set[str]] = {s: set() for s in SERVICES}
    devices_end: dict[Service, set[str]] = {s: set() for s in SERVICES}
    users: dict[Service, set[str]] = {s: set() for s in SERVICES}
    for h in holdings:
        service = service_of(h.device_type)
        if service is None:
            continue
        devices[service].add(h.device_id)
        if h.person_id is not None:  # a unit's shared device: in use, its users not known
            users[service].add(h.person_id)
    for device_id, held in by_device.items():
        service = service_of(type_of[device_id])
        if service is not None and _held_at(held, at_end):
            devices_end[service].add(device_id)

    lines = []
    for service in SERVICES:
        note = NOT_IN_USE.get(service, "")
        lines.append(ServiceLine(
            service=service, national=service in NATIONAL, in_use=service not in NOT_IN_USE,
            note=note, devices=len(devices[service]), devices_at_end=len(devices_end[service]),
            users=supervised.users if service is Service.NIGHT_SUPERVISION
            else len(users[service]),
        ))  # fmt: skip

    usage = {u.device_id: u for u in use}
    recent_lo = datetime.combine(period.unused_from, datetime.min.time(), ZONE).astimezone(UTC)
    worn_lo = datetime.combine(period.worn_from, datetime.min.time(), ZONE).astimezone(UTC)
    unused = dict.fromkeys(USE_SEEN, 0)
    rarely_worn = judged = 0
    for device_id, held in by_device.items():
        device_type = type_of[device_id]
        u = usage.get(device_id, DeviceUse(device_id, 0, 0))
        recent = period.days >= UNUSED_DAYS and _held_throughout(held, recent_lo, period.hi)
        if recent and u.used_recently == 0 and device_type in USE_SEEN:
            unused[device_type] = unused.get(device_type, 0) + 1
        if device_type == "gps_alarm":
            days = _held_days(held, worn_lo, period.hi)
            if days >= MIN_JUDGED_DAYS:
                judged += 1
                if u.days_worn / (days / 7) < WORN_DAYS_PER_WEEK:
                    rarely_worn += 1

    notes = []
    if target is None:
        notes.append(NO_TARGET)
    if period.days < UNUSED_DAYS:
        notes.append(SHORT_PERIOD)

    return Report(
        tenant_id=tenant_id,
        period=period,
        target=target,
        devices_by_type=devices_by_type,
        services=lines,
        unused_devices=unused,
        gps_rarely_worn=rarely_worn,
        gps_judged=judged,
        response_by_kind=[response_line(g, target) for g in by_kind],
        response_by_hour=_hours(by_hour, target),
        escalations=list(escalations),
        conditions=list(conditions),
        visits=visits,
        supervision=supervision(supervised),
        notes=notes,
    )
