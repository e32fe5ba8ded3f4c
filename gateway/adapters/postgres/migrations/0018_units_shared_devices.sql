-- Units and shared devices (issue #19.4; docs/units.md).
--
-- A tenant's residential units and wards (units). A device may be assigned to a unit for
-- a period instead of to a person (verksamhetshjälpmedel: a shared scale on a ward, the
-- lock of a residential unit's door): an assignment holds a person or a unit, never both,
-- and the no-overlap rule of 0001 holds for both alike (one holder per device at any
-- instant). Residents of a unit identify themselves on a shared device with a tag (an
-- RFID/NFC tag, or a code picked on the device's display) that the message carries as
-- `resident_tag` (docs/contract.md); resident_tags says whose a tag was when, per tenant.
--
-- Time series: a unit's non-personal data (door events, unit alarms, device health) is
-- stored with unit_id and no person_id; a personal reading from a unit's device with a
-- known tag is stored on the person, with unit_id beside it. The columns are added
-- nullable, without defaults: allowed on native partitions and on TimescaleDB hypertables
-- with compression alike (ADD COLUMN and DROP NOT NULL are passed down to every chunk,
-- compressed or not). The tenant-filtered api_* views are recreated with the new column
-- at their end (CREATE OR REPLACE keeps their owner, options and grants).

-- 1. Units.
create table units (
    id          uuid primary key default gen_random_uuid(),
    tenant_id   text not null references tenants (id),
    name        text not null check (length(name) between 1 and 200),
    kind        text not null check (kind in ('residential_unit', 'ward')),
    created_at  timestamptz not null default now(),
    unique (tenant_id, name),
    unique (id, tenant_id)
);

alter table units enable row level security;
create policy tenant_isolation on units to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on units for select to wg_worker using (true);
grant select, insert, update on units to wg_api;
grant select on units to wg_worker;

-- 2. Assignments hold a person or a unit.
alter table assignments add column unit_id uuid;
alter table assignments
    add constraint assignments_unit_fk foreign key (unit_id, tenant_id)
        references units (id, tenant_id);
alter table assignments alter column person_id drop not null;
alter table assignments
    add constraint assignments_person_or_unit check (num_nonnulls(person_id, unit_id) = 1);
create index assignments_unit on assignments (unit_id) where unit_id is not null;

-- 3. Resident tags: whose a tag is, over time, per tenant.
create table resident_tags (
    id          bigint generated always as identity primary key,
    tenant_id   text not null references tenants (id),
    tag         text not null check (tag ~ '^[!-~]{1,64}$'),
    person_id   uuid not null,
    valid_from  timestamptz not null,
    valid_to    timestamptz,
    created_by  text not null check (length(created_by) between 1 and 200),
    created_at  timestamptz not null default now(),
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    check (valid_to is null or valid_to > valid_from)
);
create index resident_tags_tag on resident_tags (tenant_id, tag, valid_from);
create index resident_tags_person on resident_tags (person_id);

-- A tag names at most one person at any instant (in its tenant).
create function resident_tags_no_overlap() returns trigger language plpgsql as $$
begin
    if exists (
        select 1 from resident_tags t
        where t.tenant_id = new.tenant_id and t.tag = new.tag and t.id <> new.id
          and tstzrange(t.valid_from, t.valid_to) && tstzrange(new.valid_from, new.valid_to)
    ) then
        raise exception 'tag % is registered to someone else at that time', new.tag
            using errcode = 'exclusion_violation';
    end if;
    return new;
end $$;
create trigger resident_tags_no_overlap before insert or update on resident_tags
    for each row execute function resident_tags_no_overlap();

alter table resident_tags enable row level security;
create policy tenant_isolation on resident_tags to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on resident_tags for select to wg_worker using (true);
grant select, insert, update on resident_tags to wg_api;
grant select on resident_tags to wg_worker;

-- The workers keep units and tags in memory and reload them when they change.
create function units_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_units', coalesce(new.tenant_id, old.tenant_id));
    return null;
end $$;
create trigger units_notify after insert or update or delete on units
    for each row execute function units_notify();
create trigger resident_tags_notify after insert or update or delete on resident_tags
    for each row execute function units_notify();

-- 4. Time series: a unit beside (or instead of) the person.
alter table readings add column unit_id uuid;
alter table positions add column unit_id uuid;
alter table lock_events add column unit_id uuid;
alter table lock_events alter column person_id drop not null;
alter table device_alarms add column unit_id uuid;
alter table device_alarms alter column person_id drop not null;
alter table device_health add column unit_id uuid;
alter table command_replies add column unit_id uuid;

create index lock_events_unit_time on lock_events (tenant_id, unit_id, ts)
    where unit_id is not null;
create index device_alarms_unit_time on device_alarms (tenant_id, unit_id, ts)
    where unit_id is not null;
create index device_health_unit_time on device_health (tenant_id, unit_id, ts)
    where unit_id is not null;

create or replace view api_readings with (security_barrier) as
    select * from readings where tenant_id = current_setting('wg.tenant_id', true);
create or replace view api_positions with (security_barrier) as
    select * from positions where tenant_id = current_setting('wg.tenant_id', true);
create or replace view api_lock_events with (security_barrier) as
    select * from lock_events where tenant_id = current_setting('wg.tenant_id', true);
create or replace view api_device_alarms with (security_barrier) as
    select * from device_alarms where tenant_id = current_setting('wg.tenant_id', true);
create or replace view api_device_health with (security_barrier) as
    select * from device_health where tenant_id = current_setting('wg.tenant_id', true);

-- A unit's alarms are found by the unit named in their detail (gateway.worker.alarms).
create index alarms_unit on alarms (((detail -> 'unit') ->> 'id'), raised_at desc)
    where detail ? 'unit';

-- 5. Releasing a reading quarantined for want of a resident (no_resident_identified,
-- unknown_resident_tag): a tenant admin who has found out whose it was (the ward's own
-- records) stores it on that person, with the unit beside it. Only a weight, a blood
-- pressure or a position; only when the device was the unit's at the message's time;
-- only a person of the caller's tenant; once; written to quarantine_releases. Any other
-- reason goes to release_quarantined (0013) unchanged.
create function release_quarantined_resident(p_id bigint, p_person uuid, p_actor text)
returns table (person_id uuid, category text, table_name text, stored boolean,
               released_at timestamptz, released_by text, already boolean)
language plpgsql security definer set search_path = public, pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
    v_tenant  text := nullif(current_setting('wg.tenant_id', true), '');
    v_q       quarantine;
    v_rel     quarantine_releases;
    v_msg     jsonb;
    v_type    text;
    v_msg_id  text;
    v_ts      timestamptz;
    v_unit    uuid;
    v_table   text;
    v_category text;
    v_count   integer;
begin
    if v_tenant is null then
        raise exception 'no tenant set in this transaction' using errcode = 'insufficient_privilege';
    end if;
    select * into v_q from quarantine q where q.id = p_id and q.tenant_id = v_tenant for update;
    if not found then
        raise exception 'quarantined message % not found', p_id using errcode = 'no_data_found';
    end if;
    if v_q.reason not in ('no_resident_identified', 'unknown_resident_tag') then
        return query select * from release_quarantined(p_id, p_person, p_actor);
        return;
    end if;
    select * into v_rel from quarantine_releases r where r.quarantine_id = p_id;
    if found then
        if v_rel.person_id <> p_person then
            raise exception 'already released, to another person'
                using errcode = 'object_not_in_prerequisite_state';
        end if;
        return query select v_rel.person_id, v_rel.category, v_rel.table_name, v_rel.stored,
                            v_rel.released_at, v_rel.released_by, true;
        return;
    end if;
    if v_q.device_id is null or length(v_q.payload) <> v_q.payload_size then
        raise exception 'the payload was kept only in part (% of % bytes); it cannot be stored',
                        length(v_q.payload), v_q.payload_size
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if not exists (select 1 from persons p where p.id = p_person and p.tenant_id = v_tenant) then
        raise exception 'no person % in this tenant', p_person
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    v_msg := convert_from(v_q.payload, 'UTF8')::jsonb;
    v_type := v_msg ->> 'type';
    v_msg_id := v_msg ->> 'id';
    v_ts := (v_msg ->> 'ts')::timestamptz;
    if jsonb_typeof(v_msg) <> 'object' or v_msg -> 'v' <> '1'::jsonb or v_msg_id is null
            or v_ts is null then
        raise exception 'not a message of contract v1 with id and ts'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    select a.unit_id into v_unit from assignments a
        where a.device_id = v_q.device_id and a.tenant_id = v_tenant and a.unit_id is not null
          and a.valid_from <= v_ts and (a.valid_to is null or v_ts < a.valid_to);
    if v_unit is null then
        raise exception 'device % was not a unit''s at %: nothing to release it to',
                        v_q.device_id, v_ts
            using errcode = 'object_not_in_prerequisite_state';
    end if;

    begin
        case v_type
        when 'weight' then
            v_table := 'readings'; v_category := 'weight';
            insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                  kind, weight_kg, unit_id)
            values (v_tenant, p_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    'weight', (v_msg ->> 'kg')::real, v_unit)
            on conflict do nothing;
        when 'blood_pressure' then
            v_table := 'readings'; v_category := 'blood_pressure';
            insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                  kind, systolic_mmhg, diastolic_mmhg, pulse_bpm, unit_id)
            values (v_tenant, p_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    'blood_pressure', (v_msg ->> 'systolic_mmhg')::smallint,
                    (v_msg ->> 'diastolic_mmhg')::smallint, (v_msg ->> 'pulse_bpm')::smallint,
                    v_unit)
            on conflict do nothing;
        when 'position' then
            v_table := 'positions'; v_category := 'position';
            insert into positions (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                   lat, lon, accuracy_m, unit_id)
            values (v_tenant, p_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    (v_msg ->> 'lat')::float8, (v_msg ->> 'lon')::float8,
                    (v_msg ->> 'accuracy_m')::real, v_unit)
            on conflict do nothing;
        else
            raise exception 'a % message is not a personal reading; nothing to release', v_type
                using errcode = 'object_not_in_prerequisite_state';
        end case;
        get diagnostics v_count = row_count;
    exception when check_violation then  -- native partitions: none left for that time
        raise exception 'stamped %, older than what % keeps (its retention)', v_ts, v_table
            using errcode = 'object_not_in_prerequisite_state';
    end;

    insert into quarantine_releases (quarantine_id, tenant_id, person_id, category, table_name,
                                     stored, released_by)
    values (p_id, v_tenant, p_person, v_category, v_table, v_count > 0, p_actor)
    returning * into v_rel;
    return query select v_rel.person_id, v_rel.category, v_rel.table_name, v_rel.stored,
                        v_rel.released_at, v_rel.released_by, false;
end $$;
revoke all on function release_quarantined_resident(bigint, uuid, text) from public;
grant execute on function release_quarantined_resident(bigint, uuid, text) to wg_api;
