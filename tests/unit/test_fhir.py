"""FHIR mapping, search parsing and ids: pure, validated against the fhir.resources R4B
models (FHIR 4.3, the R4-compatible subpackage of fhir.resources 8)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient

from api.fhir import resources as fhir
from api.fhir.ids import IdCodec
from api.fhir.search import Cursor, SearchError, parse_observation_search

PERSON = UUID("9d1b06d5-d8b9-4fb2-8d88-7d8eb78857ce")
TS = datetime(2024, 5, 1, 8, 30, 15, 250000, tzinfo=UTC)


def search(*items: tuple[str, str], lenient: bool = False):
    return parse_observation_search([("patient", str(PERSON)), *items], lenient=lenient)


@pytest.mark.parametrize(
    ("row", "code", "profile"),
    [
        (
            fhir.VitalRow(PERSON, TS, "scale-1", "m1", "weight", weight_kg=81.19999694824219),
            "29463-7",
            "bodyweight",
        ),
        (
            fhir.VitalRow(PERSON, TS, "bp-1", "m2", "bp", systolic_mmhg=135, diastolic_mmhg=85),
            "85354-9",
            "bp",
        ),
        (fhir.VitalRow(PERSON, TS, "bp-1", "m2", "hr", pulse_bpm=72), "8867-4", "heartrate"),
        (fhir.VitalRow(PERSON, TS, "bp-1", "m3", "bp", systolic_mmhg=135), "85354-9", "bp"),
    ],
)
def test_observations_follow_the_vital_signs_profiles(row, code, profile) -> None:
    body = fhir.observation(row, "abc-1.2")
    obs = Observation.model_validate(body)
    assert obs.code.coding[0].system == "http://loinc.org" and obs.code.coding[0].code == code
    assert obs.category[0].coding[0].code == "vital-signs"
    assert body["meta"]["profile"] == [
        "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        f"http://hl7.org/fhir/StructureDefinition/{profile}",
    ]
    assert body["subject"] == {"reference": f"Patient/{PERSON}"}
    assert body["effectiveDateTime"] == "2024-05-01T08:30:15.250000+00:00"
    if code == "29463-7":
        assert body["valueQuantity"] == {
            "value": 81.2,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        }
    elif code == "8867-4":
        assert body["valueQuantity"]["code"] == "/min"
    else:
        systolic, diastolic = body["component"]
        assert systolic["code"]["coding"][0]["code"] == "8480-6"
        assert diastolic["code"]["coding"][0]["code"] == "8462-4"
        assert systolic["valueQuantity"]["code"] == "mm[Hg]"
        if row.diastolic_mmhg is None:
            assert "valueQuantity" not in diastolic and "dataAbsentReason" in diastolic


def test_a_device_id_that_is_not_a_fhir_id_is_referenced_by_identifier() -> None:
    assert fhir.device_reference("scale-1.a") == {"reference": "Device/scale-1.a"}
    ref = fhir.device_reference("scale_1")
    assert ref == {"identifier": {"system": "urn:welfare-gateway:device", "value": "scale_1"}}
    row = fhir.VitalRow(PERSON, TS, "scale_1", "m1", "weight", weight_kg=80)
    Observation.model_validate(fhir.observation(row, "x"))


def test_patient_device_bundle_and_outcome_validate() -> None:
    patient = fhir.patient(PERSON, "kommun-a-brukare-1", "kommun-a", "Kommun A", "212000-0001")
    p = Patient.model_validate(patient)
    assert p.name is None and p.meta.security[0].code == "PSEUDED"
    assert "19" not in str(patient["identifier"])  # only the pseudonymous reference
    d = Device.model_validate(fhir.device("scale-1", "Acme", "S1", "scale", "SN1", "returned"))
    assert d.status == "inactive" and d.serialNumber == "SN1"
    obs = fhir.observation(fhir.VitalRow(PERSON, TS, "s", "m", "hr", pulse_bpm=60), "id1")
    bundle = fhir.searchset(
        [("http://x/fhir/r4/Observation/id1", obs)], "http://x/self", "http://x/next", TS
    )
    b = Bundle.model_validate(bundle)
    assert b.type == "searchset" and [link.relation for link in b.link] == ["self", "next"]
    OperationOutcome.model_validate(fhir.operation_outcome("forbidden", "no"))


def test_observation_ids_are_stable_opaque_and_authenticated() -> None:
    codec = IdCodec("a-secret-of-some-length-a-secret")
    ident = codec.encode(PERSON, TS, "hr", "bp-1", "m2")
    assert ident == codec.encode(PERSON, TS, "hr", "bp-1", "m2")  # stable
    assert len(ident) == 60 and fhir._FHIR_ID.match(ident)
    assert str(PERSON) not in ident and str(PERSON).replace("-", "") not in ident
    assert ident != codec.encode(PERSON, TS, "bp", "bp-1", "m2")
    ref = codec.decode(ident)
    assert ref is not None and (ref.person_id, ref.ts, ref.obs) == (PERSON, TS, "hr")
    assert ref.matches("bp-1", "m2") and not ref.matches("bp-1", "m3")
    # another deployment's key, a flipped character, garbage: not an id
    assert IdCodec("another-secret-another-secret-xx").decode(ident) is None
    flipped = ident[:5] + ("A" if ident[5] != "A" else "B") + ident[6:]
    for bad in (flipped, ident[:-1], "x" * 60, "_" * 60, ""):
        assert codec.decode(bad) is None
    assert codec.decode(codec.encode(uuid4(), TS, "weight", "d", "m")) is not None


def test_search_codes() -> None:
    assert search().obs == {"weight", "bp", "hr"} and not search().explicit_code
    assert search(("code", "http://loinc.org|29463-7")).obs == {"weight"}
    assert search(("code", "8867-4,85354-9")).obs == {"hr", "bp"}
    assert search(("code", "|29463-7")).obs == {"weight"}
    assert search(("code", "http://snomed.info/sct|29463-7")).obs == frozenset()
    assert search(("code", "8480-6")).obs == frozenset()  # a component, not an observation
    assert search(("code", "29463-7,8867-4"), ("code", "8867-4")).obs == {"hr"}  # AND
    assert search(("code", "8867-4")).categories == ["blood_pressure"]
    assert search(("category", "vital-signs")).obs == {"weight", "bp", "hr"}
    assert search(("category", "laboratory")).obs == frozenset()
    with pytest.raises(SearchError):
        search(("code", "http://loinc.org|"))


def test_search_dates_with_prefixes() -> None:
    day = search(("date", "2024-05-01"))  # a day in Europe/Stockholm (CEST, +02:00)
    assert (day.start, day.end) == (
        datetime(2024, 4, 30, 22, tzinfo=UTC),
        datetime(2024, 5, 1, 22, tzinfo=UTC),
    )
    s = search(("date", "ge2024-05-01T10:00:00Z"), ("date", "lt2024-05-02T00:00:00+02:00"))
    assert (s.start, s.end) == (
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 22, tzinfo=UTC),
    )
    s = search(("date", "gt2024-05-01T10:00Z"))  # after that whole minute
    assert s.start == datetime(2024, 5, 1, 10, 1, tzinfo=UTC) and s.end is None
    s = search(("date", "le2024-02"))  # to the end of February (leap year)
    assert s.end == datetime(2024, 2, 29, 23, tzinfo=UTC)
    s = search(("date", "eq2024"), ("date", "ge2024-06-01T00:00:00.5Z"))
    assert s.start == datetime(2024, 6, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert s.end == datetime(2024, 12, 31, 23, tzinfo=UTC)
    s = search(("date", "lt2024-05-01T10:00:00.123456789+01:00"))
    assert s.end == datetime(2024, 5, 1, 9, 0, 0, 123456, tzinfo=UTC)
    for bad in (
        "yesterday",
        "2024-05-01T10:00",
        "2024-13-01",
        "ge2024-02-30",
        "2024-05-01,2024",
        "2024-05-01T10:00+15:00",
        "20240501",
    ):
        with pytest.raises(SearchError) as err:
            search(("date", bad))
        assert err.value.code == "invalid" and err.value.status == 400
    with pytest.raises(SearchError) as err:
        search(("date", "ap2024"))
    assert err.value.code == "not-supported"


def test_search_count_cursor_and_unknown_parameters() -> None:
    assert search().count == 50 and search(("_count", "500")).count == 500
    for bad in ("0", "501", "-1", "ten", ""):
        with pytest.raises(SearchError):
            search(("_count", bad))
    cursor = Cursor(TS, "bp-1", "m|2", "hr")
    assert search(("_cursor", cursor.encode())).after == cursor
    for bad in ("garbage", Cursor(TS, "d", "m", "hr").encode()[:-3], "W10"):
        with pytest.raises(SearchError):
            search(("_cursor", bad))
    with pytest.raises(SearchError) as err:
        search(("subject", "x"))
    assert err.value.code == "not-supported"
    lenient = search(("subject", "x"), ("_count", "5"), lenient=True)
    assert lenient.params == [("patient", str(PERSON)), ("_count", "5")]
    for items in ([], [("patient", "x")], [("patient", str(PERSON)), ("patient", str(PERSON))]):
        with pytest.raises(SearchError):
            parse_observation_search(items)
    assert parse_observation_search([("patient", f"Patient/{PERSON}")]).person_id == PERSON
