-- SECURITY DEFINER functions must not resolve names in the caller's temporary schema.
--
-- PostgreSQL searches pg_temp FIRST for tables and types unless the search_path names it
-- explicitly: a caller (wg_api, wg_worker) could create a temporary `quarantine`,
-- `devices` or `partition_plan` table and have a definer function, running with the
-- owner's rights, read it instead of the real one (store forged data on any person,
-- change a model in use, drop every partition). Every definer function of this schema
-- now searches public (where it creates), pg_catalog, and pg_temp last; tests/integration/test_migrations.py
-- holds every such function, present and future, to it. And only the worker, whose batch
-- writer stages rows in temporary tables, may create any.

do $$
declare
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure as fn
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'public' and p.prosecdef
          and not exists (select 1 from pg_depend d
                          where d.objid = p.oid and d.deptype = 'e')
    loop
        execute format('alter function %s set search_path = public, pg_catalog, pg_temp',
                       v_fn.fn);
    end loop;
    execute format('revoke temporary on database %I from public', current_database());
    execute format('grant temporary on database %I to wg_worker', current_database());
end $$;
