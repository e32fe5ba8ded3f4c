"""Moves between municipalities taking effect on their date (issue #19.2; docs/moves.md).

A move accepted by the receiving municipality already decides where data goes: each
moved device's assignments meet at the date, and a message is bound by its own stamp.
What is left for the date is the device rows: from then on the devices (their registry
entries, their state, what the engine raises on its own, such as a silence) are the
receiving municipality's, and the sending one no longer sees them. Every
``moves.interval_s``, and at the next accepted move's date, a worker applies the moves
due (``apply_person_moves()``, which both municipalities' access logs record). Any worker
may run it: a move is applied by the one transaction that flips its status; the others
skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import psycopg

from gateway.adapters.postgres import move_queries as q
from gateway.domain.moves import next_wake

log = logging.getLogger(__name__)


class MoveApplier:
    """Applies accepted moves when their date has come. Built by gateway.bootstrap."""

    def __init__(self, *, database_url: str, interval_s: float) -> None:
        self.database_url = database_url
        self.interval_s = interval_s
        self.applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wait = self.interval_s
            try:
                wait = await self.apply_due()
            except psycopg.Error as exc:
                log.warning("moves not applied this time; retried",
                            extra={"error": type(exc).__name__})  # fmt: skip
            except Exception:  # a bug must not end the moves for good
                log.exception("moves not applied this time (unexpected error)")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def apply_due(self) -> float:
        """Apply what is due; seconds until it is worth looking again."""
        async with await psycopg.AsyncConnection.connect(
            self.database_url, connect_timeout=10
        ) as conn:
            async with conn.transaction():
                ids = await q.apply_due(conn)
            due = await q.next_due(conn)
        for move_id in ids:
            log.info("move applied", extra={"move_id": move_id})
        self.applied += len(ids)
        return next_wake(datetime.now(UTC), due, self.interval_s)
