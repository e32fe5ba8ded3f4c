"""The FastAPI application, assembled from parts :func:`gateway.bootstrap.api_app` builds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from api import http_headers, openapi_errors, problems
from api.authenticator import Authenticator
from api.fhir.ids import IdCodec
from api.rate_limits import ApiLimits
from api.routes import alarms as alarm_routes
from api.routes import consents, console, health, quarantine, readings, registry, rules, stats
from api.routes import export as export_routes
from api.routes import fhir as fhir_routes
from api.routes import imports as import_routes
from api.routes import locks as lock_routes
from api.routes import log_review as log_review_routes
from api.routes import moves as move_routes
from api.routes import payer as payer_routes
from api.routes import reports as report_routes
from api.routes import stays as stay_routes
from api.routes import supervision as supervision_routes
from api.routes import units as unit_routes
from gateway import __version__
from gateway.adapters.mosquitto.service import BrokerAccess
from gateway.config.settings import Settings
from gateway.control.worker_link import WorkerLink
from gateway.support.pii import PinCipher

LINK_CONNECT_WAIT_S = 5.0


@dataclass(frozen=True)
class ApiParts:
    """What the routes reach through ``app.state``, built by :func:`gateway.bootstrap.api_app`."""

    pool: AsyncConnectionPool[Any]
    workers: WorkerLink | None  # None: no broker; the routes that need a worker say 503
    authenticator: Authenticator
    api_limits: ApiLimits
    metrics_registry: CollectorRegistry
    fhir_ids: IdCodec
    broker_access: BrokerAccess | None
    pin_cipher: PinCipher | None


def assemble(settings: Settings, parts: ApiParts) -> FastAPI:
    """The FastAPI application: middleware, error handling, routes and the lifespan that
    opens the pool and the link to the workers."""
    pool, link = parts.pool, parts.workers

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        stop = asyncio.Event()
        task = asyncio.create_task(link.run(stop), name="worker-link") if link else None
        if link is not None:  # serve even while the broker is away; those routes say 503
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.connected.wait(), LINK_CONNECT_WAIT_S)
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await pool.close()

    app = FastAPI(
        title="welfare-gateway API",
        version=__version__,
        description="Registry, readings and operations of the welfare-technology gateway.",
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.authenticator = parts.authenticator
    app.state.api_limits = parts.api_limits
    app.state.metrics_registry = parts.metrics_registry
    app.state.workers = link
    app.state.alarm_settings = settings.alarms
    app.state.lock_settings = settings.locks
    app.state.console = settings.console
    app.state.fhir_ids = parts.fhir_ids
    app.state.broker_access = parts.broker_access
    app.state.pin_cipher = parts.pin_cipher
    problems.install(app)
    openapi_errors.install(app)
    http_headers.install(
        app, cors_origins=settings.cors_origins, map_tile_url=settings.console.map_tile_url
    )
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(import_routes.router)
    app.include_router(export_routes.router)
    app.include_router(readings.router)
    app.include_router(alarm_routes.router)
    app.include_router(rules.router)
    app.include_router(payer_routes.router)
    app.include_router(move_routes.router)
    app.include_router(stay_routes.router)
    app.include_router(stats.router)
    app.include_router(report_routes.router)
    app.include_router(consents.router)
    app.include_router(log_review_routes.router)
    app.include_router(fhir_routes.router)
    app.include_router(lock_routes.router)
    app.include_router(quarantine.router)
    app.include_router(unit_routes.router)
    app.include_router(supervision_routes.router)
    app.include_router(console.router)
    return app
