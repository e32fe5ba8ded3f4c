"""The API apart from the gateway workers, as ``welfare-gateway api`` and ``worker`` run:
two API replicas and two workers sharing one real Mosquitto, linked only by the broker.
An alarm is acknowledged and resolved through either replica by whichever worker holds
it; both replicas stream it; an event id of one replica makes the other say ``resync``;
with no worker online the API answers 503 quickly and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import httpx

from api.auth import Role, mint
from gateway.worker.service import GatewayService
from tests.integration import harness
from tests.integration.harness import (
    payload,
    publish,
    running_gateway,
    seed,
    settings_for,
    wait_for,
)
from tests.integration.test_api_alarms import read_events

SECRET = "split-test-secret-split-test-secret"


def auth(tenant: str = "kommun-a") -> dict[str, str]:
    token = mint(SECRET, tenant=tenant, role=Role.OPERATOR, subject="op-1", org=None, ttl_s=600)
    return {"Authorization": f"Bearer {token}"}


def api_replica(mqtt_url: str, database_url: str) -> Any:
    return harness.api_replica(mqtt_url, database_url, SECRET)


def worker_settings(mqtt_url: str, database_url: str, n: int) -> Any:
    return settings_for(mqtt_url, database_url, jwt_secret=SECRET,
                        mqtt_client_id=f"wg-test-worker-{n}")  # fmt: skip


async def test_two_replicas_two_workers_linked_by_the_broker(mosquitto, database_url) -> None:
    s = await seed(database_url)
    device = next(iter(s.devices))
    one, two = (worker_settings(mosquitto.url, database_url, n) for n in (1, 2))
    async with running_gateway(one) as w1, running_gateway(two) as w2, \
            api_replica(mosquitto.url, database_url) as a, \
            api_replica(mosquitto.url, database_url) as b:  # fmt: skip
        seen_a: list[tuple[int, dict[str, Any]]] = []
        seen_b: list[tuple[int, dict[str, Any]]] = []
        async with a.stream("GET", "/api/v1/alarms/stream", headers=auth()) as ra, \
                b.stream("GET", "/api/v1/alarms/stream", headers=auth()) as rb:  # fmt: skip
            readers = [asyncio.create_task(read_events(ra, seen_a)),
                       asyncio.create_task(read_events(rb, seen_b))]  # fmt: skip
            press = payload("alarm", "press-1", kind="button")
            await publish(mosquitto.url, [(f"devices/{device}/events", press)])

            async def raised() -> bool:
                return any(e["event"] == "raised" for _, e in seen_a) and any(
                    e["event"] == "raised" for _, e in seen_b)  # fmt: skip

            await wait_for(raised, 15, "the alarm on both replicas' streams")
            alarm_id = next(e["alarm_id"] for _, e in seen_a if e["event"] == "raised")
            # one worker runs the alarm engine (the older one); the other mirrors its book
            assert [w.alarms.active for w in (w1, w2)] == [True, False]

            async def mirrored() -> bool:
                return all(w.alarms.book.get(UUID(alarm_id)) for w in (w1, w2))

            await wait_for(mirrored, 5, "the alarm in the standby's mirrored book")

            r = await a.get("/healthz")
            assert r.json()["workers_online"] == 2

            # the board's snapshot: gathered from both workers, with a cursor of replica B
            r = await b.get("/api/v1/console/alarms", headers=auth())
            assert r.status_code == 200, r.text
            board = r.json()
            assert [x["alarm_id"] for x in board["alarms"]] == [alarm_id]
            assert board["alarms"][0]["recipients"]
            assert board["cursor"] >= seen_b[0][0]

            # acknowledged through A, resolved through B: the holder does it, both see it
            r = await a.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=auth())
            assert (r.status_code, r.json()["state"]) == (200, "acknowledged"), r.text
            r = await a.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=auth())
            assert r.status_code == 409, r.text  # answered by the holder, not "not found"
            r = await b.post(f"/api/v1/alarms/{alarm_id}/resolve", headers=auth(),
                             json={"outcome": "visited, all well"})  # fmt: skip
            assert (r.status_code, r.json()["state"]) == (200, "resolved"), r.text
            r = await b.post(f"/api/v1/alarms/{alarm_id}/resolve", headers=auth(),
                             json={"outcome": "again"})  # fmt: skip
            assert r.status_code == 404  # no worker holds it any more
            r = await a.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=auth("kommun-b"))
            assert r.status_code == 404  # another municipality's alarm is not found

            async def resolved_on_both() -> bool:
                return all(any(e["event"] == "resolved" for _, e in seen)
                           for seen in (seen_a, seen_b))  # fmt: skip

            await wait_for(resolved_on_both, 15, "resolved on both streams")
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

        # A's event id means nothing to B: B says resync; to A it is a catch-up point
        last_a = seen_a[0][0]
        assert await first_event(b, last_a) == "resync"
        assert await first_event(a, last_a) == "alarm"

    # no worker online any more: the API says so at once and changes nothing
    async with api_replica(mosquitto.url, database_url) as c:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await c.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=auth())
        assert r.status_code == 503 and "no gateway worker" in r.json()["detail"], r.text
        assert loop.time() - t0 < 3
        r = await c.get("/api/v1/console/alarms", headers=auth())
        assert (r.status_code, r.json()["cursor"]) == (200, None)  # from the database


async def first_event(http: httpx.AsyncClient, last_event_id: int) -> str:
    headers = {**auth(), "Last-Event-ID": str(last_event_id)}
    async with http.stream("GET", "/api/v1/alarms/stream", headers=headers) as r:
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                return line[7:]
    raise AssertionError("stream ended without an event")


async def test_worker_stopped_gracefully_is_not_waited_for(mosquitto, database_url) -> None:
    """A worker that stops says so (retained offline): requests do not wait for it."""
    await seed(database_url)
    async with api_replica(mosquitto.url, database_url) as api:
        settings = worker_settings(mosquitto.url, database_url, 3)
        async with running_gateway(settings) as w:
            assert isinstance(w, GatewayService)
            r = await api.post(
                "/api/v1/alarms/00000000-0000-4000-8000-000000000000/acknowledge", headers=auth()
            )
            assert r.status_code == 404  # asked, and no worker holds it
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        r = await api.post(
            "/api/v1/alarms/00000000-0000-4000-8000-000000000000/acknowledge", headers=auth()
        )
        assert r.status_code == 503, r.text
        assert loop.time() - t0 < 3
