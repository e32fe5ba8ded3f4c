"""The engine's side of digital supervision (gateway.worker.supervision.SupervisionRules) on
a book in memory: the checks' alarms, the decision asked again by each service's rules, a
unit's sensor left alone, and the consent gate at ingest (issue #20)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

from firmware_contracts.messages import Bed, Door, Heartbeat, Status, Weight
from gateway.domain.alarms import AlarmBook, AlarmKind
from gateway.domain.passive_alarms import PassiveKind, PassiveRule
from gateway.domain.registry import Binding, DeviceRecord, DeviceStatus, Refusal
from gateway.domain.supervision import Plan, Result, Seen, parse_check_time
from gateway.domain.supervision_consent import Decision, Decisions, Service
from gateway.worker.supervision import SupervisionCache, SupervisionGate, SupervisionRules

PERSON = uuid4()
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 21:00 in Stockholm
BED = DeviceRecord("bed-1", "kommun-a", DeviceStatus.ACTIVE, "bed_sensor", 60)
DOOR = DeviceRecord("door-1", "kommun-a", DeviceStatus.ACTIVE, "door_sensor", 60)
MINE = Binding("kommun-a", PERSON)


def decision(service: Service) -> Decision:
    return Decision(uuid4(), "kommun-a", PERSON, service, T0 - timedelta(days=1), None,
                    T0 - timedelta(days=2))  # fmt: skip


def rules(*services: Service, plan_at: str = "21:05") -> tuple[SupervisionRules, AlarmBook]:
    cache = SupervisionCache("postgresql://unused")
    cache._decisions = Decisions([decision(s) for s in services])
    cache._plans = (Plan(uuid4(), "kommun-a", PERSON, (parse_check_time(plan_at),),
                         Seen.IN_BED, timedelta(minutes=10), "night_team"),)  # fmt: skip
    cache._rules = {PERSON: (PassiveRule(uuid4(), "kommun-a", PERSON,
                                         PassiveKind.DOOR_OPENED_AT_NIGHT,
                                         parse_check_time("20:00"),
                                         parse_check_time("07:00")),)}  # fmt: skip
    book = AlarmBook()
    r = SupervisionRules(cache, book, database_url="postgresql://unused",
                         person_ref=lambda _: "U-1",
                         silence_bound=lambda s: timedelta(seconds=2 * s + 30))  # fmt: skip
    r.tick(T0)  # the plans are seen: their checks from now on
    return r, book


def alive(r: SupervisionRules, at: datetime) -> None:
    """The bed sensor's heartbeat (within its bound of 150 s at the next check)."""
    r.observe(BED, MINE, Heartbeat(v=1, type="heartbeat", id=f"h-{at.timestamp()}", ts=at), at)


def bed(occupied: bool, at: datetime) -> Bed:
    return Bed(v=1, type="bed", id=f"b-{at.timestamp()}", ts=at, occupied=occupied)


def test_out_of_bed_at_the_check_is_retried_then_not_ok() -> None:
    r, book = rules(Service.NIGHT_SUPERVISION)
    r.observe(BED, MINE, bed(False, T0), T0)
    alive(r, T0 + timedelta(minutes=4))
    assert r.tick(T0 + timedelta(minutes=5)) == []
    assert [c.result for c in r.pending] == [Result.RETRIED]
    alive(r, T0 + timedelta(minutes=14))
    (event,) = r.tick(T0 + timedelta(minutes=15))
    assert event.alarm.kind is AlarmKind.SUPERVISION_NOT_OK and event.alarm.person_ref == "U-1"
    assert event.alarm.device_id == "bed-1" and event.alarm.detail["attempt"] == 2
    assert [c.result for c in r.pending] == [Result.RETRIED, Result.NOT_OK]
    assert r.pending[-1].alarm_id == event.alarm.id
    assert book.open_alarms()


def test_a_sensor_gone_offline_fails_the_check_and_in_bed_is_ok() -> None:
    r, _ = rules(Service.NIGHT_SUPERVISION)
    r.observe(BED, MINE, bed(True, T0), T0)
    r.observe(BED, MINE, Status(v=1, type="status", state="offline"), T0 + timedelta(minutes=1))
    (event,) = r.tick(T0 + timedelta(minutes=5))
    assert event.alarm.kind is AlarmKind.SUPERVISION_FAILED
    assert event.alarm.detail["reason"] == "sensor_offline"
    r2, _ = rules(Service.NIGHT_SUPERVISION)
    r2.observe(BED, MINE, bed(True, T0), T0)
    alive(r2, T0 + timedelta(minutes=4))
    assert r2.tick(T0 + timedelta(minutes=5)) == []
    assert [c.result for c in r2.pending] == [Result.OK]


def test_without_a_night_supervision_decision_the_check_fails() -> None:
    r, _ = rules(Service.PASSIVE_ALARMS)
    r.observe(BED, MINE, bed(True, T0), T0)
    (event,) = r.tick(T0 + timedelta(minutes=5))
    assert event.alarm.kind is AlarmKind.SUPERVISION_FAILED
    assert "night_supervision" in event.alarm.detail["reason"]


def test_passive_rules_need_their_own_decision_and_a_units_sensor_is_left_alone() -> None:
    door = Door(v=1, type="door", id="d1", ts=T0, state="open")
    r, _ = rules(Service.NIGHT_SUPERVISION)
    assert r.observe(DOOR, MINE, door, T0) == []
    r, _ = rules(Service.PASSIVE_ALARMS)
    (event,) = r.observe(DOOR, MINE, door, T0)
    assert event.alarm.kind is AlarmKind.DOOR_OPENED_AT_NIGHT
    unit = Binding("kommun-a", None, uuid4())
    assert r.observe(DOOR, unit, Door(v=1, type="door", id="d2", ts=T0, state="open"), T0) == []


def test_checks_are_made_once_each_at_their_local_time() -> None:
    r, _ = rules(Service.NIGHT_SUPERVISION, plan_at="22:30")
    r.observe(BED, MINE, bed(True, T0), T0)
    alive(r, T0 + timedelta(minutes=88))
    local = T0.astimezone(ZoneInfo("Europe/Stockholm"))
    assert local.hour == 21
    assert r.tick(T0 + timedelta(minutes=89)) == [] and not r.pending
    r.tick(T0 + timedelta(minutes=90, seconds=1))
    r.tick(T0 + timedelta(minutes=92))
    assert len(r.pending) == 1 and r.pending[0].local_time == "22:30"


def test_the_gate_refuses_sensor_states_without_consent_never_other_messages() -> None:
    cache = SupervisionCache("postgresql://unused")
    gate = SupervisionGate(cache, gate_positions=False)
    refused = gate(MINE, bed(True, T0), T0)
    assert refused is not None and refused.reason is Refusal.NO_SUPERVISION_CONSENT
    assert gate(MINE, Weight(v=1, type="weight", id="w", ts=T0, kg=70.0), T0) is None
    assert gate(Binding("kommun-a", None, uuid4()), bed(True, T0), T0) is None
    cache._decisions = Decisions([decision(Service.PASSIVE_ALARMS)])
    assert gate(MINE, bed(True, T0), T0) is None


def test_a_checks_alarm_goes_to_the_team_its_plan_names_then_along_the_chain() -> None:
    from gateway.domain.routing import RoutingPolicy

    r, _ = rules(Service.NIGHT_SUPERVISION)  # the plan's team: night_team
    r.cache._plans = (replace(r.cache._plans[0], team="nattpatrull_syd"),)
    r.schedule = type(r.schedule)()
    r._ticked = None
    r.tick(T0)
    (event,) = r.tick(T0 + timedelta(minutes=5))  # no bed sensor heard: failed
    policy = RoutingPolicy()
    assert policy.chain(event.alarm, event.alarm.raised_at) == (
        "nattpatrull_syd",
        "home_care",
        "night_team",
        "relative",
    )  # 21:05: the day's route
    assert policy.recipients(event.alarm) == ("nattpatrull_syd",)
    # a passive alarm at night: the night team first, as the other safety alarms
    r, _ = rules(Service.PASSIVE_ALARMS)
    (door,) = r.observe(DOOR, MINE, Door(v=1, type="door", id="d", ts=T0, state="open"), T0)
    assert policy.recipients(door.alarm) == ("home_care",)  # 21:00: the day's route
    late = T0 + timedelta(hours=2)  # 23:00
    (night,) = rules(Service.PASSIVE_ALARMS)[0].observe(
        DOOR, MINE, Door(v=1, type="door", id="d2", ts=late, state="open"), late)  # fmt: skip
    assert policy.recipients(night.alarm) == ("night_team",)
