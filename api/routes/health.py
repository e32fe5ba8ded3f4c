"""Liveness/readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    responses={
        200: {
            "description": "Up: the database answers. ``workers_online``: gateway workers this "
            "API process hears from over the broker (null: no broker configured)"
        },
        503: {"description": "Degraded: the database does not answer (same body shape)"},
    },
)
async def healthz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.pool.connection(timeout=2) as conn:
            await conn.execute("select 1")
        database = "up"
    except Exception:
        database = "down"
    status = 200 if database == "up" else 503
    link = request.app.state.workers
    body = {"status": "ok" if status == 200 else "degraded", "database": database,
            "workers_online": len(link.workers) if link is not None else None}  # fmt: skip
    return JSONResponse(body, status_code=status)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry),
                    media_type=CONTENT_TYPE_LATEST)  # fmt: skip
