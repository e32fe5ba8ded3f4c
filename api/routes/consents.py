"""Consents (recorded by the owning municipality) and the access log (for auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from psycopg.rows import dict_row
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api import consented
from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.adapters.postgres import registry_repo as repo
from gateway.domain.consent import DataCategory

router = APIRouter(prefix="/api/v1", tags=["consent and access log"])


class ConsentIn(BaseModel):
    person_id: UUID
    recipient_org: str = Field(pattern=r"^[0-9]{6}-[0-9]{4}$", description="Organisation number")
    purpose: str = Field(min_length=1, max_length=500)
    categories: list[DataCategory] = Field(min_length=1)
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None
    legal_basis: str = Field(
        min_length=1, max_length=200, examples=["samtycke (OSL 12 kap. 2 §)"],
        description="What lifts secrecy for this disclosure: for social-services data "
        "(SoLPuL, secrecy under OSL 26 kap.) the resident's consent (OSL 12 kap. 2 §)",
    )

    @model_validator(mode="after")
    def _period(self) -> ConsentIn:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


class ConsentOut(BaseModel):
    id: UUID
    person_id: UUID
    recipient_org: str
    purpose: str
    categories: list[DataCategory]
    valid_from: datetime
    valid_to: datetime | None
    legal_basis: str
    recorded_by: str
    recorded_at: datetime
    withdrawn_at: datetime | None
    withdrawn_by: str | None


class AccessLogOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_org: str | None
    actor_role: str
    actor_tenant: str
    owner_tenant: str | None
    person_id: UUID | None
    categories: list[str]
    purpose: str | None
    outcome: str
    reason: str
    request: str


_CONSENT_COLUMNS = (
    "id, person_id, recipient_org, purpose, categories, valid_from, valid_to, legal_basis,"
    " recorded_by, recorded_at, withdrawn_at, withdrawn_by"
)


@router.post("/consents", status_code=201, response_model=ConsentOut)
async def record_consent(
    body: ConsentIn, conn: TenantConn, who: Principal = require(Role.TENANT_ADMIN)
) -> dict[str, Any]:
    await repo.get_person(conn, body.person_id)  # 404 unless the person is ours
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
            " valid_from, valid_to, legal_basis, recorded_by)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning " + _CONSENT_COLUMNS,
            (who.tenant, body.person_id, body.recipient_org, body.purpose,
             sorted(set(body.categories)), body.valid_from, body.valid_to, body.legal_basis,
             who.subject),
        )  # fmt: skip
        row = await cur.fetchone()
    assert row is not None
    return row


@router.post("/consents/{consent_id}/withdraw", response_model=ConsentOut)
async def withdraw_consent(
    consent_id: UUID, conn: TenantConn, who: Principal = require(Role.TENANT_ADMIN)
) -> dict[str, Any]:
    """Takes effect on the next request of the recipient."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "update consents set withdrawn_at = now(), withdrawn_by = %s"
            " where id = %s and withdrawn_at is null returning " + _CONSENT_COLUMNS,
            (who.subject, consent_id),
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute("select 1 from consents where id = %s", (consent_id,))
            if await cur.fetchone() is None:
                raise HTTPException(404, "consent not found")
            raise HTTPException(409, "consent already withdrawn")
    return row


@router.get("/consents", response_model=list[ConsentOut])
async def list_consents(
    person_id: UUID, request: Request, conn: TenantConn,
    who: Principal = require(Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR),
) -> list[dict[str, Any]]:  # fmt: skip
    """The person's consents (empty for a person the caller's tenant does not have). The
    read of one resident's consents is written to the access log (#21.3)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select " + _CONSENT_COLUMNS + " from consents where person_id = %s"
            " order by recorded_at",
            (person_id,),
        )
        rows = await cur.fetchall()
        await cur.execute("select 1 from persons where id = %s", (person_id,))
        ours = await cur.fetchone() is not None
    if ours:
        await consented.log_read(request, who, consented.ReadRecord(
            owner=who.tenant, person_id=person_id, categories=["consents"],
            outcome="allowed", reason="by role"))  # fmt: skip
    return rows


@router.get("/access-log", response_model=list[AccessLogOut])
async def access_log(
    conn: TenantConn,
    person_id: UUID | None = None,
    limit: int = 500,
    who: Principal = require(Role.AUDITOR, Role.TENANT_ADMIN),
) -> list[dict[str, Any]]:
    """Who read which personal data, when, why, allowed or denied (newest first)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            # A refused attempt by our own staff on another municipality's resident is
            # ours to audit, but whose resident it was is not ours to learn.
            "select id, at, actor, actor_org, actor_role, actor_tenant,"
            " case when owner_tenant = %s or outcome = 'allowed' then owner_tenant"
            " end as owner_tenant,"
            " person_id, categories, purpose, outcome, reason, request from access_log"
            " where (%s::uuid is null or person_id = %s) order by id desc limit %s",
            (who.tenant, person_id, person_id, max(1, min(limit, 5000))),
        )
        return await cur.fetchall()
