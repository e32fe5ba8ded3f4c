"""The log review in the console (issue #21.2-3), in a real headless Chromium behind a
strict Content-Security-Policy: an auditor signs in (the follow-up report and the log
review, no board, no fleet), opens the log review, sees the flags of a seeded history
with the rules in words, marks one reviewed with a comment (kept, shown, and in the
access log), hides the reviewed, and downloads a resident's log extract (written to the
access log); in English the rules are in English."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from api.auth import Role
from tests.e2e.browser import browser
from tests.e2e.stack import console_stack, token
from tests.integration.harness import scalar, seed, wait_for
from tests.integration.test_log_review import _seed_history


async def test_the_auditor_reviews_a_flag_and_downloads_an_extract(mosquitto, database_url):
    since = datetime.now(UTC) - timedelta(days=60)
    a = await seed(database_url, since=since)
    b = await seed(database_url, "kommun-b", "212000-0002", {"gps-b": "t-gps"}, since)
    p = {"P1": a.persons["gps-1"], "P2": a.persons["scale-1"], "P3": a.persons["bp-1"],
         "P4": a.persons["lock-1"], "PB": b.persons["gps-b"]}  # fmt: skip
    rows = await _seed_history(database_url, p)
    async with (
        console_stack(mosquitto.url, database_url) as (base, _gw),
        browser(base, height=1400, timezone="Europe/Stockholm") as page,
    ):
        await page.open(f"/console/#access_token={token('kommun-a', Role.AUDITOR, 'per')}")
        await page.wait_css("#nav-log:not([hidden])", "the log review link")
        assert await page.js("return document.getElementById('nav-board').hidden")
        assert await page.js("return document.getElementById('nav-fleet').hidden")
        await page.click("#nav-log")
        await page.wait_css("#view-log:not([hidden])", "the log review view")
        await page.wait_css("table.log-flags tbody tr", "the flags of the seeded history")
        keys = await page.js(
            "return [...document.querySelectorAll('table.log-flags tbody tr')]"
            ".map(r => r.dataset.key)"
        )
        # the default period (the last 7 days) holds the seeded day: its flags with
        # the default thresholds (10 residents: no burst; 72 h; 07-22)
        assert keys == [
            f"no_context:{rows['r7']}", f"no_context:{rows['r8']}",
            f"no_context:{rows['r9']}", f"no_context:{rows['r3']}",
            f"near_consent_end:{rows['r4']}", f"after_consent_end:{rows['r5']}",
            f"no_context:{rows['r6']}", f"outside_hours:{rows['r6']}",
        ]  # fmt: skip
        row = f'tr[data-key="no_context:{rows["r3"]}"]'
        assert "utan öppet larm eller planerat besök" in await page.text(f"{row} td:nth-child(2)")
        assert await page.text(f"{row} details summary") == (
            "Läste weight utan öppet larm och utan eget planerat besök"
        )
        near_row = f'tr[data-key="near_consent_end:{rows["r4"]}"]'
        assert (await page.text(f"{near_row} details summary")).startswith(
            "Läste 60 min före samtyckets slut"
        )
        await page.js(
            "const i = document.querySelector(arguments[0]);"
            "i.value = 'Anna täckte upp för en sjuk kollega.';",
            f"{row} input.log-comment",
        )
        await page.click(f"{row} .log-review button")
        await page.wait_css(f"{row}.reviewed .log-reviewed", "the review shown")
        assert "Anna täckte upp för en sjuk kollega." in await page.text(f"{row} .log-reviewed")
        assert await scalar(database_url, "select comment from log_review_marks"
                            " where flag_key = %s", (f"no_context:{rows['r3']}",)) == (
            "Anna täckte upp för en sjuk kollega.")  # fmt: skip

        # only the flags not yet reviewed
        await page.click("#log-open")
        await page.wait(
            lambda d: (
                d.execute_script(
                    "return document.querySelectorAll('table.log-flags tbody tr').length"
                )
                == len(keys) - 1
            ),
            "the reviewed flag hidden",
        )
        assert await page.count(row) == 0

        # a resident's extract, downloaded with the token: written to the access log
        near = f'tr[data-key="near_consent_end:{rows["r4"]}"]'
        await page.click(f'{near} button[data-format="csv"]')

        async def extracted() -> bool:
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                cur = await conn.execute(
                    "select count(*) from access_log where purpose = 'log extract'"
                    " and person_id = %s and actor = 'per'", (p["P3"],))  # fmt: skip
                found = await cur.fetchone()
                return bool(found and found[0])

        await wait_for(extracted, 15, "the extract in the access log")
        assert not await page.console_errors()

        await page.keys("l")  # English
        await page.wait(
            lambda d: d.execute_script(
                "const c = document.querySelector('table.log-flags tbody tr td:nth-child(2)');"
                "return c && c.innerText === 'Read with no open alarm or planned visit'"
            ),
            "the rules in English",
        )
