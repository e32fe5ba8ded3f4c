"""In-process fan-out of alarm events to live API streams (SSE), per tenant.

Each event gets a monotonically increasing id; a bounded ring of recent events per tenant
lets a reconnecting client ask for everything after the last id it saw (``Last-Event-ID``)
and catch up without duplicates. If it was away longer than the ring holds, it is told
to reload (event ``resync``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HubEvent:
    id: int
    tenant_id: str
    data: bytes


class AlarmHub:
    def __init__(self, ring_size: int = 1000, queue_size: int = 1000) -> None:
        self._ids = itertools.count(1)
        self._ring: dict[str, deque[HubEvent]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[HubEvent | None]]] = {}
        self._ring_size = ring_size
        self._queue_size = queue_size

    def publish(self, tenant_id: str, data: bytes) -> None:
        event = HubEvent(next(self._ids), tenant_id, data)
        self._ring.setdefault(tenant_id, deque(maxlen=self._ring_size)).append(event)
        for queue in list(self._subscribers.get(tenant_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client too slow to keep up is cut off (None ends its stream); it
                # reconnects with Last-Event-ID and catches up from the ring.
                self._subscribers[tenant_id].discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def subscribe(self, tenant_id: str) -> asyncio.Queue[HubEvent | None]:
        queue: asyncio.Queue[HubEvent | None] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(tenant_id, set()).add(queue)
        return queue

    def unsubscribe(self, tenant_id: str, queue: asyncio.Queue[HubEvent | None]) -> None:
        self._subscribers.get(tenant_id, set()).discard(queue)

    def since(self, tenant_id: str, last_id: int) -> tuple[list[HubEvent], bool]:
        """Events after ``last_id``; the flag is False if some were already evicted."""
        ring = self._ring.get(tenant_id, deque())
        events = [e for e in ring if e.id > last_id]
        complete = not ring or ring[0].id <= last_id + 1 or last_id == 0
        return events, complete
