-- Security review #17, finding 7: an alarm goes to another organisation (a webhook with
-- an organisation number other than the tenant's) only under the resident's consent for
-- that organisation and purpose, and each event sent is access-logged (docs/security.md).
--
-- The alarm engine decides from memory (the safety path does not wait for the database):
-- the workers (wg_worker) hold the consents in a cache, loaded at start and kept current
-- by LISTEN wg_consents (gateway.alarms.consent_cache). They read only what the decision
-- needs: not who recorded a consent, nor its legal basis. They already read tenants (for
-- the tenant's own organisation number) and append to the access log (0009).

grant select (id, tenant_id, person_id, recipient_org, purpose, categories, valid_from,
              valid_to, withdrawn_at) on consents to wg_worker;
create policy worker_reads on consents for select to wg_worker using (true);

-- A consent recorded, withdrawn or changed: the payload is its person.
create function consents_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_consents', coalesce(new.person_id, old.person_id)::text);
    return null;
end $$;
create trigger consents_notify after insert or update or delete on consents
    for each row execute function consents_notify();

-- A tenant added or its organisation number changed: payload 'tenants'.
create function tenants_consents_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('wg_consents', 'tenants');
    return null;
end $$;
create trigger tenants_consents_notify after insert or update or delete on tenants
    for each statement execute function tenants_consents_notify();
