"""Housing and payer (issue #19.1), end to end with real Mosquitto, PostgreSQL and HTTP.

A move into residential care recorded for tomorrow is upcoming in the report; one dated
in the past (recorded late) is emitted at once, once, on the broker and to the aids
centre's signed webhook, and not again after a restart; a region's rule table overrides
the default. The aids centre is a local HTTP server in the test (a stand-in for a system
outside the product); nothing of the product is mocked. Waits are on conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import orjson
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Role, mint
from gateway.config.settings import AlarmSettings, WebhookSetting
from gateway.domain.payer import local_date
from gateway.worker.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    running_gateway,
    scalar,
    seed,
    settings_for,
    wait_for,
)
from tests.services import free_port

SECRET = "payer-test-secret-payer-test-secret"
HOOK_SECRET = "shared-with-the-aids-centre"
REGION = "region-test"


def auth(tenant: str, role: Role, sub: str = "karin.berg") -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub, org=None, ttl_s=900
        )
    )


ADMIN = auth("kommun-a", Role.TENANT_ADMIN)
PLATFORM = auth("platform", Role.PLATFORM_ADMIN, "plattform.admin")
REGION_ADMIN = auth(REGION, Role.TENANT_ADMIN, "region.admin")


class AidsCentre:
    """The region's aids centre's webhook receiver (outside the product)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], bytes, str, str]] = []

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((orjson.loads(body), body, request.headers[SIGNATURE_HEADER],
                              request.headers[EVENT_ID_HEADER]))  # fmt: skip
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def aids_centre(port: int) -> AsyncIterator[AidsCentre]:
    centre = AidsCentre()
    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route("/payer", centre.hook, methods=["POST"])]),
        host="127.0.0.1", port=port, log_config=None,
    ))  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        yield centre
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def subscriber(mqtt_url: str, tenant: str) -> AsyncIterator[list[dict[str, Any]]]:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    got: list[dict[str, Any]] = []
    async with aiomqtt.Client(host, int(port), identifier=f"aids-{tenant}") as client:
        await client.subscribe(f"tenants/{tenant}/payer-changes", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append(orjson.loads(message.payload))

        task = asyncio.create_task(collect())
        try:
            yield got
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _region(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/v1/tenants", headers=PLATFORM, json={
        "id": REGION, "name": "Region Test", "kind": "region", "org_number": "232100-0098"})
    assert r.status_code == 201, r.text
    r = await http.put("/api/v1/tenants/kommun-a/region", headers=PLATFORM,
                       json={"region_id": REGION})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"id": "kommun-a", "region_id": REGION}, r.text


async def test_upcoming_in_the_report_late_emitted_once_and_not_after_a_restart(
    mosquitto, database_url
) -> None:
    s = await seed(database_url, devices={"scale-1": "t-scale", "bp-1": "t-bp"})
    mover, late_mover = str(s.persons["scale-1"]), str(s.persons["bp-1"])
    port = free_port()
    settings = settings_for(
        mosquitto.url, database_url, jwt_secret=SECRET,
        alarms=AlarmSettings(webhooks=[WebhookSetting(
            group="hjalpmedel", url=f"http://127.0.0.1:{port}/payer", secret=HOOK_SECRET)]),
        payer={"webhook_group": "hjalpmedel", "interval_s": 0.1},
    )  # fmt: skip
    today = local_date(datetime.now(UTC))
    tomorrow, backdated = today + timedelta(days=1), today - timedelta(days=2)
    async with aids_centre(port) as centre, subscriber(mosquitto.url, "kommun-a") as events:
        async with gateway_with_api(settings) as (base, gw), httpx.AsyncClient(
            base_url=base, timeout=20
        ) as http:
            await _region(http)
            r = await http.post(f"/api/v1/persons/{mover}/housing", headers=ADMIN,
                                json={"form": "residential_care",
                                      "valid_from": tomorrow.isoformat()})  # fmt: skip
            assert r.status_code == 201, r.text
            assert r.json()["payer"] == "municipality" and r.json()["late"] is False
            r = await http.get("/api/v1/payer-changes", headers=ADMIN)
            (upcoming,) = r.json()["changes"]
            assert upcoming["device_id"] == "scale-1" and upcoming["status"] == "upcoming"
            assert (upcoming["effective_date"], upcoming["from_payer"], upcoming["to_payer"]) == (
                tomorrow.isoformat(), "region", "municipality")  # fmt: skip
            assert upcoming["late"] is False and upcoming["emitted_at"] is None

            # the late notice: a move two days ago, recorded now
            r = await http.post(f"/api/v1/persons/{late_mover}/housing", headers=ADMIN,
                                json={"form": "residential_care",
                                      "valid_from": backdated.isoformat()})  # fmt: skip
            assert r.status_code == 201 and r.json()["late"] is True, r.text

            async def emitted() -> bool:
                return bool(events) and bool(centre.received)

            await wait_for(emitted, 20, "the change on the broker and at the aids centre")
            event = events[0]
            assert (event["device_id"], event["person_id"], event["effective_date"]) == (
                "bp-1", late_mover, backdated.isoformat())  # fmt: skip
            assert (event["from_payer"], event["to_payer"], event["late"]) == (
                "region", "municipality", True)  # fmt: skip
            assert event["tenant_id"] == "kommun-a" and event["region_id"] == REGION
            body, signature, event_id = centre.received[0][1:]
            assert orjson.loads(body) == event and event_id == event["event_id"]
            assert verify(HOOK_SECRET.encode(), signature, body, now=int(time.time()))

            r = await http.get("/api/v1/payer-changes", headers=ADMIN, params={
                "from": backdated.isoformat(), "to": tomorrow.isoformat()})
            by_device = {c["device_id"]: c for c in r.json()["changes"]}
            assert by_device["bp-1"]["status"] == "emitted" and by_device["bp-1"]["late"]
            assert by_device["scale-1"]["status"] == "upcoming"
            # the region reads what was emitted for devices it paid for
            r = await http.get("/api/v1/payer-changes", headers=REGION_ADMIN, params={
                "from": backdated.isoformat(), "to": tomorrow.isoformat()})
            assert [c["device_id"] for c in r.json()["changes"]] == ["bp-1"], r.text
            # history: the current form and payer
            r = await http.get(f"/api/v1/persons/{late_mover}/housing", headers=ADMIN)
            assert r.json()["current"] == {"form": "residential_care", "payer": "municipality"}

            runs = gw.payer.runs

            async def more_runs() -> bool:
                return gw.payer.runs >= runs + 3

            await wait_for(more_runs, 20, "three more emission runs")
        # restarted: the same data directory, the same database
        async with gateway_with_api(settings) as (base, gw):
            async def ran() -> bool:
                return gw.payer.runs >= 3

            await wait_for(ran, 20, "three emission runs after the restart")
            assert gw.payer.emitted == 0
        # a last round trip on the broker, so a duplicate in flight would have arrived
        async with aiomqtt.Client("127.0.0.1", int(mosquitto.url.rsplit(":", 1)[1]),
                                  identifier="probe") as probe:  # fmt: skip
            await probe.publish("tenants/kommun-a/payer-changes", b'{"probe": true}', qos=1)

        async def probed() -> bool:
            return any(e.get("probe") for e in events)

        await wait_for(probed, 10, "the probe")
    assert [e["event_id"] for e in events if not e.get("probe")] == [event["event_id"]]
    assert len(centre.received) == 1
    assert await scalar(database_url, "select count(*) from payer_changes") == 1


async def test_the_region_rule_table_overrides_the_default(mosquitto, database_url) -> None:
    s = await seed(database_url, devices={"scale-1": "t-scale", "bp-1": "t-bp"})
    short, care = str(s.persons["scale-1"]), str(s.persons["bp-1"])
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET,
                            payer={"interval_s": 0.1})  # fmt: skip
    today = local_date(datetime.now(UTC))
    async with subscriber(mosquitto.url, "kommun-a") as events, gateway_with_api(settings) as (
        base, gw
    ), httpx.AsyncClient(base_url=base, timeout=20) as http:
        await _region(http)
        # a municipality's admin may not set the region's rules
        r = await http.put("/api/v1/payer-rules", headers=ADMIN, json={"own_home": "region"})
        assert r.status_code == 403
        r = await http.put("/api/v1/payer-rules", headers=REGION_ADMIN,
                           json={"short_term_stay": "region"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["rules"] == {"own_home": "region", "residential_care": "municipality",
                                     "short_term_stay": "region"}  # fmt: skip
        for person, form in ((short, "short_term_stay"), (care, "residential_care")):
            r = await http.post(f"/api/v1/persons/{person}/housing", headers=ADMIN,
                                json={"form": form, "valid_from": today.isoformat()})  # fmt: skip
            assert r.status_code == 201, r.text
        r = await http.get(f"/api/v1/persons/{short}/housing", headers=ADMIN)
        assert r.json()["current"] == {"form": "short_term_stay", "payer": "region"}

        async def emitted() -> bool:
            return bool(events)

        await wait_for(emitted, 20, "the residential-care move's change")
        runs = gw.payer.runs

        async def more_runs() -> bool:
            return gw.payer.runs >= runs + 2

        await wait_for(more_runs, 20, "two more emission runs")
        r = await http.get("/api/v1/payer-changes", headers=ADMIN)
        assert [(c["device_id"], c["status"]) for c in r.json()["changes"]] == [
            ("bp-1", "emitted")]  # fmt: skip
        # validation: a form we do not know, a date too far back, the same date twice
        for body, status in (({"form": "hotel", "valid_from": today.isoformat()}, 422),
                             ({"form": "own_home", "valid_from": "2001-01-01"}, 422),
                             ({"form": "own_home", "valid_from": today.isoformat()}, 409)):
            r = await http.post(f"/api/v1/persons/{care}/housing", headers=ADMIN, json=body)
            assert r.status_code == status, (body, r.text)
        r = await http.get("/api/v1/payer-changes", headers=ADMIN,
                           params={"from": "2026-05-01", "to": "2026-04-01"})  # fmt: skip
        assert r.status_code == 422
    assert [e["device_id"] for e in events] == ["bp-1"]


async def test_two_workers_emit_a_change_once(mosquitto, database_url) -> None:
    """Two workers look for the same due change at the same moment: the row in
    payer_changes (inserted in the transaction that publishes) lets only one publish."""
    s = await seed(database_url, devices={"scale-1": "t-scale"})
    today = local_date(datetime.now(UTC))
    async with subscriber(mosquitto.url, "kommun-a") as events, contextlib.AsyncExitStack() as st:
        workers = []
        for i in (1, 2):
            settings = settings_for(mosquitto.url, database_url, mqtt_client_id=f"wg-payer-{i}",
                                    payer={"interval_s": 3600})  # fmt: skip
            workers.append(await st.enter_async_context(running_gateway(settings)))

        async def first_runs() -> bool:
            return all(w.payer.runs >= 1 for w in workers)

        await wait_for(first_runs, 20, "each worker's first run")
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await conn.execute(
                "insert into housing_periods (tenant_id, person_id, form, valid_from,"
                " recorded_by) values ('kommun-a', %s, 'residential_care', %s, 'test')",
                (s.persons["scale-1"], today))  # fmt: skip
            await conn.commit()
        counts = await asyncio.gather(*(w.payer.emit_due() for w in workers))
        assert sorted(counts) == [0, 1]

        async def published() -> bool:
            return bool(events)

        await wait_for(published, 10, "the change on the broker")
        assert sum(await asyncio.gather(*(w.payer.emit_due() for w in workers))) == 0
    assert [e["device_id"] for e in events] == ["scale-1"]
    assert await scalar(database_url, "select count(*) from payer_changes") == 1
