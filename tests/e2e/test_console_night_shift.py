"""What a night nurse reads off the console (issue #18), in a real headless Chromium against
the real gateway: at least 8 alarm rows at 1366x768, the tab title's count from the first
load, the tenant's name, reasons in words, and every time in the tenant's time zone
(Europe/Stockholm) whatever the browser's own zone and language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from tests.e2e.browser import browser, copy_to_docs
from tests.e2e.stack import auth, console_stack, token
from tests.e2e.test_console_detail_fleet import add_home_zone
from tests.integration.harness import payload, publish, seed, wait_for

STOCKHOLM = ZoneInfo("Europe/Stockholm")
GPS = ("gps-1", "gps-2", "gps-3")
# 3 GPS alarms x (button, fall, tamper), a lock opened by an unknown key, a scale's battery
DEVICES = {**{d: "t-gps" for d in GPS}, "lock-1": "t-lock", "scale-1": "t-scale"}

# Every row of the board: its top, bottom and whether its action buttons share one line.
ROWS_JS = """
    const rows = [...document.querySelectorAll('#board-rows tr[data-alarm-id]')];
    return {
      height: window.innerHeight,
      width: window.innerWidth,
      scrollWidth: document.documentElement.scrollWidth,
      rows: rows.map((r) => {
        const box = r.getBoundingClientRect();
        const tops = [...r.querySelectorAll('.act')].map((b) => b.getBoundingClientRect().top);
        return { top: box.top, bottom: box.bottom, oneLine: new Set(tops).size === 1 };
      }),
    };
"""


def stockholm(iso: str) -> str:
    """The console's one time format, in Stockholm: "2025-01-05 21:14:03"."""
    return datetime.fromisoformat(iso).astimezone(STOCKHOLM).strftime("%Y-%m-%d %H:%M:%S")


def visible_rows(layout: dict[str, object]) -> int:
    rows = layout["rows"]
    assert isinstance(rows, list)
    return sum(1 for r in rows if r["top"] >= 0 and r["bottom"] <= layout["height"])


async def test_eight_rows_at_1366x768_title_and_tenant_name(mosquitto, database_url) -> None:
    s = await seed(database_url, devices=DEVICES)
    async with console_stack(mosquitto.url, database_url) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http:  # fmt: skip
        # The alarms are open before the console is: the page learns them from its snapshot.
        await publish(mosquitto.url, [
            *[(f"devices/{d}/events", payload("alarm", f"{d}-{k}", kind=k))
              for d in GPS for k in ("button", "fall", "tamper")],
            ("devices/lock-1/events", payload(
                "lock", "u-1", action="unlocked", method="app", key_id="key-nobody")),
        ])  # fmt: skip
        expected = len(GPS) * 3 + 1

        async def all_open() -> bool:
            r = await http.get("/api/v1/console/alarms", headers=auth(s.tenant))
            return len(r.json()["alarms"]) == expected

        await wait_for(all_open, 15, f"{expected} open alarms")

        async with browser(base, 1366, 768) as page:
            await page.sign_in_with_fragment(token(s.tenant))
            await page.wait(
                lambda d: len(d.find_elements("css selector", "tr[data-alarm-id]")) == expected,
                "every alarm on the board",
            )
            # The tab counts the unacknowledged alarms from the first load, before any
            # live event; the header names the municipality, not its id.
            assert await page.js("return document.title") == f"({expected}) Nattillsyn"
            assert await page.text("#tenant") == "Huvudman: Kommun-A"
            assert await page.attr("#tenant", "data-tenant") == "kommun-a"
            assert (
                await page.text("#board-count") == f"{expected} öppna larm, {expected} okvitterade"
            )
            assert await page.js("return document.documentElement.scrollHeight") > 768  # scrolls

            layout = await page.js(ROWS_JS)
            assert (layout["width"], layout["height"]) == (1366, 768)
            assert all(r["oneLine"] for r in layout["rows"]), layout  # buttons never wrap
            assert visible_rows(layout) >= 8, layout
            assert layout["scrollWidth"] <= 1366, layout  # no sideways scrolling

            # A new alarm live: the banner takes room, 8 rows still fit; the title follows.
            await publish(
                mosquitto.url,
                [("devices/scale-1/events", payload("battery_low", "bl-1", percent=7))],
            )
            await page.wait_css('tr[data-kind="battery_low"]', "the live alarm")
            await page.wait_css("#banner", "the banner")
            assert await page.js("return document.title") == f"({expected + 1}) Nattillsyn"
            layout = await page.js(ROWS_JS)
            assert all(r["oneLine"] for r in layout["rows"]), layout
            assert visible_rows(layout) >= 8, layout
            shot = await page.screenshot("console-board.png")
            copy_to_docs(shot, "console-board.png")

            # Acknowledging one: the title counts one fewer; plural and singular forms.
            await page.click('tr[data-kind="battery_low"] button[data-action="ack"]')
            await page.wait(
                lambda d: d.title == f"({expected}) Nattillsyn", "the title to count down"
            )
            assert (
                await page.text("#board-count")
                == f"{expected + 1} öppna larm, {expected} okvitterade"
            )

            # English is as compact (its labels are longer): still 8 rows, one line each.
            await page.keys("l")
            assert await page.text("#tenant") == "Organisation: Kommun-A"
            assert await page.text("#board-count") == (
                f"{expected + 1} open alarms, {expected} unacknowledged"
            )
            layout = await page.js(ROWS_JS)
            assert all(r["oneLine"] for r in layout["rows"]), layout
            assert visible_rows(layout) >= 8, layout

            # The unauthorised unlock's kind and reason, in words, in both languages.
            row = 'tr[data-kind="unauthorised_unlock"]'
            assert await page.text(f"{row} .c-kind") == "Unauthorised unlock"
            await page.click(f'{row} a[data-action="detail"]')
            await page.wait_css("#detail-reason", "the reason")
            assert await page.text("#detail-reason") == "Unknown key"
            await page.keys("l")
            await page.wait(
                lambda d: d.find_element("id", "detail-reason").text == "Okänd nyckel",
                "the reason in Swedish",
            )
            assert await page.text(".detail-kind") == "Obehörig upplåsning"
            assert await page.console_errors() == []


async def test_times_are_stockholms_in_a_new_york_browser(mosquitto, database_url) -> None:
    s = await seed(database_url, devices={"gps-1": "t-gps"})
    person = s.persons["gps-1"]
    home = (59.8586, 17.6389)
    start = datetime.now(UTC) - timedelta(minutes=3)
    fixes = [(home[0] + i * 0.001, home[1], start + timedelta(seconds=20 * i)) for i in range(4)]
    async with console_stack(mosquitto.url, database_url) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            browser(base, locale="en-US", timezone="America/New_York") as page:  # fmt: skip
        r = await http.get("/api/v1/tenant", headers=auth(s.tenant))
        assert r.json()["time_zone"] == "Europe/Stockholm"
        # The browser really is in New York and American English.
        await page.open("/console/")
        await page.wait_css("#token", "the page")
        zone, locale = await page.js(
            "const o = Intl.DateTimeFormat().resolvedOptions(); return [o.timeZone, o.locale]"
        )
        assert (zone, locale) == ("America/New_York", "en-US")

        await add_home_zone(http, gw, s.tenant, person)
        await page.sign_in_with_fragment(token(s.tenant))
        await publish(mosquitto.url, [
            *[("devices/gps-1/telemetry", payload(
                "position", f"p-{i}", ts=ts.isoformat(), lat=lat, lon=lon, accuracy_m=8))
              for i, (lat, lon, ts) in enumerate(fixes)],
            ("devices/gps-1/events", payload("alarm", "press-1", kind="button")),
        ])  # fmt: skip
        await page.wait_css('tr[data-kind="button"]', "the alarm")
        row = 'tr[data-kind="button"]'
        raised_at = await page.attr(f"{row} time.age", "datetime")
        assert raised_at
        # The board: the age in words (Swedish by default, whatever the browser's
        # language), the exact time in the tenant's zone on hover.
        assert await page.attr(f"{row} time.age", "title") == stockholm(raised_at)
        await page.wait(  # "nu" at 0 s, then "för 1 sekund sedan", …
            lambda d: d.find_element("css selector", f"{row} .c-age").text.endswith(" sedan"),
            "the age in Swedish words",
        )

        alarm_id = await page.attr(row, "data-alarm-id")

        async def track_stored() -> bool:
            r = await http.get(f"/api/v1/console/alarms/{alarm_id}", headers=auth(s.tenant))
            return len(r.json()["track"]) == len(fixes)

        await wait_for(track_stored, 10, "the track stored")
        await page.click(f'{row} a[data-action="detail"]')
        await page.wait_css("svg.track-map circle.fix", "the track")
        await page.wait(
            lambda d: d.find_element("id", "detail-raised").text.startswith(
                f"{stockholm(raised_at)} (för "
            ),
            "the raised time in Stockholm, with its age",
        )
        assert (await page.text("#detail-raised")).endswith(" sedan)")
        # Each fix's tooltip: its time in Stockholm, in the same format.
        tooltips = await page.js(
            "return [...document.querySelectorAll('circle.fix title')].map((t) => t.textContent)"
        )
        assert tooltips == [stockholm(ts.isoformat()) for _, _, ts in fixes]
        assert await page.text("#detail-track") == "Spår 6 timmar bakåt (4 positioner)"
        assert await page.text("#detail-zones") == "Säker zon: Hemma"
        label = await page.attr("svg.track-map", "aria-label")
        assert label == "Karta: 4 positioner och 1 säker zon"

        # English: the same times, the age in English words.
        await page.keys("l")
        await page.wait(
            lambda d: " ago)" in d.find_element("id", "detail-raised").text, "English ages"
        )
        assert (await page.text("#detail-raised")).startswith(stockholm(raised_at) + " (")
        assert await page.text("#detail-zones") == "Safe zone: Hemma"
        assert await page.text("#detail-track") == "Track of the last 6 hours (4 positions)"
        tooltips = await page.js(
            "return [...document.querySelectorAll('circle.fix title')].map((t) => t.textContent)"
        )
        assert tooltips == [stockholm(ts.isoformat()) for _, _, ts in fixes]
        assert await page.console_errors() == []
