"""Scripted incidents of scales, blood-pressure monitors and locks, and the timeline the
demo prints from a scenario (pure: no broker)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from device_sims import parse_scenario
from device_sims.clock import SimClock
from device_sims.scenario import ScenarioError
from device_sims.timeline import happenings, scripted_visits
from tests.unit.test_sims import START, of_type, run, scenario

CLOCK = '[clock]\nhistory = "20m"\nspeedup = 61\n'


def test_scale_sends_its_memory_then_the_scripted_weigh_in() -> None:
    specs = scenario(
        '[[devices]]\ntype = "scale"\nskip_probability = 0\nweigh_in_time = "07:15"\n'
        'memory_kg = [78.4, 78.2, 79.0]\nincidents = [{ at = "20m10s", kg = 80.9 }]\n',
        clock=CLOCK,
    )
    weights = of_type(run(specs, 30), "weight")
    assert [w.kg for w in weights[:3]] == [78.4, 78.2, 79.0]
    # one a day at 07:15 Stockholm time, the oldest three days before the start
    days = [(START - w.ts) for w in weights[:3]]
    for n, day in zip((3, 2, 1), days, strict=True):
        assert timedelta(days=n) < day < timedelta(days=n + 1)
    assert [w.kg for w in weights[3:]] == [80.9]
    assert weights[3].ts == START + timedelta(seconds=10)


def test_blood_pressure_incident_is_the_reading_it_scripts() -> None:
    specs = scenario(
        '[[devices]]\ntype = "blood_pressure_monitor"\nskip_probability = 0\n'
        'incidents = [{ at = "10m", systolic_mmhg = 192, diastolic_mmhg = 108, pulse_bpm = 88 }]\n',
        clock=CLOCK,
    )
    readings = of_type(run(specs, 15), "blood_pressure")
    assert [(r.systolic_mmhg, r.diastolic_mmhg, r.pulse_bpm) for r in readings] == [(192, 108, 88)]
    assert readings[0].ts == START - timedelta(minutes=10)


def test_blood_pressure_incident_refuses_systolic_below_diastolic() -> None:
    with pytest.raises(ScenarioError, match="systolic_mmhg must be above"):
        scenario(
            '[[devices]]\ntype = "blood_pressure_monitor"\n'
            'incidents = [{ at = "1m", systolic_mmhg = 80, diastolic_mmhg = 90, pulse_bpm = 60 }]\n'
        )


LOCKS = (
    '[[devices]]\ntype = "door_lock"\ndenied_probability = 0\nvisits = ["03:00"]\n'
    'staff_key_ids = ["k-anna", "k-ali"]\n'
    'incidents = [{ at = "1m", staff_key = 1, duration = "5m", leave_unlocked = true },'
    ' { at = "12m", staff_key = 0, duration = "5m" }]\n'
)


def test_lock_visits_open_with_the_scripted_key_and_one_is_left_unlocked() -> None:
    events = of_type(run(scenario(LOCKS, clock=CLOCK), 30), "lock")
    assert [(e.action, e.key_id) for e in events] == [
        ("unlocked", "k-ali"),  # left unlocked: no "locked" follows
        ("unlocked", "k-anna"),
        ("locked", "k-anna"),
    ]
    assert events[2].ts - events[1].ts == timedelta(minutes=5)


def test_lock_incident_key_must_exist() -> None:
    with pytest.raises(ScenarioError, match="staff_key 2 >= 2 keys"):
        scenario(LOCKS.replace("staff_key = 1", "staff_key = 2"))


def test_timeline_lists_scripted_happenings_in_real_time_order() -> None:
    text = (
        f'name = "t"\n{CLOCK}\n{LOCKS}'
        '[[devices]]\ntype = "gps_alarm"\nhome_lat = 59.0\nhome_lon = 17.0\n'
        'incidents = [{ at = "20m25s", kind = "button" }]\n'
        'battery = { start_percent = 1.4, drain_percent_per_day = 120 }\n'
    )
    specs = parse_scenario(text).device_specs()
    clock = SimClock.from_spec(specs[0].clock, START)
    coming = happenings(specs, clock)
    assert [(round((h.real_at - START).total_seconds()), h.device_id) for h in coming] == [
        (1, "sim-lock-00001"), (12, "sim-lock-00001"), (17, "sim-gps-00001"),
        (25, "sim-gps-00001"),
    ]  # fmt: skip
    assert "leaves it unlocked" in coming[0].what and "locked again after 5 min" in coming[1].what
    assert "battery runs flat" in coming[2].what and "alarm button" in coming[3].what
    visits = scripted_visits(specs, clock)
    assert [(v.key_id, v.ends_at - v.starts_at) for v in visits] == [
        ("k-ali", timedelta(minutes=5)), ("k-anna", timedelta(minutes=5)),
    ]  # fmt: skip
    assert visits[0].starts_at == START - timedelta(minutes=19)
