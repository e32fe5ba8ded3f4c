"""``welfare-gateway demo``: the whole product on one machine with nothing installed.

Embedded PostgreSQL (pgserver) in a temporary directory, an embedded amqtt broker on
loopback, the gateway, the API, a demo municipality with persons and devices, and a
small simulated fleet publishing over MQTT. Stops on Ctrl-C or after ``--duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from api.auth import Role, mint
from device_sims.runner import run_fleet
from device_sims.scenario import DeviceSpec, load_scenario
from gateway.app import GatewayService
from gateway.runtime import Endpoints, embedded_overrides, endpoints, free_port, serve
from gateway.settings import Settings
from gateway.storage import registry_repo as repo

DEMO_TENANT = "demo-kommun"
DEMO_ORG = "212000-0001"
SCENARIO = Path(__file__).resolve().parent.parent / "device_sims" / "scenarios"

MODELS = {
    "gps_alarm": repo.DeviceModel("demo-gps", "Demo Vendor", "GPS 1", "gps_alarm", 60),
    "scale": repo.DeviceModel("demo-scale", "Demo Vendor", "Scale 1", "scale", 300),
    "blood_pressure_monitor": repo.DeviceModel(
        "demo-bp", "Demo Vendor", "BP 1", "blood_pressure_monitor", 300
    ),
    "door_lock": repo.DeviceModel("demo-lock", "Demo Vendor", "Lock 1", "door_lock", 120),
}


async def seed(database_url: str, specs: list[DeviceSpec]) -> None:
    """Register the demo tenant, one person per simulated device, and assign each device
    from a week ago (so replayed history is attributed to its holder); a GPS alarm's
    wearer gets the safe zone the scenario describes."""
    since = datetime.now(UTC) - timedelta(days=7)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        cur = await conn.execute("select 1 from tenants where id = %s", (DEMO_TENANT,))
        if await cur.fetchone() is None:
            await repo.create_tenant(conn, DEMO_TENANT, "Demo kommun", "municipality",
                                     DEMO_ORG)  # fmt: skip
        for model in MODELS.values():
            await repo.ensure_device_model(conn, model)
        for n, spec in enumerate(specs, start=1):
            cur = await conn.execute("select 1 from devices where id = %s", (spec.device_id,))
            if await cur.fetchone() is not None:
                continue
            person = await repo.create_person(conn, DEMO_TENANT, f"Brukare {n}")
            await repo.register_device(
                conn, DEMO_TENANT, spec.device_id, MODELS[spec.device_type].id
            )
            await repo.assign_device(conn, spec.device_id, person, since)


async def _stored_counts(database_url: str) -> dict[str, Any]:
    tables = ("readings", "positions", "lock_events", "device_alarms", "device_health",
              "command_replies", "quarantine")  # fmt: skip
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        counts = {}
        for table in tables:
            cur = await conn.execute(f"select count(*) from {table}")
            row = await cur.fetchone()
            counts[table] = row[0] if row else 0
        return counts


async def run_demo(
    settings: Settings, *, duration: float | None, devices: int | None, scenario: Path | None
) -> int:
    settings = embedded_overrides(settings).model_copy(update={"mode": "development"})
    # Ctrl-C or the duration stops the fleet; the gateway stops once it has stored what
    # the fleet sent (its last "offline" statuses included).
    fleet_stop = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, fleet_stop.set)
    scenario_file = scenario or SCENARIO / "small_municipality_night.toml"
    loaded = load_scenario(scenario_file)
    specs = loaded.device_specs(devices)
    with tempfile.TemporaryDirectory(prefix="wg-demo-") as tmp:
        async with endpoints(settings, pgdata=Path(tmp) / "pg", ephemeral=True) as ep:
            await seed(ep.database_url, specs)
            api_port = (
                settings.api_port
                if settings.api_port and _port_free(settings.api_port)
                else free_port()
            )
            gateway = GatewayService(
                settings, database_url=ep.worker_database_url, mqtt_url=ep.mqtt_url
            )
            ready = asyncio.Event()
            server = asyncio.create_task(serve(settings, ep, stop, api_port, gateway, ready))
            await _wait_ready(ready, server)
            _print_banner(settings, ep, api_port, len(specs), scenario_file)
            host, port = _host_port(ep.mqtt_url)
            progress = asyncio.create_task(_progress(ep, fleet_stop))
            report = await run_fleet(
                specs, host=host, port=port, duration_s=duration, stop=fleet_stop,
                seed=loaded.seed,
            )  # fmt: skip
            fleet_stop.set()
            await gateway.wait_idle()
            stop.set()
            await server
            progress.cancel()
            counts = await _stored_counts(ep.database_url)
            print(f"\nsimulated devices published: {report.summary()}")
            print(f"stored: {counts}")
    return 0


async def _wait_ready(ready: asyncio.Event, server: asyncio.Task[None]) -> None:
    """Before the fleet connects: the worker takes messages and the API hears it. (The
    embedded amqtt broker can fail a connection that arrives while another client
    subscribes, so the gateway's own clients are settled first.)"""
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({waiter, server}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        waiter.cancel()
        server.result()  # raises what stopped it


async def _progress(ep: Endpoints, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)
        if stop.is_set():
            return
        with contextlib.suppress(psycopg.Error):
            counts = await _stored_counts(ep.database_url)
            print(f"stored so far: {counts}", flush=True)


def _print_banner(
    settings: Settings, ep: Endpoints, api_port: int, n_devices: int, scenario: Path
) -> None:
    token = mint(
        settings.jwt_secret.get_secret_value(),
        tenant=DEMO_TENANT, role=Role.TENANT_ADMIN, subject="demo-admin", org=DEMO_ORG,
        ttl_s=12 * 3600,
    )  # fmt: skip
    base = f"http://{settings.api_host}:{api_port}"
    print("welfare-gateway demo is running")
    print(f"  API:       {base}  (OpenAPI at {base}/docs, metrics at {base}/metrics)")
    print(f"  broker:    {ep.mqtt_url} (embedded amqtt)")
    print("  database:  embedded PostgreSQL (pgserver), temporary")
    print(f"  fleet:     {n_devices} simulated devices from {scenario.name}")
    print(f"  token:     {token}")
    print(f'  try:       curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/devices')
    print("Stop with Ctrl-C.", flush=True)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _host_port(url: str) -> tuple[str, int]:
    from gateway.mqtt.connection import BrokerAddress

    address = BrokerAddress.parse(url)
    return address.host, address.port
