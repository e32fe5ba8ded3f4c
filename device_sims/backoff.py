"""Reconnect backoff (pure): exponential with jitter, reset after a good connection."""

from __future__ import annotations

import random


class Backoff:
    __slots__ = ("_attempt", "_rng", "base_s", "cap_s")

    def __init__(self, rng: random.Random, *, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self._rng = rng
        self._attempt = 0
        self.base_s = base_s
        self.cap_s = cap_s

    def next(self) -> float:
        """Seconds to wait before the next attempt: half fixed, half random."""
        ceiling = min(self.cap_s, self.base_s * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return ceiling / 2.0 + self._rng.uniform(0.0, ceiling / 2.0)

    def reset(self) -> None:
        self._attempt = 0
