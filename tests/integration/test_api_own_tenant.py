"""GET /api/v1/tenant: the caller's own tenant (name, kind, time zone), by the token, over
real HTTP on a real PostgreSQL as role wg_api (row-level security)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.bootstrap import api_app
from gateway.config.settings import AlarmSettings, Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import seed, serving

SECRET = "own-tenant-secret-own-tenant-secret"


@contextlib.asynccontextmanager
async def api_server(database_url: str, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD, **overrides
    )
    app = api_app(
        settings,
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield http


def auth(tenant: str, role: Role = Role.OPERATOR) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-x", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def test_each_tenant_reads_its_own_name_only(database_url: str) -> None:
    await seed(database_url, tenant="kommun-a", org="212000-0001")
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-1": "t-scale"})
    async with api_server(database_url) as http:
        for role in Role:
            r = await http.get("/api/v1/tenant", headers=auth("kommun-a", role))
            assert r.status_code == 200, (role, r.text)
            assert r.json() == {
                "id": "kommun-a", "name": "Kommun-A", "kind": "municipality",
                "time_zone": "Europe/Stockholm",
            }  # fmt: skip
            assert "Kommun-B" not in r.text
        r = await http.get("/api/v1/tenant", headers=auth("kommun-b"))
        assert r.json()["name"] == "Kommun-B"
        # A token of a tenant without a row: nothing to show (and no one else's).
        r = await http.get("/api/v1/tenant", headers=auth("kommun-x"))
        assert r.status_code == 404
        assert (await http.get("/api/v1/tenant")).status_code == 401

    # The read runs as wg_api under row-level security: with the tenant set, the table
    # shows that tenant's row only, whatever the query asks for.
    api_url = with_user(database_url, "wg_api", API_PASSWORD)
    async with await psycopg.AsyncConnection.connect(api_url) as conn, conn.transaction():
        await conn.execute("select set_config('wg.tenant_id', 'kommun-a', true)")
        cur = await conn.execute("select id from tenants order by id")
        assert await cur.fetchall() == [("kommun-a",)]


async def test_the_time_zone_is_the_configured_one(database_url: str) -> None:
    await seed(database_url, tenant="kommun-a", org="212000-0001")
    async with api_server(database_url, alarms=AlarmSettings(timezone="Europe/Helsinki")) as http:
        r = await http.get("/api/v1/tenant", headers=auth("kommun-a"))
        assert r.json()["time_zone"] == "Europe/Helsinki"
