"""Moving a resident to another municipality (issue #19.2; docs/moves.md): the sending
municipality proposes, the receiving one accepts, either cancels before the date; both
list their moves. Each step is in the access logs of the municipalities it concerns."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import Principal, Role
from api.consented import caller_entry
from api.deps import TenantConn, require
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import move_queries as q
from gateway.adapters.postgres import registry_repo as repo
from gateway.domain.moves import (
    MoveRefused,
    MoveStatus,
    Side,
    check_proposal,
    devices_to_move,
    side,
)
from gateway.domain.payer import local_midnight

router = APIRouter(prefix="/api/v1", tags=["moves"])

DECIDERS = (Role.TENANT_ADMIN,)
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR)
TENANT_ID = r"^[a-z0-9][a-z0-9-]{1,39}$"


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_tenant: str = Field(pattern=TENANT_ID, description="The receiving municipality.")
    effective_date: date | None = Field(
        default=None, description="Local date (Europe/Stockholm): the move takes effect at "
        "its midnight. Give this or effective_at.")  # fmt: skip
    effective_at: datetime | None = Field(
        default=None, description="The instant the move takes effect (with a time zone)."
    )
    device_ids: list[str] | None = Field(
        default=None, max_length=100,
        description="The devices that go along; default: every device the resident holds "
        "except door locks (they stay on the door of the home).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _one_date(self) -> MoveIn:
        if (self.effective_date is None) == (self.effective_at is None):
            raise ValueError("give exactly one of effective_date and effective_at")
        if self.effective_at is not None and self.effective_at.tzinfo is None:
            raise ValueError("effective_at needs a time zone (e.g. Z or +01:00)")
        return self

    def at(self) -> datetime:
        if self.effective_date is not None:
            return local_midnight(self.effective_date)
        assert self.effective_at is not None
        return self.effective_at.astimezone(UTC)


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(min_length=1, max_length=64,
                     description="The resident's pseudonymous reference in the receiving "
                                 "municipality (its own, like any person's ref).")  # fmt: skip


class MoveOut(BaseModel):
    id: int
    side: Side = Field(description="outgoing: the caller's municipality sends the resident; "
                                   "incoming: it receives them.")  # fmt: skip
    from_tenant: str
    to_tenant: str
    effective_at: datetime
    device_ids: list[str]
    status: MoveStatus
    person_id: UUID | None = Field(
        default=None, description="The resident's person record on the caller's side (the "
        "receiving side's exists once accepted).")  # fmt: skip
    proposed_at: datetime
    proposed_by: str
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    applied_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None


def _out(row: dict[str, Any], tenant: str) -> MoveOut:
    on = side(tenant, row["from_tenant"], row["to_tenant"])
    assert on is not None  # row-level security shows a move to its two sides only
    person = row["person_id"] if on is Side.OUTGOING else row["to_person_id"]
    return MoveOut(
        id=row["id"], side=on, from_tenant=row["from_tenant"], to_tenant=row["to_tenant"],
        effective_at=row["effective_at"], device_ids=row["device_ids"],
        status=MoveStatus(row["status"]), person_id=person, proposed_at=row["proposed_at"],
        proposed_by=row["proposed_by"], accepted_at=row["accepted_at"],
        accepted_by=row["accepted_by"], applied_at=row["applied_at"],
        cancelled_at=row["cancelled_at"], cancelled_by=row["cancelled_by"],
    )  # fmt: skip


async def _log(
    conn: Any, who: Principal, owner: str, person: UUID | None, reason: str, request: Request
) -> None:
    """A step of a move, in ``owner``'s access log, in the request's transaction."""
    await access_log.append(conn, caller_entry(
        request, who, owner=owner, person_id=person, categories=["device_registry"],
        purpose="move", reason=reason))  # fmt: skip


async def _move(conn: Any, move_id: int) -> dict[str, Any]:
    row = await q.get(conn, move_id)
    if row is None:
        raise HTTPException(404, "move not found")
    return row


@router.post("/persons/{person_id}/moves", status_code=201, response_model=MoveOut)
async def propose_move(
    person_id: UUID, body: MoveIn, request: Request, conn: TenantConn,
    who: Principal = require(*DECIDERS),
) -> MoveOut:  # fmt: skip
    """Propose moving a resident (and their devices) to another municipality on a date."""
    await repo.get_person(conn, person_id)
    at = body.at()
    try:
        check_proposal(from_tenant=who.tenant, to_tenant=body.to_tenant,
                       to_kind=await q.tenant_kind(conn, body.to_tenant), effective_at=at,
                       now=datetime.now(UTC))  # fmt: skip
        devices = devices_to_move(await q.held_devices(conn, person_id), body.device_ids)
    except MoveRefused as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        async with conn.transaction():
            row = await q.propose(conn, who.tenant, person_id, body.to_tenant, at, devices,
                                  who.subject)  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise HTTPException(409, "a move of this resident is already under way; cancel it "
                                 "first") from None  # fmt: skip
    await _log(conn, who, who.tenant, person_id,
               f"move {row['id']} to {body.to_tenant} proposed", request)  # fmt: skip
    return _out(row, who.tenant)


@router.get("/moves", response_model=list[MoveOut])
async def list_moves(
    conn: TenantConn, who: Principal = require(*READERS),
    status: Annotated[MoveStatus | None, Query()] = None,
) -> list[MoveOut]:  # fmt: skip
    """The moves out of and into the caller's municipality."""
    rows = await q.list_moves(conn, status.value if status else None)
    return [_out(r, who.tenant) for r in rows]


@router.get("/moves/{move_id}", response_model=MoveOut)
async def get_move(move_id: int, conn: TenantConn, who: Principal = require(*READERS)) -> MoveOut:
    return _out(await _move(conn, move_id), who.tenant)


@router.post("/moves/{move_id}/accept", response_model=MoveOut)
async def accept_move(
    move_id: int, body: AcceptIn, request: Request, conn: TenantConn,
    who: Principal = require(*DECIDERS),
) -> MoveOut:  # fmt: skip
    """The receiving municipality accepts, before the date: the resident gets a person
    record here, and from the date the devices' data is this municipality's."""
    row = await _move(conn, move_id)
    if side(who.tenant, row["from_tenant"], row["to_tenant"]) is not Side.INCOMING:
        raise HTTPException(403, "only the receiving municipality accepts a move")
    try:
        async with conn.transaction():
            person = await q.accept(conn, move_id, body.ref, who.subject)
    except psycopg.errors.UniqueViolation:
        raise HTTPException(409, f"a person with ref {body.ref!r} exists already") from None
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise HTTPException(409, exc.diag.message_primary or "the move cannot be accepted"
                            ) from None  # fmt: skip
    except psycopg.errors.NoDataFound:
        raise HTTPException(404, "move not found") from None
    await _log(conn, who, row["from_tenant"], row["person_id"],
               f"move {move_id} accepted by {who.tenant}", request)  # fmt: skip
    await _log(conn, who, who.tenant, person,
               f"move {move_id} from {row['from_tenant']} accepted", request)  # fmt: skip
    return _out(await _move(conn, move_id), who.tenant)


@router.post("/moves/{move_id}/cancel", response_model=MoveOut)
async def cancel_move(
    move_id: int, request: Request, conn: TenantConn, who: Principal = require(*DECIDERS)
) -> MoveOut:
    """Either municipality cancels a move before its date; an accepted one is undone (the
    devices stay with the sending municipality's assignment)."""
    row = await _move(conn, move_id)
    try:
        async with conn.transaction():
            await q.cancel(conn, move_id, who.subject)
    except psycopg.errors.ObjectNotInPrerequisiteState as exc:
        raise HTTPException(409, exc.diag.message_primary or "the move cannot be cancelled"
                            ) from None  # fmt: skip
    except psycopg.errors.NoDataFound:
        raise HTTPException(404, "move not found") from None
    await _log(conn, who, row["from_tenant"], row["person_id"],
               f"move {move_id} cancelled by {who.tenant}", request)  # fmt: skip
    if row["to_person_id"] is not None:
        await _log(conn, who, row["to_tenant"], row["to_person_id"],
                   f"move {move_id} cancelled by {who.tenant}", request)  # fmt: skip
    return _out(await _move(conn, move_id), who.tenant)
