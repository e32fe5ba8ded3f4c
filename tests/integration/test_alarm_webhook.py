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

from gateway.dispatch.webhook import SIGNATURE_HEADER, verify
from gateway.settings import AlarmSettings, WebhookSetting
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
