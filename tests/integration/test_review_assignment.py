"""Security review #17, finding 2: a device's own timestamp reached the previous holder.

The attack, end to end (real Mosquitto, real PostgreSQL, the running gateway and its API
over HTTP): resident P returns a scale, it is handed to Q, and the scale publishes a
weight and a ``button`` alarm stamped two days back. The old build stored both on P
(shown to the region under P's consent) and raised an alarm naming P: the night team
would have gone to the wrong home. Now personal data stamped before the current
assignment began is quarantined (``before_current_assignment``) for a tenant admin to
review and release to the earlier holder, access-logged; a scale's button alarm is
refused (``wrong_device_type``) on both paths; an alarm binds to the current holder only,
and one older than ``alarms.max_alarm_age_s`` is stored as history, not dispatched.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx

from api.auth import Role, mint
from gateway.worker.service import GatewayService
from tests.integration.harness import (
    Operator,
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

SECRET = "review-17-2-secret-review-17-2-secret"


#: messages stored or quarantined, whichever
HANDLED = ("select (select count(*) from readings) + (select count(*) from device_alarms)"
           " + (select count(*) from quarantine)")  # fmt: skip


def two_days_ago() -> str:
    """When P still held the device."""
    return (datetime.now(UTC) - timedelta(days=2)).isoformat()


def auth(tenant: str, role: Role = Role.TENANT_ADMIN) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-{role.value}", org=None,
                 ttl_s=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def product(
    mqtt_url: str, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, GatewayService]]:
    settings = settings_for(mqtt_url, database_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http:  # fmt: skip
        yield http, gw


async def reissue(
    http: httpx.AsyncClient, gw: GatewayService, tenant: str, device_id: str,
    at: datetime | None = None,
) -> UUID:  # fmt: skip
    """Through the API, as an installer would: the device is returned by its holder and
    handed to a new person (from ``at``, default now). Returns the new holder once the
    gateway's registry in memory has them."""
    a = auth(tenant)
    body = {"at": at.isoformat()} if at else None
    r = await http.post(f"/api/v1/devices/{device_id}/return", headers=a, json=body)
    assert r.status_code == 204, r.text
    r = await http.post("/api/v1/persons", headers=a, json={"ref": f"next-holder-{device_id}"})
    assert r.status_code == 201, r.text
    q = UUID(r.json()["id"])
    assign: dict[str, Any] = {"person_id": str(q)}
    if at:
        assign["valid_from"] = at.isoformat()
    r = await http.post(f"/api/v1/devices/{device_id}/assign", headers=a, json=assign)
    assert r.status_code == 204, r.text

    async def followed() -> bool:
        record = gw.registry.get(device_id)
        return record is not None and record.current_holder() == q

    await wait_for(followed, 10, "the new holder in the gateway's registry")
    return q


async def a_fresh_press_raised(op: Operator, device_id: str, msg_id: str) -> dict[str, Any]:
    """The engine reads a device's events in order: once this press is raised, every
    event published before it on the same session has been judged."""
    return await op.wait(
        lambda m: m["device_id"] == device_id and m["detail"].get("message_id") == msg_id,
        f"{device_id}'s press {msg_id}",
    )


async def test_a_reissued_scale_replaying_old_data_reaches_no_earlier_holder(
    mosquitto, database_url
) -> None:
    s = await seed(database_url)
    p = s.persons["scale-1"]
    async with product(mosquitto.url, database_url) as (http, gw), \
            operator(mosquitto.url, s.tenant) as op:  # fmt: skip
        q = await reissue(http, gw, s.tenant, "scale-1")
        old = two_days_ago()
        await publish(mosquitto.url, [
            ("devices/scale-1/telemetry", payload("weight", "w-old", old, kg=91.4)),
            ("devices/scale-1/events", payload("alarm", "press-old", old, kind="button")),
            ("devices/scale-1/telemetry", payload("weight", "w-new", kg=63.0)),
            ("devices/gps-1/events", payload("alarm", "fresh", kind="button")),
        ])  # fmt: skip
        await a_fresh_press_raised(op, "gps-1", "fresh")
        await wait_count(database_url, HANDLED, 4)  # each stored or quarantined
        # the alarm engine told no one about the scale's press (it named P before)
        assert [(m["device_id"], m["person_id"]) for m in op.messages] == [
            ("gps-1", str(s.persons["gps-1"]))
        ]
        # and storage kept nothing of it on P
        assert await scalar(database_url, "select count(*) from readings where person_id = %s",
                            (p,)) == 0  # fmt: skip
        assert await scalar(database_url, "select count(*) from device_alarms"
                            " where device_id = 'scale-1'") == 0  # fmt: skip
        assert gw.metrics.quarantined.labels("before_current_assignment")._value.get() == 1
        assert gw.metrics.quarantined.labels("wrong_device_type")._value.get() == 1
    # Q has only what was measured in Q's time
    assert await scalar(database_url, "select person_id from readings where msg_id = 'w-new'") == q
    reasons = await scalar(database_url, "select array_agg(reason order by reason) from quarantine"
                           " where device_id = 'scale-1'")  # fmt: skip
    assert reasons == ["before_current_assignment", "wrong_device_type"]
    detail = await scalar(database_url, "select detail from quarantine"
                          " where reason = 'before_current_assignment'")  # fmt: skip
    assert detail.startswith("weight stamped ") and f"person {p} held the device then" in detail


async def test_an_alarm_binds_to_the_current_holder_and_an_old_one_is_history(
    mosquitto, database_url
) -> None:
    """A GPS alarm handed from P to Q an hour ago replays its buffer: a press from P's
    time reaches no one (quarantined), a press from Q's time older than the bound (10 min)
    is stored on Q as history and not dispatched, a fresh press raises an alarm naming Q."""
    s = await seed(database_url)
    p = s.persons["gps-1"]
    async with product(mosquitto.url, database_url) as (http, gw), \
            operator(mosquitto.url, s.tenant) as op:  # fmt: skip
        q = await reissue(http, gw, s.tenant, "gps-1", datetime.now(UTC) - timedelta(hours=1))
        stale = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
        await publish(mosquitto.url, [
            ("devices/gps-1/events", payload("alarm", "p-time", two_days_ago(), kind="button",
                                             lat=57.70, lon=11.97)),
            ("devices/gps-1/events", payload("alarm", "q-stale", stale, kind="fall")),
            ("devices/gps-1/events", payload("alarm", "q-fresh", kind="button")),
        ])  # fmt: skip
        raised = await a_fresh_press_raised(op, "gps-1", "q-fresh")
        await wait_count(database_url, HANDLED, 3)
        # only the fresh press reached the operators: not P's, not Q's stale fall
        assert [(m["event"], m["kind"], m["person_id"]) for m in op.messages] == [
            ("raised", "button", str(q))
        ]
        assert raised["person_ref"] == "next-holder-gps-1"
        await wait_count(database_url, "select count(*) from quarantine", 1)
        assert gw.alarms.dispatched == 1  # MQTT, streams and webhooks all go from one place
    rows = await scalar(database_url, "select array_agg(msg_id || ':' || person_id::text"
                        " order by msg_id) from device_alarms")  # fmt: skip
    assert rows == [f"q-fresh:{q}", f"q-stale:{q}"]  # the stale one kept as history, on Q
    assert await scalar(database_url, "select count(*) from alarms") == 1
    assert await scalar(database_url, "select count(*) from alarms where person_id = %s",
                        (p,)) == 0  # fmt: skip
    assert await scalar(database_url, "select reason from quarantine") == (
        "before_current_assignment"
    )


async def test_a_tenant_admin_reviews_and_releases_to_the_earlier_holder(
    mosquitto, database_url
) -> None:
    s = await seed(database_url)
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-scale": "t-scale"})
    p = s.persons["scale-1"]
    async with product(mosquitto.url, database_url) as (http, gw):
        q = await reissue(http, gw, s.tenant, "scale-1")
        old = two_days_ago()
        await publish(mosquitto.url, [
            ("devices/scale-1/telemetry", payload("weight", "w-old", old, kg=91.4)),
            ("devices/scale-1/events", payload("alarm", "press-old", old, kind="button")),
        ])  # fmt: skip
        await wait_count(database_url, "select count(*) from quarantine", 2)
        admin = auth(s.tenant)

        # review: the tenant's own refused messages, by reason, without payloads
        r = await http.get("/api/v1/quarantine", headers=admin,
                           params={"reason": "before_current_assignment"})  # fmt: skip
        assert r.status_code == 200, r.text
        [row] = r.json()
        assert row["device_id"] == "scale-1" and row["released_to"] is None
        assert str(p) in row["detail"] and "payload" not in row
        wrong = (await http.get("/api/v1/quarantine", headers=admin,
                                params={"reason": "wrong_device_type"})).json()  # fmt: skip
        assert [w["device_id"] for w in wrong] == ["scale-1"]
        assert (await http.get("/api/v1/quarantine", headers=auth("kommun-b"))).json() == []
        r = await http.get("/api/v1/quarantine", headers=auth(s.tenant, Role.OPERATOR))
        assert r.status_code == 403

        url = f"/api/v1/quarantine/{row['id']}/release"
        body = {"person_id": str(p), "purpose": "P confirmed the weighing on the 3rd"}
        # not an admin of this tenant; another tenant's admin does not see the row at all
        r = await http.post(url, headers=auth(s.tenant, Role.INSTALLER), json=body)
        assert r.status_code == 403
        r = await http.post(url, headers=auth("kommun-b"), json=body)
        assert r.status_code == 404, r.text
        # the admin must name the person who held the device then, not whoever they like
        r = await http.post(url, headers=admin, json={**body, "person_id": str(q)})
        assert r.status_code == 409 and "did not hold" in r.json()["detail"]
        # a message of the wrong device type is never released
        r = await http.post(f"/api/v1/quarantine/{wrong[0]['id']}/release", headers=admin,
                            json=body)  # fmt: skip
        assert r.status_code == 409 and "wrong_device_type" in r.json()["detail"]
        assert await scalar(database_url, "select count(*) from readings") == 0

        r = await http.post(url, headers=admin, json=body)
        assert r.status_code == 200, r.text
        released = r.json()
        assert (released["person_id"], released["category"], released["table"]) == (
            str(p), "weight", "readings")
        assert released["stored"] and not released["already_released"]
        # idempotent: the same answer, stored once
        again = (await http.post(url, headers=admin, json=body)).json()
        assert again["already_released"] and again["released_at"] == released["released_at"]
        listed = (await http.get("/api/v1/quarantine", headers=admin,
                                 params={"released": "true"})).json()  # fmt: skip
        assert [(x["id"], x["released_to"]) for x in listed] == [(row["id"], str(p))]
        assert gw.alarms.dispatched == 0  # a release dispatches nothing
    assert await scalar(database_url, "select count(*) from readings") == 1
    stored = await scalar(database_url, "select array[person_id::text, weight_kg::text,"
                          " (ts < now() - interval '1 day')::text] from readings")  # fmt: skip
    assert stored == [str(p), "91.4", "true"]  # on P, at its own time
    log = await scalar(database_url, """
        select array_agg(concat_ws('|', outcome, coalesce(person_id::text, '-'),
                                   array_to_string(categories, ','), purpose, actor_role)
                         order by id)
        from access_log where request like 'POST /api/v1/quarantine/%%'""")  # fmt: skip
    allowed = f"allowed|{p}|weight|{body['purpose']}|tenant_admin"
    assert log.count(allowed) == 2  # the release and its repetition
    assert sum(e.startswith("denied|") for e in log) == 3  # other tenant, Q, wrong type


async def test_a_returned_device_keeps_its_last_holders_data_for_review(
    mosquitto, database_url
) -> None:
    """Returned and held by no one: a reading from the last holder's time was refused as
    inactive_device (not releasable); now it waits for review like any other."""
    s = await seed(database_url)
    async with product(mosquitto.url, database_url) as (http, gw):
        r = await http.post("/api/v1/devices/scale-1/return", headers=auth(s.tenant))
        assert r.status_code == 204

        async def returned() -> bool:
            record = gw.registry.get("scale-1")
            return record is not None and record.current_holder() is None

        await wait_for(returned, 10, "the return in the gateway's registry")
        await publish(mosquitto.url, [
            ("devices/scale-1/telemetry", payload("weight", "w-1", two_days_ago(), kg=80.2)),
            ("devices/scale-1/heartbeat", payload("heartbeat", "h-1")),
        ])  # fmt: skip
        await wait_count(database_url, "select count(*) from quarantine", 2)
    reasons = await scalar(database_url, "select array_agg(reason order by reason)"
                           " from quarantine")  # fmt: skip
    assert reasons == ["before_current_assignment", "inactive_device"]
    assert await scalar(database_url, "select count(*) from readings") == 0
