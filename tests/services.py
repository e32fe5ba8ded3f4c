"""Real services for tests: a private Mosquitto and a private PostgreSQL.

Each starts in a temporary directory on a free loopback port / socket, with its own
configuration, so a test never depends on something left running on the machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition (not a sleep as synchronisation: we wait *for* something)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(path):
        raise RuntimeError("mosquitto is not installed: run scripts/test (it installs it)")
    return path


@dataclass
class Mosquitto:
    """A private Mosquitto 2 broker. ``extra_config`` lines are appended to the config."""

    workdir: Path
    extra_config: list[str] = field(default_factory=list)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "set_tcp_nodelay true",
            "persistence false",
            # Never drop queued QoS 1 messages for a slow or offline persistent session:
            # backpressure means the broker queues, it does not discard.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest file " + str(self.workdir / "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
            *self.extra_config,
        ]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(  # noqa: S603
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, 10, "mosquitto")
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"mosquitto failed to start: {err}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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
