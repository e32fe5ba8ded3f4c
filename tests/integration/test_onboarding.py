"""Bulk onboarding end to end (issue #19.5), real PostgreSQL, Mosquitto and HTTP: the
examples of docs/onboarding.md are imported as documented; a dry run changes nothing; an
applied file is in the registry, applying it again changes nothing; one bad row keeps
the whole file out; a tenant imports into itself only; the gateway binds and stores the
first message of an imported device; ``welfare-gateway import`` does the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role, mint
from gateway.entrypoints import cli
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

SECRET = "onboarding-secret-onboarding-secret-01"
PII_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64; tests only
DOC = Path(__file__).resolve().parents[2] / "docs" / "onboarding.md"
CSV = "text/csv"
JSON = "application/json"


def examples() -> tuple[str, str, str]:
    """docs/onboarding.md's CSV file, its JSON object of lists, its JSON list of models."""
    text = DOC.read_text(encoding="utf-8")
    [csv_file] = re.findall(r"```csv\n(.*?)```", text, re.DOTALL)
    lists, models = [b for b in re.findall(r"```json\n(.*?)```", text, re.DOTALL)
                     if '"format"' not in b and '"row"' not in b]  # fmt: skip
    return csv_file, lists, models


def auth(tenant: str, role: Role) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role.value}", org=None,
                 ttl_s=900)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def post(http: httpx.AsyncClient, body: str, media: str, *, tenant: str = "kommun-a",
               role: Role = Role.TENANT_ADMIN, dry_run: bool) -> httpx.Response:  # fmt: skip
    headers = {**auth(tenant, role), "Content-Type": media}
    return await http.post("/api/v1/imports", content=body.encode(), headers=headers,
                           params={"dry_run": str(dry_run).lower()})  # fmt: skip


async def registry(url: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        out = []
        for query in (
            "select tenant_id, ref, care_notes, pin_ciphertext is not null from persons"
            " order by 1, 2",
            "select id, tenant_id, model_id, serial, status from devices order by id",
            "select device_id, person_id, valid_from, valid_to from assignments order by 1, 3",
            "select * from device_models order by id",
        ):
            out.append(await (await conn.execute(query)).fetchall())
        return tuple(out)


def _settings(mosquitto: Any, database_url: str) -> Any:
    return settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                        pii_keys={"k1": PII_KEY}, pii_active_key="k1")  # fmt: skip


async def test_the_documented_files_dry_run_apply_and_apply_again(mosquitto, database_url) -> None:
    await seed(database_url, "kommun-a", "212000-0001", {"a-gps": "t-gps"})
    csv_file, lists, models = examples()
    async with gateway_with_api(_settings(mosquitto, database_url)) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=60) as http:  # fmt: skip
        before = await registry(database_url)
        dry = await post(http, csv_file, CSV, dry_run=True)
        assert dry.status_code == 200, dry.text
        report = dry.json()
        assert report["dry_run"] and not report["applied"] and report["errors"] == []
        assert report["summary"] == {"create": 6, "unchanged": 0, "error": 0}
        assert report["rows"][4] == {"row": "line 6", "kind": "assignment", "action": "create"}
        assert await registry(database_url) == before, "a dry run changed the registry"

        applied = await post(http, csv_file, CSV, dry_run=False)
        assert applied.status_code == 200, applied.text
        assert applied.json()["applied"] and applied.json()["summary"]["create"] == 6
        after = await registry(database_url)
        assert after != before
        again = await post(http, csv_file, CSV, dry_run=False)
        assert again.status_code == 200, again.text
        assert again.json()["summary"] == {"create": 0, "unchanged": 6, "error": 0}
        assert await registry(database_url) == after, "applying again changed the registry"

        # the JSON examples: the models as a platform admin, the lists as the tenant admin
        r = await post(http, models, JSON, tenant="platform", role=Role.PLATFORM_ADMIN,
                       dry_run=False)  # fmt: skip
        assert r.status_code == 200 and r.json()["summary"]["create"] == 2, r.text
        r = await post(http, lists, JSON, dry_run=False)
        assert r.status_code == 200 and r.json()["summary"]["create"] == 6, r.text
        r = await post(http, lists, JSON, dry_run=False)
        assert r.json()["summary"] == {"create": 0, "unchanged": 6, "error": 0}, r.text

        person = await scalar(database_url, "select id from persons where ref = 'VAS-1001'")
        assert await scalar(database_url, "select status from devices where id = 'vas-gps-1001'"
                            ) == "active"  # fmt: skip

        # the gateway's registry follows the import (wg_registry notifications, no lookup)
        async def cached() -> bool:
            record = gw.registry.get("vas-gps-1001")
            return record is not None and record.current_holder() == person

        await wait_for(cached, 20, "the imported device in the gateway's registry")
        await publish(mosquitto.url, [("devices/vas-gps-1001/telemetry", payload(
            "position", "imp-1", lat=59.61, lon=16.55, accuracy_m=5.0))])  # fmt: skip
        await wait_count(database_url, "select count(*) from positions where device_id ="
                         " 'vas-gps-1001' and msg_id = 'imp-1'", 1)  # fmt: skip
        assert await scalar(database_url, "select person_id from positions where msg_id ="
                            " 'imp-1'") == person  # fmt: skip


async def test_one_bad_row_keeps_the_whole_file_out(mosquitto, database_url) -> None:
    await seed(database_url, "kommun-a", "212000-0001", {"a-gps": "t-gps"})
    body = "\n".join([
        "kind;ref;personal_identity_number;id;model_id;device_id;person_ref;valid_from",
        "person;VAS-1;19121212-1212;;;;;",
        "device;;;vas-1;t-gps;;;",
        "device;;;vas-2;t-nope;;;",
        "assignment;;;;;vas-1;VAS-1;2025-03-01T08:00",
        "person;VAS-2;19121212-1213;;;;;",
    ])  # fmt: skip
    async with gateway_with_api(_settings(mosquitto, database_url)) as (base, _), \
            httpx.AsyncClient(base_url=base, timeout=60) as http:  # fmt: skip
        before = await registry(database_url)
        for dry_run in (True, False):
            r = await post(http, body, CSV, dry_run=dry_run)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert not problem["applied"]
            assert [(e["row"], e["column"]) for e in problem["errors"]] == [
                ("line 4", "model_id"), ("line 5", "valid_from"),
                ("line 6", "personal_identity_number")]  # fmt: skip
            assert "19121212" not in r.text
            assert problem["summary"] == {"create": 2, "unchanged": 0, "error": 3}
        assert await registry(database_url) == before
        # the same persons and device, correct, go in
        good = "\n".join(body.splitlines()[:3])
        r = await post(http, good, CSV, dry_run=False)
        assert r.status_code == 200, r.text
        assert await scalar(database_url, "select pin_key_id from persons where ref = 'VAS-1'"
                            ) == "k1"  # fmt: skip
        # the identity number is compared, not shown: the same is unchanged, another an error
        assert (await post(http, good, CSV, dry_run=True)).json()["summary"]["unchanged"] == 2
        other = good.replace("19121212-1212", "20121212-1210")
        r = await post(http, other, CSV, dry_run=True)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["column"] == "personal_identity_number"
        # not a file
        r = await http.post("/api/v1/imports", content=b"x", headers={
            **auth("kommun-a", Role.TENANT_ADMIN), "Content-Type": "text/plain"})  # fmt: skip
        assert r.status_code == 415, r.text
        r = await post(http, '{"persons": [', JSON, dry_run=True)
        assert r.status_code == 422 and r.json()["errors"][0]["row"] == "line 1", r.text


async def test_a_tenant_imports_into_itself_only(mosquitto, database_url) -> None:
    await seed(database_url, "kommun-a", "212000-0001", {"a-gps": "t-gps"})
    await seed(database_url, "kommun-b", "212000-0002", {"b-gps": "t-gps", "b-scale": "t-scale"})
    async with gateway_with_api(_settings(mosquitto, database_url)) as (base, _), \
            httpx.AsyncClient(base_url=base, timeout=60) as http:  # fmt: skip
        before = await registry(database_url)
        # kommun B's device id, registered in A: "not available", whose is not said
        steal = json.dumps({"devices": [{"id": "b-gps", "model_id": "t-gps"}],
                            "assignments": [{"device_id": "b-scale",
                                             "person_ref": "kommun-a-brukare-1"}]})  # fmt: skip
        for dry_run in (True, False):
            r = await post(http, steal, JSON, dry_run=dry_run)
            assert r.status_code == 422, r.text
            assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [
                ("devices[0]", "id"), ("assignments[0]", "device_id")]
            assert "kommun-b" not in r.text and "b-gps" not in r.text
        # a person's reference is per tenant: B's reference is A's to use too
        r = await post(http, json.dumps({"persons": [{"ref": "kommun-b-brukare-1"}]}), JSON,
                       dry_run=False)  # fmt: skip
        assert r.status_code == 200 and r.json()["summary"]["create"] == 1, r.text
        # models are the platform's; other roles may not import at all
        model = json.dumps([{"kind": "device_model", "id": "a-own", "vendor": "A", "model": "X",
                             "device_type": "scale", "heartbeat_interval_s": 60}])  # fmt: skip
        r = await post(http, model, JSON, dry_run=False)
        assert r.status_code == 422 and r.json()["errors"][0]["column"] == "id", r.text
        for role in (Role.INSTALLER, Role.OPERATOR, Role.AUDITOR, Role.CLINICIAN):
            r = await post(http, steal, JSON, role=role, dry_run=False)
            assert r.status_code == 403, (role, r.text)
        after = await registry(database_url)
        persons, devices, assignments, models = after
        assert (devices, assignments, models) == before[1:]
        assert len(persons) == len(before[0]) + 1
        assert ("kommun-a", "kommun-b-brukare-1", "", False) in persons


def test_the_command_dry_runs_then_applies(database_url, tmp_path, monkeypatch, capsys) -> None:
    import asyncio

    asyncio.run(seed(database_url, "kommun-a", "212000-0001", {"a-gps": "t-gps"}))
    csv_file, _, _ = examples()
    path = tmp_path / "hemtjanst.csv"
    path.write_text(csv_file, encoding="utf-8")
    monkeypatch.setenv("WG_DATABASE_URL", database_url)
    monkeypatch.setenv("WG_API_DB_PASSWORD", API_PASSWORD)
    monkeypatch.setenv("WG_DATA_DIR", str(tmp_path / "data"))
    assert cli.main(["import", str(path), "--tenant", "kommun-a"]) == 0
    out = capsys.readouterr().out
    assert "6 rows (6 create, 0 unchanged, 0 error); dry run, nothing changed" in out, out
    assert asyncio.run(scalar(database_url, "select count(*) from persons where tenant_id ="
                              " 'kommun-a'")) == 1  # fmt: skip
    assert cli.main(["import", str(path), "--tenant", "kommun-a", "--apply"]) == 0
    assert "applied to tenant kommun-a" in capsys.readouterr().out
    assert cli.main(["import", str(path), "--tenant", "kommun-a", "--apply", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == {
        "create": 0, "unchanged": 6, "error": 0}
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,id,model_id\ndevice,vas-9,nope\n", encoding="utf-8")
    assert cli.main(["import", str(bad), "--tenant", "kommun-a", "--apply"]) == 1
    captured = capsys.readouterr()
    assert "bad.csv line 2, column model_id: no such device model" in captured.err
    assert "not imported, nothing changed" in captured.out
    assert cli.main(["import", str(path), "--tenant", "nowhere"]) == 1
    captured = capsys.readouterr()
    assert "file: no such tenant" in captured.err
    assert "1 error in the file itself); not imported" in captured.out, captured.out
    header = tmp_path / "header.csv"  # an error of the header, not of a row
    header.write_text("kind,id,colour\ndevice,vas-9,red\n", encoding="utf-8")
    assert cli.main(["import", str(header), "--tenant", "kommun-a"]) == 1
    captured = capsys.readouterr()
    assert "header.csv line 1, column colour" in captured.err, captured.err
    assert "error in the file itself" in captured.out, captured.out


@pytest.mark.parametrize("devices", [1_000])
async def test_a_large_file_is_one_request_within_the_rate_limit(
    mosquitto, database_url, devices: int
) -> None:
    """The default limits (a burst of 200 requests) stop a device-by-device onboarding of
    this size; the import is one request."""
    await seed(database_url, "kommun-a", "212000-0001", {"a-gps": "t-gps"})
    rows = ["kind,ref,id,model_id,device_id,person_ref"]
    rows += [f"person,R{i},,,," for i in range(devices)]
    rows += [f"device,,d-{i},t-scale,," for i in range(devices)]
    rows += [f"assignment,,,,d-{i},R{i}" for i in range(devices)]
    async with gateway_with_api(_settings(mosquitto, database_url)) as (base, _), \
            httpx.AsyncClient(base_url=base, timeout=120) as http:  # fmt: skip
        r = await post(http, "\n".join(rows), CSV, dry_run=False)
        assert r.status_code == 200, r.text[:2000]
        assert r.json()["summary"] == {"create": 3 * devices, "unchanged": 0, "error": 0}
    assert await scalar(database_url, "select count(*) from devices where status = 'active'"
                        " and tenant_id = 'kommun-a'") == devices + 1  # fmt: skip
