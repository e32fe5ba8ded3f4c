"""The browser harness itself: a wait on the live board survives an element that the page
replaced between finding it and reading it (the board re-renders rows as ages tick).

Seen in CI: ``page.wait(lambda d: d.find_element(...).text ...)`` failed with
StaleElementReferenceException when the age cell was re-rendered in between."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.browser import browser

# An element replaced on every animation frame: most reads of a found element go stale.
CHURN = (
    "data:text/html,<p id='x'>0</p><script>let n=0;function f(){const p=document"
    ".createElement('p');p.id='x';p.textContent=String(++n);document.getElementById('x')"
    ".replaceWith(p);requestAnimationFrame(f)}requestAnimationFrame(f)</script>"
)


async def test_a_wait_polls_again_when_its_element_went_stale() -> None:
    async with browser("http://127.0.0.1:9") as page:
        await page.call(page.driver.get, CHURN)
        stale_once = []

        def condition(d: object) -> bool:
            element = page.driver.find_element(By.ID, "x")
            if not stale_once:
                # Make the race certain: the page replaces the element before we read it.
                page.driver.execute_script(
                    "const p=document.createElement('p');p.id='x';"
                    "document.getElementById('x').replaceWith(p)"
                )
                stale_once.append(True)
            return int(element.text or 0) > 30

        assert await page.wait(condition, "the churning element to count past 30")
        assert stale_once


async def test_a_wait_that_never_holds_says_what_it_waited_for() -> None:
    async with browser("http://127.0.0.1:9") as page:
        await page.call(page.driver.get, CHURN)
        with pytest.raises(TimeoutError, match="a count that never comes"):
            await page.wait(
                lambda d: d.find_element(By.ID, "x").text == "never", "a count that never comes",
                timeout=0.5,
            )
