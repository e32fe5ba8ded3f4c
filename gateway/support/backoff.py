"""The one backoff of the code base (pure): the wait before each retry of a reconnect or
retry loop, exponential from ``base_s`` up to ``cap_s``, optionally with jitter, and reset
after a success.

``delay(n)`` is the wait before retry number ``n`` (0 the first): the ceiling
``min(cap_s, base_s * 2**n)``; with ``jitter`` (a fraction ``f`` of the ceiling, 0 off,
1 all of it) it is ``ceiling * (1 - f)`` plus a uniform draw in ``[0, ceiling * f]``, one
draw from ``rng`` (or the ``random`` module) per delay. ``at_least`` (a server's
Retry-After) raises the wait to at least that, still no more than ``cap_s``.

A loop keeps a :class:`Backoff`: ``next()`` is the wait before the coming retry (and the
one after will be longer), ``reset()`` after a success; ``peek()`` is the coming wait
without moving on (for a loop that logs it before it waits it).

The gateway's reconnect loops (MQTT, PostgreSQL) use ``Backoff(0.1, 5.0)``, the batch
writer ``Backoff(0.05, 2.0)``, all without jitter; the webhook sender and the device
simulators use jitter 0.5 (half fixed, half random)."""

from __future__ import annotations

import random

# 2**64 times any positive base passes any cap in use; a larger exponent would only
# overflow the float.
_MAX_EXPONENT = 64


class Backoff:
    __slots__ = ("_attempt", "_coming", "_rng", "base_s", "cap_s", "jitter")

    def __init__(
        self,
        base_s: float,
        cap_s: float,
        *,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if base_s < 0 or cap_s < 0:
            raise ValueError("need base_s >= 0 and cap_s >= 0")
        if not (0.0 <= jitter <= 1.0):
            raise ValueError("need 0 <= jitter <= 1")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rng = rng
        self._attempt = 0
        self._coming: float | None = None

    @property
    def attempt(self) -> int:
        """Retries waited for since the last reset (the exponent of the coming wait)."""
        return self._attempt

    def delay(self, attempt: int, *, at_least: float | None = None) -> float:
        """The wait before retry number ``attempt`` (0 the first); draws once when jittered."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))
        if self.jitter:
            fixed = ceiling * (1.0 - self.jitter)
            spread = ceiling * self.jitter
            rng = self._rng if self._rng is not None else random
            wait = fixed + rng.uniform(0.0, spread)
        else:
            wait = ceiling
        if at_least is not None:
            wait = min(max(wait, at_least), self.cap_s)
        return wait

    def peek(self) -> float:
        """The coming wait, without moving on (drawn once: ``next()`` returns the same)."""
        if self._coming is None:
            self._coming = self.delay(self._attempt)
        return self._coming

    def next(self) -> float:
        """The coming wait; the one after it is twice as long (up to the cap)."""
        wait = self.peek()
        self._coming = None
        self._attempt = min(self._attempt + 1, _MAX_EXPONENT)
        return wait

    def reset(self) -> None:
        """After a success: the next wait is the first again."""
        self._attempt = 0
        self._coming = None
