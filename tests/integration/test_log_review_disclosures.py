"""Disclosures that were not access-logged (issue #21.3, a finding): the guest's copy of an
alarm sent to the host municipality during a stay, and a payer change (the resident's
housing form) sent to the region's aids centre. End to end with real Mosquitto,
PostgreSQL and HTTP; each is a row of the home's access log and a sentence of the
resident's log extract. The receivers' web servers are local HTTP servers in the test
(stand-ins for systems outside the product). Waits are on conditions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Role, mint
from gateway.config.settings import AlarmSettings, RouteSetting, WebhookSetting
from gateway.domain.payer import local_date
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    operator,
    payload,
    publish,
    scalar,
    seed,
    settings_for,
    wait_for,
)
from tests.services import free_port

SECRET = "disclosures-secret-disclosures-secret"


def auth(tenant: str, role: Role, sub: str) -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub, org=None, ttl_s=900
        )
    )


A_ADMIN = auth("kommun-a", Role.TENANT_ADMIN, "karin")
A_AUDITOR = auth("kommun-a", Role.AUDITOR, "per")
B_ADMIN = auth("kommun-b", Role.TENANT_ADMIN, "bertil")
PLATFORM = auth("platform", Role.PLATFORM_ADMIN, "plattform")

_ROWS = """
    select actor, actor_org, actor_role, actor_tenant, categories, purpose, reason
    from access_log where person_id = %s and actor_role = %s order by id
"""


@contextlib.asynccontextmanager
async def receiver(port: int, path: str) -> AsyncIterator[list[bytes]]:
    got: list[bytes] = []

    async def hook(request: Request) -> Response:
        got.append(await request.body())
        return Response(status_code=204)

    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route(path, hook, methods=["POST"])]), host="127.0.0.1", port=port,
        log_config=None))  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        yield got
    finally:
        server.should_exit = True
        await task


async def _rows(url: str, person: Any, role: str) -> list[tuple[Any, ...]]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await (await conn.execute(_ROWS, (person, role))).fetchall()


async def _extract(http: httpx.AsyncClient, person: Any) -> str:
    r = await http.get(f"/api/v1/persons/{person}/log-extract", headers=A_AUDITOR,
                       params={"format": "csv"})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.text


async def test_the_guest_copy_of_an_alarm_is_logged_for_the_home(mosquitto, database_url):
    home = await seed(database_url, devices={"gps-1": "t-gps"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    resident = home.persons["gps-1"]
    port = free_port()
    alarms = AlarmSettings(
        routes={"kommun-b": [RouteSetting(chain=["jour-b"])]},
        webhooks=[WebhookSetting(group="jour-b", url=f"http://127.0.0.1:{port}/alarms",
                                 secret="shared-with-kommun-b", tenants=["kommun-b"])],
    )  # fmt: skip
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET, alarms=alarms)
    async with receiver(port, "/alarms") as centre, gateway_with_api(settings) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http, \
            operator(mosquitto.url, "kommun-b") as team_b:  # fmt: skip
        r = await http.post("/api/v1/stay-agreements", headers=A_ADMIN,
                            json={"host_tenant_id": "kommun-b"})  # fmt: skip
        assert r.status_code == 201, r.text
        r = await http.post(f"/api/v1/stay-agreements/{r.json()['id']}/accept", headers=B_ADMIN)
        assert r.status_code == 200, r.text
        window = {"host_tenant_id": "kommun-b", "from": datetime.now(UTC).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}  # fmt: skip
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_ADMIN, json=window)
        assert r.status_code == 201, r.text
        stay = r.json()
        stays = gw.alarms.stays
        assert stays is not None

        async def known() -> bool:
            return any(str(s.id) == stay["id"] for s in stays.stays(resident))

        await wait_for(known, 15, "the stay in the worker's memory")
        press = payload("alarm", "during-1", kind="button", lat=59.3, lon=18.1, accuracy_m=8)
        await publish(mosquitto.url, [("devices/gps-1/events", press)])
        raised = await team_b.wait(lambda m: m["kind"] == "button", "host: raised")
        await wait_for(lambda: _async_bool(bool(centre)), 15, "the host's webhook receiver")

        async def logged() -> bool:
            return bool(await _rows(database_url, resident, "stay_host"))

        await wait_for(logged, 15, "the guest's copy in the home's access log")
        (row,) = await _rows(database_url, resident, "stay_host")
        assert row == ("host:kommun-b", None, "stay_host", "kommun-b", ["alarms", "position"],
                       "guest alarm handling",
                       f"stay {stay['id']}: the guest's copy of alarm {raised['alarm_id']} "
                       "(raised) to the host municipality")  # fmt: skip
        assert await scalar(database_url, "select owner_tenant from access_log where"
                            " actor_role = 'stay_host'") == "kommun-a"  # fmt: skip
        text = await _extract(http, resident)
        assert (
            "lämnades larm och position ut till Kommun-B (212000-0002), under vistelse i "
            "annan kommun, syfte: larmhantering under vistelse." in text
        )


async def _async_bool(value: bool) -> bool:
    return value


async def test_a_payer_change_to_the_aids_centre_is_logged(mosquitto, database_url):
    s = await seed(database_url, devices={"bp-1": "t-bp"})
    mover = s.persons["bp-1"]
    port = free_port()
    settings = settings_for(
        mosquitto.url, database_url, jwt_secret=SECRET,
        alarms=AlarmSettings(webhooks=[WebhookSetting(
            group="hjalpmedel", url=f"http://127.0.0.1:{port}/payer",
            secret="shared-with-the-aids-centre")]),
        payer={"webhook_group": "hjalpmedel", "interval_s": 0.1},
    )  # fmt: skip
    backdated = local_date(datetime.now(UTC)) - timedelta(days=2)
    async with receiver(port, "/payer") as centre, gateway_with_api(settings) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=20) as http:  # fmt: skip
        r = await http.post("/api/v1/tenants", headers=PLATFORM, json={
            "id": "region-v", "name": "Region Västmanland", "kind": "region",
            "org_number": "232100-0172"})  # fmt: skip
        assert r.status_code == 201, r.text
        r = await http.put("/api/v1/tenants/kommun-a/region", headers=PLATFORM,
                           json={"region_id": "region-v"})  # fmt: skip
        assert r.status_code == 200, r.text
        r = await http.post(f"/api/v1/persons/{mover}/housing", headers=A_ADMIN,
                            json={"form": "residential_care",
                                  "valid_from": backdated.isoformat()})  # fmt: skip
        assert r.status_code == 201, r.text

        async def delivered() -> bool:
            return bool(centre)

        await wait_for(delivered, 20, "the payer change at the aids centre")
        rows = await _rows(database_url, mover, "payer_receiver")
        assert len(rows) == 1
        actor, org, role, tenant, categories, purpose, reason = rows[0]
        assert (actor, org, role, tenant, categories, purpose) == (
            "webhook:hjalpmedel", None, "payer_receiver", "region-v", ["housing"],
            "payer change")  # fmt: skip
        assert reason.startswith("payer change payer-") and "to the aids centre" in reason
        text = await _extract(http, mover)
        assert (
            "lämnades boendeform ut till Region Västmanland (232100-0172) via deras "
            "mottagare hjalpmedel, för betalningsansvar, syfte: betalningsansvar för "
            "hjälpmedel."
        ) in text
