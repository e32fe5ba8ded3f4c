-- TimescaleDB path for the time series (gateway.storage.timescale decides when to use it).
--
-- TimescaleDB cannot turn a natively partitioned table into a hypertable, so a time-series
-- table is rebuilt instead: same columns, defaults, checks, indexes (names kept, so the
-- dedup index on (device_id, msg_id, ts) is unchanged), owner and grants, then made a
-- hypertable with compression (segment by device, newest first). Views that read the
-- table (the tenant-filtered api_* views) are recreated with the same definition,
-- options (security_barrier), owner and grants. Only an EMPTY table is rebuilt: existing
-- data stays in native partitions (moving it is an operator's job, see docs/operations.md).
--
-- This file only defines the function: nothing changes until the gateway calls it, which
-- it does at start when the extension is installed and the `timescaledb` setting allows.
-- On plain PostgreSQL the function is never called (its body needs TimescaleDB).

create function wg_hypertable_from_native(p_table text, p_chunk interval)
returns boolean language plpgsql as $$
declare
    v_rel       regclass := to_regclass(format('%I', p_table));
    v_kind      "char";
    v_nsp       text;
    v_owner     text;
    v_acl       aclitem[];
    v_recreate  text[] := '{}';
    v_indexes   text[] := '{}';
    v_view      record;
    v_stmt      text;
    v_has_rows  boolean;
begin
    if v_rel is null then
        raise exception 'no table %', p_table using errcode = 'undefined_table';
    end if;
    if exists (
        select 1 from timescaledb_information.hypertables
        where format('%I.%I', hypertable_schema, hypertable_name)::regclass = v_rel
    ) then
        return false;
    end if;
    select c.relkind, n.nspname, pg_get_userbyid(c.relowner), c.relacl
        into v_kind, v_nsp, v_owner, v_acl
        from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = v_rel;
    if v_kind <> 'p' then
        raise exception '% is neither a hypertable nor a partitioned table', p_table
            using errcode = 'wrong_object_type';
    end if;
    execute format('select exists (select 1 from %s)', v_rel) into v_has_rows;
    if v_has_rows then
        raise exception '% holds rows; only an empty table is converted', p_table
            using errcode = 'object_not_in_prerequisite_state';
    end if;

    -- Views reading the table: remember how to recreate them, then drop them.
    for v_view in
        select distinct v.oid, vn.nspname, v.relname, v.reloptions, v.relacl,
               pg_get_userbyid(v.relowner) as owner, pg_get_viewdef(v.oid) as def
        from pg_depend d
        join pg_rewrite r on r.oid = d.objid
        join pg_class v on v.oid = r.ev_class
        join pg_namespace vn on vn.oid = v.relnamespace
        where d.classid = 'pg_rewrite'::regclass and d.refobjid = v_rel and v.oid <> v_rel
    loop
        v_recreate := v_recreate || format(
            'create view %I.%I %s as %s', v_view.nspname, v_view.relname,
            case when v_view.reloptions is null then ''
                 else format('with (%s)', array_to_string(v_view.reloptions, ', ')) end,
            rtrim(v_view.def, ';'));
        v_recreate := v_recreate || format(
            'alter view %I.%I owner to %I', v_view.nspname, v_view.relname, v_view.owner);
        v_recreate := v_recreate || wg_grants_sql(
            format('%I.%I', v_view.nspname, v_view.relname), v_view.relacl);
        execute format('drop view %I.%I', v_view.nspname, v_view.relname);
    end loop;

    select coalesce(array_agg(replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')),
                    '{}')
        into v_indexes from pg_index i where i.indrelid = v_rel;

    execute format('create table %I.%I (like %s including all excluding indexes)',
                   v_nsp, p_table || '_wg_new', v_rel);
    execute format('drop table %s', v_rel);
    execute format('alter table %I.%I rename to %I', v_nsp, p_table || '_wg_new', p_table);
    v_rel := format('%I.%I', v_nsp, p_table)::regclass;
    foreach v_stmt in array v_indexes loop
        execute v_stmt;
    end loop;
    execute format('alter table %s owner to %I', v_rel, v_owner);
    foreach v_stmt in array wg_grants_sql(v_rel::text, v_acl) loop
        execute v_stmt;
    end loop;

    perform create_hypertable(v_rel, 'ts', chunk_time_interval => p_chunk,
                              create_default_indexes => false);
    execute format(
        'alter table %s set (timescaledb.compress, timescaledb.compress_segmentby = %L,'
        ' timescaledb.compress_orderby = %L)', v_rel, 'device_id', 'ts desc');

    foreach v_stmt in array v_recreate loop
        execute v_stmt;
    end loop;
    return true;
end $$;

-- GRANT statements that give `p_object` the privileges recorded in `p_acl`.
create function wg_grants_sql(p_object text, p_acl aclitem[])
returns text[] language sql stable as $$
    select coalesce(array_agg(format(
        'grant %s on %s to %s%s', a.privilege_type, p_object,
        case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end,
        case when a.is_grantable then ' with grant option' else '' end)), '{}')
    from aclexplode(case when cardinality(p_acl) > 0 then p_acl end) a;
$$;

revoke all on function wg_hypertable_from_native(text, interval) from public;
revoke all on function wg_grants_sql(text, aclitem[]) from public;
