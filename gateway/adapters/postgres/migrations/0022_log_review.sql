-- Log review (loggkontroll) and a resident's log extract (loggutdrag): issue #21.2-3,
-- docs/log-review.md.
--
-- The flags themselves are not stored: gateway.domain.log_review computes them on demand
-- for a period from the access log and the context at the time (alarms, planned visits,
-- staff, consents). Stored here: each tenant's thresholds and working hours (no row: the
-- documented defaults), a staff member's own working hours (overriding the tenant's), and
-- the auditors' reviews of flags (each review is also access-logged by the API).

-- 1. Thresholds per tenant (tenant_admin or auditor sets them through the API).
create table log_review_settings (
    tenant_id               text primary key references tenants (id),
    many_residents          integer not null check (many_residents between 2 and 1000),
    many_window_minutes     integer not null check (many_window_minutes between 1 and 1440),
    grace_minutes           integer not null check (grace_minutes between 0 and 1440),
    consent_near_end_hours  integer not null check (consent_near_end_hours between 0 and 8760),
    work_weekdays           smallint[] not null check (
        cardinality(work_weekdays) between 1 and 7
        and work_weekdays <@ array[0, 1, 2, 3, 4, 5, 6]::smallint[]
    ),
    work_start              time not null,
    work_end                time not null,
    changed_at              timestamptz not null default now(),
    changed_by              text not null check (length(changed_by) between 1 and 200),
    check (work_start <> work_end)
);

alter table log_review_settings enable row level security;
create policy tenant_isolation on log_review_settings to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
grant select, insert, update on log_review_settings to wg_api;

-- 2. A staff member's own working hours (a night nurse's 21-07), weekdays 0 = Monday,
-- local time; end before start runs over midnight.
create table staff_working_hours (
    staff_id    uuid primary key,
    tenant_id   text not null references tenants (id),
    weekdays    smallint[] not null check (
        cardinality(weekdays) between 1 and 7 and weekdays <@ array[0, 1, 2, 3, 4, 5, 6]::smallint[]
    ),
    start_time  time not null,
    end_time    time not null,
    changed_at  timestamptz not null default now(),
    changed_by  text not null check (length(changed_by) between 1 and 200),
    foreign key (staff_id, tenant_id) references staff_members (id, tenant_id),
    check (start_time <> end_time)
);

alter table staff_working_hours enable row level security;
create policy tenant_isolation on staff_working_hours to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
grant select, insert, update, delete on staff_working_hours to wg_api;

-- 3. Reviews of flags: one per flag (its key names the rule and the access-log row).
create table log_review_marks (
    id           bigint generated always as identity primary key,
    tenant_id    text not null references tenants (id),
    flag_key     text not null check (length(flag_key) between 1 and 200),
    rule         text not null check (length(rule) between 1 and 64),
    reviewed_at  timestamptz not null default now(),
    reviewed_by  text not null check (length(reviewed_by) between 1 and 200),
    comment      text not null check (length(comment) between 1 and 2000),
    unique (tenant_id, flag_key)
);

alter table log_review_marks enable row level security;
create policy tenant_isolation on log_review_marks to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
-- A review is written once and kept: no update, no delete.
grant select, insert on log_review_marks to wg_api;

-- 4. Who the actors of the caller's own access log are: the organisation (name and
-- number) of every tenant that read one of its residents, and a reader's display name
-- when that tenant has a staff record of the reader. Only actors of rows whose owner is
-- the caller's tenant (the resident's right to know who read; public organisations).
create function access_log_actor_orgs()
returns table (tenant_id text, name text, kind text, org_number text)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select t.id, t.name, t.kind, t.org_number from tenants t
    where t.id = current_setting('wg.tenant_id', true)
       or t.id in (select distinct l.actor_tenant from access_log l
                   where l.owner_tenant = current_setting('wg.tenant_id', true))
       or t.org_number in (select distinct l.actor_org from access_log l
                           where l.owner_tenant = current_setting('wg.tenant_id', true));
$$;
revoke all on function access_log_actor_orgs() from public;
grant execute on function access_log_actor_orgs() to wg_api;

create function access_log_actor_names(p_subjects text[])
returns table (tenant_id text, subject text, display_name text)
language sql stable security definer set search_path = public, pg_catalog, pg_temp as $$
    select s.tenant_id, s.subject, s.display_name from staff_members s
    where s.subject = any (p_subjects)
      and exists (select 1 from access_log l
                  where l.owner_tenant = current_setting('wg.tenant_id', true)
                    and l.actor_tenant = s.tenant_id and l.actor = s.subject);
$$;
revoke all on function access_log_actor_names(text[]) from public;
grant execute on function access_log_actor_names(text[]) to wg_api;
