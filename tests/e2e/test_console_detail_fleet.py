"""The console's alarm detail (person, care notes, device, the track drawn against the safe
zone) and fleet health (silent, low battery, never seen), in a real headless Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg

from api.auth import Role
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import AlarmSettings
from tests.e2e.browser import browser, copy_to_docs
from tests.e2e.stack import auth, console_stack, token
from tests.integration.harness import now_iso, payload, publish, scalar, seed, wait_for

HOME = (59.8586, 17.6389)  # Uppsala
# A walk from home northwards, out of the 200 m safe zone.
WALK = [(HOME[0] + i * 0.0009, HOME[1] + (i % 2) * 0.0004) for i in range(8)]


async def test_detail_draws_the_track_against_the_safe_zone(mosquitto, database_url) -> None:
    s = await seed(database_url)
    person = s.persons["gps-1"]
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(
            "update persons set care_notes = %s where id = %s",
            ("Hörapparat på nattduksbordet. Nyckel i nyckelgömma.", person),
        )
        await conn.commit()
    async with console_stack(mosquitto.url, database_url) as (base, gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            browser(base) as page:  # fmt: skip
        await add_home_zone(http, gw, s.tenant, person)
        await page.sign_in_with_fragment(token(s.tenant))
        await publish(
            mosquitto.url,
            [
                ("devices/gps-1/heartbeat", payload("heartbeat", "hb-1", battery_percent=64)),
                *walk_messages(),
            ],
        )
        await page.wait_css('tr[data-kind="geofence_exit"]', "the geofence alarm")
        alarm_id = await page.attr('tr[data-kind="geofence_exit"]', "data-alarm-id")
        await wait_for(lambda: _positions_stored(database_url, len(WALK)), 10, "positions stored")

        await page.click(f'tr[data-alarm-id="{alarm_id}"] a[data-action="detail"]')
        await page.wait_css("svg.track-map polyline.track", "the track")
        assert await page.attr("svg.track-map polyline.track", "data-points") == str(len(WALK))
        assert await page.count("svg.track-map circle.fix") == len(WALK)
        assert await page.count('svg.track-map circle.zone[data-zone="Hemma"]') == 1
        assert await page.count("svg.track-map path.alarm-pos") == 1
        assert await page.text("#detail-person") == "kommun-a-brukare-1"
        assert "Hörapparat" in await page.text("#detail-notes")
        assert await page.text("#detail-battery") == "64 %"
        last_seen = await page.text("#detail-last-seen")  # "… (nu)", "… (för 2 sekunder sedan)"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((nu|för .+ sedan)\)", last_seen)
        assert await page.js("return location.hash") == f"#/alarm/{alarm_id}"
        # The zone is drawn where the first fix is: inside it; the last fix is outside.
        inside, outside = await page.js("""
            const zone = document.querySelector('circle.zone');
            const [cx, cy, r] = ['cx', 'cy', 'r'].map((a) => Number(zone.getAttribute(a)));
            const fixes = [...document.querySelectorAll('circle.fix')];
            const dist = (c) => Math.hypot(Number(c.getAttribute('cx')) - cx,
                                           Number(c.getAttribute('cy')) - cy);
            return [dist(fixes[0]) < r, dist(fixes[fixes.length - 1]) > r];
        """)
        assert inside and outside
        shot = await page.screenshot("console-detail.png")
        copy_to_docs(shot, "console-detail.png")
        # Reading the person's care notes and track is in the access log.
        logged = await scalar(
            database_url,
            "select count(*) from access_log where person_id = %s"
            " and categories = array['care_notes', 'position']",
            (person,),
        )
        assert logged == 1

        # Acknowledge from the detail view ('a'); Esc back to the board.
        await page.keys("a")
        await page.wait_css('.detail-head[data-state="acknowledged"]', "acknowledged in detail")
        await page.keys("\ue00c")  # Escape
        await page.wait_css(
            f'tr[data-alarm-id="{alarm_id}"][data-state="acknowledged"]', "back on the board"
        )
        assert await page.console_errors() == []


async def add_home_zone(http: httpx.AsyncClient, gw: Any, tenant: str, person: UUID) -> None:
    """A 200 m safe zone around ``HOME`` through the API; returns once the alarm engine
    has it."""
    r = await http.post(
        f"/api/v1/persons/{person}/geofences",
        headers=auth(tenant, Role.TENANT_ADMIN),
        json={
            "name": "Hemma",
            "shape": {"type": "circle", "lat": HOME[0], "lon": HOME[1], "radius_m": 200},
        },
    )
    assert r.status_code == 201, r.text

    async def zone_loaded() -> bool:
        rules = gw.alarms.persons.get(person)
        return bool(rules and rules.zones)

    await wait_for(zone_loaded, 10, "the safe zone in the alarm engine")


def walk_messages() -> list[tuple[str, bytes]]:
    """gps-1's positions along ``WALK``, 30 s apart, ending now: out of the 200 m zone."""
    start = datetime.now(UTC) - timedelta(seconds=len(WALK) * 30)
    return [
        (
            "devices/gps-1/telemetry",
            payload(
                "position",
                f"p-{i}",
                (start + timedelta(seconds=30 * i)).isoformat(),
                lat=lat,
                lon=lon,
                accuracy_m=12,
            ),
        )
        for i, (lat, lon) in enumerate(WALK)
    ]


async def _positions_stored(url: str, n: int) -> bool:
    return bool(await scalar(url, "select count(*) from positions") == n)


async def test_fleet_health_silent_low_battery_never_seen(mosquitto, database_url) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.ensure_device_model(
            conn, repo.DeviceModel("t-watch", "Acme", "Watch", "gps_alarm", 5)
        )
        await conn.commit()
    s = await seed(database_url, devices={"gps-1": "t-gps", "watch-1": "t-watch"})
    await seed(database_url, tenant="kommun-b", org="212000-0002", devices={"b-watch": "t-watch"})
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await repo.register_device(conn, s.tenant, "spare-1", "t-gps")  # in stock, never seen
        await conn.commit()
    # Silent after 5 s x 0.2 + 0 s = 1 s without a message.
    rules = AlarmSettings(silence_factor=0.2, silence_grace_s=0)
    async with console_stack(mosquitto.url, database_url, alarms=rules) as (base, _gw), \
            httpx.AsyncClient(base_url=base, timeout=10) as http, \
            browser(base, width=820, height=1180) as page:  # fmt: skip
        # A bad token is refused: back to sign-in with a message.
        await page.open("/console/#access_token=not-a-token")
        await page.wait_css("#signin-error", "the sign-in error")
        assert "gått ut eller är ogiltig" in await page.text("#signin-error")

        await publish(
            mosquitto.url,
            [
                ("devices/gps-1/heartbeat", payload("heartbeat", "hb-g", battery_percent=12)),
                (
                    "devices/watch-1/heartbeat",
                    payload("heartbeat", "hb-w", now_iso(-30), battery_percent=80),
                ),
                ("devices/b-watch/heartbeat", payload("heartbeat", "hb-b", now_iso(-30))),
            ],
        )

        async def watch_silent() -> bool:
            r = await http.get("/api/v1/console/fleet-health", headers=auth(s.tenant))
            return any(d["device_id"] == "watch-1" for d in r.json()["silent"])

        await wait_for(watch_silent, 15, "watch-1 silent in the API")
        await page.sign_in_with_fragment(token(s.tenant))
        await page.keys("f")
        await page.wait_css('#fleet-silent tr[data-device-id="watch-1"]', "the silent device")
        await page.wait_css('#fleet-low-battery tr[data-device-id="gps-1"]', "the low battery")
        await page.wait_css('#fleet-never-seen tr[data-device-id="spare-1"]', "never seen")
        assert await page.count('tr[data-device-id="b-watch"]') == 0  # another municipality
        assert await page.count('#fleet-low-battery tr[data-device-id="watch-1"]') == 0
        assert "12 %" in await page.text('#fleet-low-battery tr[data-device-id="gps-1"]')
        assert await page.text("#fleet-title") == "Enheternas hälsa"
        await page.screenshot("console-fleet-tablet.png")
        errors = await page.console_errors()
        assert errors and all("/api/v1/console/me" in e and "401" in e for e in errors), errors
