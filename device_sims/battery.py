"""Battery charge of a simulated device (pure): linear drain plus a cost per operation."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from device_sims.params import BatterySpec

_MARGIN = 1e-6  # percent


class Battery:
    __slots__ = ("_at", "_per_s", "low_reported", "percent", "spec")

    def __init__(self, spec: BatterySpec, start: datetime) -> None:
        self.spec = spec
        self.percent = spec.start_percent
        self.low_reported = False
        self._at = start
        self._per_s = spec.drain_percent_per_day / 86_400.0

    def update(self, at: datetime) -> None:
        """Drain up to ``at`` (never backwards)."""
        if at > self._at:
            self.percent = max(0.0, self.percent - (at - self._at).total_seconds() * self._per_s)
            self._at = at

    def spend(self, percent: float) -> None:
        self.percent = max(0.0, self.percent - percent)

    @property
    def empty(self) -> bool:
        return self.percent <= 0.0

    @property
    def low(self) -> bool:
        return self.percent <= self.spec.low_threshold_percent

    @property
    def reported(self) -> int:
        """What the device shows: whole percent, rounded up while any charge is left."""
        return max(0, min(100, math.ceil(self.percent - 1e-9)))

    def time_to(self, level: float) -> datetime | None:
        """When linear drain alone brings the charge down to ``level`` (None: never)."""
        if self.percent <= level:
            return self._at
        if self._per_s <= 0:
            return None
        # Aim a hair below the level and round up to the next microsecond, so that at
        # the returned instant the level has certainly been reached (no busy loop).
        seconds = (self.percent - level + _MARGIN) / self._per_s
        return self._at + timedelta(microseconds=math.ceil(seconds * 1_000_000))
