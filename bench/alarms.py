"""``python -m bench.alarms``: device publish -> alarm received by an operator client,
p50 / p99, while background ingest runs at 2,500 msgs/s; and the measured silent-device
detection delay against its configured bound.

The gateway runs as its own process on a private Mosquitto and PostgreSQL. Each alarm
comes from a different device (one button press each), so every press is a new alarm; the
operator is a separate MQTT client subscribed to ``tenants/bench/alarms``. With
``--workers 2`` a ``welfare-gateway worker`` runs beside it (storage shared, the alarm
engine still the first process's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from bench import machine
from bench.ingest import _loadgen, _percentile, _wait_all
from bench.stack import stack
from gateway.adapters.mqtt.connection import NODELAY
from gateway.adapters.postgres import registry_repo as repo

TARGET_P99_MS = 50.0
SILENCE_INTERVAL_S = 5
SILENCE_FACTOR = 1.0
SILENCE_GRACE_S = 2.0


async def measure(port: int, alarm_devices: list[str], silent_device: str) -> dict[str, Any]:
    received: dict[str, float] = {}
    silent_at: list[float] = []
    all_in = asyncio.Event()
    silent_seen = asyncio.Event()

    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-operator",
                              socket_options=NODELAY) as operator:  # fmt: skip
        await operator.subscribe("tenants/bench/alarms", qos=1)

        async def collect() -> None:
            async for message in operator.messages:
                now = time.time()
                assert isinstance(message.payload, bytes)
                event = orjson.loads(message.payload)
                if event["event"] != "raised":
                    continue
                if event["kind"] == "button":
                    received.setdefault(event["device_id"], now)
                    if len(received) == len(alarm_devices):
                        all_in.set()
                elif event["kind"] == "device_silent" and event["device_id"] == silent_device:
                    silent_at.append(now)
                    silent_seen.set()

        collector = asyncio.create_task(collect())
        published: dict[str, float] = {}
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-silent",
                                  socket_options=NODELAY) as dev:  # fmt: skip
            body = orjson.dumps({"v": 1, "type": "heartbeat", "id": "last",
                                 "ts": datetime.now(UTC).isoformat()})  # fmt: skip
            await dev.publish(f"devices/{silent_device}/heartbeat", body, qos=1)
            last_heard = time.time()
        for device_id in alarm_devices:
            async with aiomqtt.Client("127.0.0.1", port, identifier=f"press-{device_id}",
                                      socket_options=NODELAY) as client:  # fmt: skip
                body = orjson.dumps({"v": 1, "type": "alarm", "id": "press", "kind": "button",
                                     "ts": datetime.now(UTC).isoformat()})  # fmt: skip
                published[device_id] = time.time()
                await client.publish(f"devices/{device_id}/events", body, qos=1)
            await asyncio.sleep(0.02)  # spacing the presses over the load, not synchronising
        await asyncio.wait_for(all_in.wait(), 60)
        bound = SILENCE_INTERVAL_S * SILENCE_FACTOR + SILENCE_GRACE_S
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(silent_seen.wait(), bound + 30)
        collector.cancel()
    latencies = [(received[d] - published[d]) * 1000 for d in alarm_devices]
    return {
        "latencies": latencies,
        "silent_delay_s": (silent_at[0] - last_heard) if silent_at else None,
        "silent_bound_s": bound,
    }


def run(alarms: int, background_rate: int, workdir: Path, workers: int = 1) -> dict[str, Any]:
    """``workers`` = 2: a ``welfare-gateway worker`` beside the ``run`` process (which,
    started first, runs the alarm engine; the other stores its share and stands by)."""
    with stack(workdir) as st:
        load_devices = 100
        st.seed("bench-", load_devices,
                repo.DeviceModel("bench-gps", "Bench", "GPS", "gps_alarm", 3600))  # fmt: skip
        alarm_devices = st.seed("press-", alarms,
                                repo.DeviceModel("bench-btn", "Bench", "Button", "gps_alarm",
                                                 3600))  # fmt: skip
        [silent] = st.seed("silent-", 1, repo.DeviceModel(
            "bench-hb", "Bench", "Heartbeat", "gps_alarm", SILENCE_INTERVAL_S))  # fmt: skip
        gw = st.start_gateway(
            WG_ALARMS__SILENCE_FACTOR=str(SILENCE_FACTOR),
            WG_ALARMS__SILENCE_GRACE_S=str(SILENCE_GRACE_S),
            WG_ALARMS__TICK_MS="100",
        )
        others = [st.start_worker(f"wg-bench-{n}")[0] for n in range(2, workers + 1)]
        seconds = max(20, alarms * 0.02 + 15)
        per_device = int(background_rate * seconds / load_devices)
        load = _loadgen(st.broker.port, 2, load_devices, per_device, 0, rate=background_rate)
        started = time.time()
        result = asyncio.run(measure(st.broker.port, alarm_devices, silent))
        elapsed = time.time() - started
        pubs = _wait_all(load, 600)
        published = sum(p["published"] for p in pubs)
        offered = published / (max(p["finished"] for p in pubs) - min(p["started"] for p in pubs))
        for proc in (gw, *others):
            proc.terminate()
        for proc in (gw, *others):
            proc.wait(60)
    lat = result["latencies"]
    p99 = _percentile(lat, 0.99)
    silent_delay = result["silent_delay_s"]
    return {
        "alarm_latency_ms": {
            "p50": round(_percentile(lat, 0.50), 2),
            "p99": round(p99, 2),
            "max": round(max(lat), 2),
            "alarms": len(lat),
            "background_msgs_per_s": round(offered),
            "measured_over_s": round(elapsed, 1),
            "target_p99_ms": TARGET_P99_MS,
            "meets_target": p99 < TARGET_P99_MS,
            "samples_ms": [round(x, 3) for x in lat],
        },
        "silent_detection_s": {
            "measured": round(silent_delay, 2) if silent_delay is not None else None,
            "bound": result["silent_bound_s"],
            "within_bound": silent_delay is not None
            and silent_delay <= result["silent_bound_s"] + 0.5,
            "note": "bound = heartbeat interval x factor + grace; the timer ticks every 100 ms",
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="bench.alarms")
    parser.add_argument("--alarms", type=int, default=500)
    parser.add_argument("--background-rate", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.alarms, args.background_rate = 20, 200
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        result = {**run(args.alarms, args.background_rate, Path(tmp), args.workers),
                  "machine": machine.describe()}  # fmt: skip
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return result


if __name__ == "__main__":
    main()
