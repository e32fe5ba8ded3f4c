-- Alarms (current state) and their events (every transition), written from the
-- gateway's durable journal; safe zones and vital-sign limits per person.

create table alarms (
    id                uuid primary key,
    tenant_id         text not null references tenants(id),
    kind              text not null,
    severity          text not null check (severity in ('critical', 'high', 'medium', 'low')),
    device_id         text not null,
    person_id         uuid,
    person_ref        text,
    subject           text not null,
    state             text not null check (state in ('raised', 'acknowledged', 'resolved')),
    raised_at         timestamptz not null,
    last_at           timestamptz not null,
    occurrences       integer not null,
    condition         boolean,
    cleared_at        timestamptz,
    acknowledged_by   text,
    acknowledged_at   timestamptz,
    resolved_by       text,
    resolved_at       timestamptz,
    outcome           text,
    lat               double precision,
    lon               double precision,
    accuracy_m        real,
    escalation_level  integer not null default 0,
    escalated_at      timestamptz,
    detail            jsonb not null default '{}',
    version           integer not null
);
-- One open alarm per subject and kind, also across gateway workers.
create unique index alarms_one_open on alarms (tenant_id, subject, kind) where state <> 'resolved';
create index alarms_tenant_state on alarms (tenant_id, state, raised_at desc);
create index alarms_person on alarms (person_id, raised_at desc);

create table alarm_events (
    id         uuid primary key,
    alarm_id   uuid not null references alarms(id),
    tenant_id  text not null,
    seq        integer not null,
    type       text not null,
    at         timestamptz not null,
    actor      text,
    snapshot   jsonb not null,
    unique (alarm_id, seq)
);
create index alarm_events_tenant_at on alarm_events (tenant_id, at);

create table safe_zones (
    id          uuid primary key default gen_random_uuid(),
    tenant_id   text not null references tenants(id),
    person_id   uuid not null references persons(id),
    name        text not null check (length(name) between 1 and 100),
    shape       jsonb not null,
    windows     jsonb not null default '[]',
    timezone    text not null default 'Europe/Stockholm',
    created_at  timestamptz not null default now()
);
create index safe_zones_person on safe_zones (person_id);

create table person_limits (
    person_id       uuid primary key references persons(id),
    tenant_id       text not null references tenants(id),
    blood_pressure  jsonb,
    weight_gain     jsonb,
    updated_at      timestamptz not null default now()
);

create function rules_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_rules', coalesce(new.person_id, old.person_id)::text);
    return null;
end $$;
create trigger safe_zones_notify after insert or update or delete on safe_zones
    for each row execute function rules_notify();
create trigger person_limits_notify after insert or update or delete on person_limits
    for each row execute function rules_notify();
create function persons_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_rules', coalesce(new.id, old.id)::text);
    return null;
end $$;
create trigger persons_notify after insert or update on persons
    for each row execute function persons_notify();

alter table alarms enable row level security;
alter table alarm_events enable row level security;
alter table safe_zones enable row level security;
alter table person_limits enable row level security;

create policy tenant_isolation on alarms to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on alarm_events to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on safe_zones to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on person_limits to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));

-- Alarm state changes only through the gateway's alarm service (journal, then here).
grant select on alarms, alarm_events to wg_api;
grant select, insert, update, delete on safe_zones to wg_api;
grant select, insert, update on person_limits to wg_api;
