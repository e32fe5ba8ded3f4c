"""Silent devices: a device that has said nothing for its model's heartbeat interval times
a factor, plus a grace period, raises ``device_silent``. Pure, no clock of its own.

Every message moves its device's deadline in a dict (O(1)); the heap holds at most one
entry per device. When an entry comes due and the device has been heard from since, it is
pushed back with the current deadline, so the heap stays the size of the fleet however
many messages arrive, and finding what is due costs only what is due.
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
        self._scheduled: set[str] = set()  # devices with an entry in the heap
        self._reported: set[str] = set()

    def touch(self, device_id: str, seen_at: datetime, bound: timedelta) -> bool:
        """The device was heard from. True if it had been reported silent (now back)."""
        deadline = seen_at + bound
        current = self._deadline.get(device_id)
        was_reported = device_id in self._reported
        if current is not None and deadline <= current and not was_reported:
            return False  # an older message (buffered replay) does not move the deadline back
        self._deadline[device_id] = deadline
        if device_id not in self._scheduled:
            heapq.heappush(self._heap, (deadline, device_id))
            self._scheduled.add(device_id)
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
            _, device_id = heapq.heappop(self._heap)
            self._scheduled.discard(device_id)
            deadline = self._deadline.get(device_id)
            if deadline is None or device_id in self._reported:
                continue  # forgotten, or already reported
            if deadline > now:  # heard from since this entry was pushed: reschedule
                heapq.heappush(self._heap, (deadline, device_id))
                self._scheduled.add(device_id)
                continue
            self._reported.add(device_id)
            found.append(device_id)
        return found

    def next_deadline(self) -> datetime | None:
        """Earliest time anything may be due (possibly early; never late)."""
        return self._heap[0][0] if self._heap else None

    def is_silent(self, device_id: str) -> bool:
        return device_id in self._reported

    def heap_size(self) -> int:
        return len(self._heap)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._deadline

    def __len__(self) -> int:
        return len(self._deadline)
