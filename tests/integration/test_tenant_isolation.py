"""Cross-tenant reads and writes are impossible through every endpoint of the API.

Kommun B has a person, devices, readings, positions, an alarm, a consent, staff with a key
and a planned visit, all made through the product. Then every operation of the served
OpenAPI document is called by each role of kommun A with B's ids: nothing of B comes back
and nothing of B changes. An operation this test does not know fails it, so a new
endpoint must be added here before it can ship. Real Mosquitto, PostgreSQL and HTTP.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from tests.conftest import API_PASSWORD
from tests.integration.harness import (
    gateway_with_api,
    payload,
    publish,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)

SECRET = "isolation-secret-isolation-secret-01"
A_ORG = "212000-0001"
B_ORG = "212000-0002"
REGION_B = "232100-0099"  # the organisation kommun B's resident consented to
A_ROLES = (Role.TENANT_ADMIN, Role.OPERATOR, Role.INSTALLER, Role.AUDITOR, Role.CLINICIAN)
UNAUTHENTICATED_OK = {"/healthz", "/metrics", "/fhir/r4/metadata"}


def auth(tenant: str, role: Role, org: str | None = None) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role.value}", org=org,
                 ttl_s=900)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def product(mqtt_url: str, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = settings_for(
        mqtt_url, database_url, jwt_secret=SECRET,
        limits={"api_requests_per_minute": 1_000_000, "api_burst": 1_000_000},
    )  # fmt: skip
    async with gateway_with_api(settings) as (base, gw), httpx.AsyncClient(
        base_url=base, timeout=20
    ) as http:
        yield http, gw


async def make_b(http: httpx.AsyncClient, mqtt_url: str, url: str, b: Any) -> dict[str, str]:
    """Kommun B's data, made through the API and the devices; returns B's ids."""
    admin = auth("kommun-b", Role.TENANT_ADMIN)
    person = str(b.persons["b-gps"])
    scale_person = str(b.persons["b-scale"])
    r = await http.post(f"/api/v1/persons/{person}/geofences", headers=admin, json={
        "name": "Hemma", "shape": {"type": "circle", "lat": 59.61, "lon": 16.55, "radius_m": 200},
    })  # fmt: skip
    assert r.status_code == 201, r.text
    consent = await http.post("/api/v1/consents", headers=admin, json={
        "person_id": scale_person, "recipient_org": REGION_B, "purpose": "hjärtsvikt",
        "categories": ["weight"], "legal_basis": "samtycke",
        "valid_from": (datetime.now(UTC) - timedelta(days=5)).isoformat(),
    })  # fmt: skip
    assert consent.status_code == 201, consent.text
    staff = await http.post("/api/v1/staff", headers=admin,
                            json={"subject": "kerstin", "display_name": "Kerstin"})  # fmt: skip
    assert staff.status_code == 201, staff.text
    staff_id = staff.json()["id"]
    key = await http.post(f"/api/v1/staff/{staff_id}/keys", headers=admin,
                          json={"key_id": "key-b-kerstin"})  # fmt: skip
    assert key.status_code == 201, key.text
    now = datetime.now(UTC)
    visit = await http.post(f"/api/v1/persons/{b.persons['b-lock']}/visits", headers=admin, json={
        "staff_id": staff_id, "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
    })  # fmt: skip
    assert visit.status_code == 201, visit.text
    await publish(mqtt_url, [
        ("devices/b-scale/telemetry", payload("weight", "bw1", kg=81.5)),
        ("devices/b-gps/telemetry", payload("position", "bp1", lat=59.61, lon=16.55,
                                            accuracy_m=5)),
        ("devices/b-gps/events", payload("alarm", "bpress", kind="button")),
        ("devices/b-lock/events", payload("lock", "bl1", action="unlocked", method="app",
                                          key_id="key-b-kerstin")),
    ], client_id="b-devices")  # fmt: skip
    # a weight stamped before the scale's assignment began: in B's quarantine (review #17.2)
    await publish(mqtt_url, [("devices/b-scale/telemetry", payload(
        "weight", "bq1", (datetime.now(UTC) - timedelta(days=11)).isoformat(), kg=80.1))],
        client_id="b-devices")  # fmt: skip
    await wait_count(url, "select count(*) from readings", 1)
    await wait_count(url, "select count(*) from positions", 1)
    await wait_count(url, "select count(*) from lock_events", 1)
    await wait_count(url, "select count(*) from quarantine"
                     " where reason = 'before_current_assignment'", 1)  # fmt: skip
    quarantine_id = await scalar(url, "select id from quarantine"
                                 " where reason = 'before_current_assignment'")  # fmt: skip
    op_b = auth("kommun-b", Role.OPERATOR)

    async def b_alarm() -> bool:
        r = await http.get("/api/v1/alarms", headers=op_b)
        return any(a["kind"] == "button" for a in r.json())

    await wait_for(b_alarm, 20, "kommun B's button alarm")
    alarm_id = next(a for a in (await http.get("/api/v1/alarms", headers=op_b)).json()
                    if a["kind"] == "button")["alarm_id"]  # fmt: skip
    obs = await http.get("/fhir/r4/Observation", headers=op_b, params={"patient": scale_person})
    assert obs.status_code == 200, obs.text
    observation_id = obs.json()["entry"][0]["resource"]["id"]
    # a stay of B's resident in kommun C under B's agreement with C (#19.3)
    agreement = await http.post("/api/v1/stay-agreements", headers=admin,
                                json={"host_tenant_id": "kommun-c"})  # fmt: skip
    assert agreement.status_code == 201, agreement.text
    accepted = await http.post(f"/api/v1/stay-agreements/{agreement.json()['id']}/accept",
                               headers=auth("kommun-c", Role.TENANT_ADMIN))  # fmt: skip
    assert accepted.status_code == 200, accepted.text
    stay = await http.post(f"/api/v1/persons/{person}/stays", headers=admin, json={
        "host_tenant_id": "kommun-c", "from": datetime.now(UTC).isoformat(),
        "to": (datetime.now(UTC) + timedelta(days=3)).isoformat()})  # fmt: skip
    assert stay.status_code == 201, stay.text
    # a move of B's resident to kommun C, proposed (#19.2); A is neither side
    move = await http.post(f"/api/v1/persons/{scale_person}/moves", headers=admin, json={
        "to_tenant": "kommun-c",
        "effective_at": (datetime.now(UTC) + timedelta(days=100)).isoformat()})  # fmt: skip
    assert move.status_code == 201, move.text
    # a residential unit of B and a resident's tag (#19.4)
    unit = await http.post("/api/v1/units", headers=admin,
                           json={"name": "B-boendet", "kind": "residential_unit"})  # fmt: skip
    assert unit.status_code == 201, unit.text
    tag = await http.post("/api/v1/resident-tags", headers=admin,
                          json={"tag": "TAG-B-1", "person_id": scale_person})  # fmt: skip
    assert tag.status_code == 201, tag.text
    # digital supervision (#20): a decision with consent, a plan and a passive rule of B's
    decision = await http.post(
        f"/api/v1/persons/{person}/supervision/decisions", headers=admin,
        json={"service": "night_supervision", "person_consent_at": datetime.now(UTC).isoformat()},
    )  # fmt: skip
    assert decision.status_code == 201, decision.text
    plan = await http.put(f"/api/v1/persons/{person}/supervision/plan", headers=admin,
                          json={"check_times": ["22:00"], "seen": "in_bed",
                                "team": "night_team"})  # fmt: skip
    assert plan.status_code == 201, plan.text
    rule = await http.post(f"/api/v1/persons/{person}/passive-rules", headers=admin,
                           json={"kind": "floor_mat", "window_start": "22:00",
                                 "window_end": "06:00"})  # fmt: skip
    assert rule.status_code == 201, rule.text
    return {
        "person_id": person, "scale_person": scale_person, "device_id": "b-gps",
        "lock_id": "b-lock", "alarm_id": alarm_id, "consent_id": consent.json()["id"],
        "staff_id": staff_id, "key_id": "key-b-kerstin", "observation_id": observation_id,
        "quarantine_id": str(quarantine_id), "agreement_id": agreement.json()["id"],
        "stay_id": stay.json()["id"], "move_id": str(move.json()["id"]),
        "unit_id": unit.json()["id"], "tag_id": str(tag.json()["id"]),
        "decision_id": decision.json()["id"], "plan_id": plan.json()["id"],
        "rule_id": rule.json()["id"],
    }  # fmt: skip


def requests_for(b: dict[str, str], a_person: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation, aimed at kommun B: path parameters, query and body."""
    visit = {"starts_at": "2030-01-01T08:00:00Z", "ends_at": "2030-01-01T09:00:00Z"}
    zone = {"name": "x", "shape": {"type": "circle", "lat": 59.6, "lon": 16.5, "radius_m": 100}}
    return {
        ("get", "/api/v1/persons/{person_id}"): {},
        ("get", "/api/v1/devices"): {},
        ("post", "/api/v1/devices/{device_id}/assign"): {"json": {"person_id": a_person}},
        ("post", "/api/v1/devices/{device_id}/return"): {"json": {}},
        ("post", "/api/v1/devices/{device_id}/retire"): {"json": {}},
        ("get", "/api/v1/persons/{person_id}/readings"): {"params": {"category": "position"}},
        ("get", "/api/v1/alarms"): {},
        ("post", "/api/v1/alarms/{alarm_id}/acknowledge"): {},
        ("post", "/api/v1/alarms/{alarm_id}/resolve"): {"json": {"outcome": "false_alarm"}},
        ("post", "/api/v1/persons/{person_id}/geofences"): {"json": zone},
        ("put", "/api/v1/persons/{person_id}/limits"): {"json": {"weight_gain": {"kg": 1.0,
                                                                                  "days": 2}}},
        ("get", "/api/v1/stats"): {},
        ("post", "/api/v1/consents"): {"json": {
            "person_id": b["scale_person"], "recipient_org": A_ORG, "purpose": "x",
            "categories": ["weight"], "legal_basis": "samtycke",
            "valid_from": "2020-01-01T00:00:00Z"}},
        ("get", "/api/v1/consents"): {"params": {"person_id": b["scale_person"]}},
        ("post", "/api/v1/consents/{consent_id}/withdraw"): {},
        ("get", "/api/v1/access-log"): {"params": {"person_id": b["scale_person"]}},
        ("get", "/fhir/r4/Observation"): {"params": {"patient": b["scale_person"]}},
        ("get", "/fhir/r4/Observation/{observation_id}"): {},
        ("get", "/fhir/r4/Patient/{patient_id}"): {},
        ("get", "/fhir/r4/Device/{device_id}"): {},
        ("post", "/api/v1/devices/{device_id}/unlock"): {
            "path": {"device_id": b["lock_id"]},
            "json": {"key_id": b["key_id"], "reason": "test"}},
        ("post", "/api/v1/staff/{staff_id}/keys"): {"json": {"key_id": "key-a-steal"}},
        ("post", "/api/v1/staff-keys/{key_id}/revoke"): {},
        ("post", "/api/v1/persons/{person_id}/visits"): {"json": visit},
        ("post", "/api/v1/persons/{person_id}/visit-slots"): {"json": {
            "weekdays": [1, 2], "start": "08:00", "end": "09:00"}},
        ("get", "/api/v1/console/me"): {},
        ("get", "/api/v1/tenant"): {},  # the token's own tenant only
        ("get", "/api/v1/console/alarms"): {},
        ("get", "/api/v1/console/alarms/{alarm_id}"): {},
        ("get", "/api/v1/console/fleet-health"): {},
        # the model catalogue is the platform's, device id disputes too (review #17)
        ("get", "/api/v1/device-models"): {},
        ("put", "/api/v1/device-models/{model_id}"): {"path": {"model_id": "t-gps"}, "json": {
            "vendor": "Acme", "model": "GPS", "device_type": "scale",
            "heartbeat_interval_s": 86400}},
        ("get", "/api/v1/platform/device-ids/{device_id}"): {},
        ("post", "/api/v1/platform/device-ids/{device_id}/release"): {"json": {
            "reason": "mine", "to_tenant": "kommun-a"}},
        # bulk onboarding (#19.5): kommun B's device id, registered and assigned in A
        ("post", "/api/v1/imports"): {"params": {"dry_run": "false"}, "json": {
            "devices": [{"id": b["device_id"], "model_id": "t-gps"}],
            "assignments": [{"device_id": b["device_id"], "person_ref": "kommun-a-brukare-1"}]}},
        # quarantine review and release (review #17.2)
        ("get", "/api/v1/quarantine"): {"params": {"device_id": "b-scale",
                                                   "since": "2020-01-01T00:00:00Z"}},
        # the fleet view's refused messages per device and model (issue #19.7)
        ("get", "/api/v1/quarantine/devices"): {"params": {"since": "2020-01-01T00:00:00Z"}},
        ("post", "/api/v1/quarantine/{quarantine_id}/release"): {"json": {
            "person_id": b["scale_person"], "purpose": "mine"}},
        # housing and payer (#19.1): B's resident's housing; the rules and region links
        # are a region's and the platform's
        ("post", "/api/v1/persons/{person_id}/housing"): {"json": {
            "form": "residential_care", "valid_from": datetime.now(UTC).date().isoformat()}},
        ("get", "/api/v1/persons/{person_id}/housing"): {},
        ("get", "/api/v1/payer-changes"): {},
        ("put", "/api/v1/payer-rules"): {"json": {"own_home": "municipality"}},
        ("put", "/api/v1/tenants/{tenant_id}/region"): {"path": {"tenant_id": "kommun-b"},
                                                        "json": {"region_id": "region-b"}},
        # the full export (#19.6): the caller's own tenant only, whatever it asks
        ("get", "/api/v1/export"): {"params": {"tenant": "kommun-b"}},
        # stays in another municipality (#19.3): B's agreement with C, B's resident's stay
        # in C; A is neither side
        ("get", "/api/v1/stay-agreements"): {},
        ("post", "/api/v1/stay-agreements/{agreement_id}/accept"): {},
        ("post", "/api/v1/stay-agreements/{agreement_id}/end"): {},
        ("post", "/api/v1/persons/{person_id}/stays"): {"json": {
            "host_tenant_id": "kommun-c", "from": "2030-06-01", "to": "2030-06-14"}},
        ("get", "/api/v1/persons/{person_id}/stays"): {},
        ("post", "/api/v1/stays/{stay_id}/end"): {"json": {}},
        ("get", "/api/v1/guests"): {},
        ("get", "/api/v1/guests/{stay_id}/alarms"): {},
        ("get", "/api/v1/guests/{stay_id}/positions"): {},
        # moves to another municipality (#19.2): B's resident's move to C
        ("post", "/api/v1/persons/{person_id}/moves"): {"json": {
            "to_tenant": "kommun-a", "effective_at": "2027-06-01T00:00:00Z"}},
        ("get", "/api/v1/moves"): {},
        ("get", "/api/v1/moves/{move_id}"): {},
        ("post", "/api/v1/moves/{move_id}/accept"): {"json": {"ref": "a-stolen"}},
        ("post", "/api/v1/moves/{move_id}/cancel"): {},
        # units and shared devices (#19.4): B's unit and B's resident's tag
        ("get", "/api/v1/units"): {},
        ("get", "/api/v1/units/{unit_id}"): {},
        ("post", "/api/v1/units/{unit_id}/devices"): {"json": {"device_id": "b-scale"}},
        ("get", "/api/v1/units/{unit_id}/door-events"): {},
        ("get", "/api/v1/units/{unit_id}/alarms"): {},
        ("get", "/api/v1/units/{unit_id}/health"): {},
        ("get", "/api/v1/resident-tags"): {"params": {"person_id": b["scale_person"]}},
        ("post", "/api/v1/resident-tags"): {"json": {"tag": "TAG-A-STEAL",
                                                     "person_id": b["scale_person"]}},
        ("post", "/api/v1/resident-tags/{tag_id}/end"): {"json": {}},
        # the follow-up report (#21.1): A's own figures and target only, never B's
        ("get", "/api/v1/reports/followup"): {"params": {
            "from": (datetime.now(UTC) - timedelta(days=30)).date().isoformat(),
            "to": (datetime.now(UTC) + timedelta(days=2)).date().isoformat(), "format": "csv"}},
        ("get", "/api/v1/reports/target"): {},
        ("put", "/api/v1/reports/target"): {"json": {"ack_within_s": 1, "ack_share": 0.01}},
        ("delete", "/api/v1/reports/target"): {},
        # log review and a resident's log extract (#21.2-3): B's flag, staff and resident
        ("get", "/api/v1/log-review/flags"): {},
        ("post", "/api/v1/log-review/flags/{key}/review"): {"json": {"comment": "mine"}},
        ("get", "/api/v1/log-review/settings"): {},
        ("put", "/api/v1/log-review/settings"): {"json": {
            "many_residents": 5, "many_window_minutes": 10, "grace_minutes": 0,
            "consent_near_end_hours": 1,
            "working_hours": {"weekdays": [0], "start": "08:00", "end": "09:00"}}},
        ("put", "/api/v1/log-review/staff/{staff_id}/hours"): {"json": {
            "weekdays": [0], "start": "08:00", "end": "09:00"}},
        ("delete", "/api/v1/log-review/staff/{staff_id}/hours"): {},
        ("get", "/api/v1/persons/{person_id}/log-extract"): {"params": {"format": "csv"}},
        # digital supervision (#20): B's resident's decisions, plan and rules; the night view
        ("post", "/api/v1/persons/{person_id}/supervision/decisions"): {"json": {
            "service": "passive_alarms", "person_consent_at": "2026-01-01T00:00:00Z"}},
        ("get", "/api/v1/persons/{person_id}/supervision/decisions"): {},
        ("post", "/api/v1/supervision/decisions/{decision_id}/withdraw"): {"json": {
            "by": "municipality"}},
        ("post", "/api/v1/supervision/decisions/{decision_id}/cohabitant-consent"): {"json": {
            "at": "2026-01-01T00:00:00Z"}},
        ("put", "/api/v1/persons/{person_id}/supervision/plan"): {"json": {
            "check_times": ["01:00"], "seen": "door_closed", "team": "x"}},
        ("get", "/api/v1/persons/{person_id}/supervision/plans"): {},
        ("post", "/api/v1/supervision/plans/{plan_id}/end"): {},
        ("post", "/api/v1/persons/{person_id}/passive-rules"): {"json": {
            "kind": "door_opened_at_night", "window_start": "22:00", "window_end": "06:00"}},
        ("get", "/api/v1/persons/{person_id}/passive-rules"): {},
        ("post", "/api/v1/passive-rules/{rule_id}/end"): {},
        ("get", "/api/v1/supervision/night"): {},
    }  # fmt: skip


# Creating things in one's own tenant: nothing of another tenant to reach.
OWN_TENANT_CREATES = {
    ("post", "/api/v1/tenants"), ("post", "/api/v1/device-models"), ("post", "/api/v1/persons"),
    ("post", "/api/v1/devices"), ("post", "/api/v1/staff"),
    ("post", "/api/v1/stay-agreements"),  # A's own proposal (the host accepts or not)
    ("post", "/api/v1/units"),  # A's own unit (#19.4)
}  # fmt: skip
STREAMS = {("get", "/api/v1/alarms/stream")}
PATH_IDS = {"person_id": "person_id", "device_id": "device_id", "alarm_id": "alarm_id",
            "consent_id": "consent_id", "staff_id": "staff_id", "key_id": "key_id",
            "observation_id": "observation_id", "patient_id": "scale_person",
            "quarantine_id": "quarantine_id", "agreement_id": "agreement_id",
            "stay_id": "stay_id", "move_id": "move_id", "unit_id": "unit_id",
            "tag_id": "tag_id", "key": "flag_key", "decision_id": "decision_id",
            "plan_id": "plan_id", "rule_id": "rule_id"}  # fmt: skip


async def b_state(url: str) -> tuple[Any, ...]:
    """What an attack could change in kommun B."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = []
        for query in (
            "select state from alarms where tenant_id = 'kommun-b' order by id",
            "select id, status from devices where tenant_id = 'kommun-b' order by id",
            "select device_id, valid_to from assignments a join devices d on d.id = a.device_id"
            " where d.tenant_id = 'kommun-b' order by 1",
            "select withdrawn_at from consents order by id",
            "select key_id, revoked_at from staff_keys order by key_id",
            "select count(*) from safe_zones", "select count(*) from visits",
            "select count(*) from visit_slots", "select count(*) from person_limits",
            "select * from device_models order by id",
            "select count(*) from readings where tenant_id = 'kommun-b'",
            "select count(*) from housing_periods", "select * from payer_rules",
            "select id, region_id from tenants order by id",
            "select id, accepted_at, ended_at from stay_agreements order by id",
            "select id, ends_at, cut_at from stays order by id",
            "select id, status, to_person_id from person_moves order by id",
            "select id, name from units order by id",
            "select id, tag, person_id, valid_to from resident_tags order by id",
            "select device_id, unit_id from assignments where unit_id is not null order by 1",
            "select * from report_targets where tenant_id = 'kommun-b'",
            "select * from log_review_settings where tenant_id = 'kommun-b'",
            "select * from staff_working_hours", "select * from log_review_marks",
            "select id, withdrawn_at, cohabitant_consent_at from supervision_decisions order by id",
            "select id, ended_at from supervision_plans order by id",
            "select id, ended_at from passive_rules order by id",
        ):
            rows.append(await (await conn.execute(query)).fetchall())
        return tuple(map(tuple, rows))


async def test_no_endpoint_reaches_another_tenant(mosquitto, database_url) -> None:
    a = await seed(database_url, "kommun-a", A_ORG, {"a-gps": "t-gps", "a-scale": "t-scale"})
    b = await seed(database_url, "kommun-b", B_ORG,
                   {"b-gps": "t-gps", "b-scale": "t-scale", "b-lock": "t-lock"})  # fmt: skip
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("insert into tenants (id, name, kind, org_number) values"
                           " ('region-b', 'Region B', 'region', %s)", (REGION_B,))  # fmt: skip
        # B's resident moved into residential care today: a payer change of b-scale (#19.1)
        await conn.execute("update tenants set region_id = 'region-b' where id = 'kommun-b'")
        # B's own answering target (#21.1): A's calls must leave it as it is
        await conn.execute("insert into report_targets (tenant_id, ack_within_s, ack_share,"
                           " changed_by) values ('kommun-b', 60, 0.975, 'kerstin')")  # fmt: skip
        # the municipality B's resident stays in (#19.3)
        await conn.execute("insert into tenants (id, name, kind, org_number) values"
                           " ('kommun-c', 'Kommun C', 'municipality', '212000-0003')")  # fmt: skip
        await conn.execute("insert into housing_periods (tenant_id, person_id, form, valid_from,"
                           " recorded_by) values ('kommun-b', %s, 'residential_care',"
                           " current_date, 'kerstin')", (b.persons["b-scale"],))  # fmt: skip
        await conn.commit()
    async with product(mosquitto.url, database_url) as (http, _gw):
        b_ids = await make_b(http, mosquitto.url, database_url, b)
        # a read by B's operator with no alarm or visit: a flag of B's log review (#21.2)
        entry = await scalar(
            database_url, "select append_access_log('kerstin', null, 'operator', 'kommun-b',"
            " 'kommun-b', %s, '{weight}', null, 'allowed', 'by role', 'GET /x')",
            (b.persons["b-scale"],))  # fmt: skip
        b_ids["flag_key"] = f"no_context:{entry}"
        secrets = {v for k, v in b_ids.items()
                   if k not in ("quarantine_id", "move_id", "tag_id", "flag_key")} | {
            "kommun-b", "Kommun-B", B_ORG, "b-scale", "b-lock", "key-b-kerstin", "kerstin",
            "B-boendet", "TAG-B-1"}  # fmt: skip
        before = await b_state(database_url)
        table = requests_for(b_ids, str(a.persons["a-gps"]))
        operations = [
            (method, path)
            for path, ops in (await http.get("/openapi.json")).json()["paths"].items()
            for method in ops
        ]
        unknown = [
            op for op in operations
            if op not in table and op not in OWN_TENANT_CREATES and op not in STREAMS
            and op[1] not in UNAUTHENTICATED_OK
        ]
        assert not unknown, f"add these operations to the isolation test: {unknown}"
        calls = 0
        for role in A_ROLES:
            headers = auth("kommun-a", role, org=A_ORG if role is Role.CLINICIAN else None)
            for (method, path), spec in table.items():
                path_values = {name: b_ids[PATH_IDS[name]] for name in PATH_IDS
                               if "{" + name + "}" in path}  # fmt: skip
                path_values.update(spec.get("path", {}))
                r = await http.request(
                    method.upper(), path.format(**path_values), headers=headers,
                    params=spec.get("params"), json=spec.get("json"),
                )  # fmt: skip
                calls += 1
                where = f"{role.value} {method.upper()} {path} -> {r.status_code}"
                assert r.status_code < 500, f"{where}: {r.text[:300]}"
                if path_values or (method, path) == ("post", "/api/v1/consents") or (
                    spec.get("params", {}).keys() & {"person_id", "patient"}
                ):
                    # aimed at one of B's resources: refused without saying whether it
                    # exists, or (a search) answered with nothing
                    refused = r.status_code in (401, 403, 404, 422)
                    empty_search = method == "get" and r.status_code == 200
                    assert refused or empty_search, f"{where}: {r.text[:300]}"
                    leaked = sorted(s for s in secrets if s in _foreign_view(path, r))
                    assert not leaked, f"{where} shows kommun B's {leaked}"
                else:
                    # a listing of A's own: never anything of B's
                    leaked = sorted(s for s in secrets if s in _text(r))
                    assert not leaked, f"{where} shows kommun B's {leaked}"
        assert calls == len(A_ROLES) * len(table)
        # the stream: kommun A's next alarm arrives with nothing of kommun B before it
        await _stream_shows_only_own(http, mosquitto.url, secrets)
        assert await b_state(database_url) == before, "an attempt changed kommun B's data"
        assert await scalar(
            database_url, "select count(*) from access_log where outcome = 'allowed'"
            " and person_id in (select id from persons where tenant_id = 'kommun-b')"
            " and actor_tenant = 'kommun-a'"
        ) == 0  # fmt: skip


def _text(r: httpx.Response) -> str:
    """The answer as text; a zip (the full export): every file in it, uncompressed."""
    if r.headers.get("content-type") != "application/zip":
        return r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        return "\n".join(archive.read(name).decode() for name in archive.namelist())


def _foreign_view(path: str, r: httpx.Response) -> str:
    """What the response tells beyond what the caller sent. The access log shows kommun A's
    auditor the attempts of kommun A's own staff, with the ids they themselves tried; it
    must not say whose resident that was."""
    if path != "/api/v1/access-log" or r.status_code != 200:
        return r.text
    rows = r.json()
    for row in rows:
        if row["actor_tenant"] == "kommun-a":
            assert row["outcome"] == "denied", row
            assert row["owner_tenant"] is None, row
    return json.dumps([row for row in rows if row["actor_tenant"] != "kommun-a"])


async def _stream_shows_only_own(http: httpx.AsyncClient, mqtt_url: str, secrets: set[str]) -> None:
    headers = {**auth("kommun-a", Role.OPERATOR), "Last-Event-ID": "0"}
    async with http.stream("GET", "/api/v1/alarms/stream", headers=headers) as stream:
        await publish(mqtt_url, [("devices/a-gps/events", payload("alarm", "apress",
                                                                  kind="button"))])  # fmt: skip
        seen: list[str] = []
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                seen.append(line)
                if event.get("tenant_id") == "kommun-a" or "a-gps" in line:
                    break
        leaked = sorted(s for s in secrets for ln in seen if s in ln)
        assert not leaked, f"the stream showed kommun B's {leaked}"


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.CLINICIAN])
async def test_sql_as_the_api_role_sees_only_its_tenant(database_url, role) -> None:
    """Below the API: as wg_api with A's tenant set, no table or view yields B's rows."""
    await seed(database_url, "kommun-a", A_ORG, {"a-scale": "t-scale"})
    b = await seed(database_url, "kommun-b", B_ORG, {"b-scale": "t-scale"})
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "insert into readings (tenant_id, person_id, device_id, msg_id, ts, received_at,"
            " kind, weight_kg) values ('kommun-b', %s, 'b-scale', 'x', now(), now(), 'weight', 80)",
            (b.persons["b-scale"],),
        )
        await conn.commit()
    api_url = with_user(database_url, "wg_api", API_PASSWORD)
    async with await psycopg.AsyncConnection.connect(api_url) as conn:
        await conn.execute("select set_config('wg.tenant_id', 'kommun-a', false)")
        relations = [
            r[0] for r in await (await conn.execute(
                "select c.relname from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'"
                " join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id'"
                " where c.relkind in ('r', 'v', 'p', 'm') and not c.relispartition"
                " and has_table_privilege('wg_api', c.oid, 'select')"
            )).fetchall()
        ]  # fmt: skip
        assert {"persons", "devices", "api_readings"} <= set(relations)
        for relation in relations:
            n = await (await conn.execute(
                f"select count(*) from {relation} where tenant_id <> 'kommun-a'"
            )).fetchone()  # fmt: skip
            assert n == (0,), f"{relation} shows another tenant's rows to wg_api"
