"""A person's time series, for the owning municipality's staff, with cursor pagination."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, HTTPException, Query
from pydantic import AwareDatetime, BaseModel

from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.storage import registry_repo as repo
from gateway.storage.api_queries import READING_QUERIES

router = APIRouter(prefix="/api/v1", tags=["readings"])

Category = Literal["weight", "blood_pressure", "position", "lock_events", "alarms"]


class ReadingsPage(BaseModel):
    person_id: UUID
    category: Category
    items: list[dict[str, Any]]
    next_cursor: str | None


def _encode_cursor(ts: datetime, device_id: str, msg_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([ts.isoformat(), device_id, msg_id])).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    try:
        ts, device_id, msg_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(ts), str(device_id), str(msg_id)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise HTTPException(422, "cursor is not valid") from None


@router.get("/persons/{person_id}/readings", response_model=ReadingsPage)
async def readings(
    person_id: UUID,
    conn: TenantConn,
    category: Category,
    from_: AwareDatetime | None = Query(default=None, alias="from"),
    to: AwareDatetime | None = None,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = require(Role.TENANT_ADMIN, Role.OPERATOR, Role.PLATFORM_ADMIN),
) -> ReadingsPage:
    await repo.get_person(conn, person_id)  # 404 unless the person is in this tenant
    after = _decode_cursor(cursor) if cursor else None
    query, kind = READING_QUERIES[category]
    params: dict[str, Any] = {
        "person": person_id,
        "kind": kind,
        "from": from_,
        "to": to,
        "after_ts": after[0] if after else None,
        "after_device": after[1] if after else None,
        "after_msg": after[2] if after else None,
        "limit": limit + 1,
    }
    cur = await conn.execute(query, params)
    names = [c.name for c in cur.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode_cursor(last["ts"], last["device_id"], last["msg_id"])
    return ReadingsPage(person_id=person_id, category=category, items=rows, next_cursor=next_cursor)
