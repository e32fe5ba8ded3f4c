"""Bulk onboarding (issue #19.5): apply one parsed import file in one transaction.

Reads what the registry holds of the file's objects, lets ``gateway.domain.onboarding``
plan the changes, writes them set-based (one statement per kind) and reports per row. A
dry run, and a file with any error, is rolled back: nothing of it stays. Applying the
same file again finds everything ``unchanged``.

Called by the API (``POST /api/v1/imports``, on the request's tenant-scoped transaction)
and by ``welfare-gateway import`` (``import_at``, role wg_api with the tenant set).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import psycopg
from cryptography.exceptions import InvalidTag

from gateway.adapters.postgres import onboarding_queries as q
from gateway.domain import onboarding as ob
from gateway.support.pii import PinCipher

Conn = psycopg.AsyncConnection[Any]

NOT_AVAILABLE = ("this device id is not available; if it is yours, a platform administrator"
                 " can say where it is registered and release it")  # fmt: skip
RACED = ("the registry changed while the file was imported (another import or an API call"
         " at the same time); nothing was imported, run it again")  # fmt: skip


async def import_file(
    conn: Conn, tenant: str, parsed: ob.Parsed, *, dry_run: bool, may_add_models: bool,
    cipher: PinCipher | None, broker_identities: bool = False, actor: str = "import",
) -> ob.Report:  # fmt: skip
    """Plan and write ``parsed`` in a transaction of its own (a savepoint inside the
    caller's), kept only when applying a file without errors. ``actor``: who imports
    (recorded on resident tags)."""
    report: ob.Report | None = None
    try:
        async with conn.transaction():
            tenant_rows = any(r.kind is not ob.Kind.DEVICE_MODEL for r in parsed.rows)
            if tenant_rows and not await _tenant_exists(conn, tenant):  # models: the platform's
                missing = ob.RowError("file", None, "no such tenant")
                report = ob.Report.of(parsed, None, dry_run=dry_run, extra=[missing])
                raise psycopg.Rollback()
            stored = await _stored(conn, tenant, parsed, cipher)
            p = ob.plan(parsed, stored, may_add_models=may_add_models,
                        broker_identities=broker_identities)  # fmt: skip
            extra = await _write(conn, tenant, parsed, p, cipher, actor)
            report = ob.Report.of(parsed, p, dry_run=dry_run, extra=extra)
            if dry_run or not report.ok:
                raise psycopg.Rollback()
    except (psycopg.errors.UniqueViolation, psycopg.errors.ExclusionViolation,
            psycopg.errors.ForeignKeyViolation):  # fmt: skip
        report = ob.Report.of(parsed, None, dry_run=dry_run,
                              extra=[ob.RowError("file", None, RACED)])  # fmt: skip
    assert report is not None
    return report


async def import_at(
    url: str, tenant: str, parsed: ob.Parsed, *, dry_run: bool, cipher: PinCipher | None,
    broker_identities: bool = False,
) -> ob.Report:  # fmt: skip
    """``welfare-gateway import``: as role wg_api (``url``) with the tenant set, so that
    row-level security scopes it exactly as the API; whoever holds the database URL may
    add device models too."""
    conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    async with conn, conn.transaction():
        await conn.execute("select set_config('wg.tenant_id', %s, true)", (tenant,))
        return await import_file(conn, tenant, parsed, dry_run=dry_run, may_add_models=True,
                                 cipher=cipher, broker_identities=broker_identities)


async def _tenant_exists(conn: Conn, tenant: str) -> bool:
    row = await (await conn.execute(q.TENANT_EXISTS, {"tenant": tenant})).fetchone()
    return bool(row and row[0])


async def _stored(
    conn: Conn, tenant: str, parsed: ob.Parsed, cipher: PinCipher | None
) -> ob.Stored:
    stored = ob.Stored()
    for mid, vendor, model, device_type, heartbeat in await (
        await conn.execute(q.CATALOGUE)
    ).fetchall():
        stored.models[mid] = ob.StoredModel(mid, vendor, model, device_type, heartbeat)
        stored.model_ids_by_name[(vendor, model)] = mid
    people = {x.ref: x for x in parsed.fields(ob.PersonRow)}
    refs = sorted(set(people)
                  | {a.person_ref for a in parsed.fields(ob.AssignmentRow) if a.person_ref}
                  | {t.person_ref for t in parsed.fields(ob.ResidentTagRow)})  # fmt: skip
    if refs:
        rows = await (await conn.execute(q.PERSONS, {"tenant": tenant, "refs": refs})).fetchall()
        for ref, person_id, care_notes, blob, key_id in rows:
            wanted = people.get(ref)
            pin = None
            if blob is not None:
                pin = ""
                if wanted is not None and wanted.personal_identity_number and cipher:
                    pin = _decrypt(cipher, blob, key_id, person_id)
            stored.persons[ref] = ob.StoredPerson(person_id, care_notes, pin)
    ids = sorted({d.id for d in parsed.fields(ob.DeviceRow)}
                 | {a.device_id for a in parsed.fields(ob.AssignmentRow)})  # fmt: skip
    if ids:
        args = {"tenant": tenant, "ids": ids}
        for device_id, model_id, serial, status in await (
            await conn.execute(q.DEVICES, args)
        ).fetchall():
            stored.devices[device_id] = ob.StoredDevice(model_id, serial, status)
        for device_id, person_id, valid_from, unit_id in await (
            await conn.execute(q.OPEN_ASSIGNMENTS, args)
        ).fetchall():
            stored.open[device_id] = ob.Holding(person_id, valid_from, unit_id)
        for device_id, ended in await (await conn.execute(q.HELD_UNTIL, args)).fetchall():
            stored.held_until[device_id] = ended
    # units and resident tags (#19.4, docs/units.md)
    names = sorted({u.name for u in parsed.fields(ob.UnitRow)}
                   | {a.unit_name for a in parsed.fields(ob.AssignmentRow) if a.unit_name})
    if names:
        for name, unit_id, kind in await (
            await conn.execute(q.UNITS, {"tenant": tenant, "names": names})
        ).fetchall():
            stored.units[name] = ob.StoredUnit(unit_id, kind)
    tags = sorted({t.tag for t in parsed.fields(ob.ResidentTagRow)})
    if tags:
        args = {"tenant": tenant, "tags": tags}
        for tag, person_id, valid_from in await (
            await conn.execute(q.OPEN_TAGS, args)
        ).fetchall():
            stored.tags[tag] = ob.TagHolding(person_id, valid_from)
        for tag, ended in await (await conn.execute(q.TAG_UNTIL, args)).fetchall():
            stored.tag_until[tag] = ended
    return stored


def _decrypt(cipher: PinCipher, blob: bytes, key_id: str, person_id: UUID) -> str:
    try:
        return cipher.decrypt(blob, key_id, str(person_id))
    except (KeyError, InvalidTag):
        return ""  # not readable with the configured keys: not the same number


async def _write(
    conn: Conn, tenant: str, parsed: ob.Parsed, p: ob.Plan, cipher: PinCipher | None,
    actor: str,
) -> list[ob.RowError]:  # fmt: skip
    """Write what the plan adds; the errors only a write finds (a device id another
    tenant holds). Assignments are written only when nothing else failed (they need
    their devices and persons)."""
    if p.models:
        await conn.execute(q.ADD_MODELS, {
            "ids": [m.id for m in p.models], "vendors": [m.vendor for m in p.models],
            "models": [m.model for m in p.models],
            "types": [m.device_type for m in p.models],
            "heartbeats": [m.heartbeat_interval_s for m in p.models],
        })  # fmt: skip
    if p.persons:
        ids = [uuid4() for _ in p.persons]
        await conn.execute(q.ADD_PERSONS, {
            "tenant": tenant, "ids": ids, "refs": [x.ref for x in p.persons],
            "care_notes": [x.care_notes or "" for x in p.persons],
        })  # fmt: skip
        pins = [(i, x.personal_identity_number) for i, x in zip(ids, p.persons, strict=True)
                if x.personal_identity_number]  # fmt: skip
        if pins:
            assert cipher is not None  # parse refuses identity numbers without keys
            sealed = [cipher.encrypt(digits, str(i)) for i, digits in pins]
            await conn.execute(q.SET_PINS, {
                "tenant": tenant, "ids": [i for i, _ in pins],
                "pins": [blob for blob, _ in sealed], "key_ids": [k for _, k in sealed],
            })  # fmt: skip
    if p.units:
        await conn.execute(q.ADD_UNITS, {"tenant": tenant, "names": [u.name for u in p.units],
                                         "kinds": [u.unit_kind for u in p.units]})  # fmt: skip
    if p.tags:
        await conn.execute(q.ADD_TAGS, {
            "tenant": tenant, "actor": actor, "tags": [t.tag for t in p.tags],
            "refs": [t.person_ref for t in p.tags],
            "valid_from": [t.valid_from.isoformat() if t.valid_from else "" for t in p.tags],
        })  # fmt: skip
    errors: list[ob.RowError] = []
    taken: dict[str, ob.Row] = {}
    if p.devices:
        cur = await conn.execute(q.ADD_DEVICES, {
            "tenant": tenant, "ids": [d.id for _, d in p.devices],
            "models": [d.model_id for _, d in p.devices],
            "serials": [d.serial or "" for _, d in p.devices],
        })  # fmt: skip
        added = {row[0] for row in await cur.fetchall()}
        for row, d in p.devices:
            if d.id not in added:
                taken[d.id] = row
                errors.append(ob.RowError(row.where, "id", NOT_AVAILABLE))
    for row in parsed.of(ob.Kind.ASSIGNMENT):
        assert isinstance(row.fields, ob.AssignmentRow)
        device_row = taken.get(row.fields.device_id)
        if device_row is not None:
            errors.append(ob.RowError(row.where, "device_id",
                                      f"the device's row ({device_row.where}) has an error"))
    to_persons = [a for a in p.assignments if a.person_ref is not None]
    to_units = [a for a in p.assignments if a.unit_name is not None]
    if to_persons and not errors and not p.errors and not parsed.errors:
        await conn.execute(q.ADD_ASSIGNMENTS, {
            "tenant": tenant, "devices": [a.device_id for a in to_persons],
            "refs": [a.person_ref for a in to_persons],
            "valid_from": [a.valid_from.isoformat() if a.valid_from else ""
                           for a in to_persons],
        })  # fmt: skip
    if to_units and not errors and not p.errors and not parsed.errors:
        await conn.execute(q.ADD_UNIT_ASSIGNMENTS, {
            "tenant": tenant, "devices": [a.device_id for a in to_units],
            "names": [a.unit_name for a in to_units],
            "valid_from": [a.valid_from.isoformat() if a.valid_from else ""
                           for a in to_units],
        })  # fmt: skip
    return errors
