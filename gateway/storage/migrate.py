"""Versioned SQL migrations: ``migrations/NNNN_name.sql`` applied in order, once each.

Each file runs in its own transaction together with its row in ``schema_migrations``;
an advisory lock serialises concurrent migrators (several gateway workers starting at
once). A migration whose file changed after it was applied stops start-up.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from gateway.storage import advisory

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("gateway.storage") / "migrations"
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


def migrate(url: str, *, api_password: str | None = None) -> list[int]:
    """Apply pending migrations; returns the versions applied now."""
    applied_now: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn, advisory.exclusive(
        conn, advisory.MIGRATIONS
    ):
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
            applied_now.append(migration.version)
        if api_password is not None:
            conn.execute(
                sql.SQL("alter role wg_api password {}").format(sql.Literal(api_password))
            )
    return applied_now
