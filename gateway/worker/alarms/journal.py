"""The durable local alarm journal: the safety path's own record, independent of the
database.

Every alarm event is appended as one JSON line to a :class:`DurableLog` (in the operating
system before ``append`` returns, fsynced right after without making the alarm wait). A
shipper copies the journal into PostgreSQL in order and records how far it got; when
everything is shipped the journal is compacted. If the database is down, events pile up
here and are replayed when it returns; if the gateway dies, the next start ships what was
not shipped yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from gateway.adapters.durable_log import DurableLog
from gateway.domain.alarms import AlarmEvent
from gateway.worker.alarms.codec import event_to_dict


class AlarmJournal:
    def __init__(self, directory: Path) -> None:
        self._log = DurableLog(
            directory / "alarm-events.jsonl", offset_path=directory / "shipped.offset"
        )

    def append(self, events: list[AlarmEvent]) -> None:
        self._log.append([event_to_dict(e) for e in events])

    def shipped_offset(self) -> int:
        return self._log.offset()

    def unshipped(self, limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """Up to ``limit`` records after the shipped offset, and the offset after them."""
        pending = self._log.pending(limit)
        if not pending:
            return [], self._log.offset()
        return [record for record, _ in pending], pending[-1][1]

    def mark_shipped(self, offset: int) -> None:
        self._log.consumed(offset)

    def reject(self, record: dict[str, Any]) -> None:
        """Set aside a record the database refused (kept for an operator to look at)."""
        with open(self._log.path.with_name("rejected.jsonl"), "ab") as f:
            f.write(orjson.dumps(record) + b"\n")
            os.fsync(f.fileno())

    def close(self) -> None:
        self._log.close()
