"""TimescaleDB for the time series when the extension is there: hypertables, policies.

``welfare-gateway migrate`` calls :func:`prepare` (workers need no DDL rights). With the
``timescaledb`` setting at ``auto`` (default) or ``require`` and the extension available,
it creates the extension, turns the still-empty natively partitioned time-series tables
into compressed hypertables (``wg_hypertable_from_native`` of migration 0008), and keeps
each hypertable's compression and retention policies in line with the settings. Tables
that already hold rows in native partitions stay native (all tables or none are
converted), and :mod:`gateway.adapters.postgres.partitions` keeps maintaining them.

The server must load the library (``shared_preload_libraries = 'timescaledb'``). Where it
offers the extension without loading it, ``auto`` stays native with one warning and
``require`` stops, each naming the line for postgresql.conf (:func:`preload_advice`);
where the extension exists in the database but is not loaded, :func:`require_loaded`
stops in any mode (DDL and the workers' writes fail there).

TimescaleDB's job scheduler then compresses and drops chunks; the gateway does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from gateway.adapters.postgres import advisory
from gateway.adapters.postgres.partitions import TABLES, natively_partitioned
from gateway.config.settings import RetentionDays

log = logging.getLogger(__name__)

Mode = Literal["auto", "require", "off"]

DEFAULT_COMPRESS_AFTER = timedelta(days=7)
# Positions come in 1-day chunks and are read mostly while fresh: compress them sooner.
COMPRESS_AFTER = {"positions": timedelta(days=2)}
# Unique indexes and INSERT ... ON CONFLICT DO NOTHING on compressed chunks (the dedup of
# redelivered messages) came in TimescaleDB 2.11.
MIN_VERSION = (2, 11)


class TimescaleError(Exception):
    """``timescaledb = "require"`` and the hypertables cannot be had."""


@dataclass(frozen=True)
class TablePolicy:
    table: str
    chunk_interval: timedelta
    compress_after: timedelta
    drop_after: timedelta


def policies(retention: RetentionDays) -> list[TablePolicy]:
    """What each time-series table should have (pure)."""
    return [
        TablePolicy(
            table=t.name,
            chunk_interval=timedelta(days=t.interval_days),
            compress_after=COMPRESS_AFTER.get(t.name, DEFAULT_COMPRESS_AFTER),
            drop_after=timedelta(days=getattr(retention, t.retention_field)),
        )
        for t in TABLES
    ]


PRELOAD_LINE = "shared_preload_libraries = 'timescaledb'"


class _Unloadable(Exception):
    """CREATE EXTENSION closed the connection: the server does not load the library (it
    is not in ``shared_preload_libraries``)."""


def prepare(url: str, mode: Mode, retention: RetentionDays) -> bool:
    """:func:`setup` on a connection of its own, under the schema upkeep lock. A server
    that offers the extension without preloading it closes the connection on CREATE
    EXTENSION: that is a fallback (``auto``, one warning) or a stop naming the line to
    add (``require``)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn, advisory.exclusive(
            conn, advisory.SCHEMA_UPKEEP
        ):
            return setup(conn, mode, retention)
    except _Unloadable as exc:
        fix = preload_advice(_server_settings(url))
        return _fallback(
            mode, f"the server offers the extension but does not load it ({exc}); {fix}"
        )


def require_loaded(conn: psycopg.Connection[Any]) -> None:
    """Stop with :class:`TimescaleError`, naming the line for postgresql.conf, when the
    extension was created in this database but the server does not load its library
    (preload line removed, or a copy restored onto a server without it). Then every DDL
    statement fails (TimescaleDB's event triggers) and nobody can write the hypertables,
    whatever the ``timescaledb`` setting: for ``migrate`` to call before its first DDL.
    ``conn`` must be in autocommit mode; the server may close it (FATAL) on the probe."""
    row = conn.execute(
        "select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace"
        " where e.extname = 'timescaledb'"
    ).fetchone()
    if row is None:
        return
    try:  # a function of the library (the catalog views work without it)
        conn.execute(
            sql.SQL("select {}.time_bucket(interval '1 day', now())").format(
                sql.Identifier(row[0])
            )
        )
    except psycopg.Error as exc:
        if not (conn.closed or _not_loaded(exc)):
            raise
        server = {} if conn.closed else _settings_seen(conn)
        raise TimescaleError(
            "TimescaleDB was created in this database but the server does not load it "
            f"({_first_line(exc)}): {preload_advice(server)}"
        ) from None


def preload_advice(server: dict[str, str]) -> str:
    """What to change in postgresql.conf (pure). ``server``: what ``pg_settings`` shows
    of ``config_file`` and ``shared_preload_libraries`` (a role without
    pg_read_all_settings sees neither). A second ``shared_preload_libraries`` line would
    replace the first, so libraries preloaded now are kept in the list."""
    where = f" ({server['config_file']})" if server.get("config_file") else ""
    if "shared_preload_libraries" not in server:
        return (
            f"add {PRELOAD_LINE} to postgresql.conf and restart PostgreSQL (if the file has "
            "a shared_preload_libraries line already, add timescaledb to its list instead)"
        )
    loaded = [name.strip() for name in server["shared_preload_libraries"].split(",")]
    loaded = [name for name in loaded if name]
    if not loaded:
        return f"add {PRELOAD_LINE} to postgresql.conf{where} and restart PostgreSQL"
    line = "shared_preload_libraries = '{}'".format(",".join([*loaded, "timescaledb"]))
    return f"set {line} in postgresql.conf{where} and restart PostgreSQL"


def setup(conn: psycopg.Connection[Any], mode: Mode, retention: RetentionDays) -> bool:
    """Use hypertables if wanted and possible; returns True when the time series are
    hypertables (policies then applied). ``conn`` must be in autocommit mode. Raises
    ``_Unloadable`` (handled by :func:`prepare`) when CREATE EXTENSION finds the library
    not preloaded, :class:`TimescaleError` when the extension exists but is not loaded."""
    if mode != "off" and not _installed(conn):
        if not _available(conn):
            return _fallback(mode, "extension not available on this server")
        try:
            with conn.transaction():
                conn.execute("create extension if not exists timescaledb")
        except psycopg.Error as exc:
            if conn.closed or _not_loaded(exc):
                raise _Unloadable(_first_line(exc)) from None
            return _fallback(mode, f"create extension failed: {type(exc).__name__}: {exc}")
        log.info("timescaledb extension created")
    if not _installed(conn):
        return False
    require_loaded(conn)
    return _convert_and_apply(conn, mode, retention)


def _convert_and_apply(
    conn: psycopg.Connection[Any], mode: Mode, retention: RetentionDays
) -> bool:
    with conn.transaction():  # serialised by prepare's schema-upkeep lock
        native = [t.name for t in TABLES if natively_partitioned(conn, t.name)]
        if native and mode != "off":
            version = _version(conn)
            if version < MIN_VERSION:
                return _fallback(mode, f"timescaledb {version} is older than {MIN_VERSION}")
            busy = [name for name in native if _has_rows(conn, name)]
            if busy:
                return _fallback(mode, f"time series already in native partitions: {busy}")
            for policy in policies(retention):
                if policy.table in native:
                    conn.execute(
                        "select wg_hypertable_from_native(%s, %s)",
                        (policy.table, policy.chunk_interval),
                    )
            log.info("time series converted to hypertables", extra={"tables": native})
        elif native:
            return False
        for policy in policies(retention):
            _apply_policies(conn, policy)
        _report_aggregates(conn)
    return True


def _report_aggregates(conn: psycopg.Connection[Any]) -> None:
    """The follow-up report's continuous aggregates (migration 0021, docs/report.md)."""
    row = conn.execute("select wg_report_caggs()").fetchone()
    if row and row[0]:
        log.info("report aggregates created", extra={"count": row[0]})


def _not_loaded(exc: psycopg.Error) -> bool:
    """TimescaleDB's "extension "timescaledb" must be preloaded": FATAL (the connection
    closed) on CREATE EXTENSION or a call of the library, ERROR from its event triggers."""
    return "must be preloaded" in str(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _server_settings(url: str) -> dict[str, str]:
    """:func:`_settings_seen` on a new connection (CREATE EXTENSION closed the last)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            return _settings_seen(conn)
    except psycopg.Error:
        return {}


def _settings_seen(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """``config_file`` and ``shared_preload_libraries`` as far as this role may see them."""
    rows = conn.execute(
        "select name, setting from pg_settings"
        " where name in ('config_file', 'shared_preload_libraries')"
    ).fetchall()
    return {str(name): str(setting) for name, setting in rows}


def parse_version(text: str) -> tuple[int, int]:
    """``"2.23.0-dev"`` -> ``(2, 23)``; unparsable -> ``(0, 0)``."""
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def hypertables(conn: psycopg.Connection[Any]) -> set[str]:
    """Names of the time-series tables that are hypertables (empty without the extension)."""
    if not _installed(conn):
        return set()
    rows = conn.execute(
        "select hypertable_name from timescaledb_information.hypertables"
        " where hypertable_schema = current_schema()"
    ).fetchall()
    return {row[0] for row in rows} & {t.name for t in TABLES}


def _apply_policies(conn: psycopg.Connection[Any], policy: TablePolicy) -> None:
    jobs = {
        row[0]: row[1]
        for row in conn.execute(
            "select proc_name, config from timescaledb_information.jobs"
            " where hypertable_schema = current_schema() and hypertable_name = %s"
            " and proc_name in ('policy_compression', 'policy_retention')",
            (policy.table,),
        )
    }
    if not _same_interval(conn, jobs.get("policy_compression"), "compress_after", policy):
        conn.execute("select remove_compression_policy(%s, if_exists => true)", (policy.table,))
        conn.execute(
            "select add_compression_policy(%s, compress_after => %s)",
            (policy.table, policy.compress_after),
        )
        log.info("compression policy set", extra={"table": policy.table})
    if not _same_interval(conn, jobs.get("policy_retention"), "drop_after", policy):
        conn.execute("select remove_retention_policy(%s, if_exists => true)", (policy.table,))
        conn.execute(
            "select add_retention_policy(%s, drop_after => %s)",
            (policy.table, policy.drop_after),
        )
        log.info(
            "retention policy set",
            extra={"table": policy.table, "days": policy.drop_after.days},
        )


def _same_interval(
    conn: psycopg.Connection[Any], config: Any, key: str, policy: TablePolicy
) -> bool:
    if not isinstance(config, dict) or key not in config:
        return False
    wanted = policy.compress_after if key == "compress_after" else policy.drop_after
    row = conn.execute("select %s::interval = %s::interval", (config[key], wanted)).fetchone()
    return bool(row and row[0])


def _fallback(mode: Mode, reason: str) -> bool:
    if mode == "require":
        raise TimescaleError(f"timescaledb required but not usable: {reason}")
    log.warning("time series stay in native partitions", extra={"reason": reason})
    return False


def _available(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "select exists (select 1 from pg_available_extensions where name = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


def _version(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "select extversion from pg_extension where extname = 'timescaledb'"
    ).fetchone()
    return parse_version(str(row[0])) if row else (0, 0)


def _installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "select exists (select 1 from pg_extension where extname = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


def _has_rows(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute(
        sql.SQL("select exists (select 1 from {})").format(sql.Identifier(table))
    ).fetchone()
    return bool(row and row[0])
