"""The lock-access rule, table-driven: who may open whose door, when, and why not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from gateway.domain.lock_access import (
    AccessPolicy,
    Decision,
    OpenAlarm,
    PlannedVisits,
    Reason,
    StaffKey,
    StaffMember,
    UnlockRequest,
    Visit,
    WeeklySlot,
    decide,
)

STHLM = ZoneInfo("Europe/Stockholm")
PERSON = UUID("00000000-0000-0000-0000-0000000000a1")
OTHER_PERSON = UUID("00000000-0000-0000-0000-0000000000a2")
ANNA = UUID("00000000-0000-0000-0000-00000000005a")
BO = UUID("00000000-0000-0000-0000-00000000005b")
POLICY = AccessPolicy(timedelta(minutes=15), timedelta(minutes=15), frozenset({"button", "fall"}))

T0 = datetime(2026, 1, 14, 9, 0, tzinfo=UTC)  # a Wednesday
VISIT = Visit("v1", PERSON, T0, T0 + timedelta(minutes=30), staff_id=ANNA)
TEAM_VISIT = Visit("v2", PERSON, T0, T0 + timedelta(minutes=30), team="hemtjanst-norr")
ANNA_STAFF = StaffMember(ANNA, "kommun-a", "anna", frozenset({"hemtjanst-norr"}))
BO_STAFF = StaffMember(BO, "kommun-a", "bo", frozenset({"hemtjanst-syd"}))
ANNA_KEY = StaffKey("key-anna", ANNA, "kommun-a", T0 - timedelta(days=30))
BO_KEY = StaffKey("key-bo", BO, "kommun-a", T0 - timedelta(days=30))

US = timedelta(microseconds=1)
M15 = timedelta(minutes=15)


def request(**changes: Any) -> UnlockRequest:
    base = UnlockRequest(
        key_id="key-anna", lock_tenant="kommun-a", person_id=PERSON, at=T0 + M15,
        key=ANNA_KEY, staff=ANNA_STAFF, visits=(VISIT,),
    )  # fmt: skip
    return replace(base, **changes)


CASES: list[tuple[str, dict[str, Any], bool, Reason]] = [
    # key and staff checks come first
    ("no key id reported", {"key_id": None, "key": None}, False, Reason.KEY_MISSING),
    ("key unknown", {"key_id": "key-x", "key": None, "staff": None}, False, Reason.KEY_UNKNOWN),
    ("key of another tenant", {"key": replace(ANNA_KEY, tenant_id="kommun-b")},
     False, Reason.KEY_OTHER_TENANT),
    ("key revoked before", {"key": replace(ANNA_KEY, revoked_at=T0)}, False, Reason.KEY_REVOKED),
    ("key revoked exactly now", {"key": replace(ANNA_KEY, revoked_at=T0 + M15)},
     False, Reason.KEY_REVOKED),
    ("key revoked later", {"key": replace(ANNA_KEY, revoked_at=T0 + 2 * M15)}, True, Reason.VISIT),
    ("key not yet valid", {"key": replace(ANNA_KEY, valid_from=T0 + 2 * M15)},
     False, Reason.KEY_NOT_VALID),
    ("key validity ended", {"key": replace(ANNA_KEY, valid_to=T0 + M15)},
     False, Reason.KEY_NOT_VALID),
    ("staff inactive", {"staff": replace(ANNA_STAFF, active=False)},
     False, Reason.STAFF_INACTIVE),
    ("staff record missing", {"staff": None}, False, Reason.STAFF_INACTIVE),
    ("command expired", {"expires_at": T0 + M15}, False, Reason.COMMAND_EXPIRED),
    ("command still valid", {"expires_at": T0 + M15 + US}, True, Reason.VISIT),
    ("lock not assigned", {"person_id": None}, False, Reason.NO_PERSON),
    # the visit window and its margins (inclusive at both ends)
    ("inside the visit", {"at": T0 + M15}, True, Reason.VISIT),
    ("margin before, first instant", {"at": T0 - M15}, True, Reason.VISIT),
    ("margin before, just before it", {"at": T0 - M15 - US}, False, Reason.OUTSIDE_WINDOW),
    ("margin after, last instant", {"at": T0 + 2 * M15 + M15}, True, Reason.VISIT),
    ("margin after, just after it", {"at": T0 + 3 * M15 + US}, False, Reason.OUTSIDE_WINDOW),
    ("same day, hours later", {"at": T0 + timedelta(hours=5)}, False, Reason.OUTSIDE_WINDOW),
    ("a day later", {"at": T0 + timedelta(days=1)}, False, Reason.NO_VISIT),
    ("no visits at all", {"visits": ()}, False, Reason.NO_VISIT),
    ("another staff member's visit", {"key_id": "key-bo", "key": BO_KEY, "staff": BO_STAFF},
     False, Reason.NO_VISIT),
    ("visit to another person", {"visits": (replace(VISIT, person_id=OTHER_PERSON),)},
     False, Reason.NO_VISIT),
    ("team visit, member of the team", {"visits": (TEAM_VISIT,)}, True, Reason.VISIT),
    ("team visit, not in the team", {"visits": (TEAM_VISIT,), "key_id": "key-bo",
     "key": BO_KEY, "staff": BO_STAFF}, False, Reason.NO_VISIT),
    # an open alarm of an opening kind lets any valid key of the tenant in
    ("open fall alarm, no visit", {"visits": (), "open_alarms": (OpenAlarm("a1", "fall"),)},
     True, Reason.ALARM_OPEN),
    ("open button alarm, another staff member", {"key_id": "key-bo", "key": BO_KEY,
     "staff": BO_STAFF, "open_alarms": (OpenAlarm("a1", "button"),)}, True, Reason.ALARM_OPEN),
    ("open battery alarm does not open doors",
     {"visits": (), "open_alarms": (OpenAlarm("a1", "battery_low"),)}, False, Reason.NO_VISIT),
    ("open alarm does not help a revoked key",
     {"key": replace(ANNA_KEY, revoked_at=T0), "open_alarms": (OpenAlarm("a1", "fall"),)},
     False, Reason.KEY_REVOKED),
    ("open alarm does not help another tenant's key",
     {"key": replace(ANNA_KEY, tenant_id="kommun-b"), "open_alarms": (OpenAlarm("a", "fall"),)},
     False, Reason.KEY_OTHER_TENANT),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "allowed", "reason"),
    [pytest.param(c, a, r, id=name) for name, c, a, r in CASES],
)
def test_rule(changes: dict[str, Any], allowed: bool, reason: Reason) -> None:
    decision = decide(request(**changes), POLICY)
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_decision_names_what_allowed_it() -> None:
    assert decide(request(), POLICY) == Decision(True, Reason.VISIT, ANNA, visit_id="v1")
    opened = decide(request(visits=(), open_alarms=(OpenAlarm("a9", "fall"),)), POLICY)
    assert opened == Decision(True, Reason.ALARM_OPEN, ANNA, alarm_id="a9")


@pytest.mark.parametrize(
    ("before", "after", "at", "allowed"),
    [
        (timedelta(0), timedelta(0), T0, True),
        (timedelta(0), timedelta(0), T0 - US, False),
        (timedelta(0), timedelta(0), T0 + 2 * M15, True),
        (timedelta(0), timedelta(0), T0 + 2 * M15 + US, False),
        (timedelta(hours=1), timedelta(0), T0 - timedelta(hours=1), True),
        (timedelta(0), timedelta(hours=1), T0 + 2 * M15 + timedelta(hours=1), True),
    ],
)
def test_configurable_margins(
    before: timedelta, after: timedelta, at: datetime, allowed: bool
) -> None:
    policy = AccessPolicy(before, after, POLICY.alarm_kinds)
    assert decide(request(at=at), policy).allowed is allowed


def local(y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=STHLM, fold=fold)


def slot(start: time, end: time, weekdays: set[int], **kw: Any) -> WeeklySlot:
    return WeeklySlot("s1", PERSON, frozenset(weekdays), start, end, staff_id=ANNA, **kw)


NO_MARGIN = AccessPolicy(timedelta(0), timedelta(0), frozenset())

# Spring forward: Sunday 2026-03-29, 02:00 CET -> 03:00 CEST. Autumn back: Sunday
# 2026-10-25, 03:00 CEST -> 02:00 CET.
DST_CASES: list[tuple[str, WeeklySlot, datetime, bool]] = [
    ("weekly 08:00 local, winter (UTC+1)", slot(time(8), time(9), {6}),
     datetime(2026, 3, 22, 7, 0, tzinfo=UTC), True),
    ("weekly 08:00 local, winter, 1 h early in UTC", slot(time(8), time(9), {6}),
     datetime(2026, 3, 22, 6, 30, tzinfo=UTC), False),
    ("weekly 08:00 local, first summer Sunday (UTC+2)", slot(time(8), time(9), {6}),
     datetime(2026, 3, 29, 6, 0, tzinfo=UTC), True),
    ("weekly 08:00 local, summer: 07:30 UTC is 09:30 local", slot(time(8), time(9), {6}),
     datetime(2026, 3, 29, 7, 30, tzinfo=UTC), False),
    ("slot in the missing hour starts at 01:00 CET", slot(time(2), time(3), {6}),
     local(2026, 3, 29, 1, 30), True),
    ("slot in the missing hour ends at 03:00 CEST", slot(time(2), time(3), {6}),
     local(2026, 3, 29, 3, 0), True),
    ("slot in the missing hour, after it", slot(time(2), time(3), {6}),
     local(2026, 3, 29, 3, 1), False),
    ("autumn slot 02:00-03:00, first 02:30 (CEST)", slot(time(2), time(3), {6}),
     local(2026, 10, 25, 2, 30, fold=0), True),
    ("autumn slot 02:00-03:00, second 02:30 (CET)", slot(time(2), time(3), {6}),
     local(2026, 10, 25, 2, 30, fold=1), True),
    ("autumn slot 02:00-03:00 lasts two real hours", slot(time(2), time(3), {6}),
     datetime(2026, 10, 25, 0, 0, tzinfo=UTC), True),
    ("autumn slot, before it", slot(time(2), time(3), {6}),
     datetime(2026, 10, 24, 23, 59, tzinfo=UTC), False),
    ("night slot 22:00-06:00 crossing the spring change, 05:30 CEST", slot(time(22), time(6), {5}),
     local(2026, 3, 29, 5, 30), True),
    ("night slot 22:00-06:00, 06:01 next morning", slot(time(22), time(6), {5}),
     local(2026, 3, 29, 6, 1), False),
    ("weekday not in the slot", slot(time(8), time(9), {0}),
     local(2026, 3, 29, 8, 30), False),
    ("slot not started yet (first_day)", slot(time(8), time(9), {6}, first_day=date(2026, 4, 1)),
     local(2026, 3, 29, 8, 30), False),
    ("slot ended (last_day)", slot(time(8), time(9), {6}, last_day=date(2026, 3, 28)),
     local(2026, 3, 29, 8, 30), False),
    ("slot on its last day", slot(time(8), time(9), {6}, last_day=date(2026, 3, 29)),
     local(2026, 3, 29, 8, 30), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("weekly", "at", "allowed"),
    [pytest.param(s, at, a, id=name) for name, s, at, a in DST_CASES],
)
def test_weekly_slots_across_dst(weekly: WeeklySlot, at: datetime, allowed: bool) -> None:
    key = replace(ANNA_KEY, valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    decision = decide(request(visits=(weekly,), at=at, key=key), NO_MARGIN)
    assert decision.allowed is allowed, decision



def _held(visits: tuple[Visit, ...], slots: list[WeeklySlot]) -> PlannedVisits:
    """As the loader holds a person's plans (its ids are UUIDs, as in the database)."""
    return PlannedVisits(
        PERSON, visits,
        [(UUID(s.visit_id), (s.weekdays, s.start, s.end, s.timezone, s.first_day,
                             s.last_day, s.staff_id, s.team)) for s in slots],
    )  # fmt: skip


def _slot(n: int) -> WeeklySlot:
    return WeeklySlot(
        str(UUID(int=n)), PERSON, frozenset({n % 7}), time(8 + n), time(9 + n),
        "Europe/Stockholm", date(2026, 1, n + 1), None, None if n else ANNA,
        "hemtjanst-norr" if n else None,
    )  # fmt: skip


def test_planned_visits_give_back_what_they_hold() -> None:
    """Held compactly (ids in one bytes object, plans as tuples), a person's visits and
    slots come back equal to what was loaded, single visits first."""
    slots = [_slot(n) for n in range(5)]
    held = _held((VISIT, TEAM_VISIT), slots)
    assert held.entries() == [VISIT, TEAM_VISIT, *slots]
    assert len(held) == 7
    assert PlannedVisits(PERSON).entries() == [] and len(PlannedVisits(PERSON)) == 0


@pytest.mark.parametrize(
    ("weekly", "at", "allowed"),
    [pytest.param(s, at, a, id=name) for name, s, at, a in DST_CASES[:6]],
)
def test_planned_visits_decide_as_the_slots_do(
    weekly: WeeklySlot, at: datetime, allowed: bool
) -> None:
    key = replace(ANNA_KEY, valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    weekly = replace(weekly, visit_id=str(UUID(int=7)))
    visits = _held((), [weekly]).entries()
    decision = decide(request(visits=visits, at=at, key=key), NO_MARGIN)
    assert decision.allowed is allowed, decision
    if allowed:
        assert decision.visit_id is not None and decision.visit_id.startswith(weekly.visit_id)

def test_single_visit_given_in_local_time_across_the_spring_change() -> None:
    # 01:30 CET to 03:30 CEST is one real hour, not two
    visit = Visit("v", PERSON, local(2026, 3, 29, 1, 30), local(2026, 3, 29, 3, 30), ANNA)
    key = replace(ANNA_KEY, valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    inside = datetime(2026, 3, 29, 1, 29, tzinfo=UTC)
    after = datetime(2026, 3, 29, 1, 31, tzinfo=UTC)
    assert decide(request(visits=(visit,), at=inside, key=key), NO_MARGIN).allowed
    outside = decide(request(visits=(visit,), at=after, key=key), NO_MARGIN)
    assert outside.reason is Reason.OUTSIDE_WINDOW


def test_margin_applies_to_weekly_slots_too() -> None:
    key = replace(ANNA_KEY, valid_from=datetime(2026, 1, 1, tzinfo=UTC))
    weekly = slot(time(8), time(9), {6})
    at = local(2026, 3, 29, 7, 45)
    assert decide(request(visits=(weekly,), at=at, key=key), POLICY).allowed
    assert not decide(request(visits=(weekly,), at=at - US, key=key), POLICY).allowed


@pytest.mark.parametrize("zone", ["Europe", "Nowhere/City", "../etc"])
def test_a_weekly_slot_with_a_bad_time_zone_is_a_validation_error(zone: str) -> None:
    from pydantic import ValidationError

    from api.routes.locks import SlotIn

    with pytest.raises(ValidationError, match="time zone"):
        SlotIn(team="natt", weekdays=[0], start="08:00", end="09:00", timezone=zone)
