-- Security review #17, finding 2: a device's own timestamp reached the previous holder.
--
-- The gateway no longer attributes personal data by the device's clock alone: a reading,
-- position, alarm or lock event stamped before the device's current assignment began is
-- quarantined with reason 'before_current_assignment' (gateway.domain.registry.bind),
-- whoever held the device then. A tenant admin reviews such rows
-- (GET /api/v1/quarantine?reason=before_current_assignment) and may release one: it is
-- then stored on the person who held the device at the message's time, once, and the
-- release is written to the access log (POST /api/v1/quarantine/{id}/release).
--
-- The API's role (wg_api) has no privilege on the time series. The release is this one
-- SECURITY DEFINER function: it takes nothing from the caller but the quarantine row's id,
-- the person the admin confirms and the admin's name; the message comes from the row a
-- worker wrote (wg_api cannot write quarantine), only of the caller's tenant, only with
-- reason 'before_current_assignment' (a message the gateway had decoded and validated
-- against the contract before refusing it), only with its whole payload, and is stored on
-- the holder at its time as the registry says, never on a person the caller chooses.

create table quarantine_releases (
    quarantine_id  bigint primary key references quarantine (id) on delete cascade,
    tenant_id      text not null,
    person_id      uuid not null,
    category       text not null,  -- as the access log and the readings API name it
    table_name     text not null,
    stored         boolean not null,  -- false: the same message was stored already
    released_at    timestamptz not null default now(),
    released_by    text not null
);
revoke all on quarantine_releases from public;

-- What the API lists beside api_quarantine: which rows were released, to whom, by whom.
create view api_quarantine_releases with (security_barrier) as
    select quarantine_id, tenant_id, person_id, category, table_name, stored, released_at,
           released_by
    from quarantine_releases where tenant_id = current_setting('wg.tenant_id', true);
grant select on api_quarantine_releases to wg_api;

-- Store one quarantined message on the person who held its device at its time.
-- Idempotent: a row released before is answered as it was (already = true), and the time
-- series' dedup index (device_id, msg_id, ts) keeps a message stored once even if the
-- gateway stored it meanwhile. Errors: no_data_found (not a row of this tenant),
-- object_not_in_prerequisite_state (not releasable: reason, cut payload, no holder at its
-- time, another holder than the one confirmed, older than the table's retention).
create function release_quarantined(p_id bigint, p_person uuid, p_actor text)
returns table (person_id uuid, category text, table_name text, stored boolean,
               released_at timestamptz, released_by text, already boolean)
language plpgsql security definer set search_path = public, pg_catalog as $$
#variable_conflict use_column
declare
    v_tenant  text := nullif(current_setting('wg.tenant_id', true), '');
    v_q       quarantine;
    v_rel     quarantine_releases;
    v_msg     jsonb;
    v_type    text;
    v_msg_id  text;
    v_ts      timestamptz;
    v_person  uuid;
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
    if v_q.reason <> 'before_current_assignment' then
        raise exception 'only messages quarantined as before_current_assignment can be '
                        'released; this one is %', v_q.reason
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if v_q.device_id is null or length(v_q.payload) <> v_q.payload_size then
        raise exception 'the payload was kept only in part (% of % bytes); it cannot be stored',
                        length(v_q.payload), v_q.payload_size
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

    select a.person_id into v_person from assignments a
        where a.device_id = v_q.device_id and a.tenant_id = v_tenant
          and a.valid_from <= v_ts and (a.valid_to is null or v_ts < a.valid_to);
    if v_person is null then
        raise exception 'no one held device % at %: nothing to release it to',
                        v_q.device_id, v_ts
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if v_person <> p_person then
        raise exception 'person % did not hold device % at %', p_person, v_q.device_id, v_ts
            using errcode = 'object_not_in_prerequisite_state';
    end if;

    begin
        case v_type
        when 'weight' then
            v_table := 'readings'; v_category := 'weight';
            insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                  kind, weight_kg)
            values (v_tenant, v_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    'weight', (v_msg ->> 'kg')::real)
            on conflict do nothing;
        when 'blood_pressure' then
            v_table := 'readings'; v_category := 'blood_pressure';
            insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                  kind, systolic_mmhg, diastolic_mmhg, pulse_bpm)
            values (v_tenant, v_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    'blood_pressure', (v_msg ->> 'systolic_mmhg')::smallint,
                    (v_msg ->> 'diastolic_mmhg')::smallint, (v_msg ->> 'pulse_bpm')::smallint)
            on conflict do nothing;
        when 'position' then
            v_table := 'positions'; v_category := 'position';
            insert into positions (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                   lat, lon, accuracy_m)
            values (v_tenant, v_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    (v_msg ->> 'lat')::float8, (v_msg ->> 'lon')::float8,
                    (v_msg ->> 'accuracy_m')::real)
            on conflict do nothing;
        when 'alarm' then
            -- history only: a released alarm is never dispatched
            v_table := 'device_alarms'; v_category := 'alarms';
            insert into device_alarms (tenant_id, person_id, device_id, msg_id, ts,
                                       received_at, kind, lat, lon, accuracy_m)
            values (v_tenant, v_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    v_msg ->> 'kind', (v_msg ->> 'lat')::float8, (v_msg ->> 'lon')::float8,
                    (v_msg ->> 'accuracy_m')::real)
            on conflict do nothing;
        when 'lock' then
            v_table := 'lock_events'; v_category := 'lock_events';
            insert into lock_events (tenant_id, person_id, device_id, msg_id, ts, received_at,
                                     action, key_id, method)
            values (v_tenant, v_person, v_q.device_id, v_msg_id, v_ts, v_q.received_at,
                    v_msg ->> 'action', v_msg ->> 'key_id', v_msg ->> 'method')
            on conflict do nothing;
        else
            raise exception 'a % message is not personal data; nothing to release', v_type
                using errcode = 'object_not_in_prerequisite_state';
        end case;
        get diagnostics v_count = row_count;
    exception when check_violation then  -- native partitions: none left for that time
        raise exception 'stamped %, older than what % keeps (its retention)', v_ts, v_table
            using errcode = 'object_not_in_prerequisite_state';
    end;

    insert into quarantine_releases (quarantine_id, tenant_id, person_id, category, table_name,
                                     stored, released_by)
    values (p_id, v_tenant, v_person, v_category, v_table, v_count > 0, p_actor)
    returning * into v_rel;
    return query select v_rel.person_id, v_rel.category, v_rel.table_name, v_rel.stored,
                        v_rel.released_at, v_rel.released_by, false;
end $$;
revoke all on function release_quarantined(bigint, uuid, text) from public;
grant execute on function release_quarantined(bigint, uuid, text) to wg_api;
