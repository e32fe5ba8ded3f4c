"""The benchmarked system on this machine: a private Mosquitto, a private PostgreSQL
(pgserver), a seeded registry, and the gateway as its own process (``welfare-gateway run``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import psycopg

from bench.mosquitto import Mosquitto, free_port, wait_until
from gateway.adapters.embedded import EmbeddedPostgres, with_user
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres.migrate import migrate

API_PASSWORD = "bench-api"
WORKER_PASSWORD = "bench-worker"
TENANT = "bench"


@dataclass
class Stack:
    workdir: Path
    broker: Mosquitto
    database_url: str
    #: the private PostgreSQL (None when the stack was made from a URL alone)
    pg: EmbeddedPostgres | None = None

    def seed(self, prefix: str, devices: int, model: repo.DeviceModel) -> list[str]:
        ids = [f"{prefix}{i:05d}" for i in range(devices)]

        async def go() -> None:
            since = datetime.now(UTC) - timedelta(days=1)
            conn = await psycopg.AsyncConnection.connect(self.database_url)
            async with conn, conn.transaction():
                cur = await conn.execute("select 1 from tenants where id = %s", (TENANT,))
                if await cur.fetchone() is None:
                    await repo.create_tenant(conn, TENANT, "Bench", "municipality", "212000-9999")
                await repo.ensure_device_model(conn, model)
                for device_id in ids:
                    person = await repo.create_person(conn, TENANT, f"p-{device_id}")
                    await repo.register_device(conn, TENANT, device_id, model.id)
                    await repo.assign_device(conn, device_id, person, since)

        asyncio.run(go())
        return ids

    def env(self, **overrides: str) -> dict[str, str]:
        """What a gateway or API process of this stack is configured with."""
        return {
            **os.environ,
            "WG_DATABASE_URL": self.database_url,
            "WG_API_DATABASE_URL": with_user(self.database_url, "wg_api", API_PASSWORD),
            "WG_MQTT_URL": self.broker.url,
            "WG_API_PORT": "0",
            "WG_LOG_LEVEL": "WARNING",
            "WG_API_DB_PASSWORD": API_PASSWORD,
            "WG_WORKER_DB_PASSWORD": WORKER_PASSWORD,
            "WG_MODE": "development",  # the bench's own loopback services, test passwords
            "WG_DATA_DIR": str(self.workdir / "data"),
            "WG_METRICS_PORT": "0",
            **overrides,
        }

    def start_gateway(
        self,
        probe: str = "probe-",
        command: str = "run",
        python_args: tuple[str, ...] = (),
        **env_overrides: str,
    ) -> subprocess.Popen[bytes]:
        """The gateway (``run``: with the API; ``worker``: alone) in its own process
        (``python_args`` before ``-m gateway``, e.g. a profiler); returns once it stores a
        message from a device registered for the purpose (ids starting ``probe``: one per
        gateway started)."""
        proc = subprocess.Popen(
            [sys.executable, *python_args, "-m", "gateway", command],
            env=self.env(**env_overrides),
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "gateway.log").open("ab"),
        )  # fmt: skip
        probe_device = self.seed(probe, 1, repo.DeviceModel(
            "bench-probe", "Bench", "Probe", "scale", 3600))[0]  # fmt: skip
        n = 0

        def serving() -> bool:
            nonlocal n
            n += 1
            if proc.poll() is not None:
                raise RuntimeError("the gateway exited; see gateway.log")
            asyncio.run(_probe(self.broker.port, probe_device, n))
            return self.count("select count(*) from device_health where device_id = %s",
                              (probe_device,)) > 0  # fmt: skip

        wait_until(serving, 90, "gateway serving")
        return proc

    def start_api(self) -> tuple[subprocess.Popen[bytes], str]:
        """``welfare-gateway api`` in its own process; returns it and its base URL once
        it answers and hears from a gateway worker."""
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "api"], env=self.env(WG_API_PORT=str(port)),
            stdout=subprocess.DEVNULL, stderr=(self.workdir / "api.log").open("ab"),
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def linked() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("the API exited; see api.log")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
                    return bool(orjson.loads(r.read()).get("workers_online"))
            except OSError:
                return False

        wait_until(linked, 60, "API serving and linked to a worker")
        return proc, base

    def start_worker(
        self, client_id: str, **env_overrides: str
    ) -> tuple[subprocess.Popen[bytes], str]:
        """``welfare-gateway worker`` beside the others: its own storage session
        (``client_id``) in the shared group and its own metrics port; returns it and its
        /metrics URL once that session is connected (it then takes its share)."""
        port = free_port()
        env = self.env(WG_MQTT_CLIENT_ID=client_id, WG_METRICS_PORT=str(port), **env_overrides)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "worker"], env=env,
            stdout=subprocess.DEVNULL, stderr=(self.workdir / f"{client_id}.log").open("ab"),
        )  # fmt: skip
        metrics = f"http://127.0.0.1:{port}/metrics"

        def connected() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {client_id} exited; see {client_id}.log")
            return gauge(metrics, "wg_mqtt_connected") == 1.0

        wait_until(connected, 90, f"worker {client_id} connected")
        return proc, metrics

    def stop_database(self) -> None:
        """PostgreSQL down (a fast shutdown: every client connection is cut)."""
        if self.pg is None:
            raise RuntimeError("this stack has no database of its own to stop")
        self.pg.stop()

    def start_database(self) -> None:
        """PostgreSQL up again on the same data directory and socket: the URL the
        gateway was started with stays valid (checked)."""
        if self.pg is None:
            raise RuntimeError("this stack has no database of its own to start")
        url = self.pg.start()
        if url != self.database_url:
            raise RuntimeError(f"the database came back at {url}, not {self.database_url}")

    def count(self, query: str, params: tuple[Any, ...] = ()) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query, params).fetchone()
            return int(row[0]) if row else 0


def gauge(metrics_url: str, name: str) -> float | None:
    """One gauge from a worker's /metrics; None while it does not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def _probe(port: int, device_id: str, n: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-probe") as client:
        body = orjson.dumps({"v": 1, "type": "heartbeat", "id": f"probe-{n}",
                             "ts": datetime.now(UTC).isoformat()})  # fmt: skip
        await client.publish(f"devices/{device_id}/heartbeat", body, qos=1)


@contextmanager
def stack(
    workdir: Path, *, commit_timestamps: bool = False, extra_broker_config: list[str] | None = None
) -> Iterator[Stack]:
    broker = Mosquitto(workdir / "mosquitto", extra_config=extra_broker_config or []).start()
    pg = EmbeddedPostgres(workdir / "pg")
    url = pg.start()
    try:
        if commit_timestamps:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("alter system set track_commit_timestamp = on")
            pg.stop()
            url = pg.start()
        migrate(url, api_password=API_PASSWORD, worker_password=WORKER_PASSWORD)
        yield Stack(workdir, broker, url, pg)
    finally:
        broker.stop()
        pg.stop()
