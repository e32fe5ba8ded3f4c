"""A temporary stay in another municipality (issue #19.3; docs/stays.md), end to end with
real Mosquitto, PostgreSQL and HTTP.

A resident of kommun-a stays in kommun-b under an agreement kommun-a proposed and
kommun-b's tenant admin accepted. An alarm raised during the stay reaches both
municipalities' alarm topics (the host's copy marked as a guest's, routed by the host's
routing to its webhook receiver and to its console), the host acknowledges it and the home
side sees who did; an alarm raised before the stay began, and one after it was cut short,
reach only the home. The host reads the guest's alarms and positions inside the stay
only, a third municipality nothing; both sides see the host's reads in the access log.
The host's webhook receiver is a local HTTP server in the test (a stand-in for a system
outside the product). Waits are on conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import orjson
import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Role, mint
from gateway.config.settings import AlarmSettings, RouteSetting, WebhookSetting
from tests.integration.harness import (
    Bearer,
    gateway_with_api,
    now_iso,
    operator,
    payload,
    publish,
    running_gateway,
    seed,
    settings_for,
    wait_for,
)
from tests.services import free_port

SECRET = "stays-test-secret-stays-test-secret"
HOOK_SECRET = "shared-with-kommun-b-alarm-centre"


def auth(tenant: str, role: Role = Role.OPERATOR, sub: str | None = None) -> Bearer:
    return Bearer(
        lambda: mint(
            SECRET, tenant=tenant, role=role, subject=sub or f"{tenant}-{role.value}", org=None,
            ttl_s=900
        )
    )


A_ADMIN, B_ADMIN, C_ADMIN = (auth(t, Role.TENANT_ADMIN) for t in ("kommun-a", "kommun-b",
                                                                    "kommun-c"))  # fmt: skip
A_OP, B_OP, C_OP = (auth(t) for t in ("kommun-a", "kommun-b", "kommun-c"))
A_AUDITOR = auth("kommun-a", Role.AUDITOR)


class AlarmCentre:
    """kommun-b's alarm receiving centre (outside the product)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def hook(self, request: Request) -> Response:
        self.received.append(orjson.loads(await request.body()))
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def alarm_centre(port: int) -> AsyncIterator[AlarmCentre]:
    centre = AlarmCentre()
    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route("/alarms", centre.hook, methods=["POST"])]),
        host="127.0.0.1", port=port, log_config=None,
    ))  # fmt: skip
    task = asyncio.create_task(server.serve())
    try:
        yield centre
    finally:
        server.should_exit = True
        await task


async def read_events(response: httpx.Response, into: list[dict[str, Any]]) -> None:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line != "data: {}":
            into.append(orjson.loads(line[6:]))


async def test_a_stay_routes_alarms_to_the_host_and_only_within_it(mosquitto, database_url):
    home = await seed(database_url, devices={"gps-1": "t-gps"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    await seed(database_url, tenant="kommun-c", org="212000-0003", devices={"c-gps": "t-gps"})
    resident = home.persons["gps-1"]
    port = free_port()
    alarms = AlarmSettings(
        routes={"kommun-b": [RouteSetting(chain=["jour-b"])]},  # the host's own routing
        webhooks=[
            WebhookSetting(
                group="jour-b",
                url=f"http://127.0.0.1:{port}/alarms",
                secret=HOOK_SECRET,
                tenants=["kommun-b"],
            )
        ],
    )
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET, alarms=alarms)
    async with alarm_centre(port) as centre, gateway_with_api(settings) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http, \
            operator(mosquitto.url, "kommun-a") as team_a, \
            operator(mosquitto.url, "kommun-b") as team_b:  # fmt: skip
        stays = gw.alarms.stays
        assert stays is not None

        # --- an alarm before the stay: the home's alone -----------------------------------
        await publish(mosquitto.url, [("devices/gps-1/events",
                                       payload("alarm", "before-1", kind="fall"))])  # fmt: skip
        before = await team_a.wait(lambda m: m["kind"] == "fall", "the fall before the stay")

        # --- the agreement: proposed by the home, accepted by the host --------------------
        r = await http.post("/api/v1/stay-agreements", headers=A_OP,
                            json={"host_tenant_id": "kommun-b"})  # fmt: skip
        assert r.status_code == 403  # a tenant admin's decision
        r = await http.post("/api/v1/stay-agreements", headers=A_ADMIN,
                            json={"host_tenant_id": "kommun-x"})  # fmt: skip
        assert r.status_code == 422, r.text
        r = await http.post("/api/v1/stay-agreements", headers=A_ADMIN,
                            json={"host_tenant_id": "kommun-b"})  # fmt: skip
        assert r.status_code == 201, r.text
        agreement = r.json()
        assert agreement["state"] == "proposed" and agreement["side"] == "home"
        r = await http.post("/api/v1/stay-agreements", headers=A_ADMIN,
                            json={"host_tenant_id": "kommun-b"})  # fmt: skip
        assert r.status_code == 409
        window = {"host_tenant_id": "kommun-b", "from": datetime.now(UTC).isoformat(),
                  "to": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}  # fmt: skip
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_ADMIN, json=window)
        assert r.status_code == 409, r.text  # not accepted yet: nothing routed
        agreement_url = f"/api/v1/stay-agreements/{agreement['id']}"
        r = await http.post(f"{agreement_url}/accept", headers=A_ADMIN)
        assert r.status_code == 403  # the home cannot accept for the host
        r = await http.post(f"{agreement_url}/accept", headers=C_ADMIN)
        assert r.status_code == 404  # a third municipality does not see it
        r = await http.post(f"{agreement_url}/accept", headers=B_ADMIN)
        assert r.status_code == 200 and r.json()["state"] == "active", r.text
        assert r.json()["side"] == "host"
        r = await http.get("/api/v1/stay-agreements", headers=C_ADMIN)
        assert r.status_code == 200 and r.json() == []

        # --- the stay, recorded by the home; the workers follow it -------------------------
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=B_ADMIN, json=window)
        assert r.status_code == 404  # the host records nothing of the home's residents
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP,
                            json={**window, "to": window["from"]})  # fmt: skip
        assert r.status_code == 422
        window["from"] = datetime.now(UTC).isoformat()
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP, json=window)
        assert r.status_code == 201, r.text
        stay = r.json()
        assert stay["status"] == "current" and stay["host_tenant_id"] == "kommun-b"
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP, json=window)
        assert r.status_code == 409  # one place at a time

        async def known() -> bool:
            return any(str(s.id) == stay["id"] for s in stays.stays(resident))

        await wait_for(known, 15, "the stay in the worker's memory (LISTEN wg_stays)")

        # --- the host's console stream, then an alarm during the stay ----------------------
        console_b: list[dict[str, Any]] = []
        async with http.stream("GET", "/api/v1/alarms/stream", headers=B_OP) as sse:
            reader = asyncio.create_task(read_events(sse, console_b))
            press = payload("alarm", "during-1", kind="button", lat=59.3, lon=18.1, accuracy_m=8)
            await publish(mosquitto.url, [("devices/gps-1/events", press)])
            raised_a = await team_a.wait(lambda m: m["kind"] == "button", "home: raised")
            raised_b = await team_b.wait(lambda m: m["kind"] == "button", "host: raised")
            alarm_id = raised_a["alarm_id"]
            assert raised_b["alarm_id"] == alarm_id and raised_b["event_id"] == raised_a["event_id"]
            assert "guest" not in raised_a and raised_a["tenant_id"] == "kommun-a"
            assert raised_b["tenant_id"] == "kommun-b"
            assert raised_b["guest"] == {
                "home_tenant_id": "kommun-a", "stay_id": stay["id"],
                "stay_starts_at": raised_b["guest"]["stay_starts_at"],
                "stay_ends_at": raised_b["guest"]["stay_ends_at"],
            }  # fmt: skip
            assert raised_b["recipients"] == ["jour-b"]  # the host's routing
            assert raised_b["position"]["lat"] == 59.3

            async def on_console() -> bool:
                return any(e["alarm_id"] == alarm_id for e in console_b)

            await wait_for(on_console, 15, "the guest's alarm on the host's console stream")
            reader.cancel()

        async def at_centre() -> bool:
            return any(m["alarm_id"] == alarm_id for m in centre.received)

        await wait_for(at_centre, 15, "the guest's alarm at the host's webhook receiver")
        hooked = next(m for m in centre.received if m["alarm_id"] == alarm_id)
        assert hooked["tenant_id"] == "kommun-b" and hooked["guest"]["home_tenant_id"] == "kommun-a"

        # the host's board lists it (from the engine's book) beside its own
        r = await http.get("/api/v1/console/alarms", headers=B_OP)
        assert r.status_code == 200
        listed = [a for a in r.json()["alarms"] if a["alarm_id"] == alarm_id]
        assert listed and listed[0]["guest"]["stay_id"] == stay["id"]
        assert all(a["alarm_id"] != before["alarm_id"] for a in r.json()["alarms"])

        # --- the host acknowledges; the home sees who did ----------------------------------
        r = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=C_OP)
        assert r.status_code == 404
        r = await http.post(f"/api/v1/alarms/{before['alarm_id']}/acknowledge", headers=B_OP)
        assert r.status_code == 404  # raised before the stay: not the host's
        r = await http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=B_OP)
        assert r.status_code == 200, r.text
        assert r.json()["acknowledged_by"] == "kommun-b/kommun-b-operator"
        acked = await team_a.wait(
            lambda m: m["alarm_id"] == alarm_id and m["event"] == "acknowledged", "home: ack"
        )
        assert acked["acknowledged_by"] == "kommun-b/kommun-b-operator"
        assert acked["tenant_id"] == "kommun-a"
        await team_b.wait(lambda m: m["alarm_id"] == alarm_id and m["event"] == "acknowledged",
                          "host: ack")  # fmt: skip

        # the alarm before the stay: acknowledged by the home, never at the host
        r = await http.post(f"/api/v1/alarms/{before['alarm_id']}/acknowledge", headers=A_OP)
        assert r.status_code == 200

        # --- the host's reads: inside the stay only ---------------------------------------
        await publish(mosquitto.url, [("devices/gps-1/telemetry", payload(
            "position", "pos-1", now_iso(), lat=59.31, lon=18.11, accuracy_m=6))])  # fmt: skip
        r = await http.get("/api/v1/guests", headers=B_OP)
        assert r.status_code == 200
        assert [(g["stay_id"], g["home_tenant_id"], g["person_ref"], g["status"])
                for g in r.json()] == [(stay["id"], "kommun-a", "kommun-a-brukare-1",
                                        "current")]  # fmt: skip
        assert set(r.json()[0]) == {"stay_id", "home_tenant_id", "home_name", "person_ref",
                                    "starts_at", "ends_at", "status"}  # fmt: skip
        guest = f"/api/v1/guests/{stay['id']}"

        async def alarms_persisted() -> bool:
            r = await http.get(f"{guest}/alarms", headers=B_OP)
            assert r.status_code == 200, r.text
            return [a["alarm_id"] for a in r.json()["alarms"]] == [alarm_id]

        await wait_for(alarms_persisted, 15, "the guest's alarm in the host's read")

        async def positions_stored() -> bool:
            r = await http.get(f"{guest}/positions", headers=B_OP)
            assert r.status_code == 200, r.text
            return [p["lat"] for p in r.json()["positions"]] == [59.31]

        await wait_for(positions_stored, 15, "the guest's position in the host's read")
        for url in (f"{guest}/alarms", f"{guest}/positions"):
            assert (await http.get(url, headers=C_OP)).status_code == 404  # a third tenant
            assert (await http.get(url, headers=A_OP)).status_code == 404  # not its guest
        assert (await http.get(f"/api/v1/guests/{uuid4()}/alarms", headers=B_OP)).status_code \
            == 404  # fmt: skip
        assert (await http.get("/api/v1/guests", headers=C_OP)).json() == []
        # nothing else of the person for the host
        assert (await http.get(f"/api/v1/persons/{resident}", headers=B_OP)).status_code == 404
        r = await http.get(f"/api/v1/persons/{resident}/stays", headers=B_OP)
        assert r.status_code == 404
        r = await http.get("/api/v1/alarms", headers=B_OP)
        assert all(a["alarm_id"] != alarm_id for a in r.json())  # the history is the home's

        # the home keeps everything, and sees that the host read
        r = await http.get("/api/v1/alarms", headers=A_OP)
        mine = [a for a in r.json() if a["alarm_id"] == alarm_id]
        assert mine and mine[0]["acknowledged_by"] == "kommun-b/kommun-b-operator"
        board = (await http.get("/api/v1/console/alarms", headers=A_OP)).json()["alarms"]
        assert [a.get("guest") for a in board if a["alarm_id"] == alarm_id] == [None]
        r = await http.get(f"/api/v1/persons/{resident}/readings", headers=A_OP,
                           params={"category": "position"})  # fmt: skip
        assert r.status_code == 200 and "59.31" in r.text
        r = await http.get(f"/api/v1/persons/{resident}/stays", headers=A_AUDITOR)
        assert r.status_code == 200, r.text
        reads = r.json()["host_reads"]
        assert {x["actor_tenant_id"] for x in reads} == {"kommun-b"}
        assert {c for x in reads for c in x["categories"]} >= {"alarms", "position", "stay"}
        r = await http.get("/api/v1/access-log", headers=auth("kommun-b", Role.AUDITOR))
        assert r.status_code == 200
        assert any(e["owner_tenant"] == "kommun-a" and e["actor_tenant"] == "kommun-b"
                   for e in r.json())  # fmt: skip

        # --- the stay is cut short; the next alarm is the home's alone --------------------
        r = await http.post(f"/api/v1/alarms/{alarm_id}/resolve", headers=B_OP,
                            json={"outcome": "Found at the summer house; all well"})  # fmt: skip
        assert r.status_code == 200, r.text
        await team_a.wait(lambda m: m["alarm_id"] == alarm_id and m["event"] == "resolved",
                          "home: resolved")  # fmt: skip
        r = await http.post(f"/api/v1/stays/{stay['id']}/end", headers=B_OP)
        assert r.status_code == 404  # the host cannot end it for the home
        r = await http.post(f"/api/v1/stays/{stay['id']}/end", headers=A_OP)
        assert r.status_code == 200 and r.json()["status"] == "ended", r.text

        async def ended() -> bool:
            return all(s.ends_at <= datetime.now(UTC) for s in stays.stays(resident))

        await wait_for(ended, 15, "the stay's end in the worker's memory")
        await publish(mosquitto.url, [("devices/gps-1/events",
                                       payload("alarm", "after-1", kind="button"))])  # fmt: skip
        after = await team_a.wait(
            lambda m: m["kind"] == "button" and m["alarm_id"] != alarm_id, "home: after the stay"
        )
        # a marker for the host published after it: had the host got a copy, it came first
        await publish(mosquitto.url, [("devices/b-gps/events",
                                       payload("alarm", "marker-1", kind="button"))])  # fmt: skip
        await team_b.wait(lambda m: m["device_id"] == "b-gps", "the host's own alarm")
        assert all(m["alarm_id"] not in (after["alarm_id"], before["alarm_id"])
                   for m in team_b.messages)  # fmt: skip
        assert (await http.get(f"{guest}/alarms", headers=B_OP)).status_code == 404
        assert (await http.get("/api/v1/guests", headers=B_OP)).json() == []

        # --- either side ends the agreement -----------------------------------------------
        r = await http.post(f"{agreement_url}/end", headers=B_ADMIN)
        assert r.status_code == 200 and r.json()["state"] == "ended"
        assert r.json()["ended_tenant_id"] == "kommun-b"
        r = await http.post(f"{agreement_url}/end", headers=A_ADMIN)
        assert r.status_code == 409
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP, json={
            "host_tenant_id": "kommun-b", "from": "2099-06-01", "to": "2099-06-14"})  # fmt: skip
        assert r.status_code in (409, 422)


async def test_local_dates_and_a_cancelled_upcoming_stay(mosquitto, database_url):
    home = await seed(database_url, devices={"gps-1": "t-gps"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    resident = home.persons["gps-1"]
    settings = settings_for(mosquitto.url, database_url, jwt_secret=SECRET)
    async with gateway_with_api(settings) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=15) as http:  # fmt: skip
        r = await http.post("/api/v1/stay-agreements", headers=A_ADMIN,
                            json={"host_tenant_id": "kommun-b"})  # fmt: skip
        agreement = r.json()["id"]
        r = await http.post(f"/api/v1/stay-agreements/{agreement}/accept", headers=B_ADMIN)
        assert r.status_code == 200
        start = (datetime.now(UTC) + timedelta(days=10)).date()
        end = start + timedelta(days=13)
        dates = {"host_tenant_id": "kommun-b", "from": start.isoformat(), "to": end.isoformat()}
        r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP, json=dates)
        assert r.status_code == 201, r.text
        stay = r.json()
        # local midnight of the first day to local midnight after the last (Stockholm)
        starts = datetime.fromisoformat(stay["starts_at"])
        ends = datetime.fromisoformat(stay["ends_at"])
        assert starts.utcoffset() is not None and (ends - starts) >= timedelta(days=14) - \
            timedelta(hours=1)  # fmt: skip
        assert stay["status"] == "upcoming"
        r = await http.get("/api/v1/guests", headers=B_OP)
        assert [g["status"] for g in r.json()] == ["upcoming"]
        r = await http.get(f"/api/v1/guests/{stay['id']}/positions", headers=B_OP)
        assert r.status_code == 404  # not begun: nothing to read yet
        for bad in (
            {"from": "1 juni", "to": end.isoformat()},
            {"from": "2026-06-01T10:00:00", "to": end.isoformat()},
            {"from": start.isoformat(), "to": (start + timedelta(days=400)).isoformat()},
        ):
            r = await http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP,
                                json={"host_tenant_id": "kommun-b", **bad})  # fmt: skip
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await http.post(f"/api/v1/stays/{stay['id']}/end", headers=A_OP)
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert (await http.get("/api/v1/guests", headers=B_OP)).json() == []
        r = await http.get(f"/api/v1/persons/{resident}/stays", headers=A_OP)
        assert [s["status"] for s in r.json()["stays"]] == ["cancelled"]
        r = await http.get(f"/api/v1/persons/{UUID(int=1)}/stays", headers=A_OP)
        assert r.status_code == 404
        # two overlapping stays recorded at once: one is, the other 409 (one place at a time)
        later = {"host_tenant_id": "kommun-b", "from": (start + timedelta(days=30)).isoformat(),
                 "to": (start + timedelta(days=40)).isoformat()}  # fmt: skip
        both = await asyncio.gather(*(
            http.post(f"/api/v1/persons/{resident}/stays", headers=A_OP, json=later)
            for _ in range(2)))  # fmt: skip
        assert sorted(r.status_code for r in both) == [201, 409]


async def test_a_standby_keeps_the_homes_alarm_and_routes_to_the_host_after_a_hand_over(
    mosquitto, database_url
):
    """Two workers: the standby mirrors the home's messages into its book and never the
    host's copies; once it takes over the engine it still routes the guest's alarm to the
    host (its stays are in its own memory)."""
    home = await seed(database_url, devices={"gps-1": "t-gps"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    resident = home.persons["gps-1"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        agreement = await scalar_row(conn, "insert into stay_agreements (home_tenant, host_tenant,"
                                     " proposed_by, accepted_at, accepted_by) values ('kommun-a',"
                                     " 'kommun-b', 'a', now(), 'b') returning id")  # fmt: skip
        await conn.execute(
            "insert into stays (tenant_id, person_id, host_tenant, agreement_id, starts_at,"
            " ends_at, recorded_by) values ('kommun-a', %s, 'kommun-b', %s,"
            " now() - interval '1 minute', now() + interval '1 hour', 'a')",
            (resident, agreement),
        )
        await conn.commit()
    first = contextlib.AsyncExitStack()
    w1 = await first.enter_async_context(
        running_gateway(settings_for(mosquitto.url, database_url, mqtt_client_id="wg-s1"))
    )
    try:
        async with running_gateway(
            settings_for(mosquitto.url, database_url, mqtt_client_id="wg-s2")
        ) as w2, operator(mosquitto.url, "kommun-a") as team_a, \
                operator(mosquitto.url, "kommun-b") as team_b:  # fmt: skip
            assert w1.alarms.active and not w2.alarms.active
            for w in (w1, w2):
                assert w.alarms.stays is not None and w.alarms.stays.stays(resident)
            await publish(mosquitto.url, [("devices/gps-1/events",
                                           payload("alarm", "ho-1", kind="button"))])  # fmt: skip
            raised = await team_a.wait(lambda m: m["event"] == "raised", "home: raised")
            await team_b.wait(lambda m: m["event"] == "raised", "host: raised")
            alarm_id = UUID(raised["alarm_id"])
            w1.alarms.acknowledge("kommun-b", alarm_id, "nattpatrull")
            await team_a.wait(lambda m: m["event"] == "acknowledged", "home: ack")
            await team_b.wait(lambda m: m["event"] == "acknowledged", "host: ack")

            async def mirrored() -> bool:
                alarm = w2.alarms.book.get(alarm_id)
                return alarm is not None and alarm.acknowledged_by == "kommun-b/nattpatrull"

            await wait_for(mirrored, 10, "the standby's mirror of the acknowledgement")
            mirror = w2.alarms.book.get(alarm_id)
            assert mirror is not None and mirror.tenant_id == "kommun-a"  # never the copy
            assert len(w2.alarms.book.open_alarms()) == 1

            await first.aclose()  # the engine's worker stops; the standby takes over

            async def taken_over() -> bool:
                return w2.alarms.active

            await wait_for(taken_over, 20, "the standby taking over the engine")
            w2.alarms.resolve("kommun-b", alarm_id, "nattpatrull", "Found; all well")
            resolved = await team_b.wait(lambda m: m["event"] == "resolved", "host: resolved")
            assert resolved["guest"]["home_tenant_id"] == "kommun-a"
            await team_a.wait(lambda m: m["event"] == "resolved", "home: resolved")
    finally:
        await first.aclose()


async def scalar_row(conn: psycopg.AsyncConnection[Any], sql: str) -> Any:
    row = await (await conn.execute(sql)).fetchone()
    assert row is not None
    return row[0]
