"""The full export's format (issue #19.6; gateway/domain/export.py): values written and
read back, RFC 4180 CSV, the JSON Schemas, the manifest, and a zip made on a stream that
cannot seek."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from uuid import UUID

import jsonschema
import pytest

from gateway.adapters.postgres.export import ZipSink, _File
from gateway.domain import export as ex

K = ex.Kind
VALUES = [
    ("plain", K.TEXT),
    ("", K.TEXT),
    (' "quoted", comma\r\nand lines ', K.TEXT),
    ("åäö €", K.TEXT),
    (UUID("12345678-1234-5678-1234-567812345678"), K.UUID),
    (-7, K.INTEGER),
    (81.5, K.NUMBER),
    (True, K.BOOLEAN),
    (False, K.BOOLEAN),
    (datetime(2026, 3, 29, 1, 30, 0, 250, tzinfo=UTC), K.TIMESTAMP),
    (date(2026, 12, 7), K.DATE),
    (time(21, 30), K.TIME),
    ({"type": "circle", "lat": 59.6, "radius_m": 100}, K.JSON),
    (["weight", "alarms"], K.TEXT_ARRAY),
    ([0, 2, 4], K.INTEGER_ARRAY),
    (b"\x00\xffhash", K.BYTES),
    (b"", K.BYTES),  # the first row's prev_hash in the access log
    (None, K.TEXT),
    (None, K.TIMESTAMP),
]


@pytest.mark.parametrize(("value", "kind"), VALUES)
def test_a_value_reads_back_as_written(value: object, kind: ex.Kind) -> None:
    assert ex.parse(ex.cell(value, kind), kind) == value


def test_timestamps_are_utc_with_z() -> None:
    cet = timezone(timedelta(hours=1))
    assert ex.cell(datetime(2026, 1, 1, 9, 0, tzinfo=cet), K.TIMESTAMP) == "2026-01-01T08:00:00Z"
    with pytest.raises(ex.CellError):
        ex.parse("2026-01-01T08:00:00", K.TIMESTAMP)  # no offset: refused


def test_csv_round_trip_keeps_null_apart_from_empty_and_survives_any_split() -> None:
    rows = [[ex.cell(v, k) for v, k in VALUES], ["a", None, ""], [None]]
    text = "".join(ex.csv_line(r) for r in rows)
    assert text.count("\r\n") >= 3 and ',"",' in text  # empty string quoted, null bare
    for size in (1, 2, 7, len(text)):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert [r for _, r in ex.read_csv(chunks)] == rows


def test_csv_reader_numbers_records_by_their_first_line() -> None:
    text = 'a,b\r\n"x\ny",1\r\nz,2\r\n'
    assert [line for line, _ in ex.read_csv([text])] == [1, 2, 4]
    with pytest.raises(ex.CellError, match="not closed"):
        list(ex.read_csv(['a,"open\r\n']))


def test_every_table_has_a_valid_json_schema_that_its_rows_meet() -> None:
    for table in ex.TABLES:
        schema = ex.json_schema(table)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["required"] == [c.name for c in table.columns]
        assert set(table.order_by) <= {c.name for c in table.columns} | {"id"}
    # a row of persons read as typed values meets its schema
    table = ex.BY_NAME["persons"]
    row = {"id": "12345678-1234-5678-1234-567812345678", "tenant_id": "vasteras",
           "ref": "VAS-1", "personal_identity_number": None, "care_notes": "",
           "created_at": "2026-12-07T04:00:00Z"}  # fmt: skip
    jsonschema.validate(row, ex.json_schema(table))


def test_the_table_list_is_consistent() -> None:
    names = [t.name for t in ex.TABLES]
    assert len(names) == len(set(names))
    assert not set(names) & set(ex.EXCLUDED)
    assert all(reason.strip() for reason in ex.EXCLUDED.values())
    # restore order: a table comes after the tables its rows name
    assert names.index("persons") < names.index("assignments") < names.index("payer_changes")
    assert names.index("units") < names.index("assignments")
    assert names.index("alarms") < names.index("alarm_events")


def test_the_manifest_is_read_strictly() -> None:
    entry = ex.FileEntry("devices.csv", rows=1)
    entry.add(b"id\r\nx\r\n")
    entry.close()
    doc = ex.manifest(tenant="vasteras", exported_at=datetime.now(UTC),
                      schema_version="0020_export", files=[entry])  # fmt: skip
    read = ex.read_manifest(ex.manifest_bytes(doc))
    assert read["files"][0] == {"path": "devices.csv", "bytes": 7, "rows": 1,
                                "sha256": entry.sha256}  # fmt: skip
    assert ex.unlisted(["devices.csv", "manifest.json", "x.csv"], read) == ["x.csv"]
    for bad in ("../etc/passwd", "/abs.csv"):
        doc["files"][0]["path"] = bad
        with pytest.raises(ex.ManifestError, match="unsafe path"):
            ex.read_manifest(ex.manifest_bytes(doc))
    with pytest.raises(ex.ManifestError):
        ex.read_manifest(b'{"format": "something else"}')


def test_a_zip_written_to_a_stream_that_cannot_seek_reads_back() -> None:
    sink = ZipSink()
    out = io.BytesIO()
    big = b"x,y\r\n" * 100_000
    for name, data in (("a.csv", big), ("fhir/b.json", b"{}"), (ex.MANIFEST, b"{}")):
        f = _File(sink, name)
        for i in range(0, len(data), 4096):
            f.write(data[i : i + 4096])
            out.write(sink.take())  # handed on as produced
        f.close()
    sink.close()
    out.write(sink.take())
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    assert archive.namelist() == ["a.csv", "fhir/b.json", ex.MANIFEST]
    assert archive.read("a.csv") == big
    assert archive.testzip() is None


def test_a_fhir_bundle_written_in_parts_is_one_json_document() -> None:
    parts = [ex.fhir_bundle_head("b-1", datetime(2026, 1, 1, tzinfo=UTC))]
    parts += [ex.fhir_entry({"resourceType": "Observation", "id": str(i)}, i == 0)
              for i in range(3)]  # fmt: skip
    parts.append(ex.FHIR_BUNDLE_TAIL)
    bundle = json.loads(b"".join(parts))
    assert bundle["type"] == "collection" and len(bundle["entry"]) == 3


def test_the_fast_line_writer_writes_what_cell_and_csv_line_write() -> None:
    kinds = [k for _, k in VALUES]
    row = [v for v, _ in VALUES]
    assert ex.line_writer(kinds)(row) == ex.csv_line(ex.cell(v, k) for v, k in VALUES)


def test_a_single_precision_value_is_written_without_binary_noise() -> None:
    import struct

    stored = struct.unpack("<f", struct.pack("<f", 81.9))[0]  # as PostgreSQL's real holds it
    assert stored != 81.9 and ex.cell(stored, K.REAL) == "81.9"
    assert ex.parse("81.9", K.REAL) == 81.9
