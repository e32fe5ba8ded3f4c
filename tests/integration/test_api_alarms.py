"""Alarms over real HTTP: list, acknowledge, resolve, the SSE stream with catch-up, and
the follow-up figures; tenants never see each other's alarms."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from api.auth import Role, mint
from tests.integration.harness import (
    gateway_with_api,
    payload,
    publish,
    seed,
    settings_for,
    wait_for,
)

SECRET = "alarm-test-secret-alarm-test-secret"


@contextlib.asynccontextmanager
async def api_with_gateway(mqtt_url: str, database_url: str) -> AsyncIterator[tuple[str, Any]]:
    settings = settings_for(mqtt_url, database_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, gw):
        yield base, gw


def auth(tenant: str, role: Role = Role.OPERATOR) -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=role, subject=f"{tenant}-op", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


async def read_events(response: httpx.Response, into: list[tuple[int, dict[str, Any]]]) -> None:
    event_id = 0
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: ") and event_id:
            into.append((event_id, orjson.loads(line[6:])))


async def test_alarm_flow_over_http_and_sse(mosquitto, database_url) -> None:
    await seed(database_url)
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    async with api_with_gateway(mosquitto.url, database_url) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:  # fmt: skip
        a, b = auth("kommun-a"), auth("kommun-b")
        seen_a: list[tuple[int, dict[str, Any]]] = []
        seen_b: list[tuple[int, dict[str, Any]]] = []
        async with http.stream("GET", "/api/v1/alarms/stream", headers=a) as ra, \
                http.stream("GET", "/api/v1/alarms/stream", headers=b) as rb:  # fmt: skip
            assert ra.headers["content-type"].startswith("text/event-stream")
            ta = asyncio.create_task(read_events(ra, seen_a))
            tb = asyncio.create_task(read_events(rb, seen_b))
            await publish(
                mosquitto.url, [("devices/gps-1/events", payload("alarm", "x1", kind="button"))]
            )
            await wait_for(_has(seen_a, "raised"), 10, "raised on the stream")
            alarm_id = seen_a[0][1]["alarm_id"]

            r = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=b)
            assert r.status_code == 404  # another municipality: not found
            r = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=a)
            assert r.status_code == 200 and r.json()["acknowledged_by"] == "kommun-a-op"
            r = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=a)
            assert r.status_code == 409
            r = await http.post(f"/api/v1/alarms/{alarm_id}/resolve", headers=a, json={})
            assert r.status_code == 422
            r = await http.post(f"/api/v1/alarms/{alarm_id}/resolve", headers=a,
                                json={"outcome": "Visited; battery changed"})  # fmt: skip
            assert r.status_code == 200 and r.json()["state"] == "resolved"
            await wait_for(_has(seen_a, "resolved"), 10, "resolved on the stream")
            ta.cancel()
            tb.cancel()
        assert seen_b == []  # kommun-b saw nothing of kommun-a
        assert [e["event"] for _, e in seen_a] == ["raised", "acknowledged", "resolved"]

        # reconnect with Last-Event-ID: only what came after, once
        caught: list[tuple[int, dict[str, Any]]] = []
        headers = {**a, "Last-Event-ID": str(seen_a[0][0])}
        async with http.stream("GET", "/api/v1/alarms/stream", headers=headers) as rc:
            tc = asyncio.create_task(read_events(rc, caught))
            await wait_for(_has(caught, "resolved"), 10, "catch-up")
            tc.cancel()
        assert [e["event"] for _, e in caught] == ["acknowledged", "resolved"]

        async def listed() -> bool:
            r = await http.get("/api/v1/alarms", headers=a, params={"state": "resolved"})
            return bool(r.status_code == 200 and len(r.json()) == 1)

        await wait_for(listed, 10, "alarm persisted and listed")
        r = await http.get("/api/v1/alarms", headers=b)
        assert r.json() == []
        r = await http.get("/api/v1/stats", headers=a)
        body = r.json()
        assert r.status_code == 200, body
        assert body["alarms"] == 1 and body["alarms_by_kind"] == {"button": 1}
        assert body["share_acknowledged_within_60s"] == 1.0
        assert body["norm"]["share_acknowledged_within_60s"] == 0.975


def _has(events: list[tuple[int, dict[str, Any]]], kind: str) -> Any:
    async def check() -> bool:
        return any(e["event"] == kind for _, e in events)

    return check


async def test_broker_restart_during_an_escalation_leaves_the_stream_right(
    mosquitto, database_url
) -> None:
    """The outside report: with the broker restarted while an escalation fell due, the
    escalation reached MQTT but not the SSE stream (3 of 5 runs), and the stream said
    nothing. The API's link has a clean session, so what was published while it was away
    never reaches it; once subscribed again it tells every live stream to reload, and the
    board it reloads is right."""
    from gateway.config.settings import AlarmSettings

    await seed(database_url)
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            alarms=AlarmSettings(escalation_s={"critical": [2, 600]},
                                                 tick_ms=50))  # fmt: skip
    async with gateway_with_api(settings) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:  # fmt: skip
        a = auth("kommun-a")
        names: list[str] = []
        seen: list[tuple[int, dict[str, Any]]] = []

        async def read(response: httpx.Response) -> None:
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    names.append(line[7:])
                elif line.startswith("data: {\""):
                    seen.append((0, orjson.loads(line[6:])))

        async with http.stream("GET", "/api/v1/alarms/stream", headers=a) as r:
            reader = asyncio.create_task(read(r))
            await publish(mosquitto.url, [("devices/gps-1/events",
                                           payload("alarm", "x1", kind="fall"))])  # fmt: skip
            await wait_for(_has(seen, "raised"), 10, "raised on the stream")
            await asyncio.to_thread(mosquitto.restart)  # the escalation falls due meanwhile

            async def told() -> bool:
                return "resync" in names or any(e["event"] == "escalated" for _, e in seen)

            await wait_for(told, 20, "the escalation, or a resync, on the stream")
            reader.cancel()
        assert "resync" in names  # the link was away: the stream is told so

        async def board_escalated() -> bool:
            r = await http.get("/api/v1/console/alarms", headers=a)
            rows = r.json()["alarms"] if r.status_code == 200 else []
            return bool(rows) and rows[0]["escalation_level"] >= 1

        await wait_for(board_escalated, 20, "the reloaded board shows the escalation")
