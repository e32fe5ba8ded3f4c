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

from gateway.support.pii import PinCipher, PinError, normalise_pin

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


_MODEL_FIELDS = ("vendor", "model", "device_type", "heartbeat_interval_s")


async def _stored_model(conn: Conn, model_id: str) -> DeviceModel | None:
    cur = await conn.execute(
        "select id, vendor, model, device_type, heartbeat_interval_s from device_models"
        " where id = %s",
        (model_id,),
    )
    row = await cur.fetchone()
    return DeviceModel(*row) if row else None


def _differs(stored: DeviceModel, wanted: DeviceModel) -> str:
    return ", ".join(f for f in _MODEL_FIELDS if getattr(stored, f) != getattr(wanted, f))


async def ensure_device_model(conn: Conn, m: DeviceModel) -> bool:
    """Add ``m`` to the platform's catalogue of models. True if added; False if the very
    same model is there already (idempotent). A model of that id with other fields, or
    another id for the same vendor and model, is a 409: a model is never redefined by
    registering it again (``change_device_model`` changes one, for platform admins)."""
    stored = await _stored_model(conn, m.id)
    if stored is None:
        try:
            async with conn.transaction():  # a savepoint: a race is told apart below
                await conn.execute(
                    "select register_device_model(%s, %s, %s, %s, %s)",
                    (m.id, m.vendor, m.model, m.device_type, m.heartbeat_interval_s),
                )
            return True
        except psycopg.errors.UniqueViolation:
            stored = await _stored_model(conn, m.id)
            if stored is None:
                raise RegistryError(
                    f"vendor {m.vendor!r} model {m.model!r} is registered under another id"
                ) from None
    if stored != m:
        raise RegistryError(
            f"device model {m.id!r} is registered with other values ({_differs(stored, m)});"
            " a platform administrator changes it with PUT /api/v1/device-models/{id}"
        )
    return False


async def change_device_model(conn: Conn, m: DeviceModel) -> int:
    """Change a model of the catalogue (platform admins); returns how many devices use it
    (the gateway reloads each). 404 if there is no such model; 409 for another device type
    while devices use it, or a vendor and model another id has."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "select change_device_model(%s, %s, %s, %s, %s)",
                (m.id, m.vendor, m.model, m.device_type, m.heartbeat_interval_s),
            )
            row = await cur.fetchone()
    except psycopg.errors.ObjectInUse as exc:
        raise RegistryError(exc.diag.message_primary or "device model in use") from None
    except psycopg.errors.UniqueViolation:
        raise RegistryError(
            f"vendor {m.vendor!r} model {m.model!r} is registered under another id"
        ) from None
    if row is None or row[0] is None:
        raise NotFound("device model")
    return int(row[0])


async def list_device_models(conn: Conn) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "select id, vendor, model, device_type, heartbeat_interval_s from device_models"
            " order by id"
        )
        return await cur.fetchall()


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


def id_not_available(device_id: str) -> RegistryError:
    """The one answer for a device id that cannot be registered: the same whether it is
    registered in the caller's tenant, in another tenant, or is the broker name of a
    service, so that it reveals nothing beyond "not available" (device ids are global:
    the MQTT topic, the broker username and the certificate CN are the id)."""
    return RegistryError(
        f"device id {device_id!r} is not available; if it is yours, a platform administrator"
        " can say where it is registered and release it"
    )


async def register_device(
    conn: Conn, tenant_id: str, device_id: str, model_id: str, serial: str | None = None
) -> None:
    try:
        await conn.execute(
            "insert into devices (id, tenant_id, model_id, serial) values (%s, %s, %s, %s)",
            (device_id, tenant_id, model_id, serial),
        )
    except psycopg.errors.UniqueViolation:
        raise id_not_available(device_id) from None
    except psycopg.errors.ForeignKeyViolation:
        raise RegistryError(f"unknown device model {model_id!r}", 422) from None


@dataclass(frozen=True)
class Holder:
    device_id: str
    tenant_id: str
    status: str
    model_id: str
    registered_at: datetime
    assignments: int


async def device_holder(conn: Conn, device_id: str) -> Holder | None:
    """Which tenant holds ``device_id`` (platform admins only: reads across tenants)."""
    cur = await conn.execute("select * from platform_device_holder(%s)", (device_id,))
    row = await cur.fetchone()
    return Holder(device_id, *row) if row else None


async def release_device(
    conn: Conn, device_id: str, to_tenant: str | None
) -> tuple[str, str] | None:
    """Free ``device_id`` (platform admins only): its holder keeps its record and history
    under an archive id, returned with the holder; the id is then unregistered, or in
    stock in ``to_tenant``. None if the id is not registered."""
    try:
        cur = await conn.execute(
            "select from_tenant, archived_as from platform_release_device(%s, %s)",
            (device_id, to_tenant),
        )
    except psycopg.errors.ForeignKeyViolation:
        raise RegistryError(f"no tenant {to_tenant!r}", 422) from None
    row = await cur.fetchone()
    return (row[0], row[1]) if row else None


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


async def _no_move_under_way(conn: Conn, device_id: str) -> None:
    """A device that goes along with an accepted move (#19.2) is not returned or retired
    until the move is cancelled: its assignments are already made on both sides."""
    move = await (
        await conn.execute(
            "select id from person_moves where status = 'accepted' and %s = any(device_ids)",
            (device_id,),
        )
    ).fetchone()
    if move is not None:
        raise RegistryError(f"the device goes along with move {move[0]}, accepted by the "
                            "receiving municipality; cancel the move first")  # fmt: skip


async def return_device(conn: Conn, device_id: str, at: datetime) -> None:
    """The person gives the device back: their assignment ends at ``at``."""
    _, status = await _lock_device(conn, device_id)
    if status != "active":
        raise RegistryError(f"device is {status}, not active")
    await _no_move_under_way(conn, device_id)
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
    await _no_move_under_way(conn, device_id)
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
            " d.registered_at, a.person_id, s.last_seen, s.battery_percent, s.firmware, s.online,"
            " a.unit_id"
            " from devices d join device_models m on m.id = d.model_id"
            " left join assignments a on a.device_id = d.id"
            " and (a.valid_to is null or a.valid_to > now())"  # ends ahead: a move (#19.2)
            " left join api_device_state s on s.device_id = d.id"
            " where (%s::text is null or d.status = %s) order by d.id",
            (status, status),
        )
        return await cur.fetchall()
