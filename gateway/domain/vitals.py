"""Alarm limits for vital signs measured at home (remote self-monitoring, egenmonitorering).

Pure rules: no I/O, no clock. Two rules live here:

* **Blood pressure limits** (``check_blood_pressure``): a reading outside per-person limits
  yields stable codes such as ``"systolic_high"``.
* **Weight gain** (``WeightTrend``): a gain of more than ``gain_kg`` over the lowest weight of
  the preceding ``window`` (about 2 kg in 3 days is a common warning sign in heart failure).

The defaults are conservative *alarm* limits meant to catch readings that need a human to look
now; they are not diagnostic thresholds and not treatment targets. The responsible clinician
sets each person's limits; the defaults only apply until they do.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from gateway.domain.instants import from_us, span_us, to_us

# --------------------------------------------------------------------------- blood pressure


class BloodPressureCode(StrEnum):
    """Stable codes of breached limits (values are plain strings, safe to store)."""

    SYSTOLIC_HIGH = "systolic_high"
    SYSTOLIC_LOW = "systolic_low"
    DIASTOLIC_HIGH = "diastolic_high"
    DIASTOLIC_LOW = "diastolic_low"
    PULSE_HIGH = "pulse_high"
    PULSE_LOW = "pulse_low"


def _check_range(name: str, low: int | None, high: int | None) -> None:
    for bound in (low, high):
        if bound is not None and bound < 0:
            raise ValueError(f"{name} limits must not be negative, got {bound}")
    if low is not None and high is not None and not low < high:
        raise ValueError(f"{name}_min ({low}) must be lower than {name}_max ({high})")


@dataclass(frozen=True, slots=True)
class BloodPressureLimits:
    """Per-person alarm limits for a blood-pressure reading (mmHg; pulse in beats/min).

    A value breaches a limit when it is strictly above the max or strictly below the min;
    a value equal to a limit is within limits. ``pulse_max`` / ``pulse_min`` set to None
    switch that pulse check off.

    The defaults (systolic 90-180, diastolic 50-110, pulse 40-120) are conservative alarm
    limits, not diagnostic thresholds: they flag readings for a clinician to look at and are
    meant to be overridden per person by the responsible clinician.
    """

    systolic_max: int = 180
    systolic_min: int = 90
    diastolic_max: int = 110
    diastolic_min: int = 50
    pulse_max: int | None = 120
    pulse_min: int | None = 40

    def __post_init__(self) -> None:
        _check_range("systolic", self.systolic_min, self.systolic_max)
        _check_range("diastolic", self.diastolic_min, self.diastolic_max)
        _check_range("pulse", self.pulse_min, self.pulse_max)


def _check_measurement(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite, non-negative number, got {value}")


def _breaches(
    value: float, low: int | None, high: int | None, codes: tuple[BloodPressureCode, ...]
) -> tuple[BloodPressureCode, ...]:
    high_code, low_code = codes
    if high is not None and value > high:
        return (high_code,)
    if low is not None and value < low:
        return (low_code,)
    return ()


def check_blood_pressure(
    limits: BloodPressureLimits,
    systolic: float,
    diastolic: float,
    pulse: float | None = None,
) -> tuple[str, ...]:
    """The limits a reading breaches, as stable codes; ``()`` means within limits.

    Codes come in a fixed order: systolic, diastolic, pulse; each at most once, e.g.
    ``("systolic_high",)`` or ``("diastolic_low", "pulse_high")``. ``pulse=None`` (the
    monitor measured no pulse) checks no pulse limit. A value breaches when it is strictly
    above its max or strictly below its min. The returned codes are ``BloodPressureCode``
    members, which compare equal to the plain strings.

    Raises ValueError for a non-finite or negative value (a device or parsing error, not a
    reading to judge).
    """
    _check_measurement("systolic", systolic)
    _check_measurement("diastolic", diastolic)
    codes = _breaches(
        systolic,
        limits.systolic_min,
        limits.systolic_max,
        (BloodPressureCode.SYSTOLIC_HIGH, BloodPressureCode.SYSTOLIC_LOW),
    ) + _breaches(
        diastolic,
        limits.diastolic_min,
        limits.diastolic_max,
        (BloodPressureCode.DIASTOLIC_HIGH, BloodPressureCode.DIASTOLIC_LOW),
    )
    if pulse is not None:
        _check_measurement("pulse", pulse)
        codes += _breaches(
            pulse,
            limits.pulse_min,
            limits.pulse_max,
            (BloodPressureCode.PULSE_HIGH, BloodPressureCode.PULSE_LOW),
        )
    return codes


# --------------------------------------------------------------------------- weight


@dataclass(frozen=True, slots=True)
class WeightGainLimit:
    """Alarm when the weight rises by more than ``gain_kg`` within ``window``.

    The window is exact: readings exactly ``window`` apart count, readings a minute more
    apart do not. Someone weighing at 07:00 on Monday and 08:00 on Thursday is 3 days and
    1 hour apart; a window of, say, 3 days 12 hours tolerates such variation in the time of
    weighing. The default (2 kg in 3 days) is a common heart-failure warning sign, set per
    person by the responsible clinician.
    """

    gain_kg: float = 2.0
    window: timedelta = timedelta(days=3)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gain_kg) and self.gain_kg > 0):
            raise ValueError(f"gain_kg must be a positive number, got {self.gain_kg}")
        if self.window <= timedelta(0):
            raise ValueError(f"window must be positive, got {self.window}")


@dataclass(frozen=True, slots=True)
class WeightVerdict:
    """The judgement of one weight reading.

    * ``baseline_kg`` / ``baseline_ts``: the lowest earlier reading in the window (the
      earliest one if several are equally low), or None when there is none.
    * ``gain_kg``: the reading minus ``baseline_kg`` (negative for a loss); 0.0 without a
      baseline.
    * ``exceeded``: ``gain_kg`` is strictly greater than the limit's ``gain_kg``.
    """

    gain_kg: float
    baseline_kg: float | None
    baseline_ts: datetime | None
    exceeded: bool


class WeightReading(NamedTuple):
    ts: datetime
    kg: float


class WeightTrend:
    """Weight readings of one person, judged against a ``WeightGainLimit``.

    Each reading at time ``ts`` is compared with the LOWEST reading taken in
    ``[ts - window, ts)`` (strictly before ``ts``, at most ``window`` earlier).

    Readings may arrive out of order (a scale replaying its buffer). A late reading is put in
    its place in time and judged against the readings before it in time; readings after it
    that were already judged are not judged again (no retroactive alarms). A reading with
    the same ``ts`` as a stored one replaces it (a replayed duplicate) and is judged like
    the first.

    Memory is bounded: after each reading only the readings within ``window`` of the newest
    one are kept, plus the latest one before that, and at most ``max_readings``. Above that
    cap (many readings a day) a reading that a later, equal or lower reading makes
    irrelevant for future readings is dropped first, else the oldest. A late reading older
    than what is kept is judged against what is kept.

    The readings are kept in two arrays (time in microseconds, weight), 16 bytes a reading
    instead of a tuple, a datetime and a float (about 200 with the decoder's time zone
    object); times come back as UTC datetimes, equal to the ones given.
    """

    __slots__ = ("_kg", "_limit", "_max_readings", "_ts")

    def __init__(self, limit: WeightGainLimit | None = None, max_readings: int = 64) -> None:
        if max_readings < 2:
            raise ValueError(f"max_readings must be at least 2, got {max_readings}")
        self._limit = limit if limit is not None else WeightGainLimit()
        self._max_readings = max_readings
        self._ts = array("q")  # microseconds since the epoch, ascending
        self._kg = array("d")

    @property
    def limit(self) -> WeightGainLimit:
        return self._limit

    @property
    def readings(self) -> tuple[WeightReading, ...]:
        """The readings kept, oldest first."""
        return tuple(
            WeightReading(from_us(ts), kg) for ts, kg in zip(self._ts, self._kg, strict=True)
        )

    def __len__(self) -> int:
        return len(self._ts)

    def add(self, ts: datetime, kg: float) -> WeightVerdict:
        """Judge the reading ``kg`` taken at ``ts`` (timezone-aware), then remember it.

        Raises ValueError for a naive ``ts`` or a weight that is not a positive number.
        """
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"ts must be a timezone-aware datetime, got naive {ts.isoformat()}")
        if not (math.isfinite(kg) and kg > 0):
            raise ValueError(f"kg must be a positive number, got {kg}")
        at = to_us(ts)
        verdict = self._judge(at, kg)
        self._insert(at, kg)
        self._prune()
        return verdict

    def _judge(self, at: int, kg: float) -> WeightVerdict:
        start = bisect_left(self._ts, at - span_us(self._limit.window))
        stop = bisect_left(self._ts, at)
        if start == stop:
            return WeightVerdict(gain_kg=0.0, baseline_kg=None, baseline_ts=None, exceeded=False)
        lowest = min(range(start, stop), key=self._kg.__getitem__)  # the earliest if tied
        gain = kg - self._kg[lowest]
        return WeightVerdict(
            gain_kg=gain,
            baseline_kg=self._kg[lowest],
            baseline_ts=from_us(self._ts[lowest]),
            exceeded=gain > self._limit.gain_kg,
        )

    def _insert(self, at: int, kg: float) -> None:
        index = bisect_left(self._ts, at)
        if index < len(self._ts) and self._ts[index] == at:
            self._kg[index] = kg
        else:
            self._ts.insert(index, at)
            self._kg.insert(index, kg)

    def _prune(self) -> None:
        cutoff = self._ts[-1] - span_us(self._limit.window)
        drop = max(bisect_left(self._ts, cutoff) - 1, 0)
        del self._ts[:drop]
        del self._kg[:drop]
        while len(self._ts) > self._max_readings:
            index = self._eviction_index()
            del self._ts[index]
            del self._kg[index]

    def _eviction_index(self) -> int:
        """The oldest reading with a later reading at most as heavy, else the oldest (0).

        For any future reading later than both, the later one is in the window whenever the
        earlier one is, and is at most as low, so the earlier one can never be the baseline.
        """
        lowest_later = math.inf
        dominated = 0
        for index in range(len(self._kg) - 1, -1, -1):
            kg = self._kg[index]
            if kg >= lowest_later:
                dominated = index
            lowest_later = min(lowest_later, kg)
        return dominated
