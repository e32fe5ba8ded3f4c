"""Device simulators, without a broker: behaviour, contract, clock, scenarios."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from device_sims import (
    DeviceSpec,
    Published,
    ScenarioError,
    dry_run,
    load_scenario,
    malformed_messages,
    parse_scenario,
    shipped_scenarios,
)
from device_sims.catalog import build_simulator
from device_sims.clock import SimClock
from device_sims.durations import parse_duration
from device_sims.envelope import LAST_WILL_PAYLOAD, Outgoing
from device_sims.geo import GeoPoint, distance_m, offset
from device_sims.outbox import Outbox
from device_sims.schedule import Scheduler, next_daily
from device_sims.session import DeviceSession
from firmware_contracts.decode import Decoded, DecodeError, Reason, decode_payload
from firmware_contracts.topics import Channel, parse_device_topic
from gateway.support.backoff import Backoff

START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
STOCKHOLM = ZoneInfo("Europe/Stockholm")


# --- helpers ---------------------------------------------------------------------------


def scenario(body: str, *, clock: str = "") -> list[DeviceSpec]:
    text = f'name = "test"\n{clock}\n{body}'
    return parse_scenario(text).device_specs()


def run(specs: list[DeviceSpec], duration_s: float, *, seed: int = 0) -> list[Published]:
    return dry_run(specs, real_start=START, duration_s=duration_s, seed=seed)


def decoded(item: Published) -> Any:
    result = decode_payload(item.out.channel, item.out.payload, now=item.real)
    assert isinstance(result, Decoded), (result, item.out.payload)
    return result.message


def of_type(published: list[Published], msg_type: str, device_id: str | None = None) -> list[Any]:
    return [
        decoded(item)
        for item in published
        if item.out.msg_type == msg_type and (device_id is None or item.device_id == device_id)
    ]


def is_will(item: Published) -> bool:
    return item.out.channel == Channel.STATUS and item.out.payload == LAST_WILL_PAYLOAD


def command(name: str, *, expires_in: timedelta | None = None, **args: Any) -> bytes:
    body: dict[str, Any] = {
        "v": 1,
        "type": "command",
        "id": f"cmd-{name}",
        "ts": START.isoformat(),
        "name": name,
        "args": args,
    }
    if expires_in is not None:
        body["expires_at"] = (START + expires_in).isoformat()
    return orjson.dumps(body)


def session_for(body: str, *, seed: int = 0) -> DeviceSession:
    (spec,) = scenario(body)
    clock = SimClock(real_start=START)
    session = DeviceSession(build_simulator(spec, seed=seed, clock=clock))
    session.on_connected(START)
    return session


def drain(session: DeviceSession) -> list[Outgoing]:
    items = []
    while session.outbox.peek() is not None:
        items.append(session.outbox.pop())
    return items


def decode_out(item: Outgoing, now: datetime = START) -> Any:
    result = decode_payload(item.channel, item.payload, now=now)
    assert isinstance(result, Decoded), (result, item.payload)
    return result.message


GPS = """
[[devices]]
type = "gps_alarm"
home_lat = 59.3293
home_lon = 18.0686
"""
LOCK = """
[[devices]]
type = "door_lock"
"""


# --- clock -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "speedup"),
    [(timedelta(0), 1.0), (timedelta(days=3), 3600.0), (timedelta(hours=8), 240.0)],
)
def test_clock_never_runs_ahead_of_real_time(history: timedelta, speedup: float) -> None:
    clock = SimClock(real_start=START, history=history, speedup=speedup)
    assert clock.sim_at(START) == START - history
    for step_ms in range(0, 400_000, 737):
        real = START + timedelta(milliseconds=step_ms)
        assert clock.sim_at(real) <= real
    late = clock.live_from + timedelta(hours=1)
    assert clock.sim_at(late) == late  # live: simulated time is real time


def test_clock_real_at_is_the_earliest_instant_reaching_a_simulated_time() -> None:
    clock = SimClock(real_start=START, history=timedelta(days=3), speedup=3600.0)
    assert clock.live_from - START == pytest.approx(
        timedelta(seconds=259_200 / 3599), abs=timedelta(microseconds=2)
    )
    for minutes in range(0, 3 * 24 * 60 + 120, 97):
        sim = clock.start + timedelta(minutes=minutes, microseconds=minutes)
        real = clock.real_at(sim)
        assert clock.sim_at(real) >= sim
        assert clock.sim_at(real - timedelta(microseconds=1)) < sim


def test_clock_refuses_history_without_speedup() -> None:
    with pytest.raises(ValueError, match="speedup"):
        SimClock(real_start=START, history=timedelta(hours=1), speedup=1.0)
    with pytest.raises(ScenarioError, match=r"clock: .*speedup"):
        parse_scenario('name = "x"\n[clock]\nhistory = "1h"\n' + GPS)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("3d", 259_200.0),
        ("1h30m", 5400.0),
        ("1.5", 1.5),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1x", "m5", "-5s", "5 parsecs", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


# --- scenarios -------------------------------------------------------------------------


def test_shipped_scenarios_load_and_give_deterministic_ids() -> None:
    shipped = shipped_scenarios()
    assert {
        "small_municipality_night",
        "heart_failure",
        "wandering",
        "dead_battery",
        "load_fleet",
    } <= set(shipped)
    for path in shipped.values():
        specs = load_scenario(path).device_specs()
        assert specs
        assert len({spec.device_id for spec in specs}) == len(specs)
        assert specs == load_scenario(path).device_specs()
    night = load_scenario(shipped["small_municipality_night"]).device_specs()
    assert {spec.device_type for spec in night} == {
        "gps_alarm",
        "scale",
        "blood_pressure_monitor",
        "door_lock",
    }
    assert [spec.device_id for spec in night if spec.device_type == "scale"] == [
        "sim-scale-00001",
        "sim-scale-00002",
    ]


def test_specs_expose_what_the_registry_needs() -> None:
    specs = load_scenario(shipped_scenarios()["small_municipality_night"]).device_specs()
    for spec in specs:
        if spec.device_type == "gps_alarm":
            assert spec.home_lat is not None
            assert spec.home_lon is not None
            assert spec.safe_zone_radius_m is not None
            assert spec.safe_zone_radius_m > 0
        else:
            assert spec.home is None
        if spec.device_type == "door_lock":
            assert spec.staff_key_ids == (
                "sim-staff-001",
                "sim-staff-002",
                "sim-staff-003",
                "sim-staff-004",
            )
        else:
            assert spec.staff_key_ids == ()
        assert spec.username is None  # a place for per-device credentials


def test_device_count_rescales_the_fleet_deterministically() -> None:
    fleet = load_scenario(shipped_scenarios()["load_fleet"])
    specs = fleet.device_specs(10)
    assert len(specs) == 10
    assert Counter(spec.device_type for spec in specs) == {
        "gps_alarm": 3,
        "scale": 3,
        "blood_pressure_monitor": 2,
        "door_lock": 2,
    }
    assert [spec.device_id for spec in specs[:3]] == [
        "load-gps-00001",
        "load-gps-00002",
        "load-gps-00003",
    ]
    assert fleet.device_specs(10) == specs
    assert len(fleet.device_specs(10_000)) == 10_000
    assert fleet.device_specs(0) == []


def test_gps_homes_are_spread_but_stable() -> None:
    specs = scenario(
        GPS.replace('type = "gps_alarm"', 'type = "gps_alarm"\ncount = 20\nhome_spread_m = 1000')
    )
    centre = GeoPoint(59.3293, 18.0686)
    homes = {spec.home for spec in specs}
    assert len(homes) == 20
    assert all(spec.home is not None and distance_m(centre, spec.home) <= 1001 for spec in specs)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[[devices]]\ntype = "scale"\nbaseline_kg = 5', "devices[0].scale.baseline_kg"),
        ('[[devices]]\ntype = "scale"\nbaselin_kg = 80', "devices[0].scale.baselin_kg"),
        ('[[devices]]\ntype = "gps_alarm"\nhome_lon = 18.0', "devices[0].gps_alarm.home_lat"),
        ('[[devices]]\ntype = "toaster"', "devices[0]"),
        (LOCK + 'visit_duration = "soon"', "devices[0].door_lock.visit_duration"),
        (
            LOCK + "[[devices.faults]]\nat = 1\nduration = 0",
            "devices[0].door_lock.faults[0].duration",
        ),
        ('[[devices]]\ntype = "scale"\nclock_skew_s = 900', "clock_skew_s"),
        (
            '[[devices]]\ntype = "blood_pressure_monitor"\nsystolic_mmhg = 90\ndiastolic_mmhg = 85',
            "systolic_mmhg",
        ),
        ('timezone = "Mars/Olympus"\n[[devices]]\ntype = "scale"', "timezone"),
        ('[clock]\nspeedup = "fast"\n[[devices]]\ntype = "scale"', "clock.speedup"),
        ("", "devices"),
    ],
)
def test_scenario_errors_name_the_bad_key(body: str, key: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario(f'name = "bad"\n{body}', source="bad.toml")
    assert key in str(error.value)
    assert str(error.value).startswith("bad.toml: ")


def test_scenario_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[[devices]\n')
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


# --- the contract ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(shipped_scenarios()))
def test_every_message_of_every_scenario_decodes_and_is_never_from_the_future(name: str) -> None:
    loaded = load_scenario(shipped_scenarios()[name])
    specs = loaded.device_specs(12 if name == "load_fleet" else None)
    published = run(specs, 900, seed=loaded.seed)
    assert published
    ids: dict[str, set[str]] = {}
    for item in published:
        message = decoded(item)
        assert parse_device_topic(item.topic) is not None
        if message.ts is not None:
            skew = timedelta(
                seconds=next(s for s in specs if s.device_id == item.device_id).params.clock_skew_s
            )
            assert message.ts <= item.real + skew, item.out.payload
        if message.id is not None:
            seen = ids.setdefault(item.device_id, set())
            assert message.id not in seen, "message ids must be unique per device"
            seen.add(message.id)


def test_malformed_generator_covers_every_reason_exactly() -> None:
    now = datetime.now(UTC)
    cases = list(malformed_messages(now=now))
    assert {case.expected_reason for case in cases} == set(Reason)
    for channel, payload, expected in cases:
        result = decode_payload(channel, payload, now=now)
        assert isinstance(result, DecodeError), payload[:200]
        assert result.reason == expected, (payload[:200], result)


# --- device behaviour ------------------------------------------------------------------


def test_heart_failure_scenario_gains_more_than_2_kg_within_3_days() -> None:
    loaded = load_scenario(shipped_scenarios()["heart_failure"])
    published = run(loaded.device_specs(), 300, seed=loaded.seed)

    def worst_3_day_gain(device_id: str) -> float:
        weights = of_type(published, "weight", device_id)
        assert len(weights) >= 5
        return max(
            (later.kg - earlier.kg)
            for earlier, later in itertools.combinations(weights, 2)
            if later.ts - earlier.ts <= timedelta(days=3)
        )

    assert worst_3_day_gain("sim-scale-00001") > 2.0
    assert worst_3_day_gain("sim-scale-00002") < 1.5  # the stable control person


def test_scale_weighs_in_once_a_day_in_the_morning() -> None:
    specs = scenario(
        '[[devices]]\ntype = "scale"\nskip_probability = 0\njitter = "10m"',
        clock='[clock]\nhistory = "5d"\nspeedup = 10000',
    )
    weights = of_type(run(specs, 120), "weight")
    assert len(weights) == 5
    for weight in weights:
        local = weight.ts.astimezone(STOCKHOLM)
        assert time(7, 4) <= local.time() <= time(7, 26)
        assert 78 < weight.kg < 82


def test_a_units_shared_scale_names_a_resident_per_weigh_in() -> None:
    """docs/units.md: a ward's scale says whose each weigh-in is (resident_tag)."""
    specs = scenario(
        '[[devices]]\ntype = "scale"\nskip_probability = 0\n'
        'resident_tags = ["TAG-A", "TAG-B"]',
        clock='[clock]\nhistory = "10d"\nspeedup = 10000',
    )
    weights = of_type(run(specs, 120), "weight")
    assert len(weights) >= 9
    assert {w.resident_tag for w in weights} == {"TAG-A", "TAG-B"}
    plain = of_type(run(scenario('[[devices]]\ntype = "scale"\nskip_probability = 0',
                                 clock='[clock]\nhistory = "3d"\nspeedup = 10000'), 120),
                    "weight")  # fmt: skip
    assert plain and all(w.resident_tag is None for w in plain)


def test_wandering_leaves_the_safe_zone_and_raises_geofence_exit() -> None:
    loaded = load_scenario(shipped_scenarios()["wandering"])
    (spec,) = loaded.device_specs()
    assert spec.home is not None
    assert spec.safe_zone_radius_m is not None
    # 90 min of history replayed in 90 s, then live: the wander (minutes 84-134) ends
    # 44 minutes into the live part, and the walk home takes a while
    published = run([spec], 90 + 75 * 60, seed=loaded.seed)
    positions = of_type(published, "position")
    distances = [distance_m(spec.home, GeoPoint(p.lat, p.lon)) for p in positions]
    outside = [d for d in distances if d > spec.safe_zone_radius_m]
    assert len(outside) >= 10
    assert max(distances) > 1.5 * spec.safe_zone_radius_m
    furthest = distances.index(max(distances))
    assert min(distances[furthest:]) < spec.safe_zone_radius_m  # back home after the wander
    exits = [a for a in of_type(published, "alarm") if a.kind == "geofence_exit"]
    assert exits
    assert distance_m(spec.home, GeoPoint(exits[0].lat, exits[0].lon)) > spec.safe_zone_radius_m


def test_gps_button_and_fall_alarms_carry_a_position() -> None:
    body = (
        GPS
        + 'incidents = [{ at = "10m", kind = "button" }, { at = "20m", kind = "fall" }]\n'
        + "button_per_day = 0\nfall_per_day = 0"
    )
    specs = scenario(body, clock='[clock]\nhistory = "1h"\nspeedup = 100')
    alarms = of_type(run(specs, 60), "alarm")
    assert [a.kind for a in alarms] == ["button", "fall"]
    clock = SimClock(real_start=START, history=timedelta(hours=1), speedup=100)
    assert alarms[0].ts == clock.start + timedelta(minutes=10)
    for alarm in alarms:
        assert alarm.lat is not None
        assert alarm.lon is not None
        assert distance_m(GeoPoint(59.3293, 18.0686), GeoPoint(alarm.lat, alarm.lon)) < 200


def test_blood_pressure_morning_and_evening_hypertensive() -> None:
    loaded = load_scenario(shipped_scenarios()["hypertension"])
    published = run(loaded.device_specs(), 300, seed=loaded.seed)
    high = of_type(published, "blood_pressure", "sim-bp-00001")
    normal = of_type(published, "blood_pressure", "sim-bp-00002")
    assert len(high) == 14  # 7 days x morning and evening, none skipped
    assert sum(r.systolic_mmhg for r in high) / len(high) > 150
    assert sum(r.systolic_mmhg for r in normal) / len(normal) < 140
    hours = {r.ts.astimezone(STOCKHOLM).hour for r in high}
    assert hours <= {7, 8, 19, 20}
    assert all(r.systolic_mmhg > r.diastolic_mmhg for r in high + normal)


def test_lock_visit_schedule_produces_unlock_lock_pairs_by_staff_keys() -> None:
    body = (
        LOCK
        + 'visits = ["07:30", "12:00", "16:30", "21:30"]\ndenied_probability = 0.3\nstaff_count = 3'
    )
    (spec,) = scenario(body, clock='[clock]\nhistory = "3d"\nspeedup = 5000')
    events = of_type(run([spec], 120), "lock")
    unlocks = [e for e in events if e.action == "unlocked"]
    assert len(unlocks) == 12
    denied = [e for e in events if e.action == "denied"]
    assert denied
    assert all(e.key_id not in spec.staff_key_ids for e in denied)
    app_events = [e for e in events if e.action != "denied"]
    for unlocked, locked in zip(app_events[::2], app_events[1::2], strict=True):
        assert (unlocked.action, locked.action) == ("unlocked", "locked")
        assert unlocked.method == locked.method == "app"
        assert unlocked.key_id == locked.key_id
        assert unlocked.key_id in spec.staff_key_ids
        assert timedelta(minutes=10) < locked.ts - unlocked.ts < timedelta(minutes=30)


def test_heartbeats_start_when_live_and_carry_battery_and_rssi() -> None:
    specs = scenario(
        '[[devices]]\ntype = "scale"\nheartbeat_interval_s = 30',
        clock='[clock]\nhistory = "1d"\nspeedup = 2000',
    )
    clock = SimClock(real_start=START, history=timedelta(days=1), speedup=2000)
    published = run(specs, 300)
    beats = of_type(published, "heartbeat")
    assert all(b.ts >= clock.live_from - timedelta(milliseconds=1) for b in beats)
    assert 6 <= len(beats) <= 8  # about (300 - 43) / 30
    assert all(b.battery_percent is not None and b.rssi_dbm is not None for b in beats)
    gaps = {round((b.ts - a.ts).total_seconds()) for a, b in itertools.pairwise(beats)}
    assert gaps == {30}


def test_dead_battery_goes_silent_with_and_without_last_will() -> None:
    loaded = load_scenario(shipped_scenarios()["dead_battery"])
    published = run(loaded.device_specs(), 1800, seed=loaded.seed)
    for device_id in ("sim-gps-00001", "sim-lock-00001"):
        mine = [item for item in published if item.device_id == device_id]
        assert [m.percent for m in of_type(mine, "battery_low")]  # warned first
        last = mine[-1].real
        assert last < START + timedelta(minutes=6)  # silent long before the run ends
        assert len(of_type(mine, "heartbeat")) >= 8
    gps = [item for item in published if item.device_id == "sim-gps-00001"]
    assert is_will(gps[-1])  # abrupt: the broker publishes the will
    assert not any(is_will(item) for item in published if item.device_id == "sim-lock-00001")


def test_battery_drains_and_warns_below_threshold() -> None:
    body = (
        '[[devices]]\ntype = "scale"\n'
        "battery = { start_percent = 30, drain_percent_per_day = 10, low_threshold_percent = 15 }"
    )
    specs = scenario(body, clock='[clock]\nhistory = "2d"\nspeedup = 10000')
    published = run(specs, 60)
    lows = of_type(published, "battery_low")
    assert [low.percent for low in lows] == [15]
    clock = SimClock(real_start=START, history=timedelta(days=2), speedup=10000)
    assert lows[0].ts - clock.start == pytest.approx(timedelta(days=1.5), abs=timedelta(seconds=1))
    levels = [b.percent for b in of_type(published, "battery")]
    assert levels == sorted(levels, reverse=True)
    assert levels[-1] <= 11


@pytest.mark.parametrize("mode", ["abrupt", "clean"])
def test_connection_loss_buffers_readings_and_replays_them(mode: str) -> None:
    body = f"""
[[devices]]
type = "scale"
telemetry_interval = "1m"
heartbeat_interval_s = 60
faults = [{{ at = "10m", duration = "5m", mode = "{mode}" }}]
"""
    published = run(scenario(body), 1200)
    down, up = START + timedelta(minutes=10), START + timedelta(minutes=15)
    during = [item for item in published if down < item.real < up]
    assert during == []  # nothing leaves the device during the outage
    wills = [item for item in published if is_will(item)]
    assert len(wills) == (1 if mode == "abrupt" else 0)
    at_reconnect = [
        item
        for item in published
        if item.real == up or (up <= item.real < up + timedelta(milliseconds=5))
    ]
    first = decoded(at_reconnect[0])
    assert (first.type, first.state) == ("status", "online")
    replayed = [decoded(item) for item in at_reconnect[1:] if item.out.msg_type == "weight"]
    assert len(replayed) == 5  # one reading a minute, buffered while offline
    assert all(down <= w.ts < up for w in replayed)  # their original, old timestamps
    heartbeats = of_type(published, "heartbeat")
    assert not [h for h in heartbeats if down < h.ts < up]  # heartbeats are not buffered
    weights = of_type(published, "weight")
    counters = [int(w.id.rsplit("-", 1)[1]) for w in weights]
    assert counters == sorted(counters)  # original ids, original order


def test_clock_skew_is_applied_and_a_bad_clock_is_refused_by_the_contract() -> None:
    body = '[[devices]]\ntype = "scale"\nclock_skew_s = 90\ntelemetry_interval = "1m"'
    published = run(scenario(body), 300)
    weights = [item for item in published if item.out.msg_type == "weight"]
    for item in weights:
        message = decoded(item)
        assert message.ts - item.real == pytest.approx(
            timedelta(seconds=90), abs=timedelta(milliseconds=2)
        )
    bad = run(scenario(body.replace("90", "3600\nbad_clock = true")), 300)
    refused = [
        decode_payload(item.out.channel, item.out.payload, now=item.real)
        for item in bad
        if item.out.msg_type == "weight"
    ]
    assert refused
    assert all(isinstance(r, DecodeError) and r.reason == Reason.FUTURE_TIMESTAMP for r in refused)


def test_same_seed_same_messages_other_seed_other_messages() -> None:
    specs = load_scenario(shipped_scenarios()["small_municipality_night"]).device_specs()

    def payloads(seed: int) -> list[tuple[datetime, str, bytes]]:
        return [(p.real, p.topic, p.out.payload) for p in run(specs, 200, seed=seed)]

    first = payloads(7)
    assert first == payloads(7)
    assert first != payloads(8)


# --- commands --------------------------------------------------------------------------


def test_unlock_command_obeys_expiry_and_reports_a_remote_unlock() -> None:
    session = session_for(LOCK)
    drain(session)
    session.on_command(command("unlock", expires_in=timedelta(seconds=-1)), START)
    (reply,) = [decode_out(item) for item in drain(session)]
    assert (reply.type, reply.command_id, reply.ok, reply.detail) == (
        "reply",
        "cmd-unlock",
        False,
        "expired",
    )

    session.on_command(
        command("unlock", expires_in=timedelta(seconds=30), key_id="sim-staff-001"), START
    )
    event, reply = (decode_out(item) for item in drain(session))
    assert (event.type, event.action, event.method, event.key_id) == (
        "lock",
        "unlocked",
        "remote",
        "sim-staff-001",
    )
    assert (reply.ok, reply.command_id) == (True, "cmd-unlock")

    session.tick(START + timedelta(minutes=3))
    relock = [
        decode_out(item, START + timedelta(minutes=3))
        for item in drain(session)
        if item.msg_type == "lock"
    ]
    assert [(e.action, e.method) for e in relock] == [("locked", "remote")]


def test_locate_publishes_a_position_at_once() -> None:
    session = session_for(GPS)
    drain(session)
    session.on_command(command("locate"), START)
    position, reply = (decode_out(item) for item in drain(session))
    assert position.type == "position"
    assert position.ts == START
    assert (reply.ok, reply.detail) == (True, "located")


def test_configure_changes_the_heartbeat_interval() -> None:
    session = session_for('[[devices]]\ntype = "scale"\nheartbeat_interval_s = 300')
    session.on_command(command("configure", heartbeat_interval_s=30), START)
    (reply,) = [decode_out(i) for i in drain(session) if i.channel == Channel.REPLIES]
    assert reply.ok
    session.tick(START + timedelta(minutes=5))
    beats = [
        decode_out(i, START + timedelta(minutes=5))
        for i in drain(session)
        if i.msg_type == "heartbeat"
    ]
    assert len(beats) >= 9
    gaps = {round((b.ts - a.ts).total_seconds()) for a, b in itertools.pairwise(beats)}
    assert gaps == {30}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (command("configure", volume=11), "unknown setting 'volume'"),
        (
            command("configure", heartbeat_interval_s=0),
            "heartbeat_interval_s must be between 1 and 86400",
        ),
        (
            command("configure", heartbeat_interval_s="often"),
            "heartbeat_interval_s must be a number",
        ),
        (command("locate"), "unsupported"),
        (command("unlock", expires_in=timedelta(minutes=1)), "unsupported"),
    ],
)
def test_commands_a_device_cannot_obey_are_refused(payload: bytes, detail: str) -> None:
    session = session_for('[[devices]]\ntype = "scale"')
    drain(session)
    session.on_command(payload, START)
    (reply,) = [decode_out(item) for item in drain(session)]
    assert (reply.ok, reply.detail) == (False, detail)


def test_garbage_on_the_command_topic_is_ignored() -> None:
    session = session_for(LOCK)
    drain(session)
    session.on_command(b"open sesame", START)
    session.on_command(
        orjson.dumps(
            {"v": 1, "type": "command", "id": "x", "ts": START.isoformat(), "name": "unlock"}
        ),
        START,
    )
    assert drain(session) == []


# --- small pure parts ------------------------------------------------------------------


def _out(n: int, *, buffered: bool = True) -> Outgoing:
    return Outgoing(Channel.TELEMETRY, "weight", str(n).encode(), buffered=buffered)


def test_outbox_buffers_drops_live_only_and_bounds_its_size() -> None:
    outbox = Outbox(limit=3)
    outbox.put(_out(1), link_up=False)
    outbox.put(_out(2, buffered=False), link_up=False)  # a heartbeat while offline
    outbox.put(_out(3), link_up=False)
    outbox.put(_out(4), link_up=False)
    outbox.put(_out(5), link_up=False)  # full: the oldest goes
    assert [outbox.pop().payload for _ in range(len(outbox))] == [b"3", b"4", b"5"]
    assert outbox.dropped == 2


def test_outbox_hold_keeps_later_messages_back() -> None:
    outbox = Outbox()
    outbox.put(_out(1), link_up=True)
    outbox.put(_out(2, buffered=False), link_up=True)
    outbox.hold()
    outbox.put(_out(3), link_up=False)
    outbox.drop_unbuffered()
    assert outbox.pop().payload == b"1"
    assert outbox.peek() is None
    outbox.release()
    assert outbox.pop().payload == b"3"


def test_scheduler_replaces_and_orders() -> None:
    scheduler = Scheduler()
    scheduler.set("a", START + timedelta(seconds=5))
    scheduler.set("b", START + timedelta(seconds=1))
    scheduler.set("a", START + timedelta(seconds=2))
    assert scheduler.pop_due(START) is None
    assert scheduler.pop_due(START + timedelta(seconds=9)) == (START + timedelta(seconds=1), "b")
    assert scheduler.pop_due(START + timedelta(seconds=9)) == (START + timedelta(seconds=2), "a")
    assert scheduler.next_due() is None


def test_next_daily_uses_local_time_across_daylight_saving() -> None:
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # DST starts in Sweden on 29 March
    first = next_daily(before, [time(7, 30)], STOCKHOLM)
    second = next_daily(first, [time(7, 30)], STOCKHOLM)
    assert first == datetime(2026, 3, 29, 5, 30, tzinfo=UTC)  # 07:30 CEST
    assert second - first == timedelta(days=1)
    assert next_daily(before, [time(20, 0), time(7, 30)], STOCKHOLM).hour == 19  # 20:00 CET


def test_geo_offset_and_distance_agree() -> None:
    home = GeoPoint(59.3293, 18.0686)
    assert distance_m(home, offset(home, 300.0, 400.0)) == pytest.approx(500.0, rel=1e-3)


def test_backoff_grows_caps_and_resets() -> None:
    import random

    backoff = Backoff(0.5, 8.0, jitter=0.5, rng=random.Random(1))  # as the simulators use it
    delays = [backoff.next() for _ in range(8)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(4.0 <= d <= 8.0 for d in delays[5:])
    backoff.reset()
    assert backoff.next() <= 0.5
