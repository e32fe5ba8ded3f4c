"""The night-supervision console in a real headless Chromium against the real gateway: a
device's alarm appears live, is acknowledged and resolved from the page, every open console
follows, and another municipality's alarm never shows."""

from __future__ import annotations

import time

import httpx

from tests.e2e.browser import browser
from tests.e2e.stack import auth, console_stack, token
from tests.integration.harness import payload, publish, seed, wait_for


async def test_live_board_acknowledge_resolve_and_tenants(mosquitto, database_url) -> None:
    await seed(database_url)
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-gps": "t-gps"})
    async with console_stack(mosquitto.url, database_url) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            browser(base) as first, browser(base) as second, browser(base) as other:  # fmt: skip
        # Sign in: pasted token (first), token handed over in the fragment (second, other).
        await first.open("/console")
        await first.wait_css("#token", "the sign-in view")
        assert await first.attr("html", "lang") == "sv"
        await first.call((await first.wait_css("#token")).send_keys, token("kommun-a"))
        await first.click("#signin-form button[type=submit]")
        await first.wait_css('#conn[data-status="live"]', "the live stream")
        assert await first.text("#tenant") == "Huvudman: Kommun-A"
        assert await first.js("return location.hash") in ("", "#/board")
        await second.sign_in_with_fragment(token("kommun-a"))
        assert "access_token" not in await second.js("return location.href")  # not left in
        assert await second.js("return sessionStorage.getItem('wg.console.token')")
        await other.sign_in_with_fragment(token("kommun-b"))

        # An alarm from kommun-a's device appears on both of kommun-a's consoles, live.
        started = time.monotonic()
        await publish(
            mosquitto.url, [("devices/gps-1/events", payload("alarm", "press-1", kind="button"))]
        )
        await first.wait_css('tr[data-kind="button"][data-state="raised"]', "the alarm row")
        latency = time.monotonic() - started
        alarm_id = await first.attr('tr[data-kind="button"]', "data-alarm-id")
        await second.wait_css(f'tr[data-alarm-id="{alarm_id}"]', "the alarm on the second console")
        print(f"\nalarm published -> row on the page: {latency * 1000:.0f} ms")
        assert latency < 2.0
        assert await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-state') == "Nytt"
        assert await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-severity') == "Kritisk"
        assert await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-kind') == "Larmknapp"
        assert await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-occ') == "1"
        assert "Nattpatrull" in await first.text(
            f'tr[data-alarm-id="{alarm_id}"] .c-esc'
        ) or "Hemtjänst" in await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-esc')
        await first.wait_css("#banner", "the visible cue")
        assert "Larmknapp" in await first.text("#banner")
        assert "fresh" in (await first.attr(f'tr[data-alarm-id="{alarm_id}"]', "class") or "")
        assert await first.js("return document.title") == "(1) Nattillsyn"
        age_before = await first.text(f'tr[data-alarm-id="{alarm_id}"] .c-age')
        await first.wait(
            lambda d: (
                d.find_element("css selector", f'tr[data-alarm-id="{alarm_id}"] .c-age').text
                != age_before
            ),
            "the age to tick",
        )

        # kommun-b's alarm reaches kommun-b's console only; kommun-a's never shows there.
        await publish(
            mosquitto.url, [("devices/b-gps/events", payload("alarm", "press-b", kind="fall"))]
        )
        await other.wait_css('tr[data-kind="fall"]', "kommun-b's own alarm")
        b_alarm = await other.attr('tr[data-kind="fall"]', "data-alarm-id")
        assert await other.count(f'tr[data-alarm-id="{alarm_id}"]') == 0
        assert await other.count("tr[data-alarm-id]") == 1
        assert await first.count(f'tr[data-alarm-id="{b_alarm}"]') == 0
        assert await second.count(f'tr[data-alarm-id="{b_alarm}"]') == 0

        # (docs/console-board.png comes from test_console_night_shift: a full board)
        await first.screenshot("console-board-one-alarm.png")

        # Acknowledge from the first page by keyboard (the row is selected): the API says so,
        # and the second console shows it without reload.
        await first.keys("a")

        async def acknowledged_in_api() -> bool:
            r = await http.get(
                "/api/v1/alarms", headers=auth("kommun-a"), params={"state": "acknowledged"}
            )
            return any(a["alarm_id"] == alarm_id for a in r.json())

        await wait_for(acknowledged_in_api, 10, "acknowledged in the API")
        await second.wait_css(
            f'tr[data-alarm-id="{alarm_id}"][data-state="acknowledged"]',
            "the acknowledgement on the second console",
        )
        assert await second.text(f'tr[data-alarm-id="{alarm_id}"] .c-state') == "Kvitterat"
        assert await first.js("return document.title") == "Nattillsyn"
        await first.wait(
            lambda d: not d.find_element("id", "banner").is_displayed(),
            "the banner to go once acknowledged",
        )

        # Resolve from the second console: the outcome is required.
        await second.click(f'tr[data-alarm-id="{alarm_id}"] button[data-action="resolve"]')
        await second.wait_css("#resolve-dialog[open]", "the resolve dialog")
        await second.click("#resolve-submit")
        await second.wait_css("#resolve-error", "the outcome is required")
        assert await second.count("#resolve-dialog[open]") == 1
        await second.js("document.getElementById('resolve-outcome').value = 'visited_ok'")
        await second.call((await second.wait_css("#resolve-note")).send_keys, "Bytt batteri")
        await second.click("#resolve-submit")
        await second.wait_gone("#resolve-dialog[open]", "the dialog to close")
        await first.wait_gone(f'tr[data-alarm-id="{alarm_id}"]', "resolved: off the first board")
        await second.wait_gone(f'tr[data-alarm-id="{alarm_id}"]', "resolved: off the second")

        async def resolved_in_api() -> bool:
            r = await http.get(
                "/api/v1/alarms", headers=auth("kommun-a"), params={"state": "resolved"}
            )
            return [a["outcome"] for a in r.json() if a["alarm_id"] == alarm_id] == [
                "Besök gjort \u2013 allt väl \u2013 Bytt batteri"
            ]

        await wait_for(resolved_in_api, 10, "resolved with the outcome in the API")
        assert await first.wait_css("#board-empty", "the empty board")

        # English on request ('l'), Swedish again.
        await first.keys("l")
        assert await first.text("#nav-board") == "Alarms"
        assert await first.attr("html", "lang") == "en"
        await first.keys("l")
        assert await first.text("#nav-board") == "Larm"

        for page in (first, second, other):
            errors = await page.console_errors()
            assert errors == [], errors  # no CSP violation, no script error
