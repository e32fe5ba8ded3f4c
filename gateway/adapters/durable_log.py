"""An append-only local file of JSON lines with a consumer's offset: the shape of the
alarm journal (shipped into PostgreSQL) and of each webhook receiver's outbox.

``append`` writes to the operating system before it returns (the record survives the
process dying) and fsyncs in a worker thread right after, so a slow disk never delays
the caller. ``pending`` reads records after the consumer's offset; ``consumed`` records
how far the consumer got (written atomically) and compacts the file once everything in
it is consumed and it has grown past ``compact_bytes``. A torn last line from a crash
mid-write is not a record until it is complete.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson

COMPACT_BYTES = 4 * 1024 * 1024

log = logging.getLogger(__name__)


class DurableLog:
    def __init__(
        self, path: Path, *, offset_path: Path | None = None, compact_bytes: int = COMPACT_BYTES
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._offset_path = offset_path or path.with_name(path.name + ".offset")
        self._compact_bytes = compact_bytes
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held open
        self._syncing = False
        self._sync_again = False

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self._file.write(b"".join(orjson.dumps(r) + b"\n" for r in records))  # in the OS now
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
            log.error("durable log fsync failed",
                      extra={"log": self.path.name, "error": repr(future.exception())})  # fmt: skip
        if self._sync_again:
            self._sync_again = False
            self._sync_soon()

    def offset(self) -> int:
        try:
            return int(self._offset_path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def pending(self, limit: int = 1000, offset: int | None = None) -> list[tuple[Any, int]]:
        """Up to ``limit`` records after ``offset`` (the consumer's by default), each with
        the offset just after it."""
        position = self.offset() if offset is None else offset
        out: list[tuple[Any, int]] = []
        with open(self.path, "rb") as f:
            f.seek(position)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # a torn last line: not a record yet
                position += len(line)
                if line.strip():
                    out.append((orjson.loads(line), position))
                if len(out) >= limit:
                    break
        return out

    def size(self) -> int:
        return self.path.stat().st_size

    def consumed(self, offset: int) -> None:
        if offset >= self._compact_bytes and offset == self.size():
            # Everything is consumed: compact. Offset first, so a crash in between
            # consumes again (idempotently) rather than skips.
            self._write_offset(0)
            self._file.truncate(0)
            return
        self._write_offset(offset)

    def _write_offset(self, offset: int) -> None:
        tmp = self._offset_path.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self._offset_path)

    def close(self) -> None:
        os.fsync(self._file.fileno())
        self._file.close()
