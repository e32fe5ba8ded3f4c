"""The alarm lifecycle, routing, silence and the engine's rules: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_contracts.messages import Alarm as AlarmMessage
from firmware_contracts.messages import Heartbeat, Lock, Status, Weight
from gateway.domain.alarms import (
    AlarmBook,
    AlarmError,
    AlarmEvent,
    AlarmKind,
    AlarmState,
    EscalationPolicy,
    Severity,
)
from gateway.domain.registry import Assignment, Binding, DeviceRecord, DeviceStatus, device_record
from gateway.domain.routing import RoutingPolicy
from gateway.domain.silence import SilencePolicy, SilenceWatch
from gateway.worker.alarms.engine import AlarmEngine, PersonRules, RuleConfig

T0 = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # night in Sweden
PERSON = uuid4()


def signal(book: AlarmBook, kind: AlarmKind, at: datetime, *, condition: bool = False,
           person=PERSON, device: str = "gps-1"):  # type: ignore[no-untyped-def]  # fmt: skip
    return book.signal(tenant_id="t", kind=kind, device_id=device, person_id=person,
                       person_ref="Brukare 1", at=at, condition=condition)  # fmt: skip


def test_repeated_press_is_an_occurrence_until_resolved() -> None:
    book = AlarmBook()
    [raised] = signal(book, AlarmKind.BUTTON, T0)
    [again] = signal(book, AlarmKind.BUTTON, T0 + timedelta(seconds=5))
    assert again.type == "occurred" and again.alarm.id == raised.alarm.id
    assert again.alarm.occurrences == 2 and again.seq == 2
    book.acknowledge(raised.alarm.id, "op", T0 + timedelta(seconds=20))
    events = book.resolve(raised.alarm.id, "op", T0 + timedelta(seconds=60), "on site")
    assert [e.type for e in events] == ["resolved"]
    [fresh] = signal(book, AlarmKind.BUTTON, T0 + timedelta(minutes=5))
    assert fresh.type == "raised" and fresh.alarm.id != raised.alarm.id


def test_condition_clears_returns_and_needs_a_human() -> None:
    book = AlarmBook()
    [raised] = signal(book, AlarmKind.BATTERY_LOW, T0, condition=True)
    assert signal(book, AlarmKind.BATTERY_LOW, T0 + timedelta(minutes=1), condition=True) == []
    [cleared] = book.clear(tenant_id="t", kind=AlarmKind.BATTERY_LOW, device_id="gps-1",
                           person_id=PERSON, at=T0 + timedelta(hours=1))  # fmt: skip
    assert cleared.alarm.condition is False and cleared.alarm.state is AlarmState.RAISED
    assert book.get(raised.alarm.id) is not None  # still open: a person must take it
    [back] = signal(book, AlarmKind.BATTERY_LOW, T0 + timedelta(hours=2), condition=True)
    assert back.type == "occurred" and back.alarm.condition is True


def test_transitions_are_checked() -> None:
    book = AlarmBook()
    [raised] = signal(book, AlarmKind.FALL, T0)
    with pytest.raises(AlarmError):
        book.resolve(raised.alarm.id, "op", T0, "  ")
    book.acknowledge(raised.alarm.id, "op", T0)
    with pytest.raises(AlarmError, match="not raised"):
        book.acknowledge(raised.alarm.id, "op2", T0)
    book.resolve(raised.alarm.id, "op", T0, "ok")
    with pytest.raises(AlarmError) as err:
        book.acknowledge(raised.alarm.id, "op", T0)
    assert err.value.status == 404


def test_resolving_unacknowledged_alarm_acknowledges_it_first() -> None:
    book = AlarmBook()
    [raised] = signal(book, AlarmKind.FALL, T0)
    events = book.resolve(raised.alarm.id, "op", T0 + timedelta(seconds=30), "false alarm")
    assert [e.type for e in events] == ["acknowledged", "resolved"]
    assert events[-1].alarm.acknowledged_at == T0 + timedelta(seconds=30)


def test_escalation_follows_policy_and_stops_when_acknowledged() -> None:
    book = AlarmBook()
    policy = EscalationPolicy({Severity.CRITICAL: (60, 120)})
    [raised] = signal(book, AlarmKind.BUTTON, T0)
    assert book.escalate_due(T0 + timedelta(seconds=59), policy) == []
    [first] = book.escalate_due(T0 + timedelta(seconds=60), policy)
    assert first.alarm.escalation_level == 1
    assert book.next_escalation(policy) == T0 + timedelta(seconds=180)
    book.acknowledge(raised.alarm.id, "op", T0 + timedelta(seconds=90))
    assert book.escalate_due(T0 + timedelta(hours=1), policy) == []


def test_routing_by_kind_and_time_of_day_with_escalation_chain() -> None:
    policy = RoutingPolicy()
    book = AlarmBook()
    [night] = signal(book, AlarmKind.BUTTON, T0)  # 00:00 local
    assert policy.recipients(night.alarm) == ("night_team",)
    [day] = signal(book, AlarmKind.FALL, T0.replace(hour=10))
    assert policy.recipients(day.alarm) == ("home_care",)
    [bp] = signal(book, AlarmKind.BLOOD_PRESSURE, T0, condition=True)
    assert policy.recipients(bp.alarm) == ("home_care",)  # inside the municipality (#17.7)
    night.alarm.escalation_level = 5
    assert policy.recipients(night.alarm) == ("night_team", "home_care", "relative")


def test_silence_watch_reports_once_and_ignores_older_messages() -> None:
    watch = SilenceWatch()
    bound = SilencePolicy(2, 30).bound(60)
    assert bound == timedelta(seconds=150)
    watch.touch("d", T0, bound)
    watch.touch("d", T0 - timedelta(minutes=10), bound)  # a replayed old reading
    assert watch.due(T0 + timedelta(seconds=149)) == []
    assert watch.due(T0 + timedelta(seconds=150)) == ["d"]
    assert watch.due(T0 + timedelta(hours=1)) == []  # reported once
    assert watch.touch("d", T0 + timedelta(hours=2), bound) is True  # back
    assert watch.due(T0 + timedelta(hours=2, seconds=149)) == []
    assert watch.due(T0 + timedelta(hours=2, seconds=150)) == ["d"]


def test_silence_heap_stays_the_size_of_the_fleet() -> None:
    watch = SilenceWatch()
    bound = timedelta(seconds=150)
    for n in range(10_000):
        watch.touch(f"d{n % 100}", T0 + timedelta(milliseconds=n), bound)
    assert watch.heap_size() == 100
    # entries due early are rescheduled to the devices' latest deadlines, not reported
    assert watch.due(T0 + timedelta(seconds=150)) == []
    assert sorted(watch.due(T0 + timedelta(seconds=160))) == sorted(f"d{n}" for n in range(100))


kinds = st.sampled_from([AlarmKind.BUTTON, AlarmKind.FALL, AlarmKind.BATTERY_LOW])
actions = st.lists(
    st.tuples(st.sampled_from(["signal", "condition", "clear", "ack", "resolve"]), kinds,
              st.sampled_from(["p1", "p2"])),
    max_size=60,
)  # fmt: skip


@settings(max_examples=200, derandomize=True, database=None)
@given(actions)
def test_never_two_open_alarms_for_one_subject_and_kind(steps) -> None:  # type: ignore[no-untyped-def]
    book = AlarmBook()
    people = {"p1": uuid4(), "p2": uuid4()}
    at = T0
    for action, kind, who in steps:
        at += timedelta(seconds=1)
        person = people[who]
        found = book.find("t", f"device:gps-{who}" if kind is AlarmKind.BATTERY_LOW
                          else f"person:{person}", kind)  # fmt: skip
        if action in ("signal", "condition"):
            signal(book, kind, at, condition=action == "condition", person=person,
                   device=f"gps-{who}")  # fmt: skip
        elif action == "clear":
            book.clear(tenant_id="t", kind=kind, device_id=f"gps-{who}", person_id=person, at=at)
        elif action == "ack" and found and found.state is AlarmState.RAISED:
            book.acknowledge(found.id, "op", at)
        elif action == "resolve" and found:
            book.resolve(found.id, "op", at, "done")
        keys = [(a.tenant_id, a.subject, a.kind) for a in book.open_alarms()]
        assert len(keys) == len(set(keys))
        for alarm in book.open_alarms():
            assert alarm.occurrences >= 1 and alarm.state is not AlarmState.RESOLVED


def engine_with(person: PersonRules | None = None) -> tuple[AlarmEngine, DeviceRecord, Binding]:
    device = device_record("gps-1", "t", DeviceStatus.ACTIVE, "gps_alarm", 60,
                           [Assignment(PERSON, T0 - timedelta(days=30), None)])  # fmt: skip
    rules = person or PersonRules(PERSON, "Brukare 1")
    engine = AlarmEngine(AlarmBook(), RuleConfig(door_unlocked_after=timedelta(minutes=15)),
                         person=lambda _p: rules, device=lambda _d: device)  # fmt: skip
    return engine, device, Binding("t", PERSON)


def test_engine_redelivered_press_counts_once() -> None:
    engine, device, binding = engine_with()
    press = AlarmMessage(v=1, type="alarm", id="p1", ts=T0, kind="button")
    assert [e.type for e in engine.observe(device, binding, press, T0)] == ["raised"]
    assert engine.observe(device, binding, press, T0) == []


def test_engine_remembers_the_last_64_event_ids_per_device() -> None:
    engine, device, binding = engine_with()

    def press(n: int) -> AlarmMessage:
        return AlarmMessage(v=1, type="alarm", id=f"p{n}", ts=T0, kind="button")

    firsts = [engine._first_delivery("gps-1", press(n).id) for n in range(65)]
    assert all(firsts)
    assert not engine._first_delivery("gps-1", "p64") and not engine._first_delivery("gps-1", "p1")
    assert engine._first_delivery("gps-1", "p0")  # the oldest of 65 was let go
    assert engine._first_delivery("gps-2", "p1")  # per device
    assert engine.observe(device, binding, press(5), T0) == []  # a redelivery: no event


def _lock_event(n: str, ts: datetime, action: str) -> Lock:
    return Lock(v=1, type="lock", id=n, ts=ts, action=action, key_id="k", method="app")


def _doors(events: list[AlarmEvent]) -> list[AlarmEvent]:
    return [e for e in events if e.alarm.kind is AlarmKind.DOOR_UNLOCKED]


def test_engine_door_left_unlocked_after_visit() -> None:
    engine, device, binding = engine_with()
    engine.observe(device, binding, _lock_event("u", T0, "unlocked"), T0)
    assert _doors(engine.tick(T0 + timedelta(minutes=14))) == []
    [raised] = _doors(engine.tick(T0 + timedelta(minutes=15)))
    assert raised.type == "raised"
    lock = _lock_event("l", T0 + timedelta(minutes=16), "locked")
    [cleared] = _doors(engine.observe(device, binding, lock, T0))
    assert cleared.alarm.id == raised.alarm.id


def test_engine_a_locks_backlog_that_locked_in_time_raises_no_door_alarm() -> None:
    """A lock delivering what it buffered (a visit 19 minutes ago, locked after 10): the
    clock is past the unlock's deadline when the unlock arrives, but the lock's own
    timeline is not; the door alarm waits for the rest of the backlog, which locks it.
    (The demo replays its history so, and raised a door_unlocked for a locked door.)"""
    engine, device, binding = engine_with()
    now = T0 + timedelta(minutes=19)
    engine.observe(device, binding, _lock_event("u", T0, "unlocked"), now)
    assert _doors(engine.tick(now + timedelta(seconds=0.1))) == []
    beat = Heartbeat(v=1, type="heartbeat", id="h", ts=T0 + timedelta(minutes=5))
    engine.observe(device, binding, beat, now + timedelta(seconds=4))
    assert _doors(engine.tick(now + timedelta(seconds=8))) == []
    locked = _lock_event("l", T0 + timedelta(minutes=10), "locked")
    assert _doors(engine.observe(device, binding, locked, now + timedelta(seconds=10))) == []
    assert _doors(engine.tick(now + timedelta(minutes=5))) == []


def test_engine_a_locks_backlog_past_the_deadline_without_a_lock_raises_at_once() -> None:
    engine, device, binding = engine_with()
    now = T0 + timedelta(minutes=19)
    engine.observe(device, binding, _lock_event("u", T0, "unlocked"), now)
    assert _doors(engine.tick(now + timedelta(seconds=0.1))) == []
    beat = Heartbeat(v=1, type="heartbeat", id="h", ts=T0 + timedelta(minutes=16))
    [raised] = _doors(engine.observe(device, binding, beat, now + timedelta(seconds=1)))
    assert raised.type == "raised"  # its own timeline is past the deadline, unlocked


def test_engine_taking_over_times_a_late_stored_unlock_on_its_locks_backlog() -> None:
    """The engine that received a backlog's unlock died; its successor seeds the door from
    storage (unlock stamped 19 minutes before it was received) and waits for the rest of
    the backlog as the first would have."""
    engine, device, binding = engine_with()
    received = T0 + timedelta(minutes=19)
    engine.seed_door(device, T0, received)
    assert _doors(engine.tick(received + timedelta(seconds=1))) == []
    locked = _lock_event("l", T0 + timedelta(minutes=10), "locked")
    assert _doors(engine.observe(device, binding, locked, received + timedelta(seconds=5))) == []
    assert _doors(engine.tick(received + timedelta(minutes=2))) == []
    live, _, _ = engine_with()  # a live stored unlock is timed by the clock, as before
    live.seed_door(device, T0, T0)
    [raised] = _doors(live.tick(T0 + timedelta(minutes=15)))
    assert raised.type == "raised"


def test_engine_a_door_unlocked_again_counts_from_the_first_unlock() -> None:
    """Two staff keys, no lock between: the door has been unlocked since the first."""
    engine, device, binding = engine_with()
    engine.observe(device, binding, _lock_event("u1", T0, "unlocked"), T0)
    later = T0 + timedelta(minutes=8)
    engine.observe(device, binding, _lock_event("u2", later, "unlocked"), later)
    [raised] = _doors(engine.tick(T0 + timedelta(minutes=15)))
    assert raised.type == "raised"


def test_engine_a_locks_backlog_that_stops_short_of_the_deadline_raises_when_quiet() -> None:
    engine, device, binding = engine_with()
    quiet = RuleConfig().backlog_quiet
    now = T0 + timedelta(minutes=19)
    engine.observe(device, binding, _lock_event("u", T0, "unlocked"), now)
    assert _doors(engine.tick(now + quiet - timedelta(seconds=0.1))) == []
    [raised] = _doors(engine.tick(now + quiet))
    assert raised.type == "raised"


def test_engine_a_backlog_holds_a_door_alarm_for_a_bounded_time() -> None:
    """A lock whose clock lags and that keeps sending: the door alarm is not held for
    longer than ``backlog_hold_max`` after the unlock arrived."""
    engine, device, binding = engine_with()
    hold = RuleConfig().backlog_hold_max
    now = T0 + timedelta(minutes=19)
    engine.observe(device, binding, _lock_event("u", T0, "unlocked"), now)
    at, n = now, 0
    while at < now + hold - timedelta(seconds=2):
        at += timedelta(seconds=2)
        n += 1
        beat = Heartbeat(v=1, type="heartbeat", id=f"h{n}", ts=T0 + timedelta(seconds=n))
        engine.observe(device, binding, beat, at)
        assert _doors(engine.tick(at)) == []
    [raised] = _doors(engine.tick(now + hold))
    assert raised.type == "raised"


def test_engine_weight_gain_and_battery_hysteresis() -> None:
    engine, device, binding = engine_with()
    w = [Weight(v=1, type="weight", id=f"w{i}", ts=T0 + timedelta(days=i), kg=kg)
         for i, kg in enumerate([80.0, 80.9, 81.8, 82.4])]  # fmt: skip
    kinds_raised = [e.alarm.kind for m in w for e in engine.observe(device, binding, m, m.ts)
                    if e.type == "raised"]  # fmt: skip
    assert kinds_raised == [AlarmKind.WEIGHT_GAIN]
    hb = lambda n, p: Heartbeat(v=1, type="heartbeat", id=f"h{n}", ts=T0, battery_percent=p)  # noqa: E731
    assert [e.type for e in engine.observe(device, binding, hb(1, 19), T0)] == ["raised"]
    assert engine.observe(device, binding, hb(2, 25), T0) == []  # not clearly recharged
    assert [e.type for e in engine.observe(device, binding, hb(3, 35), T0)] == ["cleared"]


def test_engine_silence_and_last_will() -> None:
    engine, device, binding = engine_with()
    engine.watch([device], lambda _: None, T0)
    bound = RuleConfig().silence.bound(60)
    [raised] = engine.tick(T0 + bound)
    assert raised.alarm.kind is AlarmKind.DEVICE_SILENT
    hb = Heartbeat(v=1, type="heartbeat", id="h", ts=T0 + bound)
    [cleared] = engine.observe(device, binding, hb, T0 + bound + timedelta(seconds=1))
    assert cleared.type == "cleared"
    will = Status(v=1, type="status", state="offline")
    [again] = engine.observe(device, binding, will, T0 + bound + timedelta(seconds=2))
    assert again.type == "occurred" and again.alarm.detail["reason"] == "offline"


def test_engine_a_heartbeat_stamped_before_the_last_will_does_not_clear_it() -> None:
    """Heartbeats and telemetry reach the engine on a session of their own and may lag
    behind the last will; one stamped before the device went offline is no sign of life
    after it. A later stamp, a status or an event is."""
    engine, device, binding = engine_with()
    engine.watch([device], lambda _: None, T0)
    will = Status(v=1, type="status", state="offline")
    [raised] = engine.observe(device, binding, will, T0 + timedelta(seconds=10))
    assert raised.alarm.kind is AlarmKind.DEVICE_SILENT
    late = Heartbeat(v=1, type="heartbeat", id="h1", ts=T0 + timedelta(seconds=9))
    assert engine.observe(device, binding, late, T0 + timedelta(seconds=11)) == []
    ticked = engine.tick(T0 + timedelta(hours=1))  # still reported: not raised again
    assert not [e for e in ticked if e.alarm.kind is AlarmKind.DEVICE_SILENT
                and e.type in ("raised", "occurred", "cleared")]  # fmt: skip
    fresh = Heartbeat(v=1, type="heartbeat", id="h2", ts=T0 + timedelta(seconds=20))
    [cleared] = engine.observe(device, binding, fresh, T0 + timedelta(seconds=21))
    assert cleared.type == "cleared" and cleared.alarm.id == raised.alarm.id
    # a status comes on the same session as the will: in order, so it always counts
    engine.observe(device, binding, will, T0 + timedelta(seconds=30))
    online = Status(v=1, type="status", state="online")
    [back] = engine.observe(device, binding, online, T0 + timedelta(seconds=31))
    assert back.type == "cleared"
