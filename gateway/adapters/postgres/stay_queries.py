"""SQL of stays in another municipality (issue #19.3; migration 0019, docs/stays.md).

The API's reads and writes run on a tenant-scoped connection of role wg_api (row-level
security; the agreement's steps and the host's reads through the migration's functions,
which check the caller's side). The workers read the stays in force as wg_worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from gateway.domain.stays import Stay

AsyncConn = psycopg.AsyncConnection[Any]

_AGREEMENT = """
    select id, home_tenant, host_tenant, proposed_at, proposed_by, accepted_at, accepted_by,
           ended_at, ended_by, ended_tenant
    from stay_agreements
"""
_STAY = """
    select id, tenant_id, person_id, host_tenant, agreement_id, starts_at, ends_at,
           recorded_at, recorded_by, cut_at, cut_by
    from stays
"""


async def _rows(conn: AsyncConn, sql: str, params: Any = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall())


# --- agreements (wg_api) --------------------------------------------------------------


async def propose(conn: AsyncConn, host: str, actor: str) -> UUID:
    cur = await conn.execute("select propose_stay_agreement(%s, %s)", (host, actor))
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def accept(conn: AsyncConn, agreement_id: UUID, actor: str) -> bool:
    cur = await conn.execute("select accept_stay_agreement(%s, %s)", (agreement_id, actor))
    row = await cur.fetchone()
    return bool(row and row[0])


async def end(conn: AsyncConn, agreement_id: UUID, actor: str) -> bool:
    cur = await conn.execute("select end_stay_agreement(%s, %s)", (agreement_id, actor))
    row = await cur.fetchone()
    return bool(row and row[0])


async def agreement(conn: AsyncConn, agreement_id: UUID) -> dict[str, Any] | None:
    rows = await _rows(conn, _AGREEMENT + " where id = %s", (agreement_id,))
    return rows[0] if rows else None


async def agreements(conn: AsyncConn) -> list[dict[str, Any]]:
    """Both sides' agreements of the caller's tenant (row-level security)."""
    return await _rows(conn, _AGREEMENT + " order by proposed_at desc, id")


async def agreement_in_force(conn: AsyncConn, home: str, host: str) -> dict[str, Any] | None:
    sql = (
        _AGREEMENT + " where home_tenant = %s and host_tenant = %s"
        " and accepted_at is not null and ended_at is null"
    )
    rows = await _rows(conn, sql, (home, host))
    return rows[0] if rows else None


# --- stays of the home tenant (wg_api) ----------------------------------------------------


async def add_stay(
    conn: AsyncConn, tenant: str, person_id: UUID, host: str, agreement_id: UUID,
    starts_at: datetime, ends_at: datetime, actor: str,
) -> dict[str, Any]:  # fmt: skip
    rows = await _rows(conn, """
        insert into stays (tenant_id, person_id, host_tenant, agreement_id, starts_at, ends_at,
                           recorded_by)
        values (%s, %s, %s, %s, %s, %s, %s)
        returning id, tenant_id, person_id, host_tenant, agreement_id, starts_at, ends_at,
                  recorded_at, recorded_by, cut_at, cut_by
    """, (tenant, person_id, host, agreement_id, starts_at, ends_at, actor))  # fmt: skip
    return rows[0]


async def lock_person(conn: AsyncConn, person_id: UUID) -> None:
    """Until the transaction ends: one stay of this person recorded at a time (the overlap
    check and the insert do not race another request's)."""
    await conn.execute("select 1 from persons where id = %s for update", (person_id,))


async def person_stays(conn: AsyncConn, person_id: UUID) -> list[dict[str, Any]]:
    return await _rows(conn, _STAY + " where person_id = %s order by starts_at desc, id",
                       (person_id,))  # fmt: skip


async def stay(conn: AsyncConn, stay_id: UUID) -> dict[str, Any] | None:
    rows = await _rows(conn, _STAY + " where id = %s", (stay_id,))
    return rows[0] if rows else None


async def cut(conn: AsyncConn, stay_id: UUID, ends_at: datetime, actor: str) -> dict[str, Any]:
    rows = await _rows(conn, """
        update stays set ends_at = %s, cut_at = now(), cut_by = %s where id = %s
        returning id, tenant_id, person_id, host_tenant, agreement_id, starts_at, ends_at,
                  recorded_at, recorded_by, cut_at, cut_by
    """, (ends_at, actor, stay_id))  # fmt: skip
    return rows[0]


async def host_reads(conn: AsyncConn, person_id: UUID, limit: int = 200) -> list[dict[str, Any]]:
    """The host tenants' reads of this resident's data (the access log: the home tenant
    is its owner, so row-level security shows them)."""
    return await _rows(conn, """
        select l.at, l.actor, l.actor_tenant, l.categories, l.request
        from access_log l
        where l.person_id = %s and l.owner_tenant = current_setting('wg.tenant_id', true)
          and l.actor_tenant <> l.owner_tenant and l.purpose = 'guest alarm handling'
        order by l.at desc, l.id desc
        limit %s
    """, (person_id, limit))  # fmt: skip


# --- the host's reads (wg_api, through the migration's functions) ------------------------


async def guests(conn: AsyncConn) -> list[dict[str, Any]]:
    return await _rows(conn, "select * from guest_stays()")


async def guest_stay(conn: AsyncConn, stay_id: UUID) -> dict[str, Any] | None:
    rows = await _rows(conn, "select * from guest_stay(%s)", (stay_id,))
    return rows[0] if rows else None


async def guest_alarms(conn: AsyncConn, stay_id: UUID, limit: int) -> list[dict[str, Any]]:
    return await _rows(conn, "select * from guest_alarms(%s, %s)", (stay_id, limit))


async def guest_positions(
    conn: AsyncConn, stay_id: UUID, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    return await _rows(conn, "select * from guest_positions(%s, %s, %s)",
                       (stay_id, since, limit))  # fmt: skip


# --- the workers (wg_worker, every tenant) ------------------------------------------------

#: stays that may still route an alarm: not ended, or ended within the alarms' lifetime
LOAD_STAYS = """
    select id, tenant_id, person_id, host_tenant, starts_at, ends_at
    from stays
    where ends_at > starts_at and ends_at > now() - make_interval(secs => %s)
"""


async def load_stays(conn: AsyncConn, keep_ended_s: float) -> list[Stay]:
    cur = await conn.execute(LOAD_STAYS, (keep_ended_s,))
    return [Stay(UUID(str(i)), t, UUID(str(p)), h, s, e) for i, t, p, h, s, e in
            await cur.fetchall()]  # fmt: skip
