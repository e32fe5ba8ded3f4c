"""SQL of the log review and a resident's log extract (issue #21.2-3; migration 0022,
docs/log-review.md). Every statement runs on the API's tenant-scoped connection (role
wg_api, row-level security): the access log's rows of the tenant's own residents, and the
context the rules need (alarms, visits, staff, consents). The rules are in
:mod:`gateway.domain.log_review`, the sentences in :mod:`gateway.domain.log_extract`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from gateway.domain.log_extract import WHOLE_TENANT, Org
from gateway.domain.log_review import (
    DEFAULTS,
    AlarmSpan,
    ConsentSpan,
    Context,
    Entry,
    Hours,
    Staff,
    Thresholds,
    Visit,
    VisitSlot,
)

AsyncConn = psycopg.AsyncConnection[Any]

_ENTRY_COLUMNS = (
    "id, at, actor, actor_org, actor_role, actor_tenant, owner_tenant, person_id, categories,"
    " purpose, outcome, reason, request"
)


def _entry(r: tuple[Any, ...]) -> Entry:
    return Entry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[8]), r[9], r[10],
                 r[11], r[12])  # fmt: skip


# --- settings ------------------------------------------------------------------------

_SETTINGS = """
    select many_residents, many_window_minutes, grace_minutes, consent_near_end_hours,
        work_weekdays, work_start, work_end, changed_at, changed_by
    from log_review_settings where tenant_id = %s
"""
_PUT_SETTINGS = """
    insert into log_review_settings (tenant_id, many_residents, many_window_minutes,
        grace_minutes, consent_near_end_hours, work_weekdays, work_start, work_end, changed_by)
    values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    on conflict (tenant_id) do update set many_residents = excluded.many_residents,
        many_window_minutes = excluded.many_window_minutes,
        grace_minutes = excluded.grace_minutes,
        consent_near_end_hours = excluded.consent_near_end_hours,
        work_weekdays = excluded.work_weekdays, work_start = excluded.work_start,
        work_end = excluded.work_end, changed_at = now(), changed_by = excluded.changed_by
"""


async def thresholds(conn: AsyncConn, tenant: str) -> tuple[Thresholds, dict[str, Any] | None]:
    """The tenant's thresholds (the defaults when none are stored) and the stored row."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SETTINGS, (tenant,))
        row = await cur.fetchone()
    if row is None:
        return DEFAULTS, None
    return Thresholds(
        many_residents=row["many_residents"],
        many_window=timedelta(minutes=row["many_window_minutes"]),
        grace=timedelta(minutes=row["grace_minutes"]),
        consent_near_end=timedelta(hours=row["consent_near_end_hours"]),
        hours=Hours(frozenset(row["work_weekdays"]), row["work_start"], row["work_end"]),
    ), row


async def put_thresholds(conn: AsyncConn, tenant: str, th: Thresholds, by: str) -> None:
    await conn.execute(_PUT_SETTINGS, (
        tenant, th.many_residents, int(th.many_window.total_seconds() // 60),
        int(th.grace.total_seconds() // 60), int(th.consent_near_end.total_seconds() // 3600),
        sorted(th.hours.weekdays), th.hours.start, th.hours.end, by,
    ))  # fmt: skip


_STAFF_ID = "select id, subject from staff_members where id = %s"
_PUT_STAFF_HOURS = """
    insert into staff_working_hours (staff_id, tenant_id, weekdays, start_time, end_time,
        changed_by)
    values (%s, %s, %s, %s, %s, %s)
    on conflict (staff_id) do update set weekdays = excluded.weekdays,
        start_time = excluded.start_time, end_time = excluded.end_time, changed_at = now(),
        changed_by = excluded.changed_by
"""
_DELETE_STAFF_HOURS = "delete from staff_working_hours where staff_id = %s"


async def staff_subject(conn: AsyncConn, staff_id: UUID) -> str | None:
    row = await (await conn.execute(_STAFF_ID, (staff_id,))).fetchone()
    return row[1] if row else None


async def put_staff_hours(
    conn: AsyncConn, tenant: str, staff_id: UUID, hours: Hours | None, by: str
) -> None:
    if hours is None:
        await conn.execute(_DELETE_STAFF_HOURS, (staff_id,))
        return
    await conn.execute(_PUT_STAFF_HOURS, (staff_id, tenant, sorted(hours.weekdays), hours.start,
                                          hours.end, by))  # fmt: skip


# --- the access log and its context --------------------------------------------------

_ENTRIES = (
    "select " + _ENTRY_COLUMNS + " from access_log"
    " where owner_tenant = %(tenant)s and at >= %(since)s and at < %(until)s"
    " order by at, id"
)
# one resident's rows (index access_log_person), then the tenant-wide rows that include
# every resident's data (no person; a full export names these categories)
_PERSON_ENTRIES = (
    "select " + _ENTRY_COLUMNS + " from access_log"
    " where person_id = %(person)s and owner_tenant = %(tenant)s"
    " and at >= %(since)s and at < %(until)s"
    " union all "
    "select " + _ENTRY_COLUMNS + " from access_log"
    " where person_id is null and owner_tenant = %(tenant)s"
    " and at >= %(since)s and at < %(until)s and categories && %(wide)s"
    " order by at, id"
)
_ENTRY = "select " + _ENTRY_COLUMNS + " from access_log where id = %s and owner_tenant = %s"


async def entries(
    conn: AsyncConn, tenant: str, since: datetime, until: datetime, person: UUID | None = None
) -> list[Entry]:
    """The access-log rows of the tenant's residents in [since, until) (with ``person``:
    that resident's, and the tenant-wide rows without a person)."""
    args = {"tenant": tenant, "since": since, "until": until, "person": person,
            "wide": sorted(WHOLE_TENANT)}  # fmt: skip
    cur = await conn.execute(_ENTRIES if person is None else _PERSON_ENTRIES, args)
    return [_entry(r) for r in await cur.fetchall()]


async def entry(conn: AsyncConn, tenant: str, entry_id: int) -> Entry | None:
    row = await (await conn.execute(_ENTRY, (entry_id, tenant))).fetchone()
    return _entry(row) if row else None


_TENANT_ORG = "select org_number from tenants where id = %s"
_ALARMS = """
    select id, person_id, kind, raised_at, resolved_at from alarms
    where person_id = any(%(persons)s) and raised_at < %(until)s
      and (resolved_at is null or resolved_at > %(since)s)
"""
_VISITS = """
    select v.person_id, v.starts_at, v.ends_at, s.subject, v.team
    from visits v left join staff_members s on s.id = v.staff_id
    where v.person_id = any(%(persons)s) and v.starts_at < %(until)s and v.ends_at > %(since)s
"""
_SLOTS = """
    select v.person_id, v.weekdays, v.start_time, v.end_time, v.timezone, v.first_day,
        v.last_day, s.subject, v.team
    from visit_slots v left join staff_members s on s.id = v.staff_id
    where v.person_id = any(%(persons)s)
"""
_STAFF = """
    select s.subject, s.display_name, s.teams, h.weekdays, h.start_time, h.end_time
    from staff_members s left join staff_working_hours h on h.staff_id = s.id
"""
_CONSENTS = """
    select id, person_id, recipient_org, valid_from, valid_to, withdrawn_at from consents
    where person_id = any(%(persons)s)
"""


async def context(
    conn: AsyncConn, tenant: str, persons: Sequence[UUID], since: datetime, until: datetime
) -> Context:
    """What the rules need about ``persons`` around [since, until) (a day either side:
    the nearest alarm and visit given as evidence)."""
    args = {"persons": list(persons), "since": since - timedelta(days=1),
            "until": until + timedelta(days=1)}  # fmt: skip
    org = await (await conn.execute(_TENANT_ORG, (tenant,))).fetchone()
    alarms = [AlarmSpan(r[0], r[1], r[2], r[3], r[4])
              for r in await (await conn.execute(_ALARMS, args)).fetchall()]  # fmt: skip
    visits = [Visit(r[0], r[1], r[2], r[3], r[4])
              for r in await (await conn.execute(_VISITS, args)).fetchall()]  # fmt: skip
    slots = [VisitSlot(r[0], frozenset(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8])
             for r in await (await conn.execute(_SLOTS, args)).fetchall()]  # fmt: skip
    staff = {
        r[0]: Staff(r[0], r[1], frozenset(r[2]),
                    Hours(frozenset(r[3]), r[4], r[5]) if r[3] is not None else None)
        for r in await (await conn.execute(_STAFF)).fetchall()
    }  # fmt: skip
    consents = [ConsentSpan(r[0], r[1], r[2], r[3], r[4], r[5])
                for r in await (await conn.execute(_CONSENTS, args)).fetchall()]  # fmt: skip
    return Context(tenant, org[0] if org else None, alarms, visits, slots, staff, consents)


# --- reviews -------------------------------------------------------------------------

_MARKS = """
    select flag_key, rule, reviewed_at, reviewed_by, comment from log_review_marks
    where flag_key = any(%s)
"""
_ADD_MARK = """
    insert into log_review_marks (tenant_id, flag_key, rule, reviewed_by, comment)
    values (%s, %s, %s, %s, %s)
    returning flag_key, rule, reviewed_at, reviewed_by, comment
"""


async def marks(conn: AsyncConn, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_MARKS, (list(keys),))
        return {r["flag_key"]: r for r in await cur.fetchall()}


async def add_mark(
    conn: AsyncConn, tenant: str, key: str, rule: str, by: str, comment: str
) -> dict[str, Any] | None:
    """The review, or None when the flag was reviewed already."""
    try:
        async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_ADD_MARK, (tenant, key, rule, by, comment))
            return await cur.fetchone()
    except psycopg.errors.UniqueViolation:
        return None


# --- names for the extract -----------------------------------------------------------

_ORGS = "select tenant_id, name, kind, org_number from access_log_actor_orgs()"
_NAMES = "select tenant_id, subject, display_name from access_log_actor_names(%s)"
_PERSON = "select ref from persons where id = %s"


async def orgs(conn: AsyncConn) -> dict[str, Org]:
    """By tenant id and by organisation number."""
    out: dict[str, Org] = {}
    for tenant_id, name, _kind, number in await (await conn.execute(_ORGS)).fetchall():
        out[tenant_id] = out[number] = Org(name, number)
    return out


async def names(conn: AsyncConn, subjects: Sequence[str]) -> dict[tuple[str, str], str]:
    rows = await (await conn.execute(_NAMES, (sorted(set(subjects)),))).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


async def person_ref(conn: AsyncConn, person: UUID) -> str | None:
    row = await (await conn.execute(_PERSON, (person,))).fetchone()
    return row[0] if row else None

