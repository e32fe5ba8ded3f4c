"""The registry API over real HTTP (uvicorn) on a real PostgreSQL as role wg_api."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import seed, serving

SECRET = "test-secret-test-secret-test-secret"


@contextlib.asynccontextmanager
async def api_server(database_url: str) -> AsyncIterator[str]:
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(
        settings,
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    async with serving(app) as base:
        yield base


def auth(tenant: str, role: Role) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role}", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_server(database_url) as base, httpx.AsyncClient(base_url=base) as client:
        yield client


async def test_register_assign_return_over_http(http: httpx.AsyncClient, database_url) -> None:
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-1": "t-scale"})
    admin = auth("platform", Role.PLATFORM_ADMIN)
    r = await http.post(
        "/api/v1/tenants",
        headers=admin,
        json={
            "id": "kommun-a",
            "name": "Kommun A",
            "kind": "municipality",
            "org_number": "212000-0001",
        },
    )
    assert r.status_code == 201, r.text
    a = auth("kommun-a", Role.TENANT_ADMIN)
    r = await http.post("/api/v1/persons", headers=a, json={"ref": "Brukare 1"})
    assert r.status_code == 201, r.text
    person = r.json()["id"]
    r = await http.post("/api/v1/devices", headers=a, json={"id": "a-1", "model_id": "t-scale"})
    assert r.status_code == 201, r.text
    r = await http.post("/api/v1/devices/a-1/assign", headers=a, json={"person_id": person})
    assert r.status_code == 204, r.text
    r = await http.get("/api/v1/devices", headers=a, params={"status": "active"})
    assert [d["id"] for d in r.json()] == ["a-1"]
    assert r.json()[0]["person_id"] == person
    r = await http.post("/api/v1/devices/a-1/assign", headers=a, json={"person_id": person})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await http.post("/api/v1/devices/a-1/return", headers=a)
    assert r.status_code == 204
    r = await http.get("/api/v1/devices", headers=a, params={"status": "returned"})
    assert [d["id"] for d in r.json()] == ["a-1"]


async def test_errors_are_problem_details_and_tenants_are_isolated(
    http: httpx.AsyncClient, database_url
) -> None:
    b = await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-1": "t-scale"})
    await seed(database_url, tenant="kommun-a", org="212000-0001", devices={"a-1": "t-scale"})
    a = auth("kommun-a", Role.TENANT_ADMIN)
    other_person = b.persons["b-1"]
    r = await http.get(f"/api/v1/persons/{other_person}", headers=a)
    assert r.status_code == 404 and r.json()["title"] == "Not Found"
    r = await http.get("/api/v1/devices", headers=a)
    assert [d["id"] for d in r.json()] == ["a-1"]
    r = await http.post("/api/v1/devices/b-1/return", headers=a)
    assert r.status_code == 404
    r = await http.get("/api/v1/devices", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = await http.post("/api/v1/tenants", headers=a, json={})
    assert r.status_code == 403
    r = await http.post("/api/v1/devices", headers=a, json={"id": "bad id!", "model_id": "x"})
    assert r.status_code == 422
    body: dict[str, Any] = r.json()
    assert any(e["field"] == "body.id" for e in body["errors"])
    r = await http.get(f"/api/v1/persons/{other_person}/readings", headers=a,
                       params={"category": "weight"})  # fmt: skip
    assert r.status_code == 404
    r = await http.get("/healthz")
    assert r.json() == {"status": "ok", "database": "up", "workers_online": None}


async def test_bad_registry_input_is_a_clear_4xx(http: httpx.AsyncClient) -> None:
    admin = auth("kommun-a", Role.TENANT_ADMIN)
    platform = auth("platform", Role.PLATFORM_ADMIN)
    await http.post(
        "/api/v1/tenants",
        headers=platform,
        json={"id": "kommun-a", "name": "A", "kind": "municipality", "org_number": "212000-0001"},
    )
    # no pii keys configured: refused, nothing stored
    r = await http.post(
        "/api/v1/persons",
        headers=admin,
        json={"ref": "p1", "personal_identity_number": "19121212-1212"},
    )
    assert r.status_code == 422 and "pii_keys" in r.json()["detail"]
    model = {
        "id": "m-1",
        "vendor": "Acme",
        "model": "S1",
        "device_type": "scale",
        "heartbeat_interval_s": 60,
    }
    # device models are the platform's (review #17.1): a tenant admin may not add one
    assert (await http.post("/api/v1/device-models", headers=admin, json=model)).status_code == 403
    r = await http.post("/api/v1/device-models", headers=platform, json=model)
    assert r.status_code == 201
    r = await http.post("/api/v1/device-models", headers=platform, json={**model, "id": "m-2"})
    assert r.status_code == 409 and "registered" in r.json()["detail"]
    r = await http.post("/api/v1/devices", headers=admin, json={"id": "d-1", "model_id": "nope"})
    assert r.status_code == 422


async def test_malformed_identity_number_is_422_and_stores_nothing(database_url) -> None:
    import base64
    import os

    from tests.integration.harness import scalar

    key = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(database_url=database_url, jwt_secret=SECRET,
                        api_db_password=API_PASSWORD, pii_keys={"k1": key})  # fmt: skip
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                     metrics_registry=CollectorRegistry())  # fmt: skip
    await seed(database_url, tenant="kommun-a", org="212000-0001", devices={"a-1": "t-scale"})
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        admin = auth("kommun-a", Role.TENANT_ADMIN)
        r = await http.post(
            "/api/v1/persons",
            headers=admin,
            json={"ref": "p2", "personal_identity_number": "19121212-1213"},
        )
        assert r.status_code == 422 and "check digit" in r.json()["detail"]
        r = await http.post(
            "/api/v1/persons",
            headers=admin,
            json={"ref": "p3", "personal_identity_number": "19121212-1212"},
        )
        assert r.status_code == 201
    assert await scalar(database_url, "select count(*) from persons where ref = 'p2'") == 0
    stored = await scalar(database_url, "select pin_ciphertext from persons where ref = 'p3'")
    assert b"191212121212" not in bytes(stored)
