"""SQL of the bulk import (issue #19.5): what the registry holds of a file's objects, and
the set-based writes (one statement per kind, arrays through ``unnest``).

Run as role wg_api with ``wg.tenant_id`` set (the API, and ``welfare-gateway import``):
row-level security scopes every statement to that tenant, and each statement names the
tenant too. The row triggers of migration 0001 notify ``wg_registry`` for every device
and assignment written, so the gateway's registry cache loads each imported device.
"""

from __future__ import annotations

TENANT_EXISTS = "select exists (select 1 from tenants where id = %(tenant)s)"

CATALOGUE = "select id, vendor, model, device_type, heartbeat_interval_s from device_models"

PERSONS = """
    select ref, id, care_notes, pin_ciphertext, pin_key_id from persons
    where tenant_id = %(tenant)s and ref = any(%(refs)s::text[])
"""

DEVICES = """
    select id, model_id, serial, status from devices
    where tenant_id = %(tenant)s and id = any(%(ids)s::text[])
"""

OPEN_ASSIGNMENTS = """
    select device_id, person_id, valid_from, unit_id from assignments
    where tenant_id = %(tenant)s and device_id = any(%(ids)s::text[]) and valid_to is null
"""

HELD_UNTIL = """
    select device_id, max(valid_to) from assignments
    where tenant_id = %(tenant)s and device_id = any(%(ids)s::text[]) and valid_to is not null
    group by device_id
"""

# Models through the SECURITY DEFINER function of migration 0001 (wg_api has no INSERT on
# the catalogue; the callers allow it to platform administrators only).
ADD_MODELS = """
    select register_device_model(m.id, m.vendor, m.model, m.device_type, m.heartbeat)
    from unnest(%(ids)s::text[], %(vendors)s::text[], %(models)s::text[], %(types)s::text[],
                %(heartbeats)s::integer[]) as m(id, vendor, model, device_type, heartbeat)
"""

ADD_PERSONS = """
    insert into persons (id, tenant_id, ref, care_notes)
    select p.id, %(tenant)s, p.ref, p.care_notes
    from unnest(%(ids)s::uuid[], %(refs)s::text[], %(care_notes)s::text[])
        as p(id, ref, care_notes)
"""

SET_PINS = """
    update persons set pin_ciphertext = u.pin, pin_key_id = u.key_id
    from unnest(%(ids)s::uuid[], %(pins)s::bytea[], %(key_ids)s::text[]) as u(id, pin, key_id)
    where persons.id = u.id and persons.tenant_id = %(tenant)s
"""

# A device id held by another tenant is skipped (not returned): device ids are global, and
# the import says "not available" without saying whose it is.
ADD_DEVICES = """
    insert into devices (id, tenant_id, model_id, serial)
    select d.id, %(tenant)s, d.model_id, nullif(d.serial, '')
    from unnest(%(ids)s::text[], %(models)s::text[], %(serials)s::text[])
        as d(id, model_id, serial)
    on conflict (id) do nothing
    returning id
"""

# Assign, then mark each assigned device active from the assignment's start (as
# registry_repo.assign_device does one at a time). An empty valid_from: now.
ADD_ASSIGNMENTS = """
    with a as (
        select a.device_id, p.id as person_id,
               coalesce(nullif(a.valid_from, '')::timestamptz, now()) as valid_from
        from unnest(%(devices)s::text[], %(refs)s::text[], %(valid_from)s::text[])
            as a(device_id, ref, valid_from)
        join persons p on p.tenant_id = %(tenant)s and p.ref = a.ref
    ), added as (
        insert into assignments (tenant_id, device_id, person_id, valid_from)
        select %(tenant)s, device_id, person_id, valid_from from a
        returning device_id, valid_from
    )
    update devices set status = 'active', status_changed_at = added.valid_from
    from added where devices.id = added.device_id
"""


# Units, unit assignments and resident tags (issue #19.4, docs/units.md).
UNITS = """
    select name, id, kind from units
    where tenant_id = %(tenant)s and name = any(%(names)s::text[])
"""

OPEN_TAGS = """
    select tag, person_id, valid_from from resident_tags
    where tenant_id = %(tenant)s and tag = any(%(tags)s::text[]) and valid_to is null
"""

TAG_UNTIL = """
    select tag, max(valid_to) from resident_tags
    where tenant_id = %(tenant)s and tag = any(%(tags)s::text[]) and valid_to is not null
    group by tag
"""

ADD_UNITS = """
    insert into units (tenant_id, name, kind)
    select %(tenant)s, u.name, u.kind
    from unnest(%(names)s::text[], %(kinds)s::text[]) as u(name, kind)
"""

ADD_UNIT_ASSIGNMENTS = """
    with a as (
        select a.device_id, u.id as unit_id,
               coalesce(nullif(a.valid_from, '')::timestamptz, now()) as valid_from
        from unnest(%(devices)s::text[], %(names)s::text[], %(valid_from)s::text[])
            as a(device_id, name, valid_from)
        join units u on u.tenant_id = %(tenant)s and u.name = a.name
    ), added as (
        insert into assignments (tenant_id, device_id, unit_id, valid_from)
        select %(tenant)s, device_id, unit_id, valid_from from a
        returning device_id, valid_from
    )
    update devices set status = 'active', status_changed_at = added.valid_from
    from added where devices.id = added.device_id
"""

ADD_TAGS = """
    insert into resident_tags (tenant_id, tag, person_id, valid_from, created_by)
    select %(tenant)s, t.tag, p.id, coalesce(nullif(t.valid_from, '')::timestamptz, now()),
           %(actor)s
    from unnest(%(tags)s::text[], %(refs)s::text[], %(valid_from)s::text[])
        as t(tag, ref, valid_from)
    join persons p on p.tenant_id = %(tenant)s and p.ref = t.ref
"""
