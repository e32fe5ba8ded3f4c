"""Writes the gateway's lock-access decisions (reported unlocks) and the guest's copies of
alarms sent to a host municipality during a stay (#21.3) to the access log.

The alarm path must not wait for the database: entries are queued in memory and
appended in the background through ``append_access_log`` (one transaction each, in
order); while the database is away they wait and are written when it returns. The
queue is bounded; an entry that does not fit is counted and logged (without content).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import psycopg

from gateway.adapters.postgres.access_log import AccessEntry
from gateway.adapters.postgres.access_log import append as append_access
from gateway.support.backoff import Backoff

log = logging.getLogger(__name__)


class AccessLogWriter:
    def __init__(self, url: str, max_queue: int = 100_000) -> None:
        self._url = url
        self._queue: deque[AccessEntry] = deque()
        self._max_queue = max_queue
        self._wake = asyncio.Event()
        self.written = 0
        self.dropped = 0

    def submit(self, entry: AccessEntry) -> None:
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            log.error("access-log queue full; an entry was not logged")
            return
        self._queue.append(entry)
        self._wake.set()

    def pending(self) -> int:
        return len(self._queue)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(0.1, 5.0)
        while not (stop.is_set() and not self._queue):
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                ) as conn:
                    backoff.reset()
                    await self._write_loop(conn, stop)
                    return
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "access-log writer lost the database; holding entries",
                    extra={"error": type(exc).__name__, "pending": len(self._queue)},
                )
                if stop.is_set():
                    if self._queue:
                        self.dropped += len(self._queue)
                        log.error("stopping with access-log entries not logged",
                                  extra={"pending": len(self._queue)})  # fmt: skip
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())

    async def _write_loop(self, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        while True:
            while self._queue:
                try:
                    await append_access(conn, self._queue[0])
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    # the entry itself cannot be stored; retrying it would block every
                    # later decision behind it
                    self._queue.popleft()
                    self.dropped += 1
                    log.error("an access-log entry could not be logged; dropped",
                              extra={"error": type(exc).__name__})  # fmt: skip
                    continue
                self._queue.popleft()  # only once it is committed
                self.written += 1
            if stop.is_set():
                return
            self._wake.clear()
            if self._queue:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
