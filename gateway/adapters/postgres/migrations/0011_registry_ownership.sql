-- Who owns which identifier (security review #17.1 and #17.5; docs/security.md).
--
-- Device models are a platform-curated catalogue: every tenant reads every model, only a
-- platform administrator adds or changes one (the API checks the role; wg_api has no
-- INSERT or UPDATE on device_models, only these SECURITY DEFINER functions). A model
-- decides a device's type and heartbeat, i.e. which rules judge it, so a tenant must not
-- be able to (re)define one under another tenant's devices.
--
-- Staff key ids are per tenant: a lock belongs to one tenant and the gateway looks the key
-- a lock reports up in that tenant, so two municipalities may use the same key id and
-- neither can see, block or revoke the other's.
--
-- Device ids stay global: the MQTT topic devices/{id}/..., the broker username and a
-- device certificate's CN are the device id. A platform administrator can see which
-- tenant holds an id and release it (or hand it to another tenant); both are written to
-- the access log by the API.

-- 1. Staff keys: unique per tenant, no longer across tenants.
alter table staff_keys drop constraint staff_keys_pkey;
alter table staff_keys add primary key (tenant_id, key_id);

-- 2. Device models: the catalogue. register_device_model (0001) inserts a new model;
-- this changes one. A model's device type cannot change while devices use it (their
-- readings would change meaning); every device of the model is reloaded by the gateway.
-- Returns the number of devices of the model, or null if there is no such model.
create function change_device_model(
    p_id text, p_vendor text, p_model text, p_type text, p_interval integer
) returns integer language plpgsql security definer set search_path = public as $$
declare
    v_type text;
    v_devices integer;
begin
    select device_type into v_type from device_models where id = p_id for update;
    if not found then
        return null;
    end if;
    select count(*) into v_devices from devices where model_id = p_id;
    if v_type <> p_type and v_devices > 0 then
        raise exception 'device model % is used by % devices; its device type cannot change',
            p_id, v_devices using errcode = 'object_in_use';
    end if;
    update device_models
    set vendor = p_vendor, model = p_model, device_type = p_type,
        heartbeat_interval_s = p_interval
    where id = p_id;
    perform pg_notify('wg_registry', d.id) from devices d where d.model_id = p_id;
    return v_devices;
end $$;
revoke all on function change_device_model(text, text, text, text, integer) from public;
grant execute on function change_device_model(text, text, text, text, integer) to wg_api;

-- The demo's and the device simulator's models (gateway/demo.py MODELS), so that
-- `welfare-gateway simulate --register` works on any installation with a tenant
-- administrator's token, now that a tenant cannot add models.
insert into device_models (id, vendor, model, device_type, heartbeat_interval_s) values
    ('demo-gps', 'Demo Vendor', 'GPS 1', 'gps_alarm', 60),
    ('demo-scale', 'Demo Vendor', 'Scale 1', 'scale', 300),
    ('demo-bp', 'Demo Vendor', 'BP 1', 'blood_pressure_monitor', 300),
    ('demo-lock', 'Demo Vendor', 'Lock 1', 'door_lock', 120)
on conflict do nothing;

-- 3. Device ids: disputes, for platform administrators only (the API checks the role).
-- Which tenant holds a device id (no row: nobody).
create function platform_device_holder(p_id text)
returns table (tenant_id text, status text, model_id text, registered_at timestamptz,
               assignments bigint)
language sql stable security definer set search_path = public as $$
    select d.tenant_id, d.status, d.model_id, d.registered_at,
           (select count(*) from assignments a where a.device_id = d.id)
    from devices d where d.id = p_id;
$$;
revoke all on function platform_device_holder(text) from public;
grant execute on function platform_device_holder(text) to wg_api;

-- Free a device id: the holding tenant keeps its record and assignment history under an
-- archive id (status retired), the id itself is then unregistered, or registered in stock
-- for p_to_tenant when given (same model). Returns the holder and the archive id; no row
-- when the id is not registered.
create function platform_release_device(p_id text, p_to_tenant text)
returns table (from_tenant text, archived_as text)
language plpgsql security definer set search_path = public as $$
declare
    v_dev     devices;
    v_archive text;
    v_now     timestamptz := now();
begin
    select * into v_dev from devices where id = p_id for update;
    if not found then
        return;
    end if;
    if p_to_tenant is not null and not exists (select 1 from tenants where id = p_to_tenant) then
        raise exception 'no tenant %', p_to_tenant using errcode = 'foreign_key_violation';
    end if;
    loop  -- a random suffix: a name nobody can have registered in advance
        v_archive := left(p_id, 32) || '.released.'
            || to_char(v_now at time zone 'UTC', 'YYYYMMDDHH24MISS') || '.'
            || substr(md5(random()::text || clock_timestamp()::text), 1, 6);
        exit when not exists (select 1 from devices where id = v_archive);
    end loop;
    update assignments set valid_to = v_now
    where device_id = p_id and valid_to is null and valid_from < v_now;
    insert into devices (id, tenant_id, model_id, serial, status, registered_at,
                         status_changed_at)
    values (v_archive, v_dev.tenant_id, v_dev.model_id, v_dev.serial, 'retired',
            v_dev.registered_at, v_now);
    update assignments set device_id = v_archive where device_id = p_id;
    delete from device_state where device_id = p_id;
    delete from devices where id = p_id;
    if p_to_tenant is not null then
        insert into devices (id, tenant_id, model_id, status, registered_at, status_changed_at)
        values (p_id, p_to_tenant, v_dev.model_id, 'in_stock', v_now, v_now);
    end if;
    return query select v_dev.tenant_id, v_archive;
end $$;
revoke all on function platform_release_device(text, text) from public;
grant execute on function platform_release_device(text, text) to wg_api;
