"""Bulk onboarding's reading and planning (issue #19.5), pure: every error names its row
and its column, CSV and JSON alike; a row equal to the registry is unchanged, one that
contradicts it is an error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from gateway.domain import onboarding as ob
from gateway.support.pii import normalise_pin

DOC = Path(__file__).resolve().parents[2] / "docs" / "onboarding.md"
HEADER = ("kind,ref,care_notes,personal_identity_number,id,model_id,serial,device_id,person_ref,"
          "valid_from")


def csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def errors(parsed: ob.Parsed | ob.Plan) -> set[tuple[str, str | None]]:
    return {(e.row, e.column) for e in parsed.errors}


def test_a_csv_file_is_read_row_by_row() -> None:
    parsed = ob.parse(csv(
        "person,VAS-1,Nyckel,,,,,,,",
        "device,,,,vas-gps-1,demo-gps,SN 1,,,",
        "assignment,,,,,,,vas-gps-1,VAS-1,2025-03-01T08:00:00+01:00",
    ), ob.Format.CSV, pins=None)  # fmt: skip
    assert parsed.errors == []
    assert [(r.where, r.kind) for r in parsed.rows] == [
        ("line 2", ob.Kind.PERSON), ("line 3", ob.Kind.DEVICE), ("line 4", ob.Kind.ASSIGNMENT)]
    person, device, assignment = (r.fields for r in parsed.rows)
    assert person == ob.PersonRow(ref="VAS-1", care_notes="Nyckel")
    assert device == ob.DeviceRow(id="vas-gps-1", model_id="demo-gps", serial="SN 1")
    assert isinstance(assignment, ob.AssignmentRow) and assignment.valid_from == datetime(
        2025, 3, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rows", "where", "column"),
    [
        (["device,,,,bad id!,demo-gps,,,,"], "line 2", "id"),
        (["device,,,,vas-1,,,,,"], "line 2", "model_id"),
        (["person,,,,,,,,,"], "line 2", "ref"),
        (["person,VAS-1,,,,,,,,", "assignment,,,,,,,vas-1,VAS-1,2025-03-01 08:00"],
         "line 3", "valid_from"),
        (["pet,VAS-1,,,,,,,,"], "line 2", "kind"),
        ([",VAS-1,,,,,,,,"], "line 2", "kind"),
        (["person,VAS-1,,,vas-1,,,,,"], "line 2", "id"),  # not a field of a person
        (["person,VAS-1,,,,,,,,", "", "person,VAS-1,,,,,,,,"], "line 4", "ref"),  # twice
        (["person,VAS-1,,,,,,,,,extra"], "line 2", None),
        (['person,"VAS-1\nVAS-2",,,,,,,,', "device,,,,x y,demo-gps,,,,"], "line 4", "id"),
    ],
)
def test_a_csv_error_names_the_line_and_the_column(rows: list[str], where: str, column: str | None
                                                   ) -> None:  # fmt: skip
    parsed = ob.parse(csv(*rows), ob.Format.CSV, pins=None)
    assert (where, column) in errors(parsed), parsed.errors


def test_a_bad_header_names_its_column() -> None:
    parsed = ob.parse(csv("person,VAS-1", header="kind,ref,room"), ob.Format.CSV, pins=None)
    assert errors(parsed) == {("line 1", "room")}
    assert errors(ob.parse(b"ref\nVAS-1\n", ob.Format.CSV, pins=None)) == {("line 1", "kind")}
    assert errors(ob.parse(b"", ob.Format.CSV, pins=None)) == {("line 1", None)}


def test_semicolons_and_a_byte_order_mark_as_excel_writes_them() -> None:
    data = "\ufeffkind;ref;care_notes\nperson;VAS-1;Hörapparat, vänster\n".encode()
    parsed = ob.parse(data, ob.Format.CSV, pins=None)
    assert parsed.errors == []
    assert parsed.rows[0].fields == ob.PersonRow(ref="VAS-1", care_notes="Hörapparat, vänster")


def test_a_json_object_of_lists_and_a_list_of_kinds() -> None:
    lists = ob.parse(b'{"persons": [{"ref": "VAS-1"}], "devices": [{"id": "d-1",'
                     b' "model_id": "demo-gps", "serial": null}]}', ob.Format.JSON, pins=None)
    assert lists.errors == [] and [r.where for r in lists.rows] == ["persons[0]", "devices[0]"]
    kinds = ob.parse(b'[{"kind": "device_model", "id": "m-1", "vendor": "V", "model": "M",'
                     b' "device_type": "scale", "heartbeat_interval_s": "300"}]',
                     ob.Format.JSON, pins=None)  # fmt: skip
    assert kinds.errors == [] and kinds.rows[0].where == "[0]"
    assert isinstance(kinds.rows[0].fields, ob.DeviceModelRow)


@pytest.mark.parametrize(
    ("doc", "where", "column"),
    [
        (b'{"devices": [{"id": "d-1", "model_id": "m"}, {"id": "d 2", "model_id": "m"}]}',
         "devices[1]", "id"),
        (b'{"devices": [{"id": "d-1", "model_id": "m", "colour": "red"}]}',
         "devices[0]", "colour"),
        (b'{"persons": [{"kind": "device", "ref": "VAS-1"}]}', "persons[0]", "kind"),
        (b'{"people": []}', "people", None),
        (b'{"persons": {"ref": "VAS-1"}}', "persons", None),
        (b'[{"ref": "VAS-1"}]', "[0]", "kind"),
        (b'[{"kind": "device_model", "id": "m-1", "vendor": "V", "model": "M",'
         b' "device_type": "toaster", "heartbeat_interval_s": 60}]', "[0]", "device_type"),
        (b'[{"kind": "device_model", "id": "m-1", "vendor": "V", "model": "M",'
         b' "device_type": "scale", "heartbeat_interval_s": 1}]', "[0]", "heartbeat_interval_s"),
        (b'[1]', "[0]", None),
        (b'{"persons": [', "line 1", None),
        (b'{}', "file", None),
    ],
)
def test_a_json_error_names_the_path_and_the_field(doc: bytes, where: str, column: str | None
                                                   ) -> None:  # fmt: skip
    parsed = ob.parse(doc, ob.Format.JSON, pins=None)
    assert (where, column) in errors(parsed), parsed.errors


def test_identity_numbers_need_keys_and_never_appear_in_an_error() -> None:
    row = "person,VAS-1,,19121212-1213,,,,,,"
    refused = ob.parse(csv(row), ob.Format.CSV, pins=None)
    assert errors(refused) == {("line 2", "personal_identity_number")}
    assert "pii_keys" in refused.errors[0].message
    wrong = ob.parse(csv(row), ob.Format.CSV, pins=normalise_pin)
    assert errors(wrong) == {("line 2", "personal_identity_number")}
    good = ob.parse(csv("person,VAS-1,,19121212-1212,,,,,,"), ob.Format.CSV, pins=normalise_pin)
    assert good.fields(ob.PersonRow)[0].personal_identity_number == "191212121212"
    too_long = ob.parse(csv("person,VAS-1,,19121212-1212-99,,,,,,"), ob.Format.CSV, pins=None)
    for parsed in (refused, wrong, too_long):
        assert not any(re.search(r"1912", e.message) for e in parsed.errors)


def _stored() -> ob.Stored:
    alma, bo = uuid4(), uuid4()
    return ob.Stored(
        models={"demo-gps": ob.StoredModel("demo-gps", "Demo Vendor", "GPS 1", "gps_alarm", 60)},
        model_ids_by_name={("Demo Vendor", "GPS 1"): "demo-gps"},
        persons={"ALMA": ob.StoredPerson(alma, "Nyckel", None),
                 "BO": ob.StoredPerson(bo, "", None)},
        devices={"gps-1": ob.StoredDevice("demo-gps", "SN1", "active"),
                 "gps-2": ob.StoredDevice("demo-gps", None, "returned"),
                 "gps-3": ob.StoredDevice("demo-gps", None, "retired")},
        open={"gps-1": ob.Holding(alma, datetime(2025, 1, 1, tzinfo=UTC))},
        held_until={"gps-2": datetime(2025, 2, 1, tzinfo=UTC)},
    )  # fmt: skip


def _plan(*rows: str, may_add_models: bool = False) -> tuple[ob.Parsed, ob.Plan]:
    header = HEADER + ",vendor,model,device_type,heartbeat_interval_s"
    parsed = ob.parse(csv(*rows, header=header), ob.Format.CSV, pins=None)
    assert parsed.errors == []
    return parsed, ob.plan(parsed, _stored(), may_add_models=may_add_models)


def test_what_is_registered_already_is_unchanged() -> None:
    parsed, p = _plan(
        "person,ALMA,Nyckel,,,,,,,,,,,",
        "person,BO,,,,,,,,,,,,",
        "device,,,,gps-1,demo-gps,SN1,,,,,,,",
        "assignment,,,,,,,gps-1,ALMA,2025-01-01T00:00:00Z,,,,",
        "device_model,,,,demo-gps,,,,,,Demo Vendor,GPS 1,gps_alarm,60",
    )  # fmt: skip
    report = ob.Report.of(parsed, p, dry_run=False)
    assert report.ok and report.summary() == {"create": 0, "unchanged": 5, "error": 0}
    assert not (p.models or p.persons or p.devices or p.assignments)


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("person,ALMA,Annan nyckel,,,,,,,,,,,", "care_notes"),
        ("device,,,,gps-1,demo-gps,SN9,,,,,,,", "serial"),
        ("device,,,,gps-1,demo-bp,,,,,,,,", "model_id"),
        ("device,,,,gps-9,demo-nope,,,,,,,,", "model_id"),
        ("assignment,,,,,,,gps-1,BO,,,,,", "person_ref"),  # assigned to another
        ("assignment,,,,,,,gps-1,ALMA,2025-01-02T00:00:00Z,,,,", "valid_from"),
        ("assignment,,,,,,,gps-3,BO,,,,,", "device_id"),  # retired
        ("assignment,,,,,,,gps-2,BO,2025-01-15T00:00:00Z,,,,", "valid_from"),  # overlaps
        ("assignment,,,,,,,gps-9,BO,,,,,", "device_id"),  # no such device here
        ("assignment,,,,,,,gps-2,NOBODY,,,,,", "person_ref"),
        ("device_model,,,,demo-gps,,,,,,Demo Vendor,GPS 1,gps_alarm,300", "heartbeat_interval_s"),
        ("device_model,,,,new-gps,,,,,,Demo Vendor,GPS 2,gps_alarm,300", "id"),  # not platform
    ],
)
def test_a_row_that_contradicts_the_registry_is_an_error_of_that_row(row: str, column: str
                                                                      ) -> None:  # fmt: skip
    parsed, p = _plan("person,CARL,,,,,,,,,,,,", row)
    assert errors(p) == {("line 3", column)}, p.errors
    report = ob.Report.of(parsed, p, dry_run=False)
    assert not report.ok and not report.applied
    assert [r["action"] for r in report.rows] == ["create", "error"]


def test_a_file_creates_what_its_own_rows_need() -> None:
    _, p = _plan(
        "device_model,,,,new-gps,,,,,,Nordlarm,Trygg,gps_alarm,300",
        "assignment,,,,,,,gps-new,CARL,,,,,",  # before its device and person: fine
        "device,,,,gps-new,new-gps,,,,,,,,",
        "person,CARL,,,,,,,,,,,,",
        "assignment,,,,,,,gps-2,BO,2025-03-01T00:00:00Z,,,,",  # after the last holder
        may_add_models=True,
    )  # fmt: skip
    assert p.errors == []
    assert set(p.actions.values()) == {ob.Action.CREATE}
    assert [m.id for m in p.models] == ["new-gps"] and [a.device_id for a in p.assignments] == [
        "gps-new", "gps-2"]


def test_with_broker_identities_devices_are_left_to_the_api() -> None:
    parsed = ob.parse(csv("person,CARL,,,,,,,,", "device,,,,gps-9,demo-gps,,,,",
                          "assignment,,,,,,,gps-2,CARL,"), ob.Format.CSV, pins=None)  # fmt: skip
    assert parsed.errors == []
    p = ob.plan(parsed, _stored(), may_add_models=False, broker_identities=True)
    assert errors(p) == {("line 3", "id"), ("line 4", "device_id")}


@pytest.mark.parametrize("lang", ["csv", "json"])
def test_the_documented_examples_are_read_without_errors(lang: str) -> None:
    blocks = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    files = [b for b in blocks if lang == "csv" or ('"format"' not in b and '"row"' not in b)]
    assert files
    for block in files:
        parsed = ob.parse(block.encode(), ob.Format(lang), pins=None)
        assert parsed.errors == [] and parsed.rows, block
