"""Units, shared devices and resident tags (issue #19.4, docs/units.md): the SQL.

The API's functions run in the request's tenant transaction (row-level security on
``units``, ``assignments`` and ``resident_tags``; the tenant-filtered ``api_*`` views for
the time series). ``load_units`` and ``load_resident_tags`` are the workers' (every
tenant, read only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from gateway.domain.units import TagPeriod, Unit

AsyncConn = psycopg.AsyncConnection[Any]


class UnitError(Exception):
    """A registry change that cannot be made; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# --- the workers' caches ---------------------------------------------------------------


async def load_units(conn: AsyncConn) -> list[Unit]:
    cur = await conn.execute("select id, tenant_id, name, kind from units")
    return [Unit(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]


async def load_resident_tags(conn: AsyncConn) -> list[tuple[str, str, TagPeriod]]:
    cur = await conn.execute(
        "select tenant_id, tag, person_id, valid_from, valid_to from resident_tags"
    )
    return [(r[0], r[1], TagPeriod(r[2], r[3], r[4])) for r in await cur.fetchall()]


# --- the API: units --------------------------------------------------------------------


async def create_unit(conn: AsyncConn, tenant_id: str, name: str, kind: str) -> UUID:
    try:
        cur = await conn.execute(
            "insert into units (tenant_id, name, kind) values (%s, %s, %s) returning id",
            (tenant_id, name, kind),
        )
    except psycopg.errors.UniqueViolation:
        raise UnitError(f"a unit named {name!r} exists already") from None
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def list_units(conn: AsyncConn) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select u.id, u.tenant_id, u.name, u.kind, u.created_at,"
            " (select count(*) from assignments a where a.unit_id = u.id"
            "  and a.valid_to is null) as devices"
            " from units u order by u.name"
        )
        return await cur.fetchall()


async def get_unit(conn: AsyncConn, unit_id: UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, tenant_id, name, kind, created_at from units where id = %s", (unit_id,)
        )
        return await cur.fetchone()


async def unit_devices(conn: AsyncConn, unit_id: UUID) -> list[dict[str, Any]]:
    """The unit's assignments, current first, with each device's model and state."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select a.device_id, d.model_id, m.device_type, d.status, a.valid_from,"
            " a.valid_to, s.last_seen, s.battery_percent, s.online"
            " from assignments a join devices d on d.id = a.device_id"
            " join device_models m on m.id = d.model_id"
            " left join api_device_state s on s.device_id = a.device_id"
            " where a.unit_id = %s"
            " order by a.valid_to is not null, a.valid_from desc",
            (unit_id,),
        )
        return await cur.fetchall()


async def assign_to_unit(conn: AsyncConn, device_id: str, unit_id: UUID, at: datetime) -> None:
    """Hand a device in stock (or returned) to a unit from ``at``: an assignment holding
    the unit and no person, under the same no-overlap rule as a person's."""
    if await get_unit(conn, unit_id) is None:
        raise UnitError("unit not found", 404)
    cur = await conn.execute(
        "select tenant_id, status from devices where id = %s for update", (device_id,)
    )
    device = await cur.fetchone()
    if device is None:
        raise UnitError("device not found", 404)
    tenant_id, status = device
    if status not in ("in_stock", "returned"):
        raise UnitError(f"device is {status}; return it before assigning it again")
    try:
        await conn.execute(
            "insert into assignments (tenant_id, device_id, unit_id, valid_from)"
            " values (%s, %s, %s, %s)",
            (tenant_id, device_id, unit_id, at),
        )
    except psycopg.errors.ExclusionViolation:
        raise UnitError("the device was held by someone else at that time") from None
    await conn.execute(
        "update devices set status = 'active', status_changed_at = %s where id = %s",
        (at, device_id),
    )


# --- the API: a unit's data ------------------------------------------------------------


async def unit_lock_events(
    conn: AsyncConn, unit_id: UUID, since: datetime, until: datetime, limit: int
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select device_id, msg_id, ts, received_at, action, key_id, method"
            " from api_lock_events where unit_id = %s and ts >= %s and ts < %s"
            " order by ts desc limit %s",
            (unit_id, since, until, limit),
        )
        return await cur.fetchall()


async def unit_alarms(
    conn: AsyncConn, unit_id: UUID, since: datetime, until: datetime, limit: int
) -> list[dict[str, Any]]:
    """The unit's own alarms: those naming it (``detail.unit``) with no person. A
    resident's alarm from a unit's device names the unit too, but is the resident's."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, kind, severity, device_id, state, raised_at, last_at, occurrences,"
            " condition, acknowledged_by, acknowledged_at, resolved_by, resolved_at, outcome"
            " from alarms where detail ? 'unit' and (detail -> 'unit') ->> 'id' = %s"
            " and person_id is null"
            " and raised_at >= %s and raised_at < %s order by raised_at desc limit %s",
            (str(unit_id), since, until, limit),
        )
        return await cur.fetchall()


async def unit_health(
    conn: AsyncConn,
    unit_id: UUID,
    since: datetime,
    until: datetime,
    limit: int,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select device_id, ts, received_at, kind, battery_percent, rssi_dbm, state,"
            " firmware from api_device_health where unit_id = %(unit)s and ts >= %(since)s"
            " and ts < %(until)s and (%(kind)s::text is null or kind = %(kind)s)"
            " order by ts desc limit %(limit)s",
            {"unit": unit_id, "since": since, "until": until, "kind": kind, "limit": limit},
        )
        return await cur.fetchall()


# --- the API: resident tags ------------------------------------------------------------


async def register_tag(
    conn: AsyncConn, tenant_id: str, tag: str, person_id: UUID, at: datetime, actor: str
) -> int:
    cur = await conn.execute("select 1 from persons where id = %s", (person_id,))
    if await cur.fetchone() is None:
        raise UnitError("person not found", 404)
    try:
        cur = await conn.execute(
            "insert into resident_tags (tenant_id, tag, person_id, valid_from, created_by)"
            " values (%s, %s, %s, %s, %s) returning id",
            (tenant_id, tag, person_id, at, actor),
        )
    except psycopg.errors.ExclusionViolation:
        raise UnitError("the tag is registered to someone at that time; end that first") from None
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def end_tag(conn: AsyncConn, tag_id: int, at: datetime) -> bool:
    """End the tag's registration at ``at``; False if there is no such open one."""
    cur = await conn.execute(
        "select valid_from from resident_tags where id = %s and valid_to is null for update",
        (tag_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    if at <= row[0]:
        raise UnitError("the end is not after the registration began", 422)
    await conn.execute("update resident_tags set valid_to = %s where id = %s", (at, tag_id))
    return True


async def list_tags(conn: AsyncConn, person_id: UUID | None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, tag, person_id, valid_from, valid_to, created_by, created_at"
            " from resident_tags where (%(p)s::uuid is null or person_id = %(p)s)"
            " order by tag, valid_from",
            {"p": person_id},
        )
        return await cur.fetchall()
