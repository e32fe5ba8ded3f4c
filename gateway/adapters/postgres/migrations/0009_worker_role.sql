-- Least privilege: the gateway workers connect as wg_worker, not as the owner.
--
-- Three roles (docs/deploy.md, "Database roles"):
--   owner      the role `welfare-gateway migrate` connects as; owns every object, runs DDL.
--              Nothing else connects as it.
--   wg_worker  the workers: reads the registry and rules, writes time series, device state,
--              quarantine and alarms; appends to the access log through its function. No DDL,
--              no UPDATE or DELETE on the access log, no personal identity numbers or care
--              notes.
--   wg_api     the API (tenant-filtered by row-level security and views, as before).
-- Native partitions are created and dropped by wg_maintain_partitions(), a SECURITY
-- DEFINER function that does only that, from a plan `migrate` writes (partition_plan).

do $$ begin
  if not exists (select from pg_roles where rolname = 'wg_worker') then
    create role wg_worker login nosuperuser nobypassrls noinherit;
  end if;
end $$;

grant select on schema_migrations to wg_worker;

-- The registry and the rules: read only (the API writes them).
grant select on tenants, devices, assignments, device_models, safe_zones, person_limits,
    staff_members, staff_keys, visits, visit_slots to wg_worker;
grant select (id, tenant_id, ref) on persons to wg_worker;

-- Time series, quarantine and device state: written by the batch writer.
grant select, insert on readings, positions, lock_events, device_alarms, device_health,
    command_replies to wg_worker;
grant select, insert on quarantine to wg_worker;  -- select: the staging table copies its shape
grant select, insert, update on device_state to wg_worker;

-- Alarms: the alarm engine's lifecycle (open, escalate, acknowledge, resolve).
grant select, insert, update on alarms to wg_worker;
grant select, insert on alarm_events to wg_worker;

-- The worker serves every tenant: row-level security lets it through on the tables it
-- reads or writes, and nothing else (it is neither owner nor BYPASSRLS).
create policy worker_reads on tenants for select to wg_worker using (true);
create policy worker_reads on persons for select to wg_worker using (true);
create policy worker_reads on devices for select to wg_worker using (true);
create policy worker_reads on assignments for select to wg_worker using (true);
create policy worker_reads on safe_zones for select to wg_worker using (true);
create policy worker_reads on person_limits for select to wg_worker using (true);
create policy worker_reads on staff_members for select to wg_worker using (true);
create policy worker_reads on staff_keys for select to wg_worker using (true);
create policy worker_reads on visits for select to wg_worker using (true);
create policy worker_reads on visit_slots for select to wg_worker using (true);
create policy worker_writes on alarms to wg_worker using (true) with check (true);
create policy worker_writes on alarm_events to wg_worker using (true) with check (true);

grant execute on function append_access_log(text, text, text, text, text, uuid, text[],
    text, text, text, text) to wg_worker;

-- What native partitioning keeps, per table (written by migrate from the retention
-- settings; quarantine has no partitions, only an age limit).
create table partition_plan (
    table_name      text primary key,
    interval_days   integer check (interval_days between 1 and 366),
    retention_days  integer not null check (retention_days >= 1)
);
grant select on partition_plan to wg_worker;

-- Create the partitions [now - retention, now + 2 days] of every natively partitioned
-- table and drop those wholly older than the retention; delete expired quarantine rows.
-- Bounds are fixed-width intervals counted from the Unix epoch, so every caller computes
-- the same ones; names are <table>_pYYYYMMDD (UTC). Tables that are TimescaleDB
-- hypertables are skipped (their chunks come and go by themselves).
create function wg_maintain_partitions_at(p_now timestamptz)
returns integer language plpgsql security definer set search_path = public, pg_catalog as $$
declare
    v_plan    record;
    v_part    record;
    v_width   interval;
    v_cutoff  timestamptz;
    v_start   timestamptz;
    v_last    timestamptz;
    v_name    text;
    v_changes integer := 0;
    v_epoch   constant timestamptz := 'epoch';
begin
    for v_plan in select * from partition_plan where interval_days is not null loop
        if (select relkind from pg_class where oid = to_regclass(quote_ident(v_plan.table_name)))
                is distinct from 'p' then
            continue;
        end if;
        v_width := make_interval(days => v_plan.interval_days);
        v_cutoff := p_now - make_interval(days => v_plan.retention_days);
        v_start := v_epoch + floor(extract(epoch from v_cutoff - v_epoch)
                                   / extract(epoch from v_width))::integer * v_width;
        v_last := p_now + interval '2 days';
        while v_start <= v_last loop
            v_name := v_plan.table_name || '_p' || to_char(v_start at time zone 'UTC', 'YYYYMMDD');
            if to_regclass(quote_ident(v_name)) is null then
                execute format('create table %I partition of %I for values from (%L) to (%L)',
                               v_name, v_plan.table_name, v_start, v_start + v_width);
                v_changes := v_changes + 1;
            end if;
            v_start := v_start + v_width;
        end loop;
        for v_part in
            select c.relname from pg_inherits i
            join pg_class c on c.oid = i.inhrelid
            join pg_class p on p.oid = i.inhparent
            where p.relname = v_plan.table_name
              and c.relname ~ ('^' || v_plan.table_name || '_p[0-9]{8}$')
        loop
            v_start := (right(v_part.relname, 8) || ' 00:00:00+00')::timestamptz;
            if v_start + v_width <= v_cutoff then
                execute format('drop table if exists %I', v_part.relname);
                v_changes := v_changes + 1;
            end if;
        end loop;
    end loop;
    delete from quarantine
        where received_at < p_now - make_interval(days => coalesce(
            (select retention_days from partition_plan where table_name = 'quarantine'), 30));
    return v_changes;
end $$;
revoke all on function wg_maintain_partitions_at(timestamptz) from public;

-- What a worker may call: maintenance as of now (not a chosen instant: it cannot drop
-- partitions early).
create function wg_maintain_partitions()
returns integer language sql security definer set search_path = public, pg_catalog as $$
    select wg_maintain_partitions_at(now());
$$;
revoke all on function wg_maintain_partitions() from public;
grant execute on function wg_maintain_partitions() to wg_worker;
