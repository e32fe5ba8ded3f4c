"""Real services for tests: a private Mosquitto (bench.mosquitto) and a private PostgreSQL.

Each starts in a temporary directory on a free loopback port / socket, with its own
configuration, so a test never depends on something left running on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.mosquitto import Mosquitto, free_port, port_open, wait_until

__all__ = ["Mosquitto", "Postgres", "free_port", "port_open", "wait_until"]


class Postgres:
    """A private PostgreSQL (from the pgserver wheel) in a temporary directory.

    ``template`` is migrated once; each test gets a fresh database cloned from it."""

    def __init__(self, pgdata: Path) -> None:
        from gateway.embedded import EmbeddedPostgres

        self._pg = EmbeddedPostgres(pgdata, delete_on_stop=True)
        self.url = self._pg.start()
        self._counter = 0

    def database_url(self, name: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))

    def create_database(self, template: str | None = None) -> str:
        import psycopg
        from psycopg import sql

        self._counter += 1
        name = f"wg_test_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            stmt = sql.SQL("create database {}").format(sql.Identifier(name))
            if template:
                stmt = sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            conn.execute(stmt)
        self.last_name = name
        return self.database_url(name)

    def stop(self) -> None:
        self._pg.stop()

    # --- outage simulation (stop the server process, keep the data) --------------------
    def halt(self) -> None:
        from pgserver import pg_ctl

        server = self._pg._server
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    def resume(self) -> None:
        self._pg._server.ensure_postgres_running()
