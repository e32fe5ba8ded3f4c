"""``python -m bench.onboarding [--smoke] [--devices N] [--out FILE]``: bulk onboarding
(issue #19.5) through the API, timed by the client: one CSV file of N devices, N persons
and N assignments (10,000 each by default; ``--smoke``: 200) as a dry run, then applied,
then applied again (every row ``unchanged``), each one ``POST /api/v1/imports`` request
as a tenant admin against a private PostgreSQL (pgserver), the API role under row-level
security. Also timed: how long after the commit a gateway worker's registry cache (the
one every worker keeps, following ``wg_registry`` notifications) holds every imported
device with its holder. Prints one JSON object. Target: 10,000 devices in under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from prometheus_client import CollectorRegistry

from api.auth import Role, mint
from bench import machine
from bench.mosquitto import free_port
from gateway.adapters.embedded import EmbeddedPostgres, with_user
from gateway.adapters.postgres import registry_repo as repo
from gateway.adapters.postgres.migrate import migrate
from gateway.bootstrap import api_app
from gateway.config.settings import Settings
from gateway.support.metrics import IngestMetrics
from gateway.worker.fleet.registry_cache import RegistryCache

API_PASSWORD = "bench-api"
WORKER_PASSWORD = "bench-worker"
TENANT = "bench-import"
SECRET = "bench-onboarding-secret-bench-onboarding"
TARGET_S = 60.0


def roster(devices: int) -> bytes:
    """One file: a person, a GPS alarm and its assignment per resident."""
    lines = ["kind,ref,care_notes,id,model_id,serial,device_id,person_ref,valid_from"]
    lines += [f"person,BENCH-{i:06d},Nyckel i nyckelgömma {i},,,,,," for i in range(devices)]
    lines += [f"device,,,bench-gps-{i:06d},demo-gps,SN-{i:06d},,," for i in range(devices)]
    lines += [f"assignment,,,,,,bench-gps-{i:06d},BENCH-{i:06d},2025-03-01T08:00:00+01:00"
              for i in range(devices)]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


async def run(devices: int, workdir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(workdir / "pg", delete_on_stop=True)
    url = await asyncio.to_thread(pg.start)
    try:
        await asyncio.to_thread(migrate, url, api_password=API_PASSWORD,
                                worker_password=WORKER_PASSWORD)  # fmt: skip
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            await repo.create_tenant(conn, TENANT, "Bench import", "municipality", "212000-9998")
        return await _measure(url, devices)
    finally:
        await asyncio.to_thread(pg.stop)


async def _measure(url: str, devices: int) -> dict[str, Any]:
    settings = Settings(mode="development", jwt_secret=SECRET, database_url=url)
    app = api_app(settings, api_database_url=with_user(url, "wg_api", API_PASSWORD),
                  metrics_registry=CollectorRegistry())  # fmt: skip
    token = mint(SECRET, tenant=TENANT, role=Role.TENANT_ADMIN, subject="bench", org=None,
                 ttl_s=3600)  # fmt: skip
    body = roster(devices)
    cache = RegistryCache(with_user(url, "wg_worker", WORKER_PASSWORD), IngestMetrics())
    await cache.load()
    stop = asyncio.Event()
    following = asyncio.create_task(cache.follow(stop))
    try:
        async with _serving(app) as base, httpx.AsyncClient(base_url=base, timeout=600) as http:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}

            async def post(dry_run: bool) -> tuple[float, dict[str, Any]]:
                started = time.perf_counter()
                r = await http.post("/api/v1/imports", content=body, headers=headers,
                                    params={"dry_run": str(dry_run).lower()})  # fmt: skip
                took = time.perf_counter() - started
                assert r.status_code == 200, r.text[:2000]
                return took, r.json()

            dry_s, dry = await post(True)
            apply_s, applied = await post(False)
            committed = time.perf_counter()
            cached_s = await _cache_caught_up(cache, devices, committed)
            again_s, again = await post(False)
    finally:
        stop.set()
        await following
        await cache.close()
    stored = await _count(url, "select count(*) from assignments where valid_to is null"
                          " and tenant_id = %s", (TENANT,))  # fmt: skip
    return {
        "devices": devices, "persons": devices, "assignments": devices,
        "rows": devices * 3, "file_bytes": len(body),
        "dry_run_s": round(dry_s, 2), "apply_s": round(apply_s, 2),
        "reapply_s": round(again_s, 2),
        "dry_run_summary": dry["summary"], "apply_summary": applied["summary"],
        "reapply_summary": again["summary"], "assignments_stored": stored,
        "registry_cache_caught_up_s": cached_s,
        "target_s": TARGET_S, "within_target": dry_s < TARGET_S and apply_s < TARGET_S,
        "machine": machine.describe(),
    }  # fmt: skip


async def _cache_caught_up(cache: RegistryCache, devices: int, since: float) -> float | None:
    """Seconds from the commit until a worker's registry cache holds every imported
    device, assigned (None: not within two minutes)."""
    ids = [f"bench-gps-{i:06d}" for i in range(devices)]
    deadline = since + 120
    pending = ids
    while time.perf_counter() < deadline:
        pending = [d for d in pending if (rec := cache.get(d)) is None
                   or rec.current_holder() is None]  # fmt: skip
        if not pending:
            return round(time.perf_counter() - since, 2)
        await asyncio.sleep(0.05)
    return None


async def _count(url: str, query: str, params: tuple[Any, ...]) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        row = await (await conn.execute(query, params)).fetchone()
        return int(row[0]) if row else 0


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[str]:
    import uvicorn

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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.onboarding")
    parser.add_argument("--smoke", action="store_true", help="200 devices instead of 10,000")
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    devices = args.devices or (200 if args.smoke else 10_000)
    with tempfile.TemporaryDirectory(prefix="wg-bench-onboarding-") as tmp:
        result = asyncio.run(run(devices, Path(tmp)))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
