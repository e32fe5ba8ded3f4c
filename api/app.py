"""FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from psycopg_pool import AsyncConnectionPool

from api import http_headers, openapi_errors, problems
from api.authenticator import Authenticator
from api.fhir.ids import IdCodec
from api.rate_limits import ApiLimits
from api.routes import alarms as alarm_routes
from api.routes import consents, console, health, quarantine, readings, registry, rules, stats
from api.routes import fhir as fhir_routes
from api.routes import locks as lock_routes
from gateway import __version__
from gateway.adapters.mosquitto.service import BrokerAccess
from gateway.config.settings import Settings
from gateway.control.worker_link import WorkerLink
from gateway.support.pii import PinCipher

LINK_CONNECT_WAIT_S = 5.0


def create_app(
    settings: Settings,
    *,
    api_database_url: str,
    metrics_registry: CollectorRegistry,
    mqtt_url: str | None = None,
) -> FastAPI:
    """The API. With ``mqtt_url`` it reaches the gateway workers over the broker (alarm
    acknowledge/resolve and stream, the console's live board, remote unlock); without,
    those answer 503 and everything read from the database works."""
    pool = AsyncConnectionPool(
        api_database_url, min_size=1, max_size=10, open=False, kwargs={"autocommit": False}
    )
    link = WorkerLink(mqtt_url, settings.mqtt_client_id) if mqtt_url else None

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
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.api_limits = ApiLimits(settings.limits)
    app.state.metrics_registry = metrics_registry
    app.state.workers = link
    app.state.alarm_settings = settings.alarms
    app.state.lock_settings = settings.locks
    app.state.console = settings.console
    # keys the opaque FHIR Observation ids (stable while jwt_secret is)
    app.state.fhir_ids = IdCodec((settings.fhir_id_key or settings.jwt_secret).get_secret_value())
    app.state.broker_access = BrokerAccess.from_settings(settings)
    app.state.pin_cipher = PinCipher.from_settings(
        {k: v.get_secret_value() for k, v in settings.pii_keys.items()}, settings.pii_active_key
    )
    problems.install(app)
    openapi_errors.install(app)
    http_headers.install(
        app, cors_origins=settings.cors_origins, map_tile_url=settings.console.map_tile_url
    )
    app.include_router(health.router)
    app.include_router(registry.router)
    app.include_router(readings.router)
    app.include_router(alarm_routes.router)
    app.include_router(rules.router)
    app.include_router(stats.router)
    app.include_router(consents.router)
    app.include_router(fhir_routes.router)
    app.include_router(lock_routes.router)
    app.include_router(quarantine.router)
    app.include_router(console.router)
    return app
