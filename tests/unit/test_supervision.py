"""Digital night supervision, passive alarms and their consent gate: the pure rules
(issue #20, docs/supervision.md). DST nights, retries, a silent sensor at check time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from device_sims.sensors import NightScript, SensorSim
from firmware_contracts.decode import Decoded, decode_payload
from gateway.domain.passive_alarms import PassiveKind, PassiveRule, PassiveWatch
from gateway.domain.supervision import (
    Due,
    Plan,
    Result,
    Schedule,
    Seen,
    SensorState,
    check_instants,
    evaluate,
    local_instant,
    night_of,
    outcome,
    parse_check_time,
)
from gateway.domain.supervision_consent import Decision, Decisions, Service, refusal

STHLM = ZoneInfo("Europe/Stockholm")
PERSON = uuid4()


def plan(*times: str, seen: Seen = Seen.IN_BED, minutes: int | None = None) -> Plan:
    return Plan(uuid4(), "kommun-a", PERSON, tuple(parse_check_time(t) for t in times), seen,
                timedelta(minutes=10), "night_team", minutes)  # fmt: skip


def local(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=STHLM)


# --- local times and DST ---------------------------------------------------------------


def test_an_ordinary_night_has_its_three_checks_in_local_time() -> None:
    p = plan("22:00", "01:00", "04:00")
    start, end = night_of(local(2026, 11, 23, 20), STHLM)
    got = check_instants(p, start, end)
    assert [(at.astimezone(STHLM).strftime("%d %H:%M"), t) for at, t in got] == [
        ("23 22:00", "22:00"), ("24 01:00", "01:00"), ("24 04:00", "04:00"),
    ]  # fmt: skip


def test_a_check_in_the_spring_gap_runs_when_the_gap_ends() -> None:
    # 2026-03-29: clocks go from 02:00 to 03:00; 02:30 does not exist
    at = local_instant(date(2026, 3, 29), time(2, 30), STHLM)
    assert at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 summer time
    assert at.astimezone(STHLM).strftime("%H:%M %Z") == "03:00 CEST"
    p = plan("01:00", "02:30", "04:00")
    start, end = night_of(local(2026, 3, 28, 22), STHLM)
    got = [a for a, _ in check_instants(p, start, end)]
    assert len(got) == 3 and got == sorted(got)
    assert got[1] - got[0] == timedelta(hours=1)  # 01:00 CET -> 03:00 CEST: one hour


def test_a_check_in_the_autumn_repeat_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25: clocks go from 03:00 back to 02:00; 02:30 happens twice
    at = local_instant(date(2026, 10, 25), time(2, 30), STHLM)
    assert at == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 summer time
    p = plan("02:30")
    start, end = night_of(local(2026, 10, 24, 22), STHLM)
    assert [a for a, _ in check_instants(p, start, end)] == [at]


def test_the_night_runs_from_noon_to_noon() -> None:
    start, end = night_of(local(2026, 11, 24, 3), STHLM)
    assert start.astimezone(STHLM) == local(2026, 11, 23, 12)
    assert end.astimezone(STHLM) == local(2026, 11, 24, 12)
    spring = night_of(local(2026, 3, 29, 3), STHLM)
    assert spring[1] - spring[0] == timedelta(hours=23)


@pytest.mark.parametrize("bad", ["24:00", "7:00", "22", "22:00:00:00", "ab:cd", "22:60"])
def test_check_times_are_strict(bad: str) -> None:
    with pytest.raises(ValueError, match=r"check time|must be in|hour|minute"):
        parse_check_time(bad)


# --- evaluation -----------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def bed(occupied: bool | None, *, heard: timedelta = timedelta(minutes=1),
        offline: bool = False) -> SensorState:  # fmt: skip
    return SensorState("bed-1", "bed", occupied, NOW - timedelta(hours=1), NOW - heard,
                       timedelta(minutes=15), offline)  # fmt: skip


def test_in_bed_is_ok_out_of_bed_is_not() -> None:
    assert evaluate(plan("22:00"), [bed(True)], NOW).result is Result.OK
    assert evaluate(plan("22:00"), [bed(False)], NOW).result is Result.NOT_OK


def test_a_silent_or_offline_sensor_at_check_time_fails_the_check() -> None:
    silent = evaluate(plan("22:00"), [bed(True, heard=timedelta(hours=1))], NOW)
    assert (silent.result, silent.reason) == (Result.FAILED, "sensor_silent")
    offline = evaluate(plan("22:00"), [bed(True, offline=True)], NOW)
    assert (offline.result, offline.reason) == (Result.FAILED, "sensor_offline")
    none = evaluate(plan("22:00"), [], NOW)
    assert none.result is Result.FAILED and "no bed sensor" in (none.reason or "")


def test_motion_within_n_minutes_and_door_closed() -> None:
    motion = SensorState("pir-1", "motion", False, NOW - timedelta(minutes=3),
                         NOW - timedelta(minutes=1), timedelta(minutes=15),
                         last_true_at=NOW - timedelta(minutes=8))  # fmt: skip
    assert evaluate(plan("22:00", seen=Seen.MOTION, minutes=10), [motion], NOW).result is Result.OK
    assert evaluate(plan("22:00", seen=Seen.MOTION, minutes=5), [motion], NOW).result is (
        Result.NOT_OK
    )
    door = SensorState("door-1", "door", "closed", NOW, NOW, timedelta(minutes=15))
    assert evaluate(plan("22:00", seen=Seen.DOOR_CLOSED), [door], NOW).result is Result.OK
    door.value = "open"
    assert evaluate(plan("22:00", seen=Seen.DOOR_CLOSED), [door], NOW).result is Result.NOT_OK


def test_the_documentation_holds_states_only() -> None:
    seen = evaluate(plan("22:00"), [bed(True)], NOW).seen
    assert seen == {"rule": "in_bed", "sensors": [
        {"device_id": "bed-1", "kind": "bed", "value": True,
         "at": (NOW - timedelta(hours=1)).isoformat(), "offline": False}]}  # fmt: skip


# --- retries ----------------------------------------------------------------------------


def test_not_ok_is_retried_once_then_not_ok() -> None:
    p = plan("22:00")
    schedule = Schedule()
    at = local_instant(date(2026, 11, 23), time(22), STHLM)
    assert (
        list(schedule.due([p], at - timedelta(minutes=1), lambda _: at - timedelta(hours=1))) == []
    )
    (first,) = schedule.due([p], at + timedelta(seconds=2), lambda _: at)
    assert first == Due(p.id, at, "22:00", 1)
    not_ok = evaluate(p, [bed(False)], NOW)
    assert outcome(first, not_ok) is Result.RETRIED
    schedule.retry(p, first, at)
    assert list(schedule.due([p], at + timedelta(minutes=9), lambda _: at)) == []
    (second,) = schedule.due([p], at + timedelta(minutes=10), lambda _: at)
    assert second.attempt == 2 and second.planned_at == at
    assert outcome(second, not_ok) is Result.NOT_OK
    assert outcome(second, evaluate(p, [bed(True)], NOW)) is Result.OK
    assert list(schedule.due([p], at + timedelta(hours=1), lambda _: at)) == []


def test_a_check_is_made_once_and_a_new_plan_starts_from_where_it_is_told() -> None:
    p = plan("22:00", "01:00")
    schedule = Schedule()
    start = local(2026, 11, 23, 23)
    assert [d.local_time for d in schedule.due([p], local(2026, 11, 24, 2), lambda _: start)] == [
        "01:00"
    ]
    assert list(schedule.due([p], local(2026, 11, 24, 3), lambda _: start)) == []


# --- passive alarms ---------------------------------------------------------------------


def rule(kind: PassiveKind, start: str, end: str, minutes: int | None = None) -> PassiveRule:
    return PassiveRule(uuid4(), "kommun-a", PERSON, kind, parse_check_time(start),
                       parse_check_time(end), minutes)  # fmt: skip


def test_door_opened_at_night_only_in_the_window_across_midnight() -> None:
    r = rule(PassiveKind.DOOR_OPENED_AT_NIGHT, "22:00", "06:00")
    watch = PassiveWatch()
    assert watch.on_state([r], "door", "open", "door-1", local(2026, 11, 23, 18)) == []
    (signal,) = watch.on_state([r], "door", "open", "door-1", local(2026, 11, 24, 2))
    assert not signal.condition and signal.device_id == "door-1"
    assert watch.on_state([r], "door", "closed", "door-1", local(2026, 11, 24, 2)) == []


def test_out_of_bed_and_not_back_within_n_minutes() -> None:
    r = rule(PassiveKind.OUT_OF_BED, "22:00", "06:00", minutes=20)
    watch = PassiveWatch()
    up = local(2026, 11, 24, 2)
    assert watch.on_state([r], "bed", False, "bed-1", up) == []
    assert watch.due([r], up + timedelta(minutes=19)) == []
    (raised,) = watch.due([r], up + timedelta(minutes=20))
    assert raised.condition and not raised.clear and raised.detail["minutes"] == 20
    assert watch.due([r], up + timedelta(minutes=40)) == []  # raised once
    (cleared,) = watch.on_state([r], "bed", True, "bed-1", up + timedelta(minutes=45))
    assert cleared.clear
    # back within the time: nothing
    assert watch.on_state([r], "bed", False, "bed-1", up + timedelta(hours=1)) == []
    assert watch.on_state([r], "bed", True, "bed-1", up + timedelta(hours=1, minutes=5)) == []
    assert watch.due([r], up + timedelta(hours=2)) == []


def test_no_movement_for_n_hours_in_the_daytime() -> None:
    r = rule(PassiveKind.NO_MOVEMENT, "08:00", "20:00", minutes=180)
    watch = PassiveWatch()
    watch.on_state([r], "motion", True, "pir-1", local(2026, 11, 23, 9))
    assert watch.due([r], local(2026, 11, 23, 11, 59)) == []
    (raised,) = watch.due([r], local(2026, 11, 23, 12))
    assert raised.device_id == "pir-1"
    (cleared,) = watch.on_state([r], "motion", True, "pir-1", local(2026, 11, 23, 12, 30))
    assert cleared.clear
    assert watch.due([r], local(2026, 11, 23, 23)) == []  # outside the window


def test_floor_mat_stepped_on_in_the_window() -> None:
    r = rule(PassiveKind.FLOOR_MAT, "23:00", "06:00")
    watch = PassiveWatch()
    assert len(watch.on_state([r], "floor_mat", True, "mat-1", local(2026, 11, 24, 3))) == 1
    assert watch.on_state([r], "floor_mat", False, "mat-1", local(2026, 11, 24, 3)) == []


# --- consent ----------------------------------------------------------------------------


def decision(service: Service, *, cohabitant: bool = False, cohabitant_consent: bool = False,
             withdrawn: bool = False) -> Decision:  # fmt: skip
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return Decision(uuid4(), "kommun-a", PERSON, service, t0, datetime(2027, 1, 1, tzinfo=UTC),
                    t0, cohabitant, t0 if cohabitant_consent else None,
                    NOW if withdrawn else None)  # fmt: skip


def test_sensor_states_need_a_decision_in_force_with_consent() -> None:
    none = Decisions()
    assert refusal(none, PERSON, "bed", NOW, gate_positions=False) is not None
    night = Decisions([decision(Service.NIGHT_SUPERVISION)])
    assert refusal(night, PERSON, "bed", NOW, gate_positions=False) is None
    passive = Decisions([decision(Service.PASSIVE_ALARMS)])
    assert refusal(passive, PERSON, "door", NOW, gate_positions=False) is None
    gps_only = Decisions([decision(Service.GPS_POSITIONING)])
    assert refusal(gps_only, PERSON, "motion", NOW, gate_positions=False) is not None


def test_a_cohabitant_must_consent_too_and_withdrawal_ends_it() -> None:
    waiting = decision(Service.NIGHT_SUPERVISION, cohabitant=True)
    assert waiting.status(NOW) == "awaiting_cohabitant_consent"
    assert not Decisions([waiting]).allows(PERSON, Service.NIGHT_SUPERVISION, NOW)
    both = decision(Service.NIGHT_SUPERVISION, cohabitant=True, cohabitant_consent=True)
    assert Decisions([both]).allows(PERSON, Service.NIGHT_SUPERVISION, NOW)
    gone = decision(Service.NIGHT_SUPERVISION, withdrawn=True)
    assert not Decisions([gone]).allows(PERSON, Service.NIGHT_SUPERVISION, NOW)
    late = NOW.replace(year=2027, month=2)
    assert not Decisions([both]).allows(PERSON, Service.NIGHT_SUPERVISION, late)


def test_alarms_and_units_are_never_gated_positions_only_when_set() -> None:
    none = Decisions()
    assert refusal(none, PERSON, "alarm", NOW, gate_positions=True) is None
    assert refusal(none, None, "bed", NOW, gate_positions=True) is None  # a unit's sensor
    assert refusal(none, PERSON, "position", NOW, gate_positions=False) is None
    assert refusal(none, PERSON, "position", NOW, gate_positions=True) is not None
    gps = Decisions([decision(Service.GPS_POSITIONING)])
    assert refusal(gps, PERSON, "position", NOW, gate_positions=True) is None


# --- the simulator ----------------------------------------------------------------------


def test_a_simulated_night_speaks_contract_v1() -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    night = NightScript(
        bed=SensorSim("bed-1", "bed_sensor"), motion=SensorSim("pir-1", "motion_sensor"),
        door=SensorSim("door-1", "door_sensor"), mat=SensorSim("mat-1", "floor_mat"),
    )  # fmt: skip
    night.awake(t0).goes_to_bed(t0 + timedelta(seconds=30))
    night.gets_up(t0 + timedelta(minutes=1), steps_on_mat=True).opens_door(
        t0 + timedelta(minutes=2)
    )
    night.bed_sensor_dies(t0 + timedelta(minutes=2, seconds=30))
    sent = night.messages()
    assert [s.at for s in sent] == sorted(s.at for s in sent)
    for s in sent:
        assert isinstance(decode_payload(s.out.channel, s.out.payload, now=datetime.now(UTC)),
                          Decoded), s  # fmt: skip
    assert {s.out.msg_type for s in sent} >= {"bed", "motion", "door", "floor_mat", "status"}
    with pytest.raises(ValueError, match="not a sensor device type"):
        SensorSim("x", "scale")


# --- the scenario simulators --------------------------------------------------------------


def _play(body: str, minutes: int) -> list[tuple[datetime, str, bytes]]:
    from device_sims import parse_scenario
    from device_sims.catalog import build_simulator
    from device_sims.clock import SimClock
    from device_sims.envelope import LinkDown, Outgoing

    start = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    out: list[tuple[datetime, str, bytes]] = []
    for spec in parse_scenario(body).device_specs():
        sim = build_simulator(spec, seed=1, clock=SimClock(real_start=start))
        for item in sim.advance(start + timedelta(minutes=minutes)):
            if isinstance(item, Outgoing):
                out.append((sim.now, item.msg_type, item.payload))
            elif isinstance(item, LinkDown):
                out.append((sim.now, "link_down", b""))
    return out


def test_a_scenario_bed_sensor_follows_the_night_and_its_incidents() -> None:
    body = (
        'name = "n"\n[[devices]]\ntype = "bed_sensor"\nbedtime = "21:30"\njitter = "0s"\n'
        "night_getups = 0\n"
        'incidents = [{ at = "60m", state = false }, { at = "90m", dies = true }]\n'
    )
    played = _play(body, 120)
    import orjson

    beds = [orjson.loads(p)["occupied"] for _, kind, p in played if kind == "bed"]
    assert beds == [False, True, False]  # awake at the start, to bed at 21:30, up at 60 min
    assert played[-1][1] == "link_down"  # it dies at 90 min: nothing after
    for _, kind, payload in played:
        if kind != "link_down":
            assert isinstance(decode_payload(_channel(kind), payload, now=datetime.now(UTC)),
                              Decoded)  # fmt: skip


def _channel(kind: str) -> Any:
    from firmware_contracts.topics import Channel

    return {"heartbeat": Channel.HEARTBEAT, "battery": Channel.TELEMETRY,
            "status": Channel.STATUS}.get(kind, Channel.EVENTS)  # fmt: skip


def test_scenario_sensor_incidents_must_fit_the_type() -> None:
    from device_sims import parse_scenario
    from device_sims.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="door_sensor"):
        parse_scenario('name = "n"\n[[devices]]\ntype = "door_sensor"\n'
                       'incidents = [{ at = "1m", state = true }]\n')  # fmt: skip
