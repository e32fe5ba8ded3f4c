"""Resolving where the database and broker are (embedded or by URL) and serving
gateway + API in one process until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from api.app import create_app
from gateway import heap
from gateway.app import GatewayService
from gateway.embedded import EmbeddedBroker, EmbeddedPostgres, with_user
from gateway.settings import Settings
from gateway.storage.migrate import migrate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    database_url: str
    api_database_url: str
    mqtt_url: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_database_url(settings: Settings, database_url: str) -> str:
    if settings.api_database_url:
        return settings.api_database_url
    return with_user(database_url, "wg_api", settings.api_db_password.get_secret_value())


@contextlib.asynccontextmanager
async def endpoints(
    settings: Settings, *, pgdata: Path | None = None, ephemeral: bool = False
) -> AsyncIterator[Endpoints]:
    """Start what is embedded, migrate the database, and yield the URLs to use."""
    pg: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres(pgdata or settings.data_dir / "pg", delete_on_stop=ephemeral)
            database_url = await asyncio.to_thread(pg.start)
        else:
            database_url = settings.database_url
        await asyncio.to_thread(
            migrate, database_url, api_password=settings.api_db_password.get_secret_value()
        )
        if settings.mqtt_url is None:
            broker = EmbeddedBroker(free_port())
            await broker.start()
            mqtt_url = broker.url
        else:
            mqtt_url = settings.mqtt_url
        yield Endpoints(database_url, api_database_url(settings, database_url), mqtt_url)
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


async def serve(
    settings: Settings,
    ep: Endpoints,
    stop: asyncio.Event,
    api_port: int,
    gateway: GatewayService | None = None,
) -> None:
    """Gateway ingest and the HTTP API until ``stop``."""
    gateway = gateway or GatewayService(
        settings, database_url=ep.database_url, mqtt_url=ep.mqtt_url
    )
    app = create_app(
        settings,
        api_database_url=ep.api_database_url,
        metrics_registry=gateway.metrics.registry,
        alarms=gateway.alarms,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.api_host, port=api_port, log_config=None, access_log=False,
            lifespan="on",
        )
    )  # fmt: skip
    api_task = asyncio.create_task(server.serve(), name="api")
    try:
        await gateway.run(stop, started=heap.settle)
    finally:
        server.should_exit = True
        await api_task
