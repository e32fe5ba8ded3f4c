"""Quarantine review (issue #19.7): the list of refused messages filtered by reason, device
and received time, paged by id; the per-device and per-model summary the console's fleet
view shows; who may read them; and that a flooding device's evidence is its tenant's.

Real Mosquitto, PostgreSQL, the running gateway and its API over HTTP. The messages are
refused by the gateway itself (a vendor's watch firmware sending a field the contract does
not have, a weight from a GPS alarm, a payload that is not JSON, a flood); only their
received times are moved afterwards, so that the time filters have a past to filter.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg

from api.auth import Role, mint
from gateway.adapters.postgres import registry_repo as repo
from tests.integration.harness import (
    gateway_with_api,
    payload,
    publish,
    seed,
    settings_for,
    wait_count,
)

SECRET = "quarantine-review-secret-quarantine-19-7"
A_DEVICES = {"watch-1": "t-watch", "watch-2": "t-watch", "watch-3": "t-watch",
             "gps-1": "t-gps", "scale-1": "t-scale"}  # fmt: skip
FLOOD = 30  # heartbeats from scale-1, over its burst of 5


def auth(tenant: str, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role.value}", org=None,
                 ttl_s=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


def bad_position(msg_id: str) -> bytes:
    """The watch firmware's bug: a field the contract does not have (schema_violation)."""
    return payload("position", msg_id, lat=59.61, lon=16.55, accuracy_m=5, speed_kmh=3.5)


@contextlib.asynccontextmanager
async def refusing_fleet(
    mqtt_url: str, url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """Kommun A's fleet with refused messages, kommun B's with one; yields the API client
    and the times the rows were moved to."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await repo.ensure_device_model(
            conn, repo.DeviceModel("t-watch", "Acme", "Watch", "gps_alarm", 60)
        )
        await conn.commit()
    await seed(url, "kommun-a", "212000-0001", A_DEVICES)
    await seed(url, "kommun-b", "212000-0002", {"b-watch": "t-watch"})
    settings = settings_for(mqtt_url, url, jwt_secret=SECRET,
                            limits={"device_msgs_per_s": 1, "device_burst": 5})  # fmt: skip
    async with gateway_with_api(settings) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http:  # fmt: skip
        await publish(mqtt_url, [
            ("devices/watch-1/telemetry", bad_position("w1-a")),
            ("devices/watch-1/telemetry", bad_position("w1-b")),
            ("devices/watch-2/telemetry", bad_position("w2-a")),
            ("devices/watch-3/telemetry", bad_position("w3-a")),
            ("devices/watch-3/telemetry", payload("weight", "w3-kg", kg=70.0)),
            ("devices/gps-1/telemetry", b"{not json"),
            ("devices/b-watch/telemetry", bad_position("bw-a")),
            *[("devices/scale-1/heartbeat", payload("heartbeat", f"hb-{i}"))
              for i in range(FLOOD)],
        ])  # fmt: skip
        await wait_count(url, "select count(*) from quarantine", 8)
        now = datetime.now(UTC)
        times = {"now": now, "watch-1 first": now - timedelta(days=3),
                 "gps-1": now - timedelta(days=10)}  # fmt: skip
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute(
                "update quarantine set received_at = %s where id = (select min(id) from"
                " quarantine where device_id = 'watch-1')", (times["watch-1 first"],),
            )  # fmt: skip
            await conn.execute("update quarantine set received_at = %s where device_id = 'gps-1'",
                               (times["gps-1"],))  # fmt: skip
            await conn.commit()
        yield http, times


def iso(t: datetime) -> str:
    return t.isoformat()


async def listed(http: httpx.AsyncClient, role: Role = Role.TENANT_ADMIN,
                 **params: Any) -> list[dict[str, Any]]:  # fmt: skip
    r = await http.get("/api/v1/quarantine", headers=auth("kommun-a", role), params=params)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids, reverse=True)  # newest first
    return rows


async def test_the_list_filters_by_reason_device_and_time_and_pages(
    mosquitto, database_url
) -> None:
    async with refusing_fleet(mosquitto.url, database_url) as (http, times):
        every = await listed(http)
        assert sorted(r["device_id"] for r in every) == [
            "gps-1", "scale-1", "watch-1", "watch-1", "watch-2", "watch-3", "watch-3"]
        by_reason = {r["device_id"]: r["reason"] for r in every if r["device_id"] != "watch-3"}
        assert by_reason == {"gps-1": "invalid_json", "scale-1": "rate_limited",
                             "watch-1": "schema_violation", "watch-2": "schema_violation"}
        assert {r["reason"] for r in every if r["device_id"] == "watch-3"} == {
            "schema_violation", "wrong_device_type"}
        assert all("payload" not in r for r in every)

        schema = await listed(http, reason="schema_violation")
        assert sorted(r["device_id"] for r in schema) == ["watch-1", "watch-1", "watch-2",
                                                          "watch-3"]  # fmt: skip
        narrowed = await listed(http, device_id="watch-3", reason="wrong_device_type")
        assert [(r["device_id"], r["reason"]) for r in narrowed] == [
            ("watch-3", "wrong_device_type")]
        assert len(await listed(http, device_id="watch-3")) == 2

        day_ago, five_days_ago = times["now"] - timedelta(days=1), times["now"] - timedelta(days=5)
        recent = await listed(http, since=iso(day_ago))
        assert sorted(r["device_id"] for r in recent) == [
            "scale-1", "watch-1", "watch-2", "watch-3", "watch-3"]
        older = await listed(http, until=iso(day_ago))
        assert sorted(r["device_id"] for r in older) == ["gps-1", "watch-1"]
        [between] = await listed(http, since=iso(five_days_ago), until=iso(day_ago))
        assert between["device_id"] == "watch-1"
        assert datetime.fromisoformat(between["received_at"]) == times["watch-1 first"]
        # the bounds: since inclusive, until exclusive; a time in another offset is that time
        exact = times["gps-1"].astimezone(timezone(timedelta(hours=1)))
        bounded = await listed(http, since=iso(exact), until=iso(day_ago))
        assert sorted(r["device_id"] for r in bounded) == ["gps-1", "watch-1"]
        assert [r["device_id"] for r in await listed(http, until=iso(times["gps-1"]))] == []

        # pages of 2 with the same filter: each id once, in order, until an empty page
        pages: list[list[int]] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"since": iso(day_ago), "limit": 2}
            if before is not None:
                params["before"] = before
            page = [r["id"] for r in await listed(http, **params)]
            if not page:
                break
            pages.append(page)
            before = page[-1]
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [i for p in pages for i in p] == [r["id"] for r in recent]

        # released: none yet
        assert await listed(http, released="true") == []
        assert len(await listed(http, released="false")) == 7


BAD_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    ("/api/v1/quarantine", {"since": "2025-01-14T00:00:00"}, "timezone"),
    ("/api/v1/quarantine", {"until": "yesterday"}, "datetime"),
    ("/api/v1/quarantine", {"since": "2025-01-14T00:00:00Z", "until": "2025-01-14T00:00:00Z"},
     "since must be before until"),
    ("/api/v1/quarantine", {"since": "2025-01-15T00:00:00+01:00",
                            "until": "2025-01-14T00:00:00Z"}, "since must be before until"),
    ("/api/v1/quarantine", {"limit": 0}, "greater than or equal to 1"),
    ("/api/v1/quarantine", {"before": 0}, "greater than or equal to 1"),
    ("/api/v1/quarantine", {"reason": "Not A Reason"}, "pattern"),
    ("/api/v1/quarantine", {"device_id": "no/such/device"}, "pattern"),
    ("/api/v1/quarantine/devices", {"since": "2025-01-15T00:00:00Z",
                                    "until": "2025-01-14T00:00:00Z"},
     "since must be before until"),
    ("/api/v1/quarantine/devices", {"since": "14/1/2025"}, "datetime"),
    ("/api/v1/quarantine/devices", {"limit": 5001}, "less than or equal to 5000"),
]  # fmt: skip


async def test_a_bad_filter_is_a_422_that_says_why(database_url, mosquitto) -> None:
    await seed(database_url, "kommun-a", "212000-0001", {"gps-1": "t-gps"})
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http:  # fmt: skip
        for path, params, message in BAD_FILTERS:
            r = await http.get(path, headers=auth("kommun-a"), params=params)
            where = f"{path} {params}"
            assert r.status_code == 422, f"{where}: {r.status_code} {r.text}"
            assert r.headers["content-type"].startswith("application/problem+json"), where
            body = r.json()
            said = " ".join([body["detail"], *(e["message"] for e in body.get("errors", []))])
            assert message in said, f"{where}: {body}"
        # far ends of the calendar are times like any other, not a server error
        r = await http.get("/api/v1/quarantine", headers=auth("kommun-a"), params={
            "since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59-14:00"})
        assert r.status_code == 200, r.text


async def test_the_summary_shows_a_model_whose_devices_are_refused_for_one_reason(
    mosquitto, database_url
) -> None:
    async with refusing_fleet(mosquitto.url, database_url) as (http, times):
        r = await http.get("/api/v1/quarantine/devices", headers=auth("kommun-a"))
        assert r.status_code == 200, r.text
        week = r.json()  # the default period: the last 7 days (gps-1's refusal is older)
        since = datetime.fromisoformat(week["since"])
        assert abs(since - (datetime.now(UTC) - timedelta(days=7))) < timedelta(minutes=1)
        assert week["until"] is None
        assert week["devices_total"] == 4
        watch, scale = week["models"]
        assert watch == {
            "model_id": "t-watch", "vendor": "Acme", "model": "Watch", "device_type": "gps_alarm",
            "devices": 3, "refused": 5, "reasons": [
                {"reason": "schema_violation", "devices": 3, "refused": 4},
                {"reason": "wrong_device_type", "devices": 1, "refused": 1}],
        }  # fmt: skip
        # the flood's evidence is kommun A's: its fleet view shows it (issue #19.7)
        assert (scale["model_id"], scale["devices"], scale["reasons"]) == (
            "t-scale", 1, [{"reason": "rate_limited", "devices": 1, "refused": 1}])
        devices = {d["device_id"]: d for d in week["devices"]}
        assert [d["device_id"] for d in week["devices"]] == [
            "watch-1", "watch-3", "scale-1", "watch-2"]  # most refused first, then by id
        assert devices["watch-3"]["reasons"] == {"schema_violation": 1, "wrong_device_type": 1}
        w1 = devices["watch-1"]
        assert (w1["refused"], w1["reasons"], w1["status"], w1["vendor"]) == (
            2, {"schema_violation": 2}, "active", "Acme")
        assert datetime.fromisoformat(w1["first_at"]) == times["watch-1 first"]
        assert datetime.fromisoformat(w1["last_at"]) > times["now"] - timedelta(minutes=5)

        month = (await http.get("/api/v1/quarantine/devices", headers=auth("kommun-a"), params={
            "since": iso(times["now"] - timedelta(days=30)), "limit": 2})).json()  # fmt: skip
        assert month["devices_total"] == 5 and len(month["devices"]) == 2
        assert [m["model_id"] for m in month["models"]] == ["t-watch", "t-gps", "t-scale"]
        gps = month["models"][1]
        assert gps["reasons"] == [{"reason": "invalid_json", "devices": 1, "refused": 1}]

        old = (await http.get("/api/v1/quarantine/devices", headers=auth("kommun-a"), params={
            "since": iso(times["now"] - timedelta(days=30)),
            "until": iso(times["now"] - timedelta(days=1))})).json()  # fmt: skip
        assert {d["device_id"]: d["refused"] for d in old["devices"]} == {"gps-1": 1, "watch-1": 1}

        # each municipality sees its own devices only
        b = (await http.get("/api/v1/quarantine/devices", headers=auth("kommun-b"))).json()
        assert [d["device_id"] for d in b["devices"]] == ["b-watch"]
        assert "b-watch" not in r.text
        assert [x["device_id"] for x in (await http.get(
            "/api/v1/quarantine", headers=auth("kommun-b"))).json()] == ["b-watch"]  # fmt: skip


async def test_tenant_admins_and_technicians_review_and_no_one_else(
    mosquitto, database_url
) -> None:
    """The role matrix of the review: tenant_admin and installer (the municipality's
    technician) read the list and the summary; operator, clinician, auditor and a
    platform admin acting in the tenant do not; releasing stays the tenant admin's."""
    async with refusing_fleet(mosquitto.url, database_url) as (http, _times):
        readers = {Role.TENANT_ADMIN, Role.INSTALLER}
        for role in Role:
            for path in ("/api/v1/quarantine", "/api/v1/quarantine/devices"):
                r = await http.get(path, headers=auth("kommun-a", role))
                expected = 200 if role in readers else 403
                assert r.status_code == expected, f"{role.value} {path}: {r.status_code} {r.text}"
                if expected == 403:
                    assert r.json()["detail"] == f"role {role.value} may not do this"
            me = (await http.get("/api/v1/console/me", headers=auth("kommun-a", role))).json()
            assert me["may_review_quarantine"] is (role in readers), role
        some = (await listed(http))[0]["id"]
        r = await http.post(f"/api/v1/quarantine/{some}/release",
                            headers=auth("kommun-a", Role.INSTALLER),
                            json={"person_id": "00000000-0000-0000-0000-000000000001",
                                  "purpose": "x"})  # fmt: skip
        assert r.status_code == 403
        r = await http.get("/api/v1/quarantine")
        assert r.status_code == 401
