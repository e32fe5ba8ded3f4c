"""Full export for a change of supplier (issue #19.6; docs/export.md), end to end with real
Mosquitto, PostgreSQL and HTTP: a tenant with devices, persons, assignments, consents,
readings, positions, lock events, alarms acknowledged and resolved and an access log is
exported through the API, restored into a fresh database by ``welfare-gateway restore``,
and an API started on it answers the main reads as the original did. A changed byte stops
a restore, naming the file; another tenant's rows are never in an export; a table with a
tenant's data that the export neither lists nor excludes with a reason fails a test.
Nothing is mocked; waits are on conditions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from gateway.adapters.embedded import with_user
from gateway.adapters.postgres import export_queries
from gateway.adapters.postgres.access_log import verify as verify_access_log
from gateway.adapters.postgres.migrate import migrate
from gateway.bootstrap import api_app
from gateway.domain import export as ex
from gateway.entrypoints import cli
from gateway.support.pii import PinCipher
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    payload,
    publish,
    scalar,
    seed,
    serving,
    settings_for,
    wait_count,
    wait_for,
)

SECRET = "export-test-secret-export-test-secret"
A_ORG, B_ORG, REGION_ORG = "212000-0001", "212000-0002", "232100-0172"
OLD_KEY = base64.b64encode(b"o" * 32).decode()  # the old supplier's pii key
NEW_KEY = base64.b64encode(b"n" * 32).decode()  # the new supplier's
PIN = "191212121212"
NOTES = 'Nyckel i "gömman", kod 1234,\nandra raden'  # quotes, comma, line break


def auth(tenant: str, role: Role, sub: str = "karin.berg") -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub, org=None, ttl_s=900
        )
    )


ADMIN = auth("kommun-a", Role.TENANT_ADMIN)
OPERATOR = auth("kommun-a", Role.OPERATOR, "olle.operator")


def config(tmp: Path, url: str, key_id: str, key: str) -> Path:
    path = tmp / f"{key_id}.toml"
    path.write_text(
        f'database_url = "{url}"\napi_db_password = "{API_PASSWORD}"\n'
        f'worker_db_password = "{WORKER_PASSWORD}"\njwt_secret = "{SECRET}"\n'
        f'data_dir = "{tmp / key_id}"\nmode = "development"\n'
        f'[pii_keys]\n{key_id} = "{key}"\n'
    )
    return path


async def populate(
    http: httpx.AsyncClient, mqtt_url: str, url: str, a: Any, b: Any, gw: Any
) -> str:
    """Kommun A's life: a person with an identity number, consents, housing, staff, keys,
    visits, zones, limits, messages of every kind, an alarm acknowledged and resolved, and
    reads of its data (the access log); kommun B's messages beside it. Returns A's alarm."""
    r = await http.post(
        "/api/v1/persons",
        headers=ADMIN,
        json={
            "ref": "kommun-a-pnr",
            "personal_identity_number": "19121212-1212",
            "care_notes": NOTES,
        },
    )
    assert r.status_code == 201, r.text
    scale, bp, gps = a.persons["scale-1"], a.persons["bp-1"], a.persons["gps-1"]
    since = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    r = await http.post(
        "/api/v1/consents",
        headers=ADMIN,
        json={
            "person_id": str(scale),
            "recipient_org": REGION_ORG,
            "purpose": "uppföljning",
            "categories": ["weight", "blood_pressure"],
            "valid_from": since,
            "legal_basis": "samtycke",
        },
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        f"/api/v1/persons/{bp}/housing",
        headers=ADMIN,
        json={"form": "residential_care", "valid_from": datetime.now(UTC).date().isoformat()},
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        "/api/v1/staff",
        headers=ADMIN,
        json={"subject": "SE2321000-1234", "display_name": "Kerstin Ek", "teams": ["natt", "väst"]},
    )
    staff = r.json()["id"]
    assert (await http.post(f"/api/v1/staff/{staff}/keys", headers=ADMIN,
                            json={"key_id": "key-17"})).status_code == 201  # fmt: skip
    start = datetime.now(UTC) + timedelta(days=1)
    r = await http.post(
        f"/api/v1/persons/{gps}/visits",
        headers=ADMIN,
        json={
            "staff_id": staff,
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        f"/api/v1/persons/{gps}/visit-slots",
        headers=ADMIN,
        json={"team": "natt", "weekdays": [0, 2, 4], "start": "21:30", "end": "22:00"},
    )
    assert r.status_code == 201, r.text
    r = await http.post(f"/api/v1/persons/{gps}/geofences", headers=ADMIN, json={
        "name": "Hemma", "shape": {"type": "circle", "lat": 59.61, "lon": 16.55,
                                   "radius_m": 150}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await http.put(
        f"/api/v1/persons/{bp}/limits", headers=ADMIN, json={"weight_gain": {"kg": 2.0, "days": 3}}
    )
    assert r.status_code < 300, r.text

    # a ward with its own door lock, and a resident's tag for shared devices (#19.4)
    r = await http.post("/api/v1/units", headers=ADMIN, json={
        "name": "Solgläntan, avdelning 2", "kind": "ward"})  # fmt: skip
    assert r.status_code == 201, r.text
    unit = r.json()["id"]
    r = await http.post("/api/v1/devices", headers=ADMIN, json={
        "id": "ward-lock-1", "model_id": "t-lock"})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await http.post(f"/api/v1/units/{unit}/devices", headers=ADMIN, json={
        "device_id": "ward-lock-1",
        "valid_from": (datetime.now(UTC) - timedelta(hours=2)).isoformat()})  # fmt: skip
    assert r.status_code == 204, r.text
    r = await http.post("/api/v1/resident-tags", headers=ADMIN, json={
        "tag": "04A2B3C4D5", "person_id": str(scale)})  # fmt: skip
    assert r.status_code == 201, r.text

    async def unit_known() -> bool:  # the gateway's registry follows the database
        lock = gw.registry.get("ward-lock-1")
        return lock is not None and lock.unit_at(datetime.now(UTC)) is not None

    await wait_for(unit_known, what="the gateway to hold the ward's lock")

    def ago(minutes: int) -> str:
        return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()

    await publish(mqtt_url, [
        ("devices/scale-1/telemetry", payload("weight", "w1", ago(30), kg=81.5)),
        ("devices/scale-1/telemetry", payload("weight", "w2", ago(20), kg=81.9)),
        ("devices/bp-1/telemetry", payload("blood_pressure", "b1", ago(25), systolic_mmhg=128,
                                           diastolic_mmhg=82, pulse_bpm=66)),
        ("devices/bp-1/telemetry", payload("blood_pressure", "b2", ago(15), systolic_mmhg=131,
                                           diastolic_mmhg=85)),
        ("devices/gps-1/telemetry", payload("position", "p1", ago(12), lat=59.61, lon=16.55,
                                            accuracy_m=8)),
        ("devices/gps-1/heartbeat", payload("heartbeat", "h1", battery_percent=76,
                                            rssi_dbm=-71)),
        ("devices/lock-1/events", payload("lock", "l1", ago(10), action="unlocked",
                                          key_id="key-17", method="app")),
        ("devices/lock-1/replies", payload("reply", "r1", command_id="c-1", ok=True)),
        ("devices/ward-lock-1/events", payload("lock", "wl1", ago(5), action="unlocked",
                                               key_id="key-17", method="app")),
        ("devices/gps-1/events", payload("alarm", "a1", kind="button", lat=59.61, lon=16.55)),
        ("devices/b-scale/telemetry", payload("weight", "bw1", ago(30), kg=93.7)),
        ("devices/b-gps/events", payload("alarm", "ba1", kind="button", lat=57.7, lon=11.9)),
    ])  # fmt: skip
    await wait_count(url, "select count(*) from readings", 5)
    await wait_count(url, "select count(*) from command_replies", 1)
    await wait_count(url, "select count(*) from lock_events where unit_id is not null", 1)
    await wait_count(url, "select count(*) from alarms where kind = 'button'", 2)
    alarm = str(await scalar(url, "select id from alarms where tenant_id = 'kommun-a'"
                                  " and kind = 'button'"))  # fmt: skip

    async def acknowledged() -> bool:
        r = await http.post(f"/api/v1/alarms/{alarm}/acknowledge", headers=OPERATOR)
        return r.status_code == 200

    await wait_for(acknowledged, what="the alarm engine to hold the alarm")
    r = await http.post(f"/api/v1/alarms/{alarm}/resolve", headers=OPERATOR,
                        json={"outcome": "false_alarm"})  # fmt: skip
    assert r.status_code == 200, r.text
    await wait_count(url, "select count(*) from alarms where state = 'resolved'", 1)
    await wait_count(url, "select count(*) from alarm_events where tenant_id = 'kommun-a'"
                          " and type = 'resolved'", 1)  # fmt: skip
    return alarm


async def answers(http: httpx.AsyncClient, a: Any, pin_person: str) -> dict[str, Any]:
    """The main reads, as a tenant admin: registry, readings, alarms, FHIR Observations."""
    out: dict[str, Any] = {}
    persons = [str(p) for p in a.persons.values()] + [pin_person]

    async def get(path: str, **params: Any) -> Any:
        r = await http.get(path, headers=ADMIN, params=params)
        assert r.status_code == 200, f"{path}: {r.text}"
        return r.json()

    out["devices"] = await get("/api/v1/devices")
    out["units"] = await get("/api/v1/units")
    for unit in out["units"]:
        out[f"unit {unit['id']}"] = await get(f"/api/v1/units/{unit['id']}")
        out[f"door events {unit['id']}"] = await get(f"/api/v1/units/{unit['id']}/door-events")
    out["tags"] = await get("/api/v1/resident-tags")
    out["tenant"] = await get("/api/v1/tenant")
    for person in persons:
        out[f"person {person}"] = await get(f"/api/v1/persons/{person}")
        out[f"consents {person}"] = await get("/api/v1/consents", person_id=person)
        out[f"housing {person}"] = await get(f"/api/v1/persons/{person}/housing")
        for category in ("weight", "blood_pressure", "position", "lock_events", "alarms"):
            out[f"{category} {person}"] = await get(f"/api/v1/persons/{person}/readings",
                                                    category=category)  # fmt: skip
        bundle = await get("/fhir/r4/Observation", patient=person)
        out[f"fhir {person}"] = [e["resource"] for e in bundle["entry"]]
    for state in ("raised", "acknowledged", "resolved", "open"):
        out[f"alarms {state}"] = await get("/api/v1/alarms", state=state)
    out["payer changes"] = await get("/api/v1/payer-changes")
    return out


async def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return [tuple(r) for r in await (await conn.execute(query)).fetchall()]


HISTORY = ("select id, alarm_id, seq, type, at, actor, snapshot from alarm_events"
           " where tenant_id = 'kommun-a' order by alarm_id, seq")  # fmt: skip


async def test_export_through_the_api_restores_to_the_same_answers(
    mosquitto, database_url, postgres, tmp_path
) -> None:  # fmt: skip
    a = await seed(
        database_url,
        "kommun-a",
        A_ORG,
        {"gps-1": "t-gps", "scale-1": "t-scale", "bp-1": "t-bp", "lock-1": "t-lock"},
    )
    b = await seed(database_url, "kommun-b", B_ORG, {"b-scale": "t-scale", "b-gps": "t-gps"})
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            pii_keys={"old": OLD_KEY})  # fmt: skip
    async with gateway_with_api(settings) as (base, gw), httpx.AsyncClient(
        base_url=base, timeout=30
    ) as http:  # fmt: skip
        await populate(http, mosquitto.url, database_url, a, b, gw)
        query = "select id from persons where ref = 'kommun-a-pnr'"
        pin_person = str(await scalar(database_url, query))
        before = await answers(http, a, pin_person)
        assert len(before[f"fhir {a.persons['bp-1']}"]) == 3  # two panels, one heart rate
        assert before["alarms resolved"] and before["lock_events " + str(a.persons["lock-1"])]
        assert before["tags"] and any(v for k, v in before.items() if k.startswith("door events"))
        history = await rows(database_url, HISTORY)
        assert len(history) >= 3  # raised, acknowledged, resolved

        # only the tenant's administrator exports; a platform admin reads no personal data
        for headers in (OPERATOR, auth("kommun-a", Role.AUDITOR),
                        auth("kommun-a", Role.PLATFORM_ADMIN), {}):  # fmt: skip
            r = await http.get("/api/v1/export", headers=headers)
            assert r.status_code in (401, 403), r.text
            assert r.headers["content-type"].startswith("application/problem+json")
        async with http.stream("GET", "/api/v1/export", headers=ADMIN) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/zip"
            assert "attachment" in r.headers["content-disposition"]
            data = b"".join([chunk async for chunk in r.aiter_bytes()])
        assert await answers(http, a, pin_person) == before, "the data moved under the test"

    # the export was written to the tenant's access log before it was sent
    assert await scalar(database_url, "select count(*) from access_log where owner_tenant ="
                        " 'kommun-a' and request = 'GET /api/v1/export' and outcome ="
                        " 'allowed' and actor = 'karin.berg'") == 1  # fmt: skip

    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert names[-1] == ex.MANIFEST, "the manifest is the last file"
    manifest = json.loads(archive.read(ex.MANIFEST))
    assert manifest["tenant"] == "kommun-a" and manifest["format_version"] == ex.FORMAT_VERSION
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(names) - {ex.MANIFEST}
    for path, entry in listed.items():
        content = archive.read(path)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], path
        assert len(content) == entry["bytes"], path
    for table in ex.TABLES:
        assert table.file in listed and table.schema_file in listed, table.name
        schema = json.loads(archive.read(table.schema_file))
        assert schema["x-column-order"] == [c.name for c in table.columns]
        header = archive.read(table.file).split(b"\r\n", 1)[0].decode()
        assert header == ",".join(c.name for c in table.columns)
    assert listed["readings.csv"]["rows"] == 4 and listed["persons.csv"]["rows"] == 5
    assert listed["alarm_events.csv"]["rows"] == len(history)
    persons_csv = archive.read("persons.csv").decode()
    assert PIN in persons_csv, "the identity number is exported in clear (docs/export.md)"
    assert '"Nyckel i ""gömman"", kod 1234,\nandra raden"' in persons_csv
    bundles = [n for n in names if n.startswith("fhir/")]
    exported_obs = [e["resource"] for n in bundles for e in json.loads(archive.read(n))["entry"]]
    assert all(json.loads(archive.read(n))["type"] == "collection" for n in bundles)
    served = [o for k, v in before.items() if k.startswith("fhir ") for o in v]
    assert _by_id(exported_obs) == _by_id(served), "the FHIR API's own Observations"

    # only kommun A's rows: nothing of kommun B anywhere in the export
    secrets = {"kommun-b", "Kommun-B", B_ORG, "b-scale", "b-gps", "93.7",
               *(str(p) for p in b.persons.values())}  # fmt: skip
    for name in names:
        text = archive.read(name).decode()
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{name} holds kommun B's {leaked}"

    # restore into a fresh database of the new supplier (own pii key), then its own API
    target = postgres.create_database(template=postgres.template)
    zip_path = tmp_path / "export.zip"
    zip_path.write_bytes(data)
    assert await cli_main(["restore", "--from", str(zip_path),
                     "--config", str(config(tmp_path, target, "new", NEW_KEY))]) == 0  # fmt: skip
    new = settings_for(mosquitto.url, target, jwt_secret=SECRET, pii_keys={"new": NEW_KEY})
    app = api_app(new, api_database_url=with_user(target, "wg_api", API_PASSWORD),
                  metrics_registry=CollectorRegistry())  # fmt: skip
    async with serving(app) as restored_base, httpx.AsyncClient(
        base_url=restored_base, timeout=30
    ) as restored:  # fmt: skip
        after = await answers(restored, a, pin_person)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key
    assert await rows(target, HISTORY) == history, "the alarms' history"
    # the identity number, encrypted again under the new supplier's key
    blob, key_id = (await rows(target, "select pin_ciphertext, pin_key_id from persons"
                                       " where pin_ciphertext is not null"))[0]  # fmt: skip
    cipher = PinCipher.from_settings({"new": NEW_KEY}, None)
    assert cipher is not None and key_id == "new"
    assert cipher.decrypt(bytes(blob), key_id, pin_person) == PIN
    # the access log came along, chained into the new installation's log, with the restore
    check = verify_access_log(target)
    assert check.ok, check.problem
    assert await scalar(target, "select count(*) from access_log where request ="
                        " 'welfare-gateway restore'") == 1  # fmt: skip
    assert await scalar(target, "select count(*) from tenants") == 1


def _by_id(observations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Observations by id, the instant read as an instant (the API's session time zone
    and the export's UTC write the same instant differently)."""
    out = {}
    for o in observations:
        o = dict(o)
        o["effectiveDateTime"] = datetime.fromisoformat(o["effectiveDateTime"])
        out[o["id"]] = o
    return out


async def test_a_changed_byte_stops_the_restore_naming_the_file(
    database_url, postgres, tmp_path
) -> None:  # fmt: skip
    """welfare-gateway export into a directory and into a zip; either, with one byte
    changed, is refused before anything is written, naming the file; unchanged, the zip
    restores."""
    await seed(database_url, "kommun-a", A_ORG)
    await seed(database_url, "kommun-b", B_ORG, {"b-scale": "t-scale"})
    source = config(tmp_path, database_url, "old", OLD_KEY)
    out = tmp_path / "export"
    assert await cli_main(["export", "--tenant", "kommun-a", "--out", str(out),
                     "--config", str(source)]) == 0  # fmt: skip
    assert (out / ex.MANIFEST).exists() and (out / "devices.csv").exists()
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    assert await cli_main(["export", "--tenant", "kommun-a", "--out", str(tmp_path / "a.zip"),
                     "--config", str(source)]) == 0  # fmt: skip
    assert await scalar(database_url, "select count(*) from access_log where owner_tenant ="
                        " 'kommun-a' and request like 'welfare-gateway export%%'") == 2  # fmt: skip

    # an identity number under a key this installation no longer has: refused, and the
    # half-written export removed (no half an export of personal data left lying about)
    other = PinCipher.from_settings({"gone": NEW_KEY}, None)
    assert other is not None
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        person = await scalar(database_url, "select id from persons where tenant_id ="
                              " 'kommun-a' order by ref limit 1")  # fmt: skip
        blob, key_id = other.encrypt(PIN, str(person))
        await conn.execute("update persons set pin_ciphertext = %s, pin_key_id = %s"
                           " where id = %s", (blob, key_id, person))  # fmt: skip
        await conn.commit()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert await cli_main(["export", "--tenant", "kommun-a", "--out",
                               str(tmp_path / "b.zip"), "--config", str(source)]) == 1  # fmt: skip
    assert "'gone'" in err.getvalue() and "nothing written" in err.getvalue(), err.getvalue()
    assert not (tmp_path / "b.zip").exists()

    target = postgres.create_database(template=postgres.template)
    dest = config(tmp_path, target, "new", NEW_KEY)
    devices = out / "devices.csv"
    content = bytearray(devices.read_bytes())
    content[-3] ^= 0x01  # one bit of one byte
    devices.write_bytes(bytes(content))
    err = await _restore_error(["restore", "--from", str(out), "--config", str(dest)])
    assert "devices.csv" in err and "SHA-256" in err, err
    assert await scalar(target, "select count(*) from tenants") == 0, "nothing restored"

    # a file the manifest does not list is refused too
    devices.write_bytes(bytes(content[:-3]) + bytes([content[-3] ^ 0x01]) + bytes(content[-2:]))
    (out / "extra.csv").write_text("x\r\n")
    err = await _restore_error(["restore", "--from", str(out), "--config", str(dest)])
    assert "extra.csv" in err and "not in the manifest" in err, err
    (out / "extra.csv").unlink()

    # the zip, with a byte of one stored file changed inside it
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_flip_in_zip((tmp_path / "a.zip").read_bytes(), "devices.csv"))
    err = await _restore_error(["restore", "--from", str(bad), "--config", str(dest)])
    assert "devices.csv" in err, err
    assert await scalar(target, "select count(*) from tenants") == 0, "nothing restored"

    assert await cli_main(["restore", "--from", str(tmp_path / "a.zip"),
                     "--config", str(dest)]) == 0  # fmt: skip
    assert await scalar(target, "select count(*) from devices where tenant_id = 'kommun-a'") == 4
    assert await scalar(target, "select count(*) from tenants") == 1
    # and not twice
    err = await _restore_error(
        ["restore", "--from", str(tmp_path / "a.zip"), "--config", str(dest)]
    )
    assert "already in this database" in err, err
    # the directory restores too, into another fresh database
    other = postgres.create_database(template=postgres.template)
    assert await cli_main(["restore", "--from", str(out),
                     "--config", str(config(tmp_path, other, "n2", NEW_KEY))]) == 0  # fmt: skip


def _flip_in_zip(data: bytes, name: str) -> bytes:
    """``data`` (a zip) with one byte of ``name``'s stored content changed."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    start = info.header_offset
    name_len = int.from_bytes(data[start + 26 : start + 28], "little")
    extra_len = int.from_bytes(data[start + 28 : start + 30], "little")
    at = start + 30 + name_len + extra_len + 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


async def cli_main(argv: list[str]) -> int:
    """``welfare-gateway ...`` (it runs its own event loop: in a thread of its own)."""
    return await asyncio.to_thread(cli.main, argv)


async def _restore_error(argv: list[str]) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert await cli_main(argv) == 1
    return err.getvalue()


async def test_every_tenant_table_is_exported_or_excluded(database_url) -> None:
    """Every table of the schema, and every column of an exported table, is in the export
    (gateway/domain/export.py TABLES) or left out with a reason (EXCLUDED): a table or
    column added without deciding fails here."""
    schema: dict[str, list[str]] = {}
    for table, column in await rows(database_url, export_queries.SCHEMA_COLUMNS):
        schema.setdefault(table, []).append(column)
    problems = []
    for table in ex.TABLES:
        if table.name not in schema:
            problems.append(f"{table.name} is exported but not in the schema")
            continue
        missing = [c for c in schema[table.name] if c not in table.stored_columns()]
        if missing:
            problems.append(f"columns of {table.name} not exported: {missing}")
        unknown = [c for c in table.stored_columns() if c not in schema[table.name]]
        if unknown:
            problems.append(f"{table.name}: no such columns {unknown}")
    undecided = sorted(set(schema) - set(ex.BY_NAME) - set(ex.EXCLUDED))
    if undecided:
        problems.append(
            f"tables neither exported nor excluded: {undecided}; add each to "
            "TABLES (or to EXCLUDED with the reason) in gateway/domain/export.py"
        )
    assert not problems, "\n".join(problems)
    tenant_owned = {t for t, cols in schema.items() if "tenant_id" in cols}
    assert tenant_owned <= set(ex.BY_NAME) | set(ex.EXCLUDED)


async def test_export_and_restore_with_timescaledb_hypertables(timescale_server, tmp_path) -> None:
    """With the time series as TimescaleDB hypertables, compressed chunks among them, the
    export reads them (through the same tenant-filtered views) and the restore loads them
    into another installation's hypertables, old rows too."""
    owner, password = "wg_owner", "test-owner-password"
    source = timescale_server.create_database(owner=owner, owner_password=password)
    await asyncio.to_thread(migrate, source, api_password=API_PASSWORD,
                            worker_password=WORKER_PASSWORD, timescaledb="on")  # fmt: skip
    a = await seed(source, "kommun-a", A_ORG, {"scale-1": "t-scale", "gps-1": "t-gps"},
                   since=datetime.now(UTC) - timedelta(days=60))  # fmt: skip
    await seed(source, "kommun-b", B_ORG, {"b-scale": "t-scale"})
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(source) as conn:
        for age in (0, 3, 20):
            ts = now - timedelta(days=age)
            await conn.execute(
                "insert into readings (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, kind, weight_kg) values ('kommun-a', %s, 'scale-1', %s, %s,"
                " %s, 'weight', 81.5)", (a.persons["scale-1"], f"w{age}", ts, ts))  # fmt: skip
            await conn.execute(
                "insert into positions (tenant_id, person_id, device_id, msg_id, ts,"
                " received_at, lat, lon, accuracy_m) values ('kommun-a', %s, 'gps-1', %s, %s,"
                " %s, 59.6, 16.5, 8)", (a.persons["gps-1"], f"p{age}", ts, ts))  # fmt: skip
        await conn.execute("insert into readings (tenant_id, person_id, device_id, msg_id, ts,"
                           " received_at, kind, weight_kg) values ('kommun-b', %s, 'b-scale',"
                           " 'bw', now(), now(), 'weight', 93.7)",
                           ((await scalar(source, "select id from persons where tenant_id ="
                                          " 'kommun-b'")),))  # fmt: skip
        await conn.commit()
        cur = await conn.execute("select count(compress_chunk(c, if_not_compressed => true))"
                                 " from show_chunks('readings', older_than => interval '2 days')"
                                 " c")  # fmt: skip
        assert ((await cur.fetchone()) or (0,))[0] >= 1, "a compressed chunk to read"
    zipped = tmp_path / "ts.zip"
    assert await cli_main(["export", "--tenant", "kommun-a", "--out", str(zipped), "--config",
                           str(config(tmp_path, source, "old", OLD_KEY))]) == 0  # fmt: skip
    manifest = json.loads(zipfile.ZipFile(zipped).read(ex.MANIFEST))
    counted = {f["path"]: f.get("rows") for f in manifest["files"]}
    assert counted["readings.csv"] == 3 and counted["positions.csv"] == 3

    target = timescale_server.create_database(owner=owner, owner_password=password)
    assert await cli_main(["restore", "--from", str(zipped), "--config",
                           str(config(tmp_path, target, "new", NEW_KEY))]) == 0  # fmt: skip
    query = ("select tenant_id, person_id, device_id, msg_id, ts, weight_kg from readings"
             " where tenant_id = 'kommun-a' order by ts")  # fmt: skip
    assert await rows(target, query) == await rows(source, query)
    assert await scalar(target, "select count(*) from positions") == 3
    assert await scalar(target, "select count(*) from timescaledb_information.hypertables"
                                " where hypertable_name = 'readings'") == 1  # fmt: skip
