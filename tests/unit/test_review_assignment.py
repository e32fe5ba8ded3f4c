"""Security review #17.2, the pure parts: which message types a device type may send,
the judgement both paths share (gateway.worker.ingest.admit), the alarm engine's intake binding
alarms to the current holder only, and the age bound on dispatching device alarms.
The attack end to end is tests/integration/test_review_assignment.py."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest

from firmware_contracts.decode import Reason
from firmware_contracts.device_types import ALARM_KINDS, MESSAGE_TYPES, wrong_device_type
from firmware_contracts.messages import Alarm as AlarmMessage
from firmware_contracts.messages import (
    AlarmKind,
    Battery,
    BatteryLow,
    BloodPressure,
    Heartbeat,
    Lock,
    Position,
    Reply,
    Status,
    Weight,
)
from gateway.config.settings import AlarmSettings
from gateway.domain.alarms import AlarmBook
from gateway.domain.registry import (
    Assignment,
    Binding,
    DeviceRecord,
    DeviceStatus,
    Refusal,
    Refused,
    device_record,
)
from gateway.worker.alarms.engine import AlarmEngine, PersonRules, RuleConfig
from gateway.worker.alarms.intake import AlarmIntake
from gateway.worker.alarms.service import rule_config
from gateway.worker.consumer import AckToken, Inbound
from gateway.worker.ingest import admit
from gateway.worker.payload_decoder import PayloadDecoder

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
P, Q = uuid4(), uuid4()
ENVELOPE: dict[str, Any] = {"v": 1, "id": "m-1", "ts": NOW}

MESSAGES: dict[str, Any] = {
    "weight": Weight(**ENVELOPE, type="weight", kg=80.0),
    "blood_pressure": BloodPressure(
        **ENVELOPE, type="blood_pressure", systolic_mmhg=120, diastolic_mmhg=80
    ),
    "position": Position(**ENVELOPE, type="position", lat=59.6, lon=16.5, accuracy_m=8.0),
    "lock": Lock(**ENVELOPE, type="lock", action="locked", method="manual"),
    "heartbeat": Heartbeat(**ENVELOPE, type="heartbeat"),
    "status": Status(v=1, type="status", state="online"),
    "battery": Battery(**ENVELOPE, type="battery", percent=50),
    "battery_low": BatteryLow(**ENVELOPE, type="battery_low", percent=9),
    "reply": Reply(**ENVELOPE, type="reply", command_id="c-1", ok=True),
}
HEALTH = ("heartbeat", "status", "battery", "battery_low", "reply")


def alarm(kind: str, ts: datetime = NOW, msg_id: str = "a-1") -> AlarmMessage:
    return AlarmMessage(v=1, type="alarm", id=msg_id, ts=ts, kind=AlarmKind(kind))


def reissued(device_type: str, device_id: str = "d-1", now: datetime = NOW) -> DeviceRecord:
    """Held by P for a month, returned and handed to Q an hour before ``now``."""
    handed_over = now - timedelta(hours=1)
    return device_record(device_id, "kommun-a", DeviceStatus.ACTIVE, device_type, 300,
                         [Assignment(P, now - timedelta(days=30), handed_over),
                          Assignment(Q, handed_over, None)])  # fmt: skip


# --- which types a device type sends ---------------------------------------------------


@pytest.mark.parametrize(
    ("device_type", "personal"),
    [("scale", {"weight"}), ("blood_pressure_monitor", {"blood_pressure"}),
     ("gps_alarm", {"position"}), ("door_lock", {"lock"})],
)  # fmt: skip
def test_each_device_type_sends_its_own_data_and_its_health(
    device_type: str, personal: set[str]
) -> None:
    for name, message in MESSAGES.items():
        refused = wrong_device_type(device_type, message)
        if name in personal or name in HEALTH:
            assert refused is None, (device_type, name)
        else:
            assert refused is not None and repr(name) in refused, (device_type, name)


def test_alarms_only_of_the_kinds_a_device_type_raises() -> None:
    """A scale or a blood-pressure monitor raises no alarm at all (the attack's button
    press); a door lock only tamper; a GPS alarm every kind."""
    for kind in AlarmKind:
        assert wrong_device_type("gps_alarm", alarm(kind.value)) is None
        for silent in ("scale", "blood_pressure_monitor"):
            assert wrong_device_type(silent, alarm(kind.value)) is not None
        lock_refused = wrong_device_type("door_lock", alarm(kind.value))
        assert (lock_refused is None) == (kind is AlarmKind.TAMPER)
    assert wrong_device_type("scale", alarm("button")) == "a scale does not send 'alarm' messages"
    # a type the contract does not know sends its health only
    assert wrong_device_type("toaster", MESSAGES["heartbeat"]) is None
    assert wrong_device_type("toaster", MESSAGES["weight"]) is not None


def test_the_data_names_only_device_types_and_kinds_the_contract_has() -> None:
    from firmware_contracts.decode import ALL_TYPES

    every_type = {t for types in MESSAGE_TYPES.values() for t in types}
    assert every_type <= set(ALL_TYPES) - {"command"}
    assert set(ALARM_KINDS) <= {t for t, types in MESSAGE_TYPES.items() if "alarm" in types}
    assert {k for kinds in ALARM_KINDS.values() for k in kinds} <= {k.value for k in AlarmKind}
    registry_sql = (ROOT / "gateway/adapters/postgres/migrations/0001_registry.sql").read_text()
    # the passive sensors' types (issue #20) were added to the check by migration 0023
    sensors_sql = (ROOT / "gateway/adapters/postgres/migrations/0023_supervision.sql").read_text()
    for device_type in MESSAGE_TYPES:
        assert f"'{device_type}'" in registry_sql or f"'{device_type}'" in sensors_sql


def test_every_quarantine_reason_is_in_the_contracts_table() -> None:
    """The reasons are also the metric's label values (wg_ingest_quarantined{reason})."""
    text = (ROOT / "docs" / "contract.md").read_text()
    section = text[text.index("## 6. Quarantine reason codes") : text.index("## 7.")]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    gateway_reasons = {r.value for r in Refusal} | {"unknown_topic", "older_than_retention",
                                                    "rate_limited"}  # fmt: skip
    assert listed == {r.value for r in Reason} | gateway_reasons


# --- the judgement both paths share ------------------------------------------------------


def test_admit_refuses_the_wrong_device_type_before_anything_else() -> None:
    """The attack's scale pressing a button two days back: wrong_device_type, not a
    before_current_assignment a tenant admin could release."""
    r = admit(reissued("scale"), alarm("button", NOW - timedelta(days=2)), NOW - timedelta(days=2))
    assert isinstance(r, Refused) and r.reason is Refusal.WRONG_DEVICE_TYPE
    assert r.tenant_id == "kommun-a"


def test_admit_binds_personal_data_to_the_current_holder_only() -> None:
    scale = reissued("scale")
    old = Weight(v=1, type="weight", id="w-old", ts=NOW - timedelta(days=2), kg=91.0)
    r = admit(scale, old, old.ts)
    assert isinstance(r, Refused) and r.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    assert r.detail.startswith("weight stamped ") and f"person {P} held the device then" in r.detail
    new = Weight(v=1, type="weight", id="w-new", ts=NOW, kg=60.0)
    assert admit(scale, new, new.ts) == Binding("kommun-a", Q)
    hb = Heartbeat(v=1, type="heartbeat", id="h", ts=NOW - timedelta(days=2))
    assert admit(scale, hb, hb.ts) == Binding("kommun-a", None)  # device data: kept


# --- the alarm engine's intake ------------------------------------------------------------


class FakeEngine:
    def __init__(self) -> None:
        self.observed: list[tuple[DeviceRecord, Binding, Any]] = []
        self.dispatched = 0

    def observe(self, device: DeviceRecord, binding: Binding, message: Any, at: datetime) -> None:
        self.observed.append((device, binding, message))

    def after_sent(self, callback: Any) -> None:
        callback()


def inbound(topic: str, message: Any) -> Inbound:
    body = orjson.dumps(message.model_dump(mode="json", exclude_none=True))
    return Inbound(topic, body, 1, False, datetime.now(UTC), AckToken(1, 1, 1))


async def test_the_engine_never_sees_an_alarm_of_an_earlier_holder_or_the_wrong_type() -> None:
    now = datetime.now(UTC)  # the intake judges by its receive time: the wall clock
    devices = {"gps-1": reissued("gps_alarm", "gps-1", now),
               "scale-1": reissued("scale", "scale-1", now)}  # fmt: skip
    engine = FakeEngine()
    acked: list[Sequence[AckToken]] = []
    skew = timedelta(minutes=5)
    intake = AlarmIntake(resolve=devices.get, engine=engine, ack=acked.append,
                         decode=PayloadDecoder(max_bytes=16384, max_skew=skew),
                         max_clock_skew=skew)  # fmt: skip
    await intake.handle(inbound("devices/gps-1/events", alarm("button", now - timedelta(days=2))))
    await intake.handle(inbound("devices/scale-1/events", alarm("button", now, "s-1")))
    await intake.handle(inbound("devices/gps-1/events", alarm("button", now, "fresh")))
    assert [(d.device_id, b, m.id) for d, b, m in engine.observed] == [
        ("gps-1", Binding("kommun-a", Q), "fresh")
    ]
    assert len(acked) == 3  # every message acknowledged all the same


# --- the age bound --------------------------------------------------------------------------


def engine_and_device() -> tuple[AlarmEngine, DeviceRecord]:
    device = device_record("gps-1", "kommun-a", DeviceStatus.ACTIVE, "gps_alarm", 60,
                           [Assignment(Q, NOW - timedelta(days=1), None)])  # fmt: skip
    engine = AlarmEngine(AlarmBook(), rule_config(AlarmSettings()),
                         person=lambda _p: PersonRules(Q, "Brukare Q"),
                         device=lambda _d: device)  # fmt: skip
    return engine, device


def test_a_device_alarm_older_than_the_bound_is_not_dispatched() -> None:
    """Default 600 s (alarms.max_alarm_age_s): a replay after an outage is history."""
    assert rule_config(AlarmSettings()).max_alarm_age == timedelta(seconds=600)
    assert RuleConfig().max_alarm_age == timedelta(minutes=10)
    engine, device = engine_and_device()
    binding = Binding("kommun-a", Q)
    for kind in AlarmKind:
        stale = alarm(kind.value, NOW - timedelta(seconds=601), f"old-{kind.value}")
        assert engine.observe(device, binding, stale, NOW) == []
    at_bound = alarm("button", NOW - timedelta(seconds=600), "at-bound")
    [raised] = engine.observe(device, binding, at_bound, NOW)
    assert raised.type == "raised" and raised.alarm.person_id == Q
    assert raised.alarm.person_ref == "Brukare Q"


def test_the_bound_is_a_setting() -> None:
    settings = AlarmSettings(max_alarm_age_s=30)
    assert rule_config(settings).max_alarm_age == timedelta(seconds=30)
    engine = AlarmEngine(AlarmBook(), rule_config(settings), person=lambda _p: None,
                         device=lambda _d: None)  # fmt: skip
    device = engine_and_device()[1]
    assert engine.observe(device, Binding("kommun-a", Q),
                          alarm("fall", NOW - timedelta(seconds=31)), NOW) == []  # fmt: skip
    with pytest.raises(ValueError, match="greater than 0"):
        AlarmSettings(max_alarm_age_s=0)
