-- Consent records and the tamper-evident access log.
--
-- A region's clinician works in the region's tenant and cannot see the municipality's
-- rows under row-level security. Consented reads go through SECURITY DEFINER functions
-- that check, in the database, that a consent for that organisation and category is
-- valid now and not withdrawn, and that return only data from inside its validity.

create table consents (
    id             uuid primary key default gen_random_uuid(),
    tenant_id      text not null references tenants(id),
    person_id      uuid not null references persons(id),
    recipient_org  text not null check (recipient_org ~ '^[0-9]{6}-[0-9]{4}$'),
    purpose        text not null check (length(purpose) between 1 and 500),
    categories     text[] not null check (
        cardinality(categories) > 0
        and categories <@ array['weight', 'blood_pressure', 'position', 'lock_events', 'alarms']
    ),
    valid_from     timestamptz not null,
    valid_to       timestamptz,
    legal_basis    text not null check (length(legal_basis) between 1 and 200),
    recorded_by    text not null,
    recorded_at    timestamptz not null default now(),
    withdrawn_at   timestamptz,
    withdrawn_by   text,
    check (valid_to is null or valid_to > valid_from)
);
create index consents_person on consents (person_id, recipient_org);

alter table consents enable row level security;
create policy tenant_isolation on consents to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
grant select, insert on consents to wg_api;
grant update (withdrawn_at, withdrawn_by) on consents to wg_api;

-- The consents a recipient organisation holds for a person (any tenant).
create function consents_for(p_person uuid, p_org text)
returns setof consents language sql stable security definer set search_path = public as $$
    select * from consents where person_id = p_person and recipient_org = p_org;
$$;
revoke all on function consents_for(uuid, text) from public;
grant execute on function consents_for(uuid, text) to wg_api;

-- The person's owning tenant (for a consented read by another organisation).
create function person_owner(p_person uuid)
returns text language sql stable security definer set search_path = public as $$
    select tenant_id from persons where id = p_person;
$$;
revoke all on function person_owner(uuid) from public;
grant execute on function person_owner(uuid) to wg_api;

-- Weight and blood-pressure readings for a recipient organisation, only under a consent
-- valid now, and only from inside that consent's validity period.
create function consented_readings(
    p_person uuid, p_org text, p_kind text, p_from timestamptz, p_to timestamptz,
    p_after_ts timestamptz, p_after_device text, p_after_msg text, p_limit integer
) returns table (ts timestamptz, device_id text, msg_id text, weight_kg real,
                 systolic_mmhg smallint, diastolic_mmhg smallint, pulse_bpm smallint)
language sql stable security definer set search_path = public as $$
    select r.ts, r.device_id, r.msg_id, r.weight_kg, r.systolic_mmhg, r.diastolic_mmhg,
           r.pulse_bpm
    from readings r
    where r.person_id = p_person and r.kind = p_kind
      and exists (
          select 1 from consents c
          where c.person_id = p_person and c.recipient_org = p_org
            and p_kind = any (c.categories)
            and c.withdrawn_at is null
            and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
            and r.ts >= c.valid_from and (c.valid_to is null or r.ts < c.valid_to)
      )
      and (p_from is null or r.ts >= p_from)
      and (p_to is null or r.ts < p_to)
      and (p_after_ts is null or (r.ts, r.device_id, r.msg_id) > (p_after_ts, p_after_device, p_after_msg))
    order by r.ts, r.device_id, r.msg_id
    limit p_limit;
$$;
revoke all on function consented_readings(uuid, text, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) from public;
grant execute on function consented_readings(uuid, text, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) to wg_api;

-- Every read of personal data, allowed or denied. Append-only for every application role
-- (no UPDATE, DELETE or direct INSERT); each row carries sha256(previous hash || row),
-- so an edited or removed row breaks the chain (welfare-gateway access-log verify).
create table access_log (
    id            bigint generated always as identity primary key,
    at            timestamptz not null,
    actor         text not null,
    actor_org     text,
    actor_role    text not null,
    actor_tenant  text not null,
    owner_tenant  text,
    person_id     uuid,
    categories    text[] not null,
    purpose       text,
    outcome       text not null check (outcome in ('allowed', 'denied')),
    reason        text not null,
    request       text not null,
    prev_hash     bytea not null,
    hash          bytea not null
);
create index access_log_person on access_log (person_id, at);
create index access_log_owner on access_log (owner_tenant, at);

create function access_log_row_bytes(r access_log) returns bytea
language sql immutable as $$
    select convert_to(concat_ws(E'\x1f', r.id::text, to_char(r.at at time zone 'UTC',
        'YYYY-MM-DD"T"HH24:MI:SS.US'), r.actor, coalesce(r.actor_org, ''), r.actor_role,
        r.actor_tenant, coalesce(r.owner_tenant, ''), coalesce(r.person_id::text, ''),
        array_to_string(r.categories, ','), coalesce(r.purpose, ''), r.outcome, r.reason,
        r.request), 'UTF8');
$$;

create function append_access_log(
    p_actor text, p_actor_org text, p_actor_role text, p_actor_tenant text,
    p_owner_tenant text, p_person uuid, p_categories text[], p_purpose text,
    p_outcome text, p_reason text, p_request text
) returns bigint language plpgsql security definer set search_path = public as $$
declare
    v_prev bytea;
    v_row access_log;
begin
    perform pg_advisory_xact_lock(7741);  -- one writer at a time keeps the chain linear
    select hash into v_prev from access_log order by id desc limit 1;
    v_row.id := nextval(pg_get_serial_sequence('access_log', 'id'));
    v_row.at := clock_timestamp();
    v_row.actor := p_actor; v_row.actor_org := p_actor_org; v_row.actor_role := p_actor_role;
    v_row.actor_tenant := p_actor_tenant; v_row.owner_tenant := p_owner_tenant;
    v_row.person_id := p_person; v_row.categories := p_categories; v_row.purpose := p_purpose;
    v_row.outcome := p_outcome; v_row.reason := p_reason; v_row.request := p_request;
    v_row.prev_hash := coalesce(v_prev, '\x'::bytea);
    v_row.hash := sha256(v_row.prev_hash || access_log_row_bytes(v_row));
    insert into access_log overriding system value select (v_row).*;
    return v_row.id;
end $$;
revoke all on function append_access_log(text, text, text, text, text, uuid, text[], text,
    text, text, text) from public;
grant execute on function append_access_log(text, text, text, text, text, uuid, text[], text,
    text, text, text) to wg_api;

alter table access_log enable row level security;
-- Auditors of a municipality see the reads of its residents' data, and of their own staff.
create policy owner_or_actor on access_log for select to wg_api
    using (owner_tenant = current_setting('wg.tenant_id', true)
           or actor_tenant = current_setting('wg.tenant_id', true));
grant select on access_log to wg_api;
-- Nothing else: no insert (only through append_access_log), no update, no delete.
revoke insert, update, delete, truncate on access_log from public;
