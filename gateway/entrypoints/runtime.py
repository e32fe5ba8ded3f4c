"""Resolving where the database and broker are (embedded or by URL), and serving until
told to stop: the gateway worker and the API in one process (``run``, the demo), or each
on its own (``worker``, ``api``: the API reaches the workers over the broker either way).
The worker never imports the API's web stack."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import bootstrap
from gateway.adapters.embedded import EmbeddedBroker, EmbeddedPostgres, with_user
from gateway.adapters.postgres.migrate import Migrated, migrate
from gateway.config.settings import Settings, SettingsError
from gateway.support import heap
from gateway.worker.service import GatewayService

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    database_url: str  # the owner's (migrate)
    api_database_url: str  # role wg_api
    mqtt_url: str
    worker_database_url: str  # role wg_worker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_database_url(settings: Settings, database_url: str) -> str:
    if settings.api_database_url:
        return settings.api_database_url
    return with_user(database_url, "wg_api", settings.api_db_password.get_secret_value())


def worker_database_url(settings: Settings, database_url: str) -> str:
    if settings.worker_database_url:
        return settings.worker_database_url
    return with_user(database_url, "wg_worker", settings.worker_db_password.get_secret_value())


def migrate_database(settings: Settings, database_url: str) -> Migrated:
    """``welfare-gateway migrate``: the database in its final shape (as the owner)."""
    return migrate(
        database_url,
        api_password=settings.api_db_password.get_secret_value(),
        worker_password=settings.worker_db_password.get_secret_value(),
        timescaledb=settings.timescaledb,
        retention=settings.retention,
    )


def _endpoints(settings: Settings, database_url: str, mqtt_url: str) -> Endpoints:
    return Endpoints(
        database_url,
        api_database_url(settings, database_url),
        mqtt_url,
        worker_database_url(settings, database_url),
    )


@contextlib.asynccontextmanager
async def endpoints(
    settings: Settings, *, pgdata: Path | None = None, ephemeral: bool = False
) -> AsyncIterator[Endpoints]:
    """Start what is embedded, migrate the database (as the owner), and yield the URLs."""
    pg: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(pgdata or settings.data_dir / "pg", delete_on_stop=ephemeral)
            database_url = await asyncio.to_thread(pg.start)
        else:
            database_url = settings.database_url
        migrated = await asyncio.to_thread(migrate_database, settings, database_url)
        for note in migrated.notes:
            log.warning(note)
        if settings.mqtt_url is None:
            broker = EmbeddedBroker(free_port())
            await broker.start()
            mqtt_url = broker.url
        else:
            mqtt_url = settings.mqtt_url
        yield _endpoints(settings, database_url, mqtt_url)
    finally:
        if broker is not None:
            await broker.stop()
        if pg is not None:
            await asyncio.to_thread(pg.stop)


def embedded_overrides(settings: Settings) -> Settings:
    """amqtt speaks MQTT 3.1.1 without shared subscriptions."""
    if settings.mqtt_url is None:
        return settings.model_copy(update={"mqtt_protocol": 4, "mqtt_shared_group": None})
    return settings


def split_endpoints(settings: Settings) -> Endpoints:
    """``worker`` and ``api`` run beside each other: they share a database and a broker
    given by URL (embedded ones would be private to one process)."""
    if settings.database_url is None or settings.mqtt_url is None:
        raise SettingsError(
            "worker and api need database_url and mqtt_url (WG_DATABASE_URL, "
            "WG_MQTT_URL); for everything in one process use `welfare-gateway run`"
        )
    return _endpoints(settings, settings.database_url, settings.mqtt_url)


def _api_app(settings: Settings, ep: Endpoints, metrics_registry: CollectorRegistry) -> FastAPI:
    return bootstrap.api_app(settings, api_database_url=ep.api_database_url,
                             metrics_registry=metrics_registry, mqtt_url=ep.mqtt_url)  # fmt: skip


async def _serve_http(app: FastAPI, settings: Settings, port: int, stop: asyncio.Event) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.api_host, port=port, log_config=None, access_log=False,
            lifespan="on",
        )
    )  # fmt: skip
    task = asyncio.create_task(server.serve(), name="api")
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task


async def serve(
    settings: Settings,
    ep: Endpoints,
    stop: asyncio.Event,
    api_port: int,
    gateway: GatewayService | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Gateway worker and the HTTP API in one process until ``stop``. ``ready`` is set
    once the worker takes messages and the API hears it over the broker."""
    gateway = gateway or bootstrap.worker(
        settings, database_url=ep.worker_database_url, mqtt_url=ep.mqtt_url
    )
    app = _api_app(settings, ep, gateway.metrics.registry)
    api_stop = asyncio.Event()
    api_task = asyncio.create_task(_serve_http(app, settings, api_port, api_stop))

    async def signal_ready(event: asyncio.Event) -> None:
        await gateway.ready()
        await app.state.workers.worker_online.wait()
        event.set()

    announce = asyncio.create_task(signal_ready(ready)) if ready is not None else None
    try:
        await gateway.run(stop, started=heap.settle)
    finally:
        if announce is not None:
            announce.cancel()
        api_stop.set()
        await api_task


async def serve_worker(settings: Settings, ep: Endpoints, stop: asyncio.Event) -> None:
    """The gateway worker alone, with its metrics on ``api_host:metrics_port``."""
    from prometheus_client import start_http_server

    gateway = bootstrap.worker(
        settings, database_url=ep.worker_database_url, mqtt_url=ep.mqtt_url
    )
    server, thread = start_http_server(
        settings.metrics_port, settings.api_host, registry=gateway.metrics.registry
    )
    try:
        await gateway.run(stop, started=heap.settle)
    finally:
        server.shutdown()
        thread.join(5)


async def serve_api(settings: Settings, ep: Endpoints, stop: asyncio.Event) -> None:
    """The API alone (stateless; run as many as needed beside the workers)."""
    from prometheus_client import REGISTRY

    await _serve_http(_api_app(settings, ep, REGISTRY), settings, settings.api_port, stop)
