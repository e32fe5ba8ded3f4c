"""Consent-aware reads and the access log over real HTTP on a real PostgreSQL: a region's
clinician reads a resident's readings only under a valid consent, only inside its
period; every read is logged, and the log detects tampering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import migrate as migrate_module
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres.access_log import verify
from gateway.adapters.postgres.migrate import migrate
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import seed, serving

SECRET = "consent-test-secret-consent-test-secret"
REGION_ORG = "232100-0172"


def auth(tenant: str, role: Role, org: str | None = None, subject: str = "user") -> dict:
    token = mint(SECRET, tenant=tenant, role=role, subject=subject, org=org, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world(database_url) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    s = await seed(database_url, devices={"scale-1": "t-scale", "bp-1": "t-bp"},
                   since=datetime.now(UTC) - timedelta(days=200))  # fmt: skip
    person = str(s.persons["scale-1"])
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.create_tenant(conn, "region-v", "Region V", "region", REGION_ORG)
        for days, kg in ((100, 80.0), (20, 81.0), (1, 82.0)):
            await conn.execute(
                "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
                " kind, weight_kg) values ('kommun-a', %s, 'scale-1', %s, %s, %s, 'weight', %s)",
                (person, f"w{days}", now - timedelta(days=days), now, kg),
            )
        await conn.commit()
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                     metrics_registry=CollectorRegistry())  # fmt: skip
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield http, person, database_url


async def test_consent_governs_a_regional_clinicians_reads(world) -> None:
    http, person, url = world
    clinician = auth("region-v", Role.CLINICIAN, REGION_ORG, "dr-lind")
    admin = auth("kommun-a", Role.TENANT_ADMIN, subject="admin-a")
    path = f"/api/v1/persons/{person}/readings"

    r = await http.get(path, headers=clinician, params={"category": "weight"})
    assert r.status_code == 403 and r.json()["detail"] == "no consent for this organisation"

    since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    body = {"person_id": person, "recipient_org": REGION_ORG, "purpose": "hjärtsvikt",
            "categories": ["weight"], "valid_from": since, "legal_basis": "samtycke"}  # fmt: skip
    r = await http.post("/api/v1/consents", headers=admin, json=body)
    assert r.status_code == 201, r.text
    consent_id = r.json()["id"]

    r = await http.get(path, headers=clinician, params={"category": "weight"})
    assert r.status_code == 200, r.text
    kgs = [item["weight_kg"] for item in r.json()["items"]]
    assert kgs == [81.0, 82.0]  # the reading from before the consent is never returned

    r = await http.get(path, headers=clinician, params={"category": "blood_pressure"})
    assert r.status_code == 403
    other_region = auth("region-x", Role.CLINICIAN, "232100-0000")
    r = await http.get(path, headers=other_region, params={"category": "weight"})
    assert r.status_code == 403

    r = await http.post(f"/api/v1/consents/{consent_id}/withdraw", headers=admin)
    assert r.status_code == 200 and r.json()["withdrawn_by"] == "admin-a"
    r = await http.get(path, headers=clinician, params={"category": "weight"})
    assert r.status_code == 403 and r.json()["detail"] == "consent withdrawn"

    # the municipality's own operator reads by role; that is logged too
    r = await http.get(path, headers=auth("kommun-a", Role.OPERATOR), params={"category": "weight"})
    assert r.status_code == 200 and len(r.json()["items"]) == 3

    auditor = auth("kommun-a", Role.AUDITOR)
    r = await http.get("/api/v1/access-log", headers=auditor, params={"person_id": person})
    log = r.json()
    assert [(e["actor"], e["outcome"]) for e in reversed(log)] == [
        ("dr-lind", "denied"),
        ("dr-lind", "allowed"),
        ("dr-lind", "denied"),
        ("user", "denied"),
        ("dr-lind", "denied"),
        ("user", "allowed"),
    ]
    assert log[0]["reason"] == "by role"
    assert {e["categories"][0] for e in log} == {"weight", "blood_pressure"}

    # another municipality's auditor sees none of it
    r = await http.get("/api/v1/access-log", headers=auth("kommun-b", Role.AUDITOR))
    assert r.json() == []

    assert verify(url).ok
    with psycopg.connect(url) as conn:
        conn.execute("update access_log set reason = 'nothing to see' where id = 2")
    result = verify(url)
    assert not result.ok and result.first_bad_id == 2


async def test_access_log_is_append_only_for_the_api_role(world) -> None:
    _http, _person, url = world
    with psycopg.connect(with_user(url, "wg_api", API_PASSWORD)) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', false)")
        conn.execute("select append_access_log('x', null, 'operator', 'kommun-a', 'kommun-a',"
                     " null, array['weight'], null, 'allowed', 'test', 'GET /')")  # fmt: skip
        conn.commit()
        forged = (
            "insert into access_log (at, actor, actor_role, actor_tenant, categories, outcome,"
            " reason, request, prev_hash, hash)"
            " values (now(), 'x', 'x', 'x', '{}', 'allowed', 'x', 'x', '', '')"
        )
        for statement in ("update access_log set reason = 'edited'", "delete from access_log",
                          forged):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    assert verify(url).ok


async def test_consented_reads_of_position_lock_events_and_alarms(world) -> None:
    http, person, url = world
    clinician = auth("region-v", Role.CLINICIAN, REGION_ORG, "dr-berg")
    admin = auth("kommun-a", Role.TENANT_ADMIN, subject="admin-a")
    path = f"/api/v1/persons/{person}/readings"
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for days in (20, 5, 3):  # positions are kept 30 days
            ts = now - timedelta(days=days)
            await conn.execute(
                "insert into positions (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, lat, lon, accuracy_m)"
                " values ('kommun-a', %s, 'gps-9', %s, %s, now(), 59.3, 18.0, 10)",
                (person, f"p{days}", ts),
            )
            await conn.execute(
                "insert into lock_events (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, action, key_id, method)"
                " values ('kommun-a', %s, 'lock-9', %s, %s, now(), 'unlock', 'k1', 'staff_key')",
                (person, f"l{days}", ts),
            )
            await conn.execute(
                "insert into device_alarms (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, kind) values ('kommun-a', %s, 'gps-9', %s, %s, now(), 'fall')",
                (person, f"a{days}", ts),
            )
        await conn.commit()

    for category in ("position", "lock_events", "alarms"):
        r = await http.get(path, headers=clinician, params={"category": category})
        assert r.status_code == 403 and r.json()["detail"] == "no consent for this organisation"

    since = (now - timedelta(days=10)).isoformat()
    body = {"person_id": person, "recipient_org": REGION_ORG, "purpose": "trygghetslarm",
            "categories": ["position", "alarms"], "valid_from": since,
            "legal_basis": "samtycke"}  # fmt: skip
    r = await http.post("/api/v1/consents", headers=admin, json=body)
    assert r.status_code == 201, r.text
    consent_id = r.json()["id"]

    # only rows from inside the consent's period; paging through the same path
    r = await http.get(path, headers=clinician, params={"category": "position", "limit": 1})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [i["msg_id"] for i in page["items"]] == ["p5"] and page["items"][0]["lat"] == 59.3
    r = await http.get(path, headers=clinician,
                       params={"category": "position", "cursor": page["next_cursor"]})  # fmt: skip
    assert [i["msg_id"] for i in r.json()["items"]] == ["p3"] and r.json()["next_cursor"] is None
    r = await http.get(path, headers=clinician, params={"category": "alarms"})
    assert [(i["msg_id"], i["kind"]) for i in r.json()["items"]] == [("a5", "fall"), ("a3", "fall")]
    r = await http.get(path, headers=clinician, params={"category": "lock_events"})
    assert r.status_code == 403
    assert r.json()["detail"] == "no consent covers the category lock_events"
    # the owning municipality's operator reads all of it by role
    r = await http.get(path, headers=auth("kommun-a", Role.OPERATOR),
                       params={"category": "lock_events"})  # fmt: skip
    assert [i["msg_id"] for i in r.json()["items"]] == ["l20", "l5", "l3"]

    r = await http.post(f"/api/v1/consents/{consent_id}/withdraw", headers=admin)
    assert r.status_code == 200
    r = await http.get(path, headers=clinician, params={"category": "position"})
    assert r.status_code == 403 and r.json()["detail"] == "consent withdrawn"

    with psycopg.connect(url) as conn:
        log = conn.execute(
            "select categories[1], outcome from access_log where actor = 'dr-berg' order by id"
        ).fetchall()
    assert log == [("position", "denied"), ("lock_events", "denied"), ("alarms", "denied"),
                   ("position", "allowed"), ("position", "allowed"), ("alarms", "allowed"),
                   ("lock_events", "denied"), ("position", "denied")]  # fmt: skip
    assert verify(url).ok


async def test_a_consent_cannot_name_another_tenants_resident(world) -> None:
    """Review #17.4: as ``wg_api`` with tenant A, a consent row naming tenant B's resident
    could be inserted (row-level security checks only the row's own tenant), after which a
    region's clinician read B's weights. The database itself refuses it now: a consent's
    (person_id, tenant_id) must be a person of that tenant."""
    http, _person, url = world
    b = await seed(url, "kommun-b", "212000-0002", {"scale-b": "t-scale"},
                   datetime.now(UTC) - timedelta(days=30))  # fmt: skip
    other = b.persons["scale-b"]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, weight_kg) values ('kommun-b', %s, 'scale-b', 'wb', now() - interval '1 day',"
            " now(), 'weight', 64)",
            (other,),
        )
        await conn.commit()
    forged = (
        "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
        " valid_from, legal_basis, recorded_by)"
        " values ('kommun-a', %s, %s, 'hjärtsvikt', array['weight'],"
        " now() - interval '30 days', 'samtycke', 'admin-a')"
    )
    refused: psycopg.Error | None = None
    with psycopg.connect(with_user(url, "wg_api", API_PASSWORD)) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', false)")
        try:
            conn.execute(forged, (other, REGION_ORG))
            conn.commit()
        except psycopg.errors.ForeignKeyViolation as exc:
            refused = exc
            conn.rollback()
    # so the region has no consent for B's resident, and reads none of B's weights
    clinician = auth("region-v", Role.CLINICIAN, REGION_ORG, "dr-lind")
    r = await http.get(f"/api/v1/persons/{other}/readings", headers=clinician,
                       params={"category": "weight"})  # fmt: skip
    assert r.status_code == 403, f"A's forged consent let the region read B's data: {r.text}"
    assert r.json()["detail"] == "no consent for this organisation"
    assert refused is not None and "consents_person_tenant" in str(refused)
    # the API refuses it before the database (B's resident is not found for A's admin)
    body = {"person_id": str(other), "recipient_org": REGION_ORG, "purpose": "hjärtsvikt",
            "categories": ["weight"], "legal_basis": "samtycke",
            "valid_from": (datetime.now(UTC) - timedelta(days=30)).isoformat()}  # fmt: skip
    r = await http.post("/api/v1/consents", headers=auth("kommun-a", Role.TENANT_ADMIN), json=body)
    assert r.status_code == 404
    # recorded by B itself, the same consent is accepted (the constraint is no wider)
    with psycopg.connect(with_user(url, "wg_api", API_PASSWORD)) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-b', false)")
        conn.execute(forged.replace("'kommun-a'", "'kommun-b'"), (other, REGION_ORG))
        conn.commit()
    r = await http.get(f"/api/v1/persons/{other}/readings", headers=clinician,
                       params={"category": "weight"})  # fmt: skip
    assert r.status_code == 200 and [i["weight_kg"] for i in r.json()["items"]] == [64.0]


async def test_migration_moves_aside_consents_naming_another_tenants_resident(
    postgres, monkeypatch
) -> None:
    """A consent forged before migration 0010 (review #17.4) cannot satisfy the new key: it
    is moved into consents_rejected, as evidence, and no longer grants any read."""
    url = postgres.create_database()
    everything = migrate_module.available
    monkeypatch.setattr(
        migrate_module, "available", lambda: [m for m in everything() if m.version < 10]
    )
    migrate(url, api_password=API_PASSWORD)
    a = await seed(url, "kommun-a", "212000-0001", {"scale-a": "t-scale"})
    b = await seed(url, "kommun-b", "212000-0002", {"scale-b": "t-scale"})
    insert = (
        "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
        " valid_from, legal_basis, recorded_by) values (%s, %s, %s, 'hjärtsvikt',"
        " array['weight'], now() - interval '1 day', 'samtycke', 'admin') returning id"
    )
    with psycopg.connect(url) as conn:
        kept = conn.execute(insert, ("kommun-a", a.persons["scale-a"], REGION_ORG)).fetchone()
        forged = conn.execute(insert, ("kommun-a", b.persons["scale-b"], REGION_ORG)).fetchone()
    assert kept is not None and forged is not None
    monkeypatch.undo()
    assert 10 in migrate(url).applied
    with psycopg.connect(url) as conn:
        assert conn.execute("select id from consents").fetchall() == [kept]
        assert conn.execute(
            "select id, tenant_id, person_tenant_id from consents_rejected"
        ).fetchall() == [(forged[0], "kommun-a", "kommun-b")]
        assert conn.execute(
            "select count(*) from consents_for(%s, %s)", (b.persons["scale-b"], REGION_ORG)
        ).fetchone() == (0,)
    with psycopg.connect(with_user(url, "wg_api", API_PASSWORD)) as conn:
        conn.execute("select set_config('wg.tenant_id', 'kommun-a', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from consents_rejected")
