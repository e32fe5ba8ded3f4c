"""Nothing lost: SIGKILL of the gateway, a database outage, two workers sharing the load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import API_PASSWORD, WORKER_PASSWORD
from tests.integration.harness import (
    payload,
    publish,
    running_gateway,
    scalar,
    seed,
    settings_for,
    wait_count,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


def _gateway_process(mqtt_url: str, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WG_DATABASE_URL": database_url,
        "WG_MQTT_URL": mqtt_url,
        "WG_API_PORT": "0",
        "WG_API_DB_PASSWORD": API_PASSWORD,
        "WG_WORKER_DB_PASSWORD": WORKER_PASSWORD,
        "WG_MODE": "development",  # test passwords on private loopback services
        "WG_MQTT_CLIENT_ID": "wg-kill-test",
        "WG_BATCH_MAX_DELAY_MS": "20",
        "WG_DATA_DIR": str(log.parent / "data"),
        # one device sends the whole stream here; the per-device limit is not under test
        "WG_LIMITS__DEVICE_BURST": "100000",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def wait_until_serving(mqtt_url: str, database_url: str) -> None:
    """A gateway in another process is serving once one of our probes is stored."""
    probes = iter(range(10_000))

    async def probe_stored() -> bool:
        n = next(probes)
        await publish(mqtt_url, [("devices/scale-1/telemetry", payload("weight", f"probe-{n}",
                                                                       kg=70))])  # fmt: skip
        return bool(await scalar(database_url, "select count(*) from readings") > 0)

    await wait_for(probe_stored, 60, "the gateway process to serve")


async def test_sigkill_mid_stream_loses_nothing_and_stores_once(
    mosquitto, database_url, tmp_path
) -> None:
    await seed(database_url)
    log = tmp_path / "gateway.log"
    proc = _gateway_process(mosquitto.url, database_url, log)
    try:
        # the gateway is up once a probe message is stored
        await wait_until_serving(mosquitto.url, database_url)

        total = 3000
        messages = [
            ("devices/gps-1/heartbeat", payload("heartbeat", f"hb-{i}", battery_percent=50))
            for i in range(total)
        ]
        publisher = asyncio.create_task(publish(mosquitto.url, messages, client_id="kill-pub"))

        async def some_stored() -> bool:
            return bool(await scalar(database_url, "select count(*) from device_health") >= 300)

        await wait_for(some_stored, 30, "first heartbeats stored")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stored_at_kill = await scalar(database_url, "select count(*) from device_health")
        assert stored_at_kill < total, "kill came too late to prove anything"
        await publisher  # the broker keeps accepting while the gateway is dead

        proc = _gateway_process(mosquitto.url, database_url, log)
        await wait_count(database_url, "select count(*) from device_health", total, timeout=90)
        assert (
            await scalar(database_url, "select count(distinct msg_id) from device_health") == total
        )
    finally:
        proc.terminate()
        proc.wait(30)


async def test_sigterm_flushes_and_exits_cleanly(mosquitto, database_url, tmp_path) -> None:
    await seed(database_url)
    proc = _gateway_process(mosquitto.url, database_url, tmp_path / "gw.log")
    try:
        await wait_until_serving(mosquitto.url, database_url)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


async def test_database_outage_loses_nothing_and_resumes(mosquitto, private_postgres) -> None:
    url = private_postgres.url_for_test
    await seed(url)
    async with running_gateway(settings_for(mosquitto.url, url)) as gw:
        await publish(mosquitto.url, [("devices/scale-1/telemetry", payload("weight", "w0",
                                                                            kg=70))])  # fmt: skip
        await wait_count(url, "select count(*) from readings", 1)

        await asyncio.to_thread(private_postgres.halt)
        batch = [("devices/gps-1/heartbeat", payload("heartbeat", f"down-{i}")) for i in range(500)]
        await publish(mosquitto.url, batch, client_id="outage-pub")

        async def write_failed() -> bool:
            return bool(gw.metrics.write_failures._value.get() > 0)

        await wait_for(write_failed, 20, "the writer to notice the outage")
        await asyncio.to_thread(private_postgres.resume)
        await wait_count(url, "select count(*) from device_health", 500, timeout=60)
        assert gw.metrics.database_up._value.get() == 1


async def test_two_workers_on_one_shared_subscription_store_everything_once(
    mosquitto, database_url
) -> None:
    await seed(database_url)
    a = settings_for(mosquitto.url, database_url, mqtt_client_id="worker-a")
    b = settings_for(mosquitto.url, database_url, mqtt_client_id="worker-b")
    total = 2000
    async with running_gateway(a) as gw_a, running_gateway(b) as gw_b:
        messages = [
            (f"devices/{d}/heartbeat", payload("heartbeat", f"{d}-{i}"))
            for i in range(total // 4)
            for d in ("gps-1", "scale-1", "bp-1", "lock-1")
        ]
        await publish(mosquitto.url, messages, client_id="share-pub")
        await wait_count(database_url, "select count(*) from device_health", total)
        got_a = gw_a.writer.stats.rows
        got_b = gw_b.writer.stats.rows
    assert got_a > 0 and got_b > 0, (got_a, got_b)
    assert got_a + got_b == total


async def test_broker_restart_gateway_reconnects_and_resumes(mosquitto, database_url) -> None:
    await seed(database_url)
    async with running_gateway(settings_for(mosquitto.url, database_url)) as gw:
        await publish(mosquitto.url, [("devices/scale-1/telemetry", payload("weight", "before",
                                                                            kg=70))])  # fmt: skip
        await wait_count(database_url, "select count(*) from readings", 1)
        generation = gw.consumer._generation
        await asyncio.to_thread(mosquitto.restart)  # same port; the broker forgot everything

        async def reconnected() -> bool:
            return gw.consumer.connected.is_set() and gw.consumer._generation > generation

        await wait_for(reconnected, 30, "the ingest session to come back")
        await publish(mosquitto.url, [("devices/scale-1/telemetry", payload("weight", "after",
                                                                            kg=71))])  # fmt: skip
        await wait_count(database_url, "select count(*) from readings", 2)
