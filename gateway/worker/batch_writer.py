"""Batched, idempotent writes: binary COPY into staging, then insert-on-conflict-do-nothing.

One transaction per batch. Acknowledgements to the broker are released only after the
batch has committed. When the database is slow or down the batch is retried with backoff
and kept; the bounded queue in front of the writer fills, ``put`` blocks, the ingest loop
stops reading, unacknowledged messages reach the MQTT receive maximum, and the broker
holds the rest: backpressure, not buffering without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from gateway.adapters.postgres import queries
from gateway.support.backoff import Backoff
from gateway.support.metrics import IngestMetrics
from gateway.worker.consumer import AckToken
from gateway.worker.fleet.device_state import DeviceState, DeviceStates
from gateway.worker.rows import COLUMNS, TYPES, Row

log = logging.getLogger(__name__)

#: rows copied in a row before the event loop lets other tasks run (a batch of a thousand
#: rows would otherwise hold the loop for milliseconds, in front of the alarm engine)
YIELD_EVERY_ROWS = 200

# Errors of the data, not of the connection: retrying the same rows cannot help.
_POISON = (psycopg.DataError, psycopg.IntegrityError)


@dataclass(slots=True)
class Item:
    row: Row | None  # None: nothing to store, only an acknowledgement to keep in order
    ack: AckToken | None
    received_mono: float


@dataclass(slots=True)
class _Committed:
    """What one committed transaction stored, for the metrics."""

    by_table: dict[str, list[tuple[Any, ...]]]
    inserted: dict[str, int]
    started: float
    at: float


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    inserted: dict[str, int] = field(default_factory=dict)


class BatchWriter:
    def __init__(
        self,
        url: str,
        *,
        metrics: IngestMetrics,
        states: DeviceStates,
        ack: Callable[[Sequence[AckToken]], None],
        max_rows: int,
        max_delay_s: float,
        queue_size: int,
    ) -> None:
        self._url = url
        self._metrics = metrics
        self._states = states
        self._ack = ack
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=queue_size)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.stats = BatchStats()

    async def put(self, row: Row | None, ack: AckToken | None) -> None:
        await self._queue.put(Item(row, ack, time.monotonic()))
        self._metrics.queue_depth.set(self._queue.qsize())

    def pending(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        """Flush what is queued, then stop ``run``."""
        await self._queue.put(None)

    async def run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self._max_delay
            while len(batch) < self._max_rows:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), timeout)
                    except TimeoutError:
                        break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._metrics.queue_depth.set(self._queue.qsize())
            await self._write_until_committed(batch)
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _write_until_committed(self, batch: list[Item]) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                try:
                    await self._write(batch)
                except _POISON:
                    # A row the database refuses although the contract accepted it: find
                    # it instead of retrying (or dying) forever on the whole batch.
                    await self._write_isolating(batch)
                self._metrics.database_up.set(1)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self._metrics.write_failures.inc()
                self._metrics.database_up.set(0)
                retry_s = backoff.next()
                log.warning(
                    "batch write failed; keeping batch and retrying",
                    extra={"rows": len(batch), "error": type(exc).__name__, "retry_s": retry_s},
                )
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                await asyncio.sleep(retry_s)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(self._url, connect_timeout=5)
            for table, _ in TYPES.items():
                await conn.execute(
                    sql.SQL(
                        "create temp table if not exists {} (like {} including defaults)"
                        " on commit delete rows"
                    ).format(sql.Identifier(f"stage_{table}"), sql.Identifier(table))
                )
            await conn.execute(queries.STAGE_DEVICE_STATE)
            await conn.commit()
            self._conn = conn
        return self._conn

    async def _write_isolating(self, batch: list[Item]) -> None:
        """Write ``batch`` in halves down to single rows; a single row the database still
        refuses is dropped, counted and logged (ids only), and acknowledged, so one bad
        row cannot stop ingest for everyone. Acknowledgements go out only at the end, so
        a connection failure half-way retries the whole batch (stored rows deduplicate)
        without acknowledging anything twice."""
        acks: list[AckToken] = []
        await self._isolate(batch, acks)
        try:
            await self._write_states()
        except _POISON as exc:
            dropped = self._states.take_dirty()
            log.error("device state not storable; dropped",
                      extra={"devices": len(dropped), "error": type(exc).__name__})  # fmt: skip
        self._ack(acks)

    async def _isolate(self, batch: list[Item], acks: list[AckToken]) -> None:
        try:
            await self._write_rows(batch)
            acks.extend(item.ack for item in batch if item.ack is not None)
        except _POISON as exc:
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._isolate(batch[:middle], acks)
                await self._isolate(batch[middle:], acks)
                return
            item = batch[0]
            table = item.row.table if item.row is not None else "-"
            self._metrics.unstorable.labels(table).inc()
            log.error(
                "row refused by the database; dropped",
                extra={"table": table, "error": type(exc).__name__,
                       "sqlstate": getattr(exc, "sqlstate", None)},
            )  # fmt: skip
            if item.ack is not None:
                acks.append(item.ack)

    async def _write(self, batch: list[Item]) -> None:
        """The common path: the batch's rows and the changed device states in one
        transaction, then the batch's acknowledgements (after the commit)."""
        committed = await self._commit(batch, self._states.take_dirty())
        self._ack([item.ack for item in batch if item.ack is not None])
        if committed is not None:
            self._record(batch, committed)

    async def _write_rows(self, batch: list[Item]) -> None:
        """Isolating a refused row: the batch's rows alone; no device states, and the
        acknowledgements are left to the caller."""
        committed = await self._commit(batch, [])
        if committed is not None:
            self._record(batch, committed)

    async def _write_states(self) -> None:
        """The changed device states on their own (after isolating), nothing acknowledged."""
        await self._commit([], self._states.take_dirty())

    async def _commit(
        self, batch: list[Item], dirty: list[tuple[str, DeviceState]]
    ) -> _Committed | None:
        """One transaction: ``batch`` 's rows and the ``dirty`` device states (None when
        there is nothing to store). If it fails, the states are marked dirty again."""
        started = time.monotonic()
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for item in batch:
            if item.row is not None:
                by_table.setdefault(item.row.table, []).append(item.row.values)
        if not by_table and not dirty:
            return None
        try:
            conn = await self._connection()
            inserted: dict[str, int] = {}
            async with conn.transaction(), conn.cursor() as cur:
                for table, rows in by_table.items():
                    inserted[table] = await self._copy_table(cur, table, rows)
                if dirty:
                    await self._upsert_states(cur, dirty)
        except BaseException:
            self._states.mark_dirty([d for d, _ in dirty])
            raise
        return _Committed(by_table, inserted, started, time.monotonic())

    async def _upsert_states(
        self, cur: psycopg.AsyncCursor[Any], dirty: list[tuple[str, DeviceState]]
    ) -> None:
        async with cur.copy(queries.COPY_DEVICE_STATE) as copy:
            copy.set_types(list(queries.DEVICE_STATE_TYPES))
            await _write_rows(copy, [
                (device_id, s.tenant_id, s.last_seen, s.last_ts,
                 s.battery_percent, s.rssi_dbm, s.firmware, s.online)
                for device_id, s in dirty
            ])  # fmt: skip
        await cur.execute(queries.UPSERT_DEVICE_STATE)

    async def _copy_table(
        self, cur: psycopg.AsyncCursor[Any], table: str, rows: list[tuple[Any, ...]]
    ) -> int:
        copy_sql, insert_sql = _STATEMENTS[table]
        async with cur.copy(copy_sql) as copy:
            copy.set_types(list(TYPES[table]))
            await _write_rows(copy, rows)
        if insert_sql is None:  # quarantine: copied into the table itself
            return len(rows)
        await cur.execute(insert_sql)
        return cur.rowcount

    def _record(self, batch: list[Item], committed: _Committed) -> None:
        m = self._metrics
        now = committed.at
        m.batch_rows.observe(len(batch))
        m.batch_seconds.observe(now - committed.started)
        m.commit_lag.observe(now - batch[0].received_mono)  # the batch's oldest message
        duplicates = 0
        by_table = committed.by_table
        for table, count in committed.inserted.items():
            m.stored.labels(table).inc(count)
            self.stats.inserted[table] = self.stats.inserted.get(table, 0) + count
            duplicates += len(by_table[table]) - count
        if duplicates:
            m.duplicates.inc(duplicates)
        self.stats.batches += 1
        self.stats.rows += len(batch)


def _statements(table: str) -> tuple[str, str | None]:
    """A table's COPY and, but for quarantine (copied into directly), the insert from its
    staging table that skips rows already stored. Composed once, at import: composing
    and quoting them for every batch cost about 35 µs a table (issue #22)."""
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    copy = sql.SQL("copy {} ({}) from stdin (format binary)")
    if table == "quarantine":
        return copy.format(sql.Identifier(table), columns).as_string(), None
    stage = sql.Identifier(f"stage_{table}")
    insert = sql.SQL("insert into {} ({}) select {} from {} on conflict do nothing").format(
        sql.Identifier(table), columns, columns, stage
    )
    return copy.format(stage, columns).as_string(), insert.as_string()


_STATEMENTS = {table: _statements(table) for table in COLUMNS}


async def _write_rows(copy: psycopg.AsyncCopy, rows: Sequence[tuple[Any, ...]]) -> None:
    for i, row in enumerate(rows, 1):
        await copy.write_row(row)
        if i % YIELD_EVERY_ROWS == 0:
            await asyncio.sleep(0)
