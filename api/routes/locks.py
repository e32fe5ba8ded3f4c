"""Keyless locks: remote unlock by an operator, and the staff, keys and planned visits
the access rule is judged against (docs/locks.md).

``POST /api/v1/devices/{id}/unlock`` judges the rule first (from the gateway's memory),
writes the decision to the access log (committed before anything is sent), and only
if allowed sends an ``unlock`` command with a short ``expires_at``, waits for the lock's
reply and logs the result:

======  ====================  ==============================================================
status  ``outcome``           meaning
======  ====================  ==============================================================
200     ``done``              the lock replied that it unlocked
403     (refused)             the rule refused; ``reason`` says why; nothing was sent
409     ``refused_by_device`` the lock replied ok=false for another reason (``detail``)
504     ``expired``           the command reached the lock after ``expires_at``: not executed
504     ``timed_out``         no reply by ``expires_at`` + grace; the lock will not act later
503     ``not_sent``          the broker did not take the command, or no gateway worker answered
======  ====================  ==============================================================
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Request
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from api.auth import Principal, Role
from api.deps import TenantConn, ask_holder, require, workers
from api.problems import problem
from api.weekdays import Weekdays
from gateway.adapters.postgres import access_log, lock_queries
from gateway.adapters.postgres import registry_repo as repo
from gateway.control import protocol as p
from gateway.control.worker_link import NoWorker
from gateway.worker.locks.service import CATEGORY

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["keyless locks"])

OPENERS = (Role.OPERATOR,)
ADMINS = (Role.TENANT_ADMIN,)
PLANNERS = (Role.TENANT_ADMIN, Role.OPERATOR)

_HTTP = {"done": 200, "refused_by_device": 409, "expired": 504, "timed_out": 504,
         "not_sent": 503}  # fmt: skip


class UnlockIn(BaseModel):
    key_id: str | None = Field(default=None, min_length=1, max_length=64)
    staff_subject: str | None = Field(default=None, min_length=1, max_length=128)
    reason: str = Field(min_length=1, max_length=500, description="Why, for the access log.")

    @model_validator(mode="after")
    def _one_key(self) -> UnlockIn:
        if (self.key_id is None) == (self.staff_subject is None):
            raise ValueError("give exactly one of key_id and staff_subject")
        return self


class UnlockOut(BaseModel):
    outcome: str
    command_id: str
    expires_at: datetime
    key_id: str
    reason: str
    visit_id: str | None
    alarm_id: str | None
    device_detail: str | None


def _entry(
    who: Principal, owner: str, person: UUID | None, purpose: str, outcome: str, reason: str,
    what: str,
) -> access_log.AccessEntry:  # fmt: skip
    return access_log.AccessEntry(
        actor=who.subject, actor_org=who.org, actor_role=who.role.value,
        actor_tenant=who.tenant, owner_tenant=owner, person_id=person,
        categories=[CATEGORY], purpose=purpose, outcome=outcome, reason=reason, request=what,
    )  # fmt: skip


async def _log_decision(request: Request, entry: access_log.AccessEntry) -> None:
    """Before anything is sent: no opening that cannot be shown afterwards."""
    try:
        await access_log.record(request.app.state.pool, entry)
    except psycopg.Error:
        raise HTTPException(503, "access log unavailable; nothing was sent") from None


async def _log_result(request: Request, worker: str, entry: access_log.AccessEntry) -> None:
    """After the command: the door may already be open, so the answer must say what
    happened. If the log cannot be written now, the entry is handed to the worker that
    sent the command, whose access-log writer appends it when the database is back."""
    try:
        await access_log.record(request.app.state.pool, entry)
    except psycopg.Error:
        try:
            await workers(request).call(p.ACCESS_LOG, entry.owner_tenant or "",
                                        access_log.entry_to_dict(entry), to=worker)  # fmt: skip
        except NoWorker:
            log.error("a lock result could not be logged; no worker took it")


@router.post(
    "/devices/{device_id}/unlock",
    response_model=UnlockOut,
    responses={403: {}, 409: {}, 503: {}, 504: {}},
)
async def unlock(
    device_id: str, body: UnlockIn, request: Request, who: Principal = require(*OPENERS)
) -> Any:
    args = {"device_id": device_id, "key_id": body.key_id, "staff_subject": body.staff_subject}
    prepared = await ask_holder(
        request, p.UNLOCK_PREPARE, who.tenant, args, unchanged="nothing was sent",
        not_held=(503, "no gateway worker judged the unlock; nothing was sent"),
    )  # fmt: skip
    j = prepared.body
    person = UUID(j["person_id"]) if j["person_id"] else None
    key_id, command_id = j["key_id"], j["command_id"]
    what = f"{request.method} {request.url.path} key {key_id} command {command_id}"
    outcome = "allowed" if j["allowed"] else "denied"
    await _log_decision(request, _entry(who, j["tenant_id"], person, body.reason, outcome,
                                        j["described"], what))  # fmt: skip
    if not j["allowed"]:
        return problem(403, "Forbidden", f"unlock refused: {j['reason']}",
                       reason=j["reason"], key_id=key_id)  # fmt: skip
    wait = (datetime.fromisoformat(j["expires_at"]) - datetime.now(UTC)).total_seconds()
    timeout = max(0.0, wait) + request.app.state.lock_settings.reply_grace_s + 5.0
    result: dict[str, Any] | None = None
    why = "the gateway worker did not answer; it may or may not have sent the command"
    try:
        sent = await workers(request).call(p.UNLOCK_SEND, who.tenant, {"command_id": command_id},
                               to=prepared.worker, timeout=timeout)  # fmt: skip
        if sent and sent[0].status == 200:
            result = sent[0].body
        elif sent:
            why = sent[0].error or "refused by the gateway worker"
    except NoWorker:
        pass
    if result is None:
        result = {"status": "not_sent", "command_id": command_id, "expires_at": j["expires_at"],
                  "detail": why}  # fmt: skip
    detail = f"result {result['status']}" + (f": {result['detail']}" if result["detail"] else "")
    await _log_result(request, prepared.worker, _entry(
        who, j["tenant_id"], person, body.reason,
        "allowed" if result["status"] == "done" else "denied", detail, what,
    ))  # fmt: skip
    out = UnlockOut(
        outcome=result["status"], command_id=command_id, expires_at=result["expires_at"],
        key_id=key_id, reason=j["reason"], visit_id=j["visit_id"], alarm_id=j["alarm_id"],
        device_detail=result["detail"],
    )  # fmt: skip
    status = _HTTP[result["status"]]
    if status == 200:
        return out
    titles = {409: "Conflict", 503: "Service Unavailable", 504: "Gateway Timeout"}
    return problem(status, titles[status], f"unlock {result['status']}",
                   **out.model_dump(mode="json"))  # fmt: skip


# --- staff, keys and planned visits --------------------------------------------------------


class StaffIn(BaseModel):
    subject: str = Field(min_length=1, max_length=128, description="Login subject, e.g. HSA-id")
    display_name: str = Field(min_length=1, max_length=200)
    teams: list[str] = Field(default_factory=list, max_length=20)


class KeyIn(BaseModel):
    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    valid_from: AwareDatetime | None = None
    valid_to: AwareDatetime | None = None


class VisitIn(BaseModel):
    staff_id: UUID | None = None
    team: str | None = Field(default=None, min_length=1, max_length=64)
    starts_at: AwareDatetime
    ends_at: AwareDatetime

    @model_validator(mode="after")
    def _check(self) -> VisitIn:
        if (self.staff_id is None) == (self.team is None):
            raise ValueError("give exactly one of staff_id and team")
        if not self.starts_at < self.ends_at:
            raise ValueError("ends_at must be after starts_at")
        if (self.ends_at - self.starts_at).total_seconds() > 86_400:
            raise ValueError("a visit lasts at most 24 hours")
        return self


class SlotIn(BaseModel):
    staff_id: UUID | None = None
    team: str | None = Field(default=None, min_length=1, max_length=64)
    weekdays: Weekdays
    start: time
    end: time
    timezone: str = "Europe/Stockholm"
    first_day: date | None = None
    last_day: date | None = None

    @model_validator(mode="after")
    def _check(self) -> SlotIn:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if (self.staff_id is None) == (self.team is None):
            raise ValueError("give exactly one of staff_id and team")
        if self.start == self.end:
            raise ValueError("start and end must differ")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a directory
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self


class Created(BaseModel):
    id: str


def _conflict(exc: psycopg.Error) -> HTTPException:
    # unique per tenant (a subject, a key id): only the caller's own rows can conflict
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return HTTPException(409, "already exists")
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return HTTPException(404, "staff member not found")
    raise exc


@router.post("/staff", status_code=201, response_model=Created)
async def add_staff(body: StaffIn, conn: TenantConn, who: Principal = require(*ADMINS)) -> Created:
    try:
        staff_id = await lock_queries.add_staff(
            conn, who.tenant, body.subject, body.display_name, body.teams
        )
    except psycopg.errors.UniqueViolation as exc:
        raise _conflict(exc) from None
    return Created(id=str(staff_id))


@router.post("/staff/{staff_id}/keys", status_code=201, response_model=Created)
async def add_key(
    staff_id: UUID, body: KeyIn, conn: TenantConn, who: Principal = require(*ADMINS)
) -> Created:
    try:
        await lock_queries.add_key(
            conn, who.tenant, staff_id, body.key_id, body.valid_from, body.valid_to
        )
    except (psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation) as exc:
        raise _conflict(exc) from None
    return Created(id=body.key_id)


@router.post("/staff-keys/{key_id}/revoke", status_code=204)
async def revoke_key(key_id: str, conn: TenantConn, who: Principal = require(*ADMINS)) -> None:
    """Takes effect in the gateway as soon as its copy is notified (milliseconds)."""
    if not await lock_queries.revoke_key(conn, who.tenant, key_id, who.subject):
        raise HTTPException(404, "key not found or already revoked")


@router.post("/persons/{person_id}/visits", status_code=201, response_model=Created)
async def add_visit(
    person_id: UUID, body: VisitIn, conn: TenantConn, who: Principal = require(*PLANNERS)
) -> Created:
    await repo.get_person(conn, person_id)  # 404 unless the person is ours
    try:
        visit_id = await lock_queries.add_visit(
            conn, who.tenant, person_id, body.staff_id, body.team, body.starts_at,
            body.ends_at, who.subject,
        )  # fmt: skip
    except psycopg.errors.ForeignKeyViolation as exc:
        raise _conflict(exc) from None
    return Created(id=str(visit_id))


@router.post("/persons/{person_id}/visit-slots", status_code=201, response_model=Created)
async def add_slot(
    person_id: UUID, body: SlotIn, conn: TenantConn, who: Principal = require(*PLANNERS)
) -> Created:
    await repo.get_person(conn, person_id)
    try:
        slot_id = await lock_queries.add_slot(
            conn, who.tenant, person_id, body.staff_id, body.team, body.weekdays, body.start,
            body.end, body.timezone, body.first_day, body.last_day, who.subject,
        )  # fmt: skip
    except psycopg.errors.ForeignKeyViolation as exc:
        raise _conflict(exc) from None
    return Created(id=str(slot_id))
