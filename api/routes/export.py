"""The full export of the caller's tenant for a change of supplier (issue #19.6;
docs/export.md): ``GET /api/v1/export`` streams a zip of every table the tenant owns (CSV
and JSON Schema), its vital signs as FHIR R4 Bundles and a manifest with checksums.

Only the tenant's administrator may export (the export holds every resident's personal
data, personal identity numbers in clear among it); a platform administrator may not (it
reads no tenant's personal data through the API). The export is written to the tenant's
access log before the first byte is sent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from psycopg_pool import AsyncConnectionPool

from api.auth import Principal, Role
from api.consented import ReadRecord, log_read
from api.deps import TenantConn, require
from api.fhir import resources as fhir
from api.fhir.ids import IdCodec
from gateway.adapters.postgres import export as export_files
from gateway.adapters.postgres import export_queries as q
from gateway.domain.consent import CATEGORIES
from gateway.support.pii import PinCipher

router = APIRouter(prefix="/api/v1", tags=["export"])
log = logging.getLogger(__name__)

EXPORTERS = (Role.TENANT_ADMIN,)
#: what the access-log entry of an export names: everything
EXPORT_CATEGORIES = ["registry", "personal_identity_number", *CATEGORIES, "access_log"]
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def observation_renderer(codec: IdCodec) -> Callable[[tuple[Any, ...]], dict[str, Any]]:
    """The FHIR API's Observation (same resource, same id) of an export's vitals row."""

    def render(row: tuple[Any, ...]) -> dict[str, Any]:
        vital = fhir.VitalRow(*row)
        ident = codec.encode(vital.person_id, vital.ts, vital.obs, vital.device_id,
                             vital.msg_id)  # fmt: skip
        return fhir.observation(vital, ident)

    return render


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The export, a zip (manifest.json is its last file)",
              "content": {"application/zip": {"schema": {"type": "string",
                                                         "format": "binary"}}}},
        409: {"description": "Personal identity numbers are stored but cannot be read",
              "content": _PROBLEM},
    },
)  # fmt: skip
async def export(
    request: Request, conn: TenantConn, who: Principal = require(*EXPORTERS),
    purpose: str = Query("change of supplier", min_length=1, max_length=200,
                         description="Why: written to the access log"),
) -> StreamingResponse:  # fmt: skip
    """Everything the caller's tenant owns, streamed as a zip (docs/export.md)."""
    cipher: PinCipher | None = request.app.state.pin_cipher
    if cipher is None:
        row = await (await conn.execute(q.PINS_STORED, (who.tenant,))).fetchone()
        if row and row[0]:
            raise HTTPException(
                409,
                "personal identity numbers are stored but this API has "
                "no pii_keys to read them; configure them",
            )
    await log_read(request, who, ReadRecord(
        owner=who.tenant, person_id=None, categories=EXPORT_CATEGORIES, purpose=purpose,
        outcome="allowed", reason="full export of the tenant"))  # fmt: skip
    pool: AsyncConnectionPool = request.app.state.pool
    render = observation_renderer(request.app.state.fhir_ids)
    tenant = who.tenant
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    async def body() -> AsyncIterator[bytes]:
        async with pool.connection(timeout=10) as export_conn:
            try:
                async for data in export_files.export_tenant(
                    export_conn, tenant, export_files.ZipSink(), cipher=cipher,
                    observation=render, schema_version=export_files.schema_version(),
                ):  # fmt: skip
                    yield data
            except Exception:  # the client gets a zip without manifest.json: incomplete
                log.exception("export failed", extra={"tenant": tenant})
                raise

    return StreamingResponse(body(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="export-{tenant}-{stamp}.zip"',
        "Cache-Control": "no-store",
    })  # fmt: skip
