"""A configured webhook receives the gateway's alarm events, signed, end to end: device
press over Mosquitto -> gateway -> signed POST to a real local HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.settings import AlarmSettings, WebhookSetting
from gateway.worker.webhooks import SIGNATURE_HEADER, verify
from tests.integration.harness import (
    payload,
    publish,
    running_gateway,
    seed,
    settings_for,
    wait_for,
)
from tests.services import free_port

SECRET = "shared-with-the-alarm-centre"


async def test_alarm_events_reach_a_signed_webhook(mosquitto, database_url) -> None:
    received: list[tuple[dict[str, Any], bytes, str]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        received.append((orjson.loads(body), body, request.headers[SIGNATURE_HEADER]))
        return Response(status_code=204)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
        host="127.0.0.1", port=port, log_config=None,
    ))  # fmt: skip
    task = asyncio.create_task(server.serve())
    s = await seed(database_url)
    hooks = [WebhookSetting(group=g, url=f"http://127.0.0.1:{port}/hook", secret=SECRET)
             for g in ("night_team", "home_care")]  # fmt: skip
    settings = settings_for(mosquitto.url, database_url, alarms=AlarmSettings(webhooks=hooks))
    try:
        async with running_gateway(settings):
            await publish(mosquitto.url, [("devices/gps-1/events",
                                           payload("alarm", "w1", kind="fall"))])  # fmt: skip

            async def delivered() -> bool:
                return bool(received)

            await wait_for(delivered, 15, "webhook delivery")
    finally:
        server.should_exit = True
        await task
    event, body, signature = received[0]
    assert event["kind"] == "fall" and event["event"] == "raised"
    assert event["tenant_id"] == s.tenant
    assert verify(SECRET.encode(), signature, body, now=int(time.time()))
    assert not verify(b"some-other-secret-entirely", signature, body, now=int(time.time()))


async def test_an_unreachable_receiver_raises_a_technical_alarm_and_gets_everything_later(
    mosquitto, database_url, tmp_path
) -> None:
    """The outside report: a receiving centre down for 90 s never got the alarm nor its
    acknowledgement (the sender gave up after 8 attempts), nothing counted it, and after a
    shorter outage 'acknowledged' came before 'raised'. Now: the receiver's outbox keeps
    them, the technicians get receiver_unreachable, the gateway restarts meanwhile, and
    when the receiver is back it gets raised, acknowledged, resolved, in that order."""
    from uuid import UUID

    from tests.integration.harness import operator
    from tests.integration.test_webhook import Receiver, serve

    s = await seed(database_url)
    port = free_port()
    hooks = [WebhookSetting(group=g, url=f"http://127.0.0.1:{port}/hook/{g}", secret=SECRET)
             for g in ("night_team", "home_care")]  # fmt: skip
    settings = settings_for(mosquitto.url, database_url, alarms=AlarmSettings(
        webhooks=hooks, webhook_unreachable_after_s=1.0), data_dir=str(tmp_path))  # fmt: skip
    async with operator(mosquitto.url, s.tenant) as op:
        async with running_gateway(settings) as gw:
            await publish(mosquitto.url, [("devices/gps-1/events",
                                           payload("alarm", "w1", kind="fall"))])  # fmt: skip
            raised = await op.wait(lambda m: m["event"] == "raised", "the fall")
            alarm_id = UUID(raised["alarm_id"])
            gw.alarms.acknowledge(s.tenant, alarm_id, "op-1")
            gw.alarms.resolve(s.tenant, alarm_id, "op-1", "visited")
            tech = await op.wait(lambda m: m["kind"] == "receiver_unreachable", "reported", 20)
            assert tech["device_id"].startswith("webhook:") and tech["severity"] == "high"
            assert tech["recipients"] == ["technicians"]
            assert gw.alarms.webhooks.pending() >= 3
        receiver = Receiver()
        async with serve(receiver, port), running_gateway(settings):  # restarted, then back
            async def delivered() -> bool:
                return len([r for r in receiver.ok if b'"kind":"fall"' in r.body]) >= 3

            await wait_for(delivered, 30, "everything, once the receiver is back")
            await op.wait(lambda m: m["kind"] == "receiver_unreachable"
                          and m["event"] == "cleared", "cleared", 30)  # fmt: skip
    events = [orjson.loads(r.body)["event"] for r in receiver.ok if b'"kind":"fall"' in r.body]
    assert events == ["raised", "acknowledged", "resolved"]
