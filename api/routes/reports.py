"""The follow-up report (issue #21.1; docs/report.md): a municipality's figures for a
month (or any period up to a year) as JSON, CSV or HTML with charts, and its own answering
target. Counts only, no personal data: read by the tenant admin and the auditor."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.adapters.postgres import report_queries as q
from gateway.domain import report_render as render
from gateway.domain.followup import Period, PeriodError, Target, compute

router = APIRouter(prefix="/api/v1", tags=["follow-up report"])

READERS = (Role.TENANT_ADMIN, Role.AUDITOR)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ack_within_s: int = Field(ge=1, le=86400, description="Acknowledged within this many s.")
    ack_share: float = Field(gt=0, le=1, description="In at least this share of the alarms.")


class TargetOut(BaseModel):
    tenant_id: str
    target: TargetIn | None
    changed_at: datetime | None = None
    changed_by: str | None = None


def _period(month: str | None, from_: date | None, to: date | None) -> Period:
    try:
        if month is not None:
            if from_ is not None or to is not None:
                raise HTTPException(422, "give either month or from and to, not both")
            found = _MONTH.match(month)
            if not found:
                raise HTTPException(422, "month must be YYYY-MM")
            return Period.month(int(found[1]), int(found[2]))
        if from_ is None or to is None:
            raise HTTPException(422, "give month=YYYY-MM, or from and to (local dates)")
        return Period(from_, to)
    except PeriodError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/reports/followup", response_model=None)
async def followup(
    conn: TenantConn,
    month: str | None = Query(default=None, description="YYYY-MM: that calendar month."),
    from_: date | None = Query(default=None, alias="from", description="First local date."),
    to: date | None = Query(default=None, description="Local date after the last one."),
    format: Literal["json", "csv", "html"] = "json",
    lang: Literal["sv", "en"] = "sv",
    who: Principal = require(*READERS),
) -> Response:
    """The follow-up report of the caller's municipality for the period."""
    period = _period(month, from_, to)
    await q.prepare(conn)
    await q.roll_up_missing(conn, period)
    found = await q.target(conn)
    target = found[0] if found else None
    by_kind, by_hour = await q.responses(conn, period, target)
    report = compute(
        who.tenant,
        period,
        holdings=await q.holdings(conn, period),
        use=await q.device_use(conn, period),
        target=target,
        by_kind=by_kind,
        by_hour=by_hour,
        escalations=await q.escalations(conn, period),
        conditions=await q.conditions(conn, period),
        visits=await q.visits(conn, period),
        supervised=await q.supervision(conn, period),
    )
    name = f"followup-{who.tenant}-{period.start}-{period.end}"
    if format == "csv":
        return Response(
            render.as_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "html":
        return Response(
            render.as_html(report, lang),
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": render.page_csp()},
        )
    import orjson

    return Response(orjson.dumps(render.as_data(report)), media_type="application/json")


@router.get("/reports/target", response_model=TargetOut)
async def get_target(conn: TenantConn, who: Principal = require(*READERS)) -> TargetOut:
    """The municipality's answering target (null: none set)."""
    found = await q.target(conn)
    if found is None:
        return TargetOut(tenant_id=who.tenant, target=None)
    t, changed_at, changed_by = found
    return TargetOut(
        tenant_id=who.tenant,
        target=TargetIn(**vars(t)),
        changed_at=changed_at,
        changed_by=changed_by,
    )


@router.put("/reports/target", response_model=TargetOut)
async def put_target(
    body: TargetIn, conn: TenantConn, who: Principal = require(Role.TENANT_ADMIN)
) -> TargetOut:
    """Set the municipality's own answering target (its contract's norm)."""
    await q.set_target(conn, Target(body.ack_within_s, body.ack_share), who.subject)
    return await get_target(conn, who)


@router.delete("/reports/target", status_code=204)
async def delete_target(conn: TenantConn, who: Principal = require(Role.TENANT_ADMIN)) -> None:
    """Remove the target: the report then shows the times without a target line."""
    if not await q.clear_target(conn):
        raise HTTPException(404, "no target set")
