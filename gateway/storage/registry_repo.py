"""Registry writes and reads: tenants, persons, device models, devices, assignments.

Used by the API (on a tenant-scoped connection of role wg_api, under row-level security)
and by the demo's seeding (on the owner's connection): one way to register and assign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from gateway.pii import PinCipher, PinError, normalise_pin

Conn = psycopg.AsyncConnection[Any]


class RegistryError(Exception):
    """A registry rule was broken; ``status`` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class NotFound(RegistryError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found", 404)


@dataclass(frozen=True)
class DeviceModel:
    id: str
    vendor: str
    model: str
    device_type: str
    heartbeat_interval_s: int


async def create_tenant(conn: Conn, tenant_id: str, name: str, kind: str, org: str) -> None:
    try:
        await conn.execute("select create_tenant(%s, %s, %s, %s)", (tenant_id, name, kind, org))
    except psycopg.errors.UniqueViolation:
        raise RegistryError("a tenant with that id or organisation number exists") from None


async def ensure_device_model(conn: Conn, m: DeviceModel) -> None:
    cur = await conn.execute("select 1 from device_models where id = %s", (m.id,))
    if await cur.fetchone():
        return
    try:
        await conn.execute(
            "select register_device_model(%s, %s, %s, %s, %s)",
            (m.id, m.vendor, m.model, m.device_type, m.heartbeat_interval_s),
        )
    except psycopg.errors.UniqueViolation:
        raise RegistryError(f"vendor {m.vendor!r} model {m.model!r} is registered") from None


async def create_person(
    conn: Conn,
    tenant_id: str,
    ref: str,
    *,
    pin: str | None = None,
    care_notes: str = "",
    cipher: PinCipher | None = None,
) -> UUID:
    digits = None
    if pin is not None:
        if cipher is None:
            raise RegistryError("storing personal identity numbers needs pii_keys configured", 422)
        try:
            digits = normalise_pin(pin)
        except PinError as exc:
            raise RegistryError(str(exc), 422) from None
    try:
        cur = await conn.execute(
            "insert into persons (tenant_id, ref, care_notes) values (%s, %s, %s) returning id",
            (tenant_id, ref, care_notes),
        )
    except psycopg.errors.UniqueViolation:
        raise RegistryError(f"a person with ref {ref!r} exists in this tenant") from None
    row = await cur.fetchone()
    assert row is not None
    person_id: UUID = row[0]
    if digits is not None:
        assert cipher is not None
        blob, key_id = cipher.encrypt(digits, str(person_id))
        await conn.execute(
            "update persons set pin_ciphertext = %s, pin_key_id = %s where id = %s",
            (blob, key_id, person_id),
        )
    return person_id


async def get_person(conn: Conn, person_id: UUID) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, tenant_id, ref, care_notes, created_at,"
            " pin_ciphertext is not null as has_pin from persons where id = %s",
            (person_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound("person")
    return row


async def register_device(
    conn: Conn, tenant_id: str, device_id: str, model_id: str, serial: str | None = None
) -> None:
    try:
        await conn.execute(
            "insert into devices (id, tenant_id, model_id, serial) values (%s, %s, %s, %s)",
            (device_id, tenant_id, model_id, serial),
        )
    except psycopg.errors.UniqueViolation:
        raise RegistryError(f"device {device_id!r} is already registered") from None
    except psycopg.errors.ForeignKeyViolation:
        raise RegistryError(f"unknown device model {model_id!r}", 422) from None


async def _lock_device(conn: Conn, device_id: str) -> tuple[str, str]:
    cur = await conn.execute(
        "select tenant_id, status from devices where id = %s for update", (device_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound("device")
    return row[0], row[1]


async def assign_device(conn: Conn, device_id: str, person_id: UUID, at: datetime) -> None:
    """Hand a device in stock (or returned and restocked) to a person from ``at``."""
    tenant_id, status = await _lock_device(conn, device_id)
    if status not in ("in_stock", "returned"):
        raise RegistryError(f"device is {status}; return it before assigning it again")
    cur = await conn.execute("select tenant_id from persons where id = %s", (person_id,))
    person = await cur.fetchone()
    if person is None or person[0] != tenant_id:
        raise NotFound("person")
    try:
        await conn.execute(
            "insert into assignments (tenant_id, device_id, person_id, valid_from)"
            " values (%s, %s, %s, %s)",
            (tenant_id, device_id, person_id, at),
        )
    except psycopg.errors.ExclusionViolation:
        raise RegistryError("the device was held by someone else at that time") from None
    await conn.execute(
        "update devices set status = 'active', status_changed_at = %s where id = %s",
        (at, device_id),
    )


async def return_device(conn: Conn, device_id: str, at: datetime) -> None:
    """The person gives the device back: their assignment ends at ``at``."""
    _, status = await _lock_device(conn, device_id)
    if status != "active":
        raise RegistryError(f"device is {status}, not active")
    began = await (
        await conn.execute(
            "select max(valid_from) from assignments where device_id = %s and valid_to is null",
            (device_id,),
        )
    ).fetchone()
    if began and began[0] is not None and at < began[0]:
        raise RegistryError("the return time is before the current assignment began", 422)
    await conn.execute(
        "update assignments set valid_to = %s where device_id = %s and valid_to is null",
        (at, device_id),
    )
    await conn.execute(
        "update devices set status = 'returned', status_changed_at = %s where id = %s",
        (at, device_id),
    )


async def retire_device(conn: Conn, device_id: str, at: datetime) -> None:
    """The device leaves the fleet for good (broken, lost, scrapped). A device still held
    by someone is returned first, so its assignment ends at ``at`` too."""
    _, status = await _lock_device(conn, device_id)
    if status == "retired":
        raise RegistryError("device is already retired")
    if status == "active":
        await return_device(conn, device_id, at)
    await conn.execute(
        "update devices set status = 'retired', status_changed_at = %s where id = %s",
        (at, device_id),
    )


async def add_safe_zone(
    conn: Conn,
    tenant_id: str,
    person_id: UUID,
    name: str,
    shape: dict[str, Any],
    windows: list[dict[str, Any]] | None = None,
    timezone: str = "Europe/Stockholm",
) -> UUID:
    """A safe zone for a person's GPS alarm (shape and windows as the API validated)."""
    cur = await conn.execute(
        "insert into safe_zones (tenant_id, person_id, name, shape, windows, timezone)"
        " values (%s, %s, %s, %s, %s, %s) returning id",
        (tenant_id, person_id, name, Jsonb(shape), Jsonb(windows or []), timezone),
    )
    row = await cur.fetchone()
    assert row is not None
    zone_id: UUID = row[0]
    return zone_id


async def list_devices(conn: Conn, status: str | None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select d.id, d.tenant_id, d.model_id, m.device_type, d.serial, d.status,"
            " d.registered_at, a.person_id, s.last_seen, s.battery_percent, s.firmware, s.online"
            " from devices d join device_models m on m.id = d.model_id"
            " left join assignments a on a.device_id = d.id and a.valid_to is null"
            " left join api_device_state s on s.device_id = d.id"
            " where (%s::text is null or d.status = %s) order by d.id",
            (status, status),
        )
        return await cur.fetchall()
