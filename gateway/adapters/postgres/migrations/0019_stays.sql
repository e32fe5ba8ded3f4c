-- A temporary stay in another municipality (issue #19.3; docs/stays.md).
--
-- Two municipalities agree, as data, that residents of one (home) may stay in the other
-- (host) with their alarms routed to the host's team on duty meanwhile. The home proposes,
-- the host's tenant admin accepts, either ends it: neither side alone can make another
-- tenant receive alarms or see data. A stay (one resident of the home, in the host, from
-- an instant to an instant) is recorded by the home under an accepted agreement, and can
-- be cut short. The workers hold the stays in memory (LISTEN wg_stays); the host reads
-- its guests, their alarms and positions inside the stay only through the functions
-- below, which check the stay (the host has no other read of the home's rows).

-- 1. Agreements between two municipalities.
create table stay_agreements (
    id           uuid primary key default gen_random_uuid(),
    home_tenant  text not null references tenants (id),
    host_tenant  text not null references tenants (id),
    proposed_at  timestamptz not null default now(),
    proposed_by  text not null check (length(proposed_by) between 1 and 200),
    accepted_at  timestamptz,
    accepted_by  text,
    ended_at     timestamptz,
    ended_by     text,
    ended_tenant text references tenants (id),
    check (home_tenant <> host_tenant),
    check ((accepted_at is null) = (accepted_by is null)),
    check ((ended_at is null) = (ended_by is null))
);
-- One agreement in force (proposed or accepted) per pair of municipalities and direction.
create unique index stay_agreements_one_open on stay_agreements (home_tenant, host_tenant)
    where ended_at is null;

alter table stay_agreements enable row level security;
create policy either_side_reads on stay_agreements for select to wg_api
    using (home_tenant = current_setting('wg.tenant_id', true)
           or host_tenant = current_setting('wg.tenant_id', true));
create policy worker_reads on stay_agreements for select to wg_worker using (true);
grant select on stay_agreements to wg_api;
grant select on stay_agreements to wg_worker;

-- 2. Stays: a resident of the home tenant (tenant_id) in the host, [starts_at, ends_at).
create table stays (
    id            uuid primary key default gen_random_uuid(),
    tenant_id     text not null references tenants (id),
    person_id     uuid not null,
    host_tenant   text not null references tenants (id),
    agreement_id  uuid not null references stay_agreements (id),
    starts_at     timestamptz not null,
    ends_at       timestamptz not null,
    recorded_at   timestamptz not null default now(),
    recorded_by   text not null check (length(recorded_by) between 1 and 200),
    cut_at        timestamptz,
    cut_by        text,
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    check (ends_at >= starts_at),
    check (tenant_id <> host_tenant)
);
create index stays_person on stays (person_id, starts_at);
create index stays_host on stays (host_tenant, ends_at);
create index stays_ends on stays (ends_at);

alter table stays enable row level security;
-- The home tenant reads its residents' stays, records them under an accepted agreement
-- in force with that host, and cuts them short (ends_at, cut_at, cut_by only).
create policy home_reads on stays for select to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true));
create policy home_records on stays for insert to wg_api
    with check (tenant_id = current_setting('wg.tenant_id', true)
                and exists (select 1 from stay_agreements a
                            where a.id = agreement_id and a.home_tenant = tenant_id
                              and a.host_tenant = stays.host_tenant
                              and a.accepted_at is not null and a.ended_at is null));
create policy home_cuts on stays for update to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on stays for select to wg_worker using (true);
grant select, insert on stays to wg_api;
grant update (ends_at, cut_at, cut_by) on stays to wg_api;
grant select on stays to wg_worker;

-- 3. The agreement's steps; each checks which side the caller's tenant is.
create function propose_stay_agreement(p_host text, p_actor text)
returns uuid language plpgsql security definer set search_path = public, pg_catalog, pg_temp as $$
declare
    v_home text := current_setting('wg.tenant_id', true);
    v_id uuid;
begin
    if not exists (select 1 from tenants where id = p_host and kind = 'municipality') then
        raise exception 'no municipality %', p_host using errcode = 'no_data_found';
    end if;
    if not exists (select 1 from tenants where id = v_home and kind = 'municipality') then
        raise exception 'only a municipality proposes a stay agreement'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if p_host = v_home then
        raise exception 'an agreement is with another municipality'
            using errcode = 'check_violation';
    end if;
    insert into stay_agreements (home_tenant, host_tenant, proposed_by)
        values (v_home, p_host, p_actor) returning id into v_id;
    return v_id;
end $$;

create function accept_stay_agreement(p_id uuid, p_actor text)
returns boolean language plpgsql security definer set search_path = public, pg_catalog, pg_temp as $$
begin
    update stay_agreements set accepted_at = now(), accepted_by = p_actor
     where id = p_id and host_tenant = current_setting('wg.tenant_id', true)
       and accepted_at is null and ended_at is null;
    return found;
end $$;

-- Either side ends it; stays under it that have not ended are cut short now (an upcoming
-- one is left without a window).
create function end_stay_agreement(p_id uuid, p_actor text)
returns boolean language plpgsql security definer set search_path = public, pg_catalog, pg_temp as $$
declare
    v_tenant text := current_setting('wg.tenant_id', true);
begin
    update stay_agreements
       set ended_at = now(), ended_by = p_actor, ended_tenant = v_tenant
     where id = p_id and ended_at is null
       and v_tenant in (home_tenant, host_tenant);
    if not found then
        return false;
    end if;
    update stays set ends_at = greatest(starts_at, now()), cut_at = now(),
                     cut_by = p_actor || ' (' || v_tenant || ': agreement ended)'
     where agreement_id = p_id and ends_at > now();
    return true;
end $$;

-- 4. The host's reads: its guests (current and upcoming), and a current guest's alarms
-- and positions inside the stay. Nothing else of the person.
create function guest_stays()
returns table (stay_id uuid, home_tenant text, home_name text, person_id uuid,
               person_ref text, starts_at timestamptz, ends_at timestamptz)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select s.id, s.tenant_id, t.name, s.person_id, p.ref, s.starts_at, s.ends_at
      from stays s
      join persons p on p.id = s.person_id and p.tenant_id = s.tenant_id
      join tenants t on t.id = s.tenant_id
     where s.host_tenant = current_setting('wg.tenant_id', true)
       and s.ends_at > now() and s.ends_at > s.starts_at
     order by s.starts_at, s.id;
$$;

-- The stay as the host may use it now: current (begun, not ended), hosted by the caller.
create function guest_stay(p_stay uuid)
returns table (stay_id uuid, home_tenant text, person_id uuid, person_ref text,
               starts_at timestamptz, ends_at timestamptz)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select s.id, s.tenant_id, s.person_id, p.ref, s.starts_at, s.ends_at
      from stays s
      join persons p on p.id = s.person_id and p.tenant_id = s.tenant_id
     where s.id = p_stay and s.host_tenant = current_setting('wg.tenant_id', true)
       and s.starts_at <= now() and now() < s.ends_at;
$$;

create function guest_alarms(p_stay uuid, p_limit integer)
returns table (id uuid, kind text, severity text, state text, device_id text,
               raised_at timestamptz, last_at timestamptz, occurrences integer,
               condition boolean, cleared_at timestamptz, acknowledged_by text,
               acknowledged_at timestamptz, resolved_by text, resolved_at timestamptz,
               outcome text, lat double precision, lon double precision, accuracy_m real,
               escalation_level integer)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select a.id, a.kind, a.severity, a.state, a.device_id, a.raised_at, a.last_at,
           a.occurrences, a.condition, a.cleared_at, a.acknowledged_by, a.acknowledged_at,
           a.resolved_by, a.resolved_at, a.outcome, a.lat, a.lon, a.accuracy_m,
           a.escalation_level
      from guest_stay(p_stay) s
      join alarms a on a.tenant_id = s.home_tenant and a.person_id = s.person_id
     where a.raised_at >= s.starts_at and a.raised_at < s.ends_at
     order by a.raised_at desc
     limit least(greatest(p_limit, 1), 1000);
$$;

create function guest_positions(p_stay uuid, p_since timestamptz, p_limit integer)
returns table (ts timestamptz, lat double precision, lon double precision, accuracy_m real)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select x.ts, x.lat, x.lon, x.accuracy_m
      from guest_stay(p_stay) s
      join positions x on x.tenant_id = s.home_tenant and x.person_id = s.person_id
     where x.ts >= greatest(s.starts_at, coalesce(p_since, s.starts_at))
       and x.ts < least(s.ends_at, now() + interval '5 minutes')
     order by x.ts desc
     limit least(greatest(p_limit, 1), 5000);
$$;

revoke all on function propose_stay_agreement(text, text), accept_stay_agreement(uuid, text),
    end_stay_agreement(uuid, text), guest_stays(), guest_stay(uuid),
    guest_alarms(uuid, integer), guest_positions(uuid, timestamptz, integer) from public;
grant execute on function propose_stay_agreement(text, text), accept_stay_agreement(uuid, text),
    end_stay_agreement(uuid, text), guest_stays(), guest_stay(uuid),
    guest_alarms(uuid, integer), guest_positions(uuid, timestamptz, integer) to wg_api;

-- 5. The workers follow every change (payload unused: they reload the stays).
create function stays_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_stays', tg_table_name);
    return null;
end $$;
create trigger stays_notify after insert or update or delete on stays
    for each statement execute function stays_notify();
create trigger stay_agreements_notify after insert or update or delete on stay_agreements
    for each statement execute function stays_notify();
