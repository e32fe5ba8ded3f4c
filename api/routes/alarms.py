"""Alarms: list, acknowledge, resolve, and the live stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import TenantConn, ask_holder, require, workers
from gateway.adapters.postgres.api_queries import LIST_ALARMS
from gateway.control import protocol as p
from gateway.control.alarm_hub import RESYNC

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

STAFF = (Role.OPERATOR, Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
KEEPALIVE_S = 15.0


class AlarmOut(BaseModel):
    alarm_id: UUID
    tenant_id: str
    kind: str
    severity: str
    state: str
    device_id: str
    person_id: UUID | None
    person_ref: str | None
    raised_at: datetime
    last_at: datetime
    occurrences: int
    condition: Literal["active", "cleared"] | None
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    outcome: str | None
    position: dict[str, float | None] | None
    escalation_level: int
    detail: dict[str, Any]


class ResolveIn(BaseModel):
    outcome: str = Field(min_length=1, max_length=2000, description="What was done.")


async def _change(request: Request, op: str, tenant: str, args: dict[str, Any]) -> Any:
    """Acknowledge or resolve, by the worker whose alarm book holds the alarm."""
    reply = await ask_holder(request, op, tenant, args, unchanged="the alarm was not changed",
                             not_held=(404, "alarm not found or already resolved"))  # fmt: skip
    return reply.body


@router.get("", response_model=list[AlarmOut])
async def list_alarms(
    conn: TenantConn,
    state: Literal["raised", "acknowledged", "resolved", "open"] | None = None,
    limit: int = 200,
    _: Principal = require(*STAFF),
) -> list[dict[str, Any]]:
    """Newest and most severe first. ``state=open`` means raised or acknowledged."""
    limit = max(1, min(limit, 1000))
    cur = await conn.execute(LIST_ALARMS, {"state": state, "limit": limit})
    names = [c.name for c in cur.description or []]
    rows = []
    for row in await cur.fetchall():
        r = dict(zip(names, row, strict=True))
        lat, lon, acc = r.pop("lat"), r.pop("lon"), r.pop("accuracy_m")
        r["position"] = {"lat": lat, "lon": lon, "accuracy_m": acc} if lat is not None else None
        r["condition"] = {None: None, True: "active", False: "cleared"}[r["condition"]]
        r["alarm_id"] = r.pop("id")
        rows.append(r)
    return rows


@router.post("/{alarm_id}/acknowledge", response_model=AlarmOut)
async def acknowledge(
    alarm_id: UUID, request: Request, who: Principal = require(*STAFF)
) -> dict[str, Any]:
    args = {"alarm_id": str(alarm_id), "actor": who.subject}
    body: dict[str, Any] = await _change(request, p.ACKNOWLEDGE, who.tenant, args)
    return body


@router.post("/{alarm_id}/resolve", response_model=AlarmOut)
async def resolve(
    alarm_id: UUID, body: ResolveIn, request: Request, who: Principal = require(*STAFF)
) -> dict[str, Any]:
    args = {"alarm_id": str(alarm_id), "actor": who.subject, "outcome": body.outcome}
    alarm: dict[str, Any] = await _change(request, p.RESOLVE, who.tenant, args)
    return alarm


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    who: Principal = require(*STAFF),
    last_event_id: str | None = Header(default=None),
) -> StreamingResponse:
    """Every alarm state change of the caller's tenant, live. Each event's ``id`` may be
    sent back as ``Last-Event-ID`` on reconnect to receive what was missed, once; when too
    much was missed, or the id came from another API process (a replica, or this one
    before a restart), an event ``resync`` says to reload the list."""
    hub = workers(request).hub
    try:
        after = int(last_event_id) if last_event_id else 0
    except ValueError:
        raise HTTPException(422, "Last-Event-ID must be a number") from None
    queue = hub.subscribe(who.tenant)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            backlog, complete = hub.since(who.tenant, after)
            sent = after
            if not complete:
                yield b"event: resync\ndata: {}\n\n"
                sent = 0  # the id may be another API process's: ours all count
            for event in backlog:
                sent = event.id
                yield b"id: %d\nevent: alarm\ndata: %s\n\n" % (event.id, event.data)
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is None:
                    return  # too slow: the client reconnects and catches up
                if item is RESYNC:  # the link to the broker was lost: reload the list
                    yield b"event: resync\ndata: {}\n\n"
                    sent = hub.latest()
                    continue
                if item.id <= sent:
                    continue
                sent = item.id
                yield b"id: %d\nevent: alarm\ndata: %s\n\n" % (item.id, item.data)
        finally:
            hub.unsubscribe(who.tenant, queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
