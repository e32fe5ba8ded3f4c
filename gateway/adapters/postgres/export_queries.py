"""SQL of the full export and its restore (issue #19.6; docs/export.md).

The export reads as role wg_api with the tenant set (row-level security and the
tenant-filtered views apply, as in the API) and filters by owner besides; the restore
writes as the owner. Statements are composed from :data:`gateway.domain.export.TABLES`
with ``psycopg.sql`` (identifiers quoted) and take the tenant as a parameter.
"""

from __future__ import annotations

from psycopg import sql

from gateway.domain.export import ExportTable, Owner

#: whose rows a table's are, per kind of owner (the tenant is %(tenant)s)
OWNER_FILTERS: dict[Owner, str] = {
    Owner.TENANT_ID: "tenant_id = %(tenant)s",
    Owner.TENANT_ROW: "id = %(tenant)s",
    Owner.MODELS_IN_USE: "id in (select model_id from devices where tenant_id = %(tenant)s)",
    Owner.REGION_ID: "region_id = %(tenant)s",
    Owner.OWNER_TENANT: "owner_tenant = %(tenant)s",
    Owner.MOVE_PARTY: "%(tenant)s in (from_tenant, to_tenant)",
    Owner.AGREEMENT_PARTY: "%(tenant)s in (home_tenant, host_tenant)",
}

#: the export's transaction: one snapshot for every file, read only
BEGIN_SNAPSHOT = "set transaction isolation level repeatable read, read only"
SET_TENANT = "select set_config('wg.tenant_id', %s, true), set_config('timezone', 'UTC', true)"



def select_rows(table: ExportTable) -> sql.Composed:
    """The tenant's rows of ``table``, its columns in file order, in its order."""
    return sql.SQL("select {cols} from {source} where {owner} order by {order}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, table.stored_columns())),
        source=sql.Identifier(table.read_from),
        owner=sql.SQL(OWNER_FILTERS[table.owner]),
        order=sql.SQL(", ").join(map(sql.Identifier, table.order_by)),
    )


#: every vital-sign observation of the tenant's residents, as the FHIR API derives them
#: from readings (api_queries.FHIR_VITALS): weight; the blood-pressure panel; the heart
#: rate a monitor reports with it
VITALS = """
    select person_id, ts, device_id, msg_id, obs, weight_kg, systolic_mmhg, diastolic_mmhg,
           pulse_bpm
    from (
        select person_id, ts, device_id, msg_id, 'weight'::text as obs, weight_kg,
               null::smallint as systolic_mmhg, null::smallint as diastolic_mmhg,
               null::smallint as pulse_bpm
        from api_readings where tenant_id = %(tenant)s and kind = 'weight'
        union all
        select person_id, ts, device_id, msg_id, 'bp', null, systolic_mmhg, diastolic_mmhg,
               null
        from api_readings where tenant_id = %(tenant)s and kind = 'blood_pressure'
        union all
        select person_id, ts, device_id, msg_id, 'hr', null, null, null, pulse_bpm
        from api_readings
        where tenant_id = %(tenant)s and kind = 'blood_pressure' and pulse_bpm is not null
    ) o
    order by person_id, ts, device_id, msg_id, obs
"""

# --- restore (as the owner) ----------------------------------------------------------

TENANT_PRESENT = "select exists (select 1 from tenants where id = %s)"
MIGRATIONS_APPLIED = "select coalesce(max(version), 0) from schema_migrations"


def copy_rows(table: ExportTable, columns: list[str]) -> sql.Composed:
    return sql.SQL("copy {table} ({cols}) from stdin").format(
        table=sql.Identifier(table.name),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )


def staging(table: ExportTable) -> sql.Composed:
    """A temporary table of ``table``'s shape, for reference rows loaded only where not
    present already."""
    return sql.SQL(
        "create temporary table {stage} (like {table} including defaults) on commit drop"
    ).format(stage=sql.Identifier(f"restore_{table.name}"), table=sql.Identifier(table.name))


def copy_staged(table: ExportTable, columns: list[str]) -> sql.Composed:
    return sql.SQL("copy {stage} ({cols}) from stdin").format(
        stage=sql.Identifier(f"restore_{table.name}"),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
    )


def insert_missing(table: ExportTable, columns: list[str]) -> sql.Composed:
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    return sql.SQL(
        "insert into {table} ({cols}) select {cols} from {stage} on conflict do nothing"
    ).format(table=sql.Identifier(table.name), cols=cols,
             stage=sql.Identifier(f"restore_{table.name}"))  # fmt: skip


def existing_ids(table: ExportTable) -> sql.Composed:
    """Which of the ids given (one array parameter) are rows of ``table`` already."""
    return sql.SQL("select id from {table} where id = any(%s)").format(
        table=sql.Identifier(table.name)
    )


def partitions_for(table: ExportTable) -> str:
    return "select wg_partitions_for(%s, %s, %s)"


def advance_identity(table: ExportTable) -> sql.Composed:
    """Move the identity's sequence past the loaded rows (new rows must not collide)."""
    assert table.identity
    return sql.SQL(
        "select setval(pg_get_serial_sequence({name}, {col}),"
        " greatest((select max({ident}) from {table}), 1))"
    ).format(name=sql.Literal(table.name), col=sql.Literal(table.identity),
             ident=sql.Identifier(table.identity), table=sql.Identifier(table.name))  # fmt: skip


#: run after a table is loaded (the tenant is %(tenant)s): the days of the restored report
#: rollup are rolled up already (else a report would roll them up again from raw rows the
#: old installation's retention had dropped, and find nothing)
AFTER_LOADING: dict[str, str] = {
    "report_device_days": """
        insert into report_days_done (tenant_id, day, rolled_at)
        select distinct tenant_id, day, now() from report_device_days
        where tenant_id = %(tenant)s
        on conflict do nothing
    """,
}

#: the access log's rows from the first restored one on, to chain them into this
#: installation's log (the exported hashes were of the old installation's whole log)
ACCESS_LOG_FROM = """
    select id, access_log_row_bytes(a) from access_log a where id >= %s order by id
"""
ACCESS_LOG_PREVIOUS = "select hash from access_log where id < %s order by id desc limit 1"
ACCESS_LOG_REHASH = """
    update access_log a set prev_hash = v.prev_hash, hash = v.hash
    from unnest(%s::bigint[], %s::bytea[], %s::bytea[]) as v (id, prev_hash, hash)
    where a.id = v.id
"""

#: the columns of every table in the public schema (partitions and views left out), for
#: the test that no tenant-owned table or column is forgotten
SCHEMA_COLUMNS = """
    select c.relname, a.attname
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
    where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition
      and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
    order by c.relname, a.attnum
"""

#: any personal identity number stored for the tenant (an export needs the keys then)
PINS_STORED = """
    select exists (select 1 from persons where tenant_id = %s and pin_ciphertext is not null)
"""
