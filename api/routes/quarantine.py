"""Quarantine: what the gateway refused, for the municipality to review; and the release
of a message quarantined as ``before_current_assignment`` (security review #17.2).

A reading, position, alarm or lock event a device stamped before its current assignment
began is not stored on anyone (the device's clock alone never decides whose data it is).
A tenant admin who has checked that it is the earlier holder's releases it, naming that
person: the database stores it on whoever held the device at the message's time (only if
that is the person named), once, never dispatching an alarm, and the release is written
to the access log in the same transaction.

A reading from a unit's shared device quarantined as ``no_resident_identified`` or
``unknown_resident_tag`` (issue #19.4, docs/units.md) is released the same way to the
person the admin names (who had the device's reading is not in the registry: the ward's
own records say it), if the device was the unit's at its time.

Review (issue #19.7): the list filters by reason, device, release and received time, paged
by id; ``/quarantine/devices`` sums it up per device and per device model for the
console's fleet view, so a vendor's firmware bug (many devices of one model refused for
one reason) shows at a glance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from api import consented
from api.auth import Principal, Role
from api.deps import TenantConn, require
from firmware_contracts.topics import DEVICE_ID_PATTERN
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres.api_queries import (
    QUARANTINE_BY_DEVICE,
    QUARANTINE_LIST,
    RELEASE_QUARANTINED,
)

router = APIRouter(prefix="/api/v1", tags=["quarantine"])

#: who reviews what the gateway refused: the tenant admin and the municipality's technician
REVIEWERS = (Role.TENANT_ADMIN, Role.INSTALLER)
MAX_ID = 2**63 - 1  # quarantine ids are bigint
SUMMARY_DAYS = 7  # the summary's period when ``since`` is not given


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


class ReasonCount(BaseModel):
    reason: str
    devices: int = Field(description="Devices of the model refused for this reason.")
    refused: int = Field(description="Their refused messages.")


class DeviceRefusals(BaseModel):
    device_id: str
    model_id: str | None = Field(description="Null: the device id is no longer this tenant's.")
    vendor: str | None
    model: str | None
    device_type: str | None
    status: str | None
    refused: int
    reasons: dict[str, int] = Field(description="Refused messages per reason.")
    first_at: datetime
    last_at: datetime


class ModelRefusals(BaseModel):
    model_id: str | None
    vendor: str | None
    model: str | None
    device_type: str | None
    devices: int = Field(description="This tenant's devices of the model with refusals.")
    refused: int
    reasons: list[ReasonCount] = Field(description="Most devices first.")


class RefusalSummary(BaseModel):
    since: datetime
    until: datetime | None
    devices_total: int = Field(description="Devices with refusals (``devices`` may hold fewer).")
    models: list[ModelRefusals] = Field(description="Most refusing devices first.")
    devices: list[DeviceRefusals] = Field(description="Most refused messages first.")


def _period(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")


_SINCE = Query(default=None, description="Only messages received at or after this time.",
               examples=["2025-01-14T00:00:00Z"])  # fmt: skip
_UNTIL = Query(default=None, description="Only messages received before this time.",
               examples=["2025-01-15T00:00:00Z"])  # fmt: skip


@router.get("/quarantine", response_model=list[QuarantinedOut])
async def list_quarantine(
    conn: TenantConn,
    reason: str | None = Query(
        default=None, pattern=r"^[a-z_]{1,64}$", examples=["before_current_assignment"]
    ),
    device_id: str | None = Query(default=None, pattern=DEVICE_ID_PATTERN),
    released: bool | None = None,
    since: AwareDatetime | None = _SINCE,
    until: AwareDatetime | None = _UNTIL,
    before: int | None = Query(
        default=None, ge=1, le=MAX_ID, description="Only ids below this (the next page)."
    ),
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = require(*REVIEWERS),
) -> list[dict[str, Any]]:
    """This tenant's refused messages, newest first (no payloads). The next page: the
    same filters with ``before`` = the last id of this one."""
    _period(since, until)
    cur = await conn.execute(
        QUARANTINE_LIST,
        {"reason": reason, "device": device_id, "released": released, "since": since,
         "until": until, "before": before, "limit": limit},
    )  # fmt: skip
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


@router.get("/quarantine/devices", response_model=RefusalSummary)
async def refusals_by_device(
    conn: TenantConn,
    since: AwareDatetime | None = Query(
        default=None,
        description=f"Only messages received at or after this time; default {SUMMARY_DAYS} "
        "days ago.",
        examples=["2025-01-14T00:00:00Z"],
    ),
    until: AwareDatetime | None = _UNTIL,
    limit: int = Query(default=500, ge=1, le=5000, description="At most this many devices."),
    _: Principal = require(*REVIEWERS),
) -> RefusalSummary:
    """The devices of this tenant whose messages were refused in the period: per device the
    count per reason, first and last refusal, and its model; and the same per model."""
    start = since or datetime.now(UTC) - timedelta(days=SUMMARY_DAYS)
    _period(start, until)
    cur = await conn.execute(QUARANTINE_BY_DEVICE, {"since": start, "until": until})
    devices: dict[str, DeviceRefusals] = {}
    for (device_id, reason, refused, first_at, last_at, model_id, vendor, model, device_type,
         status) in await cur.fetchall():  # fmt: skip
        d = devices.get(device_id)
        if d is None:
            d = devices[device_id] = DeviceRefusals(
                device_id=device_id, model_id=model_id, vendor=vendor, model=model,
                device_type=device_type, status=status, refused=0, reasons={},
                first_at=first_at, last_at=last_at,
            )  # fmt: skip
        d.refused += refused
        d.reasons[reason] = refused
        d.first_at, d.last_at = min(d.first_at, first_at), max(d.last_at, last_at)
    return RefusalSummary(
        since=start, until=until, devices_total=len(devices), models=_by_model(devices.values()),
        devices=sorted(devices.values(), key=lambda d: (-d.refused, d.device_id))[:limit],
    )  # fmt: skip


def _by_model(devices: Iterable[DeviceRefusals]) -> list[ModelRefusals]:
    models: dict[str | None, ModelRefusals] = {}
    per_reason: dict[str | None, dict[str, list[int]]] = defaultdict(dict)
    for d in devices:
        m = models.get(d.model_id)
        if m is None:
            m = models[d.model_id] = ModelRefusals(
                model_id=d.model_id, vendor=d.vendor, model=d.model, device_type=d.device_type,
                devices=0, refused=0, reasons=[],
            )  # fmt: skip
        m.devices += 1
        m.refused += d.refused
        for reason, n in d.reasons.items():
            counts = per_reason[d.model_id].setdefault(reason, [0, 0])
            counts[0] += 1
            counts[1] += n
    for model_id, m in models.items():
        m.reasons = [
            ReasonCount(reason=r, devices=n, refused=k)
            for r, (n, k) in sorted(per_reason[model_id].items(),
                                    key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
        ]  # fmt: skip
    return sorted(models.values(), key=lambda m: (-m.devices, -m.refused, m.model_id or "~"))


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
    await access_log.append(conn, consented.caller_entry(
        request, who, owner=who.tenant, person_id=person_id, categories=[category],
        purpose=body.purpose, reason=f"quarantine #{quarantine_id} "
        + ("already released" if already else f"released into {table}"),
    ))  # fmt: skip
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
