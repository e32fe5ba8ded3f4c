-- Housing and payer (issue #19.1; docs/payer.md).
--
-- A person's housing form over time (own home, residential care, short-term stay), the
-- payer of each device assignment derived from it by a per-region rule table, and the
-- payer changes the workers have emitted (on the broker and to the aids centre's webhook).
-- Which municipality belongs to which region: tenants.region_id, set by a platform admin
-- (set_tenant_region). Dates are local dates in Europe/Stockholm; a form recorded from a
-- date holds from local midnight of that date until the next record of the person.

-- 1. The region a municipality belongs to (null: none recorded; the default rules apply).
alter table tenants add column region_id text references tenants (id);

create function set_tenant_region(p_tenant text, p_region text)
returns boolean language plpgsql security definer set search_path = public, pg_catalog, pg_temp as $$
declare
    v_kind text;
begin
    select kind into v_kind from tenants where id = p_tenant for update;
    if not found then
        return false;
    end if;
    if v_kind <> 'municipality' then
        raise exception 'tenant % is a %, only a municipality belongs to a region', p_tenant, v_kind
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if p_region is not null and not exists (
        select 1 from tenants where id = p_region and kind = 'region'
    ) then
        raise exception 'no region %', p_region using errcode = 'no_data_found';
    end if;
    update tenants set region_id = p_region where id = p_tenant;
    return true;
end $$;
revoke all on function set_tenant_region(text, text) from public;
grant execute on function set_tenant_region(text, text) to wg_api;

-- 2. Housing periods: one row per change of form; a row holds until the person's next.
create table housing_periods (
    id           bigint generated always as identity primary key,
    tenant_id    text not null references tenants (id),
    person_id    uuid not null,
    form         text not null
        check (form in ('own_home', 'residential_care', 'short_term_stay')),
    valid_from   date not null,
    recorded_at  timestamptz not null default now(),
    recorded_by  text not null check (length(recorded_by) between 1 and 200),
    foreign key (person_id, tenant_id) references persons (id, tenant_id),
    unique (person_id, valid_from)
);
create index housing_periods_from on housing_periods (valid_from);

alter table housing_periods enable row level security;
create policy tenant_isolation on housing_periods to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy worker_reads on housing_periods for select to wg_worker using (true);
grant select, insert on housing_periods to wg_api;
grant select on housing_periods to wg_worker;

-- 3. The payer per housing form, per region (no row: the default, gateway.domain.payer:
-- own_home -> region, residential_care and short_term_stay -> municipality). A region's
-- tenant admin writes its own; its municipalities' staff read them.
create table payer_rules (
    region_id   text not null references tenants (id),
    form        text not null
        check (form in ('own_home', 'residential_care', 'short_term_stay')),
    payer       text not null check (payer in ('region', 'municipality')),
    changed_at  timestamptz not null default now(),
    changed_by  text not null check (length(changed_by) between 1 and 200),
    primary key (region_id, form)
);

alter table payer_rules enable row level security;
create policy region_reads on payer_rules for select to wg_api
    using (region_id = current_setting('wg.tenant_id', true)
           or region_id in (select t.region_id from tenants t
                            where t.id = current_setting('wg.tenant_id', true)));
create policy region_inserts on payer_rules for insert to wg_api
    with check (region_id = current_setting('wg.tenant_id', true));
create policy region_updates on payer_rules for update to wg_api
    using (region_id = current_setting('wg.tenant_id', true))
    with check (region_id = current_setting('wg.tenant_id', true));
create policy worker_reads on payer_rules for select to wg_worker using (true);
grant select, insert, update on payer_rules to wg_api;
grant select on payer_rules to wg_worker;

-- 4. Emitted payer changes. The primary key is the idempotency guard: a change (an
-- assignment's payer changing on a date) is emitted by the worker whose insert wins, in
-- the transaction that publishes it, so once even with several workers or restarts.
-- The owning municipality and the region named read them (the region: changes of devices
-- it pays or paid for).
create table payer_changes (
    assignment_id   bigint not null,
    effective_date  date not null,
    tenant_id       text not null references tenants (id),
    region_id       text references tenants (id),
    device_id       text not null,
    person_id       uuid not null,
    from_form       text not null,
    to_form         text not null,
    from_payer      text not null check (from_payer in ('region', 'municipality')),
    to_payer        text not null check (to_payer in ('region', 'municipality')),
    recorded_at     timestamptz not null,
    late            boolean not null,
    emitted_at      timestamptz not null default now(),
    emitted_by      text not null,
    primary key (assignment_id, effective_date)
);
create index payer_changes_tenant_date on payer_changes (tenant_id, effective_date);
create index payer_changes_region_date on payer_changes (region_id, effective_date);

alter table payer_changes enable row level security;
create policy tenant_or_region_reads on payer_changes for select to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true)
           or region_id = current_setting('wg.tenant_id', true));
create policy worker_writes on payer_changes to wg_worker using (true) with check (true);
grant select on payer_changes to wg_api;
grant select, insert on payer_changes to wg_worker;
