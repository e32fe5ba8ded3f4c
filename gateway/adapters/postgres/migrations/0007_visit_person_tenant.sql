-- A planned visit (or weekly slot) and its person must belong to the same tenant, held by
-- the database and not only by the API: a visit of tenant A naming tenant B's resident
-- could otherwise let A's staff into B's resident's home through a shared team name.
alter table persons add constraint persons_id_tenant unique (id, tenant_id);

alter table visits
    add constraint visits_person_tenant
    foreign key (person_id, tenant_id) references persons (id, tenant_id);

alter table visit_slots
    add constraint visit_slots_person_tenant
    foreign key (person_id, tenant_id) references persons (id, tenant_id);
