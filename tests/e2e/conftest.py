from __future__ import annotations

import pytest

from tests.e2e import browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if browser.available():
        return
    skip = pytest.mark.skip(
        reason="needs Debian's chromium and chromium-driver (scripts/test installs them)"
    )
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(skip)
