"""The fleet view's refused messages (issue #19.7), in a real headless Chromium: a vendor's
watch firmware sends a field the contract does not have, so three watches of one model
are refused for one reason and that model stands out at the top; a GPS alarm sending a
weight is listed under its own model with its reason in words; another municipality's
refused watch never shows; Swedish and English; a technician signs in to the fleet view
alone and sees it too; an operator does not see the section."""

from __future__ import annotations

from typing import Any

import psycopg

from api.auth import Role
from gateway.adapters.postgres import registry_repo as repo
from tests.e2e.browser import Page, browser
from tests.e2e.stack import console_stack, token
from tests.integration.harness import payload, publish, seed, wait_count

DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign, as the page writes them
WATCH = '#fleet-refused section.refused-model[data-model-id="t-watch"]'
GPS = '#fleet-refused section.refused-model[data-model-id="t-gps"]'


def bad_position(msg_id: str) -> bytes:
    """The firmware bug: ``speed_kmh`` is not in the contract (schema_violation)."""
    return payload("position", msg_id, lat=59.61, lon=16.55, accuracy_m=5, speed_kmh=3.5)


async def wait_text(page: Page, selector: str, expected: str) -> None:
    def shown(driver: Any) -> bool:
        text = driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null",
            selector,
        )
        return text is not None and str(text).strip() == expected

    await page.wait(shown, f"{selector} to read {expected!r}")


async def test_a_model_whose_devices_are_refused_for_one_reason_stands_out(
    mosquitto, database_url
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.ensure_device_model(
            conn, repo.DeviceModel("t-watch", "Acme", "Watch", "gps_alarm", 60)
        )
        await conn.commit()
    s = await seed(database_url, devices={
        "watch-1": "t-watch", "watch-2": "t-watch", "watch-3": "t-watch", "gps-1": "t-gps"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-watch": "t-watch"})
    async with console_stack(mosquitto.url, database_url) as (base, _gw):
        await publish(mosquitto.url, [
            ("devices/watch-1/telemetry", bad_position("w1-a")),
            ("devices/watch-1/telemetry", bad_position("w1-b")),
            ("devices/watch-2/telemetry", bad_position("w2-a")),
            ("devices/watch-3/telemetry", bad_position("w3-a")),
            ("devices/gps-1/telemetry", payload("weight", "g-kg", kg=70.0)),
            ("devices/b-watch/telemetry", bad_position("bw-a")),
        ])  # fmt: skip
        await wait_count(database_url, "select count(*) from quarantine", 6)

        async with browser(base) as page:
            await page.sign_in_with_fragment(token(s.tenant, Role.TENANT_ADMIN))
            await page.keys("f")
            await page.wait_css(f'{WATCH}[data-pattern="true"]', "the watch model standing out")
            assert await page.text("#fleet-refused-h") == "Avvisade meddelanden (4)"
            # the model with the most refusing devices first, framed, with the reason in words
            first = await page.attr("#fleet-refused section.refused-model", "data-model-id")
            assert first == "t-watch"
            assert await page.text(f"{WATCH} h4") == (
                f"Acme Watch · GPS-larm {DASH} 3 enheter, 4 avvisade meddelanden")
            assert "troligen ett fel i tillverkarens programvara" in await page.text(
                f"{WATCH} .refused-pattern")
            assert await page.text(f'{WATCH} li[data-reason="schema_violation"]') == (
                "Ett fält bryter mot kontraktet: 3 enheter, 4 avvisade meddelanden")
            assert await page.count(f"{WATCH} tr[data-device-id]") == 3
            assert await page.attr(f"{WATCH} tbody tr", "data-device-id") == "watch-1"  # most first
            assert f"Ett fält bryter mot kontraktet {TIMES} 2" in await page.text(
                f'{WATCH} tr[data-device-id="watch-1"]')
            # one GPS alarm with another reason: listed, not framed as a pattern
            assert await page.attr(GPS, "data-pattern") == "false"
            assert await page.count(f"{GPS} .refused-pattern") == 0
            assert f"Meddelande som enhetstypen inte skickar {TIMES} 1" in await page.text(
                f'{GPS} tr[data-device-id="gps-1"]')
            assert await page.count('#fleet-refused tr[data-device-id="b-watch"]') == 0
            await page.screenshot("console-fleet-refused.png")

            await page.keys("l")  # English
            await wait_text(page, f'{WATCH} li[data-reason="schema_violation"]',
                            "A field breaks the contract: 3 devices, 4 refused messages")
            assert await page.text("#fleet-refused-h") == "Refused messages (4)"
            assert f"A message its device type does not send {TIMES} 1" in await page.text(
                f'{GPS} tr[data-device-id="gps-1"]')
            assert await page.console_errors() == []

        # the technician (installer) signs in to the fleet view alone: no board, no stream
        async with browser(base) as tech:
            await tech.open(f"/console/#access_token={token(s.tenant, Role.INSTALLER)}")
            await tech.wait_css(f'{WATCH}[data-pattern="true"]', "the technician's refused list")
            assert await tech.js(
                "return ['nav-board', 'conn', 'view-board'].map((id) =>"
                " document.getElementById(id).hidden)") == [True, True, True]
            assert await tech.count('#fleet-refused tr[data-device-id="watch-2"]') == 1
            await tech.keys("b")  # no board for a technician: the fleet view stays
            assert await tech.js("return document.getElementById('view-fleet').hidden") is False
            assert await tech.console_errors() == []

        # an operator's fleet view has no refused messages (and asks for none)
        async with browser(base) as night:
            await night.sign_in_with_fragment(token(s.tenant, Role.OPERATOR))
            await night.keys("f")
            await night.wait_css("#fleet-never-seen", "the operator's fleet view")
            assert await night.count("#fleet-refused") == 0
            assert await night.console_errors() == []
