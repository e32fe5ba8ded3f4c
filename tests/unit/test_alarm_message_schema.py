"""The alarm message's JSON Schema (firmware_contracts.alarm_message) against the gateway's
encoder: every event type the alarm book produces validates, wrong messages do not, and
the schema's vocabularies and fields cannot drift from the gateway's enums and encoder.

Pure: the alarm book and the codec, no broker, no database."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema
import orjson
import pytest

from firmware_contracts.alarm_message import (
    ALARM_MESSAGE_FILE,
    KIND_DESCRIPTIONS,
    OPTIONAL_FIELDS,
    AlarmCondition,
    AlarmEventType,
    AlarmMessageKind,
    AlarmSeverity,
    AlarmState,
    alarm_message_schema,
)
from firmware_contracts.messages import AlarmKind as DeviceAlarmKind
from firmware_contracts.schema import export, export_all
from gateway.domain import alarms as domain
from gateway.domain.alarms import AlarmBook, AlarmEvent, AlarmKind, EscalationPolicy, Position
from gateway.worker.alarms import codec

T0 = datetime(2025, 6, 1, 22, 15, 2, tzinfo=UTC)
PERSON = uuid4()


def validator() -> jsonschema.Draft202012Validator:
    schema = alarm_message_schema()
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def errors(message: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(message)]


def published(event: AlarmEvent, recipients: tuple[str, ...] = ("night_team",)) -> Any:
    """The message as it goes on the wire (bytes through JSON)."""
    return orjson.loads(codec.encode(event, recipients))


def lifecycle() -> list[AlarmEvent]:
    """Every event type, from event alarms and condition alarms of several kinds."""
    book = AlarmBook()
    events: list[AlarmEvent] = []
    press = book.signal(
        tenant_id="kommun-a", kind=AlarmKind.BUTTON, device_id="gps-1", person_id=PERSON,
        person_ref="kommun-a-brukare-1", at=T0, condition=False,
        position=Position(59.86, 17.64, 9.0), detail={"message_id": "press-1"},
    )  # fmt: skip
    events += press
    alarm_id = press[0].alarm_id
    events += book.signal(
        tenant_id="kommun-a", kind=AlarmKind.BUTTON, device_id="gps-1", person_id=PERSON,
        person_ref="kommun-a-brukare-1", at=T0 + timedelta(seconds=20), condition=False,
        position=Position(59.86, 17.64), detail={"message_id": "press-2"},
    )  # fmt: skip
    events += book.escalate_due(T0 + timedelta(minutes=2), EscalationPolicy())
    events += book.acknowledge(alarm_id, "nattpatrull-1", T0 + timedelta(minutes=3))
    events += book.resolve(alarm_id, "nattpatrull-1", T0 + timedelta(minutes=9), "Visited")
    # a device-time offset other than UTC, as a device may stamp it
    cest = timezone(timedelta(hours=2))
    battery = book.signal(
        tenant_id="kommun-a", kind=AlarmKind.BATTERY_LOW, device_id="scale-1", person_id=None,
        person_ref=None, at=T0.astimezone(cest), condition=True, detail={"percent": 9},
    )  # fmt: skip
    events += battery
    events += book.clear(
        tenant_id="kommun-a", kind=AlarmKind.BATTERY_LOW, device_id="scale-1", person_id=None,
        at=T0 + timedelta(hours=1), detail={"percent": 80},
    )  # fmt: skip
    events += book.signal(
        tenant_id="kommun-a", kind=AlarmKind.BATTERY_LOW, device_id="scale-1", person_id=None,
        person_ref=None, at=T0 + timedelta(hours=2), condition=True, detail={"percent": 8},
    )  # fmt: skip
    # resolving an unacknowledged alarm: acknowledged and resolved by the same person
    events += book.resolve(battery[0].alarm_id, "tekniker-1", T0 + timedelta(hours=3),
                           "Battery changed")  # fmt: skip
    events += book.signal(
        tenant_id="kommun-a", kind=AlarmKind.RECEIVER_UNREACHABLE, device_id="webhook:arc",
        person_id=None, person_ref=None, at=T0, condition=True,
        detail={"receiver": "arc", "failing_since": T0.isoformat()},
    )  # fmt: skip
    for kind in (AlarmKind.FALL, AlarmKind.TAMPER, AlarmKind.UNAUTHORISED_UNLOCK,
                 AlarmKind.SUPERVISION_NOT_OK, AlarmKind.SUPERVISION_FAILED,
                 AlarmKind.DOOR_OPENED_AT_NIGHT, AlarmKind.FLOOR_MAT):  # fmt: skip
        events += book.signal(
            tenant_id="kommun-a", kind=kind, device_id="lock-1", person_id=PERSON,
            person_ref="kommun-a-brukare-1", at=T0, condition=False,
        )  # fmt: skip
    for kind in (AlarmKind.DEVICE_SILENT, AlarmKind.GEOFENCE_EXIT, AlarmKind.BLOOD_PRESSURE,
                 AlarmKind.WEIGHT_GAIN, AlarmKind.DOOR_UNLOCKED, AlarmKind.OUT_OF_BED,
                 AlarmKind.NO_MOVEMENT):  # fmt: skip
        events += book.signal(
            tenant_id="kommun-b", kind=kind, device_id="se.vendor.dev-19", person_id=PERSON,
            person_ref=None, at=T0, condition=True, detail={"reason": "no_message"},
        )  # fmt: skip
    return events


EVENTS = lifecycle()


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = alarm_message_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_lifecycle_covers_every_event_type_and_kind() -> None:
    assert {e.type for e in EVENTS} == set(AlarmEventType)
    assert {e.alarm.kind.value for e in EVENTS} == set(AlarmMessageKind)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.alarm.kind.value}-{e.type}")
def test_every_encoded_event_validates(event: AlarmEvent) -> None:
    assert errors(published(event)) == []


def test_without_recipients_it_validates() -> None:
    assert errors(published(EVENTS[0], ())) == []


def good() -> dict[str, Any]:
    return dict(published(EVENTS[0]))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"kind": "burglary"}, id="unknown-kind"),
        pytest.param({"kind": "Button"}, id="kind-case"),
        pytest.param({"event": "deleted"}, id="unknown-event"),
        pytest.param({"severity": "urgent"}, id="unknown-severity"),
        pytest.param({"state": "closed"}, id="unknown-state"),
        pytest.param({"condition": "maybe"}, id="unknown-condition"),
        pytest.param({"v": 2}, id="v-2"),
        pytest.param({"type": "alert"}, id="type"),
        pytest.param({"seq": "1"}, id="seq-string"),
        pytest.param({"seq": 0}, id="seq-zero"),
        pytest.param({"alarm_id": "not-a-uuid"}, id="alarm-id"),
        pytest.param({"event_id": str(uuid4()).upper()}, id="event-id-upper-case"),
        pytest.param({"at": "2025-06-01T22:15:02"}, id="at-without-offset"),
        pytest.param({"at": 1748816102}, id="at-number"),
        pytest.param({"raised_at": "yesterday"}, id="raised-at"),
        pytest.param({"tenant_id": "Kommun A"}, id="tenant-id"),
        pytest.param({"device_id": "gps/1"}, id="device-id"),
        pytest.param({"position": {"lat": 91, "lon": 0, "accuracy_m": None}}, id="lat-range"),
        pytest.param({"position": {"lat": 59.0, "lon": 17.0}}, id="position-no-accuracy"),
        pytest.param({"recipients": "night_team"}, id="recipients-string"),
        pytest.param({"detail": []}, id="detail-array"),
        pytest.param({"extra": 1}, id="unknown-field"),
        # the lifecycle
        pytest.param({"state": "acknowledged"}, id="raised-event-acknowledged-state"),
        pytest.param({"seq": 2, "version": 2}, id="raised-event-seq-2"),
        pytest.param({"actor": "someone"}, id="raised-event-with-actor"),
        pytest.param({"event": "acknowledged", "actor": "op-1"}, id="ack-event-raised-state"),
        pytest.param({"acknowledged_by": "op-1"}, id="raised-state-acknowledged-by"),
    ],
)
def test_a_wrong_message_is_refused(change: dict[str, Any]) -> None:
    assert errors({**good(), **change})


@pytest.mark.parametrize("field", alarm_message_schema()["required"])
def test_a_missing_field_is_refused(field: str) -> None:
    message = good()
    del message[field]
    assert errors(message), field


def test_an_acknowledged_or_resolved_alarm_names_who_and_when() -> None:
    ack = next(published(e) for e in EVENTS if e.type == "acknowledged")
    resolved = next(published(e) for e in EVENTS if e.type == "resolved")
    for message, field in [(ack, "acknowledged_by"), (ack, "acknowledged_at"),
                           (resolved, "resolved_at"), (resolved, "outcome")]:  # fmt: skip
        assert errors({**message, field: None}), field


def test_receiver_unreachable_names_the_webhook_not_a_device() -> None:
    message = next(published(e) for e in EVENTS if e.alarm.kind is AlarmKind.RECEIVER_UNREACHABLE)
    assert message["device_id"] == "webhook:arc"
    assert errors({**message, "device_id": "gps-1"})
    assert errors({**good(), "device_id": "webhook:arc"})


# --- no drift: vocabularies and fields are the gateway's ----------------------------------


def test_vocabularies_equal_the_gateways_enums() -> None:
    assert [k.value for k in AlarmMessageKind] == [k.value for k in domain.AlarmKind]
    assert [s.value for s in AlarmSeverity] == [s.value for s in domain.Severity]
    assert [s.value for s in AlarmState] == [s.value for s in domain.AlarmState]
    assert [t.value for t in AlarmEventType] == list(typing.get_args(domain.EventType))
    assert set(KIND_DESCRIPTIONS) == set(AlarmMessageKind)
    written = {published(e)["condition"] for e in EVENTS}
    assert written == {c.value for c in AlarmCondition} | {None}
    # a device's own alarm kinds (device contract ``alarm``) come first, as the engine
    # maps them one to one (AlarmKind(message.kind.value))
    device = [k.value for k in DeviceAlarmKind]
    assert [k.value for k in AlarmMessageKind][: len(device)] == device


def test_the_schemas_fields_are_exactly_what_the_encoder_writes() -> None:
    schema = alarm_message_schema()
    for event in EVENTS:
        keys = list(codec.event_to_dict(event, ("g",)))
        assert sorted(keys) == sorted(set(schema["properties"]) - OPTIONAL_FIELDS), event.type
    assert sorted(schema["required"]) == sorted(set(schema["properties"]) - OPTIONAL_FIELDS)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Position"]["additionalProperties"] is False


def test_the_decoder_reads_back_what_validates() -> None:
    for event in EVENTS:
        again = codec.event_from_dict(published(event))
        assert again.id == event.id and again.seq == event.seq
        assert again.alarm.version == event.alarm.version == event.seq


# --- export ---------------------------------------------------------------------------


def test_export_all_writes_the_alarm_message_beside_the_channels(tmp_path: Path) -> None:
    written = export_all(tmp_path)
    channel_files = [p.name for p in export(tmp_path / "channels")]
    assert [p.name for p in written] == [*channel_files, ALARM_MESSAGE_FILE]
    schema = json.loads((tmp_path / ALARM_MESSAGE_FILE).read_text())
    assert schema == json.loads(json.dumps(alarm_message_schema()))
    assert [p.read_text() for p in export_all(tmp_path)] == [p.read_text() for p in written]


def test_the_cli_exports_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.entrypoints.cli import main

    assert main(["contract", "export", str(tmp_path)]) == 0
    assert str(tmp_path / ALARM_MESSAGE_FILE) in capsys.readouterr().out.splitlines()
    schema = json.loads((tmp_path / ALARM_MESSAGE_FILE).read_text())
    assert errors(good()) == [] and jsonschema.Draft202012Validator(schema).is_valid(good())


# --- the documentation ---------------------------------------------------------------------


def _alarm_messages_section() -> str:
    text = (Path(__file__).parents[2] / "docs" / "contract.md").read_text()
    return text.split("\n## Alarm messages\n", 1)[1].split("\n## ", 1)[0]


def test_the_documented_example_validates() -> None:
    section = _alarm_messages_section()
    examples = [block.split("```", 1)[0] for block in section.split("```json\n")[1:]]
    assert examples
    for example in examples:
        assert errors(json.loads(example)) == []


def test_the_documented_vocabularies_are_the_schemas() -> None:
    section = _alarm_messages_section()
    for vocabulary in (AlarmEventType, AlarmMessageKind, AlarmSeverity, AlarmState):
        for member in vocabulary:
            assert f"`{member.value}`" in section, member
    for field in alarm_message_schema()["properties"]:
        assert f"`{field}`" in section, field
    assert f"**`{ALARM_MESSAGE_FILE}`**" in section
