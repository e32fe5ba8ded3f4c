"""``welfare-gateway migrate``: the database in its final shape, as the owner role.

Versioned SQL migrations (``migrations/NNNN_name.sql``) are applied in order, once each;
each file runs in its own transaction together with its row in ``schema_migrations``, and
an advisory lock serialises concurrent migrators. A migration whose file changed after it
was applied stops. Then the roles' passwords are set (where the owner may), the time
series become TimescaleDB hypertables with their compression and retention policies (or
stay native partitions), and the partition plan is written and applied. Workers and the
API need no DDL rights afterwards (docs/deploy.md, "Database roles").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from gateway.adapters.postgres import advisory, partitions, timescale
from gateway.config.settings import RetentionDays

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


#: the service roles migrate creates (when missing) and grants; see migration 0009
SERVICE_ROLES = ("wg_worker", "wg_api")


class MigrationError(Exception):
    """The database cannot be brought to its final shape; the message says why and how."""


@dataclass
class Migrated:
    applied: list[int] = field(default_factory=list)
    hypertables: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def time_series(self) -> str:
        return "TimescaleDB hypertables" if self.hypertables else "native partitions"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("gateway.adapters.postgres") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def migrate(
    url: str,
    *,
    api_password: str | None = None,
    worker_password: str | None = None,
    timescaledb: timescale.Mode = "auto",
    retention: RetentionDays | None = None,
) -> Migrated:
    """Apply pending migrations, set the service roles' passwords, set up the time series
    (hypertables or native partitions) and their policies. Idempotent."""
    retention = retention or RetentionDays()
    result = Migrated()
    with psycopg.connect(url, autocommit=True) as conn, advisory.exclusive(
        conn, advisory.MIGRATIONS
    ):
        _preflight(conn)
        timescale.require_loaded(conn)  # created here but not loaded: every DDL would fail
        conn.execute(
            "create table if not exists schema_migrations ("
            " version integer primary key, name text not null,"
            " checksum text not null, applied_at timestamptz not null default now())"
        )
        done = {
            row[0]: row[1]
            for row in conn.execute("select version, checksum from schema_migrations")
        }
        for migration in available():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed "
                        "after it was applied; add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "insert into schema_migrations (version, name, checksum)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            log.info("migration applied", extra={"version": migration.version})
            result.applied.append(migration.version)
        for role, password in (("wg_api", api_password), ("wg_worker", worker_password)):
            if password is not None:
                note = _set_password(conn, role, password)
                if note:
                    result.notes.append(note)
        partitions.write_plan(conn, retention)
    result.hypertables = timescale.prepare(url, timescaledb, retention)
    with psycopg.connect(url, autocommit=True) as conn, advisory.exclusive(
        conn, advisory.SCHEMA_UPKEEP
    ):
        partitions.maintain(conn)
    return result


def pending(conn: psycopg.Connection[Any]) -> list[int]:
    """Versions not yet applied (a worker refuses to start on an older schema)."""
    try:
        with conn.transaction():
            rows = conn.execute("select version from schema_migrations").fetchall()
    except psycopg.errors.UndefinedTable:
        rows = []
    done = {row[0] for row in rows}
    return [m.version for m in available() if m.version not in done]


def _preflight(conn: psycopg.Connection[Any]) -> None:
    """Say before the first DDL what the owner role lacks, and how to give it."""
    row = conn.execute(
        "select current_user, r.rolsuper or r.rolcreaterole,"
        " has_schema_privilege(current_user, 'public', 'CREATE'), current_database()"
        " from pg_roles r where r.rolname = current_user"
    ).fetchone()
    assert row is not None
    user, can_create_roles, can_create_in_public, database = row
    if not can_create_in_public:
        raise MigrationError(
            f"role {user} may not create objects in schema public of database {database}: "
            f"migrate as the database owner (CREATE DATABASE {database} OWNER {user}) or "
            f"GRANT CREATE ON SCHEMA public TO {user}"
        )
    missing = [
        name for name in SERVICE_ROLES
        if conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone() is None
    ]  # fmt: skip
    if missing and not can_create_roles:
        raise MigrationError(
            f"role{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing and {user} "
            f"may not create roles: either ALTER ROLE {user} CREATEROLE (as a superuser), or "
            "have a DBA create them first: "
            + "; ".join(
                f"CREATE ROLE {name} LOGIN NOINHERIT PASSWORD '...'" for name in missing
            )
            + " (docs/deploy.md, Database roles)"
        )


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677), made
    here so that the password itself never reaches the server, nor its log (a failed or
    logged ALTER ROLE would show a plain one). Passwords are taken as given (no SASLprep:
    ASCII passwords, as generated, are unchanged by it)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _set_password(conn: psycopg.Connection[Any], role: str, password: str) -> str | None:
    """Set ``role``'s password if the owner may; otherwise a note (a DBA manages it)."""
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("alter role {} password {}").format(
                    sql.Identifier(role), sql.Literal(scram_verifier(password))
                )
            )
    except psycopg.errors.InsufficientPrivilege:
        return (
            f"password of {role} not set: this role may not alter it (a DBA keeps it; "
            "it must match the configured one)"
        )
    return None
