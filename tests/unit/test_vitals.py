"""Blood-pressure limits and heart-failure weight gain."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.vitals import (
    BloodPressureCode,
    BloodPressureLimits,
    WeightGainLimit,
    WeightReading,
    WeightTrend,
    WeightVerdict,
    check_blood_pressure,
)

PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150)

DEFAULTS = BloodPressureLimits()
MORNING = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return MORNING + timedelta(days=n)


# --------------------------------------------------------------------------- blood pressure


@pytest.mark.parametrize(
    ("systolic", "diastolic", "pulse", "expected"),
    [
        (120, 80, 70, ()),
        (180, 110, 120, ()),  # at the max: within limits
        (90, 50, 40, ()),  # at the min: within limits
        (181, 80, 70, ("systolic_high",)),
        (89, 60, 70, ("systolic_low",)),
        (150, 111, 70, ("diastolic_high",)),
        (100, 49, 70, ("diastolic_low",)),
        (120, 80, 121, ("pulse_high",)),
        (120, 80, 39, ("pulse_low",)),
        (120, 45, 130, ("diastolic_low", "pulse_high")),
        (220, 130, 35, ("systolic_high", "diastolic_high", "pulse_low")),
        (85, 45, 30, ("systolic_low", "diastolic_low", "pulse_low")),
        (200, 80, None, ("systolic_high",)),  # no pulse measured: no pulse check
        (120.5, 80.0, 120.5, ("pulse_high",)),
    ],
)
def test_default_limits(
    systolic: float, diastolic: float, pulse: float | None, expected: tuple[str, ...]
) -> None:
    assert check_blood_pressure(DEFAULTS, systolic, diastolic, pulse) == expected


def test_codes_are_plain_strings() -> None:
    codes = check_blood_pressure(DEFAULTS, 200, 80, 70)
    assert codes == (BloodPressureCode.SYSTOLIC_HIGH,)
    assert all(isinstance(code, str) for code in codes)
    assert json.dumps(codes) == '["systolic_high"]'


def test_per_person_limits_override_the_defaults() -> None:
    limits = BloodPressureLimits(systolic_max=160, systolic_min=100, pulse_max=None)
    assert check_blood_pressure(limits, 165, 80, 200) == ("systolic_high",)
    assert check_blood_pressure(limits, 95, 80, 30) == ("systolic_low", "pulse_low")


def test_pulse_checks_can_be_switched_off() -> None:
    limits = BloodPressureLimits(pulse_max=None, pulse_min=None)
    assert check_blood_pressure(limits, 120, 80, 250) == ()
    assert check_blood_pressure(limits, 120, 80, 10) == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"systolic_min": 180}, "systolic_min"),
        ({"systolic_min": 200}, "systolic_min"),
        ({"diastolic_max": 50}, "diastolic_min"),
        ({"pulse_min": 130}, "pulse_min"),
        ({"pulse_min": -1}, "negative"),
    ],
)
def test_limit_validation(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BloodPressureLimits(**kwargs)


@pytest.mark.parametrize(
    ("systolic", "diastolic", "pulse"),
    [(math.nan, 80, 70), (120, math.inf, 70), (120, 80, math.nan), (-5, 80, 70)],
)
def test_impossible_measurements_are_rejected(
    systolic: float, diastolic: float, pulse: float
) -> None:
    with pytest.raises(ValueError, match="finite"):
        check_blood_pressure(DEFAULTS, systolic, diastolic, pulse)


# --------------------------------------------------------------------------- weight gain


def test_first_reading_has_no_baseline() -> None:
    verdict = WeightTrend().add(MORNING, 80.0)
    assert verdict == WeightVerdict(gain_kg=0.0, baseline_kg=None, baseline_ts=None, exceeded=False)


def test_rise_of_2_5_kg_over_3_days_triggers() -> None:
    trend = WeightTrend()
    verdicts = [trend.add(day(n), kg) for n, kg in enumerate([80.0, 80.8, 81.6, 82.5])]
    assert [v.exceeded for v in verdicts] == [False, False, False, True]
    last = verdicts[-1]
    assert last.gain_kg == pytest.approx(2.5)
    assert last.baseline_kg == 80.0
    assert last.baseline_ts == day(0)


def test_rise_of_2_5_kg_over_5_days_does_not_trigger() -> None:
    trend = WeightTrend()
    verdicts = [trend.add(day(n), 80.0 + 0.5 * n) for n in range(6)]
    assert not any(v.exceeded for v in verdicts)
    assert verdicts[-1].gain_kg == pytest.approx(1.5)  # against day 2, 3 days before


def test_daily_noise_does_not_trigger() -> None:
    trend = WeightTrend()
    noise = [0.0, 0.5, -0.5, 0.3, -0.4, 0.5, -0.5, 0.1, 0.5, -0.5] * 3
    assert not any(trend.add(day(n), 80.0 + delta).exceeded for n, delta in enumerate(noise))


def test_baseline_is_the_lowest_reading_in_the_window() -> None:
    trend = WeightTrend()
    for n, kg in enumerate([80.0, 79.0, 80.0]):
        trend.add(day(n), kg)
    verdict = trend.add(day(3), 81.2)
    assert verdict.baseline_kg == 79.0
    assert verdict.baseline_ts == day(1)
    assert verdict.gain_kg == pytest.approx(2.2)
    assert verdict.exceeded


def test_equal_lows_use_the_earliest_as_baseline() -> None:
    trend = WeightTrend()
    trend.add(day(0), 79.0)
    trend.add(day(1), 79.0)
    assert trend.add(day(2), 81.5).baseline_ts == day(0)


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    trend = WeightTrend()
    trend.add(day(0), 80.0)
    assert trend.add(day(3), 82.5).exceeded  # exactly 3 days apart: inside

    later = WeightTrend()
    later.add(day(0), 80.0)
    just_outside = later.add(day(3) + timedelta(minutes=1), 82.5)
    assert just_outside.baseline_kg is None
    assert not just_outside.exceeded


def test_longer_window_tolerates_later_weighing() -> None:
    trend = WeightTrend(WeightGainLimit(window=timedelta(days=3, hours=12)))
    trend.add(day(0), 80.0)
    assert trend.add(day(3) + timedelta(hours=1), 82.5).exceeded


def test_gain_equal_to_the_limit_is_not_exceeded() -> None:
    trend = WeightTrend(WeightGainLimit(gain_kg=2.0))
    trend.add(day(0), 80.0)
    verdict = trend.add(day(1), 82.0)
    assert verdict.gain_kg == 2.0
    assert not verdict.exceeded


def test_weight_loss_gives_a_negative_gain() -> None:
    trend = WeightTrend()
    trend.add(day(0), 80.0)
    verdict = trend.add(day(1), 78.0)
    assert verdict.gain_kg == pytest.approx(-2.0)
    assert not verdict.exceeded


def test_late_reading_is_judged_against_readings_before_it_in_time() -> None:
    trend = WeightTrend()
    trend.add(day(0), 80.0)
    trend.add(day(3), 80.0)
    late = trend.add(day(2), 82.5)  # replayed from the scale's buffer
    assert late.exceeded
    assert late.baseline_ts == day(0)
    assert [r.ts for r in trend.readings] == [day(0), day(2), day(3)]
    # Readings after it are not re-judged; the next new reading sees the full history.
    following = trend.add(day(4), 81.0)
    assert following.baseline_kg == 80.0
    assert following.baseline_ts == day(3)


def test_late_reading_does_not_raise_a_retroactive_alarm() -> None:
    trend = WeightTrend()
    trend.add(day(3), 82.5)  # judged alone: no baseline yet
    late = trend.add(day(1), 80.0)  # lower reading arrives late
    assert not late.exceeded
    assert late.baseline_kg is None


def test_same_timestamp_replaces_the_reading() -> None:
    trend = WeightTrend()
    trend.add(day(0), 80.0)
    again = trend.add(day(0), 83.0)
    assert again.baseline_kg is None
    assert trend.readings == (WeightReading(day(0), 83.0),)


def test_memory_keeps_the_window_plus_one() -> None:
    trend = WeightTrend()
    for n in range(30):
        trend.add(day(n), 80.0)
    assert [r.ts for r in trend.readings] == [day(n) for n in range(25, 30)]


def test_cap_drops_readings_that_cannot_be_a_baseline_first() -> None:
    trend = WeightTrend(max_readings=64)
    trend.add(day(0), 78.0)
    for k in range(1, 200):  # every 10 minutes, above the cap
        trend.add(day(0) + timedelta(minutes=10 * k), 80.0 + 0.1 * (k % 3))
        assert len(trend) <= 64
    verdict = trend.add(day(2), 80.4)
    assert verdict.baseline_kg == 78.0
    assert verdict.exceeded


def test_memory_stays_bounded_for_10000_readings() -> None:
    trend = WeightTrend()
    for k in range(10_000):
        trend.add(day(0) + timedelta(minutes=5 * k), 80.0 + (k % 7) * 0.1)
        assert len(trend) <= 64


def test_readings_in_any_offset_are_the_same_instants() -> None:
    """Readings are kept as instants: a scale reporting local time is judged the same, and
    what comes back equals what went in (in UTC)."""
    local = timezone(timedelta(hours=2))
    trend = WeightTrend()
    trend.add(day(0).astimezone(local), 80.0)
    verdict = trend.add(day(1), 82.5)
    assert verdict.exceeded and verdict.baseline_ts == day(0)
    assert trend.add(day(1).astimezone(local), 82.0).baseline_ts == day(0)  # replaces day(1)
    assert trend.readings == (WeightReading(day(0), 80.0), WeightReading(day(1), 82.0))
    assert all(reading.ts.utcoffset() == timedelta(0) for reading in trend.readings)


@pytest.mark.parametrize("kg", [0.0, -1.0, math.nan, math.inf])
def test_impossible_weight_is_rejected(kg: float) -> None:
    with pytest.raises(ValueError, match="kg"):
        WeightTrend().add(MORNING, kg)


def test_naive_timestamp_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        WeightTrend().add(datetime(2026, 5, 4, 7), 80.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gain_kg": 0.0}, "gain_kg"),
        ({"gain_kg": math.nan}, "gain_kg"),
        ({"window": timedelta(0)}, "window"),
    ],
)
def test_weight_limit_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WeightGainLimit(**kwargs)  # type: ignore[arg-type]


def test_trend_validation() -> None:
    with pytest.raises(ValueError, match="max_readings"):
        WeightTrend(max_readings=1)


# --------------------------------------------------------------------------- properties

minute_offsets = st.integers(0, 30 * 24 * 60)


@PROPERTY
@given(
    baseline=st.floats(40.0, 200.0),
    readings=st.lists(st.tuples(minute_offsets, st.floats(-0.9, 0.9)), min_size=1, max_size=120),
)
def test_noise_within_0_9_kg_never_exceeds_2_kg(
    baseline: float, readings: list[tuple[int, float]]
) -> None:
    trend = WeightTrend(WeightGainLimit(gain_kg=2.0))
    for minute, delta in readings:
        verdict = trend.add(MORNING + timedelta(minutes=minute), baseline + delta)
        assert not verdict.exceeded


@st.composite
def monotonic_rises(draw: st.DrawFn) -> list[tuple[datetime, float]]:
    """A non-decreasing weight series over at most 3 days whose total rise exceeds 2 kg."""
    start_kg = draw(st.floats(40.0, 200.0))
    total = draw(st.floats(2.01, 8.0))
    span = draw(st.integers(1, 3 * 24 * 60))
    inner = draw(st.lists(st.integers(1, span - 1), max_size=40, unique=True)) if span > 1 else []
    minutes = [0, *sorted(inner), span]
    fractions = sorted(
        draw(st.lists(st.floats(0.0, 1.0), min_size=len(minutes) - 2, max_size=len(minutes) - 2))
    )
    weights = [start_kg, *(start_kg + total * f for f in fractions), start_kg + total]
    return [(MORNING + timedelta(minutes=m), kg) for m, kg in zip(minutes, weights, strict=True)]


@PROPERTY
@given(series=monotonic_rises())
def test_monotonic_rise_over_2_kg_within_3_days_triggers(
    series: list[tuple[datetime, float]],
) -> None:
    trend = WeightTrend()
    verdicts = [trend.add(ts, kg) for ts, kg in series]
    assert verdicts[-1].exceeded
    assert verdicts[-1].baseline_ts == series[0][0]


@settings(PROPERTY, max_examples=50)
@given(
    gaps=st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=200),
    weights=st.lists(st.floats(40.0, 200.0), min_size=200, max_size=200),
    max_readings=st.integers(2, 64),
)
def test_memory_is_bounded_and_sorted(
    gaps: list[int], weights: list[float], max_readings: int
) -> None:
    trend = WeightTrend(max_readings=max_readings)
    moment = MORNING
    for gap, kg in zip(gaps, weights, strict=False):
        moment += timedelta(minutes=gap)
        trend.add(moment, kg)
        assert len(trend) <= max_readings
        stamps = [reading.ts for reading in trend.readings]
        assert stamps == sorted(set(stamps))
        assert sum(stamp < moment - trend.limit.window for stamp in stamps) <= 1
