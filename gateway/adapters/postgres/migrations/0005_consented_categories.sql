-- Consented reads of the remaining categories (position, lock_events, alarms) and the
-- FHIR read surface (vital-sign observations, patient, device) for a recipient
-- organisation.
--
-- Same rule as consented_readings in 0004, checked here in the database: a row is returned
-- only while a consent for that organisation and the row's category is valid now and not
-- withdrawn, and only if the row's time lies inside that consent's validity period.
-- Each function looks up the person's tenant first so the (tenant_id, person_id, ...)
-- indexes of the time-series tables apply.

-- A consent for p_org covering p_category is valid now and covers the instant p_ts.
create function consent_covers(p_person uuid, p_org text, p_category text, p_ts timestamptz)
returns boolean language sql stable security definer set search_path = public as $$
    select exists (
        select 1 from consents c
        where c.person_id = p_person and c.recipient_org = p_org
          and p_category = any (c.categories)
          and c.withdrawn_at is null
          and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
          and p_ts >= c.valid_from and (c.valid_to is null or p_ts < c.valid_to)
    );
$$;
revoke all on function consent_covers(uuid, text, text, timestamptz) from public;

create function consented_positions(
    p_person uuid, p_org text, p_from timestamptz, p_to timestamptz,
    p_after_ts timestamptz, p_after_device text, p_after_msg text, p_limit integer
) returns table (ts timestamptz, device_id text, msg_id text, lat double precision,
                 lon double precision, accuracy_m real)
language sql stable security definer set search_path = public as $$
    select r.ts, r.device_id, r.msg_id, r.lat, r.lon, r.accuracy_m
    from positions r
    where r.tenant_id = (select tenant_id from persons where id = p_person)
      and r.person_id = p_person
      and consent_covers(p_person, p_org, 'position', r.ts)
      and (p_from is null or r.ts >= p_from)
      and (p_to is null or r.ts < p_to)
      and (p_after_ts is null or (r.ts, r.device_id, r.msg_id) > (p_after_ts, p_after_device, p_after_msg))
    order by r.ts, r.device_id, r.msg_id
    limit p_limit;
$$;
revoke all on function consented_positions(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) from public;
grant execute on function consented_positions(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) to wg_api;

create function consented_lock_events(
    p_person uuid, p_org text, p_from timestamptz, p_to timestamptz,
    p_after_ts timestamptz, p_after_device text, p_after_msg text, p_limit integer
) returns table (ts timestamptz, device_id text, msg_id text, action text, key_id text,
                 method text)
language sql stable security definer set search_path = public as $$
    select r.ts, r.device_id, r.msg_id, r.action, r.key_id, r.method
    from lock_events r
    where r.tenant_id = (select tenant_id from persons where id = p_person)
      and r.person_id = p_person
      and consent_covers(p_person, p_org, 'lock_events', r.ts)
      and (p_from is null or r.ts >= p_from)
      and (p_to is null or r.ts < p_to)
      and (p_after_ts is null or (r.ts, r.device_id, r.msg_id) > (p_after_ts, p_after_device, p_after_msg))
    order by r.ts, r.device_id, r.msg_id
    limit p_limit;
$$;
revoke all on function consented_lock_events(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) from public;
grant execute on function consented_lock_events(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) to wg_api;

create function consented_device_alarms(
    p_person uuid, p_org text, p_from timestamptz, p_to timestamptz,
    p_after_ts timestamptz, p_after_device text, p_after_msg text, p_limit integer
) returns table (ts timestamptz, device_id text, msg_id text, kind text,
                 lat double precision, lon double precision, accuracy_m real)
language sql stable security definer set search_path = public as $$
    select r.ts, r.device_id, r.msg_id, r.kind, r.lat, r.lon, r.accuracy_m
    from device_alarms r
    where r.tenant_id = (select tenant_id from persons where id = p_person)
      and r.person_id = p_person
      and consent_covers(p_person, p_org, 'alarms', r.ts)
      and (p_from is null or r.ts >= p_from)
      and (p_to is null or r.ts < p_to)
      and (p_after_ts is null or (r.ts, r.device_id, r.msg_id) > (p_after_ts, p_after_device, p_after_msg))
    order by r.ts, r.device_id, r.msg_id
    limit p_limit;
$$;
revoke all on function consented_device_alarms(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) from public;
grant execute on function consented_device_alarms(uuid, text, timestamptz, timestamptz,
    timestamptz, text, text, integer) to wg_api;

-- Vital-sign observations for FHIR: one row per observation, obs = 'weight' (body
-- weight), 'bp' (blood-pressure panel) or 'hr' (heart rate, from a blood-pressure reading
-- that carries a pulse). Weight is category weight; bp and hr are category blood_pressure.
-- Keyset paging on (ts, device_id, msg_id, obs).
create function consented_vitals(
    p_person uuid, p_org text, p_obs text[], p_from timestamptz, p_to timestamptz,
    p_after_ts timestamptz, p_after_device text, p_after_msg text, p_after_obs text,
    p_limit integer
) returns table (ts timestamptz, device_id text, msg_id text, obs text, weight_kg real,
                 systolic_mmhg smallint, diastolic_mmhg smallint, pulse_bpm smallint)
language sql stable security definer set search_path = public as $$
    -- the consent windows that cover this organisation now (valid, not withdrawn), read
    -- once per call rather than once per reading
    with w as materialized (
        select c.categories, c.valid_from, c.valid_to from consents c
        where c.person_id = p_person and c.recipient_org = p_org
          and c.withdrawn_at is null
          and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
    ), r as (
        select * from readings rd
        where rd.tenant_id = (select tenant_id from persons where id = p_person)
          and rd.person_id = p_person
          and (p_from is null or rd.ts >= p_from)
          and (p_to is null or rd.ts < p_to)
          and (p_after_ts is null
               or (rd.ts, rd.device_id, rd.msg_id) >= (p_after_ts, p_after_device, p_after_msg))
          and ((rd.kind = 'weight' and 'weight' = any (p_obs))
               or (rd.kind = 'blood_pressure' and ('bp' = any (p_obs)
                   or ('hr' = any (p_obs) and rd.pulse_bpm is not null))))
          and exists (
              select 1 from w
              where rd.kind = any (w.categories)
                and rd.ts >= w.valid_from and (w.valid_to is null or rd.ts < w.valid_to)
          )
        order by rd.ts, rd.device_id, rd.msg_id
        -- each reading yields at least one observation except the page's boundary
        -- reading, which may be half consumed: one page needs p_limit + 1 readings
        limit p_limit + 1
    ), o as (
        select r.ts, r.device_id, r.msg_id, 'weight'::text as obs, r.weight_kg,
               null::smallint as systolic_mmhg, null::smallint as diastolic_mmhg,
               null::smallint as pulse_bpm
        from r where 'weight' = any (p_obs) and r.kind = 'weight'
        union all
        select r.ts, r.device_id, r.msg_id, 'bp', null, r.systolic_mmhg, r.diastolic_mmhg,
               null
        from r where 'bp' = any (p_obs) and r.kind = 'blood_pressure'
        union all
        select r.ts, r.device_id, r.msg_id, 'hr', null, null, null, r.pulse_bpm
        from r where 'hr' = any (p_obs) and r.kind = 'blood_pressure'
          and r.pulse_bpm is not null
    )
    select * from o
    where p_after_ts is null
       or (o.ts, o.device_id, o.msg_id, o.obs) > (p_after_ts, p_after_device, p_after_msg, p_after_obs)
    order by o.ts, o.device_id, o.msg_id, o.obs
    limit p_limit;
$$;
revoke all on function consented_vitals(uuid, text, text[], timestamptz, timestamptz,
    timestamptz, text, text, text, integer) from public;
grant execute on function consented_vitals(uuid, text, text[], timestamptz, timestamptz,
    timestamptz, text, text, text, integer) to wg_api;

-- The person as a FHIR Patient for a recipient organisation holding a consent valid now
-- (any category): the pseudonymous reference and the owning municipality, nothing else.
create function consented_patient(p_person uuid, p_org text)
returns table (id uuid, ref text, tenant_id text, tenant_name text, tenant_org text)
language sql stable security definer set search_path = public as $$
    select p.id, p.ref, t.id, t.name, t.org_number
    from persons p join tenants t on t.id = p.tenant_id
    where p.id = p_person
      and exists (
          select 1 from consents c
          where c.person_id = p_person and c.recipient_org = p_org
            and c.withdrawn_at is null
            and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
      );
$$;
revoke all on function consented_patient(uuid, text) from public;
grant execute on function consented_patient(uuid, text) to wg_api;

-- A device for a recipient organisation: only one that was held, during the validity of a
-- consent valid now for weight or blood_pressure, by the person who gave that consent
-- (the devices the organisation's observations point at). Returns the holder too.
create function consented_device(p_device text, p_org text)
returns table (id text, tenant_id text, vendor text, model text, device_type text,
               serial text, status text, person_id uuid)
language sql stable security definer set search_path = public as $$
    select d.id, d.tenant_id, m.vendor, m.model, m.device_type, d.serial, d.status,
           a.person_id
    from devices d
    join device_models m on m.id = d.model_id
    join assignments a on a.device_id = d.id
    join consents c on c.person_id = a.person_id
    where d.id = p_device and c.recipient_org = p_org
      and c.categories && array['weight', 'blood_pressure']
      and c.withdrawn_at is null
      and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
      and (a.valid_to is null or a.valid_to > c.valid_from)
      and (c.valid_to is null or a.valid_from < c.valid_to)
    order by a.valid_from desc
    limit 1;
$$;
revoke all on function consented_device(text, text) from public;
grant execute on function consented_device(text, text) to wg_api;
