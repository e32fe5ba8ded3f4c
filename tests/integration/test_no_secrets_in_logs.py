"""Grep the logs: a real gateway process (ingest, alarms, API) at DEBUG level handles
personal identity numbers, readings, tokens and secrets; none of them may appear in any
line it writes. The masking formatter is the second line of defence, so the lines are
also checked for the mask itself: code must not try to log an identity number at all."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg

from api.auth import Role, mint
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import payload, publish, scalar, seed, wait_count, wait_for
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "log-test-secret-log-test-secret-0001"
PII_KEY = base64.b64encode(bytes(range(32))).decode()
WEBHOOK_SECRET = "webhook-secret-webhook-secret-42"
FHIR_ID_KEY = "fhir-id-key-fhir-id-key-fhir-id-key-0001"
SEAL_KEY = base64.b64encode(bytes(range(100, 132))).decode()
PIN = "19121212-1212"  # Skatteverket's test identity number
REGION_ORG = "232100-0172"


async def test_no_identity_number_reading_or_secret_in_any_log_line(
    mosquitto, database_url, tmp_path
) -> None:
    seeded = await seed(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "insert into tenants (id, name, kind, org_number) values "
            "('region-v', 'Region V', 'region', %s)", (REGION_ORG,)
        )  # fmt: skip
        await conn.commit()
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "WG_DATABASE_URL": database_url,
        "WG_MQTT_URL": mosquitto.url,
        "WG_API_PORT": str(port),
        "WG_API_DB_PASSWORD": API_PASSWORD,
        "WG_MQTT_CLIENT_ID": "wg-log-test",
        "WG_DATA_DIR": str(tmp_path / "data"),
        "WG_LOG_LEVEL": "DEBUG",
        "WG_JWT_SECRET": JWT_SECRET,
        # production mode: every secret set, none the default (each is looked for below)
        "WG_MODE": "production",
        "WG_WORKER_DB_PASSWORD": WORKER_PASSWORD,
        "WG_FHIR_ID_KEY": FHIR_ID_KEY,
        "WG_ACCESS_LOG__KEYS": f'{{"seal-1": "{SEAL_KEY}"}}',
        "WG_PII_KEYS": f'{{"k1": "{PII_KEY}"}}',
        "WG_PII_ACTIVE_KEY": "k1",
        "WG_SUPERVISION__GATE_POSITIONS": "true",
        "WG_ALARMS__WEBHOOKS": (
            f'[{{"group": "night_team", "url": "http://127.0.0.1:{free_port()}/in", '
            f'"secret": "{WEBHOOK_SECRET}", "tenants": ["kommun-a"]}}]'
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run"], cwd=ROOT, env=env,
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    admin = mint(JWT_SECRET, tenant="kommun-a", role=Role.TENANT_ADMIN, subject="admin-a",
                 org=None, ttl_s=600)  # fmt: skip
    clinician = mint(JWT_SECRET, tenant="region-v", role=Role.CLINICIAN, subject="dr-lind",
                     org=REGION_ORG, ttl_s=600)  # fmt: skip
    tokens = [admin, clinician]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(up, 60, "the gateway's API")
            probes = iter(range(1000))

            async def ingesting() -> bool:  # subscribed once a probe heartbeat is stored
                await publish(mosquitto.url, [
                    ("devices/lock-1/heartbeat", payload("heartbeat", f"probe-{next(probes)}"))
                ])  # fmt: skip
                return bool(await scalar(database_url, "select count(*) from device_health"))

            await wait_for(ingesting, 60, "the gateway's ingest")
            h = {"Authorization": f"Bearer {admin}"}
            r = await http.post("/api/v1/persons", headers=h,
                                json={"ref": "brukare-logtest", "personal_identity_number": PIN})
            assert r.status_code == 201, r.text
            person = r.json()["id"]
            assert PIN not in (await http.get(f"/api/v1/persons/{person}", headers=h)).text
            # a malformed identity number is refused; the refusal is not logged with it
            bad = await http.post("/api/v1/persons", headers=h,
                                  json={"ref": "x", "personal_identity_number": "19121212-1213"})
            assert bad.status_code == 422
            # readings with distinctive values, and an alarm
            await publish(mosquitto.url, [
                ("devices/scale-1/telemetry", payload("weight", "w-log", kg=143.27)),
                ("devices/bp-1/telemetry", payload("blood_pressure", "bp-log", systolic_mmhg=187,
                                                   diastolic_mmhg=113, pulse_bpm=97)),
                ("devices/gps-1/events", payload("alarm", "press-log", kind="button",
                                                 lat=59.612345, lon=16.554321)),
            ])  # fmt: skip
            await wait_count(database_url, "select count(*) from readings", 2)
            await wait_count(database_url, "select count(*) from device_alarms", 1)
            scale_person = str(seeded.persons["scale-1"])
            consent = await http.post("/api/v1/consents", headers=h, json={
                "person_id": scale_person, "recipient_org": REGION_ORG, "purpose": "hjärtsvikt",
                "categories": ["weight"], "legal_basis": "samtycke",
                "valid_from": "2020-01-01T00:00:00Z",
            })  # fmt: skip
            assert consent.status_code == 201, consent.text
            c = {"Authorization": f"Bearer {clinician}"}
            fhir = await http.get("/fhir/r4/Observation", headers=c,
                                  params={"patient": scale_person})  # fmt: skip
            assert fhir.status_code == 200 and "143.27" in fhir.text
            rest = await http.get(f"/api/v1/persons/{scale_person}/readings", headers=c,
                                  params={"category": "weight"})  # fmt: skip
            assert rest.status_code == 200, rest.text
            refused = await http.get(f"/api/v1/persons/{scale_person}/readings", headers=c,
                                     params={"category": "position"})  # fmt: skip
            assert refused.status_code == 403
            assert (await http.get("/api/v1/devices", headers={
                "Authorization": f"Bearer {admin[:-4]}AAAA"})).status_code == 401  # fmt: skip
        assert await scalar(database_url, "select count(*) from access_log") >= 3
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    text = log.read_text()
    assert text.strip(), "the gateway wrote no log lines"
    lines = text.splitlines()
    assert any('"level": "debug"' in ln or '"level":"debug"' in ln for ln in lines)
    forbidden = {
        "identity number": [PIN, PIN.replace("-", ""), PIN[2:], "19121212-1213"],
        "identity number (masked, so it was logged)": ["[redacted]"],
        "reading": ["143.27", "59.612345", "16.554321"],
        "jwt secret": [JWT_SECRET],
        "a bearer token": [t.split(".")[2] for t in tokens] + [admin[:-4]],
        "pii key": [PII_KEY],
        "webhook secret": [WEBHOOK_SECRET],
        "database password": [f":{API_PASSWORD}@", API_PASSWORD, WORKER_PASSWORD],
        "fhir id key": [FHIR_ID_KEY],
        "access log seal key": [SEAL_KEY],
    }
    for what, needles in forbidden.items():
        for needle in needles:
            hits = [ln for ln in lines if needle in ln]
            assert not hits, f"{what} in the log: {hits[:2]}"
