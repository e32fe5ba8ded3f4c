"""Event scheduling for simulators (pure).

A :class:`Scheduler` holds one pending instant per named process ("heartbeat",
"position", ...); setting a name again replaces its earlier instant. Ties are broken by
insertion order, so a simulation is a deterministic function of its seed and clock.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


class Scheduler:
    __slots__ = ("_current", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, str]] = []
        self._current: dict[str, int] = {}
        self._seq = 0

    def set(self, name: str, at: datetime) -> None:
        """Run process ``name`` at ``at`` (replacing any pending run of it)."""
        self._seq += 1
        self._current[name] = self._seq
        heapq.heappush(self._heap, (at, self._seq, name))

    def cancel(self, name: str) -> None:
        self._current.pop(name, None)

    def clear(self) -> None:
        self._heap.clear()
        self._current.clear()

    def pending(self, name: str) -> bool:
        return name in self._current

    def _drop_stale(self) -> None:
        while self._heap and self._current.get(self._heap[0][2]) != self._heap[0][1]:
            heapq.heappop(self._heap)

    def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, until: datetime) -> tuple[datetime, str] | None:
        """The earliest process due at or before ``until``, removed; None if none is."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > until:
            return None
        at, _, name = heapq.heappop(self._heap)
        del self._current[name]
        return at, name


def next_daily(after: datetime, times: list[time], zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``after`` whose local time of day is in ``times``."""
    local = after.astimezone(zone)
    day = local.date()
    for day_offset in range(0, 3):
        candidates = []
        for moment in times:
            naive = datetime.combine(day + timedelta(days=day_offset), moment)
            candidate = naive.replace(tzinfo=zone).astimezone(after.tzinfo)
            if candidate > after:
                candidates.append(candidate)
        if candidates:
            return min(candidates)
    raise ValueError("no daily time given")  # only reachable with an empty list


def poisson_delay(rng: random.Random, per_day: float) -> timedelta | None:
    """Time to the next event of a Poisson process with ``per_day`` events a day."""
    if per_day <= 0:
        return None
    return timedelta(seconds=rng.expovariate(per_day / 86_400.0))


def jittered(rng: random.Random, at: datetime, jitter: timedelta) -> datetime:
    if jitter <= timedelta(0):
        return at
    return at + timedelta(seconds=rng.uniform(-1.0, 1.0) * jitter.total_seconds())
