"""Log review (loggkontroll, issue #21.2): flags over a municipality's access log. Pure,
no I/O; docs/log-review.md.

The input is the access-log entries of the tenant's residents in a period and what the
product knew at the time: the residents' alarms, their planned visits (single visits and
weekly slots), the tenant's staff (subject, teams, own working hours) and the residents'
consents. Four rules:

``no_context``
    The tenant's own staff read a resident's data (allowed) while the resident had no
    alarm open, and the reader had no planned visit to the resident (as the staff member
    named or as a member of the team named), each widened by ``grace`` on both sides.
    That is the whole of what the product knows as a care relation of its own staff;
    reads by another organisation are judged by the consent rules, reads by a host
    municipality during a stay by the stay (not flagged here), an auditor's reads are
    the review itself (not flagged by any rule).
``many_residents``
    One reader's entries (allowed or denied) name ``many_residents`` or more different
    residents within ``many_window``; overlapping windows are one flag.
``outside_hours``
    A read by the tenant's own staff outside their working hours in local time: the
    staff member's own hours when recorded, else the tenant's.
``near_consent_end`` / ``after_consent_end``
    Another organisation's read (a clinician's, or an alarm disclosed to its webhook)
    of a resident within ``consent_near_end`` before the end of the consent it was made
    under (its ``valid_to``, or its withdrawal, known afterwards), or at or after the
    end of the organisation's last consent for the resident (denied attempts included).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


class Rule(StrEnum):
    NO_CONTEXT = "no_context"
    MANY_RESIDENTS = "many_residents"
    OUTSIDE_HOURS = "outside_hours"
    NEAR_CONSENT_END = "near_consent_end"
    AFTER_CONSENT_END = "after_consent_end"


#: Roles of people reading through the API (the other actor roles are the product's own:
#: ``alarm_receiver`` (a webhook disclosure), ``staff_key`` (a lock's report), ``cli``).
PEOPLE = frozenset({"platform_admin", "tenant_admin", "installer", "operator", "clinician",
                    "auditor"})  # fmt: skip
#: An auditor's reads are the review itself.
REVIEWERS = frozenset({"auditor"})
#: The other organisation's actor roles the consent rules judge.
UNDER_CONSENT = frozenset({"clinician", "alarm_receiver"})


@dataclass(frozen=True, slots=True)
class Hours:
    """Working hours in local time: on ``weekdays`` (0 = Monday) from ``start`` to
    ``end``; an ``end`` at or before ``start`` runs over midnight into the next day (a
    shift that starts on a working day)."""

    weekdays: frozenset[int]
    start: time
    end: time

    def covers(self, local: datetime) -> bool:
        t = local.time().replace(tzinfo=None)
        day = local.weekday()
        if self.start < self.end:
            return day in self.weekdays and self.start <= t < self.end
        if t >= self.start:  # the evening part of a shift over midnight
            return day in self.weekdays
        return t < self.end and (day - 1) % 7 in self.weekdays

    def describe(self) -> str:
        days = ",".join(str(d) for d in sorted(self.weekdays))
        return f"{self.start:%H:%M}-{self.end:%H:%M} weekdays {days}"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A tenant's thresholds (log_review_settings; these are the defaults)."""

    many_residents: int = 10
    many_window: timedelta = timedelta(minutes=60)
    grace: timedelta = timedelta(minutes=30)
    consent_near_end: timedelta = timedelta(hours=72)
    hours: Hours = Hours(frozenset(range(7)), time(7, 0), time(22, 0))


DEFAULTS = Thresholds()


@dataclass(frozen=True, slots=True)
class Entry:
    """One access-log row."""

    id: int
    at: datetime
    actor: str
    actor_org: str | None
    actor_role: str
    actor_tenant: str
    owner_tenant: str | None
    person_id: UUID | None
    categories: tuple[str, ...]
    purpose: str | None
    outcome: str
    reason: str
    request: str

    def brief(self) -> dict[str, Any]:
        return {
            "id": self.id, "at": _iso(self.at), "actor": self.actor,
            "actor_org": self.actor_org, "actor_role": self.actor_role,
            "actor_tenant": self.actor_tenant,
            "person_id": str(self.person_id) if self.person_id else None,
            "categories": list(self.categories), "purpose": self.purpose,
            "outcome": self.outcome, "reason": self.reason, "request": self.request,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class AlarmSpan:
    id: UUID
    person_id: UUID
    kind: str
    raised_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class Visit:
    """A planned visit at instants (a single visit, or one occurrence of a weekly slot)."""

    person_id: UUID
    starts_at: datetime
    ends_at: datetime
    staff_subject: str | None
    team: str | None


@dataclass(frozen=True, slots=True)
class VisitSlot:
    """A weekly recurring visit in local time (table visit_slots)."""

    person_id: UUID
    weekdays: frozenset[int]
    start: time
    end: time
    timezone: str
    first_day: date | None
    last_day: date | None
    staff_subject: str | None
    team: str | None

    def occurrences(self, since: datetime, until: datetime) -> list[Visit]:
        """The visits of this slot that overlap [since, until)."""
        tz = ZoneInfo(self.timezone)
        day = since.astimezone(tz).date() - timedelta(days=1)
        last = until.astimezone(tz).date()
        out: list[Visit] = []
        while day <= last:
            if (day.weekday() in self.weekdays
                    and (self.first_day is None or day >= self.first_day)
                    and (self.last_day is None or day <= self.last_day)):  # fmt: skip
                start = datetime.combine(day, self.start, tz)
                end_day = day if self.end > self.start else day + timedelta(days=1)
                end = datetime.combine(end_day, self.end, tz)
                if start < until and end > since:
                    visit = Visit(self.person_id, start.astimezone(UTC), end.astimezone(UTC),
                                  self.staff_subject, self.team)  # fmt: skip
                    out.append(visit)
            day += timedelta(days=1)
        return out


@dataclass(frozen=True, slots=True)
class Staff:
    subject: str
    display_name: str
    teams: frozenset[str] = frozenset()
    hours: Hours | None = None


@dataclass(frozen=True, slots=True)
class ConsentSpan:
    id: UUID
    person_id: UUID
    recipient_org: str
    valid_from: datetime
    valid_to: datetime | None
    withdrawn_at: datetime | None

    @property
    def end(self) -> datetime | None:
        """When it stopped (or stops) holding: its end or its withdrawal, the earlier."""
        ends = [t for t in (self.valid_to, self.withdrawn_at) if t is not None]
        return min(ends) if ends else None

    def holds_at(self, at: datetime) -> bool:
        end = self.end
        return self.valid_from <= at and (end is None or at < end)


@dataclass(frozen=True, slots=True)
class Context:
    tenant: str
    tenant_org: str | None
    alarms: Sequence[AlarmSpan] = ()
    visits: Sequence[Visit] = ()
    slots: Sequence[VisitSlot] = ()
    staff: Mapping[str, Staff] = field(default_factory=dict)
    consents: Sequence[ConsentSpan] = ()


@dataclass(frozen=True, slots=True)
class Flag:
    key: str  # stable: rule and the (first) access-log row
    rule: Rule
    at: datetime  # the (first) entry's time
    actor: str
    actor_tenant: str
    actor_org: str | None
    person_ids: tuple[UUID, ...]
    entries: tuple[Entry, ...]
    summary: str  # one line for the auditor, in English (the console translates the rule)
    evidence: dict[str, Any]


def flag_key(rule: Rule, entry_id: int) -> str:
    return f"{rule.value}:{entry_id}"


def parse_key(key: str) -> tuple[Rule, int] | None:
    rule, _, entry = key.partition(":")
    try:
        return Rule(rule), int(entry)
    except ValueError:
        return None


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def review(
    entries: Iterable[Entry],
    context: Context,
    thresholds: Thresholds = DEFAULTS,
    tz: ZoneInfo = STOCKHOLM,
) -> list[Flag]:
    """Every flag over ``entries`` (the tenant's residents' access-log rows), ordered by
    time and rule."""
    mine = sorted((e for e in entries if e.owner_tenant == context.tenant),
                  key=lambda e: (e.at, e.id))  # fmt: skip
    flags = [
        *_no_context(mine, context, thresholds),
        *_many_residents(mine, thresholds),
        *_outside_hours(mine, context, thresholds, tz),
        *_consent_end(mine, context, thresholds),
    ]
    return sorted(flags, key=lambda f: (f.at, f.entries[0].id, f.rule.value))


def _own_reader(e: Entry, context: Context) -> bool:
    return e.actor_tenant == context.tenant and e.actor_role in PEOPLE


# --- no_context ----------------------------------------------------------------------


def _nearest_alarm(alarms: Sequence[AlarmSpan], at: datetime) -> AlarmSpan | None:
    def distance(a: AlarmSpan) -> timedelta:
        if at < a.raised_at:
            return a.raised_at - at
        if a.resolved_at is not None and at >= a.resolved_at:
            return at - a.resolved_at
        return timedelta(0)

    return min(alarms, key=distance, default=None)


def _nearest_visit(visits: Sequence[Visit], at: datetime) -> Visit | None:
    def distance(v: Visit) -> timedelta:
        return v.starts_at - at if at < v.starts_at else max(at - v.ends_at, timedelta(0))

    return min(visits, key=distance, default=None)


def _visit_for(v: Visit, reader: Staff | None, actor: str) -> bool:
    if v.staff_subject is not None:
        return v.staff_subject == actor
    return reader is not None and v.team is not None and v.team in reader.teams


def _no_context(entries: Sequence[Entry], context: Context, th: Thresholds) -> list[Flag]:
    by_person_alarms: dict[UUID, list[AlarmSpan]] = {}
    for a in context.alarms:
        by_person_alarms.setdefault(a.person_id, []).append(a)
    by_person_visits: dict[UUID, list[Visit]] = {}
    for v in context.visits:
        by_person_visits.setdefault(v.person_id, []).append(v)
    by_person_slots: dict[UUID, list[VisitSlot]] = {}
    for slot in context.slots:
        by_person_slots.setdefault(slot.person_id, []).append(slot)
    flags: list[Flag] = []
    for e in entries:
        if (e.person_id is None or e.outcome != "allowed" or not _own_reader(e, context)
                or e.actor_role in REVIEWERS):  # fmt: skip
            continue
        alarms = by_person_alarms.get(e.person_id, [])
        open_alarm = any(
            a.raised_at - th.grace <= e.at
            and (a.resolved_at is None or e.at < a.resolved_at + th.grace)
            for a in alarms
        )
        if open_alarm:
            continue
        visits = _visits_of(by_person_visits.get(e.person_id, ()),
                            by_person_slots.get(e.person_id, ()), e.at - timedelta(days=1),
                            e.at + timedelta(days=1))  # fmt: skip
        reader = context.staff.get(e.actor)
        if any(
            v.starts_at - th.grace <= e.at < v.ends_at + th.grace and _visit_for(v, reader, e.actor)
            for v in visits
        ):
            continue
        alarm = _nearest_alarm(alarms, e.at)
        visit = _nearest_visit(visits, e.at)
        evidence = {
            "entry": e.brief(),
            "open_alarm": None,
            "nearest_alarm": None if alarm is None else {
                "id": str(alarm.id), "kind": alarm.kind, "raised_at": _iso(alarm.raised_at),
                "resolved_at": _iso(alarm.resolved_at) if alarm.resolved_at else None,
            },
            "planned_visit": None,
            "nearest_visit": None if visit is None else {
                "starts_at": _iso(visit.starts_at), "ends_at": _iso(visit.ends_at),
                "staff": visit.staff_subject, "team": visit.team,
            },
            "reader_has_staff_record": reader is not None,
            "grace_minutes": int(th.grace.total_seconds() // 60),
        }  # fmt: skip
        flags.append(Flag(
            flag_key(Rule.NO_CONTEXT, e.id), Rule.NO_CONTEXT, e.at, e.actor, e.actor_tenant,
            e.actor_org, (e.person_id,), (e,),
            f"{e.actor} read {', '.join(e.categories)} with no open alarm and no planned "
            "visit of theirs",
            evidence,
        ))  # fmt: skip
    return flags


def _visits_of(
    visits: Iterable[Visit], slots: Iterable[VisitSlot], since: datetime, until: datetime
) -> list[Visit]:
    """One person's visits (and weekly slots' occurrences) overlapping [since, until)."""
    found = [v for v in visits if v.starts_at < until and v.ends_at > since]
    for slot in slots:
        found.extend(slot.occurrences(since, until))
    return found


# --- many_residents ------------------------------------------------------------------


def _many_residents(entries: Sequence[Entry], th: Thresholds) -> list[Flag]:
    by_actor: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.person_id is not None and e.actor_role in PEOPLE - REVIEWERS:
            by_actor.setdefault((e.actor_tenant, e.actor), []).append(e)
    flags: list[Flag] = []
    for run in by_actor.values():
        # intervals [i, j] of entries whose window names enough residents, merged
        spans: list[list[int]] = []
        counts: Counter[UUID] = Counter()
        i = 0
        for j, e in enumerate(run):
            assert e.person_id is not None
            counts[e.person_id] += 1
            while e.at - run[i].at > th.many_window:
                left = run[i].person_id
                assert left is not None
                counts[left] -= 1
                if counts[left] == 0:
                    del counts[left]
                i += 1
            if len(counts) >= th.many_residents:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = j
                else:
                    spans.append([i, j])
        for i, j in spans:
            burst = tuple(run[i : j + 1])
            people = tuple(dict.fromkeys(p for p in (x.person_id for x in burst) if p))
            first = burst[0]
            flags.append(Flag(
                flag_key(Rule.MANY_RESIDENTS, first.id), Rule.MANY_RESIDENTS, first.at,
                first.actor, first.actor_tenant, first.actor_org, people, burst,
                f"{first.actor} read {len(people)} residents between {_iso(first.at)} and "
                f"{_iso(burst[-1].at)}",
                {
                    "residents": len(people), "entries": len(burst),
                    "first_at": _iso(first.at), "last_at": _iso(burst[-1].at),
                    "threshold": th.many_residents,
                    "window_minutes": int(th.many_window.total_seconds() // 60),
                    "entry_ids": [x.id for x in burst],
                },
            ))  # fmt: skip
    return flags


# --- outside_hours -------------------------------------------------------------------


def _outside_hours(
    entries: Sequence[Entry], context: Context, th: Thresholds, tz: ZoneInfo
) -> list[Flag]:
    flags: list[Flag] = []
    for e in entries:
        if not _own_reader(e, context) or e.actor_role in REVIEWERS:
            continue
        staff = context.staff.get(e.actor)
        hours, source = (
            (staff.hours, "staff") if staff is not None and staff.hours is not None
            else (th.hours, "tenant")
        )  # fmt: skip
        local = e.at.astimezone(tz)
        if hours.covers(local):
            continue
        flags.append(Flag(
            flag_key(Rule.OUTSIDE_HOURS, e.id), Rule.OUTSIDE_HOURS, e.at, e.actor,
            e.actor_tenant, e.actor_org, (e.person_id,) if e.person_id else (), (e,),
            f"{e.actor} read at {local:%Y-%m-%d %H:%M} local time, outside "
            f"{hours.describe()}",
            {
                "entry": e.brief(), "local_time": local.strftime("%Y-%m-%d %H:%M"),
                "weekday": local.weekday(), "hours": hours.describe(), "hours_of": source,
            },
        ))  # fmt: skip
    return flags


# --- consent end ---------------------------------------------------------------------


def _consent_end(entries: Sequence[Entry], context: Context, th: Thresholds) -> list[Flag]:
    flags: list[Flag] = []
    for e in entries:
        if (e.person_id is None or e.actor_org is None or e.actor_org == context.tenant_org
                or e.actor_role not in UNDER_CONSENT):  # fmt: skip
            continue
        theirs = [c for c in context.consents
                  if c.person_id == e.person_id and c.recipient_org == e.actor_org]  # fmt: skip
        holding = [c for c in theirs if c.holds_at(e.at)]
        if holding:
            if any(c.end is None for c in holding):
                continue
            consent = max(holding, key=lambda c: c.end or c.valid_from)
            end = consent.end
            assert end is not None
            if end - e.at > th.consent_near_end:
                continue
            rule = Rule.NEAR_CONSENT_END
            summary = (f"{e.actor} ({e.actor_org}) read {end - e.at} before the consent "
                       "ended")  # fmt: skip
        else:
            ended = [c for c in theirs if c.end is not None and c.end <= e.at]
            if not ended:
                continue
            consent = max(ended, key=lambda c: c.end or c.valid_from)
            end = consent.end
            assert end is not None
            rule = Rule.AFTER_CONSENT_END
            summary = f"{e.actor} ({e.actor_org}) {e.outcome} {e.at - end} after the consent ended"
        flags.append(Flag(
            flag_key(rule, e.id), rule, e.at, e.actor, e.actor_tenant, e.actor_org,
            (e.person_id,), (e,), summary,
            {
                "entry": e.brief(), "consent_id": str(consent.id),
                "valid_from": _iso(consent.valid_from),
                "valid_to": _iso(consent.valid_to) if consent.valid_to else None,
                "withdrawn_at": _iso(consent.withdrawn_at) if consent.withdrawn_at else None,
                "consent_end": _iso(end),
                "minutes_to_end": int((end - e.at).total_seconds() // 60),
                "near_end_hours": int(th.consent_near_end.total_seconds() // 3600),
            },
        ))  # fmt: skip
    return flags
