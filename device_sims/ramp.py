"""Connection ramp: bounds how many devices connect at once and how fast.

A fleet of thousands must not open all its connections in the same millisecond (at
start-up, or all together after the broker comes back); every connection attempt goes
through one shared :class:`Ramp`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Ramp:
    def __init__(self, concurrency: int = 64, rate_per_s: float | None = 500.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._semaphore = asyncio.Semaphore(concurrency)
        self._interval = 0.0 if rate_per_s is None else 1.0 / rate_per_s
        self._next_start = 0.0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one connection-attempt slot, started no sooner than the rate allows."""
        async with self._semaphore:
            if self._interval:
                loop = asyncio.get_running_loop()
                now = loop.time()
                start = max(now, self._next_start)
                self._next_start = start + self._interval
                if start > now:
                    await asyncio.sleep(start - now)  # pacing, not synchronisation
            yield
