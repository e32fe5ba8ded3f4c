"""Simulated time that never runs ahead of real time.

The gateway refuses timestamps in the future, yet scenarios must show days of behaviour
(a 3-day weight gain) in seconds or minutes. The :class:`SimClock` squares this:

* simulated time starts ``history`` before the real start of the run,
* it runs ``speedup`` times faster than real time until it has caught up with real time
  (at ``live_from``), and from then on it runs in real time, equal to the real clock.

So ``sim_at(real) = start + min(elapsed * speedup, history + elapsed)`` with
``elapsed = real - real_start``; the invariant ``sim_at(real) <= real`` always holds.
Seen from the gateway, the catch-up phase looks like a device that was offline and now
replays the readings it buffered, with their original (past) timestamps; afterwards the
device is live. Heartbeats are live-only signals, so simulators emit them only from
``live_from`` on (see :mod:`device_sims.device`).

All arithmetic is in integer microseconds, and :meth:`SimClock.real_at` rounds up, so
``sim_at(real_at(t)) >= t``: an adapter that sleeps until ``real_at(due)`` is guaranteed to
find the event due when it wakes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_sims.durations import Duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClockSpec(BaseModel):
    """The ``[clock]`` table of a scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: Duration = Field(
        default=timedelta(0),
        description="How far before the real start simulated time begins.",
    )
    speedup: float = Field(
        default=1.0,
        ge=1.0,
        le=10_000_000.0,
        description="Simulated seconds per real second while catching up with real time.",
    )

    @model_validator(mode="after")
    def _can_catch_up(self) -> ClockSpec:
        if self.history > timedelta(0) and self.speedup <= 1.0:
            raise ValueError("speedup must be > 1 when history is set (else it never catches up)")
        return self


def _to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class SimClock:
    """Maps real instants to simulated instants and back; pure (the caller passes times)."""

    real_start: datetime
    history: timedelta = timedelta(0)
    speedup: float = 1.0

    def __post_init__(self) -> None:
        if self.real_start.tzinfo is None:
            raise ValueError("real_start must be timezone-aware")
        if self.history < timedelta(0):
            raise ValueError("history must not be negative")
        if self.history > timedelta(0) and self.speedup <= 1.0:
            raise ValueError("speedup must be > 1 when history is set")

    @classmethod
    def from_spec(cls, spec: ClockSpec, real_start: datetime) -> SimClock:
        return cls(real_start=real_start, history=spec.history, speedup=spec.speedup)

    @property
    def start(self) -> datetime:
        """Simulated time at the real start of the run."""
        return self.real_start - self.history

    @property
    def live_from(self) -> datetime:
        """The instant (real = simulated) at which simulated time catches up."""
        return _from_us(_to_us(self.real_start) + self._catch_up_real_us())

    def _history_us(self) -> int:
        return _to_us(self.real_start) - _to_us(self.start)

    def _catch_up_real_us(self) -> int:
        history_us = self._history_us()
        if history_us == 0:
            return 0
        return math.ceil(history_us / (self.speedup - 1.0))

    def sim_at(self, real: datetime) -> datetime:
        """Simulated time at real instant ``real`` (never later than ``real``)."""
        elapsed = _to_us(real) - _to_us(self.real_start)
        if elapsed <= 0:
            return self.start + timedelta(microseconds=elapsed)
        fast = math.floor(elapsed * self.speedup)
        return _from_us(_to_us(self.start) + min(fast, self._history_us() + elapsed))

    def real_at(self, sim: datetime) -> datetime:
        """Earliest real instant at which simulated time has reached ``sim``."""
        offset = _to_us(sim) - _to_us(self.start)
        if offset <= 0:
            return self.real_start + timedelta(microseconds=offset)
        # sim_at() is start + min(elapsed * speedup, history + elapsed): both terms must
        # reach the offset, so the earliest real instant is the later of the two.
        elapsed = max(math.ceil(offset / self.speedup), offset - self._history_us())
        real = self.real_start + timedelta(microseconds=elapsed)
        while self.sim_at(real) < sim:  # guard float rounding: at most a step or two
            real += timedelta(microseconds=1)
        return real

    def is_live(self, sim: datetime) -> bool:
        return sim >= self.live_from
