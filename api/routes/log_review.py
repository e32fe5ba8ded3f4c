"""Log review (loggkontroll) and a resident's log extract (loggutdrag): issue #21.2-3,
docs/log-review.md.

The flags are computed on demand for a period (``gateway.domain.log_review``) from the
tenant's residents' access-log rows and the context at the time; the reviews are stored.
Every list of flags, every review and every extract is itself written to the access log.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api.auth import Principal, Role
from api.consented import caller_entry
from api.deps import TenantConn, require
from api.local_time import LocalTime
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import log_review_queries as q
from gateway.domain.log_extract import belongs, lines, to_csv, to_html
from gateway.domain.log_review import (
    STOCKHOLM,
    Flag,
    Hours,
    Rule,
    Thresholds,
    parse_key,
    review,
)

router = APIRouter(prefix="/api/v1", tags=["log review"])

AUDITORS = (Role.AUDITOR, Role.TENANT_ADMIN)
#: the longest period of one list of flags (computed on demand: docs/log-review.md)
MAX_FLAGS_PERIOD = timedelta(days=31)
#: the longest period of one log extract
MAX_EXTRACT_PERIOD = timedelta(days=366)
FlagKey = Annotated[str, Path(max_length=200, pattern=r"^[a-z_]+:[0-9]+$")]


def _now() -> datetime:
    return datetime.now(UTC)


def _period(
    since: datetime | None, until: datetime | None, longest: timedelta, default: timedelta
) -> tuple[datetime, datetime]:
    until = until or _now()
    since = since or until - default
    if since >= until:
        raise HTTPException(422, "since must be before until")
    if until - since > longest:
        raise HTTPException(422, f"at most {longest.days} days at a time")
    return since, until


# --- settings ------------------------------------------------------------------------


class HoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(
        min_length=1, max_length=7, description="0 = Monday"
    )
    start: time = Field(description="Local time (Europe/Stockholm)")
    end: time = Field(description="Local time; at or before start: the shift runs over midnight")

    @model_validator(mode="after")
    def _times(self) -> HoursIn:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start and end are local times, without an offset")
        return self

    def hours(self) -> Hours:
        return Hours(frozenset(self.weekdays), self.start, self.end)


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    many_residents: int = Field(ge=2, le=1000)
    many_window_minutes: int = Field(ge=1, le=1440)
    grace_minutes: int = Field(ge=0, le=1440)
    consent_near_end_hours: int = Field(ge=0, le=8760)
    working_hours: HoursIn


class HoursOut(BaseModel):
    weekdays: list[int]
    start: LocalTime
    end: LocalTime


class SettingsOut(BaseModel):
    many_residents: int
    many_window_minutes: int
    grace_minutes: int
    consent_near_end_hours: int
    working_hours: HoursOut
    defaults: bool = Field(description="True: nothing stored, the documented defaults apply")
    changed_at: datetime | None = None
    changed_by: str | None = None


def _settings_out(th: Thresholds, row: dict[str, Any] | None) -> SettingsOut:
    return SettingsOut(
        many_residents=th.many_residents,
        many_window_minutes=int(th.many_window.total_seconds() // 60),
        grace_minutes=int(th.grace.total_seconds() // 60),
        consent_near_end_hours=int(th.consent_near_end.total_seconds() // 3600),
        working_hours=HoursOut(
            weekdays=sorted(th.hours.weekdays), start=th.hours.start, end=th.hours.end
        ),
        defaults=row is None,
        changed_at=row["changed_at"] if row else None,
        changed_by=row["changed_by"] if row else None,
    )


@router.get("/log-review/settings", response_model=SettingsOut)
async def get_settings(conn: TenantConn, who: Principal = require(*AUDITORS)) -> SettingsOut:
    """The tenant's thresholds and working hours (the defaults until set)."""
    th, row = await q.thresholds(conn, who.tenant)
    return _settings_out(th, row)


@router.put("/log-review/settings", response_model=SettingsOut)
async def put_settings(
    body: SettingsIn, conn: TenantConn, who: Principal = require(*AUDITORS)
) -> SettingsOut:
    th = Thresholds(
        many_residents=body.many_residents,
        many_window=timedelta(minutes=body.many_window_minutes),
        grace=timedelta(minutes=body.grace_minutes),
        consent_near_end=timedelta(hours=body.consent_near_end_hours),
        hours=body.working_hours.hours(),
    )
    await q.put_thresholds(conn, who.tenant, th, who.subject)
    stored, row = await q.thresholds(conn, who.tenant)
    return _settings_out(stored, row)


class StaffHoursOut(BaseModel):
    staff_id: UUID
    subject: str
    working_hours: HoursOut | None


@router.put("/log-review/staff/{staff_id}/hours", response_model=StaffHoursOut)
async def put_staff_hours(
    staff_id: UUID, body: HoursIn, conn: TenantConn, who: Principal = require(*AUDITORS)
) -> StaffHoursOut:
    """A staff member's own working hours (instead of the tenant's) for the review."""
    subject = await q.staff_subject(conn, staff_id)
    if subject is None:
        raise HTTPException(404, "staff member not found")
    await q.put_staff_hours(conn, who.tenant, staff_id, body.hours(), who.subject)
    return StaffHoursOut(staff_id=staff_id, subject=subject, working_hours=HoursOut(
        weekdays=sorted(set(body.weekdays)), start=body.start, end=body.end))  # fmt: skip


@router.delete("/log-review/staff/{staff_id}/hours", status_code=204)
async def delete_staff_hours(
    staff_id: UUID, conn: TenantConn, who: Principal = require(*AUDITORS)
) -> Response:
    """Back to the tenant's working hours."""
    if await q.staff_subject(conn, staff_id) is None:
        raise HTTPException(404, "staff member not found")
    await q.put_staff_hours(conn, who.tenant, staff_id, None, who.subject)
    return Response(status_code=204)


# --- flags ---------------------------------------------------------------------------


class ReviewOut(BaseModel):
    key: str
    rule: Rule
    reviewed_at: datetime
    reviewed_by: str
    comment: str


class FlagOut(BaseModel):
    key: str = Field(description="The rule and the (first) access-log row: stable")
    rule: Rule
    at: datetime
    actor: str
    actor_tenant: str
    actor_org: str | None
    person_ids: list[UUID]
    entry_ids: list[int]
    summary: str
    evidence: dict[str, Any]
    review: ReviewOut | None


class FlagsOut(BaseModel):
    since: datetime
    until: datetime
    settings: SettingsOut
    entries: int = Field(description="Access-log rows of the tenant's residents examined")
    flags: list[FlagOut]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000)


def _review_out(row: dict[str, Any]) -> ReviewOut:
    return ReviewOut(key=row["flag_key"], rule=Rule(row["rule"]), reviewed_at=row["reviewed_at"],
                     reviewed_by=row["reviewed_by"], comment=row["comment"])  # fmt: skip


def _flag_out(f: Flag, mark: dict[str, Any] | None) -> FlagOut:
    return FlagOut(key=f.key, rule=f.rule, at=f.at, actor=f.actor, actor_tenant=f.actor_tenant,
                   actor_org=f.actor_org, person_ids=list(f.person_ids),
                   entry_ids=[e.id for e in f.entries], summary=f.summary, evidence=f.evidence,
                   review=_review_out(mark) if mark else None)  # fmt: skip


async def _flags(conn: Any, tenant: str, since: datetime, until: datetime) -> tuple[
    list[Flag], int, Thresholds, dict[str, Any] | None
]:  # fmt: skip
    th, row = await q.thresholds(conn, tenant)
    found = await q.entries(conn, tenant, since, until)
    persons = sorted({e.person_id for e in found if e.person_id is not None})
    context = await q.context(conn, tenant, persons, since, until)
    return review(found, context, th, STOCKHOLM), len(found), th, row


async def _log(conn: Any, request: Request, who: Principal, *, person: UUID | None,
               purpose: str, reason: str) -> None:  # fmt: skip
    await access_log.append(conn, caller_entry(
        request, who, owner=who.tenant, person_id=person, categories=["access_log"],
        purpose=purpose, reason=reason[:500]))  # fmt: skip


@router.get("/log-review/flags", response_model=FlagsOut)
async def list_flags(
    request: Request, conn: TenantConn,
    since: AwareDatetime | None = Query(None, description="Default: until - 7 days"),
    until: AwareDatetime | None = Query(None, description="Default: now"),
    rule: Rule | None = None,
    reviewed: bool | None = Query(None, description="Only reviewed (true) or open (false)"),
    who: Principal = require(*AUDITORS),
) -> FlagsOut:  # fmt: skip
    """Flags over the access log of the tenant's residents in [since, until), with the
    evidence and any review. Written to the access log."""
    since, until = _period(since, until, MAX_FLAGS_PERIOD, timedelta(days=7))
    flags, examined, th, row = await _flags(conn, who.tenant, since, until)
    if rule is not None:
        flags = [f for f in flags if f.rule is rule]
    done = await q.marks(conn, [f.key for f in flags])
    if reviewed is not None:
        flags = [f for f in flags if (f.key in done) is reviewed]
    await _log(conn, request, who, person=None, purpose="log review",
               reason=f"log review {since.isoformat()}..{until.isoformat()}: "
                      f"{examined} entries, {len(flags)} flags")  # fmt: skip
    return FlagsOut(since=since, until=until, settings=_settings_out(th, row), entries=examined,
                    flags=[_flag_out(f, done.get(f.key)) for f in flags])  # fmt: skip


@router.post("/log-review/flags/{key}/review", status_code=201, response_model=ReviewOut,
             responses={404: {"description": "No such flag"},
                        409: {"description": "Reviewed already"}})  # fmt: skip
async def review_flag(
    key: FlagKey, body: ReviewIn, request: Request, conn: TenantConn,
    who: Principal = require(*AUDITORS),
) -> ReviewOut:  # fmt: skip
    """Mark a flag reviewed, with a comment (once; kept). Written to the access log."""
    parsed = parse_key(key)
    if parsed is None:
        raise HTTPException(404, "flag not found")
    rule, entry_id = parsed
    found = await q.entry(conn, who.tenant, entry_id)
    if found is None:
        raise HTTPException(404, "flag not found")
    th, _row = await q.thresholds(conn, who.tenant)
    around = th.many_window + timedelta(days=1)
    flags, _, _, _ = await _flags(conn, who.tenant, found.at - around, found.at + around)
    flag = next((f for f in flags if f.key == key), None)
    if flag is None:
        raise HTTPException(404, "flag not found")
    row = await q.add_mark(conn, who.tenant, key, rule.value, who.subject, body.comment)
    if row is None:
        raise HTTPException(409, "this flag is reviewed already")
    person = flag.person_ids[0] if len(flag.person_ids) == 1 else None
    await _log(conn, request, who, person=person, purpose="log review",
               reason=f"flag {key} reviewed")  # fmt: skip
    return _review_out(row)


# --- a resident's log extract --------------------------------------------------------


@router.get(
    "/persons/{person_id}/log-extract",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "text/csv": {}},
                     "description": "The extract, in Swedish"}},
)  # fmt: skip
async def log_extract(
    person_id: UUID, request: Request, conn: TenantConn,
    since: AwareDatetime | None = Query(None, description="Default: until - 365 days"),
    until: AwareDatetime | None = Query(None, description="Default: now"),
    format: Literal["html", "csv"] = "html",
    who: Principal = require(*AUDITORS),
) -> Response:  # fmt: skip
    """Every read and disclosure of the resident's data in [since, until), one sentence
    each in Swedish, as printable HTML or CSV. Written to the access log."""
    since, until = _period(since, until, MAX_EXTRACT_PERIOD, timedelta(days=365))
    ref = await q.person_ref(conn, person_id)
    if ref is None:
        raise HTTPException(404, "person not found")
    found = [e for e in await q.entries(conn, who.tenant, since, until, person_id)
             if e.outcome == "allowed" or e.person_id == person_id]  # fmt: skip
    mine = [e for e in found if belongs(e, person_id, who.tenant)]
    orgs = await q.orgs(conn)
    names = await q.names(conn, [e.actor for e in mine])
    rows = lines(mine, owner=who.tenant, orgs=orgs, names=names, tz=STOCKHOLM)
    await _log(conn, request, who, person=person_id, purpose="log extract",
               reason=f"log extract {since.isoformat()}..{until.isoformat()} as {format}: "
                      f"{len(rows)} entries")  # fmt: skip
    stamp = _now().astimezone(STOCKHOLM)
    name = f"loggutdrag-{ref}-{stamp:%Y%m%d}"
    headers = {"Cache-Control": "no-store"}
    if format == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response("\ufeff" + to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers=headers)  # fmt: skip
    own = orgs.get(who.tenant)
    page = to_html(
        rows, person_ref=ref, municipality=own.name if own else who.tenant,
        period=(f"{since.astimezone(STOCKHOLM):%Y-%m-%d %H:%M}",
                f"{until.astimezone(STOCKHOLM):%Y-%m-%d %H:%M}"),
        produced=f"{stamp:%Y-%m-%d} kl. {stamp:%H:%M}", produced_by=who.subject,
    )  # fmt: skip
    return HTMLResponse(page, headers=headers)
