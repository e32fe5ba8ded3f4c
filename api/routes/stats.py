"""Follow-up figures per municipality: how fast alarms were answered, and fleet health now.

The telecare answering norm the figures are read against: 97.5 % of alarms answered
(acknowledged) within 60 s and 99 % within 180 s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, BaseModel

from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.adapters.postgres.api_queries import ALARM_STATS, ALARM_STATS_BY_KIND, CONDITIONS_NOW

router = APIRouter(prefix="/api/v1", tags=["statistics"])


class Stats(BaseModel):
    tenant_id: str
    period_from: datetime
    period_to: datetime
    alarms: int
    alarms_by_kind: dict[str, int]
    acknowledge_p50_s: float | None
    acknowledge_p90_s: float | None
    resolve_p50_s: float | None
    resolve_p90_s: float | None
    share_acknowledged_within_60s: float | None
    share_acknowledged_within_180s: float | None
    norm: dict[str, float]
    silent_devices_now: int
    battery_low_now: int


@router.get("/stats", response_model=Stats)
async def stats(
    conn: TenantConn,
    from_: AwareDatetime | None = Query(default=None, alias="from"),
    to: AwareDatetime | None = None,
    who: Principal = require(Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR, Role.PLATFORM_ADMIN),
) -> Stats:
    """Alarms raised in [from, to) (default: the last 30 days)."""
    end = to or datetime.now(UTC)
    start = from_ or end - timedelta(days=30)
    if start >= end:
        raise HTTPException(422, "from must be before to")
    params = {"from": start, "to": end}
    row = await (await conn.execute(ALARM_STATS, params)).fetchone()
    assert row is not None
    by_kind = {k: n for k, n in await (await conn.execute(ALARM_STATS_BY_KIND, params)).fetchall()}
    now = {k: n for k, n in await (await conn.execute(CONDITIONS_NOW)).fetchall()}

    def num(value: object) -> float | None:
        return round(float(value), 3) if value is not None else None  # type: ignore[arg-type]

    return Stats(
        tenant_id=who.tenant,
        period_from=start,
        period_to=end,
        alarms=row[0],
        alarms_by_kind=by_kind,
        acknowledge_p50_s=num(row[1]),
        acknowledge_p90_s=num(row[2]),
        resolve_p50_s=num(row[3]),
        resolve_p90_s=num(row[4]),
        share_acknowledged_within_60s=num(row[5]),
        share_acknowledged_within_180s=num(row[6]),
        norm={"share_acknowledged_within_60s": 0.975, "share_acknowledged_within_180s": 0.99},
        silent_devices_now=now.get("device_silent", 0),
        battery_low_now=now.get("battery_low", 0),
    )
