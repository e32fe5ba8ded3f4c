"""Bulk onboarding (issue #19.5): a whole file of device models, persons, devices and
assignments in one request and one transaction, with a per-row report.

``POST /api/v1/imports?dry_run=true`` (the default) checks the file against the registry
and changes nothing; ``dry_run=false`` applies it, all or nothing. One request, however
many rows: the per-caller rate limit counts it once. The formats: docs/onboarding.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Principal, Role
from api.deps import TenantConn, require
from api.problems import problem
from gateway.adapters.postgres import onboarding
from gateway.domain import onboarding as ob
from gateway.support.pii import PinCipher, normalise_pin

router = APIRouter(prefix="/api/v1", tags=["registry"])

#: who imports: the municipality's administrator; a platform administrator (also device
#: models, the platform's catalogue) in the tenant of its token
IMPORTERS = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
MAX_BYTES = 32 * 1024 * 1024
MEDIA_TYPES = {"text/csv": ob.Format.CSV, "application/json": ob.Format.JSON}

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_ANY_ROWS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
_REQUEST_BODY = {
    "required": True,
    "description": "One import file (docs/onboarding.md): CSV with a header row and a"
    " `kind` column, or JSON (an object of lists, or a list of objects with `kind`).",
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/json": {"schema": {"anyOf": [
            {"type": "object", "additionalProperties": False,
             "properties": {key: _ANY_ROWS for key in ob.LISTS}},
            _ANY_ROWS,
        ]}},
    },
}  # fmt: skip


class RowOut(BaseModel):
    row: str = Field(description='"line 7" (CSV; the header is line 1) or "devices[3]" (JSON)')
    kind: str | None
    action: str = Field(description="create, unchanged or error")


class ErrorOut(BaseModel):
    row: str = Field(description='The row ("line 7", "devices[3]"), or "file"')
    column: str | None = Field(description="The column (CSV) or field (JSON)")
    message: str


class ImportReport(BaseModel):
    format: str
    dry_run: bool
    applied: bool = Field(description="True: the file is in the registry (one transaction)")
    summary: dict[str, int] = Field(description="Rows per action: create, unchanged, error")
    rows: list[RowOut]
    errors: list[ErrorOut]


@router.post(
    "/imports", response_model=ImportReport, openapi_extra={"requestBody": _REQUEST_BODY},
    responses={
        413: {"description": f"The file is larger than {MAX_BYTES // 2**20} MiB",
              "content": _PROBLEM},
        415: {"description": "Not text/csv or application/json", "content": _PROBLEM},
    },
)  # fmt: skip
async def import_file(
    request: Request, conn: TenantConn, who: Principal = require(*IMPORTERS),
    dry_run: bool = Query(default=True, description="true (default): check and report only;"
                          " false: apply the file, all or nothing"),
) -> Any:  # fmt: skip
    """Import a file into the caller's tenant. 200 with the per-row report when the file
    has no error (applied unless a dry run); 422 with the same report, every error naming
    its row and column, when it has any (then nothing is applied)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = MEDIA_TYPES.get(media)
    if fmt is None:
        raise HTTPException(415, "send the file as text/csv or application/json")
    data = await _body(request)
    cipher: PinCipher | None = request.app.state.pin_cipher
    pins = normalise_pin if cipher is not None else None
    parsed = await asyncio.to_thread(ob.parse, data, fmt, pins=pins)
    report = await onboarding.import_file(
        conn, who.tenant, parsed, dry_run=dry_run,
        may_add_models=who.role is Role.PLATFORM_ADMIN, cipher=cipher,
        broker_identities=request.app.state.broker_access is not None,
        actor=who.subject,
    )  # fmt: skip
    body = report.to_json()
    if report.ok:
        return body
    n = len({e["row"] for e in body["errors"]})
    detail = f"{n} row(s) of the file have errors; nothing was imported"
    response: JSONResponse = problem(422, "Unprocessable Content", detail, **body)
    return response


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BYTES:
        raise HTTPException(413, f"the file is larger than {MAX_BYTES // 2**20} MiB; split it")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BYTES:
            raise HTTPException(413, f"the file is larger than {MAX_BYTES // 2**20} MiB; split it")
        chunks.append(chunk)
    return b"".join(chunks)
