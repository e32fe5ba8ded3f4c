"""Registry: tenants, device models, persons, devices, assignment and return."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from api import consented
from api.auth import Principal, Role
from api.deps import CurrentPrincipal, TenantConn, require
from gateway.adapters.mosquitto.client import BrokerAccessError, IdentityTaken
from gateway.adapters.mosquitto.service import BrokerAccess
from gateway.adapters.postgres import access_log
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import AlarmSettings
from gateway.domain import registry_fields as fields

router = APIRouter(prefix="/api/v1", tags=["registry"])

ADMINS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
INSTALLERS = (Role.TENANT_ADMIN, Role.INSTALLER, Role.PLATFORM_ADMIN)
MUNICIPAL_READERS = (Role.TENANT_ADMIN, Role.INSTALLER, Role.OPERATOR, Role.PLATFORM_ADMIN)


class TenantIn(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$", examples=["vasteras"])
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["municipality", "region"]
    org_number: str = Field(pattern=r"^[0-9]{6}-[0-9]{4}$", examples=["212000-2080"])


class DeviceModelIn(BaseModel):
    id: fields.DeviceModelId
    vendor: fields.Vendor
    model: fields.ModelName
    device_type: fields.DeviceType
    heartbeat_interval_s: fields.HeartbeatSeconds


class PersonIn(BaseModel):
    ref: fields.PersonRef
    personal_identity_number: fields.IdentityNumberText | None = Field(
        default=None, description="Stored only encrypted; never returned."
    )
    care_notes: fields.CareNotes = ""


class PersonOut(BaseModel):
    id: UUID
    tenant_id: str
    ref: str
    care_notes: str
    created_at: datetime
    has_personal_identity_number: bool


class DeviceIn(BaseModel):
    id: fields.DeviceId
    model_id: fields.DeviceModelRef
    serial: fields.Serial | None = None


class AssignIn(BaseModel):
    person_id: UUID
    valid_from: AwareDatetime | None = Field(default=None, description="Default: now.")


class ReturnIn(BaseModel):
    at: AwareDatetime | None = Field(default=None, description="Default: now.")


class DeviceOut(BaseModel):
    id: str
    tenant_id: str
    model_id: str
    device_type: str
    serial: str | None
    status: str
    registered_at: datetime
    person_id: UUID | None
    last_seen: datetime | None
    battery_percent: int | None
    firmware: str | None
    online: bool | None
    unit_id: UUID | None = Field(
        default=None, description="The unit holding it instead of a person (docs/units.md)."
    )


class Created(BaseModel):
    id: str


class DeviceCreated(BaseModel):
    id: str
    mqtt_username: str | None = Field(default=None, description="With broker access on.")
    mqtt_password: str | None = Field(
        default=None, description="Shown once, never stored by us: put it on the device now."
    )


async def _broker(request: Request, action: str, device_id: str) -> str | None:
    """Run a broker identity step if broker access management is on. A failure answers
    503 and, raised inside the request's transaction, rolls the registry change back."""
    access: BrokerAccess | None = request.app.state.broker_access
    if access is None:
        return None
    try:
        if action == "register":
            return await access.register_device(device_id)
        if action == "suspend":
            await access.suspend_device(device_id)
        elif action == "remove":
            await access.remove_device(device_id)
        else:
            await access.reinstate_device(device_id)
    except IdentityTaken as exc:
        if action == "register":  # the same answer as an id registered in any tenant
            raise repo.id_not_available(device_id) from None
        raise HTTPException(409, f"device id not available: {exc}") from None
    except BrokerAccessError as exc:
        raise HTTPException(503, f"broker identity not updated; nothing changed: {exc}") from None
    return None


@router.post("/tenants", status_code=201, response_model=Created)
async def create_tenant(
    body: TenantIn, conn: TenantConn, _: Principal = require(Role.PLATFORM_ADMIN)
) -> Created:
    await repo.create_tenant(conn, body.id, body.name, body.kind, body.org_number)
    return Created(id=body.id)


class OwnTenantOut(BaseModel):
    id: str
    name: str
    kind: str
    time_zone: str = Field(description="The IANA time zone the tenant's times are shown in.")


@router.get("/tenant", response_model=OwnTenantOut)
async def own_tenant(request: Request, conn: TenantConn, who: CurrentPrincipal) -> OwnTenantOut:
    """The caller's own tenant, from the token (any role): its name and the time zone its
    local times are in (the ``alarms.timezone`` setting, Europe/Stockholm by default).
    Row-level security lets the read see that tenant only."""
    cur = await conn.execute("select id, name, kind from tenants where id = %s", (who.tenant,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, "tenant not found")
    rules: AlarmSettings = request.app.state.alarm_settings
    return OwnTenantOut(id=row[0], name=row[1], kind=row[2], time_zone=rules.timezone)


@router.get("/device-models", response_model=list[DeviceModelIn])
async def list_device_models(
    conn: TenantConn, _: Principal = require(*MUNICIPAL_READERS)
) -> list[dict[str, Any]]:
    """The platform's catalogue of device models: the same for every tenant."""
    return await repo.list_device_models(conn)


@router.post(
    "/device-models", status_code=201, response_model=Created,
    responses={200: {"model": Created, "description": "The very same model is registered"}},
)  # fmt: skip
async def create_device_model(
    body: DeviceModelIn, response: Response, conn: TenantConn,
    _: Principal = require(Role.PLATFORM_ADMIN),
) -> Created:  # fmt: skip
    """Models are curated by the platform: a model decides the type and heartbeat of every
    device registered with it, in every tenant. The same model again answers 200; the id
    with other values, or the vendor and model under another id, 409."""
    if not await repo.ensure_device_model(conn, repo.DeviceModel(**body.model_dump())):
        response.status_code = 200
    return Created(id=body.id)


class DeviceModelChange(BaseModel):
    vendor: fields.Vendor
    model: fields.ModelName
    device_type: fields.DeviceType
    heartbeat_interval_s: fields.HeartbeatSeconds


class ModelChanged(BaseModel):
    id: str
    devices: int = Field(description="Devices of this model, in all tenants; each is reloaded.")


@router.put("/device-models/{model_id}", response_model=ModelChanged)
async def change_device_model(
    model_id: str, body: DeviceModelChange, conn: TenantConn,
    _: Principal = require(Role.PLATFORM_ADMIN),
) -> ModelChanged:  # fmt: skip
    """Change a model for every device of it (the gateway reloads them). Its device type
    cannot change while devices use it (409)."""
    devices = await repo.change_device_model(
        conn, repo.DeviceModel(id=model_id, **body.model_dump())
    )
    return ModelChanged(id=model_id, devices=devices)


@router.post("/persons", status_code=201, response_model=Created)
async def create_person(
    body: PersonIn, request: Request, conn: TenantConn, who: Principal = require(*ADMINS)
) -> Created:
    person_id = await repo.create_person(
        conn,
        who.tenant,
        body.ref,
        pin=body.personal_identity_number,
        care_notes=body.care_notes,
        cipher=request.app.state.pin_cipher,
    )
    return Created(id=str(person_id))


@router.get("/persons/{person_id}", response_model=PersonOut)
async def get_person(
    person_id: UUID, request: Request, conn: TenantConn,
    who: Principal = require(*MUNICIPAL_READERS),
) -> PersonOut:  # fmt: skip
    """The person's record, care notes included: the read is written to the access log
    (#21.3; a person of another tenant is 404, as if there were none, and not logged)."""
    row = await repo.get_person(conn, person_id)
    await consented.log_read(request, who, consented.ReadRecord(
        owner=who.tenant, person_id=person_id, categories=["care_notes"], outcome="allowed",
        reason="by role"))  # fmt: skip
    return PersonOut(has_personal_identity_number=row.pop("has_pin"), **row)


@router.post(
    "/devices", status_code=201, response_model=DeviceCreated, response_model_exclude_none=True
)
async def register_device(
    body: DeviceIn, request: Request, response: Response, conn: TenantConn,
    who: Principal = require(*INSTALLERS),
) -> DeviceCreated:  # fmt: skip
    await repo.register_device(conn, who.tenant, body.id, body.model_id, body.serial)
    password = await _broker(request, "register", body.id)  # last: 503 rolls back the row
    if password is None:
        return DeviceCreated(id=body.id)
    response.headers["Cache-Control"] = "no-store"
    return DeviceCreated(id=body.id, mqtt_username=body.id, mqtt_password=password)


@router.post("/devices/{device_id}/assign", status_code=204)
async def assign_device(
    device_id: str, body: AssignIn, request: Request, conn: TenantConn,
    _: Principal = require(*INSTALLERS),
) -> None:  # fmt: skip
    await repo.assign_device(conn, device_id, body.person_id, body.valid_from or _now())
    await _broker(request, "reinstate", device_id)


@router.post("/devices/{device_id}/return", status_code=204)
async def return_device(
    device_id: str, request: Request, conn: TenantConn, body: ReturnIn | None = None,
    _: Principal = require(*INSTALLERS),
) -> None:  # fmt: skip
    await repo.return_device(conn, device_id, (body.at if body else None) or _now())
    await _broker(request, "suspend", device_id)


@router.post("/devices/{device_id}/retire", status_code=204)
async def retire_device(
    device_id: str, request: Request, conn: TenantConn, body: ReturnIn | None = None,
    _: Principal = require(*INSTALLERS),
) -> None:  # fmt: skip
    """The device leaves the fleet for good: its assignment ends, its broker identity is
    deleted (its live session is cut), and anything it still sends is quarantined."""
    await repo.retire_device(conn, device_id, (body.at if body else None) or _now())
    await _broker(request, "remove", device_id)


@router.get("/devices", response_model=list[DeviceOut])
async def list_devices(
    conn: TenantConn,
    status: Literal["in_stock", "active", "returned", "retired"] | None = None,
    _: Principal = require(*MUNICIPAL_READERS),
) -> list[dict[str, Any]]:
    return await repo.list_devices(conn, status)


# --- device ids: global by protocol; disputes are resolved by platform admins ---------------


class HolderOut(BaseModel):
    device_id: str
    registered: bool
    tenant_id: str | None = None
    status: str | None = None
    model_id: str | None = None
    registered_at: datetime | None = None
    assignments: int | None = Field(default=None, description="Assignments ever recorded.")


class ReleaseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="Why, for the access log.")
    to_tenant: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,39}$",
        description="Register the id in stock in this tenant at once (its new broker"
                    " password is in the answer); without it the id is just free.",
    )  # fmt: skip


class ReleaseOut(BaseModel):
    device_id: str
    released_from: str
    archived_as: str = Field(description="The previous holder's record and history, retired.")
    to_tenant: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = Field(default=None, description="Shown once, never stored.")


async def _audit(
    conn: Any, who: Principal, owner: str | None, purpose: str, reason: str, request: Request
) -> None:
    """A platform admin's look at, or change of, a tenant's registry, in the access log
    (the owning tenant's auditors see it), in the request's transaction."""
    await access_log.append(conn, consented.caller_entry(
        request, who, owner=owner, person_id=None, categories=["device_registry"],
        purpose=purpose, reason=reason))  # fmt: skip


@router.get("/platform/device-ids/{device_id}", response_model=HolderOut,
            response_model_exclude_none=True)  # fmt: skip
async def device_id_holder(
    device_id: str, request: Request, conn: TenantConn,
    who: Principal = require(Role.PLATFORM_ADMIN),
) -> HolderOut:  # fmt: skip
    """Which tenant holds a device id (platform admins; access-logged for that tenant).
    Tenants are only ever told that an id is "not available"."""
    held = await repo.device_holder(conn, device_id)
    if held is None:
        await _audit(conn, who, None, "device id dispute", "device id not registered", request)
        return HolderOut(device_id=device_id, registered=False)
    await _audit(conn, who, held.tenant_id, "device id dispute", "device id holder looked up",
                 request)  # fmt: skip
    return HolderOut(registered=True, **asdict(held))


@router.post("/platform/device-ids/{device_id}/release", response_model=ReleaseOut,
             response_model_exclude_none=True)  # fmt: skip
async def release_device_id(
    device_id: str, body: ReleaseIn, request: Request, response: Response, conn: TenantConn,
    who: Principal = require(Role.PLATFORM_ADMIN),
) -> ReleaseOut:  # fmt: skip
    """Take a device id away from the tenant holding it (a squatted id, or a device that
    changed hands). The holder keeps its record and history, retired, under
    ``archived_as``; its open assignment ends now; the broker identity is deleted, so its
    password stops working. With ``to_tenant`` the id is registered there in stock with a
    new broker identity; otherwise anyone may register it next. Certificates issued for
    the id (CN = device id) are not known here: revoke them (``welfare-gateway pki revoke
    --device ID``, then reload the broker) before a new certificate is issued."""
    released = await repo.release_device(conn, device_id, body.to_tenant)
    if released is None:
        raise repo.NotFound("device id")
    holder, archived = released
    what = f"device id {device_id} released from {holder} (kept as {archived})"
    if body.to_tenant:
        what += f" and registered in {body.to_tenant}"
    await _audit(conn, who, holder, body.reason, what, request)
    if body.to_tenant and body.to_tenant != holder:
        await _audit(conn, who, body.to_tenant, body.reason, what, request)
    out = ReleaseOut(device_id=device_id, released_from=holder, archived_as=archived,
                     to_tenant=body.to_tenant)  # fmt: skip
    # last: a broker failure answers 503 and rolls all of it back
    await _broker(request, "remove", device_id)
    if body.to_tenant:
        password = await _broker(request, "register", device_id)
        if password is not None:
            response.headers["Cache-Control"] = "no-store"
            out.mqtt_username, out.mqtt_password = device_id, password
    return out


def _now() -> datetime:
    return datetime.now(UTC)
