"""``python -m bench.api``: API read latency (a person's readings, one page of 100) while
background ingest runs at 2,500 msgs/s. Sequential requests over one keep-alive
connection, timed by the client."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.auth import Role, mint
from bench import machine
from bench.ingest import _loadgen, _percentile, _wait_all
from bench.mosquitto import free_port, port_open, wait_until
from bench.stack import TENANT, stack
from gateway.settings import Settings
from gateway.storage import registry_repo as repo

TARGET_P99_MS = 50.0


def run(requests: int, background_rate: int, workdir: Path) -> dict[str, Any]:
    with stack(workdir) as st:
        devices = 100
        st.seed("bench-", devices, repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 60))
        port = free_port()
        gw = st.start_gateway(WG_API_PORT=str(port))
        wait_until(lambda: port_open(port), 30, "API listening")
        # history to read: a first round of positions for every device
        _wait_all(_loadgen(st.broker.port, 2, devices, 40, 0), 120)
        wait_until(lambda: st.count("select count(*) from positions") >= devices * 10, 60,
                   "history stored")  # fmt: skip
        person = str(_first_person(st.database_url))
        secret = Settings().jwt_secret.get_secret_value()  # the gateway runs with the default
        token = mint(secret, tenant=TENANT, role=Role.OPERATOR, subject="bench", org=None,
                     ttl_s=3600)  # fmt: skip
        seconds = max(15.0, requests * 0.02)
        load = _loadgen(st.broker.port, 2, devices, int(background_rate * seconds / devices),
                        1_000_000, rate=background_rate / 2)  # fmt: skip
        latencies = []
        statuses: dict[str, int] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
            url = f"/api/v1/persons/{person}/readings"
            for _ in range(requests):
                t0 = time.perf_counter()
                r = http.get(url, params={"category": "position", "limit": 100})
                latencies.append((time.perf_counter() - t0) * 1000)
                code = str(r.status_code)
                statuses[code] = statuses.get(code, 0) + 1
        pubs = _wait_all(load, 600)
        offered = sum(p["published"] for p in pubs) / (
            max(p["finished"] for p in pubs) - min(p["started"] for p in pubs)
        )
        gw.terminate()
        gw.wait(60)
    p99 = _percentile(latencies, 0.99)
    return {
        "api_read_ms": {
            "readings_page_of_100": {
                "p50": round(_percentile(latencies, 0.50), 2),
                "p99": round(p99, 2),
                "requests": requests,
                "statuses": statuses,
            },
            "fhir_search": "not built yet (issue 8)",
            "background_msgs_per_s": round(offered),
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": p99 < TARGET_P99_MS and statuses == {"200": requests},
        }
    }


def _first_person(url: str) -> Any:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select person_id from positions group by person_id order by count(*) desc limit 1"
        ).fetchone()
        assert row is not None
        return row[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.api")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--background-rate", type=int, default=2500)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.background_rate = 50, 200
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {**run(args.requests, args.background_rate, Path(tmp)),
                  "machine": machine.describe()}  # fmt: skip
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
