"""RFC 9457 problem details for every error the REST API returns."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.adapters.postgres.registry_repo import RegistryError

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        return problem(422, "Unprocessable Content", "request is not valid", errors=errors)

    @app.exception_handler(RegistryError)
    async def registry_error(_: Request, exc: RegistryError) -> JSONResponse:
        return problem(exc.status, _title(exc.status), str(exc))

    # The database is the last line of validation: a value it cannot hold (a NUL byte in a
    # text, a range whose end precedes its start) is the caller's error, not a crash.
    @app.exception_handler(psycopg.DataError)
    async def data_error(_: Request, exc: psycopg.DataError) -> JSONResponse:
        detail = exc.diag.message_primary if exc.diag.message_primary else str(exc)
        return problem(422, _title(422), f"a value cannot be stored: {detail}")

    @app.exception_handler(psycopg.IntegrityError)
    async def integrity_error(_: Request, exc: psycopg.IntegrityError) -> JSONResponse:
        name = exc.diag.constraint_name or "a constraint"
        return problem(409, _title(409), f"conflicts with existing data ({name})")

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return problem(503, _title(503), "database unavailable")


def _title(status: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        413: "Content Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Content",
        429: "Too Many Requests",
        503: "Service Unavailable",
    }.get(status, "Error")
