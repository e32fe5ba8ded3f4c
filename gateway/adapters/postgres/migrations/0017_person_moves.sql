-- Moving to another municipality (issue #19.2; docs/moves.md).
--
-- The sending municipality proposes a move of a resident and their devices on a date; the
-- receiving municipality's tenant admin accepts it (neither can push a resident, or pull
-- one, alone). On acceptance the resident gets a person record in the receiving tenant and
-- each moved device two assignments that meet at the date: the sending tenant's ends there
-- and the receiving tenant's begins there, marked as continuing it (`continues_id`). Data
-- is bound by the device's own time stamp, so a reading stamped before the date lands with
-- the sending municipality and one stamped after with the receiving one, whenever it
-- arrives. When the date has come a worker moves the device rows (apply_person_moves): the
-- sending tenant keeps its history up to the date and no longer sees the device.

-- 1. An assignment that continues the previous one of the same resident after a move.
alter table assignments add column continues_id bigint references assignments (id);
comment on column assignments.continues_id is
    'The assignment (of another tenant) this one continues after a move: the same resident.';

-- 2. The moves.
create table person_moves (
    id             bigint generated always as identity primary key,
    from_tenant    text not null references tenants (id),
    person_id      uuid not null,
    to_tenant      text not null references tenants (id),
    effective_at   timestamptz not null,
    device_ids     text[] not null check (cardinality(device_ids) <= 100),
    status         text not null default 'proposed'
        check (status in ('proposed', 'accepted', 'applied', 'cancelled')),
    proposed_at    timestamptz not null default now(),
    proposed_by    text not null check (length(proposed_by) between 1 and 200),
    accepted_at    timestamptz,
    accepted_by    text check (length(accepted_by) between 1 and 200),
    to_person_id   uuid references persons (id),
    applied_at     timestamptz,
    cancelled_at   timestamptz,
    cancelled_by   text check (length(cancelled_by) between 1 and 200),
    check (from_tenant <> to_tenant),
    foreign key (person_id, from_tenant) references persons (id, tenant_id)
);
-- One move under way per resident.
create unique index person_moves_one_open on person_moves (person_id)
    where status in ('proposed', 'accepted');
create index person_moves_due on person_moves (effective_at) where status = 'accepted';

alter table person_moves enable row level security;
-- Both municipalities read the move; only the sending one proposes it. Everything after
-- (accept, cancel, apply) goes through the functions below.
create policy both_sides_read on person_moves for select to wg_api
    using (from_tenant = current_setting('wg.tenant_id', true)
           or to_tenant = current_setting('wg.tenant_id', true));
create policy sender_proposes on person_moves for insert to wg_api
    with check (from_tenant = current_setting('wg.tenant_id', true) and status = 'proposed');
create policy worker_reads on person_moves for select to wg_worker using (true);
grant select, insert on person_moves to wg_api;
grant select on person_moves to wg_worker;

-- 3. The kind of a tenant (the API role sees only its own tenant's row).
create function tenant_kind(p_tenant text)
returns text language sql stable security definer
set search_path = public, pg_catalog, pg_temp as $$
    select kind from tenants where id = p_tenant;
$$;
revoke all on function tenant_kind(text) from public;
grant execute on function tenant_kind(text) to wg_api;

-- 4. Acceptance, by the receiving tenant (wg.tenant_id) before the date: the resident's
-- person record there (the personal identity number comes along, encrypted as it was;
-- care notes do not: they are the sending municipality's records), and the assignments.
create function accept_person_move(p_move bigint, p_ref text, p_actor text)
returns uuid language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_move person_moves;
    v_person uuid;
    v_device text;
    v_old assignments;
begin
    select * into v_move from person_moves where id = p_move for update;
    if not found or v_move.to_tenant is distinct from current_setting('wg.tenant_id', true) then
        raise exception 'no move %', p_move using errcode = 'no_data_found';
    end if;
    if v_move.status <> 'proposed' then
        raise exception 'the move is %, not proposed', v_move.status
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if v_move.effective_at <= now() then
        raise exception 'the move''s date has passed; the sending municipality proposes it again'
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    insert into persons (tenant_id, ref, pin_ciphertext, pin_key_id)
    select v_move.to_tenant, p_ref, p.pin_ciphertext, p.pin_key_id
    from persons p where p.id = v_move.person_id
    returning id into v_person;
    foreach v_device in array v_move.device_ids loop
        perform 1 from devices where id = v_device for update;
        select * into v_old from assignments
        where device_id = v_device and person_id = v_move.person_id
          and tenant_id = v_move.from_tenant and valid_to is null
          and valid_from < v_move.effective_at;
        if not found then
            raise exception 'device % is no longer held by the resident', v_device
                using errcode = 'object_not_in_prerequisite_state';
        end if;
        update assignments set valid_to = v_move.effective_at where id = v_old.id;
        insert into assignments (tenant_id, device_id, person_id, valid_from, continues_id)
        values (v_move.to_tenant, v_device, v_person, v_move.effective_at, v_old.id);
    end loop;
    update person_moves
    set status = 'accepted', accepted_at = now(), accepted_by = p_actor, to_person_id = v_person
    where id = p_move;
    return v_person;
end $$;
revoke all on function accept_person_move(bigint, text, text) from public;
grant execute on function accept_person_move(bigint, text, text) to wg_api;

-- 5. Cancelling, by either side, before the date: an accepted move's assignments are
-- undone (the receiving tenant's person record stays, holding nothing).
create function cancel_person_move(p_move bigint, p_actor text)
returns person_moves language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_move person_moves;
    v_new assignments;
begin
    select * into v_move from person_moves where id = p_move for update;
    if not found or current_setting('wg.tenant_id', true) is null
       or current_setting('wg.tenant_id', true) not in (v_move.from_tenant, v_move.to_tenant) then
        raise exception 'no move %', p_move using errcode = 'no_data_found';
    end if;
    if v_move.status not in ('proposed', 'accepted') then
        raise exception 'the move is %', v_move.status
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if v_move.status = 'accepted' then
        if v_move.effective_at <= now() then
            raise exception 'the move took effect at %; it can no longer be cancelled',
                v_move.effective_at using errcode = 'object_not_in_prerequisite_state';
        end if;
        for v_new in
            select * from assignments
            where person_id = v_move.to_person_id and continues_id is not null
              and valid_from = v_move.effective_at
        loop
            delete from assignments where id = v_new.id;
            update assignments set valid_to = null where id = v_new.continues_id;
        end loop;
    end if;
    update person_moves set status = 'cancelled', cancelled_at = now(), cancelled_by = p_actor
    where id = p_move returning * into v_move;
    return v_move;
end $$;
revoke all on function cancel_person_move(bigint, text) from public;
grant execute on function cancel_person_move(bigint, text) to wg_api;

-- 6. Applying the moves whose date has come (a worker, every few seconds; any worker: a
-- move is applied once, by the transaction that flips its status): the devices and their
-- state change tenant, and both municipalities' access logs say so.
create function apply_person_moves()
returns setof bigint language plpgsql security definer
set search_path = public, pg_catalog, pg_temp as $$
declare
    v_move person_moves;
begin
    for v_move in
        select * from person_moves where status = 'accepted' and effective_at <= now()
        order by effective_at for update skip locked
    loop
        update devices set tenant_id = v_move.to_tenant
        where id = any(v_move.device_ids) and tenant_id = v_move.from_tenant;
        update device_state set tenant_id = v_move.to_tenant
        where device_id = any(v_move.device_ids) and tenant_id = v_move.from_tenant;
        update person_moves set status = 'applied', applied_at = now() where id = v_move.id;
        perform append_access_log('gateway', null, 'worker', v_move.from_tenant,
            v_move.from_tenant, v_move.person_id, array['device_registry'], 'move',
            'allowed', 'moved to ' || v_move.to_tenant || ' with '
                || array_to_string(v_move.device_ids, ', '),
            'move ' || v_move.id);
        perform append_access_log('gateway', null, 'worker', v_move.to_tenant,
            v_move.to_tenant, v_move.to_person_id, array['device_registry'], 'move',
            'allowed', 'moved in from ' || v_move.from_tenant || ' with '
                || array_to_string(v_move.device_ids, ', '),
            'move ' || v_move.id);
        return next v_move.id;
    end loop;
end $$;
revoke all on function apply_person_moves() from public;
grant execute on function apply_person_moves() to wg_worker;
