"""SQL of keyless-lock access: staff, keys, planned visits (migration 0006).

Loading functions run as the gateway (all tenants) to fill its in-memory copy; writing
functions run in the API's tenant transaction, where row-level security applies.
Every query is parameterised.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, time
from typing import Any, TypeVar
from uuid import UUID

import psycopg

from gateway.adapters.postgres.queries import stream
from gateway.domain.lock_access import (
    PlannedVisits,
    SlotPlan,
    StaffKey,
    StaffMember,
    Visit,
)
from gateway.worker.fleet.canon import PERSON_IDS

Conn = psycopg.AsyncConnection[Any]
T = TypeVar("T")

#: Single visits kept in memory: those that end after now - this and start before
#: now + LOOKAHEAD (the rule looks at most 12 h around now; reloads keep it current).
KEEP_PAST = "1 day"
LOOKAHEAD = "8 days"

_STAFF = "select id, tenant_id, subject, teams, active from staff_members"
_KEYS = "select key_id, staff_id, tenant_id, valid_from, valid_to, revoked_at from staff_keys"
_VISITS = (
    "select id, person_id, starts_at, ends_at, staff_id, team from visits"
    " where ends_at > now() - %s::interval and starts_at < now() + %s::interval"
)
_SLOTS = (
    "select id, person_id, weekdays, start_time, end_time, timezone, first_day, last_day,"
    " staff_id, team from visit_slots where (last_day is null or last_day >= current_date - 1)"
)


async def load_staff(
    conn: Conn,
) -> tuple[dict[UUID, StaffMember], dict[tuple[str, str], StaffKey]]:
    """Staff by id, and keys by (tenant id, key id): a key id is unique per tenant only
    (migration 0011), and a lock looks keys up in its own tenant."""
    staff = {
        row[0]: StaffMember(row[0], row[1], row[2], frozenset(row[3]), row[4])
        for row in await (await conn.execute(_STAFF)).fetchall()
    }
    keys = {
        (row[2], row[0]): StaffKey(*row) for row in await (await conn.execute(_KEYS)).fetchall()
    }
    return staff, keys


async def load_visits(conn: Conn, person_id: UUID | None = None) -> dict[UUID, PlannedVisits]:
    """Planned visits and weekly slots per person (of one person, or everyone)."""
    visits_sql, slots_sql = _VISITS, _SLOTS
    params: tuple[Any, ...] = (KEEP_PAST, LOOKAHEAD)
    slot_params: tuple[Any, ...] = ()
    if person_id is not None:
        visits_sql += " and person_id = %s"
        slots_sql += " and person_id = %s"
        params += (person_id,)
        slot_params = (person_id,)
    # Kept in every worker for the whole fleet (a door opens by plan with the database
    # down), so equal values are held once: the person's id is the registry's
    # (``PERSON_IDS``), a weekday set, a time, a date or a staff member's id is shared
    # within the load, strings are interned, equal slot plans are one tuple, a person's
    # slots are held compactly (``PlannedVisits``), and the rows are streamed, not
    # fetched all at once. bench.memory, 10,000 slots: the worker 77 -> 64 MB with values
    # shared (a weekday frozenset alone is 728 bytes); broker + worker 106.8 -> 105.5 MB
    # with the slots held compactly.
    same: dict[Any, Any] = {}
    visits: dict[UUID, list[Visit]] = {}
    slots: dict[UUID, list[tuple[UUID, SlotPlan]]] = {}
    async for vid, pid, starts, ends, staff_id, team in stream(conn, visits_sql, params):
        pid = PERSON_IDS(pid)
        visits.setdefault(pid, []).append(Visit(
            str(vid), pid, starts, ends, _shared(same, staff_id), _interned(team)))  # fmt: skip
    async for sid, pid, days, start, end, tz, first, last, staff_id, team in stream(
        conn, slots_sql, slot_params
    ):
        plan: SlotPlan = (
            _shared(same, frozenset(days)), _shared(same, start), _shared(same, end),
            sys.intern(tz), _shared(same, first), _shared(same, last),
            _shared(same, staff_id), _interned(team),
        )  # fmt: skip
        slots.setdefault(PERSON_IDS(pid), []).append((sid, _shared(same, plan)))
    return {
        pid: PlannedVisits(pid, visits.get(pid, ()), slots.get(pid, ()))
        for pid in visits.keys() | slots.keys()
    }


def _shared(same: dict[Any, Any], value: T) -> T:
    """The first value equal to ``value`` seen in this load (immutable values only)."""
    return value if value is None else same.setdefault(value, value)


def _interned(text: str | None) -> str | None:
    return None if text is None else sys.intern(text)


# --- administration (API, tenant transaction) -------------------------------------------


async def add_staff(
    conn: Conn, tenant_id: str, subject: str, display_name: str, teams: list[str]
) -> UUID:
    cur = await conn.execute(
        "insert into staff_members (tenant_id, subject, display_name, teams)"
        " values (%s, %s, %s, %s) returning id",
        (tenant_id, subject, display_name, sorted(set(teams))),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def add_key(
    conn: Conn,
    tenant_id: str,
    staff_id: UUID,
    key_id: str,
    valid_from: datetime | None,
    valid_to: datetime | None,
) -> None:
    await conn.execute(
        "insert into staff_keys (key_id, tenant_id, staff_id, valid_from, valid_to)"
        " values (%s, %s, %s, coalesce(%s, now()), %s)",
        (key_id, tenant_id, staff_id, valid_from, valid_to),
    )


async def revoke_key(conn: Conn, tenant_id: str, key_id: str, by: str) -> bool:
    """Revoke the tenant's key ``key_id`` (another tenant's key of that id is another key)."""
    cur = await conn.execute(
        "update staff_keys set revoked_at = now(), revoked_by = %s"
        " where tenant_id = %s and key_id = %s and revoked_at is null",
        (by, tenant_id, key_id),
    )
    return cur.rowcount == 1


async def add_visit(
    conn: Conn,
    tenant_id: str,
    person_id: UUID,
    staff_id: UUID | None,
    team: str | None,
    starts_at: datetime,
    ends_at: datetime,
    by: str,
) -> UUID:
    cur = await conn.execute(
        "insert into visits (tenant_id, person_id, staff_id, team, starts_at, ends_at,"
        " created_by) values (%s, %s, %s, %s, %s, %s, %s) returning id",
        (tenant_id, person_id, staff_id, team, starts_at, ends_at, by),
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def add_slot(
    conn: Conn,
    tenant_id: str,
    person_id: UUID,
    staff_id: UUID | None,
    team: str | None,
    weekdays: list[int],
    start: time,
    end: time,
    timezone: str,
    first_day: date | None,
    last_day: date | None,
    by: str,
) -> UUID:
    cur = await conn.execute(
        "insert into visit_slots (tenant_id, person_id, staff_id, team, weekdays, start_time,"
        " end_time, timezone, first_day, last_day, created_by)"
        " values (%s, %s, %s, %s, %s::smallint[], %s, %s, %s, %s, %s, %s) returning id",
        (tenant_id, person_id, staff_id, team, weekdays, start, end, timezone, first_day,
         last_day, by),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def staff_by_subject(conn: Conn, subject: str) -> UUID | None:
    cur = await conn.execute("select id from staff_members where subject = %s", (subject,))
    row = await cur.fetchone()
    return UUID(str(row[0])) if row else None
