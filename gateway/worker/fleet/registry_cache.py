"""The registry in memory: device -> tenant, status, model, assignments.

Loaded at start (already listening), kept current by ``LISTEN wg_registry`` (triggers
notify on every change to devices and assignments) and a periodic full reload. A device
not in memory is looked up once (a newly registered device whose notification has not
arrived yet) and the answer, found or not, is remembered briefly so that a flood of
messages for an unknown id costs one query, not one per message. Keeps serving from
memory while the database is down: binding, and with it the alarm path, does not depend
on the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from gateway.adapters.postgres import listen, queries
from gateway.domain.fleet_index import FleetIndex
from gateway.domain.registry import DeviceRecord
from gateway.support.metrics import IngestMetrics
from gateway.worker.fleet.canon import PERSON_IDS
from gateway.worker.fleet.registry_table import RegistryTable
from gateway.worker.fleet.units_cache import UnitsCache

NEGATIVE_TTL_S = 5.0
FULL_RELOAD_S = 300.0


class RegistryCache:
    def __init__(self, url: str, metrics: IngestMetrics, index: FleetIndex | None = None) -> None:
        self._url = url
        self._metrics = metrics
        self._devices = RegistryTable(index)
        self._missing: dict[str, float] = {}
        self._lookup_conn: psycopg.AsyncConnection[Any] | None = None
        self._changes = listen.Subscription(
            url, "wg_registry", self._reload, full_reload_s=FULL_RELOAD_S
        )
        self.loaded = asyncio.Event()
        #: units and resident tags, for units' shared devices (#19.4): loaded, followed
        #: and closed with the registry
        self.units = UnitsCache(url)

    def get(self, device_id: str) -> DeviceRecord | None:
        return self._devices.get(device_id)

    @property
    def index(self) -> FleetIndex:
        """Positions of devices, shared with the other tables kept per device."""
        return self._devices.index

    def devices(self) -> Iterator[DeviceRecord]:
        return self._devices.records()

    def device_ids(self) -> Iterator[str]:
        return self._devices.device_ids()

    async def resolve(self, device_id: str) -> DeviceRecord | None:
        """From memory; on a miss, one database look-up, remembered for a few seconds."""
        record = self._devices.get(device_id)
        if record is not None:
            return record
        missed_at = self._missing.get(device_id)
        now = time.monotonic()
        if missed_at is not None and now - missed_at < NEGATIVE_TTL_S:
            return None
        try:
            record = await asyncio.wait_for(self._lookup(device_id), timeout=2.0)
        except (psycopg.Error, OSError, TimeoutError):
            record = None
        if record is None:
            if len(self._missing) > 100_000:
                self._missing.clear()
            self._missing[device_id] = now
            return None
        self._put(record)
        return record

    async def _lookup(self, device_id: str) -> DeviceRecord | None:
        if self._lookup_conn is None or self._lookup_conn.closed:
            self._lookup_conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=2
            )
        return await queries.load_device(self._lookup_conn, device_id)

    def _put(self, record: DeviceRecord) -> None:
        self._devices.put(record)
        self._missing.pop(record.device_id, None)
        self._metrics.registry_devices.set(len(self._devices))

    async def _reload(self, conn: psycopg.AsyncConnection[Any]) -> None:
        fresh = self._devices.fresh()
        await queries.load_registry(conn, fresh)
        self._devices.adopt(fresh)
        self._metrics.registry_devices.set(len(self._devices))
        PERSON_IDS.sweep()  # ids of persons no longer assigned and gone from the rules
        self.loaded.set()

    async def load(self) -> None:
        """Read the registry and listen for its changes; ``follow`` goes on from there."""
        await self._changes.load()
        self._missing.clear()
        await self.units.load()

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply change notifications until ``stop``; reconnects when the database returns."""

        async def changed(device_id: str) -> None:
            record = await self._lookup(device_id)
            if record is None:
                self._devices.remove(device_id)
            else:
                self._put(record)

        await asyncio.gather(self._changes.follow(changed, stop), self.units.follow(stop))

    async def close(self) -> None:
        if self._lookup_conn is not None:
            await self._lookup_conn.close()
        await self._changes.close()
        await self.units.close()
