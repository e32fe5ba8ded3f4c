"""Log review and a resident's log extract (issue #21.2-3) over real HTTP on a real
PostgreSQL: a known history (access-log rows at chosen times, hash-chained as
append_access_log chains them; alarms, a visit, staff, consents) gives exactly the flags
and the sentences computed here by hand; a real read through the API is flagged too;
reviews are kept once and access-logged; another municipality sees none of it."""

from __future__ import annotations

import csv
import io
import time as clock
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import access_log as access_log_module
from gateway.adapters.postgres import registry_repo as repo
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from tests.conftest import API_PASSWORD
from tests.integration.harness import Bearer, seed, serving

SECRET = "log-review-secret-log-review-secret-0"
REGION_ORG = "232100-0172"
STOCKHOLM = ZoneInfo("Europe/Stockholm")
DAY = (datetime.now(STOCKHOLM) - timedelta(days=2)).date()


def L(hh: int, mm: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm), STOCKHOLM)


def auth(tenant: str, role: Role, subject: str, org: str | None = None) -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=subject, org=org, ttl_s=900
        )
    )


AUDITOR = auth("kommun-a", Role.AUDITOR, "per.sjoberg")
ADMIN = auth("kommun-a", Role.TENANT_ADMIN, "karin.berg")
OPERATOR = auth("kommun-a", Role.OPERATOR, "omar")
AUDITOR_B = auth("kommun-b", Role.AUDITOR, "revisor-b")
CLINICIAN = auth("region-v", Role.CLINICIAN, "maria", REGION_ORG)

APPEND_AT = """
create function pg_temp.append_at(
    p_at timestamptz, p_actor text, p_actor_org text, p_actor_role text, p_actor_tenant text,
    p_owner_tenant text, p_person uuid, p_categories text[], p_purpose text, p_outcome text,
    p_reason text, p_request text
) returns bigint language plpgsql as $$
declare
    v_prev bytea;
    v_row access_log;
begin
    perform pg_advisory_xact_lock(7741);
    select hash into v_prev from access_log order by id desc limit 1;
    v_row.id := nextval(pg_get_serial_sequence('access_log', 'id'));
    v_row.at := p_at;
    v_row.actor := p_actor; v_row.actor_org := p_actor_org; v_row.actor_role := p_actor_role;
    v_row.actor_tenant := p_actor_tenant; v_row.owner_tenant := p_owner_tenant;
    v_row.person_id := p_person; v_row.categories := p_categories; v_row.purpose := p_purpose;
    v_row.outcome := p_outcome; v_row.reason := p_reason; v_row.request := p_request;
    v_row.prev_hash := coalesce(v_prev, '\\x'::bytea);
    v_row.hash := sha256(v_row.prev_hash || access_log_row_bytes(v_row));
    insert into access_log overriding system value select (v_row).*;
    return v_row.id;
end $$
"""


@dataclass
class World:
    http: httpx.AsyncClient
    url: str
    p: dict[str, UUID]  # P1..P4 of kommun-a, PB of kommun-b
    r: dict[str, int]  # the seeded access-log rows by name


async def _seed_history(url: str, p: dict[str, UUID]) -> dict[str, int]:
    rows: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await repo.create_tenant(conn, "region-v", "Region Västmanland", "region", REGION_ORG)
        await conn.execute(APPEND_AT)
        for tenant, subject, name, teams in (
            ("kommun-a", "anna", "Anna Undersköterska", ["hemtjanst-norr"]),
            ("kommun-a", "nils", "Nils Natt", []),
            ("region-v", "maria", "Maria Sjuksköterska", []),
        ):
            await conn.execute(
                "insert into staff_members (tenant_id, subject, display_name, teams)"
                " values (%s, %s, %s, %s)",
                (tenant, subject, name, teams),
            )
        await conn.execute(
            "insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject,"
            " state, raised_at, last_at, occurrences, resolved_at, version)"
            " values (%s, 'kommun-a', 'fall', 'critical', 'gps-1', %s, 'gps-1', 'resolved',"
            " %s, %s, 1, %s, 3)",
            (uuid4(), p["P1"], L(10), L(10), L(10, 20)),
        )
        await conn.execute(
            "insert into visits (tenant_id, person_id, team, starts_at, ends_at, created_by)"
            " values ('kommun-a', %s, 'hemtjanst-norr', %s, %s, 'test')",
            (p["P2"], L(12), L(12, 30)),
        )
        await conn.execute(
            "insert into consents (tenant_id, person_id, recipient_org, purpose, categories,"
            " valid_from, valid_to, legal_basis, recorded_by) values ('kommun-a', %s, %s,"
            " 'hjärtsvikt', '{blood_pressure}', %s, %s, 'samtycke (OSL 12 kap. 2 §)', 'karin')",
            (p["P3"], REGION_ORG, L(0) - timedelta(days=30), L(16)),
        )

        async def add(name: str, at: datetime, actor: str, role: str, tenant: str,
                      owner: str, person: UUID | None, categories: list[str], *,
                      org: str | None = None, outcome: str = "allowed", reason: str = "by role",
                      purpose: str | None = None) -> None:  # fmt: skip
            cur = await conn.execute(
                "select pg_temp.append_at(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (at, actor, org, role, tenant, owner, person, categories, purpose, outcome,
                 reason, f"GET /api/v1/persons/{person}/readings"),
            )  # fmt: skip
            row = await cur.fetchone()
            assert row is not None
            rows[name] = row[0]

        a = ("kommun-a", "kommun-a")
        await add("r1", L(10, 5), "anna", "operator", *a, p["P1"], ["position"])
        await add("r2", L(12, 10), "anna", "operator", *a, p["P2"], ["care_notes"])
        await add("r7", L(13, 0), "nils", "operator", *a, p["P1"], ["position"])
        await add("r8", L(13, 1), "nils", "operator", *a, p["P2"], ["position"])
        await add("r9", L(13, 2), "nils", "operator", *a, p["P3"], ["position"])
        await add("r3", L(14, 0), "anna", "operator", *a, p["P4"], ["weight"])
        await add("r4", L(15, 0), "maria", "clinician", "region-v", "kommun-a", p["P3"],
                  ["blood_pressure"], org=REGION_ORG, reason="consent valid",
                  purpose="hjärtsvikt")  # fmt: skip
        await add("r5", L(16, 30), "maria", "clinician", "region-v", "kommun-a", p["P3"],
                  ["blood_pressure"], org=REGION_ORG, outcome="denied",
                  reason="consent expired")  # fmt: skip
        await add("r11", L(17, 0), "karin", "tenant_admin", *a, None,
                  ["registry", "personal_identity_number", "weight", "access_log"],
                  reason="full export of the tenant", purpose="change of supplier")  # fmt: skip
        await add("r6", L(23, 0), "anna", "operator", *a, p["P1"], ["position"])
        await add("r10", L(14, 0), "bo", "operator", "kommun-b", "kommun-b", p["PB"],
                  ["position"])  # fmt: skip
        await conn.commit()
    return rows


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    since = datetime.now(UTC) - timedelta(days=60)
    a = await seed(database_url, since=since)
    b = await seed(database_url, "kommun-b", "212000-0002", {"gps-b": "t-gps"}, since)
    p = {"P1": a.persons["gps-1"], "P2": a.persons["scale-1"], "P3": a.persons["bp-1"],
         "P4": a.persons["lock-1"], "PB": b.persons["gps-b"]}  # fmt: skip
    rows = await _seed_history(database_url, p)
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                  metrics_registry=CollectorRegistry())  # fmt: skip
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield World(http, database_url, p, rows)


DAY_PERIOD = {"since": L(0).isoformat(), "until": (L(0) + timedelta(days=1)).isoformat()}
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]
SETTINGS = {"many_residents": 3, "many_window_minutes": 10, "grace_minutes": 30,
            "consent_near_end_hours": 48,
            "working_hours": {"weekdays": EVERY_DAY, "start": "07:00", "end": "22:00"}}  # fmt: skip


async def _flags(w: World, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await w.http.get("/api/v1/log-review/flags", headers=headers,
                         params={**DAY_PERIOD, **params})  # fmt: skip
    assert r.status_code == 200, r.text
    return list(r.json()["flags"])


async def _log_rows(w: World, after: int) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute(
            "select actor, actor_role, owner_tenant, person_id, categories, purpose, reason"
            " from access_log where id > %s order by id", (after,))  # fmt: skip
        return await cur.fetchall()


async def test_each_flag_of_a_known_history(world: World) -> None:
    w, r, p = world, world.r, world.p
    got = await w.http.get("/api/v1/log-review/settings", headers=AUDITOR)
    assert got.json()["defaults"] is True and got.json()["many_residents"] == 10
    put = await w.http.put("/api/v1/log-review/settings", headers=AUDITOR, json=SETTINGS)
    assert put.status_code == 200 and put.json()["defaults"] is False, put.text

    flags = await _flags(w, AUDITOR)
    assert [(f["key"], f["entry_ids"]) for f in flags] == [
        (f"many_residents:{r['r7']}", [r["r7"], r["r8"], r["r9"]]),
        (f"no_context:{r['r7']}", [r["r7"]]),
        (f"no_context:{r['r8']}", [r["r8"]]),
        (f"no_context:{r['r9']}", [r["r9"]]),
        (f"no_context:{r['r3']}", [r["r3"]]),
        (f"near_consent_end:{r['r4']}", [r["r4"]]),
        (f"after_consent_end:{r['r5']}", [r["r5"]]),
        (f"no_context:{r['r6']}", [r["r6"]]),
        (f"outside_hours:{r['r6']}", [r["r6"]]),
    ]
    by = {f["key"]: f for f in flags}
    many = by[f"many_residents:{r['r7']}"]
    assert many["person_ids"] == [str(p["P1"]), str(p["P2"]), str(p["P3"])]
    assert many["evidence"]["residents"] == 3 and many["evidence"]["window_minutes"] == 10
    near = by[f"near_consent_end:{r['r4']}"]["evidence"]
    assert near["minutes_to_end"] == 60 and near["near_end_hours"] == 48
    after = by[f"after_consent_end:{r['r5']}"]["evidence"]
    assert after["minutes_to_end"] == -30 and after["entry"]["outcome"] == "denied"
    nc = by[f"no_context:{r['r6']}"]["evidence"]
    assert nc["nearest_alarm"]["resolved_at"] == L(10, 20).astimezone(UTC).isoformat().replace(
        "+00:00", "Z"
    )
    nc8 = by[f"no_context:{r['r8']}"]["evidence"]  # the team's visit, but nils is not in it
    assert nc8["nearest_visit"]["team"] == "hemtjanst-norr"
    assert by[f"outside_hours:{r['r6']}"]["evidence"]["local_time"] == f"{DAY} 23:00"
    assert by[f"outside_hours:{r['r6']}"]["evidence"]["hours_of"] == "tenant"

    # anna's own hours (to 23:30) take the place of the tenant's
    staff = await _staff_id(w, "anna")
    put = await w.http.put(f"/api/v1/log-review/staff/{staff}/hours", headers=ADMIN,
                           json={"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "08:00",
                                 "end": "23:30"})  # fmt: skip
    assert put.status_code == 200, put.text
    assert await _flags(w, AUDITOR, rule="outside_hours") == []
    gone = await w.http.delete(f"/api/v1/log-review/staff/{staff}/hours", headers=ADMIN)
    assert gone.status_code == 204
    assert [f["key"] for f in await _flags(w, AUDITOR, rule="outside_hours")] == [
        f"outside_hours:{r['r6']}"
    ]
    # kommun-b's auditor: only kommun-b's own resident's row
    assert [f["key"] for f in await _flags(w, AUDITOR_B)] == [f"no_context:{r['r10']}"]


async def _staff_id(w: World, subject: str) -> UUID:
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        cur = await conn.execute("select id from staff_members where subject = %s", (subject,))
        row = await cur.fetchone()
        assert row is not None
        return UUID(str(row[0]))


async def test_reviews_once_logged_and_isolated(world: World) -> None:
    w, r = world, world.r
    key = f"no_context:{world.r['r3']}"
    before = await _last_id(w)
    denied = await w.http.post(f"/api/v1/log-review/flags/{key}/review", headers=AUDITOR_B,
                               json={"comment": "nope"})  # fmt: skip
    assert denied.status_code == 404, denied.text
    done = await w.http.post(f"/api/v1/log-review/flags/{key}/review", headers=AUDITOR,
                             json={"comment": "Anna täckte upp för en sjuk kollega."})  # fmt: skip
    assert done.status_code == 201, done.text
    assert done.json()["reviewed_by"] == "per.sjoberg" and done.json()["rule"] == "no_context"
    again = await w.http.post(f"/api/v1/log-review/flags/{key}/review", headers=AUDITOR,
                              json={"comment": "again"})  # fmt: skip
    assert again.status_code == 409 and "reviewed already" in again.json()["detail"]
    unknown = await w.http.post(f"/api/v1/log-review/flags/no_context:{r['r1']}/review",
                                headers=AUDITOR, json={"comment": "x"})  # fmt: skip
    assert unknown.status_code == 404  # r1 was read under an open alarm: no flag
    empty = await w.http.post(f"/api/v1/log-review/flags/{key}/review", headers=AUDITOR,
                              json={"comment": ""})  # fmt: skip
    assert empty.status_code == 422
    assert (await w.http.get("/api/v1/log-review/flags", headers=OPERATOR)).status_code == 403

    logged = await _log_rows(w, before)
    assert ("per.sjoberg", "auditor", "kommun-a", w.p["P4"], ["access_log"], "log review",
            f"flag {key} reviewed") in logged  # fmt: skip

    flags = await _flags(w, AUDITOR)
    reviewed = [f for f in flags if f["review"] is not None]
    assert [f["key"] for f in reviewed] == [key]
    assert reviewed[0]["review"]["comment"] == "Anna täckte upp för en sjuk kollega."
    still_open = await _flags(w, AUDITOR, reviewed="false")
    assert key not in [f["key"] for f in still_open] and len(still_open) == len(flags) - 1


async def _last_id(w: World) -> int:
    async with await psycopg.AsyncConnection.connect(w.url) as conn:
        row = await (await conn.execute("select coalesce(max(id), 0) from access_log")).fetchone()
        assert row is not None
        return int(row[0])


async def test_a_resident_s_log_extract(world: World) -> None:
    w = world
    before = await _last_id(w)
    url = f"/api/v1/persons/{w.p['P3']}/log-extract"
    got = await w.http.get(url, headers=AUDITOR, params={**DAY_PERIOD, "format": "csv"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text.removeprefix("\ufeff")), delimiter=";"))
    assert rows[0][0] == "tidpunkt"
    d = DAY.isoformat()
    assert [row[9] for row in rows[1:]] == [
        f"{d} kl. 13:02 läste Nils Natt (Kommun-A, 212000-0001) position, i tjänsten.",
        f"{d} kl. 15:00 läste Maria Sjuksköterska (Region Västmanland, 232100-0172) blodtryck,"
        " med samtycke, syfte: hjärtsvikt.",
        f"{d} kl. 16:30 försökte Maria Sjuksköterska (Region Västmanland, 232100-0172) läsa "
        "blodtryck, men nekades (consent expired).",
        f"{d} kl. 17:00 exporterade karin (Kommun-A, 212000-0001) kommunens uppgifter, också "
        "dina: registeruppgifter, personnummer, vikt och logguppgifter, i tjänsten, hela "
        "kommunens uppgifter, syfte: byte av leverantör.",
    ]
    page = await w.http.get(url, headers=ADMIN, params=DAY_PERIOD)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "kl. 15:00 läste Maria Sjuksköterska (Region Västmanland, 232100-0172)" in page.text
    assert "Brukare: kommun-a-brukare-3" in page.text and "Antal händelser: 4" in page.text

    logged = await _log_rows(w, before)
    assert [row[:6] for row in logged] == [
        ("per.sjoberg", "auditor", "kommun-a", w.p["P3"], ["access_log"], "log extract"),
        ("karin.berg", "tenant_admin", "kommun-a", w.p["P3"], ["access_log"], "log extract"),
    ]
    # another municipality: 404, nothing logged for kommun-a's resident; an operator: 403
    other = await w.http.get(url, headers=AUDITOR_B)
    assert other.status_code == 404
    assert (await w.http.get(url, headers=OPERATOR)).status_code == 403
    bad = await w.http.get(url, headers=AUDITOR, params={"since": L(5).isoformat(),
                                                          "until": L(4).isoformat()})  # fmt: skip
    assert bad.status_code == 422 and "since must be before until" in bad.json()["detail"]


async def test_a_real_read_near_a_consent_s_end_is_flagged(world: World) -> None:
    w = world
    now = datetime.now(UTC)
    r = await w.http.post("/api/v1/consents", headers=ADMIN, json={
        "person_id": str(w.p["P2"]), "recipient_org": REGION_ORG, "purpose": "vikt",
        "categories": ["weight"], "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_to": (now + timedelta(hours=2)).isoformat(),
        "legal_basis": "samtycke (OSL 12 kap. 2 §)"})  # fmt: skip
    assert r.status_code == 201, r.text
    read = await w.http.get(f"/api/v1/persons/{w.p['P2']}/readings",
                            params={"category": "weight"}, headers=CLINICIAN)  # fmt: skip
    assert read.status_code == 200, read.text
    period = {"since": (now - timedelta(minutes=5)).isoformat(),
              "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat()}  # fmt: skip
    got = await w.http.get("/api/v1/log-review/flags", headers=AUDITOR,
                           params={**period, "rule": "near_consent_end"})  # fmt: skip
    flags = got.json()["flags"]
    assert [(f["actor"], f["actor_org"], f["person_ids"]) for f in flags] == [
        ("maria", REGION_ORG, [str(w.p["P2"])])
    ]
    assert 115 <= flags[0]["evidence"]["minutes_to_end"] <= 120


async def test_the_seeded_history_is_a_valid_chain(world: World) -> None:
    assert access_log_module.verify(world.url).ok


async def test_a_month_of_reads_is_fast(database_url: str) -> None:
    """5,000 rows of 200 residents over 30 days, 500 alarms: one list of flags."""
    a = await seed(database_url, devices={"gps-1": "t-gps"})
    until = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        persons = [await repo.create_person(conn, "kommun-a", f"perf-{n}") for n in range(200)]
        await conn.execute(
            "insert into access_log (at, actor, actor_org, actor_role, actor_tenant,"
            " owner_tenant, person_id, categories, purpose, outcome, reason, request, prev_hash,"
            " hash) select %s - (n * interval '518 seconds'), 'op-' || (n %% 20), null,"
            " 'operator', 'kommun-a', 'kommun-a', (%s::uuid[])[1 + n %% 200], '{position}',"
            " null, 'allowed', 'by role', 'GET /x', '\\x', '\\x'"
            " from generate_series(1, 5000) n",
            (until, persons),
        )
        await conn.execute(
            "insert into alarms (id, tenant_id, kind, severity, device_id, person_id, subject,"
            " state, raised_at, last_at, occurrences, resolved_at, version)"
            " select gen_random_uuid(), 'kommun-a', 'fall', 'high', 'gps-1',"
            " (%s::uuid[])[1 + n %% 200], 'perf-' || n, 'resolved', %s - n * interval '1 hour',"
            " %s - n * interval '1 hour', 1, %s - n * interval '1 hour' + interval '20 minutes', 1"
            " from generate_series(1, 500) n",
            (persons, until, until, until),
        )
        await conn.commit()
    assert a.tenant == "kommun-a"
    settings = Settings(database_url=database_url, jwt_secret=SECRET, api_db_password=API_PASSWORD)
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                  metrics_registry=CollectorRegistry())  # fmt: skip
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as http:
        params = {"since": (until - timedelta(days=31)).isoformat(), "until": until.isoformat()}
        await http.get("/api/v1/log-review/flags", headers=AUDITOR, params=params)  # warm
        started = clock.perf_counter()
        got = await http.get("/api/v1/log-review/flags", headers=AUDITOR, params=params)
        took = clock.perf_counter() - started
    assert got.status_code == 200, got.text
    assert got.json()["entries"] == 5000
    print(f"flags over 5,000 rows: {took * 1000:.0f} ms, {len(got.json()['flags'])} flags")
    assert took < 5.0


async def test_reading_a_person_s_care_notes_is_logged(world: World) -> None:
    """A finding of #21.3: GET /api/v1/persons/{id} returns the care notes, and wrote no
    access-log row."""
    w = world
    before = await _last_id(w)
    r = await w.http.get(f"/api/v1/persons/{w.p['P2']}", headers=OPERATOR)
    assert r.status_code == 200 and "care_notes" in r.json(), r.text
    assert [row[:5] for row in await _log_rows(w, before)] == [
        ("omar", "operator", "kommun-a", w.p["P2"], ["care_notes"])
    ]
    other = await w.http.get(f"/api/v1/persons/{w.p['P2']}", headers=AUDITOR_B)
    assert other.status_code in (403, 404)
    assert len(await _log_rows(w, before)) == 1  # another tenant's miss names no resident


async def test_reading_a_resident_s_housing_consents_and_stays_is_logged(world: World) -> None:
    """Findings of #21.3: the housing history (social-services data), the consents (their
    purposes name the care) and the stays (where the resident is) of one resident were
    read without an access-log row."""
    w = world
    person = w.p["P3"]
    for path, params, category in (
        (f"/api/v1/persons/{person}/housing", None, "housing"),
        ("/api/v1/consents", {"person_id": str(person)}, "consents"),
        (f"/api/v1/persons/{person}/stays", None, "stay"),
    ):
        before = await _last_id(w)
        r = await w.http.get(path, params=params, headers=ADMIN)
        assert r.status_code == 200, (path, r.text)
        assert [row[:5] for row in await _log_rows(w, before)] == [
            ("karin.berg", "tenant_admin", "kommun-a", person, [category])
        ], path
        # another municipality: nothing, and no row naming the resident
        r = await w.http.get(path, params=params, headers=auth("kommun-b", Role.TENANT_ADMIN, "b"))
        assert r.status_code == 404 or r.json() == [], (path, r.text)
        assert len(await _log_rows(w, before)) == 1, path
