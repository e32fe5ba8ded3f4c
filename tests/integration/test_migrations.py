"""Migrations on a real PostgreSQL; least privilege of the worker's and the API's roles."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from gateway import bootstrap
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import migrate as migrate_module
from gateway.adapters.postgres import partitions
from gateway.adapters.postgres.migrate import MigrationError, migrate
from gateway.config.settings import RetentionDays, Settings
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import seed


def test_migrations_apply_once_and_are_idempotent(postgres) -> None:
    url = postgres.create_database()
    applied = migrate(url, api_password=API_PASSWORD)
    assert applied.applied == [m.version for m in migrate_module.available()]
    assert migrate(url).applied == []
    with psycopg.connect(url) as conn:
        tables = {
            r[0] for r in conn.execute("select tablename from pg_tables where schemaname='public'")
        }
    assert {"tenants", "persons", "devices", "assignments", "device_models", "quarantine"} <= tables


def test_changed_migration_stops_startup(postgres, monkeypatch) -> None:
    url = postgres.create_database()
    migrate(url)
    original = migrate_module.available

    def tampered() -> list[migrate_module.Migration]:
        first, *rest = original()
        return [migrate_module.Migration(first.version, first.name, first.sql + "\n-- x"), *rest]

    monkeypatch.setattr(migrate_module, "available", tampered)
    with pytest.raises(MigrationError, match="was changed"):
        migrate(url)


async def test_api_role_sees_only_its_tenant(database_url) -> None:
    await seed(database_url, tenant="kommun-a", org="212000-0001", devices={"a-1": "t-scale"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-1": "t-scale"})
    api = with_user(database_url, "wg_api", API_PASSWORD)
    with psycopg.connect(api) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', true)")
        assert [r[0] for r in conn.execute("select id from devices")] == ["a-1"]
        assert conn.execute("select count(*) from persons").fetchone() == (1,)
        # no tenant set: nothing at all
        conn.rollback()
        assert conn.execute("select count(*) from devices").fetchone() == (0,)
        conn.rollback()
        # time series only through the tenant-filtered views
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select count(*) from readings")
        conn.rollback()
        # writing into another tenant is refused by the policy
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("insert into persons (tenant_id, ref) values ('kommun-b', 'sneaky')")


async def test_a_visit_cannot_name_another_tenants_resident(database_url) -> None:
    """Held by the database itself, below the API's own check."""
    a = await seed(database_url, "kommun-a", "212000-0001", {"lock-a": "t-lock"})
    b = await seed(database_url, "kommun-b", "212000-0002", {"lock-b": "t-lock"})
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        ok = await conn.execute(
            "insert into visits (tenant_id, person_id, team, starts_at, ends_at, created_by)"
            " values ('kommun-a', %s, 'natt', now(), now() + interval '1 hour', 't')"
            " returning id",
            (a.persons["lock-a"],),
        )
        assert await ok.fetchone()
        await conn.commit()
        for table, extra_cols, extra_vals in (
            ("visits", "starts_at, ends_at, created_by", "now(), now() + interval '1 hour', 't'"),
            ("visit_slots", "weekdays, start_time, end_time, created_by",
             "'{1}', '08:00', '09:00', 't'"),
        ):
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                await conn.execute(
                    f"insert into {table} (tenant_id, person_id, team, {extra_cols})"
                    f" values ('kommun-a', %s, 'natt', {extra_vals})",
                    (b.persons["lock-b"],),
                )
            await conn.rollback()


def _ordinary_owner(postgres, *, createrole: bool) -> tuple[str, str]:
    """A database owned by a fresh role that is not a superuser (as a DBA would set up)."""
    owner = f"wg_owner_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    admin = postgres.url
    name = f"wg_owned_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create role {} login password {} {}").format(
                sql.Identifier(owner), sql.Literal(password),
                sql.SQL("createrole" if createrole else "nocreaterole"),
            )
        )
        conn.execute(sql.SQL("create database {} owner {}").format(
            sql.Identifier(name), sql.Identifier(owner)))
    return with_user(postgres.database_url(name), owner, password), name


def test_ordinary_owner_without_createrole_gets_the_fix_not_a_traceback(tmp_path) -> None:
    from tests.services import Postgres

    server = Postgres(tmp_path / "pg")  # a cluster of its own: no service roles yet
    try:
        url, _ = _ordinary_owner(server, createrole=False)
        with pytest.raises(MigrationError) as err:
            migrate(url, api_password=API_PASSWORD)
        message = str(err.value)
        assert "wg_worker, wg_api missing" in message
        assert "CREATEROLE" in message and "CREATE ROLE wg_worker LOGIN" in message
        # the DBA creates them by hand, as docs/deploy.md says; then migrate succeeds
        with psycopg.connect(server.url, autocommit=True) as conn:
            for role in ("wg_worker", "wg_api"):
                conn.execute(sql.SQL("create role {} login noinherit password 'x'").format(
                    sql.Identifier(role)))
        migrated = migrate(url, api_password=API_PASSWORD)
        assert migrated.applied  # and the passwords stay the DBA's (no right to change)
        assert any("password of wg_api not set" in n for n in migrated.notes)
    finally:
        server.stop()


def test_owner_with_createrole_creates_roles_and_the_worker_has_no_ddl(tmp_path) -> None:
    from tests.services import Postgres

    server = Postgres(tmp_path / "pg")
    try:
        url, _ = _ordinary_owner(server, createrole=True)
        migrated = migrate(url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
        assert migrated.notes == []
        worker = with_user(url, "wg_worker", WORKER_PASSWORD)
        _assert_worker_least_privilege(worker)
    finally:
        server.stop()


def _assert_worker_least_privilege(worker_url: str) -> None:
    with psycopg.connect(worker_url, autocommit=True) as conn:
        for stmt in (
            "create table sneaky (x int)",
            "alter table readings add column sneaky int",
            "drop table quarantine",
            "update access_log set purpose = 'x'",
            "delete from access_log",
            "select pin_ciphertext from persons",
            "select care_notes from persons",
            "delete from readings",
            "delete from alarms",
            "select wg_maintain_partitions_at(now() + interval '100 years')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
        # what it does need
        conn.execute("select id, tenant_id, ref from persons").fetchall()
        conn.execute("select count(*) from devices").fetchone()
        assert conn.execute("select wg_maintain_partitions()").fetchone() == (0,)


def test_partitions_follow_the_plan_and_only_the_owner_picks_the_instant(database_url) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        def names(table: str) -> set[str]:
            return {r[0] for r in conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " join pg_class p on p.oid = i.inhparent where p.relname = %s", (table,))}

        # positions: 1-day partitions for 30 days back and 2 days ahead, named by UTC day
        today = f"positions_p{now:%Y%m%d}"
        ahead = f"positions_p{now + timedelta(days=2):%Y%m%d}"
        expired = f"positions_p{now - timedelta(days=32):%Y%m%d}"
        assert {today, ahead} <= names("positions") and expired not in names("positions")
        assert len(names("positions")) in (32, 33, 34)
        # a shorter retention, written by migrate, drops what is past it
        partitions.write_plan(conn, RetentionDays(positions=3))
        assert partitions.maintain(conn) > 0
        kept = names("positions")
        assert today in kept and f"positions_p{now - timedelta(days=5):%Y%m%d}" not in kept
        # a month on: the owner may run it as of another instant
        partitions.maintain(conn, now + timedelta(days=40))
        assert f"positions_p{now + timedelta(days=41):%Y%m%d}" in names("positions")
        assert today not in names("positions")


def test_sensor_states_are_kept_for_their_retention_only(database_url) -> None:
    """#20's sensor_events is a plain table: the workers' maintenance deletes the states
    older than retention.sensor_events (migration 0024), whatever the backend."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("insert into tenants (id, name, kind, org_number)"
                     " values ('kommun-s', 'S', 'municipality', '212000-0009')")  # fmt: skip
        for msg_id, age_days in (("old", 100), ("kept", 80), ("new", 0)):
            conn.execute(
                "insert into sensor_events (tenant_id, device_id, msg_id, ts, received_at,"
                " kind, state) values ('kommun-s', 'bed-1', %s, %s, %s, 'bed', 'occupied')",
                (msg_id, now - timedelta(days=age_days), now),
            )
    worker = with_user(database_url, "wg_worker", WORKER_PASSWORD)

    def left() -> list[str]:
        with psycopg.connect(database_url) as conn:
            return [r[0] for r in conn.execute("select msg_id from sensor_events order by ts")]

    with psycopg.connect(worker, autocommit=True) as conn:
        conn.execute("select wg_maintain_partitions()")
    assert left() == ["kept", "new"]  # 90 days by default
    with psycopg.connect(database_url, autocommit=True) as conn:
        partitions.write_plan(conn, RetentionDays(sensor_events=30))
    with psycopg.connect(worker, autocommit=True) as conn:
        conn.execute("select wg_maintain_partitions()")
    assert left() == ["new"]


async def test_the_worker_refuses_a_schema_behind_its_version(database_url) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("delete from schema_migrations where version = 9")
    settings = Settings(database_url=database_url, mqtt_url="mqtt://127.0.0.1:1",
                        mode="development")  # fmt: skip
    service = bootstrap.worker(settings, database_url=database_url, mqtt_url="mqtt://127.0.0.1:1")
    with pytest.raises(MigrationError, match=r"migrations \[9\] not applied.*migrate"):
        await asyncio.wait_for(service.start(), 10)


def test_the_test_clusters_worker_role_is_least_privileged(database_url) -> None:
    _assert_worker_least_privilege(with_user(database_url, "wg_worker", WORKER_PASSWORD))


def test_definer_functions_never_read_the_callers_temporary_tables(database_url) -> None:
    """Review: pg_temp is searched first unless named; a temporary `partition_plan` with a
    negative retention made wg_maintain_partitions() (running as the owner) drop every
    partition. Every SECURITY DEFINER function now searches pg_temp last."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        bad = conn.execute(
            "select p.oid::regprocedure::text from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'public' and p.prosecdef and not exists (select 1 from"
            " pg_depend d where d.objid = p.oid and d.deptype = 'e') and not coalesce("
            " 'search_path=public, pg_catalog, pg_temp' = any(p.proconfig), false)"
        ).fetchall()
        assert bad == []
        # the test database is a copy of a template, which does not carry database
        # privileges: let the API role make a temporary table as a default install would
        conn.execute(sql.SQL("grant temporary on database {} to wg_api").format(
            sql.Identifier(conn.info.dbname)))
        before = conn.execute("select count(*) from pg_inherits i join pg_class p"
                              " on p.oid = i.inhparent where p.relname = 'positions'").fetchone()
    worker = with_user(database_url, "wg_worker", WORKER_PASSWORD)
    with psycopg.connect(worker, autocommit=True) as conn:
        conn.execute("create temp table partition_plan (table_name text, interval_days int,"
                     " retention_days int)")  # fmt: skip
        conn.execute("insert into pg_temp.partition_plan values ('positions', 1, -1)")
        conn.execute("select wg_maintain_partitions()")
    with psycopg.connect(database_url, autocommit=True) as conn:
        after = conn.execute("select count(*) from pg_inherits i join pg_class p"
                             " on p.oid = i.inhparent where p.relname = 'positions'").fetchone()
    assert after == before


def test_only_the_worker_may_create_temporary_tables(postgres) -> None:
    url = postgres.create_database()  # migrated afresh: database privileges are its own
    migrate(url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
    api = with_user(url, "wg_api", API_PASSWORD)
    with psycopg.connect(api, autocommit=True) as conn, pytest.raises(
        psycopg.errors.InsufficientPrivilege
    ):
        conn.execute("create temp table quarantine (id bigint)")
    with psycopg.connect(with_user(url, "wg_worker", WORKER_PASSWORD), autocommit=True) as c:
        c.execute("create temp table stage_x (id bigint)")
