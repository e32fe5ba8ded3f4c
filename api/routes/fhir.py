"""FHIR R4 read API for regional health systems: ``/fhir/r4``.

Thin adapter: parsing and mapping are pure (``api.fhir``); access decisions are the same
as the REST readings (``api.consented``: decide() on the consents, SECURITY DEFINER
functions that check again in the database). Every read of personal data, allowed or
denied, is written to the access log. Every error is an OperationOutcome.
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

from api import consented
from api.auth import Principal, Role
from api.deps import CurrentPrincipal, TenantConn
from api.fhir import resources as fhir
from api.fhir.ids import IdCodec
from api.fhir.search import OBS_CATEGORY, Cursor, SearchError, parse_observation_search
from gateway import __version__
from gateway.adapters.postgres import api_queries as q
from gateway.adapters.postgres.registry_repo import RegistryError

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as in the registry
READERS = (Role.TENANT_ADMIN, Role.OPERATOR, Role.CLINICIAN)
VITAL_CATEGORIES = ["blood_pressure", "weight"]
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


async def _deny_role(
    request: Request, who: Principal, person: UUID | None, what: list[str]
) -> None:
    if who.role not in READERS:
        reason = f"role {who.role.value} may not read personal data"
        await consented.log_read(request, who, None, person, what, None, "denied", reason)
        raise FhirError(403, reason)


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
    await _deny_role(request, who, person, search.categories or VITAL_CATEGORIES)
    obs = set(search.obs)
    params: dict[str, Any] = {
        "person": person,
        "from": search.start,
        "to": search.end,
        "limit": search.count + 1,
    }
    if who.role is Role.CLINICIAN:
        owner = await consented.person_owner(conn, person)
        wanted = search.categories if search.explicit_code and obs else VITAL_CATEGORIES
        if owner is None:
            await consented.log_read(
                request, who, None, person, wanted, None, "denied", "no such person"
            )
            raise FhirError(404, "Patient not found")
        decisions = await consented.decide_for(conn, who, person, wanted)
        allowed = decisions.allowed
        refused = (allowed != wanted) if search.explicit_code and obs else not allowed
        if refused:
            await consented.log_read(
                request, who, owner, person, wanted, None, "denied", decisions.refusal
            )
            raise FhirError(403, decisions.refusal)
        obs = {o for o in obs if OBS_CATEGORY[o] in allowed}
        await consented.log_read(
            request, who, owner, person, allowed, decisions.purpose, "allowed", "consent valid"
        )
        query = q.CONSENTED_VITALS
        params["org"] = who.org
    else:
        wanted = search.categories or VITAL_CATEGORIES
        if not await _owner_patient(conn, person):
            await consented.log_read(
                request, who, None, person, wanted, None, "denied", "not found"
            )
            raise FhirError(404, "Patient not found")
        await consented.log_read(
            request, who, who.tenant, person, wanted, None, "allowed", "by role"
        )
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


async def _owner_patient(conn: Any, person: UUID) -> tuple[Any, ...] | None:
    cur = await conn.execute(q.OWNER_PATIENT, {"person": person})
    row: tuple[Any, ...] | None = await cur.fetchone()
    return row


@router.get(
    "/Observation/{observation_id}",
    response_class=FhirResponse,
    responses={200: {**_OK, "description": "Observation"}, **_FHIR_RESPONSES},
)
async def read_observation(
    observation_id: str, request: Request, conn: TenantConn, who: CurrentPrincipal
) -> FhirResponse:
    ref = _codec(request).decode(observation_id)
    if ref is None:
        await _deny_role(request, who, None, VITAL_CATEGORIES)
        await consented.log_read(
            request, who, None, None, VITAL_CATEGORIES, None, "denied", "not found"
        )
        raise FhirError(404, "Observation not found")
    category = OBS_CATEGORY[ref.obs]
    person = ref.person_id
    await _deny_role(request, who, person, [category])
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
    if who.role is Role.CLINICIAN:
        owner = await consented.person_owner(conn, person)
        if owner is None:
            await consented.log_read(
                request, who, None, person, [category], None, "denied", "no such person"
            )
            raise FhirError(404, "Observation not found")
        decision = (await consented.decide_for(conn, who, person, [category])).by_category[category]
        purpose = decision.consent.purpose if decision.consent else None
        await consented.log_read(
            request,
            who,
            owner,
            person,
            [category],
            purpose,
            "allowed" if decision.allowed else "denied",
            decision.reason,
        )
        if not decision.allowed:
            raise FhirError(403, decision.reason)
        query = q.CONSENTED_VITALS
        params["org"] = who.org
    else:
        if not await _owner_patient(conn, person):
            await consented.log_read(
                request, who, None, person, [category], None, "denied", "not found"
            )
            raise FhirError(404, "Observation not found")
        await consented.log_read(
            request, who, who.tenant, person, [category], None, "allowed", "by role"
        )
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
    await _deny_role(request, who, person, ["patient"])
    if person is None:
        await consented.log_read(request, who, None, None, ["patient"], None, "denied", "not found")
        raise FhirError(404, "Patient not found")
    if who.role is Role.CLINICIAN:
        owner = await consented.person_owner(conn, person)
        if owner is None:
            await consented.log_read(
                request, who, None, person, ["patient"], None, "denied", "no such person"
            )
            raise FhirError(404, "Patient not found")
        cur = await conn.execute(q.CONSENTED_PATIENT, {"person": person, "org": who.org or ""})
        row = await cur.fetchone()
        if row is None:
            reason = (await consented.decide_for(conn, who, person, VITAL_CATEGORIES)).refusal
            reason = reason or "no consent valid now"
            await consented.log_read(
                request, who, owner, person, ["patient"], None, "denied", reason
            )
            raise FhirError(403, reason)
        await consented.log_read(
            request,
            who,
            owner,
            person,
            ["patient"],
            None,
            "allowed",
            "consent valid (pseudonymous patient)",
        )
    else:
        row = await _owner_patient(conn, person)
        if row is None:
            await consented.log_read(
                request, who, None, person, ["patient"], None, "denied", "not found"
            )
            raise FhirError(404, "Patient not found")
        await consented.log_read(
            request,
            who,
            who.tenant,
            person,
            ["patient"],
            None,
            "allowed",
            "by role (pseudonymous patient)",
        )
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
    await _deny_role(request, who, None, ["device"])
    if not _DEVICE_ID.match(device_id):
        await consented.log_read(request, who, None, None, ["device"], None, "denied", "not found")
        raise FhirError(404, "Device not found")
    if who.role is Role.CLINICIAN:
        cur = await conn.execute(q.CONSENTED_DEVICE, {"device": device_id, "org": who.org or ""})
        found = await cur.fetchone()
        if found is None:
            await consented.log_read(
                request, who, None, None, ["device"], None, "denied", "not found or no consent"
            )
            raise FhirError(404, "Device not found")
        await consented.log_read(
            request, who, found[1], found[7], ["device"], None, "allowed", "consent valid"
        )
        row = found[:7]
    else:
        cur = await conn.execute(q.OWNER_DEVICE, {"device": device_id})
        row = await cur.fetchone()
        if row is None:
            await consented.log_read(
                request, who, None, None, ["device"], None, "denied", "not found"
            )
            raise FhirError(404, "Device not found")
        await consented.log_read(
            request, who, who.tenant, None, ["device"], None, "allowed", "by role"
        )
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
