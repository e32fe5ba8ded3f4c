"""Silent devices: a device that has said nothing for its model's heartbeat interval times
a factor, plus a grace period, raises ``device_silent``. Pure, no clock of its own.

Every message moves its device's deadline (O(1)), kept in a column by the device's
position in the ``FleetIndex`` the registry's table shares. Each watched device also has
at most one entry in a queue of one-second buckets (a list of device ids per second, the
seconds in a heap): when a bucket comes due, a device heard from since its entry was made
is moved on to the bucket of its current deadline, so the queue stays the size of the
fleet however many messages arrive, and finding what is due costs only what is due (plus
the rest of the current second's bucket). Deadlines are kept as integer microseconds:
exact, and a third of a datetime's size; the bucket entry is a pointer to the device id
the caller passed (the registry's string), not an object of its own.
"""

from __future__ import annotations

import heapq
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.domain.fleet_index import FleetIndex
from gateway.domain.instants import from_us, span_us, to_us

_BUCKET_US = 1_000_000


@dataclass(frozen=True)
class SilencePolicy:
    factor: float = 2.0
    grace_s: float = 30.0

    def bound(self, heartbeat_interval_s: int) -> timedelta:
        """How long a device may be silent before it is reported."""
        return timedelta(seconds=heartbeat_interval_s * self.factor + self.grace_s)


_UNWATCHED = -(2**63)  # in the deadline column


class SilenceWatch:
    def __init__(self, index: FleetIndex | None = None) -> None:
        """``index``: positions of devices shared with the other tables kept per device (a
        watch of its own if not given)."""
        self._index = index if index is not None else FleetIndex()
        # watched devices' deadlines (microseconds since the epoch) by index position
        self._deadline = array("q")
        self._watched = 0
        self._buckets: dict[int, list[str]] = {}  # second -> devices with an entry there
        self._seconds: list[int] = []  # heap of the buckets' seconds
        self._entries = 0
        self._reported: set[str] = set()
        # The few exceptions to "a watched device has exactly one entry", kept apart so
        # that the common case needs no per-device flag:
        self._unqueued: set[str] = set()  # watched, reported, no entry (taken when reported)
        self._orphans: set[str] = set()  # forgotten (not watched) but an entry is queued

    def touch(self, device_id: str, seen_at: datetime, bound: timedelta) -> bool:
        """The device was heard from. True if it had been reported silent (now back)."""
        deadline = to_us(seen_at) + span_us(bound)
        i = self._position(device_id)
        current = self._deadline[i]
        was_reported = device_id in self._reported
        if current != _UNWATCHED and deadline <= current and not was_reported:
            return False  # an older message (buffered replay) does not move the deadline back
        self._deadline[i] = deadline
        if current == _UNWATCHED:
            self._watched += 1
            if device_id in self._orphans:
                self._orphans.discard(device_id)  # its queued entry serves again
            else:
                self._enqueue(device_id, deadline)
        elif device_id in self._unqueued:
            self._unqueued.discard(device_id)
            self._enqueue(device_id, deadline)
        self._reported.discard(device_id)
        return was_reported

    def forget(self, device_id: str) -> None:
        """Stop watching (device returned or retired)."""
        i = self._index.find(device_id)
        if i is not None and i < len(self._deadline) and self._deadline[i] != _UNWATCHED:
            self._deadline[i] = _UNWATCHED
            self._watched -= 1
            if device_id in self._unqueued:
                self._unqueued.discard(device_id)
            else:
                self._orphans.add(device_id)  # dropped when its entry comes due
        self._reported.discard(device_id)

    def mark_silent(self, device_id: str) -> None:
        """Reported silent by other means (an ``offline`` status or last will)."""
        self._reported.add(device_id)

    def due(self, now: datetime) -> list[str]:
        """Devices whose deadline has passed and that were not reported yet, earliest
        deadline first."""
        now_us = to_us(now)
        found: list[tuple[int, str]] = []
        while self._seconds and self._seconds[0] <= now_us // _BUCKET_US:
            second = self._seconds[0]
            entries = self._buckets[second]
            waiting: list[str] = []  # in the current second, not due yet
            taken = 0  # entries that leave the queue
            for device_id in entries:
                deadline = self._deadline_of(device_id)
                if deadline is None:  # forgotten
                    self._orphans.discard(device_id)
                    taken += 1
                elif device_id in self._reported:  # already reported (last will)
                    self._unqueued.add(device_id)
                    taken += 1
                elif deadline > now_us:  # heard from since the entry was made
                    if deadline // _BUCKET_US == second:
                        waiting.append(device_id)
                    else:
                        self._requeue(device_id, deadline)  # to a later second
                else:
                    self._reported.add(device_id)
                    self._unqueued.add(device_id)
                    found.append((deadline, device_id))
                    taken += 1
            self._entries -= taken
            if waiting:  # the current second: keep what is not due yet for the next call
                self._buckets[second] = waiting
                break
            del self._buckets[second]
            heapq.heappop(self._seconds)
        found.sort()
        return [device_id for _, device_id in found]

    def next_deadline(self) -> datetime | None:
        """Earliest time anything may be due (possibly early; never late)."""
        if not self._seconds:
            return None
        return from_us(self._seconds[0] * _BUCKET_US)

    def is_silent(self, device_id: str) -> bool:
        return device_id in self._reported

    def heap_size(self) -> int:
        """Entries queued (at most one per device watched or recently forgotten)."""
        return self._entries

    def _enqueue(self, device_id: str, deadline: int) -> None:
        self._entries += 1
        self._requeue(device_id, deadline)

    def _requeue(self, device_id: str, deadline: int) -> None:
        second = deadline // _BUCKET_US
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [device_id]
            heapq.heappush(self._seconds, second)
        else:
            bucket.append(device_id)

    def _deadline_of(self, device_id: str) -> int | None:
        i = self._index.find(device_id)
        if i is None or i >= len(self._deadline):
            return None
        deadline = self._deadline[i]
        return None if deadline == _UNWATCHED else deadline

    def _position(self, device_id: str) -> int:
        """The device's position, the deadline column grown to cover it."""
        i = self._index.add(device_id)
        missing = i + 1 - len(self._deadline)
        if missing > 0:
            self._deadline.extend([_UNWATCHED] * missing)
        return i

    def __contains__(self, device_id: object) -> bool:
        return isinstance(device_id, str) and self._deadline_of(device_id) is not None

    def __len__(self) -> int:
        return self._watched
