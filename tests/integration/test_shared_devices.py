"""Units and shared devices (issue #19.4), end to end: real Mosquitto, PostgreSQL, the
running gateway and its API over HTTP.

Before: every personal message needed a one-person assignment, so a ward's shared scale
and a residential unit's door lock had no place (``no_assignment_at_ts``). Now a tenant
registers a unit, assigns a scale and a lock to it, and registers residents' tags:

- a weight with a known ``resident_tag`` is stored on that resident (with the unit beside
  it) and feeds the resident's weight rule (a weight_gain alarm for the person);
- without a tag, or with a tag no one has, it is quarantined with a clear reason, and a
  tenant admin releases it to the resident the ward's records name;
- the lock's door events, heartbeats and a tamper alarm are stored on the unit; the
  alarm reaches the tenant's operators naming the unit (the alarm message's ``unit``);
- a staff key opens the unit's door without a planned visit (``unit_door``); an unknown
  key raises an unauthorised_unlock naming the unit;
- the unit's devices, door events (access-logged), alarms and health are read through the
  API; another tenant gets 404 for every one of them.

Waits are on conditions; nothing of the product is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import aiomqtt
import httpx
import orjson
import pytest

from api.auth import Role, mint
from firmware_contracts.topics import Channel, device_topic
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    now_iso,
    operator,
    payload,
    publish,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)

SECRET = "shared-devices-secret-issue-19-4-units"


def auth(tenant: str, role: Role = Role.TENANT_ADMIN, sub: str | None = None) -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub or f"{tenant}-{role.value}", org=None,
            ttl_s=900
        )
    )


ADMIN = auth("kommun-a")
OPERATOR = auth("kommun-a", Role.OPERATOR, "nattpatrull-1")
OTHER = auth("kommun-b")


@contextlib.asynccontextmanager
async def lock_firmware(mqtt_url: str, device_id: str) -> AsyncIterator[list[str]]:
    """The unit door lock's firmware: obeys every command it is sent (yields their ids)."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    obeyed: list[str] = []
    async with aiomqtt.Client(host, int(port), identifier=f"fw-{device_id}") as client:
        await client.subscribe(device_topic(device_id, Channel.COMMANDS), qos=1)

        async def obey() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                command = orjson.loads(message.payload)
                obeyed.append(command["id"])
                reply = {"v": 1, "type": "reply", "id": f"re-{command['id']}", "ts": now_iso(),
                         "command_id": command["id"], "ok": True}  # fmt: skip
                await client.publish(device_topic(device_id, Channel.REPLIES),
                                     orjson.dumps(reply), qos=1)  # fmt: skip

        task = asyncio.create_task(obey())
        try:
            yield obeyed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_a_wards_scale_and_a_units_door_end_to_end(mosquitto: Any, database_url: str) -> None:
    # kommun-a: one ordinary GPS alarm (the common case), two residents; kommun-b: a tenant
    await seed(database_url, devices={"gps-1": "t-gps"})
    await seed(database_url, "kommun-b", "212000-0002", {"b-gps": "t-gps"})
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    since = (datetime.now(UTC) - timedelta(days=4)).isoformat()
    async with (
        gateway_with_api(settings) as (base, gw),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
        operator(mosquitto.url, "kommun-a") as op,
    ):
        alice = (await ok(await http.post("/api/v1/persons", headers=ADMIN,
                                          json={"ref": "avd2-rum-3"}), 201))["id"]  # fmt: skip
        bob = (await ok(await http.post("/api/v1/persons", headers=ADMIN,
                                        json={"ref": "avd2-rum-4"}), 201))["id"]  # fmt: skip

        # a unit: refused shapes first, then the real one
        assert (
            await http.post("/api/v1/units", headers=ADMIN, json={"name": "x", "kind": "villa"})
        ).status_code == 422
        assert (
            await http.post("/api/v1/units", headers=OPERATOR, json={"name": "x", "kind": "ward"})
        ).status_code == 403
        unit = (await ok(await http.post(
            "/api/v1/units", headers=ADMIN,
            json={"name": "Solgläntan avdelning 2", "kind": "ward"}), 201))["id"]  # fmt: skip
        dup = await http.post(
            "/api/v1/units", headers=ADMIN, json={"name": "Solgläntan avdelning 2", "kind": "ward"}
        )
        assert dup.status_code == 409 and "exists" in dup.json()["detail"]

        for device_id, model in (("ward-scale", "t-scale"), ("ward-lock", "t-lock")):
            await ok(
                await http.post(
                    "/api/v1/devices", headers=ADMIN, json={"id": device_id, "model_id": model}
                ),
                201,
            )
            await ok(
                await http.post(
                    f"/api/v1/units/{unit}/devices",
                    headers=ADMIN,
                    json={"device_id": device_id, "valid_from": since},
                ),
                204,
            )
        # one holder at a time: the scale is the unit's, not also a person's
        taken = await http.post(
            "/api/v1/devices/ward-scale/assign", headers=ADMIN, json={"person_id": alice}
        )
        assert taken.status_code == 409
        again = await http.post(
            f"/api/v1/units/{unit}/devices", headers=ADMIN, json={"device_id": "ward-scale"}
        )
        assert again.status_code == 409
        assert (
            await http.post(
                f"/api/v1/units/{UUID(int=1)}/devices", headers=ADMIN, json={"device_id": "gps-1"}
            )
        ).status_code in (404, 409)

        await ok(await http.post("/api/v1/resident-tags", headers=ADMIN, json={
            "tag": "TAG-ALICE", "person_id": alice, "valid_from": since}), 201)  # fmt: skip
        busy = await http.post(
            "/api/v1/resident-tags", headers=ADMIN, json={"tag": "TAG-ALICE", "person_id": bob}
        )
        assert busy.status_code == 409
        assert (
            await http.post(
                "/api/v1/resident-tags", headers=ADMIN, json={"tag": "bad tag", "person_id": bob}
            )
        ).status_code == 422

        # a staff member with a key (no visit planned anywhere)
        staff = (
            await ok(
                await http.post(
                    "/api/v1/staff",
                    headers=ADMIN,
                    json={"subject": "SE2321000016-1234", "display_name": "Anna Nattpersonal"},
                ),
                201,
            )
        )["id"]
        await ok(await http.post(f"/api/v1/staff/{staff}/keys", headers=ADMIN,
                                 json={"key_id": "key-anna"}), 201)  # fmt: skip

        # the worker has it all in memory
        unit_id = UUID(unit)

        async def known() -> bool:
            scale, lock = gw.registry.get("ward-scale"), gw.registry.get("ward-lock")
            now = datetime.now(UTC)
            return (
                scale is not None and scale.unit_at(now) == unit_id
                and lock is not None and lock.unit_at(now) == unit_id
                and gw.registry.units.tags().person_at("kommun-a", "TAG-ALICE", now)
                == UUID(alice)
                and gw.registry.units.unit(unit_id) is not None
                and gw.locks.cache.key("key-anna", "kommun-a") is not None
            )  # fmt: skip

        await wait_for(known, what="units, tags and keys in the worker's memory")

        two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        await publish(mosquitto.url, [
            # Alice steps on the ward's scale twice: +3 kg in two days (her weight rule)
            ("devices/ward-scale/telemetry",
             payload("weight", "w-1", two_days_ago, kg=70.0, resident_tag="TAG-ALICE")),
            ("devices/ward-scale/telemetry",
             payload("weight", "w-2", kg=73.0, resident_tag="TAG-ALICE")),
            # no one identified / a tag no one has
            ("devices/ward-scale/telemetry", payload("weight", "w-3", kg=81.0)),
            ("devices/ward-scale/telemetry",
             payload("weight", "w-4", kg=64.0, resident_tag="TAG-NOBODY")),
            ("devices/ward-scale/heartbeat", payload("heartbeat", "hb-1", battery_percent=90)),
            # the unit's door
            ("devices/ward-lock/events",
             payload("lock", "l-1", action="unlocked", method="app", key_id="key-anna")),
            ("devices/ward-lock/events", payload("lock", "l-2", action="locked", method="manual")),
            ("devices/ward-lock/events",
             payload("lock", "l-3", action="unlocked", method="app", key_id="key-unknown")),
            ("devices/ward-lock/events", payload("alarm", "a-1", kind="tamper")),
            # the common case goes on as before
            ("devices/gps-1/telemetry",
             payload("position", "p-1", lat=59.61, lon=16.55, accuracy_m=5.0)),
        ])  # fmt: skip

        # storage: Alice's weights on Alice, with the unit
        await wait_count(
            database_url,
            f"select count(*) from readings where person_id = '{alice}' and unit_id = '{unit}'",
            2,
        )
        await wait_count(database_url, "select count(*) from positions", 1)
        assert (
            await scalar(database_url, "select unit_id from positions where device_id = 'gps-1'")
            is None
        )
        # quarantine with clear reasons
        await wait_count(
            database_url,
            "select count(*) from quarantine where device_id ="
            " 'ward-scale' and reason in ('no_resident_identified',"
            " 'unknown_resident_tag')",
            2,
        )
        assert (
            await scalar(
                database_url, "select count(*) from quarantine where reason = 'no_assignment_at_ts'"
            )
            == 0
        )
        # the unit's own data, with no person
        await wait_count(
            database_url,
            f"select count(*) from lock_events where unit_id = '{unit}' and person_id is null",
            3,
        )
        await wait_count(
            database_url,
            "select count(*) from device_alarms where unit_id = "
            f"'{unit}' and person_id is null and kind = 'tamper'",
            1,
        )
        await wait_count(
            database_url,
            "select count(*) from device_health where unit_id = "
            f"'{unit}' and device_id = 'ward-scale'",
            1,
        )

        # alarms: the unit's named; Alice's weight gain is Alice's, the unit named beside
        tamper = await op.wait(lambda m: m["kind"] == "tamper", "the unit's tamper alarm")
        named = {"id": unit, "name": "Solgläntan avdelning 2", "kind": "ward"}
        assert tamper["person_id"] is None and tamper["unit"] == named
        assert tamper["device_id"] == "ward-lock" and tamper["tenant_id"] == "kommun-a"
        unauthorised = await op.wait(lambda m: m["kind"] == "unauthorised_unlock",
                                     "the unknown key's unlock")  # fmt: skip
        assert unauthorised["unit"] == named
        assert unauthorised["detail"]["key_id"] == "key-unknown"
        gain = await op.wait(lambda m: m["kind"] == "weight_gain", "Alice's weight gain")
        assert gain["person_id"] == alice and gain["person_ref"] == "avd2-rum-3"
        assert gain["unit"] == named
        # Anna's key opened the unit's door: allowed, logged, no alarm for it
        assert [m for m in op.of("unauthorised_unlock")
                if m["detail"].get("key_id") == "key-anna"] == []  # fmt: skip
        await wait_count(
            database_url,
            "select count(*) from access_log where reason = 'unit_door' and outcome = 'allowed'",
            1,
        )
        # a position or alarm of gps-1 carries no unit: the message is as before
        assert all("unit" not in m for m in op.messages if m["device_id"] == "gps-1")

        # the API: the unit, its devices and data
        detail = await ok(await http.get(f"/api/v1/units/{unit}", headers=OPERATOR))
        assert detail["name"] == "Solgläntan avdelning 2" and detail["kind"] == "ward"
        assert sorted(d["device_id"] for d in detail["devices"]) == ["ward-lock", "ward-scale"]
        assert all(d["valid_to"] is None for d in detail["devices"])
        devices = await ok(await http.get("/api/v1/devices", headers=OPERATOR))
        holders = {d["id"]: (d["person_id"], d["unit_id"]) for d in devices}
        assert holders["ward-scale"] == (None, unit) and holders["ward-lock"] == (None, unit)
        assert holders["gps-1"][1] is None and holders["gps-1"][0] is not None
        listed = await ok(await http.get("/api/v1/units", headers=OPERATOR))
        assert [(u["id"], u["devices"]) for u in listed] == [(unit, 2)]
        door_reads = "select count(*) from access_log where reason like %s"
        logged = await scalar(database_url, door_reads, (f"unit {unit} door events%",))
        doors = await ok(
            await http.get(
                f"/api/v1/units/{unit}/door-events",
                headers=OPERATOR,
                params={"purpose": "nattlig tillsyn"},
            )
        )
        assert [d["msg_id"] for d in doors] == ["l-3", "l-2", "l-1"] or sorted(
            d["msg_id"] for d in doors) == ["l-1", "l-2", "l-3"]  # fmt: skip
        assert await scalar(database_url, door_reads, (f"unit {unit} door events%",)) == (
            logged + 1
        )

        async def alarms_stored() -> bool:
            got = await ok(await http.get(f"/api/v1/units/{unit}/alarms", headers=OPERATOR))
            return {"tamper", "unauthorised_unlock"} <= {a["kind"] for a in got}

        await wait_for(alarms_stored, what="the unit's alarms through the API")
        unit_alarms = await ok(await http.get(f"/api/v1/units/{unit}/alarms", headers=OPERATOR))
        assert "weight_gain" not in {a["kind"] for a in unit_alarms}  # Alice's, not the unit's
        health = await ok(await http.get(f"/api/v1/units/{unit}/health", headers=OPERATOR))
        assert {h["device_id"] for h in health} >= {"ward-scale"}
        beats = await ok(await http.get(f"/api/v1/units/{unit}/health", headers=OPERATOR,
                                        params={"kind": "heartbeat"}))  # fmt: skip
        assert [(h["device_id"], h["kind"], h["battery_percent"]) for h in beats] == [
            ("ward-scale", "heartbeat", 90)]  # fmt: skip
        bad = await http.get(
            f"/api/v1/units/{unit}/door-events",
            headers=OPERATOR,
            params={"since": now_iso(), "until": now_iso(-60)},
        )
        assert bad.status_code == 422

        # an operator opens the unit's door remotely with Anna's key: no visit needed
        await asyncio.wait_for(gw.locks.commands.connected.wait(), 20)
        async with lock_firmware(mosquitto.url, "ward-lock") as obeyed:
            opened = await ok(await http.post(
                "/api/v1/devices/ward-lock/unlock", headers=OPERATOR,
                json={"key_id": "key-anna", "reason": "larm från avdelningen"}))  # fmt: skip
            assert opened["outcome"] == "done" and opened["reason"] == "unit_door"
            assert len(obeyed) == 1
            refused = await http.post(
                "/api/v1/devices/ward-lock/unlock", headers=OPERATOR,
                json={"key_id": "key-unknown", "reason": "test"})  # fmt: skip
            assert refused.status_code == 403 and len(obeyed) == 1

        # another tenant: nothing, whatever it asks
        for path in (
            f"/api/v1/units/{unit}",
            f"/api/v1/units/{unit}/door-events",
            f"/api/v1/units/{unit}/alarms",
            f"/api/v1/units/{unit}/health",
        ):
            assert (await http.get(path, headers=OTHER)).status_code == 404, path
        assert await ok(await http.get("/api/v1/units", headers=OTHER)) == []
        foreign = await http.post(
            f"/api/v1/units/{unit}/devices", headers=OTHER, json={"device_id": "b-gps"}
        )
        assert foreign.status_code == 404

        # the quarantine review: reasons listed; the untagged weight released to Bob
        listed_q = await ok(
            await http.get(
                "/api/v1/quarantine", headers=ADMIN, params={"reason": "no_resident_identified"}
            )
        )
        rows = listed_q["items"] if isinstance(listed_q, dict) else listed_q
        assert len(rows) == 1 and rows[0]["device_id"] == "ward-scale"
        released = await ok(await http.post(
            f"/api/v1/quarantine/{rows[0]['id']}/release", headers=ADMIN,
            json={"person_id": bob, "purpose": "avdelningens vägningslista"}))  # fmt: skip
        assert released["stored"] is True and released["table"] == "readings"
        assert await scalar(
            database_url,
            f"select weight_kg from readings where person_id = '{bob}' and unit_id = '{unit}'",
        ) == pytest.approx(81.0)
        again_r = await ok(await http.post(
            f"/api/v1/quarantine/{rows[0]['id']}/release", headers=ADMIN,
            json={"person_id": bob, "purpose": "avdelningens vägningslista"}))  # fmt: skip
        assert again_r["already_released"] is True
        # a person of another tenant is never a release's target
        other_q = await ok(
            await http.get(
                "/api/v1/quarantine", headers=ADMIN, params={"reason": "unknown_resident_tag"}
            )
        )
        other_rows = other_q["items"] if isinstance(other_q, dict) else other_q
        b_person = await scalar(database_url, "select id from persons where tenant_id = 'kommun-b'")
        refused = await http.post(
            f"/api/v1/quarantine/{other_rows[0]['id']}/release", headers=ADMIN,
            json={"person_id": str(b_person), "purpose": "fel"})  # fmt: skip
        assert refused.status_code == 409

        # a tag ended: Alice's later readings are no longer hers
        tags = await ok(
            await http.get("/api/v1/resident-tags", headers=ADMIN, params={"person_id": alice})
        )
        assert [t["tag"] for t in tags] == ["TAG-ALICE"]
        await ok(await http.post(f"/api/v1/resident-tags/{tags[0]['id']}/end",
                                 headers=ADMIN, json={}), 204)  # fmt: skip

        async def ended() -> bool:
            return (
                gw.registry.units.tags().person_at(
                    "kommun-a", "TAG-ALICE", datetime.now(UTC) + timedelta(seconds=1)
                )
                is None
            )

        await wait_for(ended, what="the ended tag in the worker's memory")
        await publish(mosquitto.url, [("devices/ward-scale/telemetry", payload(
            "weight", "w-5", now_iso(1), kg=73.5, resident_tag="TAG-ALICE"))])  # fmt: skip
        await wait_count(
            database_url, "select count(*) from quarantine where reason = 'unknown_resident_tag'", 2
        )


async def test_a_ward_onboarded_from_one_import_file(mosquitto: Any, database_url: str) -> None:
    """The bulk import (#19.5) takes units, devices assigned to them and residents' tags;
    the same file again changes nothing; the ward's scale then stores a tagged weigh-in on
    its resident."""
    await seed(database_url, devices={"gps-1": "t-gps"})
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    doc = {
        "units": [{"name": "Eken avdelning 1", "unit_kind": "ward"}],
        "persons": [{"ref": "EK-0001"}],
        "devices": [{"id": "ek-scale", "model_id": "t-scale"}],
        "assignments": [{"device_id": "ek-scale", "unit_name": "Eken avdelning 1",
                         "valid_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}],
        "resident_tags": [{"tag": "04A2B3C4D5", "person_ref": "EK-0001",
                           "valid_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}],
    }  # fmt: skip
    async with (
        gateway_with_api(settings) as (base, gw),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
    ):
        first = await ok(await http.post("/api/v1/imports", headers=ADMIN, json=doc,
                                         params={"dry_run": "false"}))  # fmt: skip
        assert first["applied"] is True and first["summary"]["create"] == 5, first
        again = await ok(await http.post("/api/v1/imports", headers=ADMIN, json=doc,
                                         params={"dry_run": "false"}))  # fmt: skip
        assert again["summary"] == {"create": 0, "unchanged": 5, "error": 0}, again
        units = await ok(await http.get("/api/v1/units", headers=OPERATOR))
        assert [(u["name"], u["kind"], u["devices"]) for u in units] == [
            ("Eken avdelning 1", "ward", 1)
        ]
        person = await scalar(database_url, "select id from persons where ref = 'EK-0001'")
        assert await scalar(database_url, "select created_by from resident_tags") == (
            "kommun-a-tenant_admin"
        )

        async def known() -> bool:
            now = datetime.now(UTC)
            scale = gw.registry.get("ek-scale")
            return (scale is not None and scale.unit_at(now) == UUID(units[0]["id"])
                    and gw.registry.units.tags().person_at("kommun-a", "04A2B3C4D5", now)
                    == person)  # fmt: skip

        await wait_for(known, what="the imported ward in the worker's memory")
        await publish(mosquitto.url, [("devices/ek-scale/telemetry", payload(
            "weight", "ek-1", kg=66.0, resident_tag="04A2B3C4D5"))])  # fmt: skip
        await wait_count(database_url, f"select count(*) from readings where person_id ="
                         f" '{person}' and unit_id = '{units[0]['id']}'", 1)  # fmt: skip
