"""Migrations on a real PostgreSQL, and tenant isolation as the API's database role."""

from __future__ import annotations

import psycopg
import pytest

from gateway.embedded import with_user
from gateway.storage import migrate as migrate_module
from gateway.storage.migrate import MigrationError, migrate
from tests.conftest import API_PASSWORD
from tests.integration.harness import seed


def test_migrations_apply_once_and_are_idempotent(postgres) -> None:
    url = postgres.create_database()
    applied = migrate(url, api_password=API_PASSWORD)
    assert applied == [m.version for m in migrate_module.available()]
    assert migrate(url) == []
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
