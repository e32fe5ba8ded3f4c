"""After a network drop the console reconnects by itself, resumes the stream with
Last-Event-ID and shows what happened meanwhile, each alarm once."""

from __future__ import annotations

import re

import httpx

from tests.e2e.browser import browser
from tests.e2e.proxy import drop_proxy
from tests.e2e.stack import auth, console_stack, token
from tests.integration.harness import payload, publish, seed, wait_for


async def test_reconnects_and_catches_up_without_duplicates(mosquitto, database_url) -> None:
    s = await seed(database_url)
    async with console_stack(mosquitto.url, database_url) as (api_base, _gw), \
            drop_proxy(api_base) as (base, proxy), \
            httpx.AsyncClient(base_url=api_base, timeout=10) as http, \
            browser(base) as page:  # fmt: skip
        await page.sign_in_with_fragment(token(s.tenant))
        await publish(
            mosquitto.url, [("devices/gps-1/events", payload("alarm", "b-1", kind="button"))]
        )
        await page.wait_css('tr[data-kind="button"]', "the first alarm")
        first_id = await page.attr('tr[data-kind="button"]', "data-alarm-id")

        proxy.cut()
        await page.wait_css('#conn[data-status="reconnecting"]', "the page to notice the drop")

        # While the console is cut off: a new alarm, and the first one is acknowledged.
        await publish(
            mosquitto.url, [("devices/lock-1/events", payload("alarm", "t-1", kind="tamper"))]
        )
        r = await http.post(f"/api/v1/alarms/{first_id}/acknowledge", headers=auth(s.tenant))
        assert r.status_code == 200

        async def both_in_api() -> bool:
            r = await http.get("/api/v1/console/alarms", headers=auth(s.tenant))
            return len(r.json()["alarms"]) == 2

        await wait_for(both_in_api, 10, "both alarms in the API")
        assert await page.count('tr[data-kind="tamper"]') == 0  # it really was cut off
        resumed_from = len(proxy.requests)
        proxy.restore()

        await page.wait_css('#conn[data-status="live"]', "reconnected", timeout=40)
        await page.wait_css('tr[data-kind="tamper"]', "the alarm raised during the drop")
        await page.wait_css(f'tr[data-alarm-id="{first_id}"][data-state="acknowledged"]',
                            "the acknowledgement made during the drop")  # fmt: skip
        assert await page.count("tr[data-alarm-id]") == 2  # each alarm once
        assert await page.count(f'tr[data-alarm-id="{first_id}"]') == 1

        # The reconnect asked for what came after the last event it had seen.
        streams = [r for r in proxy.requests[resumed_from:] if b"/api/v1/alarms/stream" in r]
        assert streams, proxy.requests
        last_ids = [re.search(rb"(?i)last-event-id: (\d+)", r) for r in streams]
        assert all(last_ids), streams
        assert int(last_ids[0].group(1)) > 0  # type: ignore[union-attr]
        errors = [e for e in await page.console_errors() if "ERR_" not in e]
        assert errors == [], errors
