"""Digital supervision and passive alarms (issue #20; docs/supervision.md).

A person's decisions for each supervision service with the person's (and a cohabitant's)
consent, the night supervision plan, passive-alarm rules, and the night view (tonight's
planned checks, their results and the alarms they raised). Everything runs in the
caller's tenant transaction: another tenant's person, decision, plan or rule is not found
(404). Every change and every read of a person's supervision data is in the access log,
in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from api.auth import Principal, Role
from api.consented import caller_entry
from api.deps import TenantConn, require
from api.local_time import LocalTime
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import supervision_queries as q
from gateway.domain.passive_alarms import TIMED_KINDS, PassiveKind
from gateway.domain.supervision import (
    STOCKHOLM,
    Plan,
    Seen,
    check_instants,
    local_instant,
    parse_check_time,
)
from gateway.domain.supervision_consent import Decision, Service

router = APIRouter(prefix="/api/v1", tags=["digital supervision"])

ADMINS = (Role.TENANT_ADMIN,)
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR)
#: the access log's category of supervision data (decisions, plans, checks)
CATEGORY = "supervision"
#: the alarm kinds of issue #20, shown in the night view
NIGHT_KINDS = ["supervision_not_ok", "supervision_failed", "door_opened_at_night",
               "out_of_bed", "no_movement", "floor_mat"]  # fmt: skip

PersonId = Annotated[UUID, Path(description="The person's id.")]


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (KeyError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: Service
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")
    valid_to: AwareDatetime | None = Field(default=None, description="Null: until withdrawn.")
    person_consent_at: AwareDatetime = Field(description="When the person consented.")
    has_cohabitant: bool = Field(default=False, description="The person lives with someone.")
    cohabitant_consent_at: AwareDatetime | None = Field(
        default=None, description="When the cohabitant consented (needed when has_cohabitant)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DecisionIn:
        if self.cohabitant_consent_at is not None and not self.has_cohabitant:
            raise ValueError("cohabitant_consent_at given without has_cohabitant")
        return self


class DecisionOut(BaseModel):
    id: UUID
    person_id: UUID
    service: Service
    valid_from: datetime
    valid_to: datetime | None
    person_consent_at: datetime
    has_cohabitant: bool
    cohabitant_consent_at: datetime | None
    recorded_at: datetime
    recorded_by: str
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    withdrawn_reason: str | None
    status: str = Field(description="in_force, withdrawn, awaiting_cohabitant_consent, "
                        "not_yet_valid or expired.")  # fmt: skip


class Created(BaseModel):
    id: UUID


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Literal["person", "cohabitant", "municipality"] = Field(
        description="Whose withdrawal it is (the person's or the cohabitant's consent, or "
        "the municipality's decision)."
    )
    reason: str | None = Field(default=None, max_length=500)


class CohabitantConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime = Field(description="When the cohabitant consented.")


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check_times: list[str] = Field(min_length=1, max_length=48,
                                   examples=[["22:00", "01:00", "04:00"]],
                                   description="Local times, HH:MM or HH:MM:SS.")  # fmt: skip
    timezone: str = Field(default=STOCKHOLM, max_length=64)
    seen: Seen = Field(description="in_bed, motion (within motion_minutes) or door_closed.")
    motion_minutes: int | None = Field(default=None, ge=1, le=240)
    retry_after_s: int = Field(default=600, ge=1, le=7200)
    team: str = Field(min_length=1, max_length=64, description="Who acts (a recipient group).")

    @field_validator("check_times")
    @classmethod
    def _times(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_check_time(text)  # ValueError -> 422 naming it
        if len(set(value)) != len(value):
            raise ValueError("check_times has a time twice")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="after")
    def _motion(self) -> PlanIn:
        if (self.seen is Seen.MOTION) != (self.motion_minutes is not None):
            raise ValueError("motion_minutes is given exactly when seen is 'motion'")
        return self


class PlanOut(BaseModel):
    id: UUID
    person_id: UUID
    check_times: list[str]
    timezone: str
    seen: Seen
    motion_minutes: int | None
    retry_after_s: int
    team: str
    created_at: datetime
    created_by: str
    ended_at: datetime | None


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: PassiveKind
    window_start: str = Field(examples=["22:00"], description="Local time HH:MM.")
    window_end: str = Field(examples=["07:00"], description="Local time HH:MM (may be "
                            "earlier than window_start: the window crosses midnight).")  # fmt: skip
    minutes: int | None = Field(default=None, ge=1, le=1440,
                                description="out_of_bed: back within; no_movement: "
                                "no movement for.")  # fmt: skip
    timezone: str = Field(default=STOCKHOLM, max_length=64)

    @field_validator("window_start", "window_end")
    @classmethod
    def _time(cls, value: str) -> str:
        parse_check_time(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return _known_zone(value)

    @model_validator(mode="after")
    def _minutes(self) -> RuleIn:
        if (self.kind in TIMED_KINDS) != (self.minutes is not None):
            raise ValueError("minutes is given exactly for out_of_bed and no_movement")
        return self


class RuleOut(BaseModel):
    id: UUID
    person_id: UUID
    kind: PassiveKind
    window_start: LocalTime
    window_end: LocalTime
    minutes: int | None
    timezone: str
    created_at: datetime
    created_by: str
    ended_at: datetime | None


class NightCheck(BaseModel):
    planned_at: datetime
    local_time: str
    status: str = Field(description="planned, ok, retried, not_ok or failed (the latest "
                        "attempt's result; planned: not made yet).")  # fmt: skip
    attempts: list[dict[str, Any]]
    alarm_id: UUID | None


class NightPerson(BaseModel):
    plan_id: UUID
    person_id: UUID
    person_ref: str
    seen: Seen
    team: str
    checks: list[NightCheck]


class NightOut(BaseModel):
    night: date
    starts_at: datetime
    ends_at: datetime
    persons: list[NightPerson]
    alarms: list[dict[str, Any]]


def _now() -> datetime:
    return datetime.now(UTC)


async def _log(
    conn: Any, who: Principal, request: Request, person: UUID | None, reason: str
) -> None:
    await access_log.append(conn, caller_entry(
        request, who, owner=who.tenant, person_id=person, categories=[CATEGORY],
        purpose="digital supervision", reason=reason))  # fmt: skip


async def _person(conn: Any, person_id: UUID) -> None:
    if await (await conn.execute(q.PERSON_EXISTS, (person_id,))).fetchone() is None:
        raise HTTPException(404, "person not found")


def _decision_out(row: Any, now: datetime) -> dict[str, Any]:
    (did, person, service, valid_from, valid_to, consent_at, cohabitant, cohabitant_at,
     recorded_at, recorded_by, withdrawn_at, withdrawn_by, withdrawn_reason) = row  # fmt: skip
    decision = Decision(did, "", person, Service(service), valid_from, valid_to, consent_at,
                        cohabitant, cohabitant_at, withdrawn_at)  # fmt: skip
    return {
        "id": did, "person_id": person, "service": service, "valid_from": valid_from,
        "valid_to": valid_to, "person_consent_at": consent_at, "has_cohabitant": cohabitant,
        "cohabitant_consent_at": cohabitant_at, "recorded_at": recorded_at,
        "recorded_by": recorded_by, "withdrawn_at": withdrawn_at,
        "withdrawn_by": withdrawn_by, "withdrawn_reason": withdrawn_reason,
        "status": decision.status(now),
    }  # fmt: skip


# --- decisions and consents ---------------------------------------------------------------


@router.post("/persons/{person_id}/supervision/decisions", status_code=201,
             response_model=Created)  # fmt: skip
async def record_decision(
    person_id: PersonId, body: DecisionIn, request: Request, conn: TenantConn,
    who: Principal = require(*ADMINS),
) -> Created:  # fmt: skip
    """Record a decision for one supervision service with the person's documented consent
    (and a cohabitant's where the person lives with someone). Workers apply it within
    seconds (LISTEN wg_supervision)."""
    await _person(conn, person_id)
    valid_from = body.valid_from or _now()
    if body.valid_to is not None and body.valid_to <= valid_from:
        raise HTTPException(422, "valid_to must be after valid_from")
    row = await (await conn.execute(q.INSERT_DECISION, (
        person_id, body.service.value, valid_from, body.valid_to, body.person_consent_at,
        body.has_cohabitant, body.cohabitant_consent_at, who.subject,
    ))).fetchone()  # fmt: skip
    assert row is not None
    await _log(conn, who, request, person_id,
               f"supervision decision {row[0]} ({body.service.value}) recorded")  # fmt: skip
    return Created(id=row[0])


@router.get("/persons/{person_id}/supervision/decisions", response_model=list[DecisionOut])
async def list_decisions(
    person_id: PersonId, request: Request, conn: TenantConn, who: Principal = require(*READERS)
) -> list[dict[str, Any]]:
    """The person's decisions, oldest first, each with its status now. Access-logged."""
    await _person(conn, person_id)
    rows = await (await conn.execute(q.LIST_DECISIONS, (person_id,))).fetchall()
    await _log(conn, who, request, person_id, f"supervision decisions: {len(rows)} rows")
    now = _now()
    return [_decision_out(r, now) for r in rows]


async def _decision(conn: Any, decision_id: UUID) -> Any:
    row = await (await conn.execute(q.GET_DECISION, (decision_id,))).fetchone()
    if row is None:
        raise HTTPException(404, "decision not found")
    return row


@router.post("/supervision/decisions/{decision_id}/withdraw", response_model=DecisionOut)
async def withdraw_decision(
    decision_id: UUID, body: WithdrawIn, request: Request, conn: TenantConn,
    who: Principal = require(*ADMINS),
) -> dict[str, Any]:  # fmt: skip
    """Withdraw a decision (a consent withdrawn by the person or the cohabitant, or the
    decision ended): from then on the person's data for that service is refused at ingest
    and its rules stop, within seconds. Already withdrawn: 409."""
    await _decision(conn, decision_id)
    reason = f"{body.by}: {body.reason}" if body.reason else body.by
    row = await (await conn.execute(
        q.WITHDRAW_DECISION, (who.subject, reason, decision_id))).fetchone()  # fmt: skip
    if row is None:
        raise HTTPException(409, "decision already withdrawn")
    found = await _decision(conn, decision_id)
    await _log(conn, who, request, found[1], f"supervision decision {decision_id} withdrawn "
               f"({body.by})")  # fmt: skip
    return _decision_out(found, _now())


@router.post("/supervision/decisions/{decision_id}/cohabitant-consent",
             response_model=DecisionOut)  # fmt: skip
async def cohabitant_consent(
    decision_id: UUID, body: CohabitantConsentIn, request: Request, conn: TenantConn,
    who: Principal = require(*ADMINS),
) -> dict[str, Any]:  # fmt: skip
    """Document the cohabitant's consent to a decision awaiting it. Not awaiting it (no
    cohabitant, given already, withdrawn): 409."""
    await _decision(conn, decision_id)
    row = await (await conn.execute(
        q.COHABITANT_CONSENT, (body.at, decision_id))).fetchone()  # fmt: skip
    if row is None:
        raise HTTPException(409, "the decision is not awaiting a cohabitant's consent")
    found = await _decision(conn, decision_id)
    await _log(conn, who, request, found[1],
               f"supervision decision {decision_id}: cohabitant's consent")  # fmt: skip
    return _decision_out(found, _now())


# --- plans ---------------------------------------------------------------------------------


def _plan_out(row: Any) -> dict[str, Any]:
    (pid, person, times, zone, seen, motion, retry, team, created_at, created_by,
     ended_at) = row  # fmt: skip
    return {"id": pid, "person_id": person, "check_times": list(times), "timezone": zone,
            "seen": seen, "motion_minutes": motion, "retry_after_s": retry, "team": team,
            "created_at": created_at, "created_by": created_by, "ended_at": ended_at}  # fmt: skip


@router.put("/persons/{person_id}/supervision/plan", status_code=201, response_model=Created)
async def set_plan(
    person_id: PersonId, body: PlanIn, request: Request, conn: TenantConn,
    who: Principal = require(*ADMINS),
) -> Created:  # fmt: skip
    """The person's night supervision plan (replaces the one in force, which ends now).
    Checks run only while a night_supervision decision with consent is in force; without
    one each check is ``failed`` (make a physical visit)."""
    await _person(conn, person_id)
    await conn.execute(q.END_OPEN_PLAN, (who.subject, person_id))
    row = await (await conn.execute(q.INSERT_PLAN, (
        person_id, body.check_times, body.timezone, body.seen.value, body.motion_minutes,
        body.retry_after_s, body.team, who.subject,
    ))).fetchone()  # fmt: skip
    assert row is not None
    await _log(conn, who, request, person_id, f"supervision plan {row[0]} set")
    return Created(id=row[0])


@router.get("/persons/{person_id}/supervision/plans", response_model=list[PlanOut])
async def list_plans(
    person_id: PersonId, request: Request, conn: TenantConn, who: Principal = require(*READERS)
) -> list[dict[str, Any]]:
    """The person's plans, oldest first (the one in force has ``ended_at`` null)."""
    await _person(conn, person_id)
    rows = await (await conn.execute(q.LIST_PLANS, (person_id,))).fetchall()
    await _log(conn, who, request, person_id, f"supervision plans: {len(rows)} rows")
    return [_plan_out(r) for r in rows]


@router.post("/supervision/plans/{plan_id}/end", status_code=204)
async def end_plan(
    plan_id: UUID, request: Request, conn: TenantConn, who: Principal = require(*ADMINS)
) -> None:
    """End a plan now: no further checks. Not found or ended already: 404."""
    row = await (await conn.execute(q.END_PLAN, (who.subject, plan_id))).fetchone()
    if row is None:
        raise HTTPException(404, "no plan in force with that id")
    await _log(conn, who, request, None, f"supervision plan {plan_id} ended")


# --- passive-alarm rules ---------------------------------------------------------------------


def _rule_out(row: Any) -> dict[str, Any]:
    rid, person, kind, start, end, minutes, zone, created_at, created_by, ended_at = row
    return {"id": rid, "person_id": person, "kind": kind, "window_start": start,
            "window_end": end, "minutes": minutes, "timezone": zone,
            "created_at": created_at, "created_by": created_by, "ended_at": ended_at}  # fmt: skip


@router.post("/persons/{person_id}/passive-rules", status_code=201, response_model=Created)
async def add_rule(
    person_id: PersonId, body: RuleIn, request: Request, conn: TenantConn,
    who: Principal = require(*ADMINS),
) -> Created:  # fmt: skip
    """A passive-alarm rule for the person within a local time window. It runs only while
    a passive_alarms decision with consent is in force."""
    await _person(conn, person_id)
    row = await (await conn.execute(q.INSERT_RULE, (
        person_id, body.kind.value, parse_check_time(body.window_start),
        parse_check_time(body.window_end), body.minutes, body.timezone, who.subject,
    ))).fetchone()  # fmt: skip
    assert row is not None
    await _log(conn, who, request, person_id, f"passive rule {row[0]} ({body.kind.value}) added")
    return Created(id=row[0])


@router.get("/persons/{person_id}/passive-rules", response_model=list[RuleOut])
async def list_rules(
    person_id: PersonId, request: Request, conn: TenantConn, who: Principal = require(*READERS)
) -> list[dict[str, Any]]:
    await _person(conn, person_id)
    rows = await (await conn.execute(q.LIST_RULES, (person_id,))).fetchall()
    await _log(conn, who, request, person_id, f"passive rules: {len(rows)} rows")
    return [_rule_out(r) for r in rows]


@router.post("/passive-rules/{rule_id}/end", status_code=204)
async def end_rule(
    rule_id: UUID, request: Request, conn: TenantConn, who: Principal = require(*ADMINS)
) -> None:
    row = await (await conn.execute(q.END_RULE, (who.subject, rule_id))).fetchone()
    if row is None:
        raise HTTPException(404, "no rule in force with that id")
    await _log(conn, who, request, None, f"passive rule {rule_id} ended")


# --- the night view -----------------------------------------------------------------------


@router.get("/supervision/night", response_model=NightOut)
async def night_view(
    request: Request, conn: TenantConn,
    night: date | None = Query(default=None, description="The local date the night begins "
                               "(noon to noon, Europe/Stockholm); default: tonight."),
    who: Principal = require(*READERS),
) -> dict[str, Any]:  # fmt: skip
    """Tonight's planned checks per person with their results as they happen (ok,
    retried, not_ok, failed; planned while not made), and the alarms of digital
    supervision and passive rules raised in the night. Access-logged."""
    zone = ZoneInfo(STOCKHOLM)
    if night is None:
        local = _now().astimezone(zone)
        night = local.date() if local.time() >= time(12) else local.date() - timedelta(days=1)
    start = local_instant(night, time(12), zone)
    end = local_instant(night + timedelta(days=1), time(12), zone)
    plans = await (await conn.execute(q.NIGHT_PLANS, (start,))).fetchall()
    checks = await (await conn.execute(q.NIGHT_CHECKS, (start, end))).fetchall()
    by_plan: dict[UUID, dict[datetime, list[Any]]] = {}
    for c in checks:
        by_plan.setdefault(c[0], {}).setdefault(c[2], []).append(c)
    persons: list[dict[str, Any]] = []
    for pid, person, ref, times, tz, seen, motion, retry, team in plans:
        plan = Plan(pid, who.tenant, person, tuple(parse_check_time(t) for t in times),
                    Seen(seen), timedelta(seconds=retry), team, motion, tz)  # fmt: skip
        made = by_plan.get(pid, {})
        planned = {at: local_time for at, local_time in check_instants(plan, start, end)}
        for at, attempts in made.items():
            planned.setdefault(at, attempts[0][3])
        rows = []
        for at in sorted(planned):
            attempts = made.get(at, [])
            rows.append({
                "planned_at": at, "local_time": planned[at],
                "status": attempts[-1][5] if attempts else "planned",
                "attempts": [{"attempt": a[4], "result": a[5], "evaluated_at": a[6],
                              "seen": a[7], "reason": a[8]} for a in attempts],
                "alarm_id": next((a[9] for a in reversed(attempts) if a[9]), None),
            })  # fmt: skip
        persons.append({"plan_id": pid, "person_id": person, "person_ref": ref, "seen": seen,
                        "team": team, "checks": rows})  # fmt: skip
    alarms = await (await conn.execute(q.NIGHT_ALARMS, (NIGHT_KINDS, start, end))).fetchall()
    await _log(conn, who, request, None,
               f"night view {night}: {len(persons)} plans, {len(checks)} checks")  # fmt: skip
    return {
        "night": night, "starts_at": start, "ends_at": end, "persons": persons,
        "alarms": [{"id": a[0], "person_id": a[1], "kind": a[2], "state": a[3],
                    "raised_at": a[4], "severity": a[5]} for a in alarms],
    }  # fmt: skip
