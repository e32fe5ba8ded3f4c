-- The sensors' states (sensor_events, migration 0023) are kept for retention.sensor_events
-- days (partition_plan, written by migrate; 90 by default), like the quarantine: a plain
-- table with an age limit. Expired rows are deleted by every maintenance run a worker
-- makes (wg_maintain_partitions), on TimescaleDB and native partitions alike.

create function wg_expire_sensor_events(p_now timestamptz)
returns bigint language sql security definer
set search_path = public, pg_catalog, pg_temp as $$
    with gone as (
        delete from sensor_events
        where ts < p_now - make_interval(days => coalesce(
            (select retention_days from partition_plan where table_name = 'sensor_events'), 90))
        returning 1
    )
    select count(*) from gone;
$$;
revoke all on function wg_expire_sensor_events(timestamptz) from public;

-- What a worker calls: the same as before (0009), and the sensors' expired states.
create or replace function wg_maintain_partitions()
returns integer language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
begin
    perform wg_expire_sensor_events(now());
    return wg_maintain_partitions_at(now());
end $$;
