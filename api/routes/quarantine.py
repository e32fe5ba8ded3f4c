"""Quarantine: what the gateway refused, for the municipality to review; and the release
of a message quarantined as ``before_current_assignment`` (security review #17.2).

A reading, position, alarm or lock event a device stamped before its current assignment
began is not stored on anyone (the device's clock alone never decides whose data it is).
A tenant admin who has checked that it is the earlier holder's releases it, naming that
person: the database stores it on whoever held the device at the message's time (only if
that is the person named), once, never dispatching an alarm, and the release is written
to the access log in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from api import consented
from api.auth import Principal, Role
from api.deps import TenantConn, require
from firmware_contracts.topics import DEVICE_ID_PATTERN
from gateway.adapters.postgres.api_queries import (
    APPEND_ACCESS_LOG,
    QUARANTINE_LIST,
    RELEASE_QUARANTINED,
)

router = APIRouter(prefix="/api/v1", tags=["quarantine"])

REVIEWERS = (Role.TENANT_ADMIN, Role.INSTALLER)
MAX_ID = 2**63 - 1  # quarantine ids are bigint


class QuarantinedOut(BaseModel):
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload_size: int
    released_to: UUID | None = Field(description="Released: the person it was stored on.")
    released_category: str | None
    released_at: datetime | None
    released_by: str | None


class ReleaseIn(BaseModel):
    person_id: UUID = Field(
        description="The person the admin confirms the message is of: it is stored only if "
        "this person held the device at the message's time."
    )
    purpose: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Why (access-logged).",
    )


class ReleaseOut(BaseModel):
    id: int
    person_id: UUID
    category: str
    table: str
    stored: bool = Field(description="False: the same message was already stored.")
    released_at: datetime
    released_by: str
    already_released: bool


@router.get("/quarantine", response_model=list[QuarantinedOut])
async def list_quarantine(
    conn: TenantConn,
    reason: str | None = Query(
        default=None, pattern=r"^[a-z_]{1,64}$", examples=["before_current_assignment"]
    ),
    device_id: str | None = Query(default=None, pattern=DEVICE_ID_PATTERN),
    released: bool | None = None,
    before: int | None = Query(
        default=None, ge=1, le=MAX_ID, description="Only ids below this (the next page)."
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = require(*REVIEWERS),
) -> list[dict[str, Any]]:
    """This tenant's refused messages, newest first (no payloads)."""
    cur = await conn.execute(
        QUARANTINE_LIST,
        {"reason": reason, "device": device_id, "released": released, "before": before,
         "limit": limit},
    )  # fmt: skip
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


@router.post("/quarantine/{quarantine_id}/release", response_model=ReleaseOut)
async def release(
    quarantine_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: ReleaseIn, request: Request,
    conn: TenantConn,
    who: Principal = require(Role.TENANT_ADMIN),
) -> ReleaseOut:  # fmt: skip
    """Store a message quarantined as ``before_current_assignment`` on the person who held
    the device at its time. Idempotent; 404 for a row of another tenant; 409 when it
    cannot be released (another reason, a payload kept only in part, no one or another
    person held the device then, older than the retention)."""
    try:
        cur = await conn.execute(
            RELEASE_QUARANTINED,
            {"id": quarantine_id, "person": body.person_id, "actor": who.subject},
        )
        row = await cur.fetchone()
    except psycopg.errors.NoDataFound:
        await _denied(request, who, body, "not found")
        raise HTTPException(404, "quarantined message not found") from None
    except (psycopg.errors.ObjectNotInPrerequisiteState, psycopg.errors.DataError) as exc:
        reason = exc.diag.message_primary or "cannot be released"
        await _denied(request, who, body, reason)
        raise HTTPException(409, reason) from None
    assert row is not None
    person_id, category, table, stored, released_at, released_by, already = row
    await conn.execute(APPEND_ACCESS_LOG, {
        "actor": who.subject, "actor_org": who.org, "actor_role": who.role.value,
        "actor_tenant": who.tenant, "owner_tenant": who.tenant, "person": person_id,
        "categories": [category], "purpose": body.purpose, "outcome": "allowed",
        "reason": f"quarantine #{quarantine_id} "
                  + ("already released" if already else f"released into {table}"),
        "request": f"{request.method} {request.url.path}",
    })  # fmt: skip
    return ReleaseOut(id=quarantine_id, person_id=person_id, category=category, table=table,
                      stored=stored, released_at=released_at, released_by=released_by,
                      already_released=already)  # fmt: skip


async def _denied(request: Request, who: Principal, body: ReleaseIn, reason: str) -> None:
    """A refused release is logged too, in a transaction of its own (the request's is
    rolled back)."""
    await consented.log_read(request, who, consented.ReadRecord(
        owner=None, person_id=body.person_id, categories=[], purpose=body.purpose,
        outcome="denied", reason=f"release: {reason}"[:500],
    ))  # fmt: skip
