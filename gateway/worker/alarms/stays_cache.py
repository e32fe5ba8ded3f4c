"""Stays in another municipality in memory, for the alarm path (issue #19.3; docs/stays.md).

Loaded at start with the other caches and kept current by ``LISTEN wg_stays`` (migration
0019: a stay recorded or cut short, an agreement accepted or ended), so the alarm service
decides which host (if any) also receives an alarm without asking the database. Every
change reloads the whole set: stays in force are few (a person in one place at a time).
Kept: stays not ended, and those ended within the alarms' lifetime (an alarm raised
during a stay goes to the host until it is resolved). While the database is away the
cache serves what it holds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import psycopg

from gateway.adapters.postgres import listen, stay_queries
from gateway.domain.alarms import Alarm
from gateway.domain.stays import Stay, StayIndex

log = logging.getLogger(__name__)

CHANNEL = "wg_stays"


class StayCache:
    def __init__(self, url: str, keep_ended_s: float) -> None:
        self._url = url
        self._keep_ended_s = keep_ended_s
        self.index = StayIndex()
        self.reloads = 0
        self._changes = listen.Subscription(url, CHANNEL, self._reload, full_reload_s=60.0)

    def host_of(self, alarm: Alarm) -> Stay | None:
        """The stay whose host also receives ``alarm`` (raised inside it); None: the home's
        alone."""
        return self.index.host_of(alarm.tenant_id, alarm.person_id, alarm.raised_at)

    def stays(self, person_id: UUID) -> tuple[Stay, ...]:
        return self.index.stays(person_id)

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.index = StayIndex(await stay_queries.load_stays(conn, self._keep_ended_s))
        self.reloads += 1
        log.info("stays loaded", extra={"stays": len(self.index)})

    async def load(self) -> None:
        """Read the stays and listen for changes; ``follow`` goes on."""
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(_payload: str) -> None:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await self._reload(conn)

        try:
            await self._changes.follow(changed, stop)
        finally:
            await self._changes.close()
