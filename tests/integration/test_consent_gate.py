"""The one consent gate (issue #24) over real HTTP on a real PostgreSQL: every read path of
a resident's personal data writes exactly one access-log row per request, for each of the
gate's outcomes (not the owner: 404; no consent: 403; allowed, under consent or by role).
A path that bypasses the gate (no row) or logs twice (two rows) fails here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from api.fhir.ids import IdCodec
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import registry_repo as repo
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import Bearer, seed, serving

SECRET = "gate-test-secret-gate-test-secret-gate"
REGION_ORG = "232100-0172"
NOW = datetime.now(UTC).replace(microsecond=654321)
READING_TS = NOW - timedelta(days=1)


def auth(tenant: str, role: Role, org: str | None = None, subject: str = "user") -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=subject, org=org, ttl_s=600
        )
    )


CLINICIAN = auth("region-v", Role.CLINICIAN, REGION_ORG, "dr-lind")
ADMIN_A = auth("kommun-a", Role.TENANT_ADMIN, subject="admin-a")
OPERATOR_A = auth("kommun-a", Role.OPERATOR, subject="op-a")
OPERATOR_B = auth("kommun-b", Role.OPERATOR, subject="op-b")


@dataclass
class World:
    http: httpx.AsyncClient
    url: str
    person: UUID  # kommun-a's resident, with scale-1 and one weight reading
    ids: IdCodec

    async def rows_after(self, last_id: int) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(
                "select actor, outcome, reason, request, person_id from access_log"
                " where id > %s order by id",
                (last_id,),
            )
            return await cur.fetchall()

    async def last_id(self) -> int:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute("select coalesce(max(id), 0) from access_log")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    async def consent(self) -> None:
        body = {
            "person_id": str(self.person),
            "recipient_org": REGION_ORG,
            "purpose": "hjärtsvikt",
            "categories": ["weight", "blood_pressure"],
            "legal_basis": "samtycke",
            "valid_from": (NOW - timedelta(days=30)).isoformat(),
        }
        r = await self.http.post("/api/v1/consents", headers=ADMIN_A, json=body)
        assert r.status_code == 201, r.text


@pytest.fixture
async def world(database_url) -> AsyncIterator[World]:
    since = NOW - timedelta(days=200)
    a = await seed(database_url, devices={"scale-1": "t-scale"}, since=since)
    await seed(database_url, "kommun-b", "212000-0002", {"scale-b": "t-scale"}, since)
    person = a.persons["scale-1"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.create_tenant(conn, "region-v", "Region V", "region", REGION_ORG)
        await conn.execute(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, weight_kg) values ('kommun-a', %s, 'scale-1', 'w1', %s, now(), 'weight', 81)",
            (person, READING_TS),
        )
        await conn.commit()
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                  metrics_registry=CollectorRegistry())  # fmt: skip
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield World(http, database_url, person, app.state.fhir_ids)


@dataclass(frozen=True)
class ReadPath:
    """One read path of personal data: the request for a person (``None``: one that does
    not exist), and the status a clinician without consent gets."""

    name: str
    target: Callable[[World, UUID | None], tuple[str, dict[str, str]]]
    without_consent: int = 403


def _readings(w: World, person: UUID | None) -> tuple[str, dict[str, str]]:
    return f"/api/v1/persons/{person or uuid.uuid4()}/readings", {"category": "weight"}


def _search(w: World, person: UUID | None) -> tuple[str, dict[str, str]]:
    return "/fhir/r4/Observation", {"patient": str(person or uuid.uuid4())}


def _observation(w: World, person: UUID | None) -> tuple[str, dict[str, str]]:
    ident = w.ids.encode(person or uuid.uuid4(), READING_TS, "weight", "scale-1", "w1")
    return f"/fhir/r4/Observation/{ident}", {}


def _patient(w: World, person: UUID | None) -> tuple[str, dict[str, str]]:
    return f"/fhir/r4/Patient/{person or uuid.uuid4()}", {}


def _device(w: World, person: UUID | None) -> tuple[str, dict[str, str]]:
    return f"/fhir/r4/Device/{'scale-1' if person else 'no-such-device'}", {}


PATHS = [
    ReadPath("readings", _readings),
    ReadPath("fhir-observation-search", _search),
    ReadPath("fhir-observation-read", _observation),
    ReadPath("fhir-patient", _patient),
    # a device is found only through a consent: without one it is 404 like an unknown id
    ReadPath("fhir-device", _device, without_consent=404),
]


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
async def test_every_read_path_logs_exactly_one_row_per_decision(
    world: World, path: ReadPath
) -> None:
    w = world

    async def read(headers: dict, person: UUID | None, status: int, outcome: str) -> str:
        url, params = path.target(w, person)
        before = await w.last_id()
        r = await w.http.get(url, params=params, headers=headers)
        assert r.status_code == status, r.text
        rows = await w.rows_after(before)
        assert len(rows) == 1, rows  # exactly one entry for the decision
        _actor, logged, reason, request, _person = rows[0]
        assert logged == outcome and request == f"GET {url}", rows
        return str(reason)

    # not the owner: another municipality's staff, and a person that does not exist
    await read(OPERATOR_B, w.person, 404, "denied")
    await read(CLINICIAN, None, 404, "denied")
    # another organisation without a consent
    await read(CLINICIAN, w.person, path.without_consent, "denied")
    # allowed: under a consent valid now, and by role in the owning municipality
    await w.consent()
    assert (await read(CLINICIAN, w.person, 200, "allowed")).startswith("consent valid")
    assert (await read(OPERATOR_A, w.person, 200, "allowed")).startswith("by role")


async def test_the_consoles_alarm_detail_logs_one_row_when_it_reads_the_person(
    world: World,
) -> None:
    """The console's alarm detail (care notes and track) is read by role only: one row when
    the person is read, none when the alarm is not the caller's (nothing is read)."""
    w = world
    alarm = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        await conn.execute(
            "insert into alarms (id, tenant_id, kind, severity, device_id, person_id,"
            " person_ref, subject, state, raised_at, last_at, occurrences, version)"
            " values (%s, 'kommun-a', 'button', 'critical', 'scale-1', %s, 'ref', %s,"
            " 'raised', now(), now(), 1, 1)",
            (alarm, w.person, str(w.person)),
        )
        await conn.commit()
    url = f"/api/v1/console/alarms/{alarm}"

    before = await w.last_id()
    r = await w.http.get(url, headers=OPERATOR_B)
    assert r.status_code == 404, r.text
    assert await w.rows_after(before) == []

    r = await w.http.get(url, headers=OPERATOR_A)
    assert r.status_code == 200, r.text
    rows = await w.rows_after(before)
    assert [(actor, outcome, request) for actor, outcome, _, request, _ in rows] == [
        ("op-a", "allowed", f"GET {url}")
    ]
    assert rows[0][4] == w.person
