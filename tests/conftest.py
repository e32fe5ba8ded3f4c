from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import Mosquitto, Postgres

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="wg-xdg-"))

API_PASSWORD = "test-api-password"


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
    from gateway.storage.migrate import migrate

    server = Postgres(tmp_path_factory.mktemp("pg") / "data")
    template_url = server.create_database()
    migrate(template_url, api_password=API_PASSWORD)
    _partitions(template_url)
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
    from gateway.storage.migrate import migrate

    server = Postgres(tmp_path / "pgdata")
    url = server.create_database()
    migrate(url, api_password=API_PASSWORD)
    server.url_for_test = url  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def _partitions(url: str) -> None:
    from datetime import UTC, datetime

    import psycopg

    from gateway.settings import RetentionDays
    from gateway.storage import partitions

    with psycopg.connect(url, autocommit=True) as conn:
        partitions.maintain(conn, RetentionDays(), datetime.now(UTC))
