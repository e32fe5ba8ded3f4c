"""Units and shared devices (issue #19.4): binding, resident tags, rows, lock access. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from firmware_contracts.decode import Decoded, decode_payload
from firmware_contracts.messages import DeviceMessage
from firmware_contracts.topics import Channel
from gateway.domain.lock_access import (
    AccessPolicy,
    Reason,
    StaffKey,
    StaffMember,
    UnlockRequest,
    decide,
)
from gateway.domain.registry import (
    Assignment,
    Binding,
    DeviceStatus,
    Refusal,
    Refused,
    bind,
    device_record,
)
from gateway.domain.units import (
    ResidentRefusal,
    ResidentTags,
    ResidentUnknown,
    TagPeriod,
    Unit,
    identify_resident,
    valid_tag,
)
from gateway.worker.ingest import admit
from gateway.worker.rows import COLUMNS, message_row

T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
WARD = uuid4()
ALICE, BOB = uuid4(), uuid4()
TAGS = ResidentTags([
    ("kommun-a", "TAG-A", TagPeriod(ALICE, T0, T0 + timedelta(days=10))),
    ("kommun-a", "TAG-A", TagPeriod(BOB, T0 + timedelta(days=10), None)),  # re-issued
    ("kommun-b", "TAG-A", TagPeriod(ALICE, T0, None)),  # another tenant's tag of that name
])  # fmt: skip


def shared(device_type: str = "scale", *extra: Assignment):
    return device_record(
        "shared-1", "kommun-a", DeviceStatus.ACTIVE, device_type, 300,
        [*extra, Assignment(None, T0, None, unit_id=WARD)],
    )  # fmt: skip


def message(channel: Channel, **fields: object) -> DeviceMessage:
    raw = {"v": 1, "id": f"m-{uuid4().hex[:8]}", "ts": (NOW - timedelta(hours=1)).isoformat()}
    import orjson

    decoded = decode_payload(channel, orjson.dumps({**raw, **fields}), now=NOW)
    assert isinstance(decoded, Decoded), decoded
    return decoded.message


def test_a_unit_assignment_keeps_the_history_shape_and_binds_to_the_unit() -> None:
    device = shared()
    assert device.holder is None and device.history[0].unit_id == WARD
    assert device.unit_at(NOW) == WARD and device.holder_at(NOW) is None
    assert bind(device, NOW, needs_person=False) == Binding("kommun-a", None, WARD)
    assert bind(device, NOW, needs_person=True) == Binding("kommun-a", None, WARD)
    # stamped before the unit had it: health to no one, personal data refused
    early = T0 - timedelta(days=1)
    assert bind(device, early, needs_person=False) == Binding("kommun-a", None)
    refused = bind(device, early, needs_person=True)
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT
    # a person's device stays in the common shape, no unit
    own = device_record("d-2", "kommun-a", DeviceStatus.ACTIVE, "scale", 300,
                        [Assignment(ALICE, T0, None)])  # fmt: skip
    assert own.holder == ALICE and own.unit_at(NOW) is None
    assert bind(own, NOW, needs_person=True) == Binding("kommun-a", ALICE)


def test_a_device_handed_from_a_person_to_a_unit() -> None:
    device = device_record(
        "shared-1", "kommun-a", DeviceStatus.ACTIVE, "scale", 300,
        [Assignment(ALICE, T0 - timedelta(days=5), T0), Assignment(None, T0, None, unit_id=WARD)],
    )  # fmt: skip
    refused = bind(device, T0 - timedelta(days=1), needs_person=True)
    assert isinstance(refused, Refused) and f"person {ALICE} held" in refused.detail
    assert device.binding_at(T0 - timedelta(days=1)) == Binding("kommun-a", ALICE, None)
    assert device.binding_at(NOW) == Binding("kommun-a", None, WARD)


def test_resident_tags_over_time_and_per_tenant() -> None:
    assert TAGS.person_at("kommun-a", "TAG-A", T0) == ALICE
    assert TAGS.person_at("kommun-a", "TAG-A", T0 + timedelta(days=10)) == BOB
    assert TAGS.person_at("kommun-a", "TAG-A", T0 - timedelta(seconds=1)) is None
    assert TAGS.person_at("kommun-b", "TAG-A", NOW) == ALICE
    assert TAGS.person_at("kommun-c", "TAG-A", NOW) is None
    assert valid_tag("04A2B3C4") and not valid_tag("") and not valid_tag("a b")


@pytest.mark.parametrize(
    ("kind", "tag", "expected"),
    [
        ("weight", "TAG-A", BOB),
        ("weight", None, ResidentRefusal.NO_RESIDENT_IDENTIFIED),
        ("weight", "TAG-X", ResidentRefusal.UNKNOWN_RESIDENT_TAG),
        ("position", None, ResidentRefusal.NO_RESIDENT_IDENTIFIED),
        ("blood_pressure", "TAG-X", ResidentRefusal.UNKNOWN_RESIDENT_TAG),
        ("alarm", None, None),  # the unit's alarm: never held back
        ("alarm", "TAG-X", None),
        ("alarm", "TAG-A", BOB),
        ("lock", None, None),
        ("heartbeat", None, None),
    ],
)
def test_identify_resident(kind: str, tag: str | None, expected: object) -> None:
    found = identify_resident(TAGS, "kommun-a", kind, tag, NOW)
    if isinstance(expected, ResidentRefusal):
        assert isinstance(found, ResidentUnknown) and found.reason is expected
    else:
        assert found == expected


def test_admit_a_unit_devices_messages() -> None:
    device = shared()
    tags = lambda: TAGS  # noqa: E731
    weight = message(Channel.TELEMETRY, type="weight", kg=71.5, resident_tag="TAG-A")
    assert admit(device, weight, weight.ts, residents=tags) == Binding("kommun-a", BOB, WARD)
    untagged = message(Channel.TELEMETRY, type="weight", kg=71.5)
    refused = admit(device, untagged, untagged.ts, residents=tags)
    assert isinstance(refused, Refused) and refused.reason is Refusal.NO_RESIDENT_IDENTIFIED
    assert refused.tenant_id == "kommun-a"
    unknown = message(Channel.TELEMETRY, type="weight", kg=71.5, resident_tag="TAG-X")
    refused = admit(device, unknown, unknown.ts, residents=tags)
    assert isinstance(refused, Refused) and refused.reason is Refusal.UNKNOWN_RESIDENT_TAG
    beat = message(Channel.HEARTBEAT, type="heartbeat", battery_percent=80)
    assert admit(device, beat, beat.ts, residents=tags) == Binding("kommun-a", None, WARD)
    lock = shared("door_lock")
    event = message(Channel.EVENTS, type="lock", action="unlocked", method="app", key_id="k1")
    assert admit(lock, event, event.ts, residents=tags) == Binding("kommun-a", None, WARD)
    tamper = message(Channel.EVENTS, type="alarm", kind="tamper")
    assert admit(lock, tamper, tamper.ts, residents=tags) == Binding("kommun-a", None, WARD)


def test_a_person_device_ignores_a_resident_tag() -> None:
    own = device_record("d-2", "kommun-a", DeviceStatus.ACTIVE, "scale", 300,
                        [Assignment(ALICE, T0, None)])  # fmt: skip
    weight = message(Channel.TELEMETRY, type="weight", kg=71.5, resident_tag="TAG-A")
    assert admit(own, weight, weight.ts, residents=lambda: TAGS) == Binding("kommun-a", ALICE)


def test_rows_carry_the_unit_last() -> None:
    weight = message(Channel.TELEMETRY, type="weight", kg=71.5, resident_tag="TAG-A")
    row = message_row(weight, "shared-1", Binding("kommun-a", BOB, WARD), NOW)
    assert COLUMNS[row.table][-1] == "unit_id" and row.values[-1] == WARD
    assert row.values[1] == BOB
    lock = message(Channel.EVENTS, type="lock", action="locked", method="manual")
    row = message_row(lock, "lock-1", Binding("kommun-a", None, WARD), NOW)
    assert row.values[1] is None and row.values[-1] == WARD
    for table, columns in COLUMNS.items():
        if table != "quarantine":
            assert columns[-1] == "unit_id"
    own = message_row(weight, "d-2", Binding("kommun-a", ALICE), NOW)
    assert own.values[-1] is None and len(own.values) == len(COLUMNS["readings"])


ANNA = UUID("00000000-0000-0000-0000-00000000005a")
STAFF = StaffMember(ANNA, "kommun-a", "anna")
KEY = StaffKey("key-anna", ANNA, "kommun-a", T0 - timedelta(days=30))
UNIT_DOOR = UnlockRequest(key_id="key-anna", lock_tenant="kommun-a", person_id=None, at=NOW,
                          key=KEY, staff=STAFF, unit_id=WARD)  # fmt: skip


def test_a_units_door_opens_to_a_valid_staff_key_without_a_visit() -> None:
    policy = AccessPolicy()
    decision = decide(UNIT_DOOR, policy)
    assert decision.allowed and decision.reason is Reason.UNIT_DOOR and decision.staff_id == ANNA
    # the key checks still come first
    for changes, reason in [
        ({"key": None}, Reason.KEY_UNKNOWN),
        ({"key": replace(KEY, tenant_id="kommun-b")}, Reason.KEY_OTHER_TENANT),
        ({"key": replace(KEY, revoked_at=NOW)}, Reason.KEY_REVOKED),
        ({"staff": replace(STAFF, active=False)}, Reason.STAFF_INACTIVE),
        ({"key_id": None, "key": None}, Reason.KEY_MISSING),
    ]:
        refused = decide(replace(UNIT_DOOR, **changes), policy)
        assert not refused.allowed and refused.reason is reason
    # no unit and no person: as before
    assert decide(replace(UNIT_DOOR, unit_id=None), policy).reason is Reason.NO_PERSON


def test_a_unit_names_itself() -> None:
    unit = Unit(WARD, "kommun-a", "Solgläntan avd 2", "ward")
    assert unit.named() == {"id": str(WARD), "name": "Solgläntan avd 2", "kind": "ward"}


# --- the bulk import (#19.5) of units, unit assignments and resident tags -------------------


def _imported(doc: dict[str, object], stored: object = None):  # type: ignore[no-untyped-def]
    import json

    from gateway.domain import onboarding as ob

    parsed = ob.parse(json.dumps(doc).encode(), ob.Format.JSON, pins=None)
    return parsed, ob.plan(parsed, stored or ob.Stored(), may_add_models=False)


def test_an_import_file_creates_units_unit_assignments_and_tags() -> None:
    from gateway.domain import onboarding as ob

    parsed, p = _imported(
        {
            "units": [{"name": "Eken avd 1", "unit_kind": "ward"}],
            "persons": [{"ref": "EK-1"}],
            "devices": [{"id": "ek-scale", "model_id": "t-scale"}],
            "assignments": [{"device_id": "ek-scale", "unit_name": "Eken avd 1"}],
            "resident_tags": [{"tag": "04A2B3", "person_ref": "EK-1"}],
        },
        ob.Stored(models={"t-scale": ob.StoredModel("t-scale", "A", "S", "scale", 300)}),
    )
    assert parsed.errors == [] and p.errors == []
    assert [u.name for u in p.units] == ["Eken avd 1"]
    assert [(a.device_id, a.unit_name, a.person_ref) for a in p.assignments] == [
        ("ek-scale", "Eken avd 1", None)
    ]
    assert [(t.tag, t.person_ref) for t in p.tags] == [("04A2B3", "EK-1")]


def test_an_import_refuses_what_contradicts_units_and_tags() -> None:
    from gateway.domain import onboarding as ob

    ward, alice = uuid4(), uuid4()
    stored = ob.Stored(
        units={"Eken avd 1": ob.StoredUnit(ward, "ward")},
        persons={"EK-1": ob.StoredPerson(alice, "", None), "EK-2": ob.StoredPerson(BOB, "", None)},
        devices={"ek-scale": ob.StoredDevice("t-scale", None, "active")},
        open={"ek-scale": ob.Holding(None, T0, ward)},
        tags={"04A2B3": ob.TagHolding(alice, T0)},
    )  # fmt: skip
    parsed, p = _imported(
        {
            "units": [{"name": "Eken avd 1", "unit_kind": "residential_unit"}],
            "assignments": [{"device_id": "ek-scale", "person_ref": "EK-2"}],
            "resident_tags": [{"tag": "04A2B3", "person_ref": "EK-2"}],
        },
        stored,
    )
    assert {(e.row, e.column) for e in p.errors} == {
        ("units[0]", "unit_kind"),
        ("assignments[0]", "person_ref"),
        ("resident_tags[0]", "tag"),
    }
    # the same again is unchanged
    parsed, p = _imported(
        {
            "units": [{"name": "Eken avd 1", "unit_kind": "ward"}],
            "assignments": [{"device_id": "ek-scale", "unit_name": "Eken avd 1"}],
            "resident_tags": [{"tag": "04A2B3", "person_ref": "EK-1"}],
        },
        stored,
    )
    assert p.errors == [] and set(p.actions.values()) == {ob.Action.UNCHANGED}
    # a person or a unit, never both (nor neither); a tag as the contract allows it
    parsed, _ = _imported(
        {
            "assignments": [
                {"device_id": "ek-scale", "unit_name": "Eken avd 1", "person_ref": "EK-1"},
                {"device_id": "ek-scale-2"},
            ],
            "resident_tags": [{"tag": "a b", "person_ref": "EK-1"}],
        }
    )
    assert {e.row for e in parsed.errors} == {"assignments[0]", "assignments[1]",
                                               "resident_tags[0]"}  # fmt: skip


def test_the_documented_ward_import_is_read_without_errors() -> None:
    import re
    from pathlib import Path

    from gateway.domain import onboarding as ob

    text = (Path(__file__).parents[2] / "docs" / "onboarding.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```json ward\n(.*?)```", text, re.DOTALL)
    parsed = ob.parse(block.encode(), ob.Format.JSON, pins=None)
    assert parsed.errors == []
    assert {r.kind for r in parsed.rows} == {
        ob.Kind.UNIT,
        ob.Kind.PERSON,
        ob.Kind.DEVICE,
        ob.Kind.ASSIGNMENT,
        ob.Kind.RESIDENT_TAG,
    }


def test_the_engine_names_the_unit_in_its_devices_alarms() -> None:
    from firmware_contracts.messages import Alarm as AlarmMessage
    from firmware_contracts.messages import Lock
    from gateway.domain.alarms import AlarmBook
    from gateway.worker.alarms.engine import AlarmEngine, RuleConfig

    lock = shared("door_lock")
    ward = Unit(WARD, "kommun-a", "Eken avd 1", "ward")
    engine = AlarmEngine(
        AlarmBook(), RuleConfig(door_unlocked_after=timedelta(minutes=15)),
        person=lambda _: None, device=lambda _: lock, unit=lambda u: ward if u == WARD else None,
    )  # fmt: skip
    at = NOW - timedelta(minutes=1)
    binding = Binding("kommun-a", None, WARD)
    tamper = AlarmMessage(v=1, type="alarm", id="a-1", ts=at, kind="tamper")
    [raised] = engine.observe(lock, binding, tamper, NOW)
    assert raised.alarm.person_id is None and raised.alarm.detail["unit"] == ward.named()
    # a door left unlocked: raised by time, still the unit's
    opened = Lock(v=1, type="lock", id="l-1", ts=at, action="unlocked", method="manual")
    assert engine.observe(lock, binding, opened, NOW) == []
    due = engine.tick(at + timedelta(minutes=16))
    [door] = [e for e in due if e.alarm.kind.value == "door_unlocked"]
    assert door.alarm.detail["unit"] == ward.named()
    # the silence of the unit's device names it too (binding_at)
    silent = engine.tick(NOW + timedelta(days=1))
    assert any(
        e.alarm.kind.value == "device_silent" and e.alarm.detail.get("unit") == ward.named()
        for e in silent
    )
