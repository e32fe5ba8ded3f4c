"""Fan-out of alarm events to this API process's live streams (SSE), per tenant.

The events come from the workers over the broker (``tenants/+/alarms``). Each gets an id
from this process; a bounded ring of recent events per tenant lets a reconnecting client
ask for everything after the last id it saw (``Last-Event-ID``) and catch up without
duplicates. If it was away longer than the ring holds, or its id was issued by another
API process (a replica, or this one before a restart), it is told to reload (``resync``):
ids start at this process's start time in microseconds, so ids of different processes do
not interleave. When the link to the broker was lost, events published meanwhile never
reached this process: once it is subscribed again (``gap``), every live stream is told to
reload, and so is a client reconnecting with an id from before the gap.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HubEvent:
    id: int
    tenant_id: str
    data: bytes


#: put on live streams' queues after a gap: "events may be missing, reload"
RESYNC = HubEvent(-1, "", b"")


class AlarmHub:
    def __init__(
        self, ring_size: int = 1000, queue_size: int = 1000, first_id: int | None = None
    ) -> None:
        self.first_id = first_id if first_id is not None else time.time_ns() // 1000
        self._ids = itertools.count(self.first_id)
        self._latest = self.first_id - 1
        self._gap_at = self.first_id - 1  # ids up to this one come before a possible gap
        self.gaps = 0
        self._ring: dict[str, deque[HubEvent]] = {}
        self._subscribers: dict[str, set[asyncio.Queue[HubEvent | None]]] = {}
        self._ring_size = ring_size
        self._queue_size = queue_size

    def latest(self) -> int:
        """The id of the last event this process issued (``first_id - 1`` if none yet)."""
        return self._latest

    def publish(self, tenant_id: str, data: bytes) -> None:
        event = HubEvent(next(self._ids), tenant_id, data)
        self._latest = event.id
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

    def gap(self) -> None:
        """Events may have been missed (the link to the broker was lost and is back):
        every live stream is told to reload, and so is a reconnect from before now."""
        self.gaps += 1
        self._gap_at = self._latest
        for queues in self._subscribers.values():
            for queue in list(queues):
                try:
                    queue.put_nowait(RESYNC)
                except asyncio.QueueFull:  # too slow anyway: cut off, it reconnects
                    queues.discard(queue)
                    queue.get_nowait()
                    queue.put_nowait(None)

    def subscribe(self, tenant_id: str) -> asyncio.Queue[HubEvent | None]:
        queue: asyncio.Queue[HubEvent | None] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(tenant_id, set()).add(queue)
        return queue

    def unsubscribe(self, tenant_id: str, queue: asyncio.Queue[HubEvent | None]) -> None:
        self._subscribers.get(tenant_id, set()).discard(queue)

    def since(self, tenant_id: str, last_id: int) -> tuple[list[HubEvent], bool]:
        """Events after ``last_id`` (0: a fresh stream, which gets what the ring holds);
        the flag is False if some may be missing: evicted from a full ring, issued before
        a gap, or ``last_id`` was not issued by this process."""
        ring = self._ring.get(tenant_id, deque())
        if last_id == 0:
            return list(ring), True
        if not self._gap_at <= last_id <= self._latest:
            return [], False
        events = [e for e in ring if e.id > last_id]
        evicted = len(ring) == ring.maxlen and ring[0].id > last_id + 1
        return events, not evicted
