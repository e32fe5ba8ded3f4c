"""The items of ``GET /api/v1/persons/{id}/readings``, typed per category.

One page holds one category; the page is a union discriminated by ``category``, so the
OpenAPI document says exactly which fields an item of each category has (the columns of
the time-series tables, ``gateway/adapters/postgres/migrations/0002_timeseries.sql``, as the device
contract fills them, ``firmware_contracts/messages.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter

from firmware_contracts.messages import AlarmKind


class _Item(BaseModel):
    ts: datetime = Field(description="When the device measured or saw it (its own clock).")
    device_id: str
    msg_id: str = Field(description="The device's message id (unique per device).")


class WeightItem(_Item):
    weight_kg: float = Field(description="Body weight in kilograms.")


class BloodPressureItem(_Item):
    systolic_mmhg: int
    diastolic_mmhg: int
    pulse_bpm: int | None = Field(description="When the monitor reported a pulse.")


class PositionItem(_Item):
    lat: float = Field(description="WGS 84 latitude.")
    lon: float = Field(description="WGS 84 longitude.")
    accuracy_m: float = Field(description="Radius of the fix's accuracy in metres.")


class LockEventItem(_Item):
    action: str = Field(
        description="What the lock did; the device contract sends unlocked, locked or denied.",
        examples=["unlocked"],
    )
    key_id: str | None = Field(description="The staff key used (null: manual or remote).")
    method: str = Field(
        description="How; the device contract sends app, remote or manual.", examples=["app"]
    )


class DeviceAlarmItem(_Item):
    """An alarm as the device sent it (the alarm's handling is in ``/api/v1/alarms``)."""

    kind: str = Field(
        description="The device's alarm kind: " + ", ".join(k.value for k in AlarmKind) + ".",
        examples=[AlarmKind.BUTTON.value],
    )
    lat: float | None
    lon: float | None
    accuracy_m: float | None


_CURSOR = "Pass as ``cursor`` for the next page; null on the last page."


class WeightPage(BaseModel):
    person_id: UUID
    category: Literal["weight"]
    items: list[WeightItem]
    next_cursor: str | None = Field(description=_CURSOR)


class BloodPressurePage(BaseModel):
    person_id: UUID
    category: Literal["blood_pressure"]
    items: list[BloodPressureItem]
    next_cursor: str | None = Field(description=_CURSOR)


class PositionPage(BaseModel):
    person_id: UUID
    category: Literal["position"]
    items: list[PositionItem]
    next_cursor: str | None = Field(description=_CURSOR)


class LockEventsPage(BaseModel):
    person_id: UUID
    category: Literal["lock_events"]
    items: list[LockEventItem]
    next_cursor: str | None = Field(description=_CURSOR)


class DeviceAlarmsPage(BaseModel):
    person_id: UUID
    category: Literal["alarms"]
    items: list[DeviceAlarmItem]
    next_cursor: str | None = Field(description=_CURSOR)


ReadingsPage = Annotated[
    WeightPage | BloodPressurePage | PositionPage | LockEventsPage | DeviceAlarmsPage,
    Field(discriminator="category"),
]

_PAGE: TypeAdapter[ReadingsPage] = TypeAdapter(ReadingsPage)


def page(
    person_id: UUID, category: str, items: list[dict[str, Any]], next_cursor: str | None
) -> ReadingsPage:
    """A page of ``category``, its items checked against that category's model."""
    return _PAGE.validate_python(
        {"person_id": person_id, "category": category, "items": items,
         "next_cursor": next_cursor}
    )  # fmt: skip
