"""Real services for tests: a private Mosquitto (bench.mosquitto) and a private PostgreSQL.

Each starts in a temporary directory on a free loopback port / socket, with its own
configuration, so a test never depends on something left running on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.mosquitto import Mosquitto, free_port, port_open, wait_until

__all__ = ["DebianPostgres", "Mosquitto", "Postgres", "free_port", "port_open", "wait_until"]


class Postgres:
    """A private PostgreSQL (from the pgserver wheel) in a temporary directory.

    ``template`` is migrated once; each test gets a fresh database cloned from it."""

    def __init__(self, pgdata: Path) -> None:
        from gateway.adapters.embedded import EmbeddedPostgres

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


# --- Debian's PostgreSQL 15 (with TimescaleDB when installed) ---------------------------

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "run ../shared/tools/install-timescaledb"


class DebianPostgres:
    """A private cluster of Debian's PostgreSQL 15: own data and socket directory, a free
    loopback TCP port, password (SCRAM) logins over TCP, fsync off (test data only).

    ``preload`` puts ``shared_preload_libraries = 'timescaledb'`` in its configuration;
    without it the server offers the extension but refuses to create it (what a Debian
    server with the package installed but not configured does). PostgreSQL refuses to run
    as root: as root, initdb and pg_ctl run as the ``postgres`` system user, which owns
    the directory (under /tmp, which that user can reach)."""

    SUPERUSER = "postgres"

    def __init__(self, *, preload: bool, settings: dict[str, str] | None = None) -> None:
        import secrets
        import tempfile

        self.preload = preload
        self._settings = dict(settings or {})
        self.password = secrets.token_hex(12)
        self.root = Path(tempfile.mkdtemp(prefix="wg-pg15-"))
        self.port = free_port()
        self.url = self.database_url("postgres")
        self._counter = 0
        self._running = False

    @staticmethod
    def missing() -> str | None:
        """Why this machine cannot run the cluster with TimescaleDB, or None."""
        import pwd
        import subprocess

        for tool in ("initdb", "pg_ctl", "postgres", "pg_config"):
            if not (PG15_BIN / tool).is_file():
                return f"PostgreSQL 15 server not installed ({PG15_BIN / tool} missing)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "no `postgres` system user to run PostgreSQL 15 as (we are root)"
        try:
            libdir, sharedir = subprocess.run(
                [str(PG15_BIN / "pg_config"), "--pkglibdir", "--sharedir"],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout.split()  # fmt: skip
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            return f"pg_config of PostgreSQL 15 failed: {exc}"
        control = Path(sharedir) / "extension" / "timescaledb.control"
        if not control.is_file() or not list(Path(libdir).glob("timescaledb-*.so")):
            return f"TimescaleDB is not installed into PostgreSQL 15 ({control} missing)"
        return None

    def _as_server_user(self, argv: list[str], timeout: float) -> None:
        import subprocess

        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-1500:]}"
                f"{done.stderr[-1500:]}{self.log_tail()}"
            )

    def start(self) -> DebianPostgres:
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        self._as_server_user(
            [str(PG15_BIN / "initdb"), "-D", str(self.data), "-U", self.SUPERUSER,
             f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            timeout=120,
        )  # fmt: skip
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\n# tests/services.py DebianPostgres\ninclude 'wg_test.conf'\n")
        self._write_conf()
        self._pg_ctl("start", "-l", str(self.log), "-t", "60")
        self._running = True
        return self

    def _write_conf(self) -> None:
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "60",
            "timezone": "'UTC'",
        }
        if self.preload:
            conf["shared_preload_libraries"] = "'timescaledb'"
            conf["timescaledb.telemetry_level"] = "off"
        conf.update(self._settings)
        path = self.data / "wg_test.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in conf.items()))
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def stop(self) -> None:
        import shutil

        if self._running:
            self._running = False
            self._pg_ctl("stop", "-m", "fast", "-t", "60")
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, *, preload: bool | None = None) -> None:
        """Restart, with ``shared_preload_libraries = 'timescaledb'`` added or removed."""
        if preload is not None:
            self.preload = preload
            self._write_conf()
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.log), "-t", "60")

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._as_server_user([str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-w", action,
                              *args], timeout=90)  # fmt: skip

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return "\n" + self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def database_url(self, name: str, user: str | None = None, password: str | None = None) -> str:
        from urllib.parse import quote

        user = user or self.SUPERUSER
        password = self.password if password is None else password
        return (
            f"postgresql://{quote(user)}:{quote(password)}@127.0.0.1:{self.port}/{name}"
            "?sslmode=disable"
        )

    def create_database(self, owner: str | None = None, owner_password: str | None = None) -> str:
        """A new database; with ``owner``, that (non-superuser) role owns it, is created
        if missing (LOGIN CREATEROLE: it creates the service roles), and the URL is its."""
        import psycopg
        from psycopg import sql

        self._counter += 1
        name = f"wg_ts_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            if owner is not None:
                assert owner_password is not None
                if conn.execute("select 1 from pg_roles where rolname = %s", (owner,)).fetchone():
                    stmt = "alter role {} login createrole password {}"
                else:
                    stmt = "create role {} login createrole password {}"
                conn.execute(
                    sql.SQL(stmt).format(sql.Identifier(owner), sql.Literal(owner_password))
                )
                conn.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(name), sql.Identifier(owner)
                    )
                )
                return self.database_url(name, owner, owner_password)
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return self.database_url(name)
