"""FHIR R4 read API for regional health systems: ``/fhir/r4``.

Thin adapter: parsing and mapping are pure (``api.fhir``); access decisions go through the
same gate as the REST readings (``api.consent_gate``: decide() on the consents, SECURITY
DEFINER functions that check again in the database), which writes one access-log entry
per read of personal data, allowed or denied. Every error is an OperationOutcome.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
import psycopg
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.auth import Principal, Role
from api.consent_gate import ConsentGate
from api.deps import CurrentPrincipal, TenantConn
from api.fhir import resources as fhir
from api.fhir.ids import IdCodec
from api.fhir.search import OBS_CATEGORY, Cursor, SearchError, parse_observation_search
from gateway import __version__
from gateway.adapters.postgres import api_queries as q
from gateway.adapters.postgres.registry_repo import RegistryError
from gateway.domain.consent import DataCategory

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as in the registry
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.CLINICIAN)
VITAL_CATEGORIES: list[str] = [DataCategory.BLOOD_PRESSURE.value, DataCategory.WEIGHT.value]
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    422: "invalid",
    503: "transient",
}


class FhirResponse(Response):
    media_type = fhir.FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def outcome(
    status: int, diagnostics: str, headers: Mapping[str, str] | None = None, code: str | None = None
) -> Response:
    body = fhir.operation_outcome(code or _ISSUE_CODES.get(status, "exception"), diagnostics)
    return FhirResponse(body, status_code=status, headers=dict(headers or {}))


class FhirError(Exception):
    def __init__(self, status: int, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status


class FhirRoute(APIRoute):
    """Every error of a /fhir route (authentication, validation, access, not found) is
    answered as an OperationOutcome instead of a problem document."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except FhirError as exc:
                return outcome(exc.status, str(exc))
            except SearchError as exc:
                return outcome(exc.status, str(exc), code=exc.code)
            except StarletteHTTPException as exc:
                return outcome(exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError as exc:
                fields = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                return outcome(400, f"request is not valid: {fields}")
            except RegistryError as exc:
                return outcome(exc.status, str(exc))
            except psycopg.DataError:  # e.g. a NUL character in a text parameter
                return outcome(400, "a parameter holds a value the database cannot take")

        return fhir_handler


router = APIRouter(prefix="/fhir/r4", tags=["FHIR R4"], route_class=FhirRoute)
_FHIR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": f"OperationOutcome ({code})",
        "content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}},
    }
    for status, code in _ISSUE_CODES.items()
    if status not in (405, 422)
}
_OK = {"content": {fhir.FHIR_JSON: {"schema": {"type": "object"}}}}


def _codec(request: Request) -> IdCodec:
    codec: IdCodec = request.app.state.fhir_ids
    return codec


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _gate(request: Request, conn: Any, who: Principal, not_found: str) -> ConsentGate:
    """The consent gate, refusing with an OperationOutcome."""
    return ConsentGate(request, conn, who, refuse=FhirError, not_found=not_found)


@router.get(
    "/metadata",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "CapabilityStatement"}},
)
async def metadata(request: Request) -> FhirResponse:
    """The CapabilityStatement: exactly what this server supports (no authentication)."""
    return FhirResponse(fhir.capability_statement(_base(request), __version__, datetime.now(UTC)))


@router.get(
    "/Observation",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "searchset Bundle"}, **_FHIR_RESPONSES},
)
async def search_observations(
    request: Request,
    conn: TenantConn,
    who: CurrentPrincipal,
    patient: str = Query(description="Patient/{id} or {id}; required"),
    code: str | None = Query(None, description="e.g. http://loinc.org|29463-7 or 8867-4"),
    category: str | None = Query(None, description="vital-signs"),
    date: list[str] = Query([], description="FHIR prefixes eq, ge, gt, le, lt; repeatable"),
    count: str | None = Query(None, alias="_count", description="1..500, default 50"),
    cursor: str | None = Query(None, alias="_cursor", description="from a next link"),
) -> FhirResponse:
    """Vital-sign Observations of one patient, oldest first, as a searchset Bundle."""
    lenient = "handling=lenient" in request.headers.get("prefer", "").replace(" ", "")
    search = parse_observation_search(request.query_params.multi_items(), lenient=lenient)
    person = search.person_id
    gate = _gate(request, conn, who, "Patient not found")
    await gate.require_role(READERS, person, search.categories or VITAL_CATEGORIES)
    obs = set(search.obs)
    params: dict[str, Any] = {
        "person": person,
        "from": search.start,
        "to": search.end,
        "limit": search.count + 1,
    }
    # a clinician asking for specific codes needs a consent for each of their categories;
    # otherwise the vital signs a consent covers are returned (403 if it covers none)
    strict = who.role is Role.CLINICIAN and search.explicit_code and bool(obs)
    if who.role is Role.CLINICIAN:
        wanted = search.categories if strict else VITAL_CATEGORIES
    else:
        wanted = search.categories or VITAL_CATEGORIES
    granted = await gate.categories(person, wanted, require_all=strict)
    if granted.by_consent:
        obs = {o for o in obs if OBS_CATEGORY[o] in granted.categories}
        query = q.CONSENTED_VITALS
        params["org"] = who.org
    else:
        query = q.FHIR_VITALS
    after = search.after
    params.update(
        obs=sorted(obs),
        after_ts=after.ts if after else None,
        after_device=after.device_id if after else None,
        after_msg=after.msg_id if after else None,
        after_obs=after.obs if after else None,
    )
    rows = await _vitals(conn, query, params, person) if obs else []
    next_cursor = None
    if len(rows) > search.count:
        rows = rows[: search.count]
        last = rows[-1]
        next_cursor = search_cursor(last)
    codec = _codec(request)
    base = _base(request)
    entries = []
    for row in rows:
        ident = codec.encode(person, row.ts, row.obs, row.device_id, row.msg_id)
        entries.append((f"{base}/Observation/{ident}", fhir.observation(row, ident)))

    def link(position: str | None) -> str:
        query_items = list(search.params) + ([("_cursor", position)] if position else [])
        return f"{base}/Observation?{urlencode(query_items)}"

    bundle = fhir.searchset(
        entries,
        link(after.encode() if after else None),
        link(next_cursor) if next_cursor else None,
        datetime.now(UTC),
    )
    return FhirResponse(bundle)


def search_cursor(row: fhir.VitalRow) -> str:
    return Cursor(row.ts, row.device_id, row.msg_id, row.obs).encode()


async def _vitals(
    conn: Any, query: str, params: dict[str, Any], person: UUID
) -> list[fhir.VitalRow]:
    cur = await conn.execute(query, params)
    return [
        fhir.VitalRow(person, ts, device_id, msg_id, obs, weight, sys_, dia, pulse)
        for ts, device_id, msg_id, obs, weight, sys_, dia, pulse in await cur.fetchall()
    ]


@router.get(
    "/Observation/{observation_id}",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "Observation"}, **_FHIR_RESPONSES},
)
async def read_observation(
    observation_id: str, request: Request, conn: TenantConn, who: CurrentPrincipal
) -> FhirResponse:
    gate = _gate(request, conn, who, "Observation not found")
    ref = _codec(request).decode(observation_id)
    if ref is None:
        await gate.require_role(READERS, None, VITAL_CATEGORIES)
        raise await gate.deny(404, "not found", categories=VITAL_CATEGORIES)
    category = OBS_CATEGORY[ref.obs]
    person = ref.person_id
    await gate.require_role(READERS, person, [category])
    params: dict[str, Any] = {
        "person": person,
        "obs": [ref.obs],
        "from": ref.ts,
        "to": ref.ts + timedelta(microseconds=1),
        "after_ts": None,
        "after_device": None,
        "after_msg": None,
        "after_obs": None,
        "limit": 100,
    }
    if (await gate.categories(person, [category])).by_consent:
        query = q.CONSENTED_VITALS
        params["org"] = who.org
    else:
        query = q.FHIR_VITALS
    for row in await _vitals(conn, query, params, person):
        if ref.matches(row.device_id, row.msg_id):
            return FhirResponse(fhir.observation(row, observation_id))
    raise FhirError(404, "Observation not found")


@router.get(
    "/Patient/{patient_id}",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "Patient"}, **_FHIR_RESPONSES},
)
async def read_patient(
    patient_id: str, request: Request, conn: TenantConn, who: CurrentPrincipal
) -> FhirResponse:
    """Pseudonymous for everyone: the municipality's reference for the resident and the
    owning municipality; never a name or a personal identity number."""
    try:
        person: UUID | None = UUID(patient_id)
    except ValueError:
        person = None
    gate = _gate(request, conn, who, "Patient not found")
    await gate.require_role(READERS, person, ["patient"])
    if person is None:
        raise await gate.deny(404, "not found", categories=["patient"])
    row = (await gate.patient(person)).row
    assert row is not None
    return FhirResponse(fhir.patient(*row))


@router.get(
    "/Device/{device_id}",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "Device"}, **_FHIR_RESPONSES},
)
async def read_device(
    device_id: str, request: Request, conn: TenantConn, who: CurrentPrincipal
) -> FhirResponse:
    """A clinician reads only a device that recorded data of a person whose consent to the
    clinician's organisation is valid now (the devices its Observations point at)."""
    gate = _gate(request, conn, who, "Device not found")
    await gate.require_role(READERS, None, ["device"])
    if not _DEVICE_ID.match(device_id):
        raise await gate.deny(404, "not found", categories=["device"])
    if who.role is Role.CLINICIAN:  # consented_device() is the consent check
        cur = await conn.execute(q.CONSENTED_DEVICE, {"device": device_id, "org": who.org or ""})
        found = await cur.fetchone()
        if found is None:
            raise await gate.deny(404, "not found or no consent", categories=["device"])
        await gate.allow(owner=found[1], person_id=found[7], categories=["device"],
                         reason="consent valid")  # fmt: skip
        row = found[:7]
    else:
        cur = await conn.execute(q.OWNER_DEVICE, {"device": device_id})
        row = await cur.fetchone()
        if row is None:
            raise await gate.deny(404, "not found", categories=["device"])
        await gate.allow(owner=who.tenant, person_id=None, categories=["device"],
                         reason="by role")  # fmt: skip
    ident, _tenant, vendor, model, device_type, serial, status = row
    return FhirResponse(fhir.device(ident, vendor, model, device_type, serial, status))


_KNOWN = ("metadata", "Observation", "Patient", "Device")


@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def unsupported(rest: str, request: Request) -> Response:
    if rest.split("/")[0] in _KNOWN and request.method != "GET":
        return outcome(405, f"{request.method} is not supported (read-only server)")
    return outcome(404, f"{rest} is not supported here (see /fhir/r4/metadata)")
