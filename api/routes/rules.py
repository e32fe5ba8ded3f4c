"""Per-person alarm rules: safe zones (geofences) and vital-sign limits."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field, model_validator

from api.auth import Principal, Role
from api.deps import TenantConn, require
from api.weekdays import Weekdays
from gateway.adapters.postgres import registry_repo as repo
from gateway.worker.alarms.person_rules import limits_from_row, zone_from_row

router = APIRouter(prefix="/api/v1/persons", tags=["alarm rules"])

EDITORS = (Role.TENANT_ADMIN, Role.INSTALLER, Role.PLATFORM_ADMIN)
LIMIT_EDITORS = (Role.TENANT_ADMIN, Role.CLINICIAN, Role.PLATFORM_ADMIN)

Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]


class CircleIn(BaseModel):
    type: Literal["circle"]
    lat: Lat
    lon: Lon
    radius_m: float = Field(gt=10, le=50_000)


class PolygonIn(BaseModel):
    type: Literal["polygon"]
    points: list[tuple[Lat, Lon]] = Field(min_length=3, max_length=200)


class WindowIn(BaseModel):
    weekdays: Weekdays
    start: time
    end: time


class SafeZoneIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    shape: CircleIn | PolygonIn = Field(discriminator="type")
    windows: list[WindowIn] = Field(default_factory=list, description="Empty: always active.")
    timezone: str = "Europe/Stockholm"


class BloodPressureLimitsIn(BaseModel):
    systolic_max: int = Field(default=180, ge=60, le=300)
    systolic_min: int = Field(default=90, ge=40, le=250)
    diastolic_max: int = Field(default=110, ge=30, le=200)
    diastolic_min: int = Field(default=50, ge=20, le=150)
    pulse_max: int | None = Field(default=120, ge=30, le=300)
    pulse_min: int | None = Field(default=40, ge=20, le=200)


class WeightGainIn(BaseModel):
    gain_kg: float = Field(default=2.0, gt=0, le=20)
    window_days: float = Field(default=3.0, gt=0, le=30)


class LimitsIn(BaseModel):
    blood_pressure: BloodPressureLimitsIn | None = None
    weight_gain: WeightGainIn | None = None

    @model_validator(mode="after")
    def _something(self) -> LimitsIn:
        if self.blood_pressure is None and self.weight_gain is None:
            raise ValueError("give blood_pressure and/or weight_gain")
        return self


class Created(BaseModel):
    id: str


@router.post("/{person_id}/geofences", status_code=201, response_model=Created)
async def add_safe_zone(
    person_id: UUID, body: SafeZoneIn, conn: TenantConn, who: Principal = require(*EDITORS)
) -> Created:
    await repo.get_person(conn, person_id)
    shape = body.shape.model_dump(mode="json")
    windows = [w.model_dump(mode="json") for w in body.windows]
    try:  # the same conversion the gateway applies: refuse here what it would refuse
        zone_from_row("new", body.name, shape, windows, body.timezone)
    except (ValueError, KeyError) as exc:
        raise HTTPException(422, f"safe zone is not valid: {exc}") from None
    zone_id = await repo.add_safe_zone(
        conn, who.tenant, person_id, body.name, shape, windows, body.timezone
    )
    return Created(id=str(zone_id))


@router.put("/{person_id}/limits", status_code=204)
async def set_limits(
    person_id: UUID, body: LimitsIn, conn: TenantConn, who: Principal = require(*LIMIT_EDITORS)
) -> None:
    await repo.get_person(conn, person_id)
    bp = body.blood_pressure.model_dump() if body.blood_pressure else None
    weight = body.weight_gain.model_dump() if body.weight_gain else None
    try:
        limits_from_row(bp, weight)
    except ValueError as exc:
        raise HTTPException(422, f"limits are not valid: {exc}") from None
    await conn.execute(
        "insert into person_limits (person_id, tenant_id, blood_pressure, weight_gain)"
        " values (%s, %s, %s, %s) on conflict (person_id) do update set"
        " blood_pressure = coalesce(excluded.blood_pressure, person_limits.blood_pressure),"
        " weight_gain = coalesce(excluded.weight_gain, person_limits.weight_gain),"
        " updated_at = now()",
        (person_id, who.tenant, Jsonb(bp) if bp else None, Jsonb(weight) if weight else None),
    )
