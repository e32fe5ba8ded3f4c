"""Every alarm message the gateway publishes validates against its JSON Schema
(firmware_contracts.alarm_message, docs/contract.md#alarm-messages), on MQTT and on the
API's Server-Sent Events: real Mosquitto, real PostgreSQL, the real gateway and API on a
real HTTP server, an operator's MQTT client on ``tenants/{tenant}/alarms`` and a browser's
stream on ``/api/v1/alarms/stream``."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import orjson
import psycopg
from psycopg.types.json import Jsonb

from api.auth import Role, mint
from firmware_contracts.alarm_message import SSE_EVENT, alarm_message_schema
from gateway.config.settings import AlarmSettings, WebhookSetting
from tests.integration.harness import (
    gateway_with_api,
    now_iso,
    operator,
    payload,
    publish,
    seed,
    settings_for,
    wait_for,
)
from tests.services import free_port

SECRET = "alarm-schema-secret-alarm-schema-secret"
VALIDATOR = jsonschema.Draft202012Validator(
    alarm_message_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def errors(message: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(message)]


def auth(tenant: str) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=Role.OPERATOR, subject=f"{tenant}-op", org=None,
                 ttl_s=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def read_sse(response: httpx.Response, into: list[tuple[str, str, bytes]]) -> None:
    """Collect every event of the stream as (id, event name, data)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                into.append((fields.get("id", ""), fields.get("event", "message"),
                             fields["data"].encode()))  # fmt: skip
            fields = {}
        elif not line.startswith(":") and ":" in line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value


def _async(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn()

    return check


async def test_every_published_alarm_message_validates_on_mqtt_and_sse(
    mosquitto, database_url
) -> None:
    s = await seed(database_url)
    gps_person = s.persons["gps-1"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "insert into safe_zones (tenant_id, person_id, name, shape) values (%s, %s, %s, %s)",
            (s.tenant, gps_person, "home",
             Jsonb({"type": "circle", "lat": 59.8586, "lon": 17.6389, "radius_m": 200})),
        )  # fmt: skip
        await conn.commit()
    # a receiving centre nobody answers at: receiver_unreachable for the technicians
    dead = f"http://127.0.0.1:{free_port()}/hook"
    alarms = AlarmSettings(
        door_unlocked_after_s=0.5, escalation_s={"critical": [1, 1]}, tick_ms=50,
        webhooks=[WebhookSetting(group=g, url=f"{dead}/{g}", secret="s" * 32)
                  for g in ("night_team", "home_care")],
        webhook_unreachable_after_s=1.0,
    )  # fmt: skip
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET, alarms=alarms)
    old = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    sse: list[tuple[str, str, bytes]] = []
    headers = auth(s.tenant)
    async with gateway_with_api(settings) as (base, gw), \
            operator(mosquitto.url, s.tenant) as op, \
            httpx.AsyncClient(base_url=base, timeout=15) as http, \
            http.stream("GET", "/api/v1/alarms/stream", headers=headers) as stream:  # fmt: skip
        assert stream.status_code == 200
        reader = asyncio.create_task(read_sse(stream, sse))

        def seen(kind: str, event: str) -> Callable[[dict[str, Any]], bool]:
            return lambda m: m["kind"] == kind and m["event"] == event

        async def wait(kind: str, event: str, timeout: float = 15) -> dict[str, Any]:
            return await op.wait(seen(kind, event), f"{kind} {event}", timeout)

        zones = gw.alarms.persons
        await wait_for(_async(lambda: bool((p := zones.get(gps_person)) and p.zones)), 10,
                       "safe zone loaded")  # fmt: skip
        await publish(mosquitto.url, [
            ("devices/gps-1/events", payload("alarm", "b1", kind="button", lat=59.86,
                                             lon=17.64, accuracy_m=9)),
            ("devices/gps-1/events", payload("alarm", "f1", kind="fall")),
            ("devices/lock-1/events", payload("alarm", "t1", kind="tamper")),
            ("devices/gps-1/telemetry", payload("position", "in", now_iso(-60), lat=59.8586,
                                                lon=17.6389, accuracy_m=10)),
            ("devices/gps-1/telemetry", payload("position", "out", lat=59.8686, lon=17.6389,
                                                accuracy_m=10)),
            ("devices/scale-1/telemetry", payload("weight", "w-old", old, kg=80.0)),
            ("devices/scale-1/telemetry", payload("weight", "w-new", kg=82.6)),
            ("devices/bp-1/telemetry", payload("blood_pressure", "bp1", systolic_mmhg=195,
                                               diastolic_mmhg=100)),
            ("devices/gps-1/heartbeat", payload("heartbeat", "hb1", battery_percent=12)),
            # an app key nobody registered: unauthorised, and a door left unlocked
            ("devices/lock-1/events", payload("lock", "u1", action="unlocked", method="app",
                                              key_id="key-unknown")),
        ])  # fmt: skip
        button = await wait("button", "raised")
        await publish(mosquitto.url, [("devices/gps-1/events",
                                       payload("alarm", "b2", kind="button"))])  # fmt: skip
        await wait("button", "occurred")
        for kind in ("fall", "tamper", "geofence_exit", "weight_gain", "blood_pressure",
                     "battery_low", "unauthorised_unlock", "door_unlocked"):  # fmt: skip
            await wait(kind, "raised")
        await wait("fall", "escalated")
        await wait("receiver_unreachable", "raised", 30)

        # people: over the real API, as the console does
        r = await http.post(f"/api/v1/alarms/{button['alarm_id']}/acknowledge", headers=headers)
        assert r.status_code == 200, r.text
        await wait("button", "acknowledged")
        r = await http.post(f"/api/v1/alarms/{button['alarm_id']}/resolve", headers=headers,
                            json={"outcome": "Visited; all well"})  # fmt: skip
        assert r.status_code == 200, r.text
        tamper = op.of("tamper")[0]
        r = await http.post(f"/api/v1/alarms/{tamper['alarm_id']}/resolve", headers=headers,
                            json={"outcome": "Lock checked"})  # fmt: skip
        assert r.status_code == 200, r.text  # unacknowledged: acknowledged, then resolved
        await wait("button", "resolved")
        await wait("tamper", "resolved")

        # conditions clear; a last will, and the device back
        await publish(mosquitto.url, [
            ("devices/gps-1/telemetry", payload("position", "back", lat=59.8586, lon=17.6389,
                                                accuracy_m=10)),
            ("devices/lock-1/events", payload("lock", "l1", action="locked", method="manual")),
            ("devices/bp-1/telemetry", payload("blood_pressure", "bp2", systolic_mmhg=120,
                                               diastolic_mmhg=80)),
            ("devices/gps-1/heartbeat", payload("heartbeat", "hb2", battery_percent=90)),
            ("devices/scale-1/status", b'{"v":1,"type":"status","state":"offline"}'),
        ])  # fmt: skip
        for kind in ("geofence_exit", "door_unlocked", "blood_pressure", "battery_low"):
            await wait(kind, "cleared")
        await wait("device_silent", "raised")
        await publish(mosquitto.url, [("devices/scale-1/heartbeat",
                                       payload("heartbeat", "hb3"))])  # fmt: skip
        await wait("device_silent", "cleared")

        async def streamed() -> bool:  # the stream has had everything MQTT had
            ids = {orjson.loads(d)["event_id"] for _, name, d in sse if name == SSE_EVENT}
            return ids >= {m["event_id"] for m in op.messages}

        await wait_for(streamed, 15, "every alarm message on the SSE stream too")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader

    # MQTT: every message validates (the harness's operator checked each, too)
    assert op.messages and not op.invalid
    for message in op.messages:
        assert errors(message) == [], message
    pairs = {(m["kind"], m["event"]) for m in op.messages}
    expected = {
        *((k, "raised") for k in ("button", "fall", "tamper", "geofence_exit", "weight_gain",
                                  "blood_pressure", "battery_low", "unauthorised_unlock",
                                  "door_unlocked", "device_silent", "receiver_unreachable")),
        ("button", "occurred"), ("button", "acknowledged"), ("button", "resolved"),
        ("tamper", "acknowledged"), ("tamper", "resolved"), ("fall", "escalated"),
        *((k, "cleared") for k in ("geofence_exit", "door_unlocked", "blood_pressure",
                                   "battery_low", "device_silent")),
    }  # fmt: skip
    assert expected <= pairs, expected - pairs

    # seq: per alarm 1, 2, 3, ... in the order received (one engine, one connection)
    seqs: dict[str, list[int]] = defaultdict(list)
    for message in op.messages:
        seqs[message["alarm_id"]].append(message["seq"])
        assert message["seq"] == message["version"]
    for alarm_id, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), (alarm_id, numbers)

    # SSE: each "alarm" event's data is the MQTT message, and validates; ids increase
    by_id = {m["event_id"]: m for m in op.messages}
    alarm_events = [(i, d) for i, name, d in sse if name == SSE_EVENT]
    assert {orjson.loads(d)["event"] for _, d in alarm_events} >= {
        "raised", "acknowledged", "resolved", "occurred", "cleared", "escalated"}  # fmt: skip
    for _, data in alarm_events:
        message = orjson.loads(data)
        assert errors(message) == [], message
        assert message == by_id[message["event_id"]]
    ids = [int(i) for i, _ in alarm_events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {name for _, name, _ in sse} <= {SSE_EVENT, "resync"}
