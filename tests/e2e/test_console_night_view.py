"""The console's night view (issue #20), in a real headless Chromium against the real
gateway: tonight's planned checks per person, their results as they happen (a resident in
bed: OK; one out of bed: retried, then not OK with the alarm it raised), in Swedish and in
English. The sensors are the simulators (device_sims.sensors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import psycopg

from api.auth import Role
from device_sims.sensors import NightScript, SensorSim
from gateway.adapters.postgres import registry_repo as repo
from tests.e2e.browser import browser
from tests.e2e.stack import console_stack, token
from tests.integration.harness import publish, wait_for

TENANT = "kommun-n"


async def _seed(url: str) -> dict[str, str]:
    since = datetime.now(UTC) - timedelta(days=1)
    persons: dict[str, str] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await repo.create_tenant(conn, TENANT, "Kommun N", "municipality", "212000-0881")
        await repo.ensure_device_model(
            conn, repo.DeviceModel("t-bed", "Acme", "Bed", "bed_sensor", 60)
        )
        for ref, bed in (("N-1001", "n-bed-1"), ("N-1002", "n-bed-2")):
            person = await repo.create_person(conn, TENANT, ref)
            persons[ref] = str(person)
            await repo.register_device(conn, TENANT, bed, "t-bed")
            await repo.assign_device(conn, bed, person, since)
    return persons


async def test_the_night_view_shows_checks_as_they_happen(mosquitto, database_url) -> None:
    persons = await _seed(database_url)
    admin = {"Authorization": f"Bearer {token(TENANT, Role.TENANT_ADMIN)}"}
    operator = {"Authorization": f"Bearer {token(TENANT)}"}
    async with (
        console_stack(mosquitto.url, database_url) as (base, _gw),
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        check_at = datetime.now(UTC) + timedelta(seconds=12)
        local = check_at.astimezone(ZoneInfo("Europe/Stockholm")).strftime("%H:%M:%S")
        for person in persons.values():
            r = await http.post(
                f"/api/v1/persons/{person}/supervision/decisions",
                headers=admin,
                json={"service": "night_supervision",
                      "valid_from": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                      "person_consent_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat()},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            r = await http.put(
                f"/api/v1/persons/{person}/supervision/plan",
                headers=admin,
                json={"check_times": [local], "seen": "in_bed", "retry_after_s": 2,
                      "team": "night_team"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
        t0 = datetime.now(UTC) - timedelta(seconds=30)
        in_bed = NightScript(bed=SensorSim("n-bed-1", "bed_sensor"))
        in_bed.awake(t0).goes_to_bed(t0 + timedelta(seconds=5))
        up = NightScript(bed=SensorSim("n-bed-2", "bed_sensor"))
        up.awake(t0).goes_to_bed(t0 + timedelta(seconds=5)).gets_up(t0 + timedelta(seconds=20))
        sent = sorted([*in_bed.messages(), *up.messages()], key=lambda s: s.at)
        await publish(mosquitto.url, [(s.topic, s.out.payload) for s in sent])

        async def stored() -> bool:
            r = await http.get("/api/v1/supervision/night", headers=operator)
            return len(r.json()["persons"]) == 2

        await wait_for(stored, 10, "both plans in the night view")

        async with browser(base, 1366, 768) as page:
            await page.sign_in_with_fragment(token(TENANT))
            await page.js("location.hash = '#/night'")
            await page.wait_css("#view-night", "the night view")
            # before the check: planned
            await page.wait_css('.night-person tr[data-status="planned"]', "planned checks")
            assert "Planerad" in await page.text("#night-body")
            # as it happens: OK for the one in bed; retried then not OK for the one who is up
            await page.wait_css('.night-person tr[data-status="ok"]', "an OK check", timeout=30)
            await page.wait_css('.night-person tr[data-status="not_ok"]', "a not-OK check",
                                timeout=30)  # fmt: skip
            body = await page.text("#night-body")
            assert "N-1001" in body and "N-1002" in body
            assert "Ej OK" in body and "Nytt försök" in body and "inte i sängen" in body
            await page.wait_css('#night-alarms li[data-kind="supervision_not_ok"]',
                                "the alarm it raised")  # fmt: skip
            up_row = f'.night-person[data-person-id="{persons["N-1002"]}"] tr[data-status="not_ok"]'
            assert await page.attr(f"{up_row} a", "href")
            # English
            await page.click("#lang")
            await page.wait(lambda d: "Not OK" in d.find_element("css selector",
                            "#night-body").text, "the view in English")  # fmt: skip
            body = await page.text("#night-body")
            assert "Retried" in body and "out of bed" in body and "Supervision not OK" in body
            assert await page.text("#nav-night") == "Night"
            assert await page.console_errors() == []
