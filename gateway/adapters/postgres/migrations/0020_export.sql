-- Full export for a change of supplier (issue #19.6; docs/export.md).
--
-- The export runs as the API role (wg_api) with the tenant set, so row-level security and
-- the tenant-filtered views decide what it can read, exactly as for the API. The one
-- tenant-owned table the API role had no way to read is command_replies: it gets the same
-- kind of security-barrier view as the other time series (0002).
create view api_command_replies with (security_barrier) as
    select * from command_replies where tenant_id = current_setting('wg.tenant_id', true);
grant select on api_command_replies to wg_api;

-- A restore (welfare-gateway restore, as the owner) loads rows of any age into the
-- natively partitioned time series: it first makes the partitions the rows need, with
-- the same width and names as wg_maintain_partitions_at (0009), for [p_from, p_to].
-- Partitions older than the retention are dropped again by the next maintenance run.
-- A TimescaleDB hypertable makes its chunks itself: nothing to do (returns 0).
create function wg_partitions_for(p_table text, p_from timestamptz, p_to timestamptz)
returns integer language plpgsql set search_path = public, pg_catalog, pg_temp as $$
declare
    v_days    integer;
    v_width   interval;
    v_start   timestamptz;
    v_name    text;
    v_changes integer := 0;
    v_epoch   constant timestamptz := 'epoch';
begin
    if (select relkind from pg_class where oid = to_regclass(quote_ident(p_table)))
            is distinct from 'p' then
        return 0;
    end if;
    select interval_days into v_days from partition_plan where table_name = p_table;
    v_width := make_interval(days => coalesce(v_days, 1));
    v_start := v_epoch + floor(extract(epoch from p_from - v_epoch)
                               / extract(epoch from v_width))::integer * v_width;
    while v_start <= p_to loop
        v_name := p_table || '_p' || to_char(v_start at time zone 'UTC', 'YYYYMMDD');
        if to_regclass(quote_ident(v_name)) is null then
            execute format('create table %I partition of %I for values from (%L) to (%L)',
                           v_name, p_table, v_start, v_start + v_width);
            v_changes := v_changes + 1;
        end if;
        v_start := v_start + v_width;
    end loop;
    return v_changes;
end $$;
revoke all on function wg_partitions_for(text, timestamptz, timestamptz) from public;
