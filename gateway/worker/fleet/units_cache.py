"""Units and resident tags in memory (issue #19.4, docs/units.md).

Small tables (a tenant has tens of units and a tag per resident of them), so every
change notified on ``wg_units`` (triggers of migration 0018) reloads both whole. Read per
message of a unit's shared device only: the tags say whose a reading is, the units name
themselves in their devices' alarms. Keeps serving from memory while the database is
down, like the registry.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg

from gateway.adapters.postgres import listen, unit_queries
from gateway.domain.units import ResidentTags, Unit

FULL_RELOAD_S = 300.0


class UnitsCache:
    def __init__(self, url: str) -> None:
        self._url = url
        self._units: dict[UUID, Unit] = {}
        self._tags = ResidentTags()
        self._changes = listen.Subscription(url, "wg_units", self._reload,
                                            full_reload_s=FULL_RELOAD_S)  # fmt: skip

    def unit(self, unit_id: UUID) -> Unit | None:
        return self._units.get(unit_id)

    def tags(self) -> ResidentTags:
        """The resident tags now (a new object after each reload; never changed)."""
        return self._tags

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        units = {u.unit_id: u for u in await unit_queries.load_units(conn)}
        tags = ResidentTags(await unit_queries.load_resident_tags(conn))
        self._units, self._tags = units, tags

    async def load(self) -> None:
        await self._changes.load()

    async def follow(self, stop: asyncio.Event) -> None:
        async def changed(_tenant: str) -> None:
            await self._reload_now()

        await self._changes.follow(changed, stop)

    async def _reload_now(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=5
        ) as conn:
            await self._reload(conn)

    async def close(self) -> None:
        await self._changes.close()
