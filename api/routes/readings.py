"""A person's time series, for the owning municipality's staff, with cursor pagination."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import AwareDatetime

from api.auth import Principal, Role
from api.consent_gate import ConsentGate
from api.deps import TenantConn, require
from api.readings_models import ReadingsPage, page
from gateway.adapters.postgres.api_queries import CONSENTED_QUERIES, READING_QUERIES
from gateway.domain.consent import DataCategory

router = APIRouter(prefix="/api/v1", tags=["readings"])



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
    request: Request,
    conn: TenantConn,
    category: DataCategory,
    from_: AwareDatetime | None = Query(default=None, alias="from"),
    to: AwareDatetime | None = None,
    cursor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    purpose: str | None = Query(default=None, max_length=200, description="Why (logged)."),
    who: Principal = require(Role.TENANT_ADMIN, Role.OPERATOR, Role.CLINICIAN),
) -> ReadingsPage:
    """The owning municipality's staff read by role; another organisation's clinician
    only under a consent valid now for this category, and only data from inside the
    consent's validity. Every read, allowed or denied, is in the access log."""
    after = _decode_cursor(cursor) if cursor else None
    gate = ConsentGate(request, conn, who, refuse=HTTPException, not_found="person not found",
                       purpose=purpose, log_unseen_person=False)  # fmt: skip
    if (await gate.categories(person_id, [category])).by_consent:
        return await _consented(person_id, conn, who, category, from_, to, after, limit)
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
    return page(person_id, category, rows, next_cursor)


async def _consented(
    person_id: UUID, conn: Any, who: Principal, category: str,
    from_: datetime | None, to: datetime | None, after: tuple[datetime, str, str] | None,
    limit: int,
) -> ReadingsPage:  # fmt: skip
    """Every category through the same path: the gate's decide() on the consents, then a
    SECURITY DEFINER function that checks the consent again and returns only rows from
    inside its validity period."""
    cur = await conn.execute(
        CONSENTED_QUERIES[category],
        {"person": person_id, "org": who.org, "from": from_, "to": to,
         "after_ts": after[0] if after else None, "after_device": after[1] if after else None,
         "after_msg": after[2] if after else None, "limit": limit + 1},
    )  # fmt: skip
    names = [c.name for c in cur.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = _encode_cursor(last["ts"], last["device_id"], last["msg_id"])
    return page(person_id, category, rows, next_cursor)
