-- Registry: tenants (huvudman), persons, device models, devices, assignments.
-- Tenant isolation for the API role (wg_api) is enforced here with row-level security.

do $$ begin
  if not exists (select from pg_roles where rolname = 'wg_api') then
    create role wg_api login nosuperuser nobypassrls noinherit;
  end if;
end $$;

create table tenants (
    id          text primary key check (id ~ '^[a-z0-9][a-z0-9-]{1,39}$'),
    name        text not null check (length(name) between 1 and 200),
    kind        text not null check (kind in ('municipality', 'region')),
    org_number  text not null unique check (org_number ~ '^[0-9]{6}-[0-9]{4}$'),
    created_at  timestamptz not null default now()
);

create table persons (
    id              uuid primary key default gen_random_uuid(),
    tenant_id       text not null references tenants(id),
    ref             text not null check (length(ref) between 1 and 64),
    pin_ciphertext  bytea,
    pin_key_id      text,
    care_notes      text not null default '',
    created_at      timestamptz not null default now(),
    unique (tenant_id, ref),
    check ((pin_ciphertext is null) = (pin_key_id is null))
);
comment on column persons.ref is 'Pseudonymous reference shown to staff and sent with alarms.';
comment on column persons.pin_ciphertext is 'Personal identity number, AES-GCM; never logged.';

create table device_models (
    id                    text primary key check (id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    vendor                text not null,
    model                 text not null,
    device_type           text not null
        check (device_type in ('gps_alarm', 'scale', 'blood_pressure_monitor', 'door_lock')),
    heartbeat_interval_s  integer not null check (heartbeat_interval_s between 5 and 86400),
    unique (vendor, model)
);

create table devices (
    id                 text primary key check (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    tenant_id          text not null references tenants(id),
    model_id           text not null references device_models(id),
    serial             text,
    status             text not null default 'in_stock'
        check (status in ('in_stock', 'active', 'returned', 'retired')),
    registered_at      timestamptz not null default now(),
    status_changed_at  timestamptz not null default now()
);
create index devices_tenant_status on devices (tenant_id, status);

create table assignments (
    id          bigint generated always as identity primary key,
    tenant_id   text not null references tenants(id),
    device_id   text not null references devices(id),
    person_id   uuid not null references persons(id),
    valid_from  timestamptz not null,
    valid_to    timestamptz,
    check (valid_to is null or valid_to > valid_from)
);
create unique index assignments_one_open on assignments (device_id) where valid_to is null;
create index assignments_device_time on assignments (device_id, valid_from);
create index assignments_person on assignments (person_id);

-- A device is held by at most one person at any instant (no btree_gist needed).
create function assignments_no_overlap() returns trigger language plpgsql as $$
begin
    if exists (
        select 1 from assignments a
        where a.device_id = new.device_id and a.id <> new.id
          and tstzrange(a.valid_from, a.valid_to) && tstzrange(new.valid_from, new.valid_to)
    ) then
        raise exception 'assignment of device % overlaps an existing assignment', new.device_id
            using errcode = 'exclusion_violation';
    end if;
    return new;
end $$;
create trigger assignments_no_overlap before insert or update on assignments
    for each row execute function assignments_no_overlap();

-- The gateway keeps the registry in memory and reloads a device when it changes.
create function registry_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_registry', coalesce(new.device_id, old.device_id));
    return null;
end $$;
create function devices_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_registry', coalesce(new.id, old.id));
    return null;
end $$;
create trigger devices_notify after insert or update or delete on devices
    for each row execute function devices_notify();
create trigger assignments_notify after insert or update or delete on assignments
    for each row execute function registry_notify();

-- Row-level security: the API role sees only the tenant set in its transaction
-- (set_config('wg.tenant_id', ..., true)). FORCE makes it apply to the owner too except
-- superusers; the gateway's own role is the owner and writes across tenants by design.
alter table tenants enable row level security;
alter table persons enable row level security;
alter table devices enable row level security;
alter table assignments enable row level security;

create policy tenant_isolation on tenants to wg_api
    using (id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on persons to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on devices to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on assignments to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));

grant select on tenants to wg_api;
grant select, insert, update on persons, devices, assignments to wg_api;
grant select on device_models to wg_api;

-- Creating a tenant is a platform operation; the API calls this only for platform_admin.
create function create_tenant(p_id text, p_name text, p_kind text, p_org text)
returns void language sql security definer set search_path = public as $$
    insert into tenants (id, name, kind, org_number) values (p_id, p_name, p_kind, p_org);
$$;
revoke all on function create_tenant(text, text, text, text) from public;
grant execute on function create_tenant(text, text, text, text) to wg_api;

create function register_device_model(
    p_id text, p_vendor text, p_model text, p_type text, p_interval integer
) returns void language sql security definer set search_path = public as $$
    insert into device_models (id, vendor, model, device_type, heartbeat_interval_s)
    values (p_id, p_vendor, p_model, p_type, p_interval);
$$;
revoke all on function register_device_model(text, text, text, text, integer) from public;
grant execute on function register_device_model(text, text, text, text, integer) to wg_api;
