"""The device's send queue, which doubles as its offline buffer (pure).

While the link is down, buffered messages (readings, events, replies) queue up and are
published on reconnect in their original order, with their original ids and timestamps;
live-only messages (heartbeats) are dropped. The queue is bounded like a device's flash:
when full, the oldest message is dropped and counted.

:meth:`Outbox.hold` marks the moment a device decides to go offline: what was queued
before may still be sent, what comes after waits for :meth:`Outbox.release`.
"""

from __future__ import annotations

from collections import deque

from device_sims.envelope import Outgoing

DEFAULT_LIMIT = 10_000


class Outbox:
    __slots__ = ("_queue", "_sendable", "dropped", "limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._queue: deque[Outgoing] = deque()
        self._sendable: int | None = None  # None: everything; n: only the first n
        self.limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def held(self) -> bool:
        return self._sendable is not None

    def put(self, item: Outgoing, *, link_up: bool) -> None:
        if not link_up and not item.buffered:
            self.dropped += 1
            return
        if len(self._queue) >= self.limit:
            self._queue.popleft()
            self.dropped += 1
            if self._sendable:
                self._sendable -= 1
        self._queue.append(item)

    def put_first(self, item: Outgoing) -> None:
        """Queue ``item`` ahead of everything (the online status on reconnect)."""
        self._queue.appendleft(item)
        if self._sendable is not None:
            self._sendable += 1

    def peek(self) -> Outgoing | None:
        """The next message that may be sent now, if any."""
        if not self._queue or self._sendable == 0:
            return None
        return self._queue[0]

    def pop(self) -> Outgoing:
        if self._sendable == 0:
            raise IndexError("nothing may be sent while the outbox is held")
        if self._sendable is not None:
            self._sendable -= 1
        return self._queue.popleft()

    def hold(self) -> None:
        """Everything queued from now on waits for :meth:`release`."""
        if self._sendable is None:
            self._sendable = len(self._queue)

    def release(self) -> None:
        self._sendable = None

    def drop_unbuffered(self) -> None:
        """On losing the link: live-only messages not yet sent are stale; drop them."""
        items = list(self._queue)
        kept = deque(item for item in items if item.buffered)
        if self._sendable is not None:
            self._sendable = sum(1 for item in items[: self._sendable] if item.buffered)
        self.dropped += len(items) - len(kept)
        self._queue = kept
