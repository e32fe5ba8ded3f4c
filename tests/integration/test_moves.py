"""Moving to another municipality (issue #19.2), end to end with real Mosquitto, PostgreSQL
and HTTP.

A resident of kommun-a, with a GPS alarm and a scale, moves to kommun-b a few seconds
ahead. kommun-a proposes, kommun-b accepts, a worker applies the move on its date.
Messages are published across the date, some stamped before it and delivered after:
each lands in the municipality that held the device at its stamp, once; alarms reach that
municipality's operators only. Afterwards kommun-a keeps its history up to the date and
no longer sees the devices; kommun-b sees them and the resident's data from the date on,
nothing earlier; a third municipality sees nothing. Both access logs hold the move.
Waits are on conditions (the move's status, rows, alarm messages), not on time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from api.auth import Role, mint
from gateway.adapters.postgres import registry_repo as repo
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    operator,
    payload,
    publish,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)

SECRET = "moves-test-secret-moves-test-secret"


def auth(tenant: str, role: Role = Role.TENANT_ADMIN, sub: str = "admin") -> Bearer:
    return Bearer(lambda: mint(SECRET, tenant=tenant, role=role, subject=f"{sub}.{tenant}",
                               org=None, ttl_s=900))  # fmt: skip


A, B, C = auth("kommun-a"), auth("kommun-b"), auth("kommun-c")


def iso(at: datetime) -> str:
    return at.isoformat()


async def rows(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(query, params)).fetchall()


async def _world(url: str) -> UUID:
    """kommun-a's resident with a GPS alarm and a scale; kommun-b and kommun-c."""
    a = await seed(url, "kommun-a", "212000-0001", devices={"gps-1": "t-gps"})
    await seed(url, "kommun-b", "212000-0002", devices={"gps-b": "t-gps"})
    await seed(url, "kommun-c", "212000-0003", devices={"gps-c": "t-gps"})
    import psycopg

    resident = a.persons["gps-1"]
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await repo.register_device(conn, "kommun-a", "scale-1", "t-scale")
        await repo.assign_device(conn, "scale-1", resident,
                                 datetime.now(UTC) - timedelta(days=10))  # fmt: skip
    return resident


async def test_a_move_on_a_date_with_messages_across_it(mosquitto, database_url) -> None:
    resident = await _world(database_url)
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            moves={"interval_s": 0.2})  # fmt: skip
    async with (
        gateway_with_api(settings) as (base, gw),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
        operator(mosquitto.url, "kommun-a") as ops_a,
        operator(mosquitto.url, "kommun-b") as ops_b,
    ):
        # --- refused proposals: each says why --------------------------------------------
        soon = datetime.now(UTC) + timedelta(seconds=8)
        for body, status, says in [
            ({"to_tenant": "kommun-a", "effective_at": iso(soon)}, 422, "another municipality"),
            ({"to_tenant": "kommun-x", "effective_at": iso(soon)}, 422, "no municipality"),
            ({"to_tenant": "kommun-b", "effective_at": iso(soon - timedelta(hours=1))}, 422,
             "must be ahead"),
            ({"to_tenant": "kommun-b"}, 422, "exactly one"),
            ({"to_tenant": "kommun-b", "effective_at": iso(soon), "device_ids": ["gps-b"]}, 422,
             "not held by the resident"),
        ]:  # fmt: skip
            r = await http.post(f"/api/v1/persons/{resident}/moves", headers=A, json=body)
            assert r.status_code == status and says in r.text, (body, r.text)
        r = await http.post(f"/api/v1/persons/{resident}/moves", headers=B,
                            json={"to_tenant": "kommun-c", "effective_at": iso(soon)})  # fmt: skip
        assert r.status_code == 404, "another municipality's resident is not found"

        # --- proposed by kommun-a, seen by both sides, not by a third --------------------
        r = await http.post(f"/api/v1/persons/{resident}/moves", headers=A,
                            json={"to_tenant": "kommun-b", "effective_at": iso(soon)})  # fmt: skip
        assert r.status_code == 201, r.text
        move = r.json()
        assert move["side"] == "outgoing" and move["status"] == "proposed"
        assert move["device_ids"] == ["gps-1", "scale-1"] and move["person_id"] == str(resident)
        r = await http.get("/api/v1/moves", headers=B)
        [incoming] = r.json()
        assert incoming["side"] == "incoming" and incoming["person_id"] is None
        assert (await http.get("/api/v1/moves", headers=C)).json() == []
        assert (await http.get(f"/api/v1/moves/{move['id']}", headers=C)).status_code == 404
        r = await http.post(f"/api/v1/persons/{resident}/moves", headers=A,
                            json={"to_tenant": "kommun-c", "effective_at": iso(soon)})  # fmt: skip
        assert r.status_code == 409, "one move under way per resident"

        # --- accepted by kommun-b only -----------------------------------------------------
        r = await http.post(f"/api/v1/moves/{move['id']}/accept", headers=A, json={"ref": "x"})
        assert r.status_code == 403
        r = await http.post(f"/api/v1/moves/{move['id']}/accept", headers=C, json={"ref": "x"})
        assert r.status_code == 404
        r = await http.post(f"/api/v1/moves/{move['id']}/accept", headers=B,
                            json={"ref": "b-inflyttad-1"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        newcomer = r.json()["person_id"]
        assert newcomer and newcomer != str(resident)
        r = await http.post("/api/v1/devices/scale-1/return", headers=A,
                            json={"at": iso(datetime.now(UTC))})  # fmt: skip
        assert r.status_code == 409 and "cancel the move first" in r.text

        # --- before the date: kommun-a's, and a message stamped just before the date -----
        before = datetime.now(UTC)
        assert before < soon
        await publish(mosquitto.url, [
            ("devices/scale-1/telemetry", payload("weight", "w-before", iso(before), kg=70.1)),
            ("devices/gps-1/events", payload("alarm", "btn-before", iso(before), kind="button")),
        ])  # fmt: skip
        await ops_a.wait(lambda m: m["kind"] == "button", "kommun-a's button alarm")

        # --- the date comes: the worker applies the move ---------------------------------
        async def applied() -> bool:
            r = await http.get(f"/api/v1/moves/{move['id']}", headers=A)
            return bool(r.json()["status"] == "applied")

        await wait_for(applied, 30, "the move applied on its date")
        assert datetime.now(UTC) >= soon
        after = datetime.now(UTC)
        late = soon - timedelta(seconds=2)  # stamped before the date, delivered after it
        await publish(mosquitto.url, [
            ("devices/scale-1/telemetry", payload("weight", "w-late", iso(late), kg=70.3)),
            ("devices/scale-1/telemetry", payload("weight", "w-after", iso(after), kg=70.6)),
            ("devices/gps-1/events", payload("alarm", "btn-after", iso(after), kind="button")),
            ("devices/gps-1/events", payload("alarm", "fall-late", iso(late), kind="fall")),
            # redelivered: stored once
            ("devices/scale-1/telemetry", payload("weight", "w-after", iso(after), kg=70.6)),
        ])  # fmt: skip
        await ops_b.wait(lambda m: m["kind"] == "button", "kommun-b's button alarm")
        await ops_a.wait(lambda m: m["kind"] == "fall", "kommun-a's fall alarm (stamped before)")
        await wait_count(database_url, "select count(*) from readings where device_id = 'scale-1'"
                         " and left(msg_id, 2) = 'w-'", 3)  # fmt: skip

        # --- each message in the municipality that held the device at its stamp, once -----
        stored = await rows(database_url, "select msg_id, tenant_id, person_id from readings"
                            " where device_id = 'scale-1' and left(msg_id, 2) = 'w-'"
                            " order by msg_id")  # fmt: skip
        assert stored == [
            ("w-after", "kommun-b", UUID(newcomer)),
            ("w-before", "kommun-a", resident),
            ("w-late", "kommun-a", resident),
        ]
        raised = await rows(database_url, "select kind, tenant_id, person_id from alarms"
                            " where device_id = 'gps-1' order by kind")  # fmt: skip
        assert raised == [("button", "kommun-a", resident), ("button", "kommun-b", UUID(newcomer)),
                          ("fall", "kommun-a", resident)]  # fmt: skip
        assert [m["kind"] for m in ops_b.messages if m["event"] == "raised"] == ["button"]
        assert sorted(m["kind"] for m in ops_a.messages if m["event"] == "raised") == [
            "button", "fall"]  # fmt: skip

        # --- what each municipality's API shows ------------------------------------------
        devices_a = {d["id"] for d in (await http.get("/api/v1/devices", headers=A)).json()}
        assert devices_a == set(), "kommun-a no longer sees the moved devices"
        devices_b = {d["id"]: d for d in (await http.get("/api/v1/devices", headers=B)).json()}
        assert devices_b["scale-1"]["person_id"] == newcomer
        assert devices_b["gps-1"]["person_id"] == newcomer
        weights = "/api/v1/persons/{}/readings?category=weight"
        r = await http.get(weights.format(resident), headers=A)
        assert sorted(x["msg_id"] for x in r.json()["items"]) == ["w-before", "w-late"], r.text
        r = await http.get(weights.format(newcomer), headers=B)
        assert [x["msg_id"] for x in r.json()["items"]] == ["w-after"], r.text
        assert (await http.get(weights.format(resident), headers=B)).status_code == 404
        assert (await http.get(weights.format(newcomer), headers=A)).status_code == 404
        assert (await http.get(weights.format(newcomer), headers=C)).status_code == 404

        # --- earlier data only under a consent: kommun-a records one for kommun-b ---------
        clinician_b = {"Authorization": "Bearer " + mint(
            SECRET, tenant="kommun-b", role=Role.CLINICIAN, subject="ssk.kommun-b",
            org="212000-0002", ttl_s=900)}  # fmt: skip
        r = await http.get(weights.format(resident), headers=clinician_b)
        assert r.status_code in (403, 404), r.text
        r = await http.post("/api/v1/consents", headers=A, json={
            "person_id": str(resident), "recipient_org": "212000-0002",
            "purpose": "uppföljning efter flytt", "categories": ["weight"],
            "legal_basis": "samtycke", "valid_from": "2020-01-01T00:00:00Z"})  # fmt: skip
        assert r.status_code == 201, r.text
        r = await http.get(weights.format(resident), headers=clinician_b)
        assert r.status_code == 200, r.text
        assert sorted(x["msg_id"] for x in r.json()["items"]) == ["w-before", "w-late"]

        # --- access-logged on both sides ---------------------------------------------------
        logged = await rows(database_url, "select owner_tenant, reason from access_log"
                            " where purpose = 'move' order by id")  # fmt: skip
        a_side = [reason for owner, reason in logged if owner == "kommun-a"]
        b_side = [reason for owner, reason in logged if owner == "kommun-b"]
        assert any("proposed" in x for x in a_side) and any("accepted" in x for x in a_side)
        assert any("moved to kommun-b" in x for x in a_side)
        assert any("accepted" in x for x in b_side)
        assert any("moved in from kommun-a" in x for x in b_side)
        assert gw.moves is not None and gw.moves.applied == 1


async def test_an_accepted_move_cancelled_before_its_date_is_undone(
    mosquitto, database_url
) -> None:
    resident = await _world(database_url)
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            moves={"interval_s": 0.2})  # fmt: skip
    async with (
        gateway_with_api(settings) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
    ):
        r = await http.post(f"/api/v1/persons/{resident}/moves", headers=A, json={
            "to_tenant": "kommun-b", "effective_date": (datetime.now(UTC) + timedelta(days=3))
            .date().isoformat(), "device_ids": ["scale-1"]})  # fmt: skip
        assert r.status_code == 201, r.text
        move = r.json()
        assert move["device_ids"] == ["scale-1"]
        r = await http.post(f"/api/v1/moves/{move['id']}/accept", headers=B,
                            json={"ref": "b-kanske"})  # fmt: skip
        assert r.status_code == 200, r.text
        open_now = ("select tenant_id from assignments where device_id = 'scale-1'"
                    " and (valid_to is null or valid_to > now()) and valid_from <= now()")
        assert await scalar(database_url, open_now) == "kommun-a"
        r = await http.post(f"/api/v1/moves/{move['id']}/cancel", headers=B)
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert await rows(database_url, "select tenant_id, valid_to from assignments"
                          " where device_id = 'scale-1'") == [("kommun-a", None)]  # fmt: skip
        r = await http.post(f"/api/v1/moves/{move['id']}/cancel", headers=A)
        assert r.status_code == 409 and "cancelled" in r.text
        # the device is kommun-a's as before: it can be returned
        r = await http.post("/api/v1/devices/scale-1/return", headers=A,
                            json={"at": iso(datetime.now(UTC))})  # fmt: skip
        assert r.status_code in (200, 204), r.text
