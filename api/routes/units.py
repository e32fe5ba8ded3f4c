"""Units and shared devices (issue #19.4; docs/units.md): a tenant's residential units and
wards, devices assigned to a unit instead of a person, the resident tags that say whose a
reading from a shared device is, and a unit's own data (its devices, door events, alarms,
device health).

Everything runs in the caller's tenant transaction: another tenant's unit is not found
(404), whatever its id. Reading a unit's door events (who opened the door with which staff
key) is written to the access log, in the same transaction, allowed or not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.auth import Principal, Role
from api.consented import caller_entry
from api.deps import TenantConn, require
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import unit_queries as q
from gateway.domain.units import TAG_PATTERN, UnitKind

router = APIRouter(prefix="/api/v1", tags=["units and shared devices"])

ADMINS = (Role.TENANT_ADMIN,)
INSTALLERS = (Role.TENANT_ADMIN, Role.INSTALLER)
READERS = (Role.TENANT_ADMIN, Role.INSTALLER, Role.OPERATOR)
#: a unit's data: the municipality's operators and admins, and its auditors
DATA_READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.AUDITOR)
MAX_PERIOD = timedelta(days=366)
#: the access log's category for a unit's door events (as the lock routes name them)
DOOR_CATEGORY = "lock_events"


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Solgläntan, avdelning 2"])
    kind: UnitKind = Field(description="residential_unit (gruppbostad, boende) or ward.")


class UnitCreated(BaseModel):
    id: UUID


class UnitOut(BaseModel):
    id: UUID
    tenant_id: str
    name: str
    kind: UnitKind
    created_at: datetime
    devices: int = Field(description="Devices assigned to the unit now.")


class UnitDeviceOut(BaseModel):
    device_id: str
    model_id: str
    device_type: str
    status: str
    valid_from: datetime
    valid_to: datetime | None = Field(description="Null: the unit's now.")
    last_seen: datetime | None
    battery_percent: int | None
    online: bool | None


class UnitDetail(BaseModel):
    id: UUID
    tenant_id: str
    name: str
    kind: UnitKind
    created_at: datetime
    devices: list[UnitDeviceOut]


class UnitAssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=64)
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")


class DoorEventOut(BaseModel):
    device_id: str
    msg_id: str
    ts: datetime
    received_at: datetime
    action: str
    key_id: str | None
    method: str


class UnitAlarmOut(BaseModel):
    id: UUID
    kind: str
    severity: str
    device_id: str
    state: str
    raised_at: datetime
    last_at: datetime
    occurrences: int
    condition: bool | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    outcome: str | None


class HealthOut(BaseModel):
    device_id: str
    ts: datetime
    received_at: datetime
    kind: str
    battery_percent: int | None
    rssi_dbm: int | None
    state: str | None
    firmware: str | None


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: str = Field(pattern=TAG_PATTERN, examples=["04A2B3C4D5"],
                     description="As the device sends it in resident_tag.")  # fmt: skip
    person_id: UUID
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")


class TagCreated(BaseModel):
    id: int


class TagOut(BaseModel):
    id: int
    tag: str
    person_id: UUID
    valid_from: datetime
    valid_to: datetime | None
    created_by: str
    created_at: datetime


class EndIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime | None = Field(default=None, description="Default: now.")


UnitId = Annotated[UUID, Path(description="The unit's id.")]


def _now() -> datetime:
    return datetime.now(UTC)


def _failed(exc: q.UnitError) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or _now()
    since = since or until - timedelta(days=7)
    if since >= until:
        raise HTTPException(422, "since must be before until")
    if until - since > MAX_PERIOD:
        raise HTTPException(422, f"at most {MAX_PERIOD.days} days at a time")
    return since, until


async def _unit(conn: Any, unit_id: UUID) -> dict[str, Any]:
    found = await q.get_unit(conn, unit_id)
    if found is None:
        raise HTTPException(404, "unit not found")
    return found


# --- units -------------------------------------------------------------------------------


@router.post("/units", status_code=201, response_model=UnitCreated)
async def create_unit(
    body: UnitIn, conn: TenantConn, who: Principal = require(*ADMINS)
) -> UnitCreated:
    """Register a residential unit or a ward of the caller's municipality."""
    try:
        return UnitCreated(id=await q.create_unit(conn, who.tenant, body.name, body.kind.value))
    except q.UnitError as exc:
        raise _failed(exc) from None


@router.get("/units", response_model=list[UnitOut])
async def list_units(conn: TenantConn, _: Principal = require(*READERS)) -> list[dict[str, Any]]:
    return await q.list_units(conn)


@router.get("/units/{unit_id}", response_model=UnitDetail)
async def get_unit(
    unit_id: UnitId, conn: TenantConn, _: Principal = require(*READERS)
) -> dict[str, Any]:
    """The unit and its devices: those it holds now, then those it held."""
    unit = await _unit(conn, unit_id)
    return {**unit, "devices": await q.unit_devices(conn, unit_id)}


@router.post("/units/{unit_id}/devices", status_code=204)
async def assign_device(
    unit_id: UnitId, body: UnitAssignIn, conn: TenantConn, _: Principal = require(*INSTALLERS)
) -> None:
    """Assign a device in stock (or returned) to the unit from ``valid_from``. It is the
    unit's until returned (``POST /api/v1/devices/{id}/return``), like a person's."""
    try:
        await q.assign_to_unit(conn, body.device_id, unit_id, body.valid_from or _now())
    except q.UnitError as exc:
        raise _failed(exc) from None


# --- a unit's data -------------------------------------------------------------------------


@router.get("/units/{unit_id}/door-events", response_model=list[DoorEventOut])
async def door_events(
    unit_id: UnitId, request: Request, conn: TenantConn,
    since: AwareDatetime | None = Query(default=None, description="Default: 7 days ago."),
    until: AwareDatetime | None = Query(default=None, description="Default: now."),
    limit: int = Query(default=100, ge=1, le=1000),
    purpose: str | None = Query(default=None, max_length=200, description="Why (logged)."),
    who: Principal = require(*DATA_READERS),
) -> list[dict[str, Any]]:  # fmt: skip
    """Lock events at the unit's doors (who opened with which staff key, when, how),
    newest first. Written to the access log."""
    since, until = _period(since, until)
    unit = await _unit(conn, unit_id)
    rows = await q.unit_lock_events(conn, unit_id, since, until, limit)
    await access_log.append(conn, caller_entry(
        request, who, owner=who.tenant, person_id=None, categories=[DOOR_CATEGORY],
        purpose=purpose, reason=f"unit {unit['id']} door events: {len(rows)} rows",
    ))  # fmt: skip
    return rows


@router.get("/units/{unit_id}/alarms", response_model=list[UnitAlarmOut])
async def unit_alarms(
    unit_id: UnitId, conn: TenantConn,
    since: AwareDatetime | None = Query(default=None, description="Default: 7 days ago."),
    until: AwareDatetime | None = Query(default=None, description="Default: now."),
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = require(*DATA_READERS),
) -> list[dict[str, Any]]:  # fmt: skip
    """The unit's own alarms (its devices' with no resident: a door left unlocked, a
    tamper, a silent or flat device), newest first. A resident's alarm from a shared
    device is the resident's (GET /api/v1/alarms)."""
    since, until = _period(since, until)
    await _unit(conn, unit_id)
    return await q.unit_alarms(conn, unit_id, since, until, limit)


@router.get("/units/{unit_id}/health", response_model=list[HealthOut])
async def unit_health(
    unit_id: UnitId, conn: TenantConn,
    since: AwareDatetime | None = Query(default=None, description="Default: 7 days ago."),
    until: AwareDatetime | None = Query(default=None, description="Default: now."),
    kind: Literal["heartbeat", "battery", "battery_low", "status"] | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    _: Principal = require(*READERS),
) -> list[dict[str, Any]]:  # fmt: skip
    """Heartbeats, battery and status of the unit's devices while they were the unit's."""
    since, until = _period(since, until)
    await _unit(conn, unit_id)
    return await q.unit_health(conn, unit_id, since, until, limit, kind)


# --- resident tags -------------------------------------------------------------------------


@router.post("/resident-tags", status_code=201, response_model=TagCreated)
async def register_tag(
    body: TagIn, conn: TenantConn, who: Principal = require(*INSTALLERS)
) -> TagCreated:
    """Register a tag to a person from ``valid_from``: readings a unit's shared device
    sends with it from then on are that person's. A tag names one person at a time (409
    while it is someone else's; end that registration first)."""
    try:
        tag_id = await q.register_tag(
            conn, who.tenant, body.tag, body.person_id, body.valid_from or _now(), who.subject
        )
    except q.UnitError as exc:
        raise _failed(exc) from None
    return TagCreated(id=tag_id)


@router.get("/resident-tags", response_model=list[TagOut])
async def list_tags(
    conn: TenantConn, person_id: UUID | None = None, _: Principal = require(*INSTALLERS)
) -> list[dict[str, Any]]:
    return await q.list_tags(conn, person_id)


@router.post("/resident-tags/{tag_id}/end", status_code=204)
async def end_tag(
    tag_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: TenantConn,
    body: EndIn | None = None, _: Principal = require(*INSTALLERS),
) -> None:  # fmt: skip
    """The tag is no longer the person's from ``at`` (lost, moved out, given to another)."""
    try:
        ended = await q.end_tag(conn, tag_id, (body.at if body else None) or _now())
    except q.UnitError as exc:
        raise _failed(exc) from None
    if not ended:
        raise HTTPException(404, "no open registration of that tag")
