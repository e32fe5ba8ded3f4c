"""Native range partitions for the time-series tables: create ahead, drop after retention.
(When the tables are TimescaleDB hypertables instead, there is nothing to do here.)

Partitions are fixed-width intervals counted from the Unix epoch, so every worker computes
the same bounds. Creating covers [now - retention, now + 2 days]; a message older than its
table's retention is refused at ingest (it would be dropped at once anyway). The work is
done by the database (migration 0009) from the plan ``migrate`` writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gateway.config.settings import RetentionDays

log = logging.getLogger(__name__)

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
PLAN_QUARANTINE = "quarantine"  # no partitions, only an age limit
PLAN_SENSOR_EVENTS = "sensor_events"  # likewise (migration 0024)


def retention_windows(retention: RetentionDays) -> dict[str, timedelta]:
    """How far back each partitioned table keeps device time, by table name: a message
    stamped earlier than ``received_at`` less its table's window is not stored."""
    return {t.name: timedelta(days=getattr(retention, t.retention_field)) for t in TABLES}


def write_plan(conn: psycopg.Connection[Any], retention: RetentionDays) -> None:
    """Record what each table keeps (``migrate`` does this, as the owner): what
    ``wg_maintain_partitions`` then creates and drops."""
    rows: list[tuple[str, int | None, int]] = [
        (t.name, t.interval_days, getattr(retention, t.retention_field)) for t in TABLES
    ]
    rows.append((PLAN_QUARANTINE, None, retention.quarantine))
    rows.append((PLAN_SENSOR_EVENTS, None, retention.sensor_events))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into partition_plan (table_name, interval_days, retention_days)"
            " values (%s, %s, %s) on conflict (table_name) do update set"
            " interval_days = excluded.interval_days, retention_days = excluded.retention_days",
            rows,
        )


def maintain(conn: psycopg.Connection[Any], now: datetime | None = None) -> int:
    """Create missing partitions, drop expired ones, expired quarantine rows and (as of
    now only) expired sensor states; idempotent, safe to run often. Returns how many
    partitions changed.

    Runs as ``wg_maintain_partitions()``, a SECURITY DEFINER function of migration 0009,
    so a worker needs no DDL rights; ``now`` (another instant) is for the owner only.
    Tables that are TimescaleDB hypertables (see :mod:`gateway.adapters.postgres.timescale`) are
    skipped: their chunks are created on insert and dropped by the retention policy."""
    if now is None:
        row = conn.execute("select wg_maintain_partitions()").fetchone()
    else:
        row = conn.execute("select wg_maintain_partitions_at(%s)", (now,)).fetchone()
    return int(row[0]) if row else 0


def natively_partitioned(conn: psycopg.Connection[Any], table: str) -> bool:
    """The table exists and is a native partitioned table (not a hypertable)."""
    row = conn.execute(
        "select relkind from pg_class where oid = to_regclass(quote_ident(%s))", (table,)
    ).fetchone()
    return row is not None and row[0] == "p"
