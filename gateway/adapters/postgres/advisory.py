"""Serialising start-up DDL across processes (several workers starting at once) with a
PostgreSQL session advisory lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

#: keys of the locks (ASCII tags, so they are recognisable in pg_locks)
MIGRATIONS = 0x57_47_4D_49  # "WGMI"
SCHEMA_UPKEEP = 0x57_47_53_54  # "WGST": extension, hypertables, partitions


@contextmanager
def exclusive(conn: psycopg.Connection[Any], key: int) -> Iterator[None]:
    """Hold the advisory lock ``key`` on ``conn`` (autocommit) for the block."""
    conn.execute("select pg_advisory_lock(%s)", (key,))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("select pg_advisory_unlock(%s)", (key,))
