"""The durable local alarm journal: the safety path's own record, independent of the
database.

Every alarm event is appended as one JSON line: written to the operating system before
``append`` returns (it survives the gateway process dying), and fsynced to disk by a
worker thread right after, so a slow disk never delays the delivery of an alarm. A
shipper copies the journal into PostgreSQL in order and records how far it got in a
small offset file (written atomically). When everything is shipped the journal is
compacted. If the database is down, events pile up here and are replayed when it
returns; if the gateway dies, the next start ships what was not shipped yet.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from gateway.alarms.codec import event_to_dict
from gateway.domain.alarms import AlarmEvent

COMPACT_BYTES = 4 * 1024 * 1024

log = logging.getLogger(__name__)


class AlarmJournal:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._path = directory / "alarm-events.jsonl"
        self._offset_path = directory / "shipped.offset"
        self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115 - held open
        self._syncing = False
        self._sync_again = False

    def append(self, events: list[AlarmEvent]) -> None:
        if not events:
            return
        data = b"".join(orjson.dumps(event_to_dict(e)) + b"\n" for e in events)
        self._file.write(data)  # unbuffered: in the OS now
        self._sync_soon()

    def _sync_soon(self) -> None:
        """fsync in a worker thread; appends during a sync are covered by one more."""
        if self._syncing:
            self._sync_again = True
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            os.fsync(self._file.fileno())  # no loop (tests, tools): sync in place
            return
        self._syncing = True
        future = loop.run_in_executor(None, os.fsync, self._file.fileno())
        future.add_done_callback(self._synced)

    def _synced(self, future: asyncio.Future[None]) -> None:
        self._syncing = False
        if future.exception() is not None:
            log.error("alarm journal fsync failed", extra={"error": repr(future.exception())})
        if self._sync_again:
            self._sync_again = False
            self._sync_soon()

    def shipped_offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def unshipped(self, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` records after the shipped offset, and the offset after them."""
        offset = self.shipped_offset()
        records: list[dict[str, Any]] = []
        with open(self._path, "rb") as f:
            f.seek(offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn last line from a crash mid-write: not a record yet
                offset += len(line)
                if line.strip():
                    records.append(orjson.loads(line))
                if len(records) >= limit:
                    break
        return records, offset

    def mark_shipped(self, offset: int) -> None:
        if offset >= COMPACT_BYTES and offset == self._path.stat().st_size:
            # Everything is in the database: compact. Offset first, so a crash in between
            # re-ships (idempotently) rather than skips.
            self._write_offset(0)
            self._file.truncate(0)
            return
        self._write_offset(offset)

    def _write_offset(self, offset: int) -> None:
        tmp = self._offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self._offset_path)

    def reject(self, record: dict[str, Any]) -> None:
        """Set aside a record the database refused (kept for an operator to look at)."""
        with open(self._path.with_name("rejected.jsonl"), "ab") as f:
            f.write(orjson.dumps(record) + b"\n")
            os.fsync(f.fileno())

    def close(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
