"""A temporary stay in another municipality (issue #19.3; docs/stays.md).

The home municipality proposes an agreement with a host, the host's tenant admin accepts
it, either ends it; the home records a resident's stay in the host under an accepted
agreement and may cut it short. The host lists its guests (current and upcoming, by
pseudonymous reference and home municipality) and, while a stay lasts, reads that
guest's alarms and positions inside the stay, nothing else. Every read of a guest's data
is access-logged: the entry names the host as the reader and the home as the owner, so
both see it; the home also sees it in the person's stays (``host_reads``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api import consented
from api.auth import Principal, Role
from api.deps import TenantConn, require
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres import stay_queries as q
from gateway.domain.stays import (
    AgreementState,
    Stay,
    StayError,
    agreement_state,
    check_window,
    cut_short,
    overlaps,
    parse_bound,
)

router = APIRouter(prefix="/api/v1", tags=["stays"])

ADMINS = (Role.TENANT_ADMIN,)
RECORDERS = (Role.TENANT_ADMIN, Role.OPERATOR)
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR)
HOST_STAFF = (Role.TENANT_ADMIN, Role.OPERATOR)
#: the purpose of the host's reads in the access log
PURPOSE = "guest alarm handling"


class AgreementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host_tenant_id: str = Field(min_length=2, max_length=40,
                                description="The municipality residents will stay in.")  # fmt: skip


class AgreementOut(BaseModel):
    id: UUID
    home_tenant_id: str
    host_tenant_id: str
    side: Literal["home", "host"] = Field(description="The caller's side of it.")
    state: AgreementState
    proposed_at: datetime
    proposed_by: str
    accepted_at: datetime | None
    accepted_by: str | None
    ended_at: datetime | None
    ended_by: str | None
    ended_tenant_id: str | None


class StayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host_tenant_id: str = Field(min_length=2, max_length=40)
    from_: str = Field(alias="from", min_length=10, max_length=40,
                       description="A local date (Europe/Stockholm: from its midnight) or "
                       "a date-time with an offset.")  # fmt: skip
    to: str = Field(min_length=10, max_length=40,
                    description="The last local date of the stay (it ends at midnight after "
                    "it) or a date-time with an offset (exclusive).")  # fmt: skip


class StayOut(BaseModel):
    id: UUID
    person_id: UUID
    host_tenant_id: str
    agreement_id: UUID
    starts_at: datetime
    ends_at: datetime
    status: Literal["upcoming", "current", "ended", "cancelled"]
    recorded_at: datetime
    recorded_by: str
    cut_at: datetime | None
    cut_by: str | None


class HostRead(BaseModel):
    at: datetime
    actor: str
    actor_tenant_id: str
    categories: list[str]
    request: str


class PersonStays(BaseModel):
    person_id: UUID
    stays: list[StayOut]
    host_reads: list[HostRead] = Field(description="The hosts' reads of this resident's data.")


class EndStayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = Field(default=None,
                                     description="When the stay ends; default now.")  # fmt: skip


class GuestOut(BaseModel):
    stay_id: UUID
    home_tenant_id: str
    home_name: str
    person_ref: str
    starts_at: datetime
    ends_at: datetime
    status: Literal["upcoming", "current"]


class GuestAlarm(BaseModel):
    alarm_id: UUID
    home_tenant_id: str
    kind: str
    severity: str
    state: str
    device_id: str
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


class GuestPosition(BaseModel):
    ts: datetime
    lat: float
    lon: float
    accuracy_m: float | None


class GuestAlarms(BaseModel):
    stay_id: UUID
    person_ref: str
    home_tenant_id: str
    alarms: list[GuestAlarm]


class GuestPositions(BaseModel):
    stay_id: UUID
    person_ref: str
    home_tenant_id: str
    positions: list[GuestPosition]


def _agreement(row: dict[str, Any], tenant: str) -> AgreementOut:
    return AgreementOut(
        id=row["id"], home_tenant_id=row["home_tenant"], host_tenant_id=row["host_tenant"],
        side="home" if row["home_tenant"] == tenant else "host",
        state=agreement_state(row["accepted_at"], row["ended_at"]),
        proposed_at=row["proposed_at"], proposed_by=row["proposed_by"],
        accepted_at=row["accepted_at"], accepted_by=row["accepted_by"],
        ended_at=row["ended_at"], ended_by=row["ended_by"],
        ended_tenant_id=row["ended_tenant"],
    )  # fmt: skip


def _stay(row: dict[str, Any]) -> Stay:
    return Stay(row["id"], row["tenant_id"], row["person_id"], row["host_tenant"],
                row["starts_at"], row["ends_at"])  # fmt: skip


def _stay_out(row: dict[str, Any], now: datetime) -> StayOut:
    return StayOut(
        id=row["id"], person_id=row["person_id"], host_tenant_id=row["host_tenant"],
        agreement_id=row["agreement_id"], starts_at=row["starts_at"], ends_at=row["ends_at"],
        status=_stay(row).status(now),
        recorded_at=row["recorded_at"], recorded_by=row["recorded_by"],
        cut_at=row["cut_at"], cut_by=row["cut_by"],
    )  # fmt: skip


# --- agreements --------------------------------------------------------------------------


@router.post("/stay-agreements", status_code=201, response_model=AgreementOut)
async def propose_agreement(
    body: AgreementIn, conn: TenantConn, who: Principal = require(*ADMINS)
) -> AgreementOut:
    """The home municipality proposes; nothing is routed until the host accepts."""
    try:
        async with conn.transaction():
            agreement_id = await q.propose(conn, body.host_tenant_id, who.subject)
    except psycopg.errors.NoDataFound:
        raise HTTPException(422, f"no municipality {body.host_tenant_id!r}") from None
    except psycopg.errors.CheckViolation:
        raise HTTPException(422, "an agreement is with another municipality") from None
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise HTTPException(409, "only a municipality proposes a stay agreement") from None
    except psycopg.errors.UniqueViolation:
        raise HTTPException(409, f"an agreement with {body.host_tenant_id} is already "
                                 "proposed or in force") from None  # fmt: skip
    row = await q.agreement(conn, agreement_id)
    assert row is not None
    return _agreement(row, who.tenant)


@router.get("/stay-agreements", response_model=list[AgreementOut])
async def list_agreements(conn: TenantConn, who: Principal = require(*READERS)) -> list[Any]:
    """Both sides: the agreements the caller's municipality proposed and those it hosts."""
    return [_agreement(row, who.tenant) for row in await q.agreements(conn)]


async def _visible_agreement(conn: TenantConn, agreement_id: UUID) -> dict[str, Any]:
    row = await q.agreement(conn, agreement_id)
    if row is None:
        raise HTTPException(404, "no such stay agreement")
    return row


@router.post("/stay-agreements/{agreement_id}/accept", response_model=AgreementOut)
async def accept_agreement(
    agreement_id: UUID, conn: TenantConn, who: Principal = require(*ADMINS)
) -> AgreementOut:
    """The host's tenant admin accepts: from now, stays under it may be recorded."""
    row = await _visible_agreement(conn, agreement_id)
    if row["host_tenant"] != who.tenant:
        raise HTTPException(403, "only the host municipality's tenant admin accepts")
    if not await q.accept(conn, agreement_id, who.subject):
        state = agreement_state(row["accepted_at"], row["ended_at"])
        raise HTTPException(409, f"the agreement is {state.value}, not proposed")
    again = await q.agreement(conn, agreement_id)
    assert again is not None
    return _agreement(again, who.tenant)


@router.post("/stay-agreements/{agreement_id}/end", response_model=AgreementOut)
async def end_agreement(
    agreement_id: UUID, conn: TenantConn, who: Principal = require(*ADMINS)
) -> AgreementOut:
    """Either side ends it (or withdraws a proposal); its stays that have not ended end
    now (an upcoming one is cancelled)."""
    await _visible_agreement(conn, agreement_id)
    if not await q.end(conn, agreement_id, who.subject):
        raise HTTPException(409, "the agreement has already ended")
    again = await q.agreement(conn, agreement_id)
    assert again is not None
    return _agreement(again, who.tenant)


# --- stays (the home municipality) -----------------------------------------------------


@router.post("/persons/{person_id}/stays", status_code=201, response_model=StayOut)
async def record_stay(
    person_id: UUID, body: StayIn, conn: TenantConn, who: Principal = require(*RECORDERS)
) -> StayOut:
    """A resident's stay in another municipality, under an agreement it accepted."""
    await repo.get_person(conn, person_id)
    now = datetime.now(UTC)
    try:
        starts_at = parse_bound(body.from_, end=False)
        ends_at = parse_bound(body.to, end=True)
        check_window(starts_at, ends_at, now)
    except StayError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    if body.host_tenant_id == who.tenant:
        raise HTTPException(422, "a stay is in another municipality")
    agreement = await q.agreement_in_force(conn, who.tenant, body.host_tenant_id)
    if agreement is None:
        raise HTTPException(409, f"no agreement with {body.host_tenant_id} accepted by it and "
                                 "in force")  # fmt: skip
    await q.lock_person(conn, person_id)
    existing = [_stay(r) for r in await q.person_stays(conn, person_id)]
    clash = overlaps(existing, starts_at, ends_at)
    if clash is not None:
        raise HTTPException(409, f"the person already has a stay then ({clash.id})")
    try:
        async with conn.transaction():
            row = await q.add_stay(conn, who.tenant, person_id, body.host_tenant_id,
                                   agreement["id"], starts_at, ends_at, who.subject)  # fmt: skip
    except psycopg.errors.InsufficientPrivilege:  # the agreement ended meanwhile (row policy)
        raise HTTPException(409, f"no agreement with {body.host_tenant_id} in force") from None
    return _stay_out(row, now)


@router.get("/persons/{person_id}/stays", response_model=PersonStays)
async def person_stays(
    person_id: UUID, request: Request, conn: TenantConn, who: Principal = require(*READERS)
) -> PersonStays:
    """The resident's stays, and which host read their data (the access log). The read is
    itself written to the access log (#21.3)."""
    await repo.get_person(conn, person_id)
    await consented.log_read(request, who, consented.ReadRecord(
        owner=who.tenant, person_id=person_id, categories=["stay"], outcome="allowed",
        reason="by role"))  # fmt: skip
    now = datetime.now(UTC)
    reads = [
        HostRead(at=r["at"], actor=r["actor"], actor_tenant_id=r["actor_tenant"],
                 categories=r["categories"], request=r["request"])
        for r in await q.host_reads(conn, person_id)
    ]  # fmt: skip
    stays = [_stay_out(r, now) for r in await q.person_stays(conn, person_id)]
    return PersonStays(person_id=person_id, stays=stays, host_reads=reads)


@router.post("/stays/{stay_id}/end", response_model=StayOut)
async def end_stay(
    stay_id: UUID, conn: TenantConn, body: EndStayIn | None = None,
    who: Principal = require(*RECORDERS),
) -> StayOut:  # fmt: skip
    """Cut a stay short: it ends at ``at`` (default now; not in the past, not later than
    it would have). An alarm raised during it still reaches the host until resolved."""
    row = await q.stay(conn, stay_id)
    if row is None:
        raise HTTPException(404, "no such stay")
    now = datetime.now(UTC)
    stay = _stay(row)
    if stay.ends_at <= now:
        raise HTTPException(409, "the stay has already ended")
    at = body.at if body is not None and body.at is not None else now
    if at < now - timedelta(seconds=60):
        raise HTTPException(422, "at must not be in the past")
    if at >= stay.ends_at:
        raise HTTPException(422, "a stay is cut short, not made longer")
    again = await q.cut(conn, stay_id, cut_short(stay, at), who.subject)
    return _stay_out(again, now)


# --- the host ----------------------------------------------------------------------------


async def _log(request: Request, who: Principal, row: dict[str, Any], categories: list[str],
               reason: str) -> None:  # fmt: skip
    await consented.log_read(request, who, consented.ReadRecord(
        owner=row["home_tenant"], person_id=row["person_id"], categories=categories,
        purpose=PURPOSE, outcome="allowed", reason=reason,
    ))  # fmt: skip


async def _current(conn: TenantConn, stay_id: UUID) -> dict[str, Any]:
    row = await q.guest_stay(conn, stay_id)
    if row is None:  # not hosted by the caller, or not now: nothing to tell apart
        raise HTTPException(404, "no current guest with this stay")
    return row


@router.get("/guests", response_model=list[GuestOut])
async def guests(
    request: Request, conn: TenantConn, who: Principal = require(*HOST_STAFF)
) -> list[GuestOut]:
    """Residents of other municipalities staying here now or soon: the stay, the home
    municipality and the pseudonymous reference; nothing else of the person."""
    now = datetime.now(UTC)
    rows = await q.guests(conn)
    for row in rows:
        await _log(request, who, row, ["stay"], f"stay {row['stay_id']} hosted")
    return [
        GuestOut(stay_id=r["stay_id"], home_tenant_id=r["home_tenant"],
                 home_name=r["home_name"], person_ref=r["person_ref"],
                 starts_at=r["starts_at"], ends_at=r["ends_at"],
                 status="current" if r["starts_at"] <= now else "upcoming")
        for r in rows
    ]  # fmt: skip


@router.get("/guests/{stay_id}/alarms", response_model=GuestAlarms)
async def guest_alarms(
    stay_id: UUID, request: Request, conn: TenantConn,
    limit: int = Query(default=200, ge=1, le=1000), who: Principal = require(*HOST_STAFF),
) -> GuestAlarms:  # fmt: skip
    """The guest's alarms raised during the stay (while it lasts), newest first."""
    stay = await _current(conn, stay_id)
    rows = await q.guest_alarms(conn, stay_id, limit)
    await _log(request, who, stay, ["alarms"], f"stay {stay_id} current")
    alarms = []
    for r in rows:
        lat, lon, acc = r.pop("lat"), r.pop("lon"), r.pop("accuracy_m")
        r["position"] = {"lat": lat, "lon": lon, "accuracy_m": acc} if lat is not None else None
        r["condition"] = {None: None, True: "active", False: "cleared"}[r["condition"]]
        alarms.append(GuestAlarm(alarm_id=r.pop("id"), home_tenant_id=stay["home_tenant"], **r))
    return GuestAlarms(stay_id=stay_id, person_ref=stay["person_ref"],
                       home_tenant_id=stay["home_tenant"], alarms=alarms)  # fmt: skip


@router.get("/guests/{stay_id}/positions", response_model=GuestPositions)
async def guest_positions(
    stay_id: UUID, request: Request, conn: TenantConn,
    since: AwareDatetime | None = Query(default=None,
                                        description="From when (never before the stay)."),
    limit: int = Query(default=500, ge=1, le=5000), who: Principal = require(*HOST_STAFF),
) -> GuestPositions:  # fmt: skip
    """The guest's positions during the stay (while it lasts), newest first."""
    stay = await _current(conn, stay_id)
    rows = await q.guest_positions(conn, stay_id, since, limit)
    await _log(request, who, stay, ["position"], f"stay {stay_id} current")
    return GuestPositions(stay_id=stay_id, person_ref=stay["person_ref"],
                          home_tenant_id=stay["home_tenant"],
                          positions=[GuestPosition(**r) for r in rows])  # fmt: skip
