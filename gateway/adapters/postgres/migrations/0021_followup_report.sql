-- The monthly follow-up report (issue #21.1; docs/report.md).
--
-- 1. report_targets: each municipality's own answering target (acknowledged within N
--    seconds in a share of the alarms), set by its tenant admin. No row: no target, and
--    the report shows none (the product holds no norm of its own).
-- 2. report_device_days: a daily rollup per device (local days, Europe/Stockholm) of what
--    the time series say about its use: positions, device alarms, readings, lock events,
--    health messages. The report reads this table, never a year of raw rows.
--    report_days_done marks which (tenant, day) is rolled up and when; a day is final once
--    rolled up two days after its end (late messages of a device that was offline), and
--    rolled up again until then.
-- 3. report_rollup_tenant() fills the rollup from the continuous aggregates when
--    TimescaleDB made them (wg_report_caggs(), called by the gateway's TimescaleDB set-up
--    after the time series became hypertables), otherwise from the native partitions: the
--    same figures either way. The API rolls up the days of the period it reports on
--    (report_rollup, its own tenant only); the workers roll up the last week of every
--    tenant with their partition upkeep (report_rollup_recent), so days are kept after the
--    raw rows' retention (30 days for positions) has dropped them.

create table report_targets (
    tenant_id     text primary key references tenants (id),
    ack_within_s  integer not null check (ack_within_s between 1 and 86400),
    ack_share     numeric(5, 4) not null check (ack_share > 0 and ack_share <= 1),
    changed_at    timestamptz not null default now(),
    changed_by    text not null check (length(changed_by) between 1 and 200)
);
alter table report_targets enable row level security;
create policy tenant_isolation on report_targets to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true))
    with check (tenant_id = current_setting('wg.tenant_id', true));
grant select, insert, update, delete on report_targets to wg_api;

create table report_device_days (
    tenant_id      text not null,
    day            date not null,
    device_id      text not null,
    positions      integer not null default 0,
    device_alarms  integer not null default 0,
    readings       integer not null default 0,
    lock_events    integer not null default 0,
    health         integer not null default 0,
    primary key (tenant_id, day, device_id)
);
alter table report_device_days enable row level security;
create policy tenant_isolation on report_device_days to wg_api
    using (tenant_id = current_setting('wg.tenant_id', true));
grant select on report_device_days to wg_api;

create table report_days_done (
    tenant_id  text not null,
    day        date not null,
    rolled_at  timestamptz not null,
    primary key (tenant_id, day)
);

-- The day sources: a continuous aggregate of each time series when they exist, else the
-- table itself. Both give (device_id, day, n) for one tenant and a range of instants.
create function report_day_source(p_table text) returns text
language plpgsql stable set search_path = public, pg_catalog, pg_temp as $$
begin
    if to_regclass(format('%I', 'report_days_' || p_table)) is not null then
        return format(
            'select device_id, (bucket at time zone %L)::date as day, n from %I'
            ' where tenant_id = $1 and bucket >= $2 and bucket < $3',
            'Europe/Stockholm', 'report_days_' || p_table);
    end if;
    return format(
        'select device_id, (ts at time zone %L)::date as day, count(*)::integer as n from %I'
        ' where tenant_id = $1 and ts >= $2 and ts < $3 group by 1, 2',
        'Europe/Stockholm', p_table);
end $$;

create function report_rollup_tenant(p_tenant text, p_from date, p_to date)
returns integer language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_days  date[];
    v_lo    timestamptz;
    v_hi    timestamptz;
begin
    if p_tenant is null or p_tenant = '' then
        raise exception 'no tenant' using errcode = 'invalid_parameter_value';
    end if;
    if p_to <= p_from or p_to - p_from > 800 then
        raise exception 'a rollup covers 1 to 800 days' using errcode = 'invalid_parameter_value';
    end if;
    perform pg_advisory_xact_lock(hashtext('wg-report-rollup'), hashtext(p_tenant));
    select coalesce(array_agg(d.day order by d.day), '{}') into v_days
    from (select g::date as day from generate_series(p_from, p_to - 1, interval '1 day') g) d
    where d.day <= (now() at time zone 'Europe/Stockholm')::date
      and not exists (
        select 1 from report_days_done r
        where r.tenant_id = p_tenant and r.day = d.day
          and r.rolled_at >= ((d.day + 3)::timestamp at time zone 'Europe/Stockholm'));
    if cardinality(v_days) = 0 then
        return 0;
    end if;
    v_lo := v_days[1]::timestamp at time zone 'Europe/Stockholm';
    v_hi := (v_days[cardinality(v_days)] + 1)::timestamp at time zone 'Europe/Stockholm';
    delete from report_device_days where tenant_id = p_tenant and day = any (v_days);
    execute format(
        'insert into report_device_days (tenant_id, day, device_id, positions, device_alarms,'
        ' readings, lock_events, health)'
        ' select $1, day, device_id, coalesce(sum(n) filter (where src = 1), 0),'
        ' coalesce(sum(n) filter (where src = 2), 0), coalesce(sum(n) filter (where src = 3), 0),'
        ' coalesce(sum(n) filter (where src = 4), 0), coalesce(sum(n) filter (where src = 5), 0)'
        ' from (select 1 as src, * from (%s) a union all select 2, * from (%s) b'
        ' union all select 3, * from (%s) c union all select 4, * from (%s) d'
        ' union all select 5, * from (%s) e) s'
        ' where day = any ($4) group by day, device_id',
        report_day_source('positions'), report_day_source('device_alarms'),
        report_day_source('readings'), report_day_source('lock_events'),
        report_day_source('device_health'))
        using p_tenant, v_lo, v_hi, v_days;
    insert into report_days_done (tenant_id, day, rolled_at)
        select p_tenant, d, now() from unnest(v_days) d
        on conflict (tenant_id, day) do update set rolled_at = excluded.rolled_at;
    return cardinality(v_days);
end $$;
revoke all on function report_rollup_tenant(text, date, date) from public;
revoke all on function report_day_source(text) from public;

-- The API: the caller's tenant only (wg.tenant_id of its transaction).
create function report_rollup(p_from date, p_to date)
returns integer language sql security definer
set search_path = public, pg_catalog, pg_temp as $$
    select report_rollup_tenant(current_setting('wg.tenant_id', true), p_from, p_to);
$$;
revoke all on function report_rollup(date, date) from public;
grant execute on function report_rollup(date, date) to wg_api;

-- The workers, with their partition upkeep: the last week of every tenant.
create function report_rollup_recent()
returns integer language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_today  date := (now() at time zone 'Europe/Stockholm')::date;
    v_tenant text;
    v_n      integer := 0;
begin
    for v_tenant in select id from tenants order by id loop
        v_n := v_n + report_rollup_tenant(v_tenant, v_today - 7, v_today + 1);
    end loop;
    return v_n;
end $$;
revoke all on function report_rollup_recent() from public;
grant execute on function report_rollup_recent() to wg_worker;

-- TimescaleDB: one continuous aggregate per time series (a continuous aggregate reads one
-- hypertable), daily buckets in local time, real-time (the newest, not yet materialised
-- rows are read from the hypertable), refreshed hourly by TimescaleDB's jobs over the
-- last 20 days (inside every table's retention). Called by gateway.adapters.postgres.
-- timescale once the time series are hypertables; returns the aggregates it created.
create function wg_report_caggs() returns integer language plpgsql
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_table text;
    v_n     integer := 0;
begin
    foreach v_table in array array['positions', 'device_alarms', 'readings', 'lock_events',
                                   'device_health'] loop
        if to_regclass(format('%I', 'report_days_' || v_table)) is not null then
            continue;
        end if;
        execute format(
            'create materialized view %I with (timescaledb.continuous,'
            ' timescaledb.materialized_only = false) as'
            ' select tenant_id, device_id, time_bucket(interval %L, ts, %L) as bucket,'
            ' count(*)::integer as n from %I group by tenant_id, device_id, bucket'
            ' with no data',
            'report_days_' || v_table, '1 day', 'Europe/Stockholm', v_table);
        execute format(
            'select add_continuous_aggregate_policy(%L, start_offset => interval %L,'
            ' end_offset => interval %L, schedule_interval => interval %L)',
            'report_days_' || v_table, '20 days', '1 hour', '1 hour');
        v_n := v_n + 1;
    end loop;
    return v_n;
end $$;
revoke all on function wg_report_caggs() from public;
