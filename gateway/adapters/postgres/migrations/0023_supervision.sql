-- Passive sensors, digital night supervision and passive alarms (issue #20;
-- docs/supervision.md).
--
-- 1. The passive sensors' device types (door contact, motion/presence, bed, floor mat).
-- 2. A person's decisions for each supervision service with the consent of the person and
--    of a cohabitant, and a validity period: the workers hold them in memory (LISTEN
--    wg_supervision) and refuse a sensor state or position without one at ingest.
-- 3. Supervision plans (agreed local check times, what counts as seen, the retry, who acts)
--    and passive-alarm rules (per person and time window).
-- 4. Every check and its result (the documentation the service needs: states only).
-- 5. The sensors' states (personal data of the person whose home it is, or a unit's).

-- 1. Device types --------------------------------------------------------------------
alter table device_models drop constraint device_models_device_type_check;
alter table device_models add constraint device_models_device_type_check
    check (device_type in ('gps_alarm', 'scale', 'blood_pressure_monitor', 'door_lock',
                           'door_sensor', 'motion_sensor', 'bed_sensor', 'floor_mat'));
-- The demo's and the simulator's sensor models (gateway/entrypoints/demo.py MODELS), as
-- migration 0011 did for the others: `welfare-gateway simulate --register` of the
-- night_supervision scenario works with a tenant administrator's token.
insert into device_models (id, vendor, model, device_type, heartbeat_interval_s) values
    ('demo-door', 'Demo Vendor', 'Door 1', 'door_sensor', 300),
    ('demo-pir', 'Demo Vendor', 'PIR 1', 'motion_sensor', 300),
    ('demo-bed', 'Demo Vendor', 'Bed 1', 'bed_sensor', 300),
    ('demo-mat', 'Demo Vendor', 'Mat 1', 'floor_mat', 300)
on conflict do nothing;

-- 2. Decisions and consents ----------------------------------------------------------
create table supervision_decisions (
    id                     uuid primary key default gen_random_uuid(),
    tenant_id              text not null references tenants (id),
    person_id              uuid not null,
    service                text not null
        check (service in ('gps_positioning', 'night_supervision', 'passive_alarms')),
    valid_from             timestamptz not null,
    valid_to               timestamptz,
    -- the person's consent, documented (when it was given)
    person_consent_at      timestamptz not null,
    -- the person lives with someone: then the cohabitant's consent is needed as well
    has_cohabitant         boolean not null default false,
    cohabitant_consent_at  timestamptz,
    recorded_at            timestamptz not null default now(),
    recorded_by            text not null check (length(recorded_by) between 1 and 200),
    withdrawn_at           timestamptz,
    withdrawn_by           text,
    withdrawn_reason       text check (length(withdrawn_reason) <= 500),
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    check (valid_to is null or valid_to > valid_from),
    check ((withdrawn_at is null) = (withdrawn_by is null))
);
create index supervision_decisions_person on supervision_decisions (person_id, service);

alter table supervision_decisions enable row level security;
create policy tenant_rows on supervision_decisions for all to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on supervision_decisions for select to wg_worker using (true);
grant select, insert on supervision_decisions to wg_api;
grant update (cohabitant_consent_at, withdrawn_at, withdrawn_by, withdrawn_reason)
    on supervision_decisions to wg_api;
grant select on supervision_decisions to wg_worker;

-- 3. Plans and passive-alarm rules ----------------------------------------------------
create table supervision_plans (
    id              uuid primary key default gen_random_uuid(),
    tenant_id       text not null references tenants (id),
    person_id       uuid not null,
    -- local times (Europe/Stockholm unless timezone says otherwise), 'HH:MM' or 'HH:MM:SS'
    check_times     text[] not null check (cardinality(check_times) between 1 and 48),
    timezone        text not null default 'Europe/Stockholm',
    seen            text not null check (seen in ('in_bed', 'motion', 'door_closed')),
    motion_minutes  integer check (motion_minutes between 1 and 240),
    retry_after_s   integer not null check (retry_after_s between 1 and 7200),
    team            text not null check (length(team) between 1 and 64),
    created_at      timestamptz not null default now(),
    created_by      text not null check (length(created_by) between 1 and 200),
    ended_at        timestamptz,
    ended_by        text,
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    check ((seen = 'motion') = (motion_minutes is not null))
);
create unique index supervision_plans_one_open on supervision_plans (person_id)
    where ended_at is null;

create table passive_rules (
    id            uuid primary key default gen_random_uuid(),
    tenant_id     text not null references tenants (id),
    person_id     uuid not null,
    kind          text not null
        check (kind in ('door_opened_at_night', 'out_of_bed', 'no_movement', 'floor_mat')),
    window_start  time not null,
    window_end    time not null,
    minutes       integer check (minutes between 1 and 1440),
    timezone      text not null default 'Europe/Stockholm',
    created_at    timestamptz not null default now(),
    created_by    text not null check (length(created_by) between 1 and 200),
    ended_at      timestamptz,
    ended_by      text,
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    check ((kind in ('out_of_bed', 'no_movement')) = (minutes is not null))
);
create index passive_rules_person on passive_rules (person_id) where ended_at is null;

alter table supervision_plans enable row level security;
alter table passive_rules enable row level security;
create policy tenant_rows on supervision_plans for all to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on supervision_plans for select to wg_worker using (true);
create policy tenant_rows on passive_rules for all to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on passive_rules for select to wg_worker using (true);
grant select, insert on supervision_plans, passive_rules to wg_api;
grant update (ended_at, ended_by) on supervision_plans, passive_rules to wg_api;
grant select on supervision_plans, passive_rules to wg_worker;

-- The workers follow every change (small tables: each change reloads them whole).
create function supervision_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_supervision', tg_table_name);
    return null;
end $$;
create trigger supervision_decisions_notify
    after insert or update or delete on supervision_decisions
    for each statement execute function supervision_notify();
create trigger supervision_plans_notify after insert or update or delete on supervision_plans
    for each statement execute function supervision_notify();
create trigger passive_rules_notify after insert or update or delete on passive_rules
    for each statement execute function supervision_notify();

-- 4. The checks: one row per attempt (1: at the agreed time; 2: the retry) ------------
create table supervision_checks (
    id            bigint generated always as identity primary key,
    tenant_id     text not null references tenants (id),
    person_id     uuid not null,
    plan_id       uuid not null references supervision_plans (id),
    planned_at    timestamptz not null,
    local_time    text not null,
    attempt       smallint not null check (attempt in (1, 2)),
    result        text not null check (result in ('ok', 'retried', 'not_ok', 'failed')),
    evaluated_at  timestamptz not null,
    -- what the sensors showed: states and their times only (no images, nothing else)
    seen          jsonb not null default '{}',
    reason        text,
    alarm_id      uuid,
    unique (plan_id, planned_at, attempt)
);
create index supervision_checks_tenant on supervision_checks (tenant_id, planned_at);

alter table supervision_checks enable row level security;
create policy tenant_reads on supervision_checks for select to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_rows on supervision_checks for all to wg_worker using (true)
    with check (true);
grant select on supervision_checks to wg_api;
grant select, insert on supervision_checks to wg_worker;

-- 5. The sensors' states -------------------------------------------------------------
create table sensor_events (
    tenant_id    text not null references tenants (id),
    person_id    uuid,
    device_id    text not null,
    msg_id       text not null,
    ts           timestamptz not null,
    received_at  timestamptz not null,
    kind         text not null check (kind in ('door', 'motion', 'bed', 'floor_mat')),
    state        text not null,
    unit_id      uuid,
    unique (device_id, msg_id, ts)
);
create index sensor_events_person on sensor_events (person_id, ts);
create index sensor_events_device on sensor_events (device_id, ts);

alter table sensor_events enable row level security;
create policy worker_rows on sensor_events for all to wg_worker using (true) with check (true);
grant select, insert on sensor_events to wg_worker;

create view api_sensor_events with (security_barrier) as
    select * from sensor_events where tenant_id = current_setting('wg.tenant_id', true);
grant select on api_sensor_events to wg_api;
