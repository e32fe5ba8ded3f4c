-- Security review #17, findings 3 and 4.
--
-- 17.4: a consent and its person must belong to the same tenant, held by the database and
-- not only by the API. Row-level security checks only the consent row's own tenant_id, and
-- a foreign key on person_id alone ignores row-level security, so tenant A's API session
-- could insert a consent naming tenant B's resident, and the consented_* functions (which
-- look consents up across tenants) then let the region read B's data. As 0007 did for
-- visits: the composite key (id, tenant_id) of persons (persons_id_tenant, from 0007).
--
-- A consent already in the table that names another tenant's resident was never recorded
-- by the resident's own municipality and cannot satisfy the key. It is moved aside into
-- consents_rejected (kept as evidence for the data-protection officer, beside the access
-- log; no application role can read it) instead of being left to stop the migration.
create table consents_rejected (
    like consents,
    person_tenant_id  text not null,
    rejected_at       timestamptz not null default now(),
    reason            text not null
);
revoke all on consents_rejected from public;

with moved as (
    delete from consents c
    using persons p
    where p.id = c.person_id and p.tenant_id <> c.tenant_id
    returning c.*, p.tenant_id as person_tenant_id
)
insert into consents_rejected
select moved.*, now(), 'review #17.4: names a resident of another tenant' from moved;

alter table consents
    add constraint consents_person_tenant
    foreign key (person_id, tenant_id) references persons (id, tenant_id);

-- 17.3: with a weight-only consent, FHIR Device/{id} returned the resident's door lock
-- (vendor, serial): consented_device accepted any device the person held under a consent
-- covering weight or blood_pressure. Now the device's own data must be covered.

-- The data categories a device type produces (gateway.domain.consent.CATEGORIES; the
-- device types are those of device_models.device_type). Unknown type: none.
create function device_categories(p_device_type text)
returns text[] language sql immutable set search_path = public as $$
    select case p_device_type
        when 'scale' then array['weight']
        when 'blood_pressure_monitor' then array['blood_pressure']
        when 'gps_alarm' then array['position', 'alarms']
        when 'door_lock' then array['lock_events', 'alarms']
        else array[]::text[]
    end;
$$;
revoke all on function device_categories(text) from public;

-- A device for a recipient organisation: only one whose data FHIR serves as Observations
-- (weight, blood_pressure: scales and blood-pressure monitors; the devices Observations
-- point at) and only under a consent, valid now, of the person who held it during the
-- consent's validity, that covers the category the device produces. Any other device
-- (a door lock, a GPS alarm, a monitor under a weight-only consent) is not returned: the
-- API answers it like an id that does not exist. Returns the holder too.
create or replace function consented_device(p_device text, p_org text)
returns table (id text, tenant_id text, vendor text, model text, device_type text,
               serial text, status text, person_id uuid)
language sql stable security definer set search_path = public as $$
    select d.id, d.tenant_id, m.vendor, m.model, m.device_type, d.serial, d.status,
           a.person_id
    from devices d
    join device_models m on m.id = d.model_id
    join assignments a on a.device_id = d.id and a.tenant_id = d.tenant_id
    join consents c on c.person_id = a.person_id and c.tenant_id = a.tenant_id
    where d.id = p_device and c.recipient_org = p_org
      and exists (
          select 1 from unnest(device_categories(m.device_type)) as produced (category)
          where produced.category in ('weight', 'blood_pressure')
            and produced.category = any (c.categories)
      )
      and c.withdrawn_at is null
      and c.valid_from <= now() and (c.valid_to is null or now() < c.valid_to)
      and (a.valid_to is null or a.valid_to > c.valid_from)
      and (c.valid_to is null or a.valid_from < c.valid_to)
    order by a.valid_from desc
    limit 1;
$$;
revoke all on function consented_device(text, text) from public;
grant execute on function consented_device(text, text) to wg_api;
