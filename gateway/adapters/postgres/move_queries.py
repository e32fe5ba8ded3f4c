"""SQL of moves between municipalities (issue #19.2; migration 0017, docs/moves.md).

The API's queries run as wg_api in a tenant's transaction (row-level security: a move is
read by both municipalities, proposed by the sending one; accepting and cancelling go
through security-definer functions that check the side). The worker's two run as
wg_worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from gateway.domain.moves import HeldDevice

AsyncConn = psycopg.AsyncConnection[Any]

_MOVE = """
    select id, from_tenant, person_id, to_tenant, effective_at, device_ids, status,
           proposed_at, proposed_by, accepted_at, accepted_by, to_person_id, applied_at,
           cancelled_at, cancelled_by
    from person_moves
"""


async def held_devices(conn: AsyncConn, person_id: UUID) -> list[HeldDevice]:
    """The devices the person holds now (an assignment still open)."""
    cur = await conn.execute(
        "select a.device_id, m.device_type from assignments a"
        " join devices d on d.id = a.device_id join device_models m on m.id = d.model_id"
        " where a.person_id = %s and a.valid_to is null and d.status = 'active'",
        (person_id,),
    )
    return [HeldDevice(r[0], r[1]) for r in await cur.fetchall()]


async def tenant_kind(conn: AsyncConn, tenant_id: str) -> str | None:
    row = await (await conn.execute("select tenant_kind(%s)", (tenant_id,))).fetchone()
    return row[0] if row else None


async def propose(
    conn: AsyncConn, from_tenant: str, person_id: UUID, to_tenant: str, effective_at: datetime,
    device_ids: list[str], actor: str,
) -> dict[str, Any]:  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "insert into person_moves (from_tenant, person_id, to_tenant, effective_at,"
            " device_ids, proposed_by) values (%s, %s, %s, %s, %s, %s) returning id",
            (from_tenant, person_id, to_tenant, effective_at, device_ids, actor),
        )
        row = await cur.fetchone()
    assert row is not None
    move = await get(conn, row["id"])
    assert move is not None
    return move


async def get(conn: AsyncConn, move_id: int) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_MOVE + " where id = %s", (move_id,))
        return await cur.fetchone()


async def list_moves(conn: AsyncConn, status: str | None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _MOVE + " where (%s::text is null or status = %s) order by effective_at, id",
            (status, status),
        )
        return await cur.fetchall()


async def accept(conn: AsyncConn, move_id: int, ref: str, actor: str) -> UUID:
    """The receiving municipality accepts; the resident's person record there."""
    row = await (
        await conn.execute("select accept_person_move(%s, %s, %s)", (move_id, ref, actor))
    ).fetchone()
    assert row is not None
    person: UUID = row[0]
    return person


async def cancel(conn: AsyncConn, move_id: int, actor: str) -> None:
    await conn.execute("select cancel_person_move(%s, %s)", (move_id, actor))


# --- the worker (wg_worker) -----------------------------------------------------------


async def apply_due(conn: AsyncConn) -> list[int]:
    """Apply the accepted moves whose date has come; their ids (once: the function flips
    each move's status in the caller's transaction, skipping moves another worker holds)."""
    return [r[0] for r in await (await conn.execute("select apply_person_moves()")).fetchall()]


async def next_due(conn: AsyncConn) -> datetime | None:
    row = await (
        await conn.execute("select min(effective_at) from person_moves where status = 'accepted'")
    ).fetchone()
    return row[0] if row else None
