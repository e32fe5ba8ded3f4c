"""Housing and payer (issue #19.1; docs/payer.md): a person's housing form from a date,
their housing history with the payer it implies, the report of payer changes, the
region's rule table and which region a municipality belongs to."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api import consented
from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.adapters.postgres import payer_queries as q
from gateway.adapters.postgres import registry_repo as repo
from gateway.domain.payer import (
    HousingForm,
    Payer,
    form_on,
    in_window,
    local_date,
    local_midnight,
    payer_changes,
    payer_for,
)

router = APIRouter(prefix="/api/v1", tags=["housing and payer"])

RECORDERS = (Role.TENANT_ADMIN, Role.OPERATOR)
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR)
#: how far back a housing form may be recorded (the workers emit late changes this far)
MAX_BACK = timedelta(days=365)
MAX_AHEAD = timedelta(days=730)
MAX_REPORT = timedelta(days=731)


class HousingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    form: HousingForm
    valid_from: date = Field(description="Local date (Europe/Stockholm) the form holds from.")


class HousingOut(BaseModel):
    id: int
    person_id: UUID
    form: HousingForm
    valid_from: date
    payer: Payer
    takes_effect_at: datetime
    late: bool = Field(description="Already in effect when recorded: emitted at once.")


class HousingPeriodOut(BaseModel):
    valid_from: date
    form: HousingForm
    payer: Payer
    recorded_at: datetime
    recorded_by: str


class HousingNow(BaseModel):
    form: HousingForm
    payer: Payer


class HousingHistory(BaseModel):
    person_id: UUID
    region_id: str | None
    current: HousingNow
    periods: list[HousingPeriodOut]


class PayerChangeOut(BaseModel):
    effective_date: date
    device_id: str
    assignment_id: int
    person_id: UUID
    tenant_id: str
    from_form: HousingForm
    to_form: HousingForm
    from_payer: Payer
    to_payer: Payer
    status: str = Field(description="upcoming, due (in effect, not yet emitted) or emitted")
    late: bool
    recorded_at: datetime
    emitted_at: datetime | None


class PayerReport(BaseModel):
    from_: date = Field(alias="from")
    to: date
    today: date
    changes: list[PayerChangeOut]

    model_config = ConfigDict(populate_by_name=True)


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    own_home: Payer | None = None
    residential_care: Payer | None = None
    short_term_stay: Payer | None = None


class RulesOut(BaseModel):
    region_id: str
    rules: dict[HousingForm, Payer]


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region_id: str | None = Field(description="The region's tenant id; null unlinks.")


class RegionOut(BaseModel):
    id: str
    region_id: str | None


@router.post("/persons/{person_id}/housing", status_code=201, response_model=HousingOut)
async def record_housing(
    person_id: UUID, body: HousingIn, conn: TenantConn, who: Principal = require(*RECORDERS)
) -> HousingOut:
    await repo.get_person(conn, person_id)
    now = datetime.now(UTC)
    today = local_date(now)
    if not today - MAX_BACK <= body.valid_from <= today + MAX_AHEAD:
        raise HTTPException(422, f"valid_from must be from {today - MAX_BACK} to "
                                 f"{today + MAX_AHEAD}")  # fmt: skip
    tenant = await q.tenant(conn)
    rules = await q.rules(conn, tenant["region_id"])
    try:
        async with conn.transaction():
            row = await q.add_housing(conn, who.tenant, person_id, body.form, body.valid_from,
                                      who.subject)  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise HTTPException(409, f"a housing form is already recorded for this person "
                                 f"from {body.valid_from}") from None  # fmt: skip
    at = local_midnight(body.valid_from)
    return HousingOut(id=row["id"], person_id=person_id, form=body.form,
                      valid_from=body.valid_from, payer=payer_for(body.form, rules),
                      takes_effect_at=at, late=at < row["recorded_at"])  # fmt: skip


@router.get("/persons/{person_id}/housing", response_model=HousingHistory)
async def housing_history(
    person_id: UUID, request: Request, conn: TenantConn, who: Principal = require(*READERS)
) -> HousingHistory:
    await repo.get_person(conn, person_id)
    # social-services data of one resident: in the access log (#21.3)
    await consented.log_read(request, who, consented.ReadRecord(
        owner=who.tenant, person_id=person_id, categories=["housing"], outcome="allowed",
        reason="by role"))  # fmt: skip
    tenant = await q.tenant(conn)
    rules = await q.rules(conn, tenant["region_id"])
    rows = await q.housing_history(conn, person_id)
    periods = [q.housing_period(r) for r in rows]
    form = form_on(periods, local_date(datetime.now(UTC)))
    return HousingHistory(
        person_id=person_id, region_id=tenant["region_id"],
        current=HousingNow(form=form, payer=payer_for(form, rules)),
        periods=[HousingPeriodOut(valid_from=r["valid_from"], form=HousingForm(r["form"]),
                                  payer=payer_for(HousingForm(r["form"]), rules),
                                  recorded_at=r["recorded_at"], recorded_by=r["recorded_by"])
                 for r in rows],
    )  # fmt: skip


@router.get("/payer-changes", response_model=PayerReport, response_model_by_alias=True)
async def payer_change_report(
    conn: TenantConn,
    _: Principal = require(*READERS),
    from_: Annotated[date | None, Query(alias="from", description="Default: 30 days ago.")] = None,
    to: Annotated[date | None, Query(description="Default: 90 days ahead.")] = None,
) -> PayerReport:
    now = datetime.now(UTC)
    today = local_date(now)
    start = from_ or today - timedelta(days=30)
    end = to or today + timedelta(days=90)
    if start > end or end - start > MAX_REPORT:
        raise HTTPException(422, "from must not be after to, and at most 731 days before it")
    tenant = await q.tenant(conn)
    found: dict[tuple[int, date], PayerChangeOut] = {}
    for r in await q.emitted(conn, start, end):
        found[(r["assignment_id"], r["effective_date"])] = PayerChangeOut(
            **{k: r[k] for k in ("effective_date", "device_id", "assignment_id", "person_id",
                                 "tenant_id", "from_form", "to_form", "from_payer", "to_payer",
                                 "late", "recorded_at", "emitted_at")},
            status="emitted",
        )  # fmt: skip
    if tenant["kind"] == "municipality":  # a region sees what was emitted for it (docs)
        rules = await q.rules(conn, tenant["region_id"])
        housing, assignments = await q.tenant_inputs(conn)
        for c in in_window(payer_changes(housing, assignments, rules), start, end):
            if (c.assignment_id, c.effective_date) in found:
                continue
            found[(c.assignment_id, c.effective_date)] = PayerChangeOut(
                effective_date=c.effective_date, device_id=c.device_id,
                assignment_id=c.assignment_id, person_id=UUID(c.person_id),
                tenant_id=str(tenant["id"]), from_form=c.from_form, to_form=c.to_form,
                from_payer=c.from_payer, to_payer=c.to_payer,
                status="due" if c.due(now) else "upcoming",
                late=c.late or (c.due(now) and c.effective_date < today),
                recorded_at=c.recorded_at, emitted_at=None,
            )  # fmt: skip
    changes = sorted(found.values(), key=lambda c: (c.effective_date, c.device_id,
                                                    c.assignment_id))  # fmt: skip
    return PayerReport(from_=start, to=end, today=today, changes=changes)


@router.put("/payer-rules", response_model=RulesOut)
async def set_payer_rules(
    body: RulesIn, conn: TenantConn, who: Principal = require(Role.TENANT_ADMIN)
) -> RulesOut:
    tenant = await q.tenant(conn)
    if tenant["kind"] != "region":
        raise HTTPException(403, "only a region's tenant admin sets its payer rules")
    new = {HousingForm(k): Payer(v) for k, v in body.model_dump(exclude_none=True).items()}
    if not new:
        raise HTTPException(422, "give the payer of at least one housing form")
    await q.set_rules(conn, who.tenant, new, who.subject)
    rules = await q.rules(conn, who.tenant)
    return RulesOut(region_id=who.tenant, rules={f: payer_for(f, rules) for f in HousingForm})


@router.put("/tenants/{tenant_id}/region", response_model=RegionOut)
async def set_tenant_region(
    tenant_id: str, body: RegionIn, conn: TenantConn, _: Principal = require(Role.PLATFORM_ADMIN)
) -> RegionOut:
    try:
        async with conn.transaction():
            known = await q.set_tenant_region(conn, tenant_id, body.region_id)
    except psycopg.errors.NoDataFound:
        raise HTTPException(422, f"no region {body.region_id!r}") from None
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise HTTPException(409, exc.diag.message_primary or "not a municipality") from None
    if not known:
        raise HTTPException(404, "tenant not found")
    return RegionOut(id=tenant_id, region_id=body.region_id)

