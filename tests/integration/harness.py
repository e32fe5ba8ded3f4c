"""Shared pieces for integration tests: seeding, a running gateway, publishing, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import aiomqtt
import jsonschema
import orjson
import psycopg

from firmware_contracts.alarm_message import alarm_message_schema
from gateway import bootstrap
from gateway.adapters.postgres import registry_repo as repo
from gateway.config.settings import Settings
from gateway.entrypoints.runtime import worker_database_url
from gateway.worker.service import GatewayService
from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.services import Mosquitto

MODELS = [
    repo.DeviceModel("t-gps", "Acme", "GPS", "gps_alarm", 60),
    repo.DeviceModel("t-scale", "Acme", "Scale", "scale", 300),
    repo.DeviceModel("t-bp", "Acme", "BP", "blood_pressure_monitor", 300),
    repo.DeviceModel("t-lock", "Acme", "Lock", "door_lock", 120),
]


@dataclass
class Seed:
    tenant: str
    persons: dict[str, UUID]
    devices: dict[str, str]  # device id -> model id


async def seed(
    url: str,
    tenant: str = "kommun-a",
    org: str = "212000-0001",
    devices: dict[str, str] | None = None,
    since: datetime | None = None,
) -> Seed:
    """A tenant, one person per device, each device assigned from ``since``."""
    devices = devices or {
        "gps-1": "t-gps", "scale-1": "t-scale", "bp-1": "t-bp", "lock-1": "t-lock"
    }  # fmt: skip
    since = since or datetime.now(UTC) - timedelta(days=10)
    persons: dict[str, UUID] = {}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await repo.create_tenant(conn, tenant, tenant.title(), "municipality", org)
        for model in MODELS:
            await repo.ensure_device_model(conn, model)
        for n, (device_id, model_id) in enumerate(devices.items(), start=1):
            person = await repo.create_person(conn, tenant, f"{tenant}-brukare-{n}")
            persons[device_id] = person
            await repo.register_device(conn, tenant, device_id, model_id)
            await repo.assign_device(conn, device_id, person, since)
    return Seed(tenant, persons, devices)


class Bearer(Mapping[str, str]):
    """An ``Authorization`` header whose token is minted each time a request reads it.

    Test modules make their callers' headers at import, which is at collection, and a
    module's tests may run more than a token's life later (in CI, test_fhir's 600 s
    tokens had expired by the time its tests ran, 16 minutes into the suite)."""

    def __init__(self, mint_token: Callable[[], str]) -> None:
        self._mint = mint_token

    def __getitem__(self, key: str) -> str:
        if key != "Authorization":
            raise KeyError(key)
        return f"Bearer {self._mint()}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1


def settings_for(mqtt_url: str, database_url: str, **overrides: Any) -> Settings:
    import tempfile

    values: dict[str, Any] = {
        "data_dir": tempfile.mkdtemp(prefix="wg-test-data-"),
        "mqtt_url": mqtt_url,
        "database_url": database_url,
        "mqtt_client_id": "wg-test-gateway",
        "api_db_password": API_PASSWORD,
        "worker_db_password": WORKER_PASSWORD,
        "mode": "development",
        "batch_max_delay_ms": 10,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[GatewayService]:
    assert settings.database_url and settings.mqtt_url
    service = bootstrap.worker(  # as the workers run: role wg_worker, no DDL rights
        settings,
        database_url=worker_database_url(settings, settings.database_url),
        mqtt_url=settings.mqtt_url,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    waiter = asyncio.create_task(service.ready())
    done, _ = await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raise what stopped it
    assert waiter in done, "gateway did not connect to the broker"
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def payload(type_: str, msg_id: str, ts: str | None = None, **fields: Any) -> bytes:
    return orjson.dumps({"v": 1, "type": type_, "id": msg_id, "ts": ts or now_iso(), **fields})


async def publish(
    mqtt_url: str, messages: list[tuple[str, bytes]], *, client_id: str = "test-pub"
) -> None:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port), identifier=client_id) as client:
        for topic, body in messages:
            await client.publish(topic, body, qos=1)


async def scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return row[0] if row else None


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 20, what: str = "condition"
) -> None:
    """Poll an async condition until true (we wait *for* something; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_count(url: str, query: str, expected: int, timeout: float = 20) -> None:
    last: list[Any] = [None]

    async def check() -> bool:
        last[0] = await scalar(url, query)
        return bool(last[0] == expected)

    try:
        await wait_for(check, timeout, query)
    except TimeoutError:
        raise TimeoutError(f"{query!r}: expected {expected}, last saw {last[0]}") from None


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a real uvicorn server on a free loopback port; yields its base URL."""
    import uvicorn

    from tests.services import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def gateway_with_api(settings: Settings) -> AsyncIterator[tuple[str, GatewayService]]:
    """The whole product as ``welfare-gateway run`` has it: a running gateway and its API
    (role wg_api; reaching the gateway's alarm and lock services over the broker) on a
    real HTTP server; yields the API's base URL and the gateway."""
    from gateway.adapters.embedded import with_user
    from gateway.bootstrap import api_app

    assert settings.database_url
    async with running_gateway(settings) as gw:
        app = api_app(
            settings,
            api_database_url=with_user(settings.database_url, "wg_api", API_PASSWORD),
            metrics_registry=gw.metrics.registry,
            mqtt_url=settings.mqtt_url,
        )
        async with serving(app) as base:
            yield base, gw


#: the published alarm message's schema (docs/contract.md#alarm-messages), formats checked
ALARM_MESSAGE = jsonschema.Draft202012Validator(
    alarm_message_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def alarm_message_errors(message: Any) -> list[str]:
    """Why ``message`` is not a valid alarm message (empty if it is)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(message)'}: {e.message}"
            for e in ALARM_MESSAGE.iter_errors(message)]  # fmt: skip


class Operator:
    """An operator's MQTT client: collects every alarm message of one tenant, and checks
    each against the alarm message's schema (``operator()`` fails the test on exit if one
    did not validate)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrival: dict[str, float] = {}  # event id -> time.monotonic() when received
        self.invalid: list[tuple[dict[str, Any], list[str]]] = []

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["kind"] == kind]

    async def wait(self, predicate: Any, what: str, timeout: float = 15) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        async def check() -> bool:
            found[:] = [m for m in self.messages if predicate(m)]
            return bool(found)

        await wait_for(check, timeout, what)
        return found[0]


@contextlib.asynccontextmanager
async def operator(mqtt_url: str, tenant: str) -> AsyncIterator[Operator]:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    op = Operator()
    async with aiomqtt.Client(host, int(port), identifier=f"operator-{tenant}") as client:
        await client.subscribe(f"tenants/{tenant}/alarms", qos=1)

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                event = orjson.loads(message.payload)
                op.arrival.setdefault(event["event_id"], time.monotonic())
                op.messages.append(event)
                if errors := alarm_message_errors(event):
                    op.invalid.append((event, errors))

        task = asyncio.create_task(collect())
        try:
            yield op
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert not op.invalid, f"alarm messages not valid (docs/contract.md): {op.invalid}"


@contextlib.asynccontextmanager
async def api_replica(
    mqtt_url: str, database_url: str, jwt_secret: str
) -> AsyncIterator[Any]:
    """An API process of its own, as ``welfare-gateway api`` builds it: no gateway
    objects, only URLs (it reaches the workers over the broker); yields an
    ``httpx.AsyncClient`` on its real HTTP server."""
    import httpx
    from prometheus_client import CollectorRegistry

    from gateway.adapters.embedded import with_user
    from gateway.bootstrap import api_app

    settings = settings_for(mqtt_url, database_url, jwt_secret=jwt_secret,
                            mqtt_client_id="wg-api")  # fmt: skip
    app = api_app(settings, api_database_url=with_user(database_url, "wg_api", API_PASSWORD),
                     metrics_registry=CollectorRegistry(), mqtt_url=mqtt_url)  # fmt: skip
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=15) as http:
        yield http


@contextlib.contextmanager
def password_broker(workdir: Path, user: str, password: str) -> Iterator[Mosquitto]:
    """A private Mosquitto that admits only ``user`` with ``password`` (a password file,
    no anonymous access)."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwords = workdir / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), user, password],
                   check=True)  # fmt: skip
    passwords.chmod(0o600)
    config = ["allow_anonymous false", f"password_file {passwords}"]
    if os.geteuid() == 0:  # else Mosquitto drops to user "mosquitto" and cannot read it
        config.append("user root")
    broker = Mosquitto(workdir / "mosquitto-pw", extra_config=config).start()
    try:
        yield broker
    finally:
        broker.stop()
