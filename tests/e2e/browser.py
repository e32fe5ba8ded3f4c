"""A real headless Chromium (Debian's chromium and its matching chromedriver) driven by
Selenium. Selenium blocks, and the gateway and API under test run on the test's event loop,
so every browser call runs in a worker thread (``await page.call(...)``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
T = TypeVar("T")


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def screenshot_dir() -> Path:
    """Where screenshots go: $WG_SCREENSHOT_DIR, else a temporary directory of the run."""
    configured = os.environ.get("WG_SCREENSHOT_DIR")
    path = Path(configured) if configured else Path(_default_dir())
    path.mkdir(parents=True, exist_ok=True)
    return path


_DIR: list[str] = []


def _default_dir() -> str:
    import tempfile

    if not _DIR:
        _DIR.append(tempfile.mkdtemp(prefix="wg-console-shots-"))
    return _DIR[0]


class Page:
    def __init__(self, driver: webdriver.Chrome, base: str) -> None:
        self.driver = driver
        self.base = base

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def open(self, path: str) -> None:
        await self.call(self.driver.get, self.base + path)

    async def js(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_script, script, *args)

    async def js_async(self, script: str, *args: Any) -> Any:
        return await self.call(self.driver.execute_async_script, script, *args)

    async def wait(self, condition: Callable[[webdriver.Chrome], Any], what: str,
                   timeout: float = 10) -> Any:  # fmt: skip
        """Poll ``condition`` (in the browser's thread) until truthy; the value is returned.

        The live board re-renders rows as events arrive and as ages tick, so an element a
        condition found may be replaced before it reads it: that poll counts as not yet."""

        def run() -> Any:
            try:
                return WebDriverWait(
                    self.driver, timeout, poll_frequency=0.03,
                    ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
                ).until(condition)  # fmt: skip
            except TimeoutException:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None

        return await self.call(run)

    async def wait_css(self, selector: str, what: str | None = None,
                       timeout: float = 10) -> WebElement:  # fmt: skip
        def found(d: webdriver.Chrome) -> WebElement | bool:
            try:
                shown = [e for e in d.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]
            except StaleElementReferenceException:
                return False  # re-rendered meanwhile: look again
            return shown[0] if shown else False

        element: WebElement = await self.wait(found, what or selector, timeout)
        return element

    async def wait_gone(self, selector: str, what: str, timeout: float = 10) -> None:
        await self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, selector), what, timeout)

    # Read in one script (atomic): the live board may replace an element between two calls.
    async def attr(self, selector: str, name: str) -> str | None:
        value = await self.js(
            "return document.querySelector(arguments[0]).getAttribute(arguments[1])",
            selector,
            name,
        )
        return None if value is None else str(value)

    async def text(self, selector: str) -> str:
        value = await self.js("return document.querySelector(arguments[0]).innerText", selector)
        return str(value).strip()

    async def count(self, selector: str) -> int:
        return len(await self.call(self.driver.find_elements, By.CSS_SELECTOR, selector))

    async def click(self, selector: str, timeout: float = 10) -> None:
        """Click the first visible match; the live board re-renders rows as events arrive,
        so a row found a moment ago may be replaced: then find it again."""

        def clicked(d: webdriver.Chrome) -> bool:
            try:
                for element in d.find_elements(By.CSS_SELECTOR, selector):
                    if element.is_displayed():
                        element.click()
                        return True
            except StaleElementReferenceException:
                pass
            return False

        await self.wait(clicked, f"to click {selector}", timeout)

    async def keys(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        await self.call(lambda: ActionChains(self.driver).send_keys(*keys).perform())

    async def screenshot(self, name: str) -> Path:
        path = screenshot_dir() / name
        await self.call(self.driver.save_screenshot, str(path))
        return path

    async def console_errors(self) -> list[str]:
        entries = await self.call(self.driver.get_log, "browser")
        return [e["message"] for e in entries if e["level"] == "SEVERE"]

    async def sign_in_with_fragment(self, token: str) -> None:
        await self.open(f"/console/#access_token={token}")
        await self.wait_css('#conn[data-status="live"]', "the live stream")


def _driver(width: int, height: int, locale: str, timezone: str | None) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", f"--lang={locale}",
                "--disable-background-networking", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {**os.environ, "TZ": timezone} if timezone else None
    service = Service(CHROMEDRIVER, env=env)
    driver = webdriver.Chrome(service=service, options=options)
    # The viewport itself is width x height (a headless window's size includes no chrome,
    # but say it exactly so that layout tests measure what a screen of that size shows).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    if timezone:
        # TZ in the browser's environment and the DevTools override: the page's own
        # clock (new Date(), Intl's default zone) is in ``timezone``.
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": timezone})
    return driver


@contextlib.asynccontextmanager
async def browser(
    base: str, width: int = 1280, height: int = 900, *, locale: str = "sv-SE",
    timezone: str | None = None,
) -> AsyncIterator[Page]:  # fmt: skip
    """A headless Chromium at ``width`` x ``height``, its language ``locale`` and, when
    given, its time zone ``timezone`` (else the machine's)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a driver
    driver = await asyncio.to_thread(_driver, width, height, locale, timezone)
    try:
        yield Page(driver, base)
    finally:
        await asyncio.to_thread(driver.quit)


def copy_to_docs(shot: Path, name: str) -> None:
    """With WG_UPDATE_DOCS=1 the run refreshes the screenshots kept in docs/."""
    if os.environ.get("WG_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parents[2] / "docs" / name)
