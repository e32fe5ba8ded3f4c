"""SQL of housing and payer (issue #19.1; migration 0016, docs/payer.md).

The API's reads and writes run on a tenant-scoped connection of role wg_api (row-level
security); the worker's emission (``due_inputs``, ``claim``) as wg_worker, across
tenants. The rules themselves are in :mod:`gateway.domain.payer`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from gateway.domain.payer import (
    AssignmentPeriod,
    HousingForm,
    HousingPeriod,
    Payer,
    PayerChange,
)

AsyncConn = psycopg.AsyncConnection[Any]
Rules = dict[HousingForm, Payer]


def housing_period(row: dict[str, Any]) -> HousingPeriod:
    return HousingPeriod(str(row["person_id"]), HousingForm(row["form"]), row["valid_from"],
                         row["recorded_at"])  # fmt: skip


def _assignment(row: dict[str, Any]) -> AssignmentPeriod:
    return AssignmentPeriod(row["id"], row["device_id"], str(row["person_id"]),
                            row["valid_from"], row["valid_to"])  # fmt: skip


# --- the API (wg_api, one tenant) -----------------------------------------------------


async def tenant(conn: AsyncConn) -> dict[str, Any]:
    """The caller's tenant: ``{id, kind, region_id}``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("select id, kind, region_id from tenants"
                          " where id = current_setting('wg.tenant_id', true)")  # fmt: skip
        row = await cur.fetchone()
    return row or {"id": None, "kind": None, "region_id": None}


async def rules(conn: AsyncConn, region_id: str | None) -> Rules:
    """The region's rules (the caller must be the region or one of its municipalities)."""
    if region_id is None:
        return {}
    cur = await conn.execute("select form, payer from payer_rules where region_id = %s",
                             (region_id,))  # fmt: skip
    return {HousingForm(f): Payer(p) for f, p in await cur.fetchall()}


async def set_rules(conn: AsyncConn, region_id: str, new: Rules, actor: str) -> None:
    for form, payer in new.items():
        await conn.execute(
            "insert into payer_rules (region_id, form, payer, changed_by) values (%s, %s, %s, %s)"
            " on conflict (region_id, form) do update set payer = excluded.payer,"
            " changed_by = excluded.changed_by, changed_at = now()",
            (region_id, form.value, payer.value, actor),
        )


async def set_tenant_region(conn: AsyncConn, tenant_id: str, region_id: str | None) -> bool:
    """A platform admin links a municipality to its region; False: no such tenant."""
    cur = await conn.execute("select set_tenant_region(%s, %s)", (tenant_id, region_id))
    row = await cur.fetchone()
    return bool(row and row[0])


async def add_housing(
    conn: AsyncConn, tenant_id: str, person_id: UUID, form: HousingForm, valid_from: date,
    actor: str,
) -> dict[str, Any]:  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "insert into housing_periods (tenant_id, person_id, form, valid_from, recorded_by)"
            " values (%s, %s, %s, %s, %s)"
            " returning id, person_id, form, valid_from, recorded_at, recorded_by",
            (tenant_id, person_id, form.value, valid_from, actor),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def housing_history(conn: AsyncConn, person_id: UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, person_id, form, valid_from, recorded_at, recorded_by"
            " from housing_periods where person_id = %s order by valid_from",
            (person_id,),
        )
        return await cur.fetchall()


async def tenant_inputs(
    conn: AsyncConn,
) -> tuple[list[HousingPeriod], list[AssignmentPeriod]]:
    """The tenant's housing periods and the assignments of the persons who have any."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("select person_id, form, valid_from, recorded_at from housing_periods")
        housing = [housing_period(r) for r in await cur.fetchall()]
        await cur.execute(
            "select a.id, a.device_id, a.person_id, a.valid_from, a.valid_to from assignments a"
            " where exists (select 1 from housing_periods h where h.person_id = a.person_id)"
        )
        assignments = [_assignment(r) for r in await cur.fetchall()]
    return housing, assignments


async def emitted(conn: AsyncConn, start: date, end: date) -> list[dict[str, Any]]:
    """Emitted changes from ``start`` to ``end`` the caller's tenant may read: its own, or,
    for a region, those of devices it paid or pays for (row-level security)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select assignment_id, effective_date, tenant_id, region_id, device_id, person_id,"
            " from_form, to_form, from_payer, to_payer, recorded_at, late, emitted_at"
            " from payer_changes where effective_date between %s and %s"
            " and (tenant_id = current_setting('wg.tenant_id', true)"
            " or (region_id = current_setting('wg.tenant_id', true)"
            " and 'region' in (from_payer, to_payer)))"
            " order by effective_date, device_id, assignment_id",
            (start, end),
        )
        return await cur.fetchall()


# --- the worker (wg_worker, every tenant) ---------------------------------------------


async def due_inputs(
    conn: AsyncConn, since: date, until: date
) -> tuple[dict[str, tuple[str | None, list[HousingPeriod], list[AssignmentPeriod]]],
           dict[str, Rules]]:  # fmt: skip
    """Per tenant with a housing record effective from ``since`` to ``until``: its region,
    the housing periods of those persons (all of them: the form before counts) and their
    assignments; and the rules of every region named."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "with moved as (select distinct person_id from housing_periods"
            " where valid_from between %s and %s)"
            " select h.tenant_id, t.region_id, h.person_id, h.form, h.valid_from, h.recorded_at"
            " from housing_periods h join moved m using (person_id)"
            " join tenants t on t.id = h.tenant_id",
            (since, until),
        )
        out: dict[str, tuple[str | None, list[HousingPeriod], list[AssignmentPeriod]]] = {}
        persons: dict[str, str] = {}
        for row in await cur.fetchall():
            entry = out.setdefault(row["tenant_id"], (row["region_id"], [], []))
            entry[1].append(housing_period(row))
            persons[str(row["person_id"])] = row["tenant_id"]
        if persons:
            await cur.execute(
                "select id, device_id, person_id, valid_from, valid_to, tenant_id"
                " from assignments where person_id = any(%s::uuid[])",
                (list(persons),),
            )
            for row in await cur.fetchall():
                if row["tenant_id"] == persons.get(str(row["person_id"])):
                    out[row["tenant_id"]][2].append(_assignment(row))
        regions = sorted({r for r, _, _ in out.values() if r is not None})
        all_rules: dict[str, Rules] = {r: {} for r in regions}
        if regions:
            await cur.execute("select region_id, form, payer from payer_rules"
                        " where region_id = any(%s)", (regions,))  # fmt: skip
            for row in await cur.fetchall():
                all_rules[row["region_id"]][HousingForm(row["form"])] = Payer(row["payer"])
    return out, all_rules


async def claim(
    conn: AsyncConn, change: PayerChange, tenant_id: str, region_id: str | None, worker: str,
    *, late: bool,
) -> datetime | None:  # fmt: skip
    """Record ``change`` as emitted, in the caller's transaction: its emission time, or
    None when it was emitted already (by this or another worker). A second worker's
    insert waits for the first's transaction, so only one of them publishes."""
    cur = await conn.execute(
        "insert into payer_changes (assignment_id, effective_date, tenant_id, region_id,"
        " device_id, person_id, from_form, to_form, from_payer, to_payer, recorded_at, late,"
        " emitted_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " on conflict (assignment_id, effective_date) do nothing returning emitted_at",
        (change.assignment_id, change.effective_date, tenant_id, region_id, change.device_id,
         change.person_id, change.from_form.value, change.to_form.value,
         change.from_payer.value, change.to_payer.value, change.recorded_at,
         late, worker),
    )  # fmt: skip
    row = await cur.fetchone()
    return None if row is None else row[0]

