from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Mosquitto, Postgres

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="wg-xdg-"))

API_PASSWORD = "test-api-password"
WORKER_PASSWORD = "test-worker-password"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


#: The dynamic-security admin of ``dynsec_mosquitto`` (what ``mosquitto_ctrl dynsec init``
#: creates); only the gateway's broker-access adapter uses it.
DYNSEC_ADMIN = ("wg-admin", "test-dynsec-admin-password")


@pytest.fixture
def dynsec_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto with the dynamic security plugin: no anonymous access."""
    broker = Mosquitto(tmp_path / "mosquitto-dynsec", dynsec_admin=DYNSEC_ADMIN).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    from gateway.adapters.postgres.migrate import migrate

    server = Postgres(tmp_path_factory.mktemp("pg") / "data")
    template_url = server.create_database()
    migrate(template_url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
    server.template = server.last_name  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres: Postgres) -> str:
    """A fresh, migrated database for one test (owner connection)."""
    return postgres.create_database(template=postgres.template)  # type: ignore[attr-defined]


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[Postgres]:
    """A PostgreSQL of the test's own, for tests that stop and start the server."""
    from gateway.adapters.postgres.migrate import migrate

    server = Postgres(tmp_path / "pgdata")
    url = server.create_database()
    migrate(url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
    server.url_for_test = url  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


# --- a real TimescaleDB: Debian's PostgreSQL 15 + ../shared/tools/install-timescaledb ----

from tests.services import INSTALL_HINT, DebianPostgres  # noqa: E402


def debian_postgres(*, preload: bool, settings: dict[str, str] | None = None) -> DebianPostgres:
    """A started private PostgreSQL 15 cluster; where PostgreSQL 15 or TimescaleDB is not
    installed, the test fails in CI (``CI`` set: it must run there) and skips elsewhere."""
    reason = DebianPostgres.missing()
    if reason is not None:
        message = f"{reason}: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI must run the TimescaleDB tests: {message}", pytrace=False)
        pytest.skip(message)
    return DebianPostgres(preload=preload, settings=settings).start()


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[DebianPostgres]:
    """PostgreSQL 15 with ``shared_preload_libraries = 'timescaledb'``. TimescaleDB's job
    scheduler is off here (``timescaledb.max_background_workers = 0``) so that the tests
    decide when the compression and retention jobs run (``CALL run_job``)."""
    server = debian_postgres(preload=True, settings={"timescaledb.max_background_workers": "0"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def unloaded_timescale_server() -> Iterator[DebianPostgres]:
    """PostgreSQL 15 with TimescaleDB installed but not preloaded: the extension is
    available, CREATE EXTENSION is refused and the connection closed."""
    server = debian_postgres(preload=False)
    try:
        yield server
    finally:
        server.stop()
