"""The OpenAPI document names every error a REST operation can answer, as RFC 9457
problem details (``application/problem+json``), so that clients and contract tests see
what the API really does. FHIR operations document their OperationOutcomes themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "With 422: which field, and why.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
WHY = {
    "400": "The request cannot be read (e.g. a body that is not JSON)",
    "401": "Missing or invalid bearer token",
    "403": "The caller's role may not do this, or the read is not covered by a consent",
    "404": "Not found in the caller's tenant (another tenant's resources are not revealed)",
    "409": "Conflicts with the registry's state or stored data",
    "422": "A field is not valid (`errors` names it), or a value cannot be stored",
    "429": "Over the caller's rate limit (see Retry-After)",
    "503": "The database, broker or alarm service is unavailable",
}


def _codes(path: str, method: str, op: dict[str, Any]) -> list[str]:
    codes = ["400", "422"] if op.get("parameters") or op.get("requestBody") else []
    if op.get("security"):
        codes += ["401", "403", "429", "503"]
    # a path id, or an id in the body or query (a person, a device, a staff member)
    if "{" in path or op.get("requestBody") or op.get("parameters"):
        codes.append("404")
    if method in ("post", "put"):
        codes.append("409")
    return codes


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        ref = {"$ref": "#/components/schemas/Problem"}
        for path, ops in schema.get("paths", {}).items():
            if path.startswith("/fhir/"):
                continue
            for method, op in ops.items():
                responses = op.setdefault("responses", {})
                for code in _codes(path, method, op):
                    responses[code] = {
                        "description": WHY[code],
                        "content": {PROBLEM: {"schema": ref}},
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
