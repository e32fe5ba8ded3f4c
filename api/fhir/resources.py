"""Stored rows -> FHIR R4 resources (plain dicts, serialised as application/fhir+json).
Pure, no I/O.

Observations follow the R4 vital-signs profiles: category ``vital-signs``; LOINC 29463-7
body weight (``kg``), 85354-9 blood-pressure panel with components 8480-6 systolic and
8462-4 diastolic (``mm[Hg]``), 8867-4 heart rate (``/min``, from the pulse a
blood-pressure monitor reports with its reading); units in UCUM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
DEVICE_SYSTEM = "urn:welfare-gateway:device"
ORG_NUMBER_SYSTEM = "urn:welfare-gateway:organisation-number"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

_VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
                "display": "Vital Signs",
            }
        ],
        "text": "Vital Signs",
    }
]
_KINDS: dict[str, tuple[str, str, str]] = {  # obs -> LOINC code, display, profile
    "weight": ("29463-7", "Body weight", "bodyweight"),
    "bp": ("85354-9", "Blood pressure panel with all children optional", "bp"),
    "hr": ("8867-4", "Heart rate", "heartrate"),
}


@dataclass(frozen=True, slots=True)
class VitalRow:
    """One observation as stored (see api_queries.FHIR_VITALS / consented_vitals)."""

    person_id: UUID
    ts: datetime
    device_id: str
    msg_id: str
    obs: str  # weight | bp | hr
    weight_kg: float | None = None
    systolic_mmhg: int | None = None
    diastolic_mmhg: int | None = None
    pulse_bpm: int | None = None


def _concept(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _quantity(value: float | int, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


_ABSENT = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "unknown",
            "display": "Unknown",
        }
    ]
}


def _component(code: str, display: str, value: int | None) -> dict[str, Any]:
    component: dict[str, Any] = {"code": _concept(code, display)}
    if value is None:
        component["dataAbsentReason"] = _ABSENT
    else:
        component["valueQuantity"] = _quantity(value, "mmHg", "mm[Hg]")
    return component


def device_reference(device_id: str) -> dict[str, Any]:
    """A literal reference when the device id is a valid FHIR id (then ``Device/{id}``
    can be read), else a logical reference by identifier."""
    if _FHIR_ID.match(device_id):
        return {"reference": f"Device/{device_id}"}
    return {"identifier": {"system": DEVICE_SYSTEM, "value": device_id}}


def observation(row: VitalRow, observation_id: str) -> dict[str, Any]:
    code, display, profile = _KINDS[row.obs]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": {"profile": [PROFILE + "vitalsigns", PROFILE + profile]},
        "status": "final",
        "category": _VITAL_SIGNS,
        "code": _concept(code, display),
        "subject": {"reference": f"Patient/{row.person_id}"},
        "effectiveDateTime": row.ts.isoformat(),
        "device": device_reference(row.device_id),
    }
    if row.obs == "weight":
        if row.weight_kg is None:
            resource["dataAbsentReason"] = _ABSENT
        else:  # stored as real (float4): round away the binary noise
            resource["valueQuantity"] = _quantity(round(row.weight_kg, 2), "kg", "kg")
    elif row.obs == "bp":
        resource["component"] = [
            _component("8480-6", "Systolic blood pressure", row.systolic_mmhg),
            _component("8462-4", "Diastolic blood pressure", row.diastolic_mmhg),
        ]
    else:
        if row.pulse_bpm is None:
            resource["dataAbsentReason"] = _ABSENT
        else:
            resource["valueQuantity"] = _quantity(row.pulse_bpm, "beats/minute", "/min")
    return resource


def patient(
    person_id: UUID, ref: str, tenant_id: str, tenant_name: str, tenant_org: str
) -> dict[str, Any]:
    """Pseudonymous: the municipality's reference for the resident and the owning
    municipality. No name, no personal identity number, no care notes."""
    return {
        "resourceType": "Patient",
        "id": str(person_id),
        "meta": {
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "PSEUDED",
                    "display": "pseudonymized",
                }
            ]
        },
        "identifier": [
            {
                "use": "secondary",
                "system": f"urn:welfare-gateway:{tenant_id}:person-ref",
                "value": ref,
            }
        ],
        "managingOrganization": {
            "identifier": {"system": ORG_NUMBER_SYSTEM, "value": tenant_org},
            "display": tenant_name,
        },
    }


_DEVICE_STATUS = {
    "active": "active",
    "in_stock": "inactive",
    "returned": "inactive",
    "retired": "inactive",
}


def device(
    device_id: str, vendor: str, model: str, device_type: str, serial: str | None, status: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_id,
        "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
        "status": _DEVICE_STATUS.get(status, "unknown"),
        "manufacturer": vendor,
        "deviceName": [{"name": model, "type": "model-name"}],
        "type": {"text": device_type},
    }
    if serial:
        resource["serialNumber"] = serial
    return resource


def searchset(
    entries: list[tuple[str, dict[str, Any]]],
    self_url: str,
    next_url: str | None,
    timestamp: datetime,
) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": timestamp.isoformat(),
        "link": links,
        "entry": [
            {"fullUrl": url, "resource": resource, "search": {"mode": "match"}}
            for url, resource in entries
        ],
    }


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def capability_statement(base_url: str, version: str, date: datetime) -> dict[str, Any]:
    """Exactly what this server supports."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.isoformat(),
        "publisher": "welfare-gateway",
        "kind": "instance",
        "software": {"name": "welfare-gateway", "version": version},
        "implementation": {
            "description": "welfare-gateway FHIR R4 read API for regional health systems",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Search parameters are handled strictly: an unknown or"
                    " unsupported parameter is answered 400 with an OperationOutcome, unless"
                    " the request carries 'Prefer: handling=lenient', when it is ignored and"
                    " left out of the self link. Paging follows the Bundle's next link (an"
                    " opaque _cursor); pages are stable under concurrent inserts. Bundles"
                    " carry no total. Clinicians (token role clinician, claim org) read"
                    " only under a consent valid now for the data category (weight;"
                    " blood_pressure covers the panel and the heart rate) and only data"
                    " from inside its validity; municipal staff of the owning tenant read"
                    " by role. Every read, allowed or denied, is written to the access log."
                ),
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer JWT (Authorization: Bearer ...).",
                },
                "resource": [
                    {
                        "type": "Observation",
                        "supportedProfile": [
                            PROFILE + p for p in ("vitalsigns", "bodyweight", "bp", "heartrate")
                        ],
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {
                                "name": "patient",
                                "type": "reference",
                                "documentation": "Required, once: Patient/{id} or {id}.",
                            },
                            {
                                "name": "code",
                                "type": "token",
                                "documentation": "http://loinc.org|29463-7, 85354-9 or 8867-4,"
                                " or the bare code; comma-separated for OR.",
                            },
                            {
                                "name": "category",
                                "type": "token",
                                "documentation": "Only vital-signs matches.",
                            },
                            {
                                "name": "date",
                                "type": "date",
                                "documentation": "Prefixes eq, ge, gt, le, lt; repeat for AND."
                                " A date without time is a day in Europe/Stockholm.",
                            },
                            {
                                "name": "_count",
                                "type": "number",
                                "documentation": "Page size 1..500, default 50.",
                            },
                        ],
                    },
                    {
                        "type": "Patient",
                        "interaction": [{"code": "read"}],
                        "documentation": "Pseudonymous: reference and owning municipality.",
                    },
                    {"type": "Device", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }
