-- Keyless-lock access: staff members, their keys, and planned visits per person.
--
-- A staff key opens a home only during a planned visit of its staff member (or of a
-- team the staff member belongs to), or while an alarm from that home is open
-- (gateway/domain/lock_access.py). The gateway keeps these rows in memory and is told
-- of every change by NOTIFY wg_locks (payload: 'staff' or 'person:<uuid>').

create table staff_members (
    id            uuid primary key default gen_random_uuid(),
    tenant_id     text not null references tenants(id),
    subject       text not null check (length(subject) between 1 and 128),
    display_name  text not null check (length(display_name) between 1 and 200),
    teams         text[] not null default '{}',
    active        boolean not null default true,
    created_at    timestamptz not null default now(),
    unique (tenant_id, subject),
    unique (id, tenant_id)
);
comment on column staff_members.subject is 'Login subject of the staff member (e.g. HSA-id).';

-- A key id is what the lock reports; it is unique across tenants so that a key of
-- another huvudman is recognised as such, not as unknown.
create table staff_keys (
    key_id      text primary key check (key_id ~ '^[\x21-\x7e]{1,64}$'),
    tenant_id   text not null,
    staff_id    uuid not null,
    valid_from  timestamptz not null default now(),
    valid_to    timestamptz,
    revoked_at  timestamptz,
    revoked_by  text,
    created_at  timestamptz not null default now(),
    foreign key (staff_id, tenant_id) references staff_members (id, tenant_id),
    check (valid_to is null or valid_to > valid_from)
);
create index staff_keys_staff on staff_keys (staff_id);

-- One planned visit; by a named staff member or by a team.
create table visits (
    id          uuid primary key default gen_random_uuid(),
    tenant_id   text not null references tenants(id),
    person_id   uuid not null references persons(id),
    staff_id    uuid,
    team        text check (length(team) between 1 and 64),
    starts_at   timestamptz not null,
    ends_at     timestamptz not null,
    created_by  text not null,
    created_at  timestamptz not null default now(),
    foreign key (staff_id, tenant_id) references staff_members (id, tenant_id),
    check (num_nonnulls(staff_id, team) = 1),
    check (ends_at > starts_at and ends_at - starts_at <= interval '24 hours')
);
create index visits_person_time on visits (person_id, starts_at);
create index visits_ends on visits (ends_at);

-- Recurring weekly visits in local time (weekdays 0 = Monday).
create table visit_slots (
    id          uuid primary key default gen_random_uuid(),
    tenant_id   text not null references tenants(id),
    person_id   uuid not null references persons(id),
    staff_id    uuid,
    team        text check (length(team) between 1 and 64),
    weekdays    smallint[] not null check (
        cardinality(weekdays) between 1 and 7 and weekdays <@ array[0, 1, 2, 3, 4, 5, 6]::smallint[]
    ),
    start_time  time not null,
    end_time    time not null,
    timezone    text not null default 'Europe/Stockholm',
    first_day   date,
    last_day    date,
    created_by  text not null,
    created_at  timestamptz not null default now(),
    foreign key (staff_id, tenant_id) references staff_members (id, tenant_id),
    check (num_nonnulls(staff_id, team) = 1),
    check (start_time <> end_time),
    check (last_day is null or first_day is null or last_day >= first_day)
);
create index visit_slots_person on visit_slots (person_id);

create function lock_access_staff_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_locks', 'staff');
    return null;
end $$;
create function lock_access_person_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_locks', 'person:' || coalesce(new.person_id, old.person_id)::text);
    return null;
end $$;
create trigger staff_members_notify after insert or update or delete on staff_members
    for each row execute function lock_access_staff_notify();
create trigger staff_keys_notify after insert or update or delete on staff_keys
    for each row execute function lock_access_staff_notify();
create trigger visits_notify after insert or update or delete on visits
    for each row execute function lock_access_person_notify();
create trigger visit_slots_notify after insert or update or delete on visit_slots
    for each row execute function lock_access_person_notify();

alter table staff_members enable row level security;
alter table staff_keys enable row level security;
alter table visits enable row level security;
alter table visit_slots enable row level security;

create policy tenant_isolation on staff_members to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on staff_keys to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on visits to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
create policy tenant_isolation on visit_slots to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));

grant select, insert, update on staff_members, staff_keys to wg_api;
grant select, insert, update, delete on visits, visit_slots to wg_api;
