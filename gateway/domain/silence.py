"""Silent devices: a device that has said nothing for its model's heartbeat interval times
a factor, plus a grace period, raises ``device_silent``. Pure, no clock of its own.

The watch keeps one deadline per device in a heap with lazy invalidation, so touching a
device on every message is O(log n) and finding what is due costs only what is due.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SilencePolicy:
    factor: float = 2.0
    grace_s: float = 30.0

    def bound(self, heartbeat_interval_s: int) -> timedelta:
        """How long a device may be silent before it is reported."""
        return timedelta(seconds=heartbeat_interval_s * self.factor + self.grace_s)


class SilenceWatch:
    def __init__(self) -> None:
        self._deadline: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._reported: set[str] = set()

    def touch(self, device_id: str, seen_at: datetime, bound: timedelta) -> bool:
        """The device was heard from. True if it had been reported silent (now back)."""
        deadline = seen_at + bound
        current = self._deadline.get(device_id)
        if current is not None and deadline <= current and device_id not in self._reported:
            return False  # an older message (buffered replay) does not move the deadline back
        self._deadline[device_id] = deadline
        heapq.heappush(self._heap, (deadline, device_id))
        was_reported = device_id in self._reported
        self._reported.discard(device_id)
        return was_reported

    def forget(self, device_id: str) -> None:
        """Stop watching (device returned or retired)."""
        self._deadline.pop(device_id, None)
        self._reported.discard(device_id)

    def mark_silent(self, device_id: str) -> None:
        """Reported silent by other means (an ``offline`` status or last will)."""
        self._reported.add(device_id)

    def due(self, now: datetime) -> list[str]:
        """Devices whose deadline has passed and that were not reported yet."""
        found = []
        while self._heap and self._heap[0][0] <= now:
            deadline, device_id = heapq.heappop(self._heap)
            if self._deadline.get(device_id) != deadline or device_id in self._reported:
                continue  # superseded by a later touch, or forgotten
            self._reported.add(device_id)
            found.append(device_id)
        return found

    def next_deadline(self) -> datetime | None:
        while self._heap:
            deadline, device_id = self._heap[0]
            if self._deadline.get(device_id) == deadline and device_id not in self._reported:
                return deadline
            heapq.heappop(self._heap)
        return None

    def is_silent(self, device_id: str) -> bool:
        return device_id in self._reported

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._deadline

    def __len__(self) -> int:
        return len(self._deadline)
