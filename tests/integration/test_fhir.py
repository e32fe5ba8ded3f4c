"""FHIR R4 over real HTTP on a real PostgreSQL: a region's clinician reads vital-sign
Observations only under a valid consent and only from inside its period; paging is stable;
other tenants' ids are 404; every error is an OperationOutcome; every read is logged.
Output is validated with the fhir.resources R4B models (FHIR 4.3, the R4-compatible
subpackage of fhir.resources 8)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import registry_repo as repo
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import Bearer, seed, serving

SECRET = "fhir-test-secret-fhir-test-secret-fhir"
REGION_ORG = "232100-0172"
FHIR_JSON = "application/fhir+json"
NOW = datetime.now(UTC).replace(microsecond=123456)


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
    person: str  # kommun-a's resident with a scale and a blood-pressure monitor
    other: str  # kommun-b's resident

    async def insert_weight(self, days_ago: float, kg: float, device: str = "scale-1") -> None:
        await self.sql(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, weight_kg) values ('kommun-a', %s, %s, %s, %s, now(), 'weight', %s)",
            (self.person, device, f"w{days_ago}", NOW - timedelta(days=days_ago), kg),
        )

    async def insert_bp(self, days_ago: float, sys_: int, dia: int, pulse: int | None) -> None:
        await self.sql(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, systolic_mmhg, diastolic_mmhg, pulse_bpm)"
            " values ('kommun-a', %s, 'bp-1', %s, %s, now(), 'blood_pressure', %s, %s, %s)",
            (self.person, f"b{days_ago}", NOW - timedelta(days=days_ago), sys_, dia, pulse),
        )

    async def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall() if cur.description else []
            await conn.commit()
            return rows

    async def consent(self, categories: list[str], days_back: float = 30) -> str:
        body = {
            "person_id": self.person,
            "recipient_org": REGION_ORG,
            "purpose": "hjärtsvikt",
            "categories": categories,
            "legal_basis": "samtycke",
            "valid_from": (NOW - timedelta(days=days_back)).isoformat(),
        }
        r = await self.http.post("/api/v1/consents", headers=ADMIN_A, json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def search(self, headers: dict, **params: Any) -> httpx.Response:
        return await self.http.get(
            "/fhir/r4/Observation", params={"patient": self.person, **params}, headers=headers
        )


@pytest.fixture
async def world(database_url) -> AsyncIterator[World]:
    since = NOW - timedelta(days=200)
    a = await seed(database_url, devices={"scale-1": "t-scale"}, since=since)
    b = await seed(database_url, "kommun-b", "212000-0002", {"scale-b": "t-scale"}, since)
    person = a.persons["scale-1"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.create_tenant(conn, "region-v", "Region V", "region", REGION_ORG)
        await repo.register_device(conn, "kommun-a", "bp-1", "t-bp")
        await repo.assign_device(conn, "bp-1", person, since)
        await conn.execute(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, weight_kg) values ('kommun-b', %s, 'scale-b', 'x1', %s, now(), 'weight', 70)",
            (b.persons["scale-b"], NOW - timedelta(days=1)),
        )
        await conn.commit()
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(
        settings,
        api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
        metrics_registry=CollectorRegistry(),
    )
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        w = World(http, database_url, str(person), str(b.persons["scale-b"]))
        for days, kg in ((100, 80.0), (20, 81.2), (1, 82.0)):
            await w.insert_weight(days, kg)
        for days, sys_, dia, pulse in ((50, 140, 90, 70), (10, 135, 85, 72), (2, 130, 80, None)):
            await w.insert_bp(days, sys_, dia, pulse)
        yield w


def assert_outcome(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(r.json())
    assert outcome.issue[0].code == code, r.text


def observations(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR_JSON)
    body = r.json()
    Bundle.model_validate(body)
    assert body["type"] == "searchset"
    found = []
    for entry in body.get("entry", []):
        Observation.model_validate(entry["resource"])
        assert entry["fullUrl"].endswith("/Observation/" + entry["resource"]["id"])
        found.append(entry["resource"])
    return found


def summary(obs: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for o in obs:
        code = o["code"]["coding"][0]["code"]
        if "component" in o:
            value: Any = tuple(c["valueQuantity"]["value"] for c in o["component"])
        else:
            value = o["valueQuantity"]["value"]
        out.append((code, value))
    return out


def next_link(r: httpx.Response) -> str | None:
    links = {link["relation"]: link["url"] for link in r.json()["link"]}
    return links.get("next")


async def log_rows(w: World, actor: str) -> list[tuple[str, str, list[str]]]:
    rows = await w.sql(
        "select outcome, request, categories from access_log where actor = %s order by id",
        (actor,),
    )
    return [(o, req, cats) for o, req, cats in rows]


async def test_capability_statement(world: World) -> None:
    r = await world.http.get("/fhir/r4/metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR_JSON)
    cs = CapabilityStatement.model_validate(r.json())
    assert cs.fhirVersion == "4.0.1" and cs.format == [FHIR_JSON]
    resources = {res.type: res for res in cs.rest[0].resource}
    assert set(resources) == {"Observation", "Patient", "Device"}
    assert {p.name for p in resources["Observation"].searchParam} == {
        "patient",
        "code",
        "category",
        "date",
        "_count",
    }


async def test_consent_governs_fhir_reads(world: World) -> None:
    w = world
    assert_outcome(await w.search(CLINICIAN), 403, "forbidden")
    consent_id = await w.consent(["weight", "blood_pressure"])

    r = await w.search(CLINICIAN)
    obs = observations(r)
    # oldest first; the weight from 100 days and the blood pressure from 50 days ago are
    # from before the consent and never returned; the reading of 2 days ago has no pulse
    assert summary(obs) == [
        ("29463-7", 81.2),
        ("85354-9", (135, 85)),
        ("8867-4", 72),
        ("85354-9", (130, 80)),
        ("29463-7", 82.0),
    ]
    weight, panel, heart = obs[0], obs[1], obs[2]
    assert weight["subject"] == {"reference": f"Patient/{w.person}"}
    assert weight["device"] == {"reference": "Device/scale-1"}
    assert weight["category"][0]["coding"][0]["code"] == "vital-signs"
    assert weight["valueQuantity"] == {
        "value": 81.2,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    }
    assert weight["meta"]["profile"][-1] == "http://hl7.org/fhir/StructureDefinition/bodyweight"
    assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
    assert panel["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
    assert heart["valueQuantity"]["code"] == "/min"
    assert datetime.fromisoformat(weight["effectiveDateTime"]) == NOW - timedelta(days=20)
    assert len({o["id"] for o in obs}) == 5 and all(len(o["id"]) <= 64 for o in obs)

    # code as system|code or bare; date with prefixes, repeated = AND
    r = await w.search(CLINICIAN, code="http://loinc.org|29463-7")
    assert summary(observations(r)) == [("29463-7", 81.2), ("29463-7", 82.0)]
    r = await w.search(
        CLINICIAN, code="8867-4,85354-9", date="ge" + (NOW - timedelta(days=5)).isoformat()
    )
    assert summary(observations(r)) == [("85354-9", (130, 80))]
    r = await w.search(CLINICIAN, code="http://snomed.info/sct|29463-7")
    assert observations(r) == []
    r = await w.search(
        CLINICIAN,
        date=[
            "lt" + (NOW - timedelta(days=25)).isoformat(),
            "gt" + (NOW - timedelta(days=300)).isoformat(),
        ],
    )
    assert observations(r) == []  # data from before the consent is never returned

    # read by id: the same resource; the ids are stable
    r = await w.http.get(f"/fhir/r4/Observation/{panel['id']}", headers=CLINICIAN)
    assert r.status_code == 200 and r.json() == panel
    Observation.model_validate(r.json())
    again = observations(await w.search(CLINICIAN))
    assert [o["id"] for o in again] == [o["id"] for o in obs]

    r = await w.http.get(f"/fhir/r4/Patient/{w.person}", headers=CLINICIAN)
    assert r.status_code == 200, r.text
    patient = Patient.model_validate(r.json())
    assert patient.id == w.person and patient.meta.security[0].code == "PSEUDED"
    assert patient.identifier[0].value == "kommun-a-brukare-1" and patient.name is None
    r = await w.http.get("/fhir/r4/Device/scale-1", headers=CLINICIAN)
    assert r.status_code == 200, r.text
    device = Device.model_validate(r.json())
    assert device.id == "scale-1" and device.manufacturer == "Acme"
    assert_outcome(await w.http.get("/fhir/r4/Device/scale-b", headers=CLINICIAN), 404, "not-found")

    # withdrawn: takes effect on the next request, refused and logged
    r = await w.http.post(f"/api/v1/consents/{consent_id}/withdraw", headers=ADMIN_A)
    assert r.status_code == 200
    assert_outcome(await w.search(CLINICIAN), 403, "forbidden")
    r = await w.http.get(f"/fhir/r4/Observation/{panel['id']}", headers=CLINICIAN)
    assert_outcome(r, 403, "forbidden")
    assert_outcome(
        await w.http.get(f"/fhir/r4/Patient/{w.person}", headers=CLINICIAN), 403, "forbidden"
    )
    assert_outcome(await w.http.get("/fhir/r4/Device/scale-1", headers=CLINICIAN), 404, "not-found")

    log = await log_rows(w, "dr-lind")
    assert log[0] == ("denied", "GET /fhir/r4/Observation", ["blood_pressure", "weight"])
    assert log[1] == ("allowed", "GET /fhir/r4/Observation", ["blood_pressure", "weight"])
    assert ("allowed", f"GET /fhir/r4/Patient/{w.person}", ["patient"]) in log
    assert log[-4:] == [
        ("denied", "GET /fhir/r4/Observation", ["blood_pressure", "weight"]),
        ("denied", f"GET /fhir/r4/Observation/{panel['id']}", ["blood_pressure"]),
        ("denied", f"GET /fhir/r4/Patient/{w.person}", ["patient"]),
        ("denied", "GET /fhir/r4/Device/scale-1", ["device"]),
    ]
    rows = await w.sql(
        "select count(*) from access_log where actor = 'dr-lind' and"
        " person_id = %s and outcome = 'denied' and reason = 'consent withdrawn'",
        (w.person,),
    )
    assert rows[0][0] == 3  # search, observation, patient


async def test_category_not_covered(world: World) -> None:
    w = world
    await w.consent(["weight"])
    assert_outcome(await w.search(CLINICIAN, code="85354-9"), 403, "forbidden")
    assert_outcome(await w.search(CLINICIAN, code="29463-7,8867-4"), 403, "forbidden")
    # without a code: what the consent covers, nothing else
    r = await w.search(CLINICIAN)
    assert summary(observations(r)) == [("29463-7", 81.2), ("29463-7", 82.0)]
    # the municipality's own operator reads everything by role; a BP id is still refused
    own = observations(await w.search(OPERATOR_A))
    assert len(own) == 8  # 3 weights, 3 panels, 2 heart rates
    bp_id = next(o["id"] for o in own if o["code"]["coding"][0]["code"] == "85354-9")
    r = await w.http.get(f"/fhir/r4/Observation/{bp_id}", headers=CLINICIAN)
    assert_outcome(r, 403, "forbidden")
    old_weight = own[0]  # 100 days ago, before the consent's period
    assert old_weight["valueQuantity"]["value"] == 80.0
    r = await w.http.get(f"/fhir/r4/Observation/{old_weight['id']}", headers=CLINICIAN)
    assert_outcome(r, 404, "not-found")
    log = await log_rows(w, "dr-lind")
    assert log[:2] == [
        ("denied", "GET /fhir/r4/Observation", ["blood_pressure"]),
        ("denied", "GET /fhir/r4/Observation", ["blood_pressure", "weight"]),
    ]
    assert log[2] == ("allowed", "GET /fhir/r4/Observation", ["weight"])


async def test_device_read_is_limited_to_what_the_consent_covers(world: World) -> None:
    """Review #17.3: under a weight-only consent a region's clinician read the resident's
    door lock (vendor, serial) as ``Device/{id}``. A clinician reads only a device whose
    data the consent covers and that its Observations point at (a scale under weight, a
    blood-pressure monitor under blood_pressure); every other id answers exactly like an
    id that does not exist."""
    w = world
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        for device_id, model_id, serial in (("lock-1", "t-lock", "LK-0042"),
                                            ("gps-1", "t-gps", "GP-0007")):  # fmt: skip
            await repo.register_device(conn, "kommun-a", device_id, model_id, serial)
            await repo.assign_device(conn, device_id, UUID(w.person), NOW - timedelta(days=200))
        await conn.commit()
    missing = await w.http.get("/fhir/r4/Device/no-such-device", headers=CLINICIAN)
    assert_outcome(missing, 404, "not-found")

    async def unseen(device_id: str) -> None:
        r = await w.http.get(f"/fhir/r4/Device/{device_id}", headers=CLINICIAN)
        assert_outcome(r, 404, "not-found")
        assert r.json() == missing.json(), f"{device_id} answers unlike a missing id"

    await w.consent(["weight"])
    r = await w.http.get("/fhir/r4/Device/scale-1", headers=CLINICIAN)
    assert r.status_code == 200, r.text
    assert Device.model_validate(r.json()).id == "scale-1"
    for device_id in ("lock-1", "gps-1", "bp-1"):  # not covered: lock, GPS, blood pressure
        await unseen(device_id)

    # lock events, alarms and positions are not FHIR Observations here: no Observation
    # points at the lock or the GPS alarm, so a consent to them opens no Device either
    await w.consent(["lock_events", "alarms", "position", "blood_pressure"])
    r = await w.http.get("/fhir/r4/Device/bp-1", headers=CLINICIAN)
    assert r.status_code == 200, r.text
    for device_id in ("lock-1", "gps-1"):
        await unseen(device_id)

    # the municipality's own operator reads its devices by role, as before
    r = await w.http.get("/fhir/r4/Device/lock-1", headers=OPERATOR_A)
    assert r.status_code == 200 and r.json()["serialNumber"] == "LK-0042"
    denied = await w.sql(
        "select request from access_log where actor = 'dr-lind' and outcome = 'denied' order by id"
    )
    assert [row[0] for row in denied] == [
        f"GET /fhir/r4/Device/{d}"
        for d in ("no-such-device", "lock-1", "gps-1", "bp-1", "lock-1", "gps-1")
    ]


async def test_paging_returns_every_observation_once_under_inserts(world: World) -> None:
    w = world
    await w.consent(["weight", "blood_pressure"], days_back=60)
    for n in range(20):
        await w.insert_bp(30 - n, 120 + n, 80, 60 + n if n % 3 else None)
    for headers, count in ((CLINICIAN, 3), (OPERATOR_A, 7), (CLINICIAN, 1), (OPERATOR_A, 2)):
        before = [o["id"] for o in observations(await w.search(headers, _count=500))]
        seen: list[str] = []
        r = await w.search(headers, _count=count)
        pages = 0
        while True:
            page = observations(r)
            assert 0 < len(page) <= count
            seen += [o["id"] for o in page]
            pages += 1
            if pages == 2:  # concurrent inserts: one behind the cursor, one ahead of it
                await w.insert_weight(45 + count / 10, 77.0)
                await w.insert_weight(0.01 + count / 1000, 90.0)
            url = next_link(r)
            if url is None:
                break
            parts = urlsplit(url)
            r = await w.http.get(f"{parts.path}?{parts.query}", headers=headers)
        after = [o["id"] for o in observations(await w.search(headers, _count=500))]
        assert len(seen) == len(set(seen)), "an observation came twice"
        assert set(before) <= set(seen), "an observation was skipped"
        assert set(seen) <= set(after)
        newest = observations(await w.search(headers, _count=500))[-1]
        assert newest["id"] in seen  # inserted ahead of the cursor: reached
    assert next_link(await w.search(OPERATOR_A, _count=500)) is None


async def test_other_tenants_ids_are_not_found(world: World) -> None:
    w = world
    own = observations(await w.search(OPERATOR_A))
    obs_id = own[0]["id"]
    for headers in (OPERATOR_B, auth("kommun-b", Role.TENANT_ADMIN)):
        assert_outcome(
            await w.http.get(f"/fhir/r4/Observation/{obs_id}", headers=headers), 404, "not-found"
        )
        assert_outcome(
            await w.http.get(f"/fhir/r4/Patient/{w.person}", headers=headers), 404, "not-found"
        )
        assert_outcome(
            await w.http.get("/fhir/r4/Device/scale-1", headers=headers), 404, "not-found"
        )
        assert_outcome(await w.search(headers), 404, "not-found")
    # kommun-b reads its own
    r = await w.http.get("/fhir/r4/Observation", headers=OPERATOR_B, params={"patient": w.other})
    assert summary(observations(r)) == [("29463-7", 70.0)]
    # and the same answer for an id that never existed or was tampered with
    forged = obs_id[:10] + ("A" if obs_id[10] != "A" else "B") + obs_id[11:]
    for bad in (forged, "nope", "0" * 64):
        assert_outcome(
            await w.http.get(f"/fhir/r4/Observation/{bad}", headers=OPERATOR_A), 404, "not-found"
        )
    assert_outcome(
        await w.http.get("/fhir/r4/Patient/not-a-uuid", headers=OPERATOR_A), 404, "not-found"
    )
    denied = await w.sql(
        "select count(*) from access_log where actor = 'op-b' and outcome = 'denied'"
    )
    assert denied[0][0] == 4


async def test_bad_requests_are_operation_outcomes(world: World) -> None:
    w = world
    get = w.http.get
    assert_outcome(await get("/fhir/r4/Observation", headers=OPERATOR_A), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, subject="x"), 400, "not-supported")
    assert_outcome(await w.search(OPERATOR_A, _count="501"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, _count="0"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, _count="many"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, date="yesterday"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, date="2024-05-01T10:00"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, date="ne2024"), 400, "not-supported")
    assert_outcome(await w.search(OPERATOR_A, date="ge2024-13-01"), 400, "invalid")
    assert_outcome(await w.search(OPERATOR_A, _cursor="garbage!"), 400, "invalid")
    r = await get("/fhir/r4/Observation", headers=OPERATOR_A, params={"patient": "Patient/x"})
    assert_outcome(r, 400, "invalid")
    # lenient handling on request: the unknown parameter is ignored and left out of self
    r = await get(
        "/fhir/r4/Observation",
        params={"patient": w.person, "subject": "x"},
        headers={**OPERATOR_A, "Prefer": "handling=lenient"},
    )
    assert len(observations(r)) == 8 and "subject" not in r.json()["link"][0]["url"]
    # a day without a time is a day in Europe/Stockholm
    day = (NOW - timedelta(days=20)).astimezone(ZoneInfo("Europe/Stockholm"))
    r = await w.search(OPERATOR_A, date=day.date().isoformat())
    assert summary(observations(r)) == [("29463-7", 81.2)]

    assert_outcome(await w.search({}), 401, "login")
    assert_outcome(await w.search({"Authorization": "Bearer nonsense"}), 401, "login")
    installer = auth("kommun-a", Role.INSTALLER, subject="inst")
    assert_outcome(await w.search(installer), 403, "forbidden")
    assert (await log_rows(w, "inst"))[0][0] == "denied"
    assert_outcome(
        await w.http.post("/fhir/r4/Observation", headers=OPERATOR_A), 405, "not-supported"
    )
    assert_outcome(await get("/fhir/r4/Encounter", headers=OPERATOR_A), 404, "not-found")
