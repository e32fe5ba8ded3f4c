"""The follow-up report in the console (issue #21.1), in a real headless Chromium behind a
strict Content-Security-Policy: the tenant admin opens the report view for the month of a
seeded history and the server's SVG charts are drawn in the page (bars with their values,
the municipality's target line on the response-time charts); Swedish, then English; an
auditor signs in to the report alone (no alarm board, no fleet view). A screenshot goes
to docs/report.png (``WG_UPDATE_DOCS=1``)."""

from __future__ import annotations

import httpx

from api.auth import Role
from gateway.domain.followup import ZONE
from tests.e2e.browser import browser, copy_to_docs
from tests.e2e.stack import auth, console_stack, token
from tests.integration.test_report import TENANT, at, history, the_period

CHARTS = ("services", "unused", "response-by-kind", "response-by-hour", "escalations",
          "conditions", "visits", "supervision")  # fmt: skip


async def test_the_report_view_draws_the_charts_with_the_target_line(
    mosquitto, database_url
) -> None:
    period = the_period()
    await history(database_url, period)
    raised = at(period, 5, 12).astimezone(ZONE)
    month = f"{raised.year}-{raised.month:02d}"  # the month of the seeded alarms
    async with console_stack(mosquitto.url, database_url) as (base, _gw):
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.put("/api/v1/reports/target", headers=auth(TENANT, Role.TENANT_ADMIN),
                               json={"ack_within_s": 60, "ack_share": 0.8})  # fmt: skip
            assert r.status_code == 200, r.text

        async with browser(base, height=1800) as page:
            await page.sign_in_with_fragment(token(TENANT, Role.TENANT_ADMIN))
            await page.click("#nav-report")
            await page.wait_css("#view-report:not([hidden])", "the report view")
            await page.js(
                "const m = document.getElementById('report-month');"
                "m.value = arguments[0]; m.dispatchEvent(new Event('change'));",
                month,
            )
            await page.wait_css(
                f'#report-body[data-month="{month}"] .report-page'
                ' svg[data-chart="services"] rect.bar',
                "the month's charts",
            )
            assert await page.text(".report-page h1") == f"Uppföljningsrapport: {TENANT}"
            for chart in CHARTS:
                assert await page.count(f'.report-page svg[data-chart="{chart}"]') == 1, chart
            # drawn marks: bars with a height, and the target line across the plot
            bars = await page.js(
                "return [...document.querySelectorAll("
                "'.report-page svg[data-chart=\"services\"] rect.bar')]"
                ".map(r => [Number(r.dataset.value), r.getBoundingClientRect().height])"
            )
            assert [v for v, _ in bars] == [0, 3, 0, 1, 2, 0, 3, 1, 1, 2], bars  # devices, users
            assert all((h > 0) == (v > 0) for v, h in bars), bars
            assert await page.count('svg[data-chart="response-by-kind"] rect.bar') >= 1
            for chart in ("response-by-kind", "response-by-hour"):
                line = f'svg[data-chart="{chart}"] line.target-line'
                assert await page.attr(line, "data-value") == "0.8"
                width = await page.js(
                    "return document.querySelector(arguments[0]).getBoundingClientRect().width",
                    line,
                )
                assert width > 300, (chart, width)
            # the users per national category; no safety alarm in the registry
            assert "Digital nattillsyn" in await page.text(".report-page")
            assert "Inte i bruk" in await page.text(".report-page")
            assert not await page.console_errors()
            shot = await page.screenshot("report.png")
            copy_to_docs(shot, "report.png")

            await page.keys("l")  # English
            await page.wait_css(".report-page h1", "the English report")
            await page.wait(
                lambda d: d.execute_script(
                    "const h = document.querySelector('.report-page h1');"
                    "return h && h.innerText.startsWith('Follow-up report')"
                ),
                "the report in English",
            )
            assert await page.count('svg[data-chart="response-by-hour"] line.target-line') == 1

        # an auditor: the report alone
        async with browser(base) as page:
            await page.open(f"/console/#access_token={token(TENANT, Role.AUDITOR, 'revisor')}")
            await page.wait_css("#view-report:not([hidden])", "the auditor's report view")
            # last month by default, drawn without choosing
            await page.wait_css('.report-page svg[data-chart="services"]', "the auditor's charts")
            assert await page.js("return document.getElementById('nav-board').hidden")
            assert await page.js("return document.getElementById('nav-fleet').hidden")
            assert not await page.js("return document.getElementById('nav-report').hidden")
