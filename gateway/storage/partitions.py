"""Native range partitions for the time-series tables: create ahead, drop after retention.
(When the tables are TimescaleDB hypertables instead, there is nothing to do here.)

Partitions are fixed-width intervals counted from the Unix epoch, so every worker computes
the same bounds. Creating covers [now - retention, now + ahead]; a message older than its
table's retention is refused at ingest (it would be dropped at once anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from gateway.settings import RetentionDays

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    interval_days: int
    retention_field: str


TABLES: tuple[PartitionedTable, ...] = (
    PartitionedTable("readings", 30, "readings"),
    PartitionedTable("positions", 1, "positions"),
    PartitionedTable("lock_events", 30, "lock_events"),
    PartitionedTable("device_alarms", 30, "device_alarms"),
    PartitionedTable("device_health", 7, "device_health"),
    PartitionedTable("command_replies", 30, "command_replies"),
)
AHEAD = timedelta(days=2)


def bounds(ts: datetime, interval_days: int) -> tuple[datetime, datetime]:
    width = timedelta(days=interval_days)
    index = (ts - EPOCH) // width
    start = EPOCH + index * width
    return start, start + width


def retention_cutoff(table: PartitionedTable, retention: RetentionDays, now: datetime) -> datetime:
    """Oldest device time kept for this table."""
    return now - timedelta(days=getattr(retention, table.retention_field))


def wanted(table: PartitionedTable, retention: RetentionDays, now: datetime) -> list[datetime]:
    """Start times of the partitions that must exist now."""
    start, _ = bounds(retention_cutoff(table, retention, now), table.interval_days)
    last, _ = bounds(now + AHEAD, table.interval_days)
    width = timedelta(days=table.interval_days)
    starts = []
    while start <= last:
        starts.append(start)
        start += width
    return starts


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


def maintain(conn: psycopg.Connection[Any], retention: RetentionDays, now: datetime) -> None:
    """Create missing partitions and drop expired ones (idempotent; safe to run often).

    Tables that are TimescaleDB hypertables (see :mod:`gateway.storage.timescale`) are
    skipped: their chunks are created on insert and dropped by the retention policy."""
    for table in TABLES:
        if not natively_partitioned(conn, table.name):
            continue
        existing = {
            row[0]: row[1]
            for row in conn.execute(
                "select c.relname, pg_get_expr(c.relpartbound, c.oid)"
                " from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " join pg_class p on p.oid = i.inhparent where p.relname = %s",
                (table.name,),
            )
        }
        width = timedelta(days=table.interval_days)
        for start in wanted(table, retention, now):
            name = partition_name(table.name, start)
            if name in existing:
                continue
            conn.execute(
                sql.SQL(
                    "create table if not exists {} partition of {} for values from ({}) to ({})"
                ).format(
                    sql.Identifier(name),
                    sql.Identifier(table.name),
                    sql.Literal(start),
                    sql.Literal(start + width),
                )
            )
            log.debug("partition created", extra={"partition": name})
        cutoff = retention_cutoff(table, retention, now)
        for name in existing:
            old_start = _parse_start(table.name, name)
            if old_start is not None and old_start + width <= cutoff:
                conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(name)))
                log.info("partition dropped after retention", extra={"partition": name})
    conn.execute(
        "delete from quarantine where received_at < %s",
        (now - timedelta(days=retention.quarantine),),
    )


def natively_partitioned(conn: psycopg.Connection[Any], table: str) -> bool:
    """The table exists and is a native partitioned table (not a hypertable)."""
    row = conn.execute(
        "select relkind from pg_class where oid = to_regclass(quote_ident(%s))", (table,)
    ).fetchone()
    return row is not None and row[0] == "p"


def _parse_start(table: str, name: str) -> datetime | None:
    prefix = f"{table}_p"
    if not name.startswith(prefix):
        return None
    try:
        return datetime.strptime(name[len(prefix) :], "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        return None
