"""``python -m bench.memory``: broker + gateway worker resident memory with 10,000 devices
connected (one MQTT connection each, the ``load_fleet`` scenario: heartbeats and
telemetry every 60 s), the worker's registry holding all of them; and beside it one API
replica's, which does not grow with the fleet.

Beside them, the floor under the target (``floor_mb``): the broker holding only what the
device contract asks of 10,000 connections (:mod:`bench.broker_memory`) and a bare Python
with the worker's libraries. What the target leaves above it is all the worker's own code,
settings and fleet state, and what the broker holds for the gateway, may take."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from bench import broker_memory, machine
from bench.mosquitto import wait_until
from bench.stack import stack
from device_sims.scenario import load_scenario
from gateway.entrypoints.demo import seed

SCENARIO = Path(__file__).resolve().parent.parent / "device_sims" / "scenarios" / "load_fleet.toml"
TARGET_MB = 100.0


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss / 2**20)


def _connections(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.status == "ESTABLISHED")


#: What the gateway cannot do without (the contract's pydantic, settings, PostgreSQL,
#: MQTT, metrics, JSON), imported by a bare interpreter: the floor under any gateway
#: process built on this stack, before a line of its own code or a device.
_LIBRARIES = (
    "import asyncio, ssl, pydantic, pydantic_settings, psycopg, psycopg_pool, aiomqtt, "
    "prometheus_client, orjson, os\n"
    "print(int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'))"
)


def _libraries_floor_mb() -> float:
    out = subprocess.run([sys.executable, "-c", _LIBRARIES], capture_output=True, check=True)
    return float(int(out.stdout) / 2**20)


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(60)


def run(devices: int, settle_s: float, workdir: Path) -> dict[str, Any]:
    """The gateway as deployed at scale: ``welfare-gateway worker`` (ingest, alarms, locks:
    what grows with the fleet) and one ``welfare-gateway api`` replica (stateless), each in
    its own process beside the broker."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it
    del soft
    with stack(workdir, extra_broker_config=["max_connections -1"]) as st:
        assert st.broker.proc is not None
        broker_pid = st.broker.proc.pid

        def sample(
            worker: subprocess.Popen[bytes], api: subprocess.Popen[bytes]
        ) -> dict[str, float]:
            return {"broker": _rss_mb(broker_pid), "worker": _rss_mb(worker.pid),
                    "api": _rss_mb(api.pid)}  # fmt: skip

        # the fixed cost: a worker with no devices registered, a broker with none connected
        worker = st.start_gateway(probe="probe-empty-", command="worker")
        api, _ = st.start_api()
        fixed = sample(worker, api)
        _stop(api, worker)
        specs = load_scenario(SCENARIO).device_specs(devices)
        import asyncio

        asyncio.run(seed(st.database_url, specs))
        worker = st.start_gateway(command="worker")
        api, _ = st.start_api()
        registered = sample(worker, api)
        fleet = subprocess.Popen(
            [sys.executable, "-m", "gateway", "simulate", "--scenario", str(SCENARIO),
             "--devices", str(devices), "--broker", st.broker.url, "--duration", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
        )  # fmt: skip
        started = time.monotonic()
        wait_until(lambda: _connections(broker_pid) >= devices, 300, f"{devices} connected")
        connected_after = time.monotonic() - started
        # sample through the first minute of heartbeats and telemetry
        peak = dict(registered)
        peak_total = registered["broker"] + registered["worker"]
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            now = sample(worker, api)
            for k, v in now.items():
                peak[k] = max(peak[k], v)
            # the two processes at the same moment (each one's own peak is in rss_mb)
            peak_total = max(peak_total, now["broker"] + now["worker"])
            time.sleep(0.5)
        stored = st.count("select count(*) from device_health")
        _stop(fleet, api, worker)
    contract = broker_memory.run(devices, workdir / "broker-contract")
    libraries = _libraries_floor_mb()
    # what no gateway on this stack goes below: the broker holding the contract's state
    # for 10,000 devices, and a Python with the libraries the worker cannot do without
    floor = contract["broker_rss_mb_no_devices"] + contract["contract_mb_per_10k_devices"]
    floor += libraries
    per_10k = 10_000 / devices
    total = peak_total * per_10k
    return {
        "devices_connected": devices,
        "connect_time_s": round(connected_after, 1),
        "measures": "broker + gateway worker RSS, the highest sum of samples taken together "
        "(every 0.5 s over the first minute of traffic); the API replica (stateless, a "
        "fixed cost whatever the fleet) is reported beside it",
        "rss_mb": {k: round(v, 1) for k, v in peak.items()},
        "rss_mb_no_devices": {k: round(v, 1) for k, v in fixed.items()},
        "rss_mb_registered_not_connected": {k: round(v, 1) for k, v in registered.items()},
        "memory_mb_per_10k_devices": round(total, 1),
        "with_one_api_replica_mb": round(total + peak["api"], 1),
        "added_by_devices_mb_per_10k": {
            k: round((peak[k] - fixed[k]) * per_10k, 1) for k in ("broker", "worker", "api")
        },
        "python_with_libraries_mb": round(libraries, 1),
        "broker_for_the_device_contract": contract,
        "floor_mb": round(floor, 1),
        "left_above_the_floor_mb": round(TARGET_MB - floor, 1),
        "health_rows_stored_during_run": stored,
        "target_mb": TARGET_MB,
        "meets_target": total <= TARGET_MB,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.memory")
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {**run(args.devices, 70.0, Path(tmp)), "machine": machine.describe()}
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
